"""The speculative loop on a fake target: lossless output, rollback bookkeeping, events, stats."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pytest
from fakes import (
    EOS,
    PIECES,
    VOCAB,
    FakeBackend,
    SamplingDrafter,
    ScriptedDrafter,
    cycle_rule,
    greedy_reference,
    oracle_script,
    table_rule,
)
from scipy.stats import chisquare

from spec_cli.drafters.base import Drafter, NoDrafter
from spec_cli.drafters.model import ModelDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.errors import PromptError
from spec_cli.events import Event, FinishEvent, Origin, RejectedEvent, StepEvent, TokenEvent
from spec_cli.result import consume
from spec_cli.sampling import SamplingParams, probabilities
from spec_cli.stats import GenerationStats

PROMPT = [1, 2, 3, 1, 13]
GREEDY = SamplingParams()


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)

    @property
    def finish(self) -> FinishEvent:
        last = self.events[-1]
        assert isinstance(last, FinishEvent)
        return last

    @property
    def steps(self) -> list[StepEvent]:
        return [e for e in self.events if isinstance(e, StepEvent)]


def run(
    target: FakeBackend,
    drafter: Drafter,
    prompt: Sequence[int] = PROMPT,
    *,
    max_tokens: int = 40,
    draft_max: int = 8,
    sampling: SamplingParams = GREEDY,
    seed: int = 0,
) -> Run:
    """Drive one generation, checking the cache invariant after every step.

    Between steps the target's cache must hold the whole context except its last token
    (the one evaluated with the next draft); when EOS ends a step, the context as far as
    the EOS.
    """
    result = Run()
    step_tokens: list[int] = []
    config = GenerationConfig(max_tokens, sampling, draft_max)
    for event in generate(
        target, drafter, prompt, config, np.random.default_rng(seed), result.stats
    ):
        result.events.append(event)
        if isinstance(event, TokenEvent):
            result.tokens.append(event.token)
            step_tokens.append(event.token)
        elif isinstance(event, StepEvent):
            context = [*prompt, *result.tokens]
            if len(step_tokens) == event.accepted + 1:
                assert list(target.cached) == context[:-1]
            else:  # EOS was among this step's tokens and was not emitted
                cached = list(target.cached)
                assert cached[: len(context)] == context
                assert len(cached) == len(context) or cached[len(context)] == EOS
            step_tokens = []
    assert isinstance(result.events[-1], FinishEvent)
    assert list(result.finish.tokens) == result.tokens
    return result


def drafters(target: FakeBackend) -> dict[str, Drafter]:
    """Drafters that are right, wrong, partly right, too long, random, or real."""
    rng = np.random.default_rng(99)
    return {
        "none": NoDrafter(),
        "right": ScriptedDrafter(oracle_script(target)),
        "wrong": ScriptedDrafter(oracle_script(target, wrong_from=0)),
        "partly-right": ScriptedDrafter(oracle_script(target, wrong_from=2)),
        "too-long": ScriptedDrafter(
            lambda ctx, n: oracle_script(target)(ctx, 60), ignore_max_len=True
        ),
        "random": ScriptedDrafter(lambda ctx, n: rng.integers(1, VOCAB, size=5).tolist()),
        "prompt-lookup": PromptLookupDrafter(),
    }


DRAFTER_NAMES = list(drafters(FakeBackend()))


# -- lossless greedy output ----------------------------------------------------------------


@pytest.mark.parametrize("name", DRAFTER_NAMES)
@pytest.mark.parametrize("max_tokens", [1, 2, 7, 40])
@pytest.mark.parametrize("draft_max", [0, 1, 4, 16])
def test_greedy_output_equals_plain_decoding(name: str, max_tokens: int, draft_max: int) -> None:
    plain = run(FakeBackend(), NoDrafter(), max_tokens=max_tokens)
    target = FakeBackend()
    spec = run(target, drafters(target)[name], max_tokens=max_tokens, draft_max=draft_max)
    assert spec.tokens == plain.tokens == greedy_reference(target, PROMPT, max_tokens)
    # No EOS reachable under this rule at greedy: max_tokens is exact.
    assert len(spec.tokens) == max_tokens
    assert spec.finish.reason == "length"


@pytest.mark.parametrize("seed", range(6))
def test_greedy_lossless_over_random_tables_and_prompts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rule = table_rule(seed=seed, eos_bias=0.0)  # EOS reachable
    prompt = rng.integers(1, VOCAB, size=int(rng.integers(1, 12))).tolist()
    reference = greedy_reference(FakeBackend(rule), prompt, 50)
    for name in DRAFTER_NAMES:
        target = FakeBackend(rule)
        spec = run(target, drafters(target)[name], prompt, max_tokens=50, draft_max=5)
        assert spec.tokens == reference, name
        assert spec.finish.reason == ("length" if len(reference) == 50 else "stop")


def test_drafts_are_cut_to_the_token_budget() -> None:
    """The drafter is asked for at most draft_max and at most (tokens left - 1), since
    every step also yields the target's own token."""
    target = FakeBackend()
    drafter = ScriptedDrafter(oracle_script(target))
    result = run(target, drafter, max_tokens=10, draft_max=4)
    # Budgets: 10 -> 4 drafts + bonus; 5 -> 4 + bonus; 0 left.
    assert drafter.requested == [4, 4]
    assert [s.drafted for s in result.steps] == [4, 4]
    assert len(result.tokens) == 10


def test_too_long_drafts_are_truncated_before_verification() -> None:
    target = FakeBackend()
    drafter = ScriptedDrafter(lambda ctx, n: oracle_script(target)(ctx, 60), ignore_max_len=True)
    result = run(target, drafter, max_tokens=9, draft_max=16)
    assert [s.drafted for s in result.steps] == [8]
    assert [len(b) for b in target.batches[1:]] == [9]  # last token + 8 drafts, one call


def test_drafts_fit_in_one_target_call() -> None:
    """A small context gives a small batch (llama.cpp limits it to the context asked
    for): drafts are cut so that the last token plus the draft fit in one call."""
    target = FakeBackend(n_batch=4)
    drafter = ScriptedDrafter(oracle_script(target))
    result = run(target, drafter, max_tokens=20, draft_max=16)
    assert result.tokens == greedy_reference(FakeBackend(), PROMPT, 20)
    assert max(s.drafted for s in result.steps) == 3
    assert all(len(b) <= 4 for b in target.batches[1:])


def test_draft_tokens_outside_the_vocabulary_never_reach_the_target() -> None:
    """A hand-edited n-gram cache can propose any id: the draft is cut before it."""
    target = FakeBackend()
    good = oracle_script(target)
    drafter = ScriptedDrafter(lambda ctx, n: [*good(ctx, 2), VOCAB + 5, -1][:n])
    result = run(target, drafter, max_tokens=12, draft_max=4)
    assert result.tokens == greedy_reference(FakeBackend(), PROMPT, 12)
    assert all(0 <= t < VOCAB for batch in target.batches for t in batch)


# -- events --------------------------------------------------------------------------------


def test_event_origins_and_rejections() -> None:
    """Hand-computed: under cycle_rule the target's next token after t is t + 1."""
    target = FakeBackend(cycle_rule())
    drafter = ScriptedDrafter(
        [
            [2, 3, 4],  # all right: three drafts, then a bonus (5)
            [6, 9, 8],  # 6 right, 9 wrong: rejected (9, 8), corrected to 7
            [],  # nothing drafted: a plain target token (8)
            [1],  # wrong at once: rejected, corrected to 9
            [10, 11],  # cut to one by the budget: 10 accepted, bonus 11
        ]
    )
    result = run(target, drafter, [1], max_tokens=10, draft_max=16)
    T, D, C, B = Origin.TARGET, Origin.DRAFT, Origin.CORRECTION, Origin.BONUS
    shown = [
        (e.token, e.origin)
        if isinstance(e, TokenEvent)
        else ("rejected", e.tokens)
        if isinstance(e, RejectedEvent)
        else ("step", e.drafted, e.accepted)
        if isinstance(e, StepEvent)
        else ("finish", e.reason)
        for e in result.events
        if isinstance(e, (TokenEvent, RejectedEvent, StepEvent, FinishEvent))
    ]
    assert shown == [
        (2, D), (3, D), (4, D), (5, B), ("step", 3, 3),
        (6, D), ("rejected", (9, 8)), (7, C), ("step", 3, 1),
        (8, T), ("step", 0, 0),
        ("rejected", (1,)), (9, C), ("step", 1, 0),
        (10, D), (11, B), ("step", 1, 1),
        ("finish", "length"),
    ]  # fmt: skip
    assert all(e.drafter == "scripted" for e in result.events if isinstance(e, RejectedEvent))
    assert drafter.verdicts == [([2, 3, 4], 3), ([6, 9, 8], 1), ([], 0), ([1], 0), ([10], 1)]


@pytest.mark.parametrize(
    "script",
    [
        [],  # plain decoding: EOS is a TARGET token
        [[11, 12, 13, 0, 1, 2]],  # EOS inside an accepted draft, more drafts after it
        [[11, 12, 13]],  # EOS as the bonus token
        [[11, 12, 13, 7]],  # EOS as the correction of a wrong draft
        [[11], [13, 0, 0, 0]],  # EOS accepted as a draft, a wrong draft after it
    ],
)
def test_eos_stops_exactly_where_plain_decoding_stops(script: list[list[int]]) -> None:
    """cycle_rule from 10 gives 11, 12, 13, then EOS (token 0)."""
    target = FakeBackend(cycle_rule())
    result = run(target, ScriptedDrafter(script), [10], max_tokens=30)
    assert result.tokens == [11, 12, 13]
    assert result.finish.reason == "stop"
    assert EOS not in result.tokens
    assert result.stats.generated_tokens == 3
    if not script:  # four calls, each yielding one token (the last one EOS)
        assert result.stats.mean_accepted_length == 1.0


def test_drafts_are_cut_before_an_end_token() -> None:
    """Drafting EOS never gains (when the tokens before it pass, EOS is the target's own
    next token anyway), so nothing from it on is verified."""
    target = FakeBackend(cycle_rule())
    result = run(target, ScriptedDrafter([[11, 12, 13, 0, 1, 2]]), [10], max_tokens=30)
    assert [(s.drafted, s.accepted) for s in result.steps] == [(3, 3)]
    assert target.batches == [[10, 11, 12, 13]]
    assert result.tokens == [11, 12, 13]
    assert result.finish.reason == "stop"


def test_eos_reached_by_an_oracle_drafter_that_ignores_it() -> None:
    target = FakeBackend(cycle_rule())
    result = run(target, ScriptedDrafter(oracle_script(target)), [3], max_tokens=100)
    assert result.tokens == list(range(4, VOCAB))
    assert result.finish.reason == "stop"


def test_full_context_ends_generation_as_length() -> None:
    reference = greedy_reference(FakeBackend(), PROMPT, 100)
    for name in DRAFTER_NAMES:
        target = FakeBackend(n_ctx=12)
        result = run(target, drafters(target)[name], max_tokens=100, draft_max=4)
        assert result.tokens == reference[: 12 - len(PROMPT)], name
        assert result.finish.reason == "length"
        assert len(target.cached) <= target.n_ctx


def test_empty_prompt_is_refused() -> None:
    with pytest.raises(PromptError, match="empty"):
        run(FakeBackend(), NoDrafter(), [])


def test_prompt_filling_the_context_is_refused() -> None:
    with pytest.raises(PromptError, match="--ctx-size"):
        run(FakeBackend(n_ctx=5), NoDrafter(), [1, 2, 3, 4, 5])


def test_prefill_reuses_a_cached_prefix() -> None:
    """A second generation whose prompt extends the first one's evaluates only new tokens."""
    target = FakeBackend()
    first = run(target, NoDrafter(), PROMPT, max_tokens=5)
    before = target.evaluated_tokens
    follow_up = [*PROMPT, *first.tokens, 2, 3]
    second = run(target, NoDrafter(), follow_up, max_tokens=5)
    assert second.tokens == greedy_reference(target, follow_up, 5)
    # New tokens for the prefill: the last generated token (never evaluated) and 2, then
    # 3 is evaluated with the first step, then four more single-token steps.
    assert target.evaluated_tokens - before == 2 + 5


# -- stats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_stats_are_consistent_with_the_events(name: str) -> None:
    target = FakeBackend()
    drafter = drafters(target)[name]
    result = run(target, drafter, max_tokens=33, draft_max=5)
    s = result.stats
    steps = result.steps
    assert s.prompt_tokens == len(PROMPT)
    assert s.generated_tokens == len(result.tokens) == 33
    assert s.target_calls == len(steps)
    assert target.eval_calls == len(steps) + 1  # one prefill call, then one per step
    assert s.drafted_tokens == sum(st.drafted for st in steps)
    assert s.accepted_tokens == sum(st.accepted for st in steps)
    assert 0 <= s.accepted_tokens <= s.drafted_tokens
    # Each step yields its accepted drafts plus one target token.
    assert s.generated_tokens == s.accepted_tokens + s.target_calls
    assert s.mean_accepted_length == pytest.approx(33 / len(steps))
    assert s.steps_without_draft == sum(1 for st in steps if st.drafted == 0)
    assert sum(c.drafted for c in s.per_drafter.values()) == s.drafted_tokens
    drafted_origins = [e.origin for e in result.events if isinstance(e, TokenEvent)]
    assert drafted_origins.count(Origin.DRAFT) == s.accepted_tokens
    if s.drafted_tokens:
        assert s.acceptance_rate == pytest.approx(s.accepted_tokens / s.drafted_tokens)
    # The target verifies the last token and each draft in one batch.
    assert [len(b) for b in target.batches[1:]] == [st.drafted + 1 for st in steps]
    # Position i's rate is out of the drafts that reached it.
    reached = s.as_dict()["per_position_drafted"]
    assert reached == [sum(1 for st in steps if st.drafted > i) for i in range(len(reached))]


def test_right_drafts_cut_target_calls() -> None:
    target = FakeBackend()
    result = run(target, ScriptedDrafter(oracle_script(target)), max_tokens=40, draft_max=7)
    assert result.stats.target_calls == 5  # 40 tokens, 8 per call
    assert result.stats.acceptance_rate == 1.0
    plain = run(FakeBackend(), NoDrafter(), max_tokens=40)
    assert plain.stats.target_calls == 40
    assert plain.stats.mean_accepted_length == 1.0


# -- consumers that stop early -------------------------------------------------------------


@pytest.mark.parametrize("name", DRAFTER_NAMES)
@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 11])
def test_closing_early_leaves_the_cache_on_the_yielded_tokens(name: str, stop_after: int) -> None:
    """After a consumer stops (stop string, Ctrl-C) the cache holds nothing it did not see,
    and a follow-up generation from prompt + seen tokens continues plain decoding."""
    target = FakeBackend()
    gen = cast(
        Generator[Event, None, None],  # generate is a generator function: it can be closed
        generate(
            target, drafters(target)[name], PROMPT, GenerationConfig(40, GREEDY, 6),
            np.random.default_rng(0),
        ),
    )  # fmt: skip
    seen: list[int] = []
    for event in gen:
        if isinstance(event, TokenEvent):
            seen.append(event.token)
            if len(seen) == stop_after:
                break
    gen.close()
    context = [*PROMPT, *seen]
    cached = list(target.cached)
    assert cached == context[: len(cached)]
    assert len(cached) >= len(context) - 1
    more = run(target, NoDrafter(), context, max_tokens=10)
    assert seen + more.tokens == greedy_reference(target, PROMPT, stop_after + 10)


def _copying_run(stats: GenerationStats) -> Iterator[Event]:
    """A 40-token run whose drafts are always right, counted in `stats`."""
    target = FakeBackend()
    return generate(
        target, ScriptedDrafter(oracle_script(target)), PROMPT, GenerationConfig(40, GREEDY, 6),
        np.random.default_rng(0), stats,
    )  # fmt: skip


@pytest.mark.parametrize("interrupt_at", [1, 4, 9])
def test_an_interrupt_while_a_token_is_shown_counts_what_the_result_holds(
    interrupt_at: int,
) -> None:
    """Ctrl-C or SIGTERM can land while the consumer shows a token: the result keeps it
    (its text may be held back for a stop string, and the result keeps that text), and
    the stats count exactly the tokens the result holds."""
    stats = GenerationStats()
    gen = _copying_run(stats)
    received = 0

    def handle(event: Event) -> None:
        nonlocal received
        if isinstance(event, TokenEvent):
            received += 1
            if received == interrupt_at:
                raise KeyboardInterrupt

    result = consume(gen, handle, stats)
    assert result.finish_reason == "interrupted"
    assert len(result.tokens) == stats.generated_tokens == interrupt_at


@pytest.mark.parametrize("interrupt_at", [1, 4, 9])
def test_an_interrupt_before_a_token_is_received_leaves_it_uncounted(interrupt_at: int) -> None:
    """Ctrl-C can also land after the engine counted a token but before the consumer took
    it: the stats count only the tokens the result holds."""
    stats = GenerationStats()
    gen = _copying_run(stats)

    def cut_short() -> Iterator[Event]:
        sent = 0
        for event in gen:
            if isinstance(event, TokenEvent):
                sent += 1
                if sent == interrupt_at:  # counted by the engine, never handed over
                    raise KeyboardInterrupt
            yield event

    result = consume(cut_short(), None, stats)
    assert result.finish_reason == "interrupted"
    assert len(result.tokens) == stats.generated_tokens == interrupt_at - 1


# -- sampling ------------------------------------------------------------------------------

SAMPLED = SamplingParams(temperature=0.9, top_p=0.9)


@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_sampled_runs_repeat_with_the_same_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        target = FakeBackend()
        outs.append(run(target, drafters(target)[name], max_tokens=30, sampling=SAMPLED, seed=5))
    assert outs[0].tokens == outs[1].tokens
    varied = {
        tuple(run(FakeBackend(), NoDrafter(), max_tokens=30, sampling=SAMPLED, seed=s).tokens)
        for s in range(4)
    }
    assert len(varied) > 1


def _first_two_counts(drafter: Drafter, n_runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = FakeBackend()
    first = np.zeros(VOCAB, dtype=int)
    second = np.zeros(VOCAB, dtype=int)
    config = GenerationConfig(max_tokens=3, sampling=SAMPLED, draft_max=2)
    for _ in range(n_runs):
        tokens = [
            e.token for e in generate(target, drafter, PROMPT, config, rng)
            if isinstance(e, TokenEvent)
        ]  # fmt: skip
        first[tokens[0]] += 1
        second[tokens[1]] += 1
    return first, second


_EOS_HEAVY_Q = np.full(VOCAB, 0.5 / (VOCAB - 1))
_EOS_HEAVY_Q[EOS] = 0.5


def _expected_first_two() -> tuple[np.ndarray, np.ndarray]:
    target = FakeBackend()
    p1 = probabilities(target.logits_for(PROMPT), SAMPLED)
    p2 = sum(p1[t] * probabilities(target.logits_for([*PROMPT, t]), SAMPLED) for t in range(VOCAB))
    return p1, np.asarray(p2)


@pytest.mark.parametrize(
    "make_drafter",
    [
        lambda: SamplingDrafter(np.full(VOCAB, 1.0 / VOCAB), 2),
        # Half its draws are EOS: a draft must not be cut at a sampled end token, since
        # that decision would depend on the draw itself and skew the output.
        lambda: SamplingDrafter(_EOS_HEAVY_Q, 2),
        lambda: ScriptedDrafter(lambda ctx, n: [4, 4]),  # deterministic, q one-hot
        lambda: ScriptedDrafter(lambda ctx, n: [EOS, 4]),  # cut before EOS: no draft
        # A draft model with two padding ids the target lacks, which it rates highly.
        lambda: ModelDrafter(
            FakeBackend(table_rule(VOCAB + 2, seed=9), pieces=[*PIECES, b"<p1>", b"<p2>"]),
            vocab_limit=VOCAB,
        ),
        lambda: NoDrafter(),
    ],
    ids=[
        "sampled-uniform-q",
        "sampled-eos-heavy-q",
        "deterministic",
        "deterministic-eos",
        "draft-model-padded-vocab",
        "none",
    ],
)
def test_sampled_output_follows_the_target_distribution(
    make_drafter: Callable[[], Drafter],
) -> None:
    """The first two generated tokens, over 4,000 runs, must follow the target's
    (filtered) distribution whatever the drafter. Fixed seeds make the outcome
    deterministic; a correct engine fails either check with probability 1e-4 over seeds.
    Tokens the target gives probability 0 must never appear."""
    n_runs = 4000
    first, second = _first_two_counts(make_drafter(), n_runs, seed=21)
    p1, p2 = _expected_first_two()
    for counts, p in ((first, p1), (second, p2)):
        assert counts[p == 0].sum() == 0
        support = p > 0
        assert chisquare(counts[support], p[support] * n_runs).pvalue > 1e-4


def test_a_seeded_draft_model_draws_as_the_target_will() -> None:
    """In a seeded run the target's token at each position is its own seeded draw; a
    draft model sampling with the same per-position draws agrees with it whenever their
    distributions agree, so a draft model equal to the target has every token accepted
    (independent draws would agree only by chance), and the text is the plain seeded one."""
    config = GenerationConfig(40, SamplingParams(temperature=1.0, top_p=0.9), 4, seed=7)

    def seeded(drafter: Drafter) -> tuple[list[int], list[StepEvent]]:
        events = list(generate(FakeBackend(), drafter, PROMPT, config, np.random.default_rng(1)))
        tokens = [e.token for e in events if isinstance(e, TokenEvent)]
        return tokens, [e for e in events if isinstance(e, StepEvent)]

    plain, _ = seeded(NoDrafter())
    tokens, steps = seeded(ModelDrafter(FakeBackend()))
    assert tokens == plain
    drafted = sum(s.drafted for s in steps)
    assert drafted > 20
    assert sum(s.accepted for s in steps) == drafted
