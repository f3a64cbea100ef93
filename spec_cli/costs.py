"""Verify-cost calibration and the expected-gain choice of draft length.

The cost curve `verify[n-1]` is the time of one target call over n tokens relative to a
single-token call. It is measured once per (model file, threads, GPU layers, llama.cpp
version) and cached, so later runs pay nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from spec_cli.backend.base import Backend

MAX_BATCH = 33  # one pending token plus up to 32 drafts
_PROBE_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 33)


@dataclass(frozen=True)
class CostModel:
    """Relative costs: `verify[n-1]` for a target call over n tokens, `draft_token` for one
    draft-model token, both in units of one single-token target call."""

    verify: tuple[float, ...]
    draft_token: float = 0.0
    target_seconds: float = 0.0  # absolute time of one single-token target call

    def verify_cost(self, n: int) -> float:
        if n <= len(self.verify):
            return self.verify[n - 1]
        # Past the measured range cost grows linearly with the last measured slope.
        slope = self.verify[-1] - self.verify[-2] if len(self.verify) > 1 else 1.0
        return self.verify[-1] + slope * (n - len(self.verify))

    def best_length(
        self, accept: Sequence[float], draft_cost: float = 0.0, sunk: int = 0
    ) -> tuple[int, float]:
        """Draft length k (0..len(accept)) maximizing expected tokens per unit of cost.

        `accept[i]` is the probability that draft token i is accepted given the ones
        before it; each draft token costs `draft_cost` unless it is among the `sunk`
        already-drafted ones. Returns (k, expected speed relative to plain decoding).
        """
        best_k, best = 0, 1.0 / self.verify_cost(1)
        alive, expected = 1.0, 1.0
        for k, a in enumerate(accept, start=1):
            alive *= a
            expected += alive
            cost = self.verify_cost(k + 1) + draft_cost * max(0, k - sunk)
            value = expected / cost
            if value > best:
                best_k, best = k, value
        return best_k, best

    def ceiling(self, max_len: int = MAX_BATCH - 1) -> tuple[int, float]:
        """(length, speedup) of a perfect drafter (always right, free) at its best length."""
        return self.best_length([1.0] * max_len)


def _interpolate(sizes: Sequence[int], times: Sequence[float], upto: int) -> tuple[float, ...]:
    xs = np.asarray(sizes, dtype=float)
    ys = np.asarray(times, dtype=float) / times[0]
    # Costs never shrink with more tokens; measurement noise can make them look like it.
    ys = np.maximum.accumulate(ys)
    return tuple(float(v) for v in np.interp(np.arange(1, upto + 1), xs, ys))


def measure_call(
    backend: Backend, context: Sequence[int], n: int, repeats: int, clock: Callable[[], float]
) -> float:
    """Fastest of `repeats` timings of evaluating n tokens after `context` (cache restored
    after each); the minimum is what the hardware can do, the rest is other tenants."""
    base = len(backend.cached)
    samples = []
    for _ in range(repeats):
        t = clock()
        backend.eval(context[:n], n)
        samples.append(clock() - t)
        backend.truncate(base)
    return float(min(samples))


def calibrate(
    target: Backend,
    draft: Backend | None = None,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> CostModel:
    """Measure the target's verify curve (and the draft model's per-token cost)."""
    probe = _probe_tokens(target)
    saved = list(target.cached)
    target.truncate(0)
    target.eval(probe[:64], 0)
    measure_call(target, probe[64:], 1, 1, clock)  # warm-up
    times = [measure_call(target, probe[64:], n, repeats, clock) for n in _PROBE_SIZES]
    target.truncate(0)
    one = times[0]
    draft_token = 0.0
    if draft is not None:
        dsaved = list(draft.cached)
        draft.truncate(0)
        draft.eval(probe[:64], 0)
        measure_call(draft, probe[64:], 1, 1, clock)
        draft_token = measure_call(draft, probe[64:], 1, repeats * 3, clock) / one
        draft.truncate(0)
        if dsaved:
            draft.eval(dsaved, 0)
    if saved:
        target.eval(saved, 0)
    return CostModel(_interpolate(_PROBE_SIZES, times, MAX_BATCH), draft_token, one)


def _probe_tokens(backend: Backend) -> list[int]:
    """Ordinary text tokens (never special ones) to time calls with."""
    text = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. " * 16
    tokens = backend.tokenize(text, add_bos=False, special=False)
    while len(tokens) < 64 + MAX_BATCH:
        tokens = tokens + tokens
    return tokens
