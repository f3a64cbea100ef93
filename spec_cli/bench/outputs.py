"""The `--json`, `--csv` and `--plot` files, checked before the run and rewritten during it.

Files are replaced atomically (temporary file + rename), so a reader, or a run killed
mid-write, never sees half a file. JSON and CSV are rewritten every few seconds while the
run goes on, so even a killed run leaves its results so far; the JSON says `"interrupted":
true` until the final write, so a partial file never looks complete.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spec_cli.bench.metrics import ROW_FIELDS
from spec_cli.bench.report import Report
from spec_cli.errors import UsageError
from spec_cli.outfiles import check_output, write_file

STDOUT = "-"
# Lists and long text do not fit CSV cells well: positions are joined, text is left out.
_CSV_SKIP = ("text",)


def json_bytes(report: Report) -> bytes:
    return (json.dumps(report.document(), indent=1, ensure_ascii=False) + "\n").encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(f"{v:.4f}" for v in value)
    return value


def csv_bytes(report: Report) -> bytes:
    """One row per result, columns as in the JSON results (text left out)."""
    buf = io.StringIO()
    columns = [k for k in ROW_FIELDS if k not in _CSV_SKIP]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in report.rows:
        writer.writerow([_cell(row[k]) for k in columns])
    return buf.getvalue().encode()


class OutputFiles:
    """The files a run writes; `update` rewrites JSON/CSV at most every `interval` seconds."""

    def __init__(
        self,
        json_path: str | None,
        csv_path: str | None,
        plot_path: str | None,
        interval: float = 2.0,
        force: bool = False,
        inputs: Sequence[str] = (),
    ) -> None:
        seen: dict[Path, str] = {}
        files: dict[str, Path | None] = {}
        for path, option in ((json_path, "--json"), (csv_path, "--csv"), (plot_path, "--plot")):
            files[option] = None
            if path is not None and path != STDOUT:
                real = check_output(path, option=option, force=force, inputs=inputs)
                resolved = real.resolve()
                if resolved in seen:
                    raise UsageError(
                        f"{seen[resolved]} and {option} both write {path}: give each its own file"
                    )
                seen[resolved] = option
                files[option] = real
        if csv_path == STDOUT or plot_path == STDOUT:
            raise UsageError("only --json can write to standard output (-)")
        self.plot_format = ""
        if plot_path is not None:
            from spec_cli.bench.plot import check_matplotlib, plot_format

            # From the name given: a link named chart.png may lead to a file named otherwise.
            self.plot_format = plot_format(plot_path)
            check_matplotlib()
        self.json_to_stdout = json_path == STDOUT
        self.json_path = files["--json"]
        self.csv_path = files["--csv"]
        self.plot_path = files["--plot"]
        self.interval = interval
        self._last = float("-inf")  # the first update is due at once

    def due(self) -> bool:
        """Whether an in-progress rewrite is due (never for JSON on stdout)."""
        wanted = self.json_path or self.csv_path
        return bool(wanted) and time.monotonic() - self._last >= self.interval

    def update(self, report: Report) -> None:
        """Rewrite JSON and CSV files with the results so far."""
        self._last = time.monotonic()
        if self.json_path:
            write_file(self.json_path, json_bytes(report))
        if self.csv_path:
            write_file(self.csv_path, csv_bytes(report))

    def finish(self, report: Report) -> None:
        """Final files: JSON (to stdout with `-`), CSV and the plot."""
        self.update(report)
        if self.json_to_stdout:
            sys.stdout.buffer.write(json_bytes(report))
            sys.stdout.flush()
        if self.plot_path:
            from spec_cli.bench.plot import plot_bytes

            write_file(self.plot_path, plot_bytes(report, self.plot_format))
