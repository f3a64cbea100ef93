"""Accumulators for a generation: counts, acceptance, per-position rates and timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spec_cli.events import StepEvent


@dataclass
class DrafterCounts:
    drafted: int = 0
    accepted: int = 0
    steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        rate = self.accepted / self.drafted if self.drafted else 0.0
        return {
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": rate,
        }


def add_position_counts(
    drafted: list[int], accepted: list[int], more_drafted: list[int], more_accepted: list[int]
) -> None:
    """Add per-position draft counts into `drafted`/`accepted`, growing them as needed."""
    for i, (d, a) in enumerate(zip(more_drafted, more_accepted, strict=True)):
        if i >= len(drafted):
            drafted.append(0)
            accepted.append(0)
        drafted[i] += d
        accepted[i] += a


_SUMMED = (
    "prompt_tokens",
    "generated_tokens",
    "target_calls",
    "drafted_tokens",
    "accepted_tokens",
    "steps_without_draft",
    "prefill_seconds",
    "decode_seconds",
    "draft_seconds",
    "verify_seconds",
    "wall_seconds",
)


@dataclass
class GenerationStats:
    """Everything `--stats` and `--json` report about one generation."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    target_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    steps_without_draft: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    wall_seconds: float = 0.0
    per_drafter: dict[str, DrafterCounts] = field(default_factory=dict)
    # Index i: how many drafts reached length i + 1, and how many of those kept token i.
    position_drafted: list[int] = field(default_factory=list)
    position_accepted: list[int] = field(default_factory=list)

    def record_step(self, step: StepEvent) -> None:
        """Fold one draft-verify step into the totals."""
        self.target_calls += 1
        self.drafted_tokens += step.drafted
        self.accepted_tokens += step.accepted
        self.draft_seconds += step.draft_seconds
        self.verify_seconds += step.verify_seconds
        if step.drafted == 0:
            self.steps_without_draft += 1
            return
        counts = self.per_drafter.setdefault(step.drafter, DrafterCounts())
        counts.steps += 1
        counts.drafted += step.drafted
        counts.accepted += step.accepted
        while len(self.position_drafted) < step.drafted:
            self.position_drafted.append(0)
            self.position_accepted.append(0)
        for i in range(step.drafted):
            self.position_drafted[i] += 1
            if i < step.accepted:
                self.position_accepted[i] += 1

    def merge(self, other: GenerationStats) -> None:
        """Add another generation's totals (used for session-wide chat stats)."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, c in other.per_drafter.items():
            mine = self.per_drafter.setdefault(key, DrafterCounts())
            mine.drafted += c.drafted
            mine.accepted += c.accepted
            mine.steps += c.steps
        add_position_counts(
            self.position_drafted,
            self.position_accepted,
            other.position_drafted,
            other.position_accepted,
        )

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens each target call yielded, on average: its accepted drafts plus its own
        token (1.0 for plain decoding, also when that token is the end of the text)."""
        calls = self.target_calls
        return (self.accepted_tokens + calls) / calls if calls else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def position_rates(self) -> list[float]:
        pairs = zip(self.position_drafted, self.position_accepted, strict=True)
        return [a / d if d else 0.0 for d, a in pairs]

    def as_dict(self) -> dict[str, Any]:
        """The `stats` object of `--json`."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "target_calls": self.target_calls,
            "drafted_tokens": self.drafted_tokens,
            "accepted_tokens": self.accepted_tokens,
            "acceptance_rate": self.acceptance_rate,
            "mean_accepted_length": self.mean_accepted_length,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "wall_seconds": self.wall_seconds,
            "tokens_per_second": self.tokens_per_second,
            "draft_seconds": self.draft_seconds,
            "verify_seconds": self.verify_seconds,
            "steps_without_draft": self.steps_without_draft,
            "per_drafter": {k: v.as_dict() for k, v in sorted(self.per_drafter.items())},
            "per_position_acceptance": self.position_rates(),
            # How many drafts reached each position: what each rate is out of.
            "per_position_drafted": list(self.position_drafted),
        }
