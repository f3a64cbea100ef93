"""The `--json`, `--csv` and `--plot` files, checked before the run and rewritten during it.

Files are replaced atomically (temporary file + rename), so a reader, or a run killed
mid-write, never sees half a file. JSON and CSV are rewritten every few seconds while the
run goes on, so even a killed run leaves its results so far; the JSON says `"interrupted":
true` until the final write, so a partial file never looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from spec_cli.bench.metrics import ROW_FIELDS
from spec_cli.bench.report import Report
from spec_cli.errors import SpecError, UsageError

STDOUT = "-"
# Lists and long text do not fit CSV cells well: positions are joined, text is left out.
_CSV_SKIP = ("text",)


def check_output_path(path: str, option: str) -> None:
    """Fail before a long run, not after it, when `path` cannot be written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{option} {path} is a directory: give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: directory {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path: str, data: bytes) -> None:
    """Replace `path` with `data` atomically, or raise a one-line SpecError."""
    p = Path(path).expanduser()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file private; an output file gets the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise SpecError(f"cannot write {path}: {e.strerror or e}") from None


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
    ) -> None:
        seen: dict[Path, str] = {}
        for path, option in ((json_path, "--json"), (csv_path, "--csv"), (plot_path, "--plot")):
            if path is not None and path != STDOUT:
                check_output_path(path, option)
                resolved = Path(path).expanduser().resolve()
                if resolved in seen:
                    raise UsageError(
                        f"{seen[resolved]} and {option} both write {path}: give each its own file"
                    )
                seen[resolved] = option
        if csv_path == STDOUT or plot_path == STDOUT:
            raise UsageError("only --json can write to standard output (-)")
        if plot_path is not None:
            from spec_cli.bench.plot import check_matplotlib, plot_format

            plot_format(plot_path)
            check_matplotlib()
        self.json_path = json_path
        self.csv_path = csv_path
        self.plot_path = plot_path
        self.interval = interval
        self._last = float("-inf")  # the first update is due at once

    @property
    def json_to_stdout(self) -> bool:
        return self.json_path == STDOUT

    def due(self) -> bool:
        """Whether an in-progress rewrite is due (never for JSON on stdout)."""
        wanted = (self.json_path and not self.json_to_stdout) or self.csv_path
        return bool(wanted) and time.monotonic() - self._last >= self.interval

    def update(self, report: Report) -> None:
        """Rewrite JSON and CSV files with the results so far."""
        self._last = time.monotonic()
        if self.json_path and not self.json_to_stdout:
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
            from spec_cli.bench.plot import plot_bytes, plot_format

            write_file(self.plot_path, plot_bytes(report, plot_format(self.plot_path)))
