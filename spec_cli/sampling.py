"""Pure numpy sampling: logits -> filtered probabilities -> a token.

The same `SamplingParams` are applied to the target (p) and the draft (q), which is
what keeps speculative sampling distribution-preserving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; temperature 0 means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    # Set by the engine for a seeded run, whose token at absolute position j is drawn with
    # position_rng(seed, j): a drafter that samples uses the same draws, so its tokens
    # agree with the target's whenever the two distributions are close.
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def validate(self) -> None:
        """Raise ValueError with a user-facing message on out-of-range settings."""
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError("temperature must be a number >= 0")
        if self.top_k < 0:
            raise ValueError("top-k must be >= 0 (0 disables it)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top-p must be in (0, 1]")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError("min-p must be in [0, 1)")


def probabilities(logits: FloatArray, params: SamplingParams) -> npt.NDArray[np.float64]:
    """Turn one row of logits into the distribution the sampler draws from.

    The order is llama.cpp's default chain (so the same flags mean the same thing there):
    top-k, then top-p and min-p on the untempered probabilities, then temperature on the
    tokens left. Greedy settings give a one-hot distribution on the argmax.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = logits.shape[-1]
    if params.greedy:
        out = np.zeros(n)
        out[int(np.argmax(logits))] = 1.0
        return out
    if not 0 < params.top_k < n and params.top_p >= 1.0 and params.min_p <= 0.0:
        return _softmax(logits, params.temperature)  # nothing to filter
    if 0 < params.top_k < n:
        # argpartition keeps ties arbitrary; the threshold rule keeps all tied values.
        kth = np.partition(logits, n - params.top_k)[n - params.top_k]
        ids = np.flatnonzero(logits >= kth)  # candidates in id order
    else:
        ids = np.flatnonzero(logits > -np.inf)
    values = logits[ids]
    if params.top_p < 1.0 or params.min_p > 0.0:
        p = _softmax(values)
        if params.top_p < 1.0:
            chosen = _nucleus(p, params.top_p)
            ids, values, p = ids[chosen], values[chosen], p[chosen]
        if params.min_p > 0.0:
            above = p >= params.min_p * p.max()
            ids, values = ids[above], values[above]
    out = np.zeros(n)
    out[ids] = _softmax(values, params.temperature)
    return out


def _nucleus(p: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.intp]:
    """Indices of the smallest set of most likely tokens whose mass reaches top_p (ties
    in id order, at least one token). Sorts only the likeliest few: a full sort of a
    large vocabulary would cost more than a model step."""
    size = 64
    while True:
        if size >= len(p):
            order = np.argsort(-p, kind="stable")
        else:
            # Every token at least as likely as the size-th likeliest, ties included.
            least = np.partition(p, len(p) - size)[len(p) - size]
            top = np.flatnonzero(p >= least)
            order = top[np.argsort(-p[top], kind="stable")]
        cum = np.cumsum(p[order])
        if cum[-1] >= top_p or size >= len(p):
            return order[: int(np.searchsorted(cum, top_p)) + 1]
        size *= 8


def _softmax(values: npt.NDArray[np.float64], temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Softmax of values / temperature."""
    # Shifting before dividing keeps a tiny temperature from overflowing to inf - inf.
    with np.errstate(over="ignore"):  # a far-below-top token may reach -inf: weight 0
        e = np.exp((values - values.max()) / temperature)
    out: npt.NDArray[np.float64] = e / e.sum()
    return out


def position_rng(seed: int, position: int) -> np.random.Generator:
    """The generator a seeded run draws its token at absolute `position` with."""
    return np.random.default_rng((seed, position))


def sample(p: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """Draw one token id from a probability vector with an explicit generator."""
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), len(p) - 1))


def sample_race(p: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """Draw one token id as the first of independent exponential clocks with rates p.

    The same distribution as `sample` (the Gumbel-max trick), and far steadier under float
    noise in p: the draw changes only when the two earliest clocks are within the noise of
    each other. `sample`'s cumulative walk shifts every boundary by the noise of all the
    mass before it, so a draw landing in a long tail of unlikely tokens moves with noise
    as small as the difference between batched and single-token logits. Seeded runs draw
    this way, so their text does not depend on how the target's calls were batched. It
    costs one random number per token (~0.3 ms for 49k), so unseeded draws keep `sample`.
    """
    clocks = rng.standard_exponential(len(p))
    times = np.divide(clocks, p, out=np.full(len(p), np.inf), where=p > 0)
    return int(np.argmin(times))


def choose(logits: FloatArray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Pick the next token from one logits row (argmax when greedy)."""
    if params.greedy:
        return int(np.argmax(logits))
    return sample(probabilities(logits, params), rng)
