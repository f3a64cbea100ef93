"""Pure numpy sampling: logits -> filtered probabilities -> a token.

The same `SamplingParams` are applied to the target (p) and the draft (q), which is
what keeps speculative sampling distribution-preserving.
"""

from __future__ import annotations

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
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top-k must be >= 0 (0 disables it)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top-p must be in (0, 1]")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError("min-p must be in [0, 1)")


def probabilities(logits: FloatArray, params: SamplingParams) -> npt.NDArray[np.float64]:
    """Turn one row of logits into the distribution the sampler draws from.

    Order follows llama.cpp's common chain: top-k, then temperature, top-p, min-p.
    Greedy settings give a one-hot distribution on the argmax.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = logits.shape[-1]
    if params.greedy:
        out = np.zeros(n)
        out[int(np.argmax(logits))] = 1.0
        return out
    keep = np.ones(n, dtype=bool)
    if 0 < params.top_k < n:
        # argpartition keeps ties arbitrary; the threshold rule keeps all tied values.
        kth = np.partition(logits, n - params.top_k)[n - params.top_k]
        keep &= logits >= kth
    scaled = np.where(keep, logits / params.temperature, -np.inf)
    scaled -= scaled.max()
    p = np.exp(scaled)
    p /= p.sum()
    if params.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        cutoff = int(np.searchsorted(cum, params.top_p)) + 1
        mask = np.zeros(n, dtype=bool)
        mask[order[:cutoff]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    if params.min_p > 0.0:
        p = np.where(p >= params.min_p * p.max(), p, 0.0)
        p /= p.sum()
    return p


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
