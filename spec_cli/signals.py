"""Ctrl-C and SIGTERM: both end a generation cleanly (exit 130, output kept), and neither
is lost while llama.cpp is busy in native code."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class Received:
    """Whether SIGTERM came: a loop that goes on after Ctrl-C (chat) must end on it."""

    sigterm = False


@contextmanager
def sigterm_as_interrupt(handled: Callable[[], bool] | None = None) -> Iterator[Received]:
    """SIGTERM raises KeyboardInterrupt, unless `handled()` dealt with it (said True)."""
    received = Received()

    def handler(signum: int, frame: FrameType | None) -> None:
        received.sigterm = True
        if handled is not None and handled():
            return
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C and SIGTERM while native code runs, and raise KeyboardInterrupt after.

    Python cannot raise inside a llama.cpp callback (its log handler runs all through
    model loading): the exception would be printed, dropped, and the load would go on as
    if nothing happened. Here a signal is only recorded; the block gets a function that
    says whether one came (to abort the native work early), and KeyboardInterrupt is
    raised when the block ends.
    """
    pending: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals go to the main one anyway
        yield lambda: False
        return
    try:
        yield lambda: bool(pending)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if pending:
        raise KeyboardInterrupt
