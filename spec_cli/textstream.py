"""Token events -> text events: UTF-8 safe streaming and stop strings.

A token may end in the middle of a multi-byte character; its bytes wait in the decoder
until the character is complete, so no replacement characters are ever streamed. Text
that could be the start of a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from spec_cli.events import Event, FinishEvent, RejectedEvent, TokenEvent


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could begin a stop string."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return hold


def stream_text(
    events: Iterator[Event],
    token_bytes: Callable[[int], bytes],
    stops: Sequence[str] = (),
) -> Iterator[Event]:
    """Fill in `text` on token and rejection events; end early at a stop string.

    Each TokenEvent carries the text that became final with it (possibly empty while a
    character or a possible stop string is pending). The FinishEvent's reason is "stop"
    when a stop string matched; the stop string itself is not emitted.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = [s for s in stops if s]
    pending = ""  # decoded but not yet released (possible stop-string prefix)
    # Where in `pending` each token still held back began (tokens whose text is pending).
    starts: list[int] = []
    try:
        for event in events:
            if isinstance(event, TokenEvent):
                starts.append(len(pending))
                pending += decoder.decode(token_bytes(event.token))
                if stops:
                    hit = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                    if hit >= 0:
                        yield replace(event, text=pending[:hit])
                        # Tokens whose text begins at or after the stop made none of the result.
                        unsaid = sum(1 for start in starts if start >= hit)
                        yield FinishEvent("stop", unsaid=unsaid)
                        return
                    keep = _held_back(pending, stops)
                else:
                    keep = 0
                release = pending[: len(pending) - keep]
                pending = pending[len(pending) - keep :]
                starts = [start - len(release) for start in starts if start >= len(release)]
                yield replace(event, text=release)
            elif isinstance(event, RejectedEvent):
                shown = b"".join(token_bytes(t) for t in event.tokens)
                yield replace(event, text=shown.decode("utf-8", errors="replace"))
            elif isinstance(event, FinishEvent):
                yield replace(event, tail=pending + decoder.decode(b"", final=True))
                return
            else:
                yield event
    except KeyboardInterrupt as stop:
        # What was generated is kept: text held back as a possible stop string's start
        # leaves with the interrupt, for the consumer to show and keep (see consume).
        stop.held_back = pending + decoder.decode(b"", final=True)  # type: ignore[attr-defined]
        raise
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
