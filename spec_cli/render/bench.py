"""`spec bench` on the terminal: progress on stderr, the report (table, bar chart, advice).

The report is the command's product and goes to stdout (stderr when `--json -` takes
stdout); progress goes to stderr and only when stderr is a terminal, so logs stay clean.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

from spec_cli.bench.metrics import Summary
from spec_cli.bench.report import Report
from spec_cli.bench.runner import BASELINE
from spec_cli.bench.suites import OVERALL, BenchPrompt
from spec_cli.render import counted

BAR_WIDTH = 20
POSITIONS_SHOWN = 8
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, scale: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of `value` on a axis from 0 to `scale`, `width` cells wide."""
    if scale <= 0 or value <= 0:
        return ""
    cells = min(value / scale, 1.0) * width
    full = int(cells)
    rest = _EIGHTHS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + rest).rstrip()


class BenchProgress:
    """A progress bar over all measured generations, on stderr, only on a terminal."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self._progress = Progress(
            # Fixed width: the bar would jump about as prompt ids and methods change.
            TextColumn(
                "{task.description}",
                style="cyan",
                table_column=Column(width=36, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("warming up", total=total)

    def __enter__(self) -> BenchProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, prompt: BenchPrompt, turn: int, repeat: int, method: str) -> None:
        where = f"{prompt.id}" + (f" turn {turn + 1}" if len(prompt.turns) > 1 else "")
        self._progress.update(self._task, description=f"{where} · {method} · run {repeat + 1}")

    def advance(self) -> None:
        self._progress.advance(self._task)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _summary_table(report: Report) -> Table:
    speedups = [s.speedup for s in report.summaries if s.speedup is not None]
    scale = max([1.0, *speedups])
    table = Table(title="Speedup over plain decoding (same prompts, same machine)")
    table.add_column("category", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("tok/s", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column(f"0x … {scale:.1f}x", min_width=BAR_WIDTH, no_wrap=True)
    table.add_column("tok/call", justify="right")
    table.add_column("accept", justify="right")
    table.add_column("draft", justify="right")
    table.add_column("verify", justify="right")
    table.add_column("same", justify="right")
    category = None
    for s in report.summaries:
        if category is not None and s.category != category:
            table.add_section()
        shown = s.category if s.category != category else ""
        category = s.category
        table.add_row(*_cells(s, shown, scale), style="bold" if s.category == OVERALL else None)
    return table


def _cells(s: Summary, category: str, scale: float) -> list[str | Text]:
    speedup = s.speedup
    colour = "" if speedup is None else "green" if speedup >= 1.0 else "red"
    drafting = s.method != BASELINE
    return [
        category,
        s.method,
        f"{s.tokens_per_second:.1f}",
        Text("" if speedup is None else f"{speedup:.2f}x", style=colour),
        Text(bar(speedup or 0.0, scale), style=colour or "dim"),
        f"{s.mean_accepted_length:.2f}",
        # A method that drafted nothing has no acceptance rate (0% would read as all rejected).
        (_pct(s.acceptance_rate) if s.drafted_tokens else "-") if drafting else "",
        _pct(s.draft_seconds / s.decode_seconds if s.decode_seconds else 0.0) if drafting else "",
        _pct(s.verify_seconds / s.decode_seconds if s.decode_seconds else 0.0),
        _pct(s.matches_baseline) if drafting else "",
    ]


def _position_table(report: Report) -> Table | None:
    rows = [
        s
        for s in report.summaries
        if s.category == OVERALL and s.method != BASELINE and s.position_rates()
    ]
    if not rows:
        return None
    width = min(POSITIONS_SHOWN, max(len(s.position_rates()) for s in rows))
    title = "Acceptance by draft position (all prompts)"
    table = Table(title=title, min_width=len(title))  # else rich wraps the title
    table.add_column("method")
    for i in range(width):
        table.add_column(str(i + 1), justify="right")
    for s in rows:
        rates = s.position_rates()[:width]
        table.add_row(s.method, *[_pct(r) for r in rates], *[""] * (width - len(rates)))
    return table


def render_report(console: Console, report: Report) -> None:
    """The summary table, the per-position acceptance, the ceiling and the advice."""
    if not report.summaries:
        console.print(
            "No results: the run stopped before the first generation finished.", soft_wrap=True
        )
        return
    console.print(_summary_table(report))
    positions = _position_table(report)
    if positions is not None:
        console.print(positions)
    console.print(
        Text(
            "tok/s: decode tokens per second; speedup: geometric mean over prompts; "
            "tok/call: tokens per target call; draft/verify: share of decode time; "
            "same: outputs identical to plain decoding",
            style="dim",
        ),
        soft_wrap=True,
    )
    ceiling = report.ceiling
    if ceiling is not None:
        console.print(
            f"Ceiling on this machine: a perfect, free drafter would reach "
            f"[bold]{float(ceiling['speedup']):.2f}x[/] at draft length "
            f"{int(ceiling['draft_length'])} (one target call: "
            f"{float(ceiling['target_call_seconds']) * 1000:.1f} ms)",
            highlight=False,
            soft_wrap=True,
        )
    for line in report.caveats:
        console.print(Text(f"note: {line}", style="yellow"), soft_wrap=True)
    if report.interrupted:
        console.print(
            Text(
                f"interrupted: partial results ({counted(len(report.rows), 'generation')})",
                "yellow",
            ),
            soft_wrap=True,
        )
    if report.recommendation is not None:
        # Soft wrap: a hard line break would split the command the user copies.
        console.print(
            Text.assemble(("Recommendation: ", "bold"), report.recommendation.text),
            soft_wrap=True,
        )
