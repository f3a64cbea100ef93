"""Everything a finished (or interrupted) run reports, computed once for every output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spec_cli.bench.metrics import AGGREGATION, Summary, result_rows, summarize
from spec_cli.bench.recommend import Recommendation, RunOptions, caveats, recommend
from spec_cli.bench.runner import Measurement


@dataclass
class Report:
    """Rows, summaries and advice, plus the run's fixed facts (`header`: machine, models,
    settings, ceiling)."""

    header: dict[str, Any]
    methods: list[str]
    rows: list[dict[str, Any]]
    summaries: list[Summary]
    recommendation: Recommendation | None
    caveats: list[str]
    interrupted: bool
    error: str | None = None  # why the run stopped early, when it failed

    @property
    def ceiling(self) -> dict[str, Any] | None:
        value = self.header.get("ceiling")
        return value if isinstance(value, dict) else None

    def document(self) -> dict[str, Any]:
        """The `--json` object."""
        return {
            **self.header,
            "interrupted": self.interrupted,
            "error": self.error,
            "aggregation": AGGREGATION,
            "recommendation": (
                {
                    "method": self.recommendation.method,
                    "command": self.recommendation.command,
                    "text": self.recommendation.text,
                }
                if self.recommendation
                else None
            ),
            "results": self.rows,
            "summary": [s.as_dict() for s in self.summaries],
        }


def build_report(
    header: dict[str, Any],
    results: Sequence[Measurement],
    methods: Sequence[str],
    *,
    greedy: bool,
    options: RunOptions,
    interrupted: bool,
    error: str | None = None,
) -> Report:
    """Derive rows, summaries and advice from the measurements gathered so far.

    A failed run (`error`) is marked interrupted and gets no recommendation: it stopped at a
    prompt or setting to fix, not where the user chose to stop."""
    rows = result_rows(results, greedy)
    summaries = summarize(results, rows, methods)
    return Report(
        header,
        list(methods),
        rows,
        summaries,
        None if error else recommend(summaries, options),
        caveats(summaries, rows),
        interrupted or error is not None,
        error,
    )
