"""The cost-aware `auto` drafter: lossless, and drafting only where it pays."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fakes import (
    VOCAB,
    FakeBackend,
    LogitsRule,
    ScriptedDrafter,
    cycle_rule,
    greedy_reference,
    table_rule,
)

from spec_cli.costs import MAX_BATCH, CostModel
from spec_cli.drafters.auto import FIRST_LOOK, AutoDrafter
from spec_cli.drafters.base import Draft, NoDrafter
from spec_cli.drafters.model import ModelDrafter
from spec_cli.drafters.ngram import NgramDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import TokenEvent
from spec_cli.sampling import SamplingParams
from spec_cli.stats import GenerationStats


def cycle_without_eos(context: Sequence[int]) -> npt.NDArray[np.float32]:
    """Hand-computable target: after token t comes t % 13 + 1 (1..13, never EOS 0)."""
    row = np.zeros(14, dtype=np.float32)
    row[context[-1] % 13 + 1] = 5.0
    return row


BANDWIDTH_BOUND = CostModel(tuple(1.0 + 0.05 * i for i in range(MAX_BATCH)), 0.2)
MODERATE = CostModel(tuple(1.0 + 0.4 * i for i in range(MAX_BATCH)), 0.2)
COMPUTE_BOUND = CostModel(tuple(float(n) for n in range(1, MAX_BATCH + 1)), 0.2)


def run(
    target: FakeBackend,
    drafter: object,
    prompt: list[int],
    n: int,
    sampling: SamplingParams = SamplingParams(),
    seed: int | None = None,
) -> tuple[list[int], GenerationStats]:
    stats = GenerationStats()
    config = GenerationConfig(n, sampling, draft_max=16, seed=seed)
    events = generate(target, drafter, prompt, config, np.random.default_rng(1), stats)  # type: ignore[arg-type]
    return [e.token for e in events if isinstance(e, TokenEvent)], stats


RNG0 = np.random.default_rng(0)


def cheap() -> list[object]:
    return [PromptLookupDrafter(), NgramDrafter()]


def test_greedy_auto_equals_plain_decoding_with_every_drafter_kind() -> None:
    target = FakeBackend(table_rule(seed=3), n_ctx=512)
    draft_model = FakeBackend(table_rule(seed=3), n_ctx=512)  # an exact self-draft
    prompt = [1, 2, 3, 1, 2, 3, 13, 1, 2]
    expected = greedy_reference(target, prompt, 120)
    for model in (None, ModelDrafter(draft_model)):
        auto = AutoDrafter(cheap(), BANDWIDTH_BOUND, model)  # type: ignore[arg-type]
        tokens, stats = run(target, auto, prompt, 120)
        assert tokens == expected
        assert stats.target_calls < 120 or model is None


def test_a_perfect_draft_model_is_used_long_on_cheap_verification() -> None:
    target = FakeBackend(table_rule(seed=5), n_ctx=512)
    auto = AutoDrafter(
        [], BANDWIDTH_BOUND, ModelDrafter(FakeBackend(table_rule(seed=5), n_ctx=512))
    )
    tokens, stats = run(target, auto, [1, 2], 100)
    assert tokens == greedy_reference(target, [1, 2], 100)
    assert stats.mean_accepted_length > 4


class _SpentModel:
    """A draft model whose every draft is four tokens, each right about `rate` of the
    time."""

    name = ModelDrafter.name
    should_continue = None

    def __init__(self, rate: float = 0.6) -> None:
        self.step_seconds: list[float] = []
        self.rate = rate

    def draft(self, context: Sequence[int], max_len: int, *_: object) -> Draft:
        return Draft([5, 6, 7, 8], [None] * 4, [self.rate] * 4, self.name, [0] * 4)


def test_a_model_draft_already_paid_for_is_verified_when_that_beats_drafting_nothing() -> None:
    """Once the model has drafted, its cost is spent whatever goes to the target: the
    choice is its draft or none, both after that cost. With draft tokens at half a call
    each, four 60%-likely tokens are not worth drafting beforehand (expected 0.52 tokens
    per unit of cost against plain decoding's 1) but, paid for, beat sending nothing
    (0.33): they go to the target rather than being thrown away."""
    costs = CostModel(MODERATE.verify, 0.5)
    auto = AutoDrafter([], costs, _SpentModel(), learn_costs=False)  # type: ignore[arg-type]
    auto._sampling = SamplingParams()
    nothing = Draft(source=auto.name)
    chosen = auto._model_draft([1, 2, 3], 4, False, 1.0, nothing, 1.0)
    assert chosen.source == ModelDrafter.name and len(chosen) == 3


def test_a_spent_model_draft_is_weighed_against_the_cheap_plans_whole_cost() -> None:
    """A cheap plan that sends nothing now and the rest after the target's check is worth
    2 tokens a unit over an expected 4.5 units. With the model's 2 units spent it is
    worth 2 x 4.5 / 6.5 = 1.38; the model's four 95%-likely tokens, 4.52 / 4.6 = 0.98,
    lose to it. Priced as one plain call (2 x 1 / 3 = 0.67), the plan would have lost."""
    costs = CostModel(MODERATE.verify, 0.5)
    auto = AutoDrafter([], costs, _SpentModel(0.95), learn_costs=False)  # type: ignore[arg-type]
    auto._sampling = SamplingParams()
    deferred = Draft(source=auto.name)
    assert auto._model_draft([1, 2, 3], 4, False, 2.0, deferred, 4.5) is deferred
    assert auto._model_draft([1, 2, 3], 4, False, 2.0, deferred, 1.0).source == ModelDrafter.name


def test_compute_bound_target_is_left_to_plain_decoding() -> None:
    """When n tokens cost n steps no uncertain draft pays: nearly every step drafts nothing
    (a short exploratory draft every EXPLORE_EVERY steps is allowed)."""
    target = FakeBackend(table_rule(seed=2), n_ctx=512)
    auto = AutoDrafter(cheap(), COMPUTE_BOUND, learn_costs=False)  # type: ignore[arg-type]
    tokens, stats = run(target, auto, [1, 2, 3, 4, 1, 2, 3], 200)
    assert tokens == greedy_reference(target, [1, 2, 3, 4, 1, 2, 3], 200)
    assert stats.steps_without_draft >= 0.85 * stats.target_calls


def test_wrong_drafters_are_learned_and_dropped() -> None:
    target = FakeBackend(cycle_without_eos, n_ctx=512)
    always_wrong = ScriptedDrafter(lambda ctx, k: [(ctx[-1] + 5) % 14] * k, name="wrong")
    auto = AutoDrafter([always_wrong], MODERATE, learn_costs=False)  # type: ignore[list-item]
    _, stats = run(target, auto, [1], 150)
    assert stats.per_drafter["wrong"].accepted == 0
    # After a few failures it stops drafting (only exploration remains).
    assert stats.steps_without_draft >= 0.8 * stats.target_calls


def test_repetitive_text_is_copied_in_long_drafts() -> None:
    target = FakeBackend(cycle_without_eos, n_ctx=512)
    prompt = list(range(1, 14)) * 2
    auto = AutoDrafter(cheap(), BANDWIDTH_BOUND)  # type: ignore[arg-type]
    tokens, stats = run(target, auto, prompt, 150)
    assert tokens == greedy_reference(target, prompt, 150)
    assert stats.mean_accepted_length > 6


def test_seeded_sampling_gives_the_same_text_whatever_the_drafter() -> None:
    """With --seed, each position's token is the target's own seeded draw, so drafts can
    change the speed but never the text."""
    target = FakeBackend(table_rule(seed=4, scale=1.0), n_ctx=512)
    sampling = SamplingParams(temperature=0.9, top_k=8)
    prompt = [1, 2, 3]
    plain, _ = run(target, NoDrafter(), prompt, 80, sampling, seed=7)
    for drafter in (
        PromptLookupDrafter(),
        ModelDrafter(FakeBackend(table_rule(seed=4, scale=1.0), n_ctx=512)),
        AutoDrafter(cheap(), BANDWIDTH_BOUND),  # type: ignore[arg-type]
    ):
        tokens, _ = run(target, drafter, prompt, 80, sampling, seed=7)
        assert tokens == plain
    other, _ = run(target, NoDrafter(), prompt, 80, sampling, seed=8)
    assert other != plain


def test_draft_model_warm_up_finds_a_good_draft_the_prior_would_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A draft token costs 0.8 target calls: at the prior belief (0.8) drafting never pays,
    so without evidence the model would sit idle. The warm-up drafts a few tokens anyway,
    sees every one accepted, and from then on the (perfect) draft model is used."""
    costly_draft = CostModel(tuple(1.0 + 0.05 * i for i in range(MAX_BATCH)), 0.8)
    target = FakeBackend(table_rule(seed=6), n_ctx=512)

    def run_auto() -> GenerationStats:
        model = ModelDrafter(FakeBackend(table_rule(seed=6), n_ctx=512))
        auto = AutoDrafter([], costly_draft, model, learn_costs=False)
        tokens, stats = run(target, auto, [1, 2], 100)
        assert tokens == greedy_reference(target, [1, 2], 100)
        return stats

    warmed = run_auto()
    assert warmed.per_drafter["model"].drafted >= 40
    assert warmed.mean_accepted_length > 2

    monkeypatch.setattr("spec_cli.drafters.auto.WARMUP_STEPS", 0)
    cold = run_auto()
    assert "model" not in cold.per_drafter  # the prior alone never tries it in 100 tokens


def positional_rule(seed: int) -> LogitsRule:
    """A target whose next token depends on its position: it never settles into copying."""
    table = np.random.default_rng(seed).standard_normal((4096, VOCAB)).astype(np.float32)

    def rule(context: Sequence[int]) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = table[len(context)]
        return out

    return rule


def test_cautious_estimates_keep_hopeful_guesses_off_a_compute_bound_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prompt lookup's prior for text that repeats is above 0.9. On a Q4-like curve (two
    tokens cost 1.95 calls) an 8-token draft at that prior looks worth it, but with no
    evidence yet the cautious estimate does not: on repeated text the target does not
    copy, auto drafts next to nothing, while taking the prior at face value drafts and
    loses. Output equals plain decoding either way."""
    target = FakeBackend(positional_rule(seed=8), n_ctx=512)
    prompt = [3, *([1, 2, 11, 13, 10, 12, 3, 5, 6, 7] * 3)]
    measured = (1.0, 1.95, 2.38, 2.96, 3.55, 4.13, 4.53, 4.92, 5.4)
    q4_like = CostModel((*measured, *(5.4 + 0.5 * i for i in range(1, MAX_BATCH - 8))))

    def drafted() -> int:
        auto = AutoDrafter([PromptLookupDrafter()], q4_like, learn_costs=False)
        tokens, stats = run(target, auto, prompt, 60)
        assert tokens == greedy_reference(target, prompt, 60)
        return stats.drafted_tokens

    cautious = drafted()
    assert cautious <= 4
    monkeypatch.setattr("spec_cli.drafters.auto.CAUTION_PER_COST", 0.0)
    assert drafted() >= 2 * cautious


def test_acceptance_estimates_carry_over_between_runs_at_bounded_weight() -> None:
    """Saved rates come back (so a new run starts from experience, not priors), each worth
    at most CARRIED_WEIGHT observations so the new text soon outweighs them; malformed
    data gives a fresh model rather than an error."""
    from spec_cli.acceptance import CARRIED_WEIGHT, AcceptanceModel
    from spec_cli.drafters.base import Draft

    learned = AcceptanceModel()
    draft = Draft([1, 2, 3], [None] * 3, [0.5] * 3, "prompt-lookup", [6, 6, 6])
    for _ in range(40):
        learned.record(draft, 3)  # always fully accepted
    carried = AcceptanceModel.from_json(learned.to_json())
    assert carried.estimate(draft)[0] > 0.9 > AcceptanceModel().estimate(draft)[0]
    assert carried.checked("prompt-lookup") == CARRIED_WEIGHT
    # JSON reads Infinity as a number, and an infinite count would make every rate NaN.
    infinite = {"source": [["x", 1.0, float("inf")]], "feature": [], "position": []}
    malformed: tuple[object, ...] = (
        None,
        [],
        {"source": [["x", 5, 1]]},
        {"source": "zz"},
        infinite,
    )
    for bad in malformed:
        assert AcceptanceModel.from_json(bad).checked("x") == 0
    only_model = AcceptanceModel.from_json(learned.to_json(), sources=["model"])
    assert only_model.checked("prompt-lookup") == 0
    assert only_model.estimate(draft) == AcceptanceModel().estimate(draft)


def test_auto_carries_only_the_draft_models_rates_to_the_next_run(
    tiny_model: str, tiny_draft: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A draft model's agreement with its target is known only from experience, so the
    next run with the same pair starts from it; cheap drafters start from their measured
    priors every run (a user's last runs made worse ones), and SPEC_NO_LEARN=1 carries
    nothing."""
    from spec_cli.session import ModelOptions, open_session

    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SPEC_NO_LEARN", raising=False)
    with open_session(ModelOptions(tiny_model, tiny_draft, ctx_size=256, threads=1)) as session:
        session._costs = BANDWIDTH_BOUND  # skip measuring this machine
        prompt = session.raw_prompt("abcabcabcabcabcabc")
        first = session.make_drafter("auto")
        run_tokens = list(generate(session.target, first, prompt, GenerationConfig(40), RNG0))
        assert run_tokens
        assert first.acceptance.checked("prompt-lookup") > 0  # type: ignore[attr-defined]
        first.close()
        saved = list((tmp_path / "acceptance").glob("*.json"))
        assert len(saved) == 1
        assert {row[0] for row in json.loads(saved[0].read_text())["feature"]} == {"model"}
        second = session.make_drafter("auto").acceptance  # type: ignore[attr-defined]
        assert second.checked(ModelDrafter.name) > 0
        assert second.checked("prompt-lookup") == second.checked("ngram") == 0
        monkeypatch.setenv("SPEC_NO_LEARN", "1")
        unlearned = session.make_drafter("auto").acceptance  # type: ignore[attr-defined]
        assert unlearned.checked(ModelDrafter.name) == 0


def test_auto_without_a_draft_model_keeps_no_acceptance_file(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spec_cli.session import ModelOptions, open_session

    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SPEC_NO_LEARN", raising=False)
    with open_session(ModelOptions(tiny_model, ctx_size=256, threads=1)) as session:
        session._costs = BANDWIDTH_BOUND
        drafter = session.make_drafter("auto")
        list(
            generate(
                session.target, drafter, session.raw_prompt("abcabcabc"), GenerationConfig(20), RNG0
            )
        )
        drafter.close()
    assert not (tmp_path / "acceptance").exists()


def continuing(
    reference: list[int], prompt: list[int]
) -> Callable[[Sequence[int], int], list[int]]:
    """A script that drafts the reference output from wherever the text has reached."""

    def script(context: Sequence[int], max_len: int) -> list[int]:
        done = len(context) - len(prompt)
        return reference[done : done + max_len]

    return script


def test_proposals_turned_down_still_learn_from_what_the_target_emitted() -> None:
    """Where drafting never pays (each extra token costs a full call) auto drafts nothing,
    yet every step checks each proposal against the token the target emitted: a drafter
    that would have been right ends up trusted and one that would have been wrong does not,
    with no tokens spent finding out."""
    target = FakeBackend(table_rule(seed=4), n_ctx=512)
    prompt = [1, 2]
    reference = greedy_reference(target, prompt, 80)

    right = continuing(reference, prompt)

    def wrong(context: Sequence[int], max_len: int) -> list[int]:
        return [(t + 1) % VOCAB for t in right(context, max_len)]

    good, bad = ScriptedDrafter(right, name="good"), ScriptedDrafter(wrong, name="bad")
    auto = AutoDrafter([good, bad], COMPUTE_BOUND, learn_costs=False)
    tokens, stats = run(target, auto, prompt, 60)
    assert tokens == reference[:60]
    assert stats.drafted_tokens == 0
    assert auto.acceptance.estimate(good.draft(prompt, 4, SamplingParams(), RNG0))[0] > 0.9
    assert auto.acceptance.estimate(bad.draft(prompt, 4, SamplingParams(), RNG0))[0] < 0.1


def test_a_step_run_without_drafting_teaches_nothing_twice() -> None:
    """With one token of budget or context left the engine verifies without asking for a
    draft: the previous step's proposals must not be learned again from that step."""
    target = FakeBackend(table_rule(seed=4), n_ctx=512)
    prompt = [1, 2]
    reference = greedy_reference(target, prompt, 4)
    good = ScriptedDrafter(continuing(reference, prompt), name="good")
    auto = AutoDrafter([good], COMPUTE_BOUND, learn_costs=False)
    auto.begin(prompt, 2)
    draft = auto.draft(prompt, 1, SamplingParams(), RNG0)
    context = [*prompt, reference[0]]
    auto.feedback(context, draft, 0)
    learned = auto.acceptance.checked("good")
    assert learned > 0
    auto.feedback([*context, reference[1]], Draft(), 0)
    assert auto.acceptance.checked("good") == learned


def test_proposals_are_judged_only_up_to_an_end_token() -> None:
    """A copy running past the end of a reply is cut at the end token, so auto neither
    verifies the tokens after it nor lets them make the proposal look better."""
    copy = [3, 4, 5, 0, 7, 8, 9, 10, 11, 12]
    scripted: list[object] = [ScriptedDrafter([copy])]
    auto = AutoDrafter(scripted, BANDWIDTH_BOUND, is_end=lambda t: t == 0)  # type: ignore[arg-type]
    auto.begin([1, 2])
    draft = auto.draft([1, 2], 16, SamplingParams(), RNG0)
    assert 0 not in draft.tokens
    assert draft.tokens == copy[: len(draft)]
    assert all(len(c) <= 3 for c in auto._candidates)


def test_a_draft_model_has_nothing_to_draft_after_an_empty_context() -> None:
    drafter = ModelDrafter(FakeBackend(cycle_rule()))
    assert drafter.draft([], 4, SamplingParams(), RNG0).tokens == []


def test_the_draft_model_stops_drafting_at_an_end_token() -> None:
    """cycle_rule from 10 gives 11, 12, 13, then EOS: no draft-model time is spent past it."""
    draft_backend = FakeBackend(cycle_rule())
    drafter = ModelDrafter(draft_backend)
    draft = drafter.draft([10], 8, SamplingParams(), RNG0)
    assert draft.tokens == [11, 12, 13]
    assert draft_backend.evaluated_tokens == 4  # 10, then 11, 12 and 13 (which gave EOS)


def test_unpromising_proposals_are_drafted_short_yet_learn_from_long_verdicts() -> None:
    """A proposal not worth verifying in full is only drafted to FIRST_LOOK tokens, after
    a one-token look (most steps draft little, and drafting costs time), but when another
    drafter's long draft shows it would have been right further, it is redrafted and
    learns all of that."""
    target = FakeBackend(table_rule(seed=4), n_ctx=512)
    prompt = [1, 2]
    reference = greedy_reference(target, prompt, 40)

    right = continuing(reference, prompt)

    good = ScriptedDrafter(right, name="good")
    shy = ScriptedDrafter(right, name="shy", confidence=0.3)  # rates its own tokens unlikely
    auto = AutoDrafter([good, shy], BANDWIDTH_BOUND, learn_costs=False)
    tokens, stats = run(target, auto, prompt, 17)  # one step: 16 drafts and a bonus
    assert tokens == reference[:17]
    assert stats.drafted_tokens == 16
    assert good.requested == [1, FIRST_LOOK, 16]
    assert shy.requested == [1, FIRST_LOOK, 16]  # the last call only to learn from
    assert auto.acceptance.checked("shy") == auto.acceptance.checked("good")


def test_a_first_token_too_unlikely_to_pay_costs_a_one_token_lookup() -> None:
    """Most steps of open-ended text draft nothing, and such a step must cost next to
    nothing: a proposal whose first token alone rules drafting out is looked up one
    token deep, yet still learns from the full verdict when it turns out right."""
    target = FakeBackend(table_rule(seed=4), n_ctx=512)
    prompt = [1, 2]
    reference = greedy_reference(target, prompt, 40)
    right = continuing(reference, prompt)
    good = ScriptedDrafter(right, name="good")
    doubtful = ScriptedDrafter(right, name="doubtful", confidence=0.01)
    auto = AutoDrafter([good, doubtful], MODERATE, learn_costs=False)
    assert MODERATE.break_even(16) > 0.01
    tokens, stats = run(target, auto, prompt, 17)
    assert tokens == reference[:17]
    assert stats.drafted_tokens == 16
    assert doubtful.requested == [1, 16]  # the 16 only to learn from good's verdict
    assert auto.acceptance.checked("doubtful") == auto.acceptance.checked("good")


def test_a_sampled_end_token_stays_in_the_draft_model_draft() -> None:
    """When sampling, dropping an end token because it was the one drawn would skew the
    output distribution, so the draft keeps it, and stops after it."""
    drafter = ModelDrafter(FakeBackend(cycle_rule()))
    draft = drafter.draft([11], 8, SamplingParams(temperature=0.05), RNG0)
    assert draft.tokens == [12, 13, 0]


def test_the_draft_model_drafts_nothing_once_the_text_holds_an_id_it_lacks() -> None:
    """A target may have up to 128 (padding) ids more than its draft model; should one
    appear in the text, the draft model cannot read it, so it drafts nothing."""
    drafter = ModelDrafter(FakeBackend(cycle_rule()), vocab_limit=VOCAB + 2)
    assert drafter.draft([3, VOCAB + 1, 4], 4, SamplingParams(), RNG0).tokens == []
    assert drafter.draft([3, 4], 4, SamplingParams(), RNG0).tokens == [5, 6, 7, 8]


class _DoubtAt:
    """Proposes 16 tokens, all sure but token `doubtful`, 60% likely by its own account;
    its estimates say how a token was found (as prompt lookup's do), or where in the
    draft it lies (as the n-gram drafter's do)."""

    name = "doubt"

    def __init__(self, doubtful: int, by_how_found: bool = True) -> None:
        self.doubtful = doubtful
        self.by_how_found = by_how_found

    def draft(self, context: Sequence[int], max_len: int, *_: object) -> Draft:
        n = min(max_len, 16)
        sure = [i != self.doubtful for i in range(n)]
        return Draft(
            [3] * n,
            [None] * n,
            [0.999 if ok else 0.6 for ok in sure],
            self.name,
            [int(ok) for ok in sure],
            self.by_how_found,
        )


@pytest.mark.parametrize(
    ("costs", "doubtful", "sent"),
    [(MODERATE, 0, 0), (BANDWIDTH_BOUND, 0, 16)],
)
def test_a_doubtful_token_ahead_of_sure_ones_is_checked_by_the_targets_own_token(
    costs: CostModel, doubtful: int, sent: int
) -> None:
    """Every target call emits one token of its own, so a draft that stops right before
    a doubtful token has it checked for free, and only if it is right is the sure rest
    sent on the next step. That pays when a second token in a call costs 0.4 of one;
    at 0.05, the whole draft goes at once."""
    auto = AutoDrafter([_DoubtAt(doubtful)], costs, learn_costs=False)  # type: ignore[list-item]
    draft = auto.draft([1, 2], 16, SamplingParams(), RNG0)
    assert len(draft) == sent


def test_estimates_by_draft_position_are_not_split_before_a_doubtful_token() -> None:
    """Once the target confirms the doubtful token, estimates by position would judge
    the rest from position 0 again, and could stop before it again, step after step:
    such a proposal is cut where the best single call says, never left to the target
    (the same proposal judged by how its tokens were found sends nothing, above)."""
    by_position = _DoubtAt(0, by_how_found=False)
    auto = AutoDrafter([by_position], MODERATE, learn_costs=False)  # type: ignore[list-item]
    draft = auto.draft([1, 2], 16, SamplingParams(), RNG0)
    est = auto.acceptance.estimate(draft, caution=MODERATE.verify_cost(2) - 1.0)
    assert len(draft) == MODERATE.best_length(est)[0] > 0


def test_a_proposal_turned_down_learns_its_real_rate_when_sampling() -> None:
    """Each emitted token, the one drawn after a rejection included, is a draw from the
    target's distribution, so a deterministic proposal that is not chosen learns how often
    the target would take it. Judged only when the chosen draft passed, one that differs
    from it would be judged only when wrong, and end up trusted at 0 whatever its rate."""

    def even(context: Sequence[int]) -> npt.NDArray[np.float32]:
        row = np.full(VOCAB, -40.0, dtype=np.float32)
        row[1] = row[2] = 0.0  # tokens 1 and 2 equally likely at every position
        return row

    ones = ScriptedDrafter(lambda c, n: [1] * n, name="ones", confidence=0.9)
    twos = ScriptedDrafter(lambda c, n: [2] * n, name="twos", confidence=0.6)
    auto = AutoDrafter([ones, twos], BANDWIDTH_BOUND, learn_costs=False)
    run(FakeBackend(even, n_ctx=4096), auto, [1, 2], 600, SamplingParams(temperature=1.0))
    for name in ("ones", "twos"):
        assert 0.3 < auto.acceptance.mean_rate(name, 0.5) < 0.7, name


def test_a_step_cut_short_by_ctrl_c_is_forgotten_by_the_next_generation() -> None:
    """Chat keeps its drafter across turns: a step interrupted while the target verified
    must not be timed (the pause until the next message is no verify call) nor have its
    proposals judged by the next generation's text."""

    class Interrupted(FakeBackend):
        interrupt = True

        def eval(self, tokens: Sequence[int], n_logits: int = 1) -> npt.NDArray[np.float32]:
            if self.interrupt and len(tokens) > 1 and len(self.cached) >= 2:
                self.interrupt = False
                raise KeyboardInterrupt
            return super().eval(tokens, n_logits)

    target = Interrupted(table_rule(seed=4), n_ctx=512)
    guess = ScriptedDrafter(lambda c, n: [5] * n, name="guess", confidence=0.99)
    auto = AutoDrafter([guess], BANDWIDTH_BOUND)
    with pytest.raises(KeyboardInterrupt):
        run(target, auto, [1, 2, 3], 50)
    learned = auto.acceptance.checked("guess")
    # One token of budget: the engine verifies without asking for a draft.
    run(target, auto, [7, 8, 9, 10, 11], 1)
    assert auto.acceptance.checked("guess") == learned
    assert not any(n > 1 for n in auto.online._seen)
