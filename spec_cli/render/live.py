"""Live terminal renderer: accepted drafts coloured, rejected guesses shown then erased.

A rejected guess is drawn dim red and struck through right after the cursor and stays on
screen until the next step's tokens replace it. Ghost text is kept on the current line
(newlines shown as ⏎, cut at the right margin) so erasing it is a cursor move and a
clear-to-end-of-line, which every terminal supports.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from spec_cli.events import Event, FinishEvent, Origin, RejectedEvent, TokenEvent

STYLES = {
    Origin.DRAFT: "green",
    Origin.BONUS: "cyan",
    Origin.CORRECTION: "",
    Origin.TARGET: "",
}
GHOST_STYLE = "dim red strike"
TAB = 8  # terminals' tab stops


class LiveRenderer:
    """Streams coloured tokens to a rich Console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.column = 0  # cursor column, tracked to keep ghost text on one line
        self.ghost_cells = 0
        self.ghost = ""

    def _write(self, text: str, style: str) -> None:
        # Tabs go to the terminal as they are: rich would expand each to 8 spaces counted
        # from the start of its own print, misaligning columns, losing the tab a user
        # copies, and leaving the tracked column behind the cursor.
        for i, part in enumerate(text.split("\t")):
            if i:
                self.console.file.write("\t")
                self._advance_tab()
            if part:
                self.console.print(Text(part, style=style), end="", soft_wrap=True, highlight=False)
                self._advance(part)

    def _advance(self, text: str) -> None:
        width = max(self.console.width, 1)
        for ch in text:
            if ch == "\n":
                self.column = 0
            else:
                self.column += cell_len(ch)
                if self.column >= width:
                    self.column %= width

    def _advance_tab(self) -> None:
        # The next tab stop; at the right margin a tab stays in the last column.
        last = max(self.console.width, 1) - 1
        self.column = min((self.column // TAB + 1) * TAB, last)

    def _erase_ghost(self) -> None:
        if self.ghost_cells:
            self.console.file.write(f"\x1b[{self.ghost_cells}D\x1b[K")
            self.ghost_cells = 0

    def _draw_ghost(self) -> None:
        room = max(self.console.width - self.column - 1, 0)
        shown = self.ghost.replace("\n", "⏎").replace("\t", " ")
        out = ""
        for ch in shown:
            if cell_len(out + ch) > room:
                break
            out += ch
        if out:
            self.console.print(Text(out, style=GHOST_STYLE), end="", soft_wrap=True)
            self.ghost_cells = cell_len(out)
        self.console.file.flush()

    def handle(self, event: Event) -> None:
        if isinstance(event, RejectedEvent):
            self._erase_ghost()
            self.ghost = event.text
            self._draw_ghost()
        elif isinstance(event, TokenEvent):
            self._erase_ghost()
            self._write(event.text, STYLES[event.origin])
            if event.origin is Origin.CORRECTION and self.ghost:
                self._draw_ghost()  # keep the refused guess in view until the next step
            else:
                self.ghost = ""
            self.console.file.flush()
        elif isinstance(event, FinishEvent):
            self._erase_ghost()
            self.ghost = ""
            self._write(event.tail, "")
            self.console.file.flush()

    def close(self) -> None:
        self._erase_ghost()
        if self.column:
            self.console.print()
        self.console.file.flush()
