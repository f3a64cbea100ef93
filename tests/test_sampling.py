"""Sampling filters on literal arrays, and seeded draws."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import chisquare

from spec_cli.sampling import SamplingParams, choose, probabilities, sample, sample_race

Draw = Callable[[np.ndarray, np.random.Generator], int]

# Logits whose softmax at temperature 1 is exactly [0.5, 0.3, 0.2].
LOG3 = np.log(np.array([0.5, 0.3, 0.2]))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    p: np.ndarray = e / e.sum()
    return p


def test_greedy_is_one_hot_on_the_argmax() -> None:
    p = probabilities(np.array([0.1, 3.0, -2.0, 2.9]), SamplingParams(temperature=0.0))
    assert p.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_greedy_ignores_the_other_filters() -> None:
    params = SamplingParams(temperature=0.0, top_k=2, top_p=0.1, min_p=0.9)
    assert probabilities(np.array([1.0, 5.0, 2.0]), params).tolist() == [0.0, 1.0, 0.0]


def test_temperature_one_is_softmax() -> None:
    p = probabilities(LOG3, SamplingParams(temperature=1.0))
    np.testing.assert_allclose(p, [0.5, 0.3, 0.2])


def test_temperature_scales_logits() -> None:
    logits = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        probabilities(logits, SamplingParams(temperature=0.5)), softmax(logits / 0.5)
    )
    np.testing.assert_allclose(
        probabilities(logits, SamplingParams(temperature=2.0)), softmax(logits / 2.0)
    )


def test_top_k_keeps_the_k_largest() -> None:
    logits = np.array([1.0, 4.0, 2.0, 3.0])
    p = probabilities(logits, SamplingParams(temperature=1.0, top_k=2))
    expected = np.zeros(4)
    expected[[1, 3]] = softmax(np.array([4.0, 3.0]))
    np.testing.assert_allclose(p, expected)


def test_top_k_keeps_ties_at_the_threshold() -> None:
    p = probabilities(np.array([1.0, 3.0, 3.0]), SamplingParams(temperature=1.0, top_k=1))
    np.testing.assert_allclose(p, [0.0, 0.5, 0.5])


def test_top_k_larger_than_vocab_is_a_no_op() -> None:
    p = probabilities(LOG3, SamplingParams(temperature=1.0, top_k=10))
    np.testing.assert_allclose(p, [0.5, 0.3, 0.2])


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.4, [1.0, 0.0, 0.0]),  # the top token alone reaches 0.4
        (0.6, [0.625, 0.375, 0.0]),  # 0.5 < 0.6 <= 0.8
        (0.79, [0.625, 0.375, 0.0]),
        (0.81, [0.5, 0.3, 0.2]),
        (1.0, [0.5, 0.3, 0.2]),
    ],
)
def test_top_p_keeps_the_smallest_prefix_reaching_the_mass(
    top_p: float, expected: list[float]
) -> None:
    # Order of the logits shuffled to check that "prefix" means by probability, not index.
    logits = LOG3[[2, 0, 1]]
    p = probabilities(logits, SamplingParams(temperature=1.0, top_p=top_p))
    np.testing.assert_allclose(p, np.array(expected)[[2, 0, 1]], atol=1e-12)


@pytest.mark.parametrize(
    ("min_p", "expected"),
    [
        (0.0, [0.5, 0.3, 0.2]),
        (0.39, [0.5, 0.3, 0.2]),  # threshold 0.195 < 0.2
        (0.5, [0.625, 0.375, 0.0]),  # threshold 0.25
        (0.7, [1.0, 0.0, 0.0]),  # threshold 0.35
    ],
)
def test_min_p_drops_tokens_below_a_fraction_of_the_top(
    min_p: float, expected: list[float]
) -> None:
    p = probabilities(LOG3, SamplingParams(temperature=1.0, min_p=min_p))
    np.testing.assert_allclose(p, expected, atol=1e-12)


def test_filters_compose_top_k_then_top_p_then_temperature() -> None:
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # top-k 3 -> [0.4, 0.3, 0.2]/0.9; top-p 0.7 needs 0.444 + 0.333 -> 2 kept.
    p = probabilities(logits, SamplingParams(temperature=1.0, top_k=3, top_p=0.7))
    np.testing.assert_allclose(p, [4 / 7, 3 / 7, 0.0, 0.0])


def test_top_p_and_min_p_judge_untempered_probabilities_as_llama_cpp_does() -> None:
    """llama.cpp applies temperature last: at T=0.5 the softmax would be [0.88, 0.12, 0.0]
    and top-p 0.8 would keep one token; on [0.67, 0.24, 0.09] it keeps two, which are
    then tempered."""
    logits = np.array([2.0, 1.0, 0.0])
    p = probabilities(logits, SamplingParams(temperature=0.5, top_p=0.8))
    np.testing.assert_allclose(p, [np.e**2 / (np.e**2 + 1), 1 / (np.e**2 + 1), 0.0])
    # min-p 0.3 on [0.67, 0.24, 0.09]: the threshold 0.2 keeps two; at T=0.5 it would keep one.
    p = probabilities(logits, SamplingParams(temperature=0.5, min_p=0.3))
    np.testing.assert_allclose(p, [np.e**2 / (np.e**2 + 1), 1 / (np.e**2 + 1), 0.0])


def test_a_tiny_temperature_is_all_but_greedy_not_nan() -> None:
    p = probabilities(np.array([1.0, 3.0, 2.0]), SamplingParams(temperature=1e-320))
    assert p.tolist() == [0.0, 1.0, 0.0]


def test_logits_of_minus_infinity_are_never_drawn() -> None:
    p = probabilities(np.array([1.0, -np.inf, 2.0]), SamplingParams(temperature=0.7, top_k=2))
    assert p[1] == 0.0
    assert p.sum() == pytest.approx(1.0)


def test_probabilities_sum_to_one_and_keep_the_argmax() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        logits = rng.standard_normal(32) * 3
        params = SamplingParams(
            temperature=float(rng.uniform(0.1, 2.0)),
            top_k=int(rng.integers(0, 40)),
            top_p=float(rng.uniform(0.05, 1.0)),
            min_p=float(rng.uniform(0.0, 0.99)),
        )
        p = probabilities(logits, params)
        assert p.sum() == pytest.approx(1.0)
        assert (p >= 0).all()
        assert p[int(np.argmax(logits))] > 0


def test_same_seed_same_samples() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    a = [sample(p, np.random.default_rng(42)) for _ in range(5)]
    rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
    seq1 = [sample(p, rng1) for _ in range(200)]
    seq2 = [sample(p, rng2) for _ in range(200)]
    assert seq1 == seq2
    assert len(set(a)) == 1
    assert len(set(seq1)) == 4  # it does vary within a stream


@pytest.mark.parametrize("draw", [sample, sample_race])
def test_sample_never_draws_zero_probability_tokens(draw: Draw) -> None:
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    draws = {draw(p, rng) for _ in range(2000)}
    assert draws == {1, 3}


@pytest.mark.parametrize("draw", [sample, sample_race])
def test_sample_follows_the_distribution(draw: Draw) -> None:
    """Chi-square goodness of fit, 20,000 draws; with this fixed seed the result is
    deterministic, and a correct sampler fails it with probability 1e-4 over seeds."""
    p = np.array([0.05, 0.15, 0.3, 0.5, 0.0])
    rng = np.random.default_rng(2024)
    n = 20_000
    counts = np.bincount([draw(p, rng) for _ in range(n)], minlength=5)
    assert counts[4] == 0
    assert chisquare(counts[:4], p[:4] * n).pvalue > 1e-4


def test_seeded_draws_barely_move_with_float_noise_in_the_logits() -> None:
    """Batched and single-token logits differ by ~0.01 on F32: a seeded draw must not
    depend on it, or a seeded run's text would depend on how its calls were batched. A
    few likely tokens and a long tail, as at a temperature near 1 without top-k."""
    g = np.random.default_rng(1)
    logits = g.normal(size=5000)
    logits[[3, 10, 40]] += [6.0, 5.5, 5.0]
    noisy = logits + g.normal(scale=0.01, size=5000)
    p, q = softmax(logits), softmax(noisy)

    def moved(draw: Draw) -> float:
        seeds = range(2000)
        return float(np.mean([draw(p, rng(s)) != draw(q, rng(s)) for s in seeds]))

    def rng(s: int) -> np.random.Generator:
        return np.random.default_rng(s)

    assert moved(sample_race) < 0.02
    assert moved(sample) > 0.2  # the cumulative walk: why seeded runs race instead


def test_choose_greedy_is_argmax_and_does_not_touch_the_rng() -> None:
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert choose(np.array([0.0, 1.0, 7.0, 2.0]), SamplingParams(), rng) == 2
    assert rng.bit_generator.state == state


def test_choose_sampled_is_seeded() -> None:
    logits = np.array([1.0, 1.1, 0.9, 1.05])
    params = SamplingParams(temperature=1.0)
    a = [choose(logits, params, np.random.default_rng(s)) for s in range(30)]
    b = [choose(logits, params, np.random.default_rng(s)) for s in range(30)]
    assert a == b
    assert len(set(a)) > 1


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=-0.1),
        SamplingParams(temperature=float("nan")),
        SamplingParams(temperature=float("inf")),
        SamplingParams(top_k=-1),
        SamplingParams(top_p=0.0),
        SamplingParams(top_p=1.5),
        SamplingParams(min_p=1.0),
        SamplingParams(min_p=-0.1),
    ],
)
def test_validate_rejects_out_of_range_settings(params: SamplingParams) -> None:
    with pytest.raises(ValueError):
        params.validate()


def test_validate_accepts_defaults() -> None:
    SamplingParams().validate()
    SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05).validate()


def _reference(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """The filters written plainly, with full sorts, to check the fast version against."""
    keep = np.ones(len(logits), dtype=bool)
    if 0 < params.top_k < len(logits):
        keep &= logits >= np.sort(logits)[-params.top_k]
    p = np.where(keep, softmax(np.where(keep, logits, -np.inf)), 0.0)
    if params.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cutoff = int(np.searchsorted(np.cumsum(p[order]), params.top_p)) + 1
        keep &= np.isin(np.arange(len(p)), order[:cutoff])
    if params.min_p > 0.0:
        keep &= p >= params.min_p * p.max()
    return np.where(keep, softmax(np.where(keep, logits / params.temperature, -np.inf)), 0.0)


def test_the_fast_filters_equal_full_sorts_over_large_vocabularies_and_ties() -> None:
    """Top-p sorts only the likeliest tokens; over large rows (peaked and flat), rounded
    logits with many ties, and every filter combination it must keep the same tokens."""
    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.choice([50, 3000, 49152]))
        logits = rng.standard_normal(n) * float(rng.choice([0.5, 3.0, 8.0]))
        if trial % 3 == 0:
            logits = np.round(logits)  # many exact ties
        params = SamplingParams(
            temperature=float(rng.uniform(0.2, 1.5)),
            top_k=int(rng.choice([0, 0, 5, 100])),
            top_p=float(rng.choice([1.0, 0.5, 0.9, 0.99])),
            min_p=float(rng.choice([0.0, 0.0, 0.05])),
        )
        got, want = probabilities(logits, params), _reference(logits, params)
        assert np.array_equal(got > 0, want > 0), (trial, params)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
