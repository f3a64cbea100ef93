"""Choosing a renderer for stdout, and the end-of-run report (JSON on stdout, stats on stderr)."""

from __future__ import annotations

import json
import sys
from typing import Protocol

from spec_cli.events import Event
from spec_cli.render import counted
from spec_cli.result import Result
from spec_cli.stats import GenerationStats


class Renderer(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def make_renderer(color: str, json_out: bool) -> Renderer | None:
    """Live colours on a terminal (or with --color always), plain text in pipes, nothing
    under --json (stdout then holds only the final object)."""
    if json_out:
        return None
    if color == "always" or (color == "auto" and sys.stdout.isatty()):
        from rich.console import Console

        from spec_cli.render.live import LiveRenderer

        return LiveRenderer(Console(file=sys.stdout, force_terminal=True, highlight=False))
    from spec_cli.render.plain import PlainRenderer

    return PlainRenderer(sys.stdout)


def stats_line(stats: GenerationStats) -> str:
    """One human-readable summary line."""
    line = (
        f"{stats.generated_tokens} tokens in {stats.decode_seconds:.2f}s "
        f"({stats.tokens_per_second:.1f} tok/s) | prompt {stats.prompt_tokens} tokens "
        f"in {stats.prefill_seconds:.2f}s | {stats.target_calls} target calls, "
        f"{stats.mean_accepted_length:.2f} tokens/call"
    )
    if stats.drafted_tokens:
        line += (
            f" | accepted {stats.accepted_tokens}/{stats.drafted_tokens} drafts "
            f"({stats.acceptance_rate:.0%})"
        )
    return line


def drafter_lines(stats: GenerationStats) -> list[str]:
    """One line per drafter whose drafts were verified: how many, and how many passed."""
    lines = []
    for name, c in sorted(stats.per_drafter.items()):
        rate = c.accepted / c.drafted if c.drafted else 0.0
        lines.append(
            f"  {name}: {counted(c.steps, 'draft')}, accepted {c.accepted}/{c.drafted} ({rate:.0%})"
        )
    return lines


def stats_report(stats: GenerationStats) -> str:
    """The multi-line `--stats` block: the summary, then per-drafter and timing detail."""
    lines = [stats_line(stats)]
    lines.extend(drafter_lines(stats))
    if stats.target_calls:
        lines.append(
            f"  steps without a draft: {stats.steps_without_draft}/{stats.target_calls}; "
            f"draft {stats.draft_seconds:.2f}s, verify {stats.verify_seconds:.2f}s"
        )
    rates = stats.position_rates()
    if rates:
        shown = " ".join(f"{r:.0%}" for r in rates[:16])
        lines.append(f"  acceptance by draft position: {shown}")
    return "\n".join(lines)


def finish_report(
    result: Result,
    stats: GenerationStats,
    *,
    model: str,
    draft_model: str | None,
    drafter: str,
    json_out: bool,
    show_stats: bool,
) -> None:
    """Print the JSON object (stdout) and/or the statistics (stderr)."""
    if json_out:
        payload = {
            "text": result.text,
            "tokens": result.tokens,
            "finish_reason": result.finish_reason,
            "model": model,
            "draft_model": draft_model,
            "drafter": drafter,
            "stats": stats.as_dict(),
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if show_stats:
        sys.stderr.write(stats_report(stats) + "\n")
        sys.stderr.flush()
