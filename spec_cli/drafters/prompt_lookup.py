"""Prompt lookup: copy what followed the latest earlier occurrence of the current suffix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spec_cli.drafters.base import Draft, extends
from spec_cli.sampling import SamplingParams

# How far back the context agrees with the copied place (the bucket's shortest length),
# and the drafter's prior that a copied token is right by how the n-gram before it
# continues at its other occurrences: nowhere else (unique); always with this token
# (consistent); also otherwise, at a place agreeing with the text as long as the copied
# one (a tie: a coin toss between continuations); or otherwise only at places that agree
# less (resolved). A long agreement means text is being copied; a phrase the text always
# continues one way is copied again. Rates measured on the full bench suite's outputs.
_MATCH_BUCKETS = (
    (1, (0.28, 0.55, 0.14, 0.14)),
    (2, (0.55, 0.75, 0.3, 0.3)),
    (3, (0.66, 0.83, 0.3, 0.3)),
    (4, (0.76, 0.9, 0.3, 0.4)),
    (6, (0.83, 0.94, 0.4, 0.5)),
    (10, (0.9, 0.97, 0.45, 0.78)),
    (16, (0.93, 0.97, 0.5, 0.8)),
    (24, (0.95, 0.98, 0.5, 0.82)),
    (32, (0.97, 0.99, 0.6, 0.95)),
    (48, (0.98, 0.99, 0.6, 0.96)),
)
UNIQUE, CONSISTENT, TIE, RESOLVED = range(4)
# Bucket index by agreement length (every length past the last edge is in the last one).
_BUCKET_OF_LENGTH = [
    max([0, *(i for i, (edge, _) in enumerate(_MATCH_BUCKETS) if n >= edge)])
    for n in range(_MATCH_BUCKETS[-1][0] + 1)
]
_LONGEST_CHECK = 32
# Of a suffix's earlier occurrences, the latest this many compete to be copied from.
_CANDIDATES = 16


def match_bucket(length: int, kind: int = UNIQUE) -> tuple[int, float]:
    """(feature, prior) for a copied token after `length` agreeing tokens, whose
    preceding n-gram continues as `kind` (UNIQUE, CONSISTENT, TIE or RESOLVED) elsewhere."""
    bucket = _BUCKET_OF_LENGTH[min(max(length, 0), len(_BUCKET_OF_LENGTH) - 1)]
    return bucket * 4 + kind, _MATCH_BUCKETS[bucket][1][kind]


def agreement(tokens: Sequence[int], pos: int, order: int, end: int | None = None) -> int:
    """How far back the text before `pos` agrees with the text before `end` (default:
    the end of `tokens`), at least `order`, the n-gram already known to match, and at
    most _LONGEST_CHECK."""
    end = len(tokens) if end is None else end
    length = order
    while (
        length < _LONGEST_CHECK
        and pos - length - 1 >= 0
        and tokens[pos - length - 1] == tokens[end - length - 1]
    ):
        length += 1
    return length


def best_place(tokens: Sequence[int], places: Sequence[int], order: int) -> tuple[int, int]:
    """(continuation start, agreement) of the place that agrees longest with the text,
    the latest among equals: when a line recurs, the place being copied is the one
    whose surroundings match, not merely the latest."""
    best, best_len = -1, -1
    for pos in places[-_CANDIDATES:]:
        length = agreement(tokens, pos, order)
        if length >= best_len:
            best, best_len = pos, length
    return best, best_len


def copy_from(tokens: Sequence[int], pos: int, max_len: int) -> list[int]:
    """Up to `max_len` tokens copied from `pos` on. A copy that reaches the end of the
    text goes on from its own start: the text is repeating itself with period
    len(tokens) - pos (a loop, common in greedy decoding), so drafts can be longer than
    one period."""
    out = [int(t) for t in tokens[pos : pos + max_len]]
    period = len(tokens) - pos
    while len(out) < max_len:
        out.append(out[len(out) - period])
    return out


def lookup(
    tokens: Sequence[int], max_len: int, ngram_max: int = 4, ngram_min: int = 1
) -> list[int]:
    """Find the longest suffix n-gram (n from ngram_max down to ngram_min) that occurred
    earlier in `tokens`, at its best-agreeing place (see best_place), and return up to
    `max_len` tokens that followed it. (Reference implementation; the drafter keeps an
    incremental index.)"""
    n_tok = len(tokens)
    if max_len <= 0:
        return []
    arr = np.asarray(tokens, dtype=np.int64)
    for n in range(min(ngram_max, n_tok - 1), ngram_min - 1, -1):
        suffix = arr[n_tok - n :]
        starts = np.flatnonzero(arr[: n_tok - n] == suffix[0])
        places = [int(s) + n for s in starts if np.array_equal(arr[s : s + n], suffix)]
        if places:
            pos, _ = best_place(tokens, places, n)
            return copy_from(tokens, pos, max_len)
    return []


class PromptLookupDrafter:
    """Deterministic drafter over prompt + output; q is one-hot.

    An index from each n-gram to the positions right after its occurrences is extended
    as the context grows, so a step costs a few dict lookups, not a rescan.
    """

    name = "prompt-lookup"

    def __init__(self, ngram_max: int = 4, ngram_min: int = 1) -> None:
        self.ngram_max = ngram_max
        self.ngram_min = ngram_min
        self._places: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(ngram_max + 1)]
        self._indexed = 0  # positions < this have been indexed as continuations
        self._tokens: list[int] = []

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        self._places = [{} for _ in range(self.ngram_max + 1)]
        self._indexed = 0
        self._tokens = []

    def _index(self, context: Sequence[int]) -> None:
        if not extends(self._tokens, context):
            self.begin(context)  # not an extension of what we indexed: start over
        self._tokens.extend(context[len(self._tokens) :])
        end = len(context) - 1  # the final position has no continuation yet
        for j in range(max(self._indexed, 1), end + 1):
            for n in range(1, min(self.ngram_max, j) + 1):
                self._places[n].setdefault(tuple(context[j - n : j]), []).append(j)
        self._indexed = max(self._indexed, end + 1)

    def match(self, context: Sequence[int]) -> tuple[int, int] | None:
        """(continuation start, agreement length) of the best place to copy from."""
        self._index(context)
        size = len(context)
        for n in range(min(self.ngram_max, size - 1), self.ngram_min - 1, -1):
            places = self._places[n].get(tuple(context[size - n :]))
            if places:
                return best_place(context, places, n)
        return None

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        found = self.match(context) if max_len > 0 else None
        if found is None:
            return Draft(source=self.name)
        pos, length = found
        tokens = copy_from(context, pos, max_len)
        period = len(context) - pos
        # Token i is only checked if the i before it were right, and then the text agrees
        # with the copied place over length + i tokens: one curve serves every position.
        # Past the end of the text, a token repeats the one a period before it.
        buckets = [
            match_bucket(length + i, self._continuation_kind(context, pos + i % period, length + i))
            for i in range(len(tokens))
        ]
        features = [f for f, _ in buckets]
        confidence = [c for _, c in buckets]
        return Draft(tokens, [None] * len(tokens), confidence, self.name, features, True)

    def _continuation_kind(self, context: Sequence[int], src: int, agreed: int) -> int:
        """How the n-gram before context[src] continues at its other occurrences, given
        that the text agrees with the place before src over `agreed` tokens."""
        n = min(self.ngram_max, agreed, src)
        places = self._places[n].get(tuple(context[src - n : src]), ())
        if len(places) <= 1:
            return UNIQUE
        token = context[src]
        rivals = [p for p in places[-_CANDIDATES:] if context[p] != token]
        if not rivals:
            return CONSISTENT
        # A rival whose surroundings agree with the text as long as the copied place's
        # is as good a guess; agreement past `agreed` cannot be told apart here.
        reach = min(agreed, _LONGEST_CHECK)
        if any(agreement(context, p, n, src) >= reach for p in rivals):
            return TIE
        return RESOLVED

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        pass
