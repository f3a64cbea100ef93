"""Per-result metrics (speedup against `none` on the same input) and per-category summaries.

Speedup of one result is its decode tokens/s over the `none` result of the same prompt,
turn and repeat. A category's speedup is the geometric mean of its results' speedups:
every prompt counts equally whatever its length, and a 2x win and a 2x loss cancel out.
Tokens/s of a category is total tokens over total decode time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spec_cli.bench.runner import BASELINE, Measurement
from spec_cli.bench.suites import OVERALL
from spec_cli.stats import add_position_counts

AGGREGATION = (
    "speedup: geometric mean of per-result speedups (each result's decode tokens/s over the "
    "`none` result on the same prompt, turn and repeat); tokens_per_second: total generated "
    "tokens / total decode seconds"
)
# The keys of every result record, in order (JSON `results` and CSV columns).
ROW_FIELDS = (
    "method",
    "category",
    "prompt_id",
    "turn",
    "repeat",
    "order",
    "prompt_tokens",
    "generated_tokens",
    "finish_reason",
    "decode_seconds",
    "tokens_per_second",
    "speedup",
    "target_calls",
    "drafted_tokens",
    "accepted_tokens",
    "mean_accepted_length",
    "acceptance_rate",
    "matches_baseline",
    "draft_seconds",
    "verify_seconds",
    "draft_share",
    "verify_share",
    "per_position_acceptance",
    "text",
)


def _key(m: Measurement) -> tuple[str, int, int]:
    return (m.prompt_id, m.turn, m.repeat)


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def result_rows(results: Sequence[Measurement], greedy: bool) -> list[dict[str, Any]]:
    """One flat record per measurement, with speedup and agreement against the baseline.

    `speedup` is None when the baseline of that input is missing (an interrupted run) or
    generated nothing; `matches_baseline` is None unless decoding is greedy (sampled
    outputs legitimately differ).
    """
    baseline = {_key(m): m for m in results if m.method == BASELINE}
    rows = []
    for m in results:
        base = baseline.get(_key(m))
        st = m.stats
        speedup = None
        if base is not None and base.stats.tokens_per_second > 0 and st.tokens_per_second > 0:
            speedup = st.tokens_per_second / base.stats.tokens_per_second
        matches = None
        if greedy and base is not None:
            matches = m.tokens == base.tokens
        rows.append(
            {
                "method": m.method,
                "category": m.category,
                "prompt_id": m.prompt_id,
                "turn": m.turn + 1,
                "repeat": m.repeat + 1,
                "order": m.slot + 1,
                "prompt_tokens": st.prompt_tokens,
                "generated_tokens": st.generated_tokens,
                "finish_reason": m.finish_reason,
                "decode_seconds": st.decode_seconds,
                "tokens_per_second": st.tokens_per_second,
                "speedup": speedup,
                "target_calls": st.target_calls,
                "drafted_tokens": st.drafted_tokens,
                "accepted_tokens": st.accepted_tokens,
                "mean_accepted_length": st.mean_accepted_length,
                "acceptance_rate": st.acceptance_rate,
                "matches_baseline": matches,
                "draft_seconds": st.draft_seconds,
                "verify_seconds": st.verify_seconds,
                "draft_share": _share(st.draft_seconds, st.decode_seconds),
                "verify_share": _share(st.verify_seconds, st.decode_seconds),
                "per_position_acceptance": st.position_rates(),
                "text": m.text,
            }
        )
    return rows


def geometric_mean(values: Sequence[float]) -> float | None:
    """Geometric mean of positive values; None when there are none."""
    logs = [math.log(v) for v in values if v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


@dataclass
class Summary:
    """Aggregates of one method over one category (or OVERALL)."""

    method: str
    category: str
    results: int = 0
    generated_tokens: int = 0
    decode_seconds: float = 0.0
    target_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    speedups: list[float] = field(default_factory=list)
    matched: int = 0
    compared: int = 0
    position_drafted: list[int] = field(default_factory=list)
    position_accepted: list[int] = field(default_factory=list)

    def add(self, m: Measurement, row: dict[str, Any]) -> None:
        st = m.stats
        self.results += 1
        self.generated_tokens += st.generated_tokens
        self.decode_seconds += st.decode_seconds
        self.target_calls += st.target_calls
        self.drafted_tokens += st.drafted_tokens
        self.accepted_tokens += st.accepted_tokens
        self.draft_seconds += st.draft_seconds
        self.verify_seconds += st.verify_seconds
        if row["speedup"] is not None:
            self.speedups.append(row["speedup"])
        if row["matches_baseline"] is not None:
            self.compared += 1
            self.matched += int(row["matches_baseline"])
        add_position_counts(
            self.position_drafted, self.position_accepted, st.position_drafted, st.position_accepted
        )

    @property
    def speedup(self) -> float | None:
        return geometric_mean(self.speedups)

    @property
    def tokens_per_second(self) -> float:
        return _share(self.generated_tokens, self.decode_seconds)

    @property
    def mean_accepted_length(self) -> float:
        # As GenerationStats: what each call yielded, the end-of-text token included.
        return _share(self.accepted_tokens + self.target_calls, self.target_calls)

    @property
    def acceptance_rate(self) -> float:
        return _share(self.accepted_tokens, self.drafted_tokens)

    @property
    def matches_baseline(self) -> float | None:
        """Fraction of outputs equal to the baseline's (None when not compared)."""
        return self.matched / self.compared if self.compared else None

    def position_rates(self) -> list[float]:
        pairs = zip(self.position_drafted, self.position_accepted, strict=True)
        return [_share(a, d) for d, a in pairs]

    def as_dict(self) -> dict[str, Any]:
        """The record written to the `summary` list of `--json`."""
        return {
            "method": self.method,
            "category": self.category,
            "results": self.results,
            "generated_tokens": self.generated_tokens,
            "decode_seconds": self.decode_seconds,
            "tokens_per_second": self.tokens_per_second,
            "speedup": self.speedup,
            "speedup_min": min(self.speedups) if self.speedups else None,
            "speedup_max": max(self.speedups) if self.speedups else None,
            "mean_accepted_length": self.mean_accepted_length,
            "acceptance_rate": self.acceptance_rate,
            "draft_share": _share(self.draft_seconds, self.decode_seconds),
            "verify_share": _share(self.verify_seconds, self.decode_seconds),
            "matches_baseline": self.matches_baseline,
            "per_position_acceptance": self.position_rates(),
        }


def summarize(
    results: Sequence[Measurement], rows: Sequence[dict[str, Any]], methods: Sequence[str]
) -> list[Summary]:
    """Summaries per (category, method) in first-seen category order, then OVERALL per method."""
    table: dict[tuple[str, str], Summary] = {}
    categories = list(dict.fromkeys(m.category for m in results))
    for category in [*categories, OVERALL]:
        for method in methods:
            table[(category, method)] = Summary(method, category)
    for m, row in zip(results, rows, strict=True):
        table[(m.category, m.method)].add(m, row)
        table[(OVERALL, m.method)].add(m, row)
    return [s for s in table.values() if s.results]
