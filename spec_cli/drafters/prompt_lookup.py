"""Prompt lookup: copy what followed the latest earlier occurrence of the current suffix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spec_cli.drafters.base import Draft
from spec_cli.sampling import SamplingParams


def lookup(tokens: Sequence[int], max_len: int, ngram_max: int = 4, ngram_min: int = 1) -> list[int]:
    """Find the longest suffix n-gram (n from ngram_max down to ngram_min) that occurred
    earlier in `tokens`, at its latest occurrence, and return up to `max_len` tokens that
    followed it."""
    n_tok = len(tokens)
    if max_len <= 0:
        return []
    arr = np.asarray(tokens, dtype=np.int64)
    for n in range(min(ngram_max, n_tok - 1), ngram_min - 1, -1):
        suffix = arr[n_tok - n :]
        # Candidate starts: positions whose first token matches, excluding the suffix itself.
        starts = np.flatnonzero(arr[: n_tok - n] == suffix[0])
        for start in starts[::-1]:
            if np.array_equal(arr[start : start + n], suffix):
                follow = arr[start + n : start + n + max_len]
                if len(follow):
                    return follow.tolist()
    return []


class PromptLookupDrafter:
    """Deterministic drafter over prompt + output; q is one-hot."""

    name = "prompt-lookup"

    def __init__(self, ngram_max: int = 4, ngram_min: int = 1) -> None:
        self.ngram_max = ngram_max
        self.ngram_min = ngram_min

    def begin(self, context: Sequence[int]) -> None:
        pass

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        tokens = lookup(context, max_len, self.ngram_max, self.ngram_min)
        return Draft(tokens, [None] * len(tokens), [1.0] * len(tokens), self.name)

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        pass
