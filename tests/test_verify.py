"""Verification: exact greedy matching, and rejection sampling that preserves p."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy.stats import chisquare

from spec_cli.sampling import sample
from spec_cli.verify import residual, verify_greedy, verify_sampled

# Each chi-square test below compares N empirical counts with the target distribution.
# The seeds are fixed, so results are deterministic; over random seeds a correct
# implementation would fail any one of them with probability P_MIN (1 in 10,000).
P_MIN = 1e-4
N = 20_000

P1 = np.array([0.1, 0.4, 0.2, 0.3, 0.0])
P2 = np.array([0.25, 0.05, 0.3, 0.1, 0.3])
P3 = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
# Draft distributions deliberately unlike the targets (and covering a token p gives 0).
Q1 = np.array([0.3, 0.1, 0.1, 0.2, 0.3])
Q2 = np.array([0.05, 0.5, 0.05, 0.3, 0.1])


def onehot(i: int, n: int = 5) -> np.ndarray:
    v = np.zeros(n)
    v[i] = 1.0
    return v


# -- greedy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "argmax", "expected"),
    [
        ([1, 2, 3], [1, 2, 3, 4], (3, 4)),  # all accepted, bonus is the last argmax
        ([1, 2, 3], [1, 5, 3, 4], (1, 5)),  # first mismatch at index 1, corrected to 5
        ([1, 2, 3], [9, 2, 3, 4], (0, 9)),  # first token wrong: nothing kept
        ([1, 2, 3], [1, 2, 7, 4], (2, 7)),  # later matches after a mismatch do not count
        ([], [6], (0, 6)),  # no draft: plain decoding
    ],
)
def test_verify_greedy(draft: list[int], argmax: list[int], expected: tuple[int, int]) -> None:
    assert verify_greedy(draft, argmax) == expected


def test_verify_greedy_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        verify_greedy([1, 2], [1, 2])


# -- rejection sampling, hand cases --------------------------------------------------------


def test_residual_is_normalized_positive_part() -> None:
    np.testing.assert_allclose(
        residual(np.array([0.5, 0.5, 0.0]), np.array([1.0, 0.0, 0.0])), [0.0, 1.0, 0.0]
    )
    np.testing.assert_allclose(
        residual(np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])), [0.0, 0.5, 0.5]
    )


def test_residual_of_equal_distributions_falls_back_to_p() -> None:
    p = np.array([0.2, 0.8])
    np.testing.assert_allclose(residual(p, p.copy()), p)


def test_draft_token_certain_under_p_is_always_accepted() -> None:
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n, nxt = verify_sampled([2], [np.full(5, 0.2)], [onehot(2), onehot(4)], rng)
        assert (n, nxt) == (1, 4)  # bonus drawn from the one-hot last row


def test_draft_token_impossible_under_p_is_always_rejected_and_corrected_from_residual() -> None:
    p = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    q = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    seen = set()
    for seed in range(200):
        n, nxt = verify_sampled([2], [q], [p, onehot(0)], np.random.default_rng(seed))
        assert n == 0
        seen.add(nxt)
    assert seen == {0, 1}


def test_deterministic_draft_accepted_with_probability_p_of_the_token() -> None:
    """Acceptance rate for one-hot q is p[x] = 0.3; 4,000 trials give a standard error of
    0.007, and the bound 0.04 is over 5 of them (false alarm below 1e-6)."""
    p = np.array([0.7, 0.3])
    hits = sum(
        verify_sampled([1], [None], [p, p], np.random.default_rng(s))[0] for s in range(4000)
    )
    assert abs(hits / 4000 - 0.3) < 0.04


def test_rejected_deterministic_draft_is_never_re_emitted() -> None:
    """With one-hot q the residual is p without the drafted token."""
    p = np.array([0.2, 0.5, 0.3])
    for seed in range(500):
        n, nxt = verify_sampled([1], [None], [p, p], np.random.default_rng(seed))
        if n == 0:
            assert nxt != 1


def test_sampled_acceptance_probability_is_min_one_p_over_q() -> None:
    """x=0 with p=0.2, q=0.6: acceptance 1/3. Standard error over 6,000 trials is 0.006;
    the bound 0.035 is over 5 of them."""
    p, q = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    hits = sum(verify_sampled([0], [q], [p, p], np.random.default_rng(s))[0] for s in range(6000))
    assert abs(hits / 6000 - 1 / 3) < 0.035


def test_verify_sampled_rejects_mismatched_lengths() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        verify_sampled([1], [None], [P1], rng)
    with pytest.raises(ValueError):
        verify_sampled([1, 2], [None], [P1, P1, P1], rng)


def test_empty_draft_samples_the_target() -> None:
    rng = np.random.default_rng(9)
    counts = np.bincount([verify_sampled([], [], [P2], rng)[1] for _ in range(N)], minlength=5)
    assert chisquare(counts, P2 * N).pvalue > P_MIN


# -- rejection sampling preserves the target distribution ---------------------------------


def _emitted(
    draft: Sequence[int],
    q_rows: Sequence[np.ndarray | None],
    p_rows: Sequence[np.ndarray],
    rng: np.random.Generator,
) -> list[int]:
    n, nxt = verify_sampled(draft, q_rows, p_rows, rng)
    return [*draft[:n], nxt]


def _fit(counts: np.ndarray, p: np.ndarray) -> float:
    """Chi-square p-value of counts against p, over the tokens p allows (others must be 0)."""
    support = p > 0
    assert counts[~support].sum() == 0, "emitted a token the target gives probability 0"
    total = counts.sum()
    return float(chisquare(counts[support], p[support] * total).pvalue)


def test_first_token_follows_p_with_a_sampled_draft() -> None:
    """Draft x ~ Q1, then verify: the first emitted token must be distributed as P1."""
    rng = np.random.default_rng(11)
    counts = np.zeros(5, dtype=int)
    for _ in range(N):
        x = sample(Q1, rng)
        counts[_emitted([x], [Q1], [P1, P2], rng)[0]] += 1
    assert _fit(counts, P1) > P_MIN


def test_first_token_follows_p_with_a_deterministic_drafter() -> None:
    """A drafter that always proposes token 3 (q one-hot, passed as None)."""
    rng = np.random.default_rng(12)
    counts = np.zeros(5, dtype=int)
    for _ in range(N):
        counts[_emitted([3], [None], [P1, P2], rng)[0]] += 1
    assert _fit(counts, P1) > P_MIN


def test_first_token_follows_p_when_q_is_one_hot_array() -> None:
    """The same drafter with its one-hot q given explicitly must behave the same."""
    rng = np.random.default_rng(13)
    counts = np.zeros(5, dtype=int)
    for _ in range(N):
        counts[_emitted([3], [onehot(3)], [P1, P2], rng)[0]] += 1
    assert _fit(counts, P1) > P_MIN


def test_second_and_bonus_positions_follow_p() -> None:
    """Two-token drafts from Q1 then Q2. Whenever this call emits a second token (the first
    draft was accepted) it must follow P2; whenever it emits a third (both accepted, so the
    third is the bonus) it must follow P3. The rows do not depend on earlier tokens, so
    the conditional distributions equal the marginals."""
    rng = np.random.default_rng(14)
    second = np.zeros(5, dtype=int)
    third = np.zeros(5, dtype=int)
    firsts = np.zeros(5, dtype=int)
    for _ in range(N):
        draft = [sample(Q1, rng), sample(Q2, rng)]
        out = _emitted(draft, [Q1, Q2], [P1, P2, P3], rng)
        firsts[out[0]] += 1
        if len(out) >= 2:
            second[out[1]] += 1
        if len(out) == 3:
            third[out[2]] += 1
    assert _fit(firsts, P1) > P_MIN
    assert second.sum() > 2000 and third.sum() > 500  # enough samples to mean something
    assert _fit(second, P2) > P_MIN
    assert _fit(third, P3) > P_MIN


def test_second_position_with_a_deterministic_drafter() -> None:
    """A drafter proposing [1, 2] always: second emitted token (given the first was
    accepted) must follow P2."""
    rng = np.random.default_rng(15)
    second = np.zeros(5, dtype=int)
    for _ in range(N):
        out = _emitted([1, 2], [None, None], [P1, P2, P3], rng)
        if len(out) >= 2:
            second[out[1]] += 1
    assert second.sum() > 5000
    assert _fit(second, P2) > P_MIN


def test_the_chi_square_check_has_power() -> None:
    """Guard against a test that cannot fail: draws from a distribution 0.1 away from P1
    on two tokens are rejected by the same check."""
    rng = np.random.default_rng(16)
    near = np.array([0.2, 0.3, 0.2, 0.3, 0.0])
    counts = np.bincount([sample(near, rng) for _ in range(N)], minlength=5)
    assert _fit(counts, P1) < P_MIN
