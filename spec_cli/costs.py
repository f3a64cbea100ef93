"""Verify-cost calibration and the expected-gain choice of draft length.

The cost curve `verify[n-1]` is the time of one target call over n tokens relative to a
single-token call. It is measured once per (model file, threads, GPU layers, llama.cpp
version) and cached, so later runs pay nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from spec_cli.backend.base import Backend

MAX_BATCH = 33  # one pending token plus up to 32 drafts
PROBE_CONTEXT = 192  # tokens already cached when timing (a typical prompt's worth)
_PROBE_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 33)
DRAFT_PROBE = 32  # tokens of the draft model's long call (catching up on a copy)


class Plan(NamedTuple):
    """How to use a draft: send `now` of its `planned` tokens (the rest on the next step,
    once the target's own token has checked the one in between); its value in expected
    tokens per unit of cost, and its expected cost."""

    now: int
    planned: int
    value: float
    cost: float


@dataclass(frozen=True)
class CostModel:
    """Relative costs: `verify[n-1]` for a target call over n tokens, `draft_token` for one
    draft-model token, `draft_batch_token` for each further token of a draft-model call
    over many (catching up on text it has not read), all in units of one single-token
    target call."""

    verify: tuple[float, ...]
    draft_token: float = 0.0
    target_seconds: float = 0.0  # absolute time of one single-token target call
    draft_batch_token: float = 0.0

    def catch_up_cost(self, n: int) -> float:
        """Cost of one draft-model call over n tokens."""
        return 0.0 if n <= 0 else self.draft_token + (n - 1) * self.draft_batch_token

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
        before it; each draft token costs `draft_cost`. The first `sunk` were drafted
        already: their cost is spent whatever k is chosen, and it still counts, since the
        step's time includes it (leaving it out would make stopping look better than it
        is). Returns (k, expected speed relative to plain decoding).
        """
        best_k, best = 0, 1.0 / (self.verify_cost(1) + draft_cost * sunk)
        alive, expected = 1.0, 1.0
        for k, a in enumerate(accept, start=1):
            alive *= a
            expected += alive
            cost = self.verify_cost(k + 1) + draft_cost * max(k, sunk)
            value = expected / cost
            if value > best:
                best_k, best = k, value
        return best_k, best

    def best_split(self, accept: Sequence[float]) -> Plan:
        """The best plan for a cheap draft whose token i is accepted with probability
        `accept[i]` given those before it.

        A plan of K tokens either sends them all in this call, or sends the first j now
        and leaves token j + 1 to the target: every call emits one token of its own,
        which checks the doubtful token for free, and only if it agrees does the next
        call send the rest. Splitting at a doubtful token that precedes confident ones
        pays: the long tail is verified only once it is likely to be wanted, and
        re-planning each step splits again where needed. Either way the plan emits the
        same tokens on average (those up to the first wrong one, and one more), so plans
        compare by expected tokens per unit of expected cost, plain decoding included.
        """
        n = len(accept)
        cost = self._curve(n + 1)  # cost[m - 1]: a call over m tokens
        plain = Plan(0, 0, 1.0 / float(cost[0]), float(cost[0]))
        if n == 0:
            return plain
        alive = np.cumprod(accept)  # P(tokens 0..i all right)
        tokens = 1.0 + np.cumsum(alive)  # [K - 1]: expected tokens of a K-token plan
        whole = tokens / cost[1:]
        k = int(np.argmax(whole))
        best = Plan(k + 1, k + 1, float(whole[k]), float(cost[k + 1]))
        if best.value <= plain.value:
            best = plain
        # [j, K - 1]: send j now (j < K); with token j + 1 confirmed, K - j - 1 next.
        later, invalid = _split_grid(n)
        split_cost = cost[:n, None] + alive[:, None] * cost[later]
        split = tokens[None, :] / split_cost
        split[invalid] = 0.0
        j, planned = divmod(int(np.argmax(split)), n)
        if split[j, planned] > best.value:
            best = Plan(j, planned + 1, float(split[j, planned]), float(split_cost[j, planned]))
        return best

    def _curve(self, n: int) -> npt.NDArray[np.float64]:
        """verify_cost(1..n) as an array (kept for the usual lengths: planning runs
        every step)."""
        if n > MAX_BATCH + 1:
            return np.array([self.verify_cost(m) for m in range(1, n + 1)])
        return self._usual_curve[:n]

    @cached_property
    def _usual_curve(self) -> npt.NDArray[np.float64]:
        return np.array([self.verify_cost(m) for m in range(1, MAX_BATCH + 2)])

    def break_even(self, max_len: int) -> float:
        """The first drafted token's acceptance below which no draft of up to `max_len`
        tokens pays, however sure the tokens after it are: with them always accepted,
        k tokens beat none only if 1 + k * p > verify_cost(k + 1)."""
        return min(
            ((self.verify_cost(k + 1) - 1.0) / k for k in range(1, max_len + 1)),
            default=1.0,
        )

    def ceiling(self, max_len: int = MAX_BATCH - 1) -> tuple[int, float]:
        """(length, speedup) of a perfect drafter (always right, free) at its best length."""
        return self.best_length([1.0] * max_len)


@lru_cache(maxsize=64)
def _split_grid(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """For plans of up to n tokens split after j of them ([j, K - 1]): the size of the
    second call's draft (K - j - 1), and where j >= K (no such plan)."""
    j = np.arange(n)[:, None]
    planned = np.arange(1, n + 1)[None, :]
    return np.maximum(planned - j - 1, 0), planned <= j


def _interpolate(sizes: Sequence[int], times: Sequence[float], upto: int) -> tuple[float, ...]:
    xs = np.asarray(sizes, dtype=float)
    ys = np.asarray(times, dtype=float) / times[0]
    # n tokens in one call cost at least one call and at most n calls; noise can make a
    # measurement look otherwise, and costs never shrink with more tokens.
    ys = np.maximum.accumulate(np.clip(ys, 1.0, xs))
    return tuple(float(v) for v in np.interp(np.arange(1, upto + 1), xs, ys))


def _time_call(
    backend: Backend, tokens: Sequence[int], clock: Callable[[], float], n_logits: int = 0
) -> float:
    """Seconds of one call over `tokens` with logits for the last `n_logits` (all: 0)."""
    base = len(backend.cached)
    t = clock()
    backend.eval(tokens, n_logits or len(tokens))
    elapsed = clock() - t
    backend.truncate(base)
    return elapsed


def calibrate(
    target: Backend,
    draft: Backend | None = None,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> CostModel:
    """Measure the target's verify curve (and the draft model's per-token cost).

    Sizes are measured interleaved, `repeats` rounds, keeping each size's fastest time:
    a busy machine slows some calls, never speeds one up, and interleaving keeps a burst
    of load from skewing one size (above all the single-token time everything is
    relative to).
    """
    probe = _probe_tokens(target)
    context, batch = probe[:PROBE_CONTEXT], probe[PROBE_CONTEXT:]
    backends = [target] if draft is None else [target, draft]
    saved = [list(b.cached) for b in backends]
    for b in backends:
        b.truncate(0)
        b.eval(context, 0)
        _time_call(b, batch[:1], clock)  # warm-up
    best = dict.fromkeys(_PROBE_SIZES, float("inf"))
    draft_best = draft_batch = float("inf")
    for _ in range(repeats):
        for n in _PROBE_SIZES:
            best[n] = min(best[n], _time_call(target, batch[:n], clock))
            if n == 1:  # the normalizer: measure it more often
                best[1] = min(best[1], _time_call(target, batch[:1], clock))
        if draft is not None:
            for _ in range(3):
                draft_best = min(draft_best, _time_call(draft, batch[:1], clock))
            # A catch-up needs the last token's logits only.
            long_call = _time_call(draft, batch[:DRAFT_PROBE], clock, n_logits=1)
            draft_batch = min(draft_batch, long_call)
    for b, cached in zip(backends, saved, strict=True):
        b.truncate(0)
        if cached:
            b.eval(cached, 0)
    one = best[1]
    times = [best[n] for n in _PROBE_SIZES]
    if draft is None:
        return CostModel(_interpolate(_PROBE_SIZES, times, MAX_BATCH), 0.0, one)
    # The extra tokens of a long call, each: never negative, whatever the noise.
    per_extra = max(0.0, draft_batch - draft_best) / (DRAFT_PROBE - 1)
    return CostModel(
        _interpolate(_PROBE_SIZES, times, MAX_BATCH), draft_best / one, one, per_extra / one
    )


def _probe_tokens(backend: Backend) -> list[int]:
    """Ordinary text tokens (never special ones) to time calls with."""
    text = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. " * 16
    tokens = backend.tokenize(text, add_bos=False, special=False)
    while len(tokens) < PROBE_CONTEXT + MAX_BATCH:
        tokens = tokens + tokens
    return tokens


def _low_quantile(values: deque[float]) -> float:
    """The lower quartile: what the hardware does when nothing else interferes."""
    ordered = sorted(values)
    return ordered[len(ordered) // 4]


class OnlineCosts:
    """The calibrated curve, corrected by the verify times seen while generating.

    Machines change under a running program (other tenants, thermal limits), so the
    single-call time is re-estimated from recent plain steps, and the extra cost of
    longer calls (verify(n) - 1) is scaled by one factor fitted to recent drafted steps;
    the calibration keeps the curve's shape and acts as a prior worth PRIOR_WEIGHT
    observations. Recent times are summarized by a low quantile, which is what the
    hardware does when nothing interferes.
    """

    WINDOW = 32
    PRIOR_WEIGHT = 8.0
    REFRESH_EVERY = 24  # refits are cheap but not free; the machine changes slowly

    def __init__(self, prior: CostModel) -> None:
        self.prior = prior
        self.model = prior
        self._seen: dict[int, deque[float]] = {}
        self._draft: deque[float] = deque(maxlen=self.WINDOW)
        self._pending = 0

    def observe_draft(self, seconds: float) -> None:
        """Record one single-token draft-model call (the marginal cost of a draft token)."""
        if seconds > 0:
            self._draft.append(seconds)

    def observe(self, n: int, seconds: float) -> None:
        """Record that a target call over n tokens took `seconds`."""
        if n < 1 or seconds <= 0:
            return
        self._seen.setdefault(n, deque(maxlen=self.WINDOW)).append(seconds)
        self._pending += 1
        if self._pending >= self.REFRESH_EVERY:
            self._pending = 0
            self.model = self._refit()

    def _refit(self) -> CostModel:
        ones = self._seen.get(1)
        one = (
            _low_quantile(ones)
            if ones is not None and len(ones) >= 4
            else self.prior.target_seconds
        )
        if one <= 0:
            return self.prior
        log_sum, weight = 0.0, self.PRIOR_WEIGHT
        for n, times in self._seen.items():
            if n == 1 or n > len(self.prior.verify) or len(times) < 3:
                continue
            expected = self.prior.verify[n - 1] - 1.0
            observed = _low_quantile(times) / one - 1.0
            if expected <= 0:
                continue
            log_sum += len(times) * float(np.log(max(observed, 0.01) / expected))
            weight += len(times)
        scale = float(np.exp(log_sum / weight))
        n_axis = np.arange(1, len(self.prior.verify) + 1, dtype=float)
        curve = np.clip(1.0 + (np.asarray(self.prior.verify) - 1.0) * scale, 1.0, n_axis)
        curve_t = tuple(float(v) for v in np.maximum.accumulate(curve))
        prior = self.prior
        if prior.target_seconds <= 0:
            return CostModel(curve_t, prior.draft_token, one, prior.draft_batch_token)
        prior_draft = prior.draft_token * prior.target_seconds
        draft_seconds = _low_quantile(self._draft) if len(self._draft) >= 4 else prior_draft
        # A long draft call speeds up or slows down with the single ones.
        drift = draft_seconds / prior_draft if prior_draft > 0 else 1.0
        batch_seconds = prior.draft_batch_token * prior.target_seconds * drift
        return CostModel(curve_t, draft_seconds / one, one, batch_seconds / one)
