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
    keep = logits > -np.inf
    if 0 < params.top_k < n:
        # argpartition keeps ties arbitrary; the threshold rule keeps all tied values.
        kth = np.partition(logits, n - params.top_k)[n - params.top_k]
        keep &= logits >= kth
    if params.top_p < 1.0 or params.min_p > 0.0:
        p = _softmax(logits, keep)
        if params.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            cum = np.cumsum(p[order])
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            cutoff = int(np.searchsorted(cum, params.top_p)) + 1
            prefix = np.zeros(n, dtype=bool)
            prefix[order[:cutoff]] = True
            keep &= prefix
        if params.min_p > 0.0:
            keep &= p >= params.min_p * p.max()
    return _softmax(logits, keep, params.temperature)


def _softmax(
    logits: npt.NDArray[np.float64], keep: npt.NDArray[np.bool_], temperature: float = 1.0
) -> npt.NDArray[np.float64]:
    """Softmax of logits / temperature over the kept tokens (0 elsewhere)."""
    # Shifting before dividing keeps a tiny temperature from overflowing to inf - inf.
    shifted = np.where(keep, logits - logits[keep].max(), -np.inf)
    with np.errstate(over="ignore"):  # a far-below-top token may reach -inf: weight 0
        p = np.exp(shifted / temperature)
    out: npt.NDArray[np.float64] = p / p.sum()
    return out


def sample(p: npt.NDArray[np.float64], rng: np.random.Generator) -> int:
    """Draw one token id from a probability vector with an explicit generator."""
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), len(p) - 1))


def choose(logits: FloatArray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Pick the next token from one logits row (argmax when greedy)."""
    if params.greedy:
        return int(np.argmax(logits))
    return sample(probabilities(logits, params), rng)
