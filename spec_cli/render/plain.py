"""Plain renderer: only the generated text, flushed as it streams (for pipes)."""

from __future__ import annotations

from typing import TextIO

from spec_cli.events import Event, FinishEvent, TokenEvent


class PlainRenderer:
    """Writes token text to `out`; nothing else, no escape codes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, event: Event) -> None:
        if isinstance(event, TokenEvent) and event.text:
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, FinishEvent) and event.tail:
            self.out.write(event.tail)
            self.out.flush()

    def close(self) -> None:
        self.out.flush()
