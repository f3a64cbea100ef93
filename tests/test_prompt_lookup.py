"""Prompt lookup on literal token arrays: longest n-gram first, then the place whose
surroundings agree longest with the text, the latest among equals."""

from __future__ import annotations

import numpy as np
import pytest

from spec_cli.drafters.prompt_lookup import PromptLookupDrafter, lookup
from spec_cli.sampling import SamplingParams

RNG = np.random.default_rng(0)


def draft(drafter: PromptLookupDrafter, context: list[int], max_len: int) -> list[int]:
    return drafter.draft(context, max_len, SamplingParams(), RNG).tokens


@pytest.mark.parametrize(
    ("tokens", "max_len", "expected"),
    [
        # Suffix [1, 2] seen at 0: copy what followed it.
        ([1, 2, 3, 4, 1, 2], 3, [3, 4, 1]),
        ([1, 2, 3, 4, 1, 2], 1, [3]),
        # Longest n first: the bigram [1, 2] (followed by 7) beats the later unigram [2]
        # (followed by 1, 2).
        ([5, 2, 9, 1, 2, 7, 2, 1, 2], 2, [7, 2]),
        # Latest occurrence: [1, 2] occurs at 0 and 3; the one at 3 is followed by 9.
        ([1, 2, 8, 1, 2, 9, 1, 2], 2, [9, 1]),
        # [1, 2, 3, 4] occurs twice; the earlier place is also preceded by 9, as the text
        # is, so that is the place being copied: its 8 wins over the latest place's 6.
        ([3, 9, 1, 2, 3, 4, 8, 7, 1, 2, 3, 4, 6, 9, 1, 2, 3, 4], 2, [8, 7]),
        # A copy that reaches the end of the text goes on from its own start: the text
        # repeats with period 2 (a loop), so the draft may be longer than the period.
        ([4, 5, 4, 5], 5, [4, 5, 4, 5, 4]),
        ([7, 1, 2, 3, 1, 2, 3, 1], 6, [2, 3, 1, 2, 3, 1]),
        # A 4-gram match wins over everything shorter.
        ([1, 2, 3, 4, 6, 3, 4, 7, 2, 3, 4, 8, 1, 2, 3, 4], 2, [6, 3]),
        # Nothing repeats: no draft.
        ([1, 2, 3, 4, 5], 4, []),
        ([7], 4, []),
        ([], 4, []),
        ([1, 2, 1, 2], 0, []),
    ],
)
def test_lookup(tokens: list[int], max_len: int, expected: list[int]) -> None:
    assert lookup(tokens, max_len) == expected
    assert draft(PromptLookupDrafter(), tokens, max_len) == expected


def test_ngram_bounds_are_respected() -> None:
    tokens = [9, 1, 2, 3, 9, 5, 2, 3]
    assert lookup(tokens, 2, ngram_max=4, ngram_min=1) == [9, 5]  # bigram [2, 3]
    assert lookup(tokens, 2, ngram_max=1, ngram_min=1) == [9, 5]  # unigram [3] at 3
    assert lookup(tokens, 2, ngram_max=4, ngram_min=3) == []  # no trigram repeats
    assert draft(PromptLookupDrafter(ngram_max=4, ngram_min=3), tokens, 2) == []


def test_a_loop_is_drafted_past_its_period_with_growing_trust() -> None:
    """Greedy decoding often loops; each drafted token of a loop is scored as a copy
    agreeing over one more token than the one before it."""
    loop = [11, 12, 13, 14, 15]
    context = [1, 2, 3, *loop, *loop, *loop[:2]]
    d = PromptLookupDrafter().draft(context, 12, SamplingParams(), RNG)
    assert d.tokens == [13, 14, 15, 11, 12, 13, 14, 15, 11, 12, 13, 14]
    assert len(d.confidence) == len(d.features) == 12
    period = len(loop)
    assert all(d.confidence[i + period] >= d.confidence[i] for i in range(12 - period))


def test_draft_is_deterministic_with_one_hot_q() -> None:
    d = PromptLookupDrafter().draft([1, 2, 3, 1, 2], 4, SamplingParams(temperature=1.0), RNG)
    assert d.tokens == [3, 1, 2, 3]
    assert d.probs == [None] * 4
    assert d.source == "prompt-lookup"
    assert len(d.confidence) == 4


def test_drafter_matches_the_reference_as_the_context_grows() -> None:
    """The drafter indexes incrementally; over a growing context (and after restarts on
    unrelated contexts) it must propose exactly what a full rescan finds."""
    rng = np.random.default_rng(1)
    for trial in range(30):
        drafter = PromptLookupDrafter()
        context = rng.integers(0, 6, size=int(rng.integers(1, 10))).tolist()
        drafter.begin(context)
        for _ in range(40):
            max_len = int(rng.integers(0, 6))
            assert draft(drafter, context, max_len) == lookup(context, max_len), (trial, context)
            context.extend(rng.integers(0, 6, size=int(rng.integers(1, 4))).tolist())
        # Reused for a context that is not an extension of the last one.
        other = rng.integers(0, 6, size=12).tolist()
        assert draft(drafter, other, 3) == lookup(other, 3)


def confidences(context: list[int]) -> list[float]:
    return PromptLookupDrafter().draft(context, 1, SamplingParams(), RNG).confidence


def test_a_phrase_always_continued_one_way_is_trusted_more_than_a_unique_one() -> None:
    """The same one-token match ([5]) is likelier copied right when every earlier [5]
    was followed by the copied token, and less likely when [5] was followed by several
    different tokens: a coin toss between continuations."""
    (unique,) = confidences([9, 5, 7, 8, 5])
    (consistent,) = confidences([9, 5, 7, 8, 5, 7, 3, 5])
    (ambiguous,) = confidences([9, 5, 6, 8, 5, 7, 3, 5])
    assert consistent > unique > ambiguous


def test_a_rival_continuation_counts_less_when_its_surroundings_agree_less() -> None:
    """[1, 2, 3, 5] continues with 6 and with 7. Where the text, like the place before
    6, is preceded by 8, that place is copied; a rival preceded by 9 is a weaker doubt
    than one preceded by 8 as well (a true tie)."""
    (resolved,) = confidences([8, 1, 2, 3, 5, 6, 9, 1, 2, 3, 5, 7, 4, 8, 1, 2, 3, 5])
    (tie,) = confidences([8, 1, 2, 3, 5, 6, 8, 1, 2, 3, 5, 7, 4, 8, 1, 2, 3, 5])
    (unique,) = confidences([8, 1, 2, 3, 5, 6, 9, 4, 4, 4, 4, 7, 4, 8, 1, 2, 3, 5])
    assert unique > resolved > tie


def test_confidence_rises_as_a_copy_agrees_over_more_tokens() -> None:
    prefix = list(range(10, 40))
    d = PromptLookupDrafter().draft([*prefix, 1, *prefix[:3]], 12, SamplingParams(), RNG)
    assert d.tokens == prefix[3:15]
    assert d.confidence == sorted(d.confidence)
    assert d.confidence[0] < 0.8 < d.confidence[-1]
