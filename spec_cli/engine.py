"""The speculative loop: draft -> verify in one target call -> accept -> roll back.

Token ids only; text is the job of `textstream`. Invariant between steps: the target's
cache holds every context token except the last one, which is evaluated together with
the next draft. So every step costs exactly one target call and yields at least one
token, and `--drafter none` is plain decoding through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import overload

import numpy as np
import numpy.typing as npt

from spec_cli.backend.base import Backend, sync_cache
from spec_cli.drafters.base import Draft, Drafter, before_end, within_vocab
from spec_cli.errors import PromptError
from spec_cli.events import Event, FinishEvent, Origin, RejectedEvent, StepEvent, TokenEvent
from spec_cli.sampling import SamplingParams, position_rng, probabilities
from spec_cli.stats import GenerationStats
from spec_cli.verify import verify_greedy, verify_matching, verify_sampled

# Long drafts pay off on bandwidth-bound targets when text is copied (verifying 33
# tokens costs ~4x one on an F32 model); `auto` picks shorter ones whenever they are
# better, so this is only a cap.
DEFAULT_DRAFT_MAX = 32


@dataclass(frozen=True)
class GenerationConfig:
    """Per-generation settings."""

    max_tokens: int = 256
    sampling: SamplingParams = field(default_factory=SamplingParams)
    draft_max: int = DEFAULT_DRAFT_MAX
    # With a seed, sampled tokens come from per-position generators, so the text is the
    # same whatever the drafter (see verify.verify_matching).
    seed: int | None = None


def check_fits(target: Backend, prompt: Sequence[int]) -> None:
    """Refuse prompts that leave no room to generate in the context."""
    if not prompt:
        raise PromptError("the prompt is empty: give some text to continue")
    if len(prompt) >= target.n_ctx:
        raise PromptError(
            f"the prompt is {len(prompt)} tokens but the context holds {target.n_ctx}, "
            "with room needed for at least one new token: shorten the prompt or raise "
            "--ctx-size"
        )


def generate(
    target: Backend,
    drafter: Drafter,
    prompt: Sequence[int],
    config: GenerationConfig,
    rng: np.random.Generator,
    stats: GenerationStats | None = None,
) -> Iterator[Event]:
    """Yield token, rejection and step events, then one FinishEvent.

    The consumer may stop iterating at any point (stop strings, Ctrl-C): the target
    cache is then still consistent with the tokens yielded so far.
    """
    check_fits(target, prompt)
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(prompt)
    t0 = time.perf_counter()
    try:
        sync_cache(target, prompt[:-1])
    finally:  # an interrupted prefill took time too
        stats.prefill_seconds = time.perf_counter() - t0
    decode_start = time.perf_counter()
    context = list(prompt)
    drafter.begin(context, min(config.max_tokens, target.n_ctx - len(prompt)))
    out: list[int] = []
    sampling = config.sampling
    if config.seed is not None and not sampling.greedy:
        sampling = replace(sampling, seed=config.seed)  # drafters draw as the target will
    reason = "length"
    try:
        while True:
            budget = config.max_tokens - len(out)
            room = target.n_ctx - len(context)  # cache slots left for this step's batch
            if budget <= 0 or room <= 0:
                reason = "length"
                break
            k_max = min(config.draft_max, budget - 1, room - 1, target.n_batch - 1)
            if len(target.cached) != len(context) - 1:
                sync_cache(target, context[:-1])  # a rejected draft emptied a recurrent cache
            ts = time.perf_counter()
            draft = drafter.draft(context, k_max, sampling, rng) if k_max > 0 else Draft()
            if len(draft) > k_max:
                draft = draft.truncated(k_max)
            draft = before_end(within_vocab(draft, target.n_vocab), target.is_eog)
            tv = time.perf_counter()
            n_acc, nxt = _verify(target, context, draft, config, rng)
            target.truncate(len(context) + n_acc)
            te = time.perf_counter()
            step = StepEvent(draft.source or drafter.name, len(draft), n_acc, tv - ts, te - tv)
            stats.record_step(step)

            emitted = [*draft.tokens[:n_acc], nxt]
            context.extend(emitted)
            drafter.feedback(context, draft, n_acc)
            last_origin = (
                Origin.TARGET
                if not draft.tokens
                else Origin.BONUS
                if n_acc == len(draft)
                else Origin.CORRECTION
            )
            finished = False
            for i, tok in enumerate(emitted):
                if target.is_eog(tok):
                    finished = True
                    break
                if i == n_acc and n_acc < len(draft):
                    # Shown between the accepted drafts and the target's correction.
                    yield RejectedEvent(tuple(draft.tokens[n_acc:]), step.drafter)
                out.append(tok)
                stats.generated_tokens += 1
                stats.decode_seconds = time.perf_counter() - decode_start
                yield TokenEvent(tok, Origin.DRAFT if i < n_acc else last_origin)
            yield step
            if finished:
                reason = "stop"
                break
    finally:
        stats.decode_seconds = time.perf_counter() - decode_start
        # A consumer that stopped mid-step must not find accepted drafts it never saw
        # in the cache (they would be context for a follow-up it did not ask for).
        target.truncate(min(len(target.cached), len(prompt) + len(out)))
    yield FinishEvent(reason, tuple(out))


def _verify(
    target: Backend,
    context: Sequence[int],
    draft: Draft,
    config: GenerationConfig,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Evaluate the last context token plus the draft in one call; decide what stands."""
    batch = [context[-1], *draft.tokens]
    logits = target.eval(batch, len(batch))
    sampling = config.sampling
    if sampling.greedy:
        return verify_greedy(draft.tokens, logits.argmax(axis=1).tolist())
    p_rows = _TargetRows(logits, sampling)
    if config.seed is not None:
        start = len(context)  # absolute position of the first token sampled here
        rngs = [position_rng(config.seed, start + i) for i in range(len(batch))]
        return verify_matching(draft.tokens, p_rows, rngs)
    if draft.probs and len(draft.probs) != len(draft.tokens):
        # Judging a sampled token as if it were deterministic would skew the output.
        raise ValueError("a draft's probs must give one q row (or None) per drafted token")
    q_rows = draft.probs if draft.probs else [None] * len(draft)
    return verify_sampled(draft.tokens, q_rows, p_rows, rng)


class _TargetRows(Sequence[npt.NDArray[np.float64]]):
    """The target's filtered distribution at each verified position, computed on first
    read: rows after the first rejection are never needed, and filtering a large
    vocabulary costs real time."""

    def __init__(self, logits: npt.NDArray[np.float32], sampling: SamplingParams) -> None:
        self._logits = logits
        self._sampling = sampling
        self._rows: dict[int, npt.NDArray[np.float64]] = {}

    def __len__(self) -> int:
        return len(self._logits)

    @overload
    def __getitem__(self, i: int) -> npt.NDArray[np.float64]: ...

    @overload
    def __getitem__(self, i: slice) -> list[npt.NDArray[np.float64]]: ...

    def __getitem__(
        self, i: int | slice
    ) -> npt.NDArray[np.float64] | list[npt.NDArray[np.float64]]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = range(len(self))[i]  # negative indices, and IndexError past the end
        row = self._rows.get(i)
        if row is None:
            row = self._rows[i] = probabilities(self._logits[i], self._sampling)
        return row
