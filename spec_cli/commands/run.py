"""`spec run`: generate from a prompt file or stdin; text on stdout, the rest on stderr."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from spec_cli.commands import options as o


def run(
    prompt_file: Annotated[
        str | None, typer.Argument(help="Prompt text file, or - for stdin.", show_default=False)
    ] = None,
    model: o.Model = None,
    draft: o.DraftModel = None,
    drafter: o.DrafterName = "auto",
    draft_max: o.DraftMax = o.DEFAULT_DRAFT_MAX,
    max_tokens: o.MaxTokensOrAll = 256,
    temperature: o.Temperature = 0.0,
    top_k: o.TopK = 0,
    top_p: o.TopP = 1.0,
    min_p: o.MinP = 0.0,
    seed: o.Seed = None,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the chat template.")] = False,
    system: Annotated[
        str | None,
        typer.Option("--system", "-s", help="System prompt (chat template only)."),
    ] = None,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="Stop at this text (repeatable).")
    ] = None,
    color: o.Color = "auto",
    stats: Annotated[bool, typer.Option("--stats", help="Print statistics on stderr.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout at the end.")
    ] = False,
    ctx_size: o.CtxSize = None,
    threads: o.Threads = 0,
    gpu_layers: o.GpuLayers = 0,
    draft_gpu_layers: o.DraftGpuLayers = 0,
    ngram_cache: o.NgramCache = None,
) -> None:
    """Generate a continuation of PROMPT_FILE (or stdin) with speculative decoding."""
    import numpy as np

    from spec_cli.engine import GenerationConfig, check_fits
    from spec_cli.errors import UsageError
    from spec_cli.prompts import read_prompt
    from spec_cli.render.output import finish_report, make_renderer
    from spec_cli.result import Result, consume
    from spec_cli.sampling import SamplingParams
    from spec_cli.session import ModelOptions, open_session
    from spec_cli.signals import sigterm_as_interrupt
    from spec_cli.stats import GenerationStats

    started = time.perf_counter()
    if color not in ("auto", "always", "never"):
        raise UsageError(f"--color must be auto, always or never, not {color!r}")
    sampling = SamplingParams(temperature, top_k, top_p, min_p)
    try:
        sampling.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if raw and system is not None:
        raise UsageError("--system needs the chat template, which --raw skips: drop one of them")
    if ngram_cache is not None:
        from spec_cli.ngram_store import check_static

        check_static(ngram_cache)
    text = read_prompt(prompt_file)
    auto_draft = drafter in ("auto", "model")  # only these use a draft model
    if draft is not None and not auto_draft:
        from spec_cli import hub

        hub.note(f"--draft is not used by --drafter {drafter}: not loading it")
        draft = None
    if ngram_cache is not None and drafter not in ("auto", "ngram"):
        from spec_cli import hub

        hub.note(f"--ngram-cache is not used by --drafter {drafter}: only auto and ngram read it")
    opts = ModelOptions(model, draft, ctx_size, threads, gpu_layers, draft_gpu_layers, auto_draft)
    gen_stats = GenerationStats()
    result, reported = Result(), False
    paths: tuple[str, str | None] | None = None  # the models', once loaded

    def report(result: Result) -> None:
        nonlocal reported
        reported = True
        gen_stats.wall_seconds = time.perf_counter() - started
        model_path, draft_path = paths or _named(model, draft)
        finish_report(
            result,
            gen_stats,
            model=model_path,
            draft_model=draft_path,
            drafter=drafter,
            json_out=json_out,
            show_stats=stats,
        )

    try:
        with sigterm_as_interrupt(), open_session(opts) as session:
            paths = session.model_path, session.draft_path
            prompt = session.prompt(text, system, raw)
            gen_stats.prompt_tokens = len(prompt)
            check_fits(session.target, prompt)  # before the drafter's calibration
            if max_tokens == o.UNLIMITED:
                max_tokens = session.target.n_ctx - len(prompt)
            active = session.make_drafter(drafter, ngram_cache=ngram_cache)
            renderer = make_renderer(color, json_out)
            events = session.stream(
                prompt,
                active,
                GenerationConfig(max_tokens, sampling, draft_max, seed),
                np.random.default_rng(seed),
                gen_stats,
                stop or (),
            )
            result = consume(events, renderer.handle if renderer else None, gen_stats)
            if renderer:
                renderer.close()
            report(result)
            active.close()  # saves what it learned: after the answer is out, which comes first
    except KeyboardInterrupt:
        if reported:
            raise
        # Stopped before the report (loading the models, reading the prompt, a first run
        # measuring this machine): --json still says what there is.
        result.finish_reason = "interrupted"
        report(result)
        sys.exit(130)
    if result.finish_reason == "interrupted":
        sys.exit(130)


def _named(model: str | None, draft: str | None) -> tuple[str, str | None]:
    """The model files --model and --draft name, found without loading or downloading."""
    from spec_cli import hub

    return hub.on_disk(model) or model or "", draft and (hub.on_disk(draft) or draft)
