"""The live renderer on a terminal: what the screen shows, through a small emulator."""

from __future__ import annotations

import io
import re

from rich.console import Console

from spec_cli.events import Origin, RejectedEvent, TokenEvent
from spec_cli.render.live import LiveRenderer

_ESCAPE = re.compile(r"\x1b\[([\d;]*)([A-Za-z])")


def screen(output: str, width: int) -> list[str]:
    """The lines a terminal shows for `output`: text, newlines, tab stops every 8
    columns, cursor-left (CSI n D), clear to end of line (CSI K); colours ignored."""
    lines, row, col = [[" "] * width], 0, 0
    i = 0
    while i < len(output):
        m = _ESCAPE.match(output, i)
        if m:
            n, code = int(m.group(1).split(";")[0] or 1), m.group(2)
            if code == "D":
                col = max(col - n, 0)
            elif code == "K":
                lines[row][col:] = [" "] * (width - col)
            i = m.end()
            continue
        ch = output[i]
        i += 1
        if ch == "\n":
            lines.append([" "] * width)
            row, col = row + 1, 0
        elif ch == "\t":
            col = min((col // 8 + 1) * 8, width - 1)
        else:
            if col >= width:
                lines.append([" "] * width)
                row, col = row + 1, 0
            lines[row][col] = ch
            col += 1
    return ["".join(line).rstrip() for line in lines]


def test_tabs_keep_terminal_columns_and_a_refused_guess_is_erased() -> None:
    """A tab-separated answer lines up as it does without colour, and a refused guess
    after tabs stays on its line, so erasing it leaves nothing behind."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=40, color_system="standard")
    r = LiveRenderer(console)
    for text in ["name", "\t", "age", "\t", "city\n", "Carol", "\t", "41", "\t", "Berlin", "\t"]:
        r.handle(TokenEvent(0, Origin.TARGET, text))
    r.handle(RejectedEvent((1, 2), "model", "Germany and the rest of Europe"))
    r.handle(TokenEvent(0, Origin.CORRECTION, "Spain"))
    r.handle(TokenEvent(0, Origin.TARGET, "\n"))
    assert "\t" in out.getvalue()  # what a user copies is the model's text
    assert screen(out.getvalue(), 40)[:2] == [
        "name    age     city",
        "Carol   41      Berlin  Spain",
    ]
