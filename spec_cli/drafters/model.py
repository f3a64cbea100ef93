"""Independent drafting with a smaller model that shares the target's vocabulary."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from spec_cli.backend.base import Backend, common_prefix, sync_cache
from spec_cli.drafters.base import Draft
from spec_cli.sampling import (
    SamplingParams,
    position_rng,
    probabilities,
    sample,
    sample_race,
)


def top_probability(logits: np.ndarray) -> tuple[int, float]:
    """Argmax token and its softmax probability (temperature 1)."""
    tok = int(np.argmax(logits))
    z = np.exp(logits.astype(np.float64) - float(logits[tok]))
    return tok, float(1.0 / z.sum())


# When sampling, a drafted token passes with probability min(1, p/q), which its own q
# says little about: all sampled tokens share one feature, learned online from this prior
# (a same-family draft's distribution is usually close to the target's).
SAMPLED_FEATURE = 7
SAMPLED_PRIOR = 0.8


def confidence_bin(p: float) -> int:
    """Bucket of the draft's own probability for its token."""
    for i, edge in enumerate((0.3, 0.5, 0.7, 0.85, 0.95, 0.99)):
        if p < edge:
            return i
    return 6


class ModelDrafter:
    """Drafts by running the draft model autoregressively.

    Its cache follows the accepted text: before each draft it is synced to the context,
    which rolls back rejected drafts and evaluates only the new tokens. With temperature
    > 0 drafts are sampled from q (returned for rejection sampling). Alone it drafts
    `max_len` tokens (a static length); `auto` stops it early through `should_continue`.
    """

    name = "model"

    def __init__(
        self,
        backend: Backend,
        should_continue: Callable[[Draft], bool] | None = None,
        vocab_limit: int | None = None,
    ) -> None:
        self.backend = backend
        # A draft vocabulary may be a little larger than the target's (padding ids).
        self.vocab_limit = vocab_limit if vocab_limit is not None else backend.n_vocab
        # Cost-aware early stop (set by `auto`): asked after each drafted token.
        self.should_continue = should_continue
        # Seconds of each one-token draft call in the last draft (catch-up excluded): the
        # marginal cost of drafting one token more.
        self.step_seconds: list[float] = []

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        # The prompt is read with the first draft: `auto` may never need the model, and
        # then the reading, as slow as the target's on a CPU, is saved.
        pass

    def pending(self, context: Sequence[int]) -> int:
        """Tokens the draft model must read before it can draft after `context`."""
        if not context:
            return 0
        return len(context) - min(common_prefix(self.backend.cached, context), len(context) - 1)

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        out = Draft(source=self.name)
        if max_len <= 0 or not context or len(context) + max_len > self.backend.n_ctx:
            return out
        if self.vocab_limit > self.backend.n_vocab and max(context) >= self.backend.n_vocab:
            return out  # the text holds an id only the target has: the draft cannot read it
        self.step_seconds = []
        logits = sync_cache(self.backend, context, n_logits=1)
        assert logits is not None
        row = self._on_target_vocab(logits[0])
        for i in range(max_len):
            if sampling.greedy:
                tok, conf = top_probability(row)
                q = None
            else:
                q = probabilities(row, sampling)
                # In a seeded run, draw as the target will at this position (see verify).
                pos = len(context) + i
                if sampling.seed is None:
                    tok = sample(q, rng)
                else:
                    tok = sample_race(q, position_rng(sampling.seed, pos))
                conf = SAMPLED_PRIOR
            end = self.backend.is_eog(tok)
            if end and q is None:
                break  # a greedy end token is never worth drafting (see before_end)
            out.tokens.append(tok)
            out.probs.append(q)
            out.confidence.append(conf)
            out.features.append(confidence_bin(conf) if q is None else SAMPLED_FEATURE)
            if end:
                break  # nothing after an end is used (a sampled end stays: before_end)
            if self.should_continue is not None and not self.should_continue(out):
                break
            if i + 1 < max_len:
                started = time.perf_counter()
                row = self._on_target_vocab(self.backend.eval([tok], 1)[0])
                self.step_seconds.append(time.perf_counter() - started)
        return out

    def _on_target_vocab(self, row: np.ndarray) -> np.ndarray:
        """The draft's logits over the target's token ids. Padding ids only one model has
        are cut off or never drawn, so q is a distribution over the target's ids: drawing
        from it and judging by it keeps rejection sampling exact."""
        extra = len(row) - self.vocab_limit
        if extra > 0:
            return row[: self.vocab_limit]
        if extra < 0:
            return np.concatenate([row, np.full(-extra, -np.inf, dtype=row.dtype)])
        return row

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        pass  # the session owns the draft model and closes it
