"""The drafter protocol: propose tokens after a context, learn from the verdict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from spec_cli.sampling import SamplingParams


@dataclass
class Draft:
    """Proposed tokens.

    `probs[i]` is the distribution q the token was sampled from, or None when the drafter
    is deterministic (q one-hot). `confidence[i]` is the drafter's own estimate that token
    i is right given the ones before it; `features[i]` is a small integer describing how
    the token was found (e.g. the matched n-gram order), which cost-aware drafting uses to
    learn how often such tokens are really accepted.
    """

    tokens: list[int] = field(default_factory=list)
    probs: list[npt.NDArray[np.float64] | None] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    source: str = ""
    features: list[int] = field(default_factory=list)
    # Whether the features already tell where in the draft a token lies (so acceptance
    # is not also tracked per draft position).
    features_cover_position: bool = False

    def __len__(self) -> int:
        return len(self.tokens)

    def truncated(self, n: int) -> Draft:
        return Draft(
            self.tokens[:n],
            self.probs[:n],
            self.confidence[:n],
            self.source,
            self.features[:n],
            self.features_cover_position,
        )


def before_end(draft: Draft, is_end: Callable[[int], bool]) -> Draft:
    """`draft` cut at its first end-of-generation token: nothing after an end is ever
    used. A deterministic end token goes too (when the tokens before it are accepted,
    the target's own next token is that end, or another draw from the same
    distribution, at no extra cost). A sampled one stays: dropping a token because of
    the value drawn would skew rejection sampling away from the target's distribution."""
    for i, tok in enumerate(draft.tokens):
        if is_end(tok):
            sampled = i < len(draft.probs) and draft.probs[i] is not None
            return draft.truncated(i + 1 if sampled else i)
    return draft


def within_vocab(draft: Draft, n_vocab: int) -> Draft:
    """`draft` cut at its first token id outside the target's vocabulary: a damaged or
    hand-edited n-gram cache can hold any id, and llama.cpp must never see one."""
    for i, tok in enumerate(draft.tokens):
        if not 0 <= tok < n_vocab:
            return draft.truncated(i)
    return draft


def extends(seen: Sequence[int], context: Sequence[int]) -> bool:
    """Whether `context` continues the tokens an incremental drafter has indexed (checked
    at the last indexed token: contexts only grow within a generation, and a new one
    starts with `begin`)."""
    known = len(seen)
    return len(context) >= known and (known == 0 or context[known - 1] == seen[-1])


class Drafter(Protocol):
    """Anything that can guess the next tokens of a token sequence."""

    name: str

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        """A generation of at most `max_new` tokens (None: unknown) starts from `context`
        (prompt tokens)."""
        ...

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        """Propose up to `max_len` tokens that follow `context`."""
        ...

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        """After verification: `context` now ends with the accepted drafts and one target token."""
        ...

    def close(self) -> None: ...


class NoDrafter:
    """Drafts nothing: plain autoregressive decoding through the speculative loop."""

    name = "none"

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        pass

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        return Draft(source=self.name)

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        pass
