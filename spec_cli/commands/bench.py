"""`spec bench`: does speculation help on this machine, with these models, and which method?

The report (table, chart, recommendation) goes to stdout; progress and notes to stderr.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spec_cli.commands import options as o


def bench(
    suite: Annotated[
        str,
        typer.Option(
            "--suite",
            help="quick (14 prompts, a few minutes), full (70 prompts) or FILE.jsonl with "
            'lines {"id", "category", "turns": [...]}.',
        ),
    ] = "quick",
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Only this category of the suite (repeatable)."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated drafters to compare: none, prompt-lookup, ngram, model, auto "
            "(default: none,prompt-lookup,auto, plus model with --draft).",
            show_default=False,
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", min=1, help="Runs of every prompt per method.")
    ] = 1,
    max_tokens: o.MaxTokens = 96,
    draft_max: o.DraftMax = o.DEFAULT_DRAFT_MAX,
    temperature: o.Temperature = 0.0,
    top_k: o.TopK = 0,
    top_p: o.TopP = 1.0,
    min_p: o.MinP = 0.0,
    seed: o.Seed = None,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the chat template.")] = False,
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write every result and the summary to FILE (- : stdout).",
            metavar="FILE",
        ),
    ] = None,
    csv_out: Annotated[
        str | None,
        typer.Option("--csv", help="Write one row per result to FILE.", metavar="FILE"),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            help="Save a chart to FILE, as .png, .svg or .pdf (needs matplotlib).",
            metavar="FILE",
        ),
    ] = None,
    recalibrate: Annotated[
        bool,
        typer.Option(
            "--recalibrate",
            help="Measure this machine's verify costs again (every later run uses the new "
            "measurement), e.g. after a hardware or driver change.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite existing --json/--csv/--plot files.")
    ] = False,
    model: o.Model = None,
    draft: o.DraftModel = None,
    ctx_size: o.CtxSize = None,
    threads: o.Threads = 0,
    gpu_layers: o.GpuLayers = 0,
    draft_gpu_layers: o.DraftGpuLayers = 0,
    ngram_cache: o.NgramCache = None,
) -> None:
    """Benchmark speculative decoding methods on this machine and recommend one.

    Every prompt runs with every method, in rotated order; speedup is tokens/s over `none`.
    Ctrl-C stops early and keeps the results so far (exit 130).
    """
    import secrets

    from rich.console import Console

    from spec_cli import hub
    from spec_cli.bench import machine
    from spec_cli.bench.outputs import OutputFiles
    from spec_cli.bench.plan import header, parse_methods
    from spec_cli.bench.recommend import RunOptions
    from spec_cli.bench.report import Report, build_report
    from spec_cli.bench.runner import BenchRunner, BenchSettings, total_generations
    from spec_cli.bench.suites import BUILTIN, load_suite
    from spec_cli.errors import ModelError, SpecError, UsageError
    from spec_cli.render import counted
    from spec_cli.render.bench import BenchProgress, render_report
    from spec_cli.sampling import SamplingParams
    from spec_cli.session import ModelOptions, open_session
    from spec_cli.signals import sigterm_as_interrupt

    sampling = SamplingParams(temperature, top_k, top_p, min_p)
    try:
        sampling.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    chosen, added_baseline = parse_methods(methods, draft is not None)
    if draft is not None and not {"model", "auto"} & set(chosen):
        hub.note(f"--draft is not used by methods {', '.join(chosen)}: not loading it")
        draft = None
    loaded = load_suite(suite)
    if category:
        loaded = loaded.only(category)
    # Files read, never to be written over: the suite, models and n-gram cache.
    models = [hub.on_disk(model), hub.on_disk(draft) if draft is not None else None]
    inputs = [p for p in (*models, ngram_cache) if p is not None]
    inputs += [suite] if suite not in BUILTIN else []
    files = OutputFiles(json_out, csv_out, plot, force=force, inputs=inputs)
    settings = BenchSettings(
        chosen,
        repeats,
        max_tokens,
        draft_max,
        sampling,
        seed if seed is not None else secrets.randbelow(2**31),
        raw,
        ngram_cache=ngram_cache,
    )
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    stream = sys.stderr if files.json_to_stdout else sys.stdout
    # Logs and files get the full table rather than rich's 80-column default.
    out = Console(file=stream, highlight=False, width=None if stream.isatty() else 120)
    if added_baseline:
        err.print("note: added method none, the baseline every speedup is measured against")
    # What the recommended `spec run` command needs to reproduce the measured setting.
    run_options = RunOptions(
        model=model,
        draft_model=draft,
        draft_max=draft_max,
        sampling=sampling,
        raw=raw,
        threads=threads,
        gpu_layers=gpu_layers,
        draft_gpu_layers=draft_gpu_layers,
        ngram_cache=ngram_cache,
    )
    total = total_generations(loaded.prompts, settings)
    opts = ModelOptions(model, draft, ctx_size, threads, gpu_layers, draft_gpu_layers)
    with sigterm_as_interrupt(), open_session(opts) as session:
        why = session.cannot_draft()
        if why is not None:
            raise ModelError(f"nothing to compare: {why}; `spec run --drafter none` decodes it")
        n_prompts, n_turns = len(loaded.prompts), sum(len(p.turns) for p in loaded.prompts)
        turns = f", {counted(n_turns, 'turn')}" if n_turns != n_prompts else ""
        err.print(
            f"spec bench: {counted(n_prompts, 'prompt')}{turns} "
            f"({', '.join(loaded.categories())}) x {', '.join(chosen)} x {repeats} = "
            f"{counted(total, 'generation')}"
        )
        busy = machine.busy_note()
        if busy:
            err.print(f"note: {busy}")
        runner = BenchRunner(session, loaded.prompts, settings)
        runner.check_fit(session.target.n_ctx, None if suite in BUILTIN else suite)
        ceiling = None
        try:
            with err.status("measuring this machine's verify costs (cached after the first run)"):
                ceiling = machine.ceiling(session.target, session.draft, draft_max, recalibrate)
        except KeyboardInterrupt:
            runner.interrupted = True  # nothing measured: an empty report, as promised
        facts = header(session, settings, loaded, ceiling)

        def report(interrupted: bool, error: str | None = None) -> Report:
            return build_report(
                facts,
                runner.results,
                chosen,
                greedy=sampling.greedy,
                options=run_options,
                interrupted=interrupted,
                error=error,
            )

        def on_result(_: object) -> None:
            progress.advance()
            if files.due():
                # Marked interrupted until the final write: a killed run leaves this.
                files.update(report(interrupted=True))

        with BenchProgress(0 if runner.interrupted else total, err) as progress:
            runner.on_start = progress.started
            runner.on_result = on_result
            try:
                if not runner.interrupted:
                    runner.run()
            except Exception as e:
                if runner.results:
                    # Keep what finished, marked incomplete and saying why.
                    reason = str(e) if isinstance(e, SpecError) else f"{type(e).__name__}: {e}"
                    files.update(report(interrupted=True, error=reason))
                raise
        final = report(runner.interrupted)
        files.finish(final)
        render_report(out, final)
    if runner.interrupted:
        sys.exit(130)
