"""A draft model left behind by cheap drafters: what catching it up costs, and when
`auto` pays for it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from fakes import VOCAB, FakeBackend, greedy_reference

from spec_cli.backend.base import Logits
from spec_cli.costs import MAX_BATCH, CostModel, calibrate
from spec_cli.drafters.auto import AutoDrafter
from spec_cli.drafters.catch_up import CatchUpPolicy
from spec_cli.drafters.model import ModelDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import TokenEvent
from spec_cli.sampling import SamplingParams
from spec_cli.stats import GenerationStats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedBackend(FakeBackend):
    """A fake whose calls take `first + per_extra * (n - 1)` seconds on `clock`."""

    def __init__(self, clock: Clock, first: float, per_extra: float) -> None:
        super().__init__(n_ctx=512)
        self.clock, self.first, self.per_extra = clock, first, per_extra

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return [1 + i % 12 for i in range(len(text) // 4)]

    def eval(self, tokens: Sequence[int], n_logits: int = 1) -> Logits:
        self.clock.now += self.first + self.per_extra * (len(tokens) - 1)
        return super().eval(tokens, n_logits)


def test_calibration_measures_the_draft_models_single_and_long_calls() -> None:
    """Target calls: 10 ms + 1 ms a token more; draft calls: 3 ms + 2 ms a token more (a
    small quantized model can read a batch slower than a big float one on a CPU)."""
    clock = Clock()
    target = TimedBackend(clock, 0.010, 0.001)
    draft = TimedBackend(clock, 0.003, 0.002)
    costs = calibrate(target, draft, repeats=2, clock=clock)
    assert costs.target_seconds == pytest.approx(0.010)
    assert costs.verify_cost(8) == pytest.approx(1.7)
    assert costs.draft_token == pytest.approx(0.3)
    assert costs.draft_batch_token == pytest.approx(0.2)
    assert costs.catch_up_cost(1) == pytest.approx(0.3)
    assert costs.catch_up_cost(11) == pytest.approx(0.3 + 10 * 0.2)
    assert costs.catch_up_cost(0) == 0.0


def test_catching_up_waits_until_going_on_without_the_model_forwent_as_much() -> None:
    """Ski rental: the model's steps have saved 0.5 calls a token (2 tokens for 1 call),
    so a catch-up costing 5 calls waits for 10 tokens the target made alone."""
    policy = CatchUpPolicy()
    predicted = (2.0, 1.0)
    for _ in range(4):
        policy.on_step(by_model=True, ran_model=True, tokens=2, cost=1.0)
    assert policy.worth(0.0, predicted)  # nothing to catch up on: always
    assert policy.saving() == pytest.approx(0.5)
    for _ in range(9):
        policy.on_step(by_model=False, ran_model=False, tokens=1, cost=1.0)
    assert not policy.worth(5.0, predicted)
    policy.on_step(by_model=False, ran_model=False, tokens=1, cost=1.0)
    assert policy.worth(5.0, predicted)
    # ...unless the generation ends before the catch-up could pay back.
    assert not policy.worth(5.0, predicted, tokens_left=9)
    # A copy saving more than the model would (8 tokens for 1.4 calls) pays no rent: it
    # takes back what was paid.
    policy.on_step(by_model=False, ran_model=False, tokens=8, cost=1.4)
    assert not policy.worth(5.0, predicted)
    # Running the model catches it up, whether or not its draft was the one verified.
    for _ in range(20):
        policy.on_step(by_model=False, ran_model=False, tokens=1, cost=1.0)
    assert policy.worth(5.0, predicted)
    policy.on_step(by_model=False, ran_model=True, tokens=1, cost=1.2)
    assert not policy.worth(5.0, predicted)
    policy.on_step(by_model=False, ran_model=False, tokens=1, cost=1.0)
    policy.restart()  # a new generation: the model has just read its prompt
    assert not policy.worth(0.5, predicted)


def test_a_first_reading_is_made_at_once_when_a_tenth_of_the_tokens_left_repay_it() -> None:
    """Before the model has run, it reads the prompt at once if its predicted saving (0.5
    a token) on a tenth of the tokens left covers the cost; a longer prompt waits for
    rent."""
    policy = CatchUpPolicy()
    predicted = (2.0, 1.0)
    assert policy.worth(5.0, predicted, tokens_left=100)
    assert not policy.worth(5.5, predicted, tokens_left=100)
    policy.on_step(by_model=True, ran_model=True, tokens=2, cost=1.0)
    policy.restart()  # a new generation (a chat turn): fresh again
    assert policy.worth(5.0, predicted, tokens_left=100)
    policy.on_step(by_model=True, ran_model=True, tokens=2, cost=1.0)
    # Once it has run, a catch-up must be earned by rent.
    assert not policy.worth(5.0, predicted, tokens_left=100)


def test_model_steps_that_lost_time_make_catching_up_never_worth_it() -> None:
    policy = CatchUpPolicy()
    for _ in range(8):
        policy.on_step(by_model=True, ran_model=True, tokens=1, cost=1.5)
    for _ in range(1000):
        policy.on_step(by_model=False, ran_model=False, tokens=1, cost=1.0)
    assert not policy.worth(1.0, (2.0, 1.0))


def test_the_draft_model_counts_what_it_must_read_before_drafting() -> None:
    backend = FakeBackend(n_ctx=64)
    drafter = ModelDrafter(backend)
    prompt = [1, 2, 3, 4, 5]
    drafter.begin(prompt, 10)
    assert backend.eval_calls == 0  # nothing read until a draft is asked for
    assert drafter.pending(prompt) == 5
    drafter.draft(prompt, 3, SamplingParams(), np.random.default_rng(0))
    assert drafter.pending([*prompt, 6, 7]) <= 2


COPY = 48  # tokens the output copies from the prompt before it turns unpredictable


def copy_then_positional(prompt: Sequence[int]) -> object:
    """A target that first repeats its prompt (prompt lookup drafts that perfectly) and
    then says position-dependent tokens no cheap drafter can guess."""
    table = np.random.default_rng(11).standard_normal((4096, VOCAB)).astype(np.float32)
    table[:, 0] -= 10.0  # no end token

    def rule(context: Sequence[int]) -> npt.NDArray[np.float32]:
        at = len(context) - len(prompt)
        if 0 <= at < COPY:
            row = np.zeros(VOCAB, dtype=np.float32)
            row[prompt[at % len(prompt)]] = 5.0
            return row
        out: npt.NDArray[np.float32] = table[len(context)]
        return out

    return rule


@pytest.mark.parametrize(
    ("batch_token", "tail", "caught_up"),
    [(0.0, 24, True), (0.5, 24, False), (0.5, 400, True)],
)
def test_auto_catches_the_draft_model_up_only_when_it_can_pay_back(
    batch_token: float, tail: int, caught_up: bool
) -> None:
    """After a long copy, the draft model (here a perfect one) is behind by the copy. When
    reading costs nothing extra it drafts the unpredictable text at once. When reading
    costs 0.5 calls a token, it is not caught up for a short tail it could never repay,
    and it is for a long one, after the target has made enough tokens alone."""
    prompt = [5, 9, 3, 7, 11, 2, 8, 4, 6, 10, 12, 13] * 4
    rule = copy_then_positional(prompt)
    target = FakeBackend(rule, n_ctx=1024)  # type: ignore[arg-type]
    draft = FakeBackend(rule, n_ctx=1024)  # type: ignore[arg-type]
    costs = CostModel(tuple(1.0 + 0.05 * i for i in range(MAX_BATCH)), 0.2, 0.0, batch_token)
    auto = AutoDrafter([PromptLookupDrafter()], costs, ModelDrafter(draft), learn_costs=False)
    n = COPY + tail
    stats = GenerationStats()
    config = GenerationConfig(n, draft_max=16)
    events = generate(target, auto, prompt, config, np.random.default_rng(0), stats)
    tokens = [e.token for e in events if isinstance(e, TokenEvent)]
    assert tokens == greedy_reference(target, prompt, n)
    read_copy = draft.evaluated_tokens >= len(prompt) + COPY
    assert read_copy == caught_up
    if caught_up:
        assert stats.per_drafter["model"].accepted > tail // 2
