"""Events the engine yields; renderers and collectors consume them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Origin(str, Enum):
    """Where an emitted token came from."""

    TARGET = "target"  # plain target step: nothing was drafted at this position
    DRAFT = "draft"  # a drafted token the target accepted
    CORRECTION = "correction"  # the target's own token replacing a rejected draft
    BONUS = "bonus"  # the extra target token after a fully accepted draft


@dataclass(frozen=True)
class TokenEvent:
    """One emitted token (`text` is filled in by the text layer, empty at engine level)."""

    token: int
    origin: Origin
    text: str = ""


@dataclass(frozen=True)
class RejectedEvent:
    """Draft tokens the target refused; shown briefly by live renderers."""

    tokens: tuple[int, ...]
    drafter: str
    text: str = ""


@dataclass(frozen=True)
class StepEvent:
    """One draft-verify step, emitted after its tokens."""

    drafter: str
    drafted: int
    accepted: int
    draft_seconds: float
    verify_seconds: float


@dataclass(frozen=True)
class FinishEvent:
    """Generation ended; `reason` is stop, length or interrupted.

    From the engine, `tokens` holds every token generated; a stop string found by the
    text layer ends the stream with a FinishEvent of its own, without them. `tail` is
    text the text layer still held back (a partial stop string) at the end. `unsaid`
    counts the last token events whose text lay wholly in the stop string that ended
    generation: they are not part of the result.
    """

    reason: str
    tokens: tuple[int, ...] = field(default_factory=tuple)
    tail: str = ""
    unsaid: int = 0


Event = TokenEvent | RejectedEvent | StepEvent | FinishEvent
