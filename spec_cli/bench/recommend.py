"""Turn summaries into advice: which method to use on this machine, and caveats."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spec_cli.bench.metrics import Summary
from spec_cli.bench.runner import BASELINE
from spec_cli.bench.suites import OVERALL
from spec_cli.engine import DEFAULT_DRAFT_MAX
from spec_cli.sampling import SamplingParams

# Below this a method is within run-to-run noise of plain decoding on a laptop.
HELPS_OVERALL = 1.05
# A category-only win must be clearer to be worth switching methods for that kind of input.
HELPS_CATEGORY = 1.10
# Plain decoding speed varies little between prompts of a suite on a quiet machine (prompt
# length changes it by well under 2x); more spread means something else used the CPU.
NOISY_SPREAD = 2.0


@dataclass(frozen=True)
class Recommendation:
    """The method to use (`none`: plain decoding), the command line and a one-line reason."""

    method: str
    command: str
    text: str


@dataclass(frozen=True)
class RunOptions:
    """The benchmarked setting, as far as `spec run` needs it to run the same way (the
    defaults are `spec run`'s own, and are left out of the command)."""

    model: str | None = None
    draft_model: str | None = None
    draft_max: int = DEFAULT_DRAFT_MAX
    sampling: SamplingParams = field(default_factory=SamplingParams)
    raw: bool = False
    threads: int = 0
    gpu_layers: int = 0
    draft_gpu_layers: int = 0
    ngram_cache: str | None = None


def run_command(method: str, options: RunOptions) -> str:
    """The `spec run` command line that reproduces a benchmarked method."""
    o, s = options, options.sampling
    uses_draft = method in ("model", "auto")
    drafting = method != BASELINE
    flags: list[tuple[str, object, bool]] = [
        ("--model", o.model, o.model is not None),
        ("--draft", o.draft_model, uses_draft and o.draft_model is not None),
        ("--draft-max", o.draft_max, drafting and o.draft_max != DEFAULT_DRAFT_MAX),
        ("--ngram-cache", o.ngram_cache, method in ("ngram", "auto") and bool(o.ngram_cache)),
        ("--temperature", s.temperature, s.temperature != 0.0),
        ("--top-k", s.top_k, s.top_k != 0),
        ("--top-p", s.top_p, s.top_p != 1.0),
        ("--min-p", s.min_p, s.min_p != 0.0),
        ("--threads", o.threads, o.threads != 0),
        ("--gpu-layers", o.gpu_layers, o.gpu_layers != 0),
        ("--draft-gpu-layers", o.draft_gpu_layers, uses_draft and o.draft_gpu_layers != 0),
    ]
    cmd = f"spec run --drafter {method}"
    cmd += "".join(f" {flag} {shlex.quote(str(value))}" for flag, value, wanted in flags if wanted)
    return cmd + (" --raw" if o.raw else "")


def recommend(summaries: Sequence[Summary], options: RunOptions) -> Recommendation | None:
    """The best speculative method overall if it pays, else a category where one does."""
    overall = {
        s.method: s.speedup
        for s in summaries
        if s.category == OVERALL and s.method != BASELINE and s.speedup is not None
    }
    if not overall:
        return None
    best = max(overall, key=lambda m: overall[m] or 0.0)
    best_speedup = overall[best] or 0.0
    per_category = [
        s for s in summaries if s.category != OVERALL and s.method != BASELINE and s.speedup
    ]
    several = len({s.category for s in per_category}) > 1
    if best_speedup >= HELPS_OVERALL:
        command = run_command(best, options)
        text = f"{best}: "
        mine = [s for s in per_category if s.method == best]
        if several and mine:
            top = max(mine, key=lambda s: s.speedup or 0.0)
            text += f"{top.speedup:.2f}x on {top.category}, "
        text += f"{best_speedup:.2f}x overall; use `{command}`"
        return Recommendation(best, command, text)
    command = run_command(BASELINE, options)
    niche = max(per_category, key=lambda s: s.speedup or 0.0, default=None)
    if several and niche is not None and (niche.speedup or 0.0) >= HELPS_CATEGORY:
        text = (
            f"plain decoding is as fast overall (best: {best} {best_speedup:.2f}x), but "
            f"{niche.method} gives {niche.speedup:.2f}x on {niche.category}: use "
            f"`{run_command(niche.method, options)}` for that kind of input"
        )
        return Recommendation(BASELINE, command, text)
    text = (
        f"speculation does not pay here with these models (best: {best} "
        f"{best_speedup:.2f}x); use `{command}`"
    )
    return Recommendation(BASELINE, command, text)


def caveats(summaries: Sequence[Summary], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Lines worth reading next to the numbers: a noisy machine, outputs that differ."""
    lines = []
    speeds = [
        r["tokens_per_second"]
        for r in rows
        if r["method"] == BASELINE and r["tokens_per_second"] > 0
    ]
    if len(speeds) >= 3 and max(speeds) > NOISY_SPREAD * min(speeds):
        lines.append(
            f"plain decoding ran at {min(speeds):.1f} to {max(speeds):.1f} tok/s across "
            "prompts: the machine was busy or throttling, so speedups are noisy; close other "
            "programs and plug in the charger, and use --repeats to average the noise out"
        )
    for s in summaries:
        if s.category != OVERALL or s.method == BASELINE or not s.compared:
            continue
        differ = s.compared - s.matched
        if differ:
            lines.append(
                f"{s.method}: {differ} of {s.compared} greedy outputs differ from plain "
                "decoding (batched verification can round near-tied logits differently)"
            )
    return lines
