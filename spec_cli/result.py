"""Drive an event stream to its end, collecting the text and tokens it produced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from spec_cli.events import Event, FinishEvent, TokenEvent
from spec_cli.stats import GenerationStats


@dataclass
class Result:
    """What one generation produced."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "interrupted"


def consume(
    events: Iterator[Event],
    handle: Callable[[Event], None] | None = None,
    stats: GenerationStats | None = None,
) -> Result:
    """Feed every event to `handle` and collect the result.

    Ctrl-C (KeyboardInterrupt) ends the stream cleanly: the result keeps what was generated
    and its finish reason is "interrupted". `stats`, the stream's own, counts the tokens
    the result holds as generated.
    """
    parts: list[str] = []
    result = Result()
    try:
        for event in events:
            # Kept before it is shown: a Ctrl-C while showing it must not leave the
            # result without a token whose text it already holds back (see _held_back).
            if isinstance(event, TokenEvent):
                parts.append(event.text)
                if event.token >= 0:
                    result.tokens.append(event.token)
            elif isinstance(event, FinishEvent):
                parts.append(event.tail)
                result.finish_reason = event.reason
                if event.unsaid:
                    del result.tokens[-event.unsaid :]
            if handle is not None:
                handle(event)
    except KeyboardInterrupt as stop:
        result.finish_reason = "interrupted"
        tail = _held_back(events, stop)
        _close(events)
        if tail:  # the text of tokens the result already holds
            parts.append(tail)
            if handle is not None:
                handle(FinishEvent("interrupted", tail=tail))
    except BaseException:
        # A failing consumer (a closed pipe) must close the generator now, while its
        # backend is still open: left to the garbage collector, its cleanup would touch
        # a freed llama.cpp context.
        _close(events)
        raise
    if stats is not None:
        # Generated means what the result holds: an interrupt can land between the
        # engine counting a token and this loop receiving it, and tokens that only made
        # up a stop string are left out of the result.
        stats.generated_tokens = len(result.tokens)
    result.text = "".join(parts)
    return result


def _held_back(events: Iterator[Event], stop: KeyboardInterrupt) -> str:
    """Text the stream held back when Ctrl-C came (see stream_text). An interrupt that
    came while the stream waited for us is passed into it, to the same end."""
    held = getattr(stop, "held_back", None)
    throw = getattr(events, "throw", None)
    if held is None and throw is not None:
        try:
            throw(KeyboardInterrupt())
        except KeyboardInterrupt as again:
            held = getattr(again, "held_back", None)
        except StopIteration:  # the stream ended on it: nothing held back
            pass
    return held if isinstance(held, str) else ""


def _close(events: Iterator[Event]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()
