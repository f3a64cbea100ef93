"""`spec ngram build`: a static n-gram cache from a corpus, for `--ngram-cache`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spec_cli.commands import options as o

app = typer.Typer(help="Build n-gram caches from a corpus.", no_args_is_help=True)


@app.command("build")
def build(
    # Strings, not Paths: Path("./-") would be "-", read as stdin (and never protected).
    files: Annotated[list[str], typer.Argument(help="Text files to learn from (- : stdin).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Cache file to write.")],
    model: o.Model = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            min=1000,
            help="Keep at most this many n-gram rows (each run that reads the cache loads "
            "them all: 500,000 add about 0.1-0.2 s and 40 MB).",
        ),
    ] = 500_000,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUTPUT.")] = False,
) -> None:
    """Count the 2..4-gram continuations of FILES with MODEL's tokenizer into OUTPUT."""
    import codecs
    import sys

    from spec_cli import hub
    from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions
    from spec_cli.errors import SpecError, UsageError
    from spec_cli.ngram_counts import MAX_ORDER, NgramCounts
    from spec_cli.ngram_store import STATIC_MIN_ORDER, count_corpus_text, counts_file
    from spec_cli.outfiles import check_output, write_file
    from spec_cli.prompts import decode_prompt

    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    # Never written over: the corpus files, the model, and stdin when it is a file.
    inputs = [f if f != "-" else "/dev/stdin" for f in files]
    model_file = hub.on_disk(model)
    if model_file is not None:
        inputs.append(model_file)
    written = check_output(output, force=force, inputs=inputs)
    tokenizer = LlamaCppBackend(hub.resolve(model), LoadOptions(vocab_only=True))
    counts = NgramCounts()
    n_tokens = 0
    try:
        for path in files:
            try:
                data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
            except OSError as e:
                raise SpecError(f"cannot read {path}: {e.strerror}") from None
            # Only a BOM or Unicode spaces is as empty as no bytes at all.
            if not data.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace").strip():
                hub.note(f"skipping {path}: it is empty")
                continue
            text = decode_prompt(data, path)
            n_tokens += count_corpus_text(counts, text, tokenizer.tokenize, limit)
        if not n_tokens:
            raise SpecError("the files hold no text to learn from")
        data, rows = counts_file(counts, tokenizer.vocab_id(), limit, STATIC_MIN_ORDER)
        write_file(written, data)
    finally:
        tokenizer.close()
    sys.stderr.write(
        f"kept {rows} n-gram rows (contexts of {STATIC_MIN_ORDER} to {MAX_ORDER} tokens) "
        f"from {n_tokens} tokens "
        f"in {len(files)} file(s) -> {written}\n"
    )
