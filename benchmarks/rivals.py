"""Other tools' speculative decoding on the same prompt tokens, for side-by-side speeds.

Each rival decodes greedily from the prompt `spec` uses and reports its decode speed over
the first n generated tokens (timed from outside, from the first token's arrival to the
n-th's, prefill excluded) and their text, so `speed.py` can interleave it with `spec`'s
methods and check its output.

- `llama-cpp-python-lookup`: llama-cpp-python's `LlamaPromptLookupDecoding` with its
  defaults (2-gram matches, 10 drafted tokens) through `Llama.generate`.
- `llama.cpp-lookup@N`: llama.cpp's `llama-lookup` example (prompt, dynamic and static
  n-gram caches), drafting up to N tokens; needs the binary (`--llama-lookup PATH`).
- `llama.cpp-spec:TYPE@N`: llama.cpp's `llama-speculative-simple` example with
  `--spec-type TYPE` (the speculation llama-server offers: `draft-simple` with the draft
  model given by `--draft`, or `ngram-simple`, `ngram-map-k`, `ngram-mod`,
  `ngram-cache`), with `--spec-draft-n-max N` (the ngram types keep their own default
  lengths) (`--llama-speculative PATH`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from spec_cli.backend.llama_cpp import extra_buffers_allowed

LCPP_LOOKUP = "llama-cpp-python-lookup"
LLAMA_LOOKUP = "llama.cpp-lookup"
LLAMA_SPEC = "llama.cpp-spec:"


@dataclass
class Outcome:
    """One rival run: decode tokens/s and the generated text."""

    tokens_per_second: float
    text: str


class LlamaCppPython:
    """llama-cpp-python's own `Llama.generate`: plain, or with its prompt lookup decoding
    as its README shows it."""

    def __init__(self, model_path: str, n_ctx: int, threads: int, lookup: bool) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.name = LCPP_LOOKUP if lookup else "llama-cpp-python"
        with _weights_in_spec_buffers():
            self._llm = Llama(
                model_path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                draft_model=LlamaPromptLookupDecoding() if lookup else None,
                verbose=False,
            )

    def run(self, prompt: Sequence[int], n: int) -> Outcome:
        self._llm.reset()  # type: ignore[no-untyped-call]
        out: list[int] = []
        first = last = 0.0
        for token in self._llm.generate(list(prompt), temp=0.0, top_k=1, reset=True):
            if token == self._llm.token_eos():
                break
            now = time.perf_counter()
            if not out:
                first = now  # prefill and first token excluded, as in our stats
            last = now
            out.append(int(token))
            if len(out) >= n:
                break
        speed = (len(out) - 1) / (last - first) if last > first else 0.0
        return Outcome(speed, self._llm.detokenize(out).decode("utf-8", "replace"))


@contextlib.contextmanager
def _weights_in_spec_buffers() -> Iterator[None]:
    """`Llama` takes no say over llama.cpp's extra weight buffers: while it loads, its
    default model parameters keep them off where `spec` does (AMX builds), for the same
    kernels and no crash."""
    import llama_cpp.llama_cpp as lc

    default = lc.llama_model_default_params

    def plain() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    if extra_buffers_allowed():
        yield
        return
    lc.llama_model_default_params = plain
    try:
        yield
    finally:
        lc.llama_model_default_params = default


# Its closing summary line: present only when it ran to the end.
_DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([0-9.]+) seconds")


class LlamaCppExample:
    """One of llama.cpp's speculative example binaries, run once per generation (its model
    load and prefill come before the first generated token, where timing starts)."""

    def __init__(
        self,
        name: str,
        binary: str,
        model_path: str,
        n_ctx: int,
        threads: int,
        draft_max: int,
        extra: Sequence[str] = (),
    ) -> None:
        from llama_cpp import Llama

        self.name = name
        # The binary reads text and parses special tokens in it: the prompt is passed
        # with its chat template's markers spelled out.
        self._vocab = Llama(model_path, vocab_only=True, verbose=False)
        self._cmd = [
            binary, "-m", model_path, "-c", str(n_ctx), "-t", str(threads), "-tb", str(threads),
            "--temp", "0", "--top-k", "1", "--spec-draft-n-max", str(draft_max), *extra,
        ]  # fmt: skip
        # The kernels spec runs: on the CPU no flash attention (llama.cpp's default turns
        # it on, and batches cost more), and the weights' buffers that spec uses.
        self._cmd += ["--flash-attn", "off"]
        if not extra_buffers_allowed():
            self._cmd.append("--no-repack")

    def run(self, prompt: Sequence[int], n: int) -> Outcome:
        prompt_bytes = self._vocab.detokenize(list(prompt), special=True)
        if self._vocab.tokenize(prompt_bytes, add_bos=True, special=True) != list(prompt):
            raise RuntimeError("the prompt does not survive a round trip through text")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "prompt.txt"
            path.write_bytes(prompt_bytes)
            with (Path(tmp) / "stderr.txt").open("w+b") as err:
                arrivals = _stream([*self._cmd, "-f", str(path), "-n", str(n)], err)
                err.seek(0)
                log = err.read().decode("utf-8", "replace")
        out = b"".join(chunk for _, chunk in arrivals)
        # It echoes the prompt, then prints each generated piece as it is accepted.
        echo = out.find(prompt_bytes)
        if _DECODED.search(log) is None or echo < 0:
            tail = log.strip().splitlines()[-3:]
            raise RuntimeError(f"{self._cmd[0]} failed: {' | '.join(tail)}")
        return _first_tokens(self._vocab, arrivals, echo + len(prompt_bytes), n)


def _stream(cmd: list[str], err: IO[bytes]) -> list[tuple[float, bytes]]:
    """Run `cmd`, returning its stdout as (arrival time, bytes) chunks."""
    arrivals = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 1 << 16):
            arrivals.append((time.perf_counter(), chunk))
    return arrivals


def _first_tokens(vocab: Any, arrivals: list[tuple[float, bytes]], start: int, n: int) -> Outcome:
    """Speed and text over the first `n` generated tokens (the binaries stop only after
    a whole accepted draft, so they can overshoot the limit by a draft's length, and
    their own tokens/s would then count cheap extra tokens). Tokens are found by
    re-tokenizing the generated text; speed runs from the first token's arrival to the
    n-th's, prefill excluded, as for llama-cpp-python above."""
    text = b"".join(chunk for _, chunk in arrivals)[start:]
    tokens = vocab.tokenize(text, add_bos=False, special=True)
    count = min(n, len(tokens))
    end = len(vocab.detokenize(tokens[:count], special=True))
    first = last = 0.0
    seen = -start
    for at, chunk in arrivals:
        seen += len(chunk)
        if seen > 0 and not first:
            first = at
        if seen >= end:
            last = at
            break
    speed = (count - 1) / (last - first) if last > first else 0.0
    return Outcome(speed, text[:end].decode("utf-8", "replace"))
