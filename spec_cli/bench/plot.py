"""`--plot FILE` (.png, .svg or .pdf): speedup by category and method, and acceptance by
draft position.

matplotlib is optional (`pip install 'spec-cli[plot]'`) and imported only here, with the
Agg backend, so no display is needed and `spec --help` never pays for it.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from spec_cli.bench.report import Report
from spec_cli.bench.runner import BASELINE
from spec_cli.bench.suites import OVERALL
from spec_cli.errors import UsageError

MAX_POSITIONS = 16
FORMATS = ("png", "svg", "pdf")  # chosen by the file's extension


def check_matplotlib() -> None:
    """Fail early, with the install command, when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            "--plot needs matplotlib: pip install 'spec-cli[plot]' (or pip install matplotlib)"
        )


def plot_format(path: str) -> str:
    """The image format `path`'s extension asks for; a UsageError for any other."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        names = ", ".join(f".{f}" for f in FORMATS[:-1]) + f" or .{FORMATS[-1]}"
        raise UsageError(f"--plot {path}: give a file name ending in {names}")
    return fmt


def plot_bytes(report: Report, fmt: str = "png") -> bytes:
    """An image (`fmt`: one of FORMATS) with two panels: grouped speedup bars, and
    acceptance rate per draft position."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    categories = list(dict.fromkeys(s.category for s in report.summaries))
    # `none` is the 1.0 line itself; bars only for the methods compared against it.
    methods = [
        m for m in report.methods if m != BASELINE and any(s.method == m for s in report.summaries)
    ]
    speed = {(s.category, s.method): s.speedup for s in report.summaries}

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(8.0, 1.2 * len(categories) + 6.0), 4.5), constrained_layout=True
    )
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [c + (i - (len(methods) - 1) / 2) * width for c in range(len(categories))]
        ys = [speed.get((cat, method)) or 0.0 for cat in categories]
        left.bar(xs, ys, width, label=method)
    left.axhline(1.0, color="black", linewidth=0.8, label="none (plain decoding)")
    ceiling = report.ceiling
    if ceiling is not None:
        left.axhline(
            float(ceiling["speedup"]),
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label=f"ceiling ({float(ceiling['speedup']):.2f}x)",
        )
    left.set_xticks(range(len(categories)))
    left.set_xticklabels(categories, rotation=30, ha="right")
    left.set_ylabel("speedup vs none (geometric mean)")
    left.set_title("Speedup by category")
    left.legend(fontsize="small")

    for s in report.summaries:
        if s.category != OVERALL or s.method == BASELINE:
            continue
        rates = s.position_rates()[:MAX_POSITIONS]
        if rates:
            right.plot(range(1, len(rates) + 1), rates, marker="o", label=s.method)
    right.set_xlabel("draft position")
    right.set_ylabel("acceptance rate")
    right.set_ylim(0.0, 1.05)
    right.set_title("Acceptance by draft position (all prompts)")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize="small")

    machine = report.header.get("machine") or {}
    fig.suptitle(f"spec bench: {machine.get('cpu', '')}", fontsize="medium")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()
