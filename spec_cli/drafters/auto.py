"""`auto`: chain the available drafters and take, per step, the draft with the best
expected gain under this machine's measured cost curve (possibly no draft at all)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from spec_cli.acceptance import AcceptanceModel
from spec_cli.costs import CostModel, OnlineCosts, Plan
from spec_cli.drafters.base import Draft, Drafter, before_end
from spec_cli.drafters.catch_up import CatchUpPolicy
from spec_cli.drafters.model import ModelDrafter
from spec_cli.sampling import SamplingParams

# Posterior standard deviations taken off cheap drafters' estimates, per unit of extra
# cost of a second token in a call (see AcceptanceModel.estimate).
CAUTION_PER_COST = 1.0
NEGLIGIBLE = 0.01  # a draft tail less likely than this to survive never sets the length
# Cheap drafters first propose this many tokens; longer only if all are worth verifying.
FIRST_LOOK = 8
MODEL_PRIOR = 0.8  # belief in a same-family draft model before any evidence
# A draft model the estimates currently rule out is still run now and then, so its
# estimate can recover; those tries may cost at most this share of the time.
EXPLORE_BUDGET = 0.01
EXPLORE_MIN_STEPS = 16
# A draft model's first call of a step reads the routine few tokens (the previous step's
# last accepted ones and the target's): it is one of the draft tokens' costs. Reading
# more is a catch-up (see CatchUpPolicy).
ROUTINE_CATCH_UP = 2
# The draft model drafts at least WARMUP_LEN tokens a step until the target has checked
# WARMUP_TOKENS of them (at most WARMUP_STEPS steps), whatever the estimates say: its
# real acceptance is unknown until tried, and a same-family draft is often far better
# than any prior.
WARMUP_STEPS = 6
# Until warmed up, the model's steps are judged at least this likely to be accepted (a
# same-family draft agreed on 97.6% of tokens here): the prior alone would keep an
# untried model from ever being read in.
WARMUP_RATE = 0.95
WARMUP_LEN = 4
WARMUP_TOKENS = 12


class AutoDrafter:
    """Cost-aware drafter chain.

    Cheap drafters (prompt lookup, n-grams) propose every step; their tokens' acceptance
    is estimated from what was accepted before, and each proposal is cut to the length
    that maximizes expected tokens per unit of verify cost; a copy may also stop right
    before a doubtful token, which the target's own next token then checks for free
    (see _plan). Every proposal, chosen or not, is then checked against the tokens the
    target emitted, so each drafter learns from every step, including steps that drafted
    nothing. The draft model runs only when its expected gain beats the best cheap
    proposal, and stops drafting as soon as one more token is not worth its cost.
    Choosing length 0 is plain decoding.
    """

    name = "auto"

    def __init__(
        self,
        cheap: Sequence[Drafter],
        costs: CostModel,
        model: ModelDrafter | None = None,
        learn_costs: bool = True,
        acceptance: AcceptanceModel | None = None,
        on_close: Callable[[AcceptanceModel], None] | None = None,
        is_end: Callable[[int], bool] | None = None,
    ) -> None:
        self.cheap = list(cheap)
        # Proposals are judged only up to an end-of-generation token (see before_end).
        self._is_end = is_end if is_end is not None else lambda token: False
        self.online = OnlineCosts(costs)
        self.learn_costs = learn_costs
        self.model = model
        # Start from what earlier runs learned, when the caller kept it.
        self.acceptance = acceptance if acceptance is not None else AcceptanceModel()
        self._on_close = on_close
        self._since_model = 0
        self._catch_up = CatchUpPolicy()
        self._end: int | None = None  # context length where the generation must stop
        self._model_calls = 0  # draft-model calls of this step
        self._model_ran = False  # whether the model ran this step (and so caught up)
        self._candidates: list[Draft] = []  # this step's proposals, before truncation
        # Cheap proposals cut at FIRST_LOOK tokens, with their drafters and the length
        # they may grow to, for learning from a longer verdict.
        self._cut: dict[int, tuple[Drafter, int]] = {}
        self._start = 0  # context length they were drafted after
        # This step's draft() arguments, for redrafting a cut proposal.
        self._sampling = SamplingParams()
        self._rng = np.random.default_rng(0)
        if model is not None:
            model.should_continue = self._model_should_continue
        self._max_len = 0
        self._verify_started: float | None = None  # when this step's draft went to the target
        self._batch = 1
        self._warmup = WARMUP_STEPS
        self._hopeless_costs: CostModel | None = None
        self._hopeless_len = 0
        self._hopeless = 1.0

    @property
    def costs(self) -> CostModel:
        return self.online.model

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        self._end = len(context) + max_new if max_new is not None else None
        # A step the last generation left unfinished (Ctrl-C during its verify) must
        # neither time the pause since nor judge its proposals by the new text.
        self._verify_started, self._candidates, self._cut = None, [], {}
        self._model_calls, self._model_ran = 0, False
        self._catch_up.restart()
        for d in self._all():
            d.begin(context, max_new)

    def _all(self) -> list[Drafter]:
        return [*self.cheap, *([self.model] if self.model is not None else [])]

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        self._candidates = []
        self._cut = {}
        self._start = len(context)
        self._sampling, self._rng = sampling, rng
        best_value, best, best_cost = self._best_cheap(context, max_len, sampling, rng)
        # Warming up forces drafting, never reading: the prompt, or text cheap drafters
        # produced, is read only when the catch-up rule says it pays.
        lag = self.model.pending(context) if self.model is not None else 0
        may_warm = self._warming() and max_len > 0
        warming = may_warm and lag <= ROUTINE_CATCH_UP
        if self.model is not None and (
            warming or self._model_worth_it(context, lag, best_value, max_len)
        ):
            best = self._model_draft(context, max_len, may_warm, best_value, best, best_cost)
        else:
            self._since_model += 1
        self._batch = len(best) + 1
        self._verify_started = time.perf_counter()
        return best

    def _best_cheap(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> tuple[float, Draft, float]:
        """The cheap drafters' best draft, its plan's value (tokens per unit of cost) and
        expected cost, or an empty draft valued as plain decoding; every proposal becomes
        a candidate to learn from."""
        best_cost = self.costs.verify_cost(1)
        best_value = 1.0 / best_cost
        best = Draft(source=self.name)
        # Cheap guesses start from hopeful priors: judge them the more cautiously the
        # more a wrong token costs (a second token in a call: ~1x more on a compute-bound
        # target, ~0.3x on a bandwidth-bound one).
        caution = CAUTION_PER_COST * (self.costs.verify_cost(2) - 1.0)
        hopeless = self._break_even(max_len)
        for drafter in self.cheap:
            # Most steps draft nothing, and the step must then cost next to nothing:
            # look at one token first, then a short draft, and at the full length only
            # when all of the short one is worth verifying.
            length = min(max_len, 1)
            while True:
                cand = before_end(drafter.draft(context, length, sampling, rng), self._is_end)
                est = self.acceptance.estimate(cand, floor=NEGLIGIBLE, caution=caution)
                if length == 1 and max_len > 1:
                    # Whatever follows, a first token this unlikely rules out drafting.
                    plan = Plan(0, 0, 0.0, 1.0)
                    if not est or est[0] <= hopeless:
                        break
                    length = min(max_len, FIRST_LOOK)
                    continue
                plan = self._plan(cand, est)
                if plan.planned < length or len(cand) < length or length == max_len:
                    break
                length = max_len
            if not cand.tokens:
                continue
            if len(cand) == length < max_len:
                self._cut[len(self._candidates)] = drafter, max_len
            self._candidates.append(cand)
            if plan.value > best_value:
                # The best plan may send nothing now: the target's own next token checks
                # the doubtful first one.
                best_value, best_cost = plan.value, plan.cost
                best = cand.truncated(plan.now) if plan.now > 0 else Draft(source=self.name)
        return best_value, best, best_cost

    def _plan(self, cand: Draft, est: list[float]) -> Plan:
        """The best plan for a cheap proposal.

        Stopping before a doubtful token, for the target's own token to check it, pays
        only if the rest is then judged as it is now. That holds when a token's estimate
        says how it was found, not where in the draft it lies (prompt lookup: how long
        the text has agreed with the copied place, which grows as tokens are confirmed).
        Estimates by draft position would judge the rest anew from position 0, often
        lower, and stop before it again, step after step.
        """
        if cand.features_cover_position:
            return self.costs.best_split(est)
        k, value = self.costs.best_length(est)
        return Plan(k, k, value, self.costs.verify_cost(k + 1))

    def _model_draft(
        self,
        context: Sequence[int],
        max_len: int,
        may_warm: bool,
        best_value: float,
        best: Draft,
        best_cost: float,
    ) -> Draft:
        """Run the draft model; its draft if it beats `best` (worth `best_value`, at an
        expected cost of `best_cost`)."""
        assert self.model is not None
        self._max_len = max_len
        cand = self.model.draft(context, max_len, self._sampling, self._rng)
        self._model_calls, self._model_ran = len(cand), True
        if self.learn_costs:
            for seconds in self.model.step_seconds:
                self.online.observe_draft(seconds)
        self._since_model = 0
        if cand.tokens:
            self._candidates.append(cand)
        # A reading paid for on the warm-up's hopes makes its draft the warm-up's next try
        # (judged by the prior alone, it would be thrown away).
        if may_warm:
            self._warmup -= 1
            return cand
        if not cand.tokens:
            return best
        if not self._sampling.greedy:
            # Run on expectations alone, a sampled draft goes whole: keeping it or cutting
            # it by the tokens it drew would skew rejection sampling. It has already
            # stopped where one more token stopped paying (should_continue looks only at
            # tokens kept).
            return cand
        est = self.acceptance.estimate(cand)
        k, value = self.costs.best_length(est, self.costs.draft_token, len(cand))
        # The model's tokens are paid for whichever draft goes, and best_length counts
        # them: the other draft's value must count them too, or a model draft that
        # beats it is thrown away with its cost already spent.
        spent = self.costs.draft_token * len(cand)
        other_value = best_value * best_cost / (best_cost + spent)
        return cand.truncated(k) if k > 0 and value > other_value else best

    def _break_even(self, max_len: int) -> float:
        """break_even, recomputed only when the costs or the length limit change."""
        costs = self.costs
        if self._hopeless_costs is not costs or self._hopeless_len != max_len:
            self._hopeless_costs, self._hopeless_len = costs, max_len
            self._hopeless = costs.break_even(max_len)
        return self._hopeless

    def _warming(self) -> bool:
        return (
            self.model is not None
            and self._warmup > 0
            and self.acceptance.checked(ModelDrafter.name) < WARMUP_TOKENS
        )

    @staticmethod
    def _explore_every(waste: float) -> int:
        """Steps between tries that each waste `waste` single-call times at most."""
        return max(EXPLORE_MIN_STEPS, math.ceil(waste / EXPLORE_BUDGET))

    def _model_worth_it(
        self, context: Sequence[int], lag: int, best_value: float, max_len: int
    ) -> bool:
        """Whether to run the model, which must first read `lag` tokens."""
        costs = self.costs
        catch_up = costs.catch_up_cost(lag) - costs.catch_up_cost(min(lag, ROUTINE_CATCH_UP))
        waste = catch_up + 2 * costs.draft_token + costs.verify_cost(3) - 1.0
        if self._since_model >= self._explore_every(waste):
            return True
        rate = self.acceptance.mean_rate(ModelDrafter.name, MODEL_PRIOR)
        if self._warming():
            rate = max(rate, WARMUP_RATE)
        k, value = costs.best_length([rate] * max_len, costs.draft_token)
        if value <= best_value:
            return False
        step_cost = costs.verify_cost(k + 1) + costs.draft_token * k
        left = None if self._end is None else self._end - len(context)
        return self._catch_up.worth(catch_up, (step_cost * value, step_cost), left)

    def _model_should_continue(self, draft: Draft) -> bool:
        """Draft one more token only if some longer draft still pays for its cost."""
        if self._warming() and len(draft) < WARMUP_LEN:
            return True
        est = self.acceptance.estimate(draft)
        rate = self.acceptance.mean_rate(ModelDrafter.name, MODEL_PRIOR)
        future = [rate] * max(0, self._max_len - len(draft))
        k, _ = self.costs.best_length([*est, *future], self.costs.draft_token, sunk=len(draft))
        return k > len(draft)

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        # The engine verifies between our draft() and this call: that is the target's time.
        # A step the engine ran without asking us (no room left to draft) teaches nothing.
        if self._verify_started is not None:
            if self.learn_costs:
                self.online.observe(self._batch, time.perf_counter() - self._verify_started)
            self._learn_acceptance(context, draft)
        self._verify_started, self._candidates = None, []
        cost = self.costs.verify_cost(len(draft) + 1) + self.costs.draft_token * self._model_calls
        by_model = draft.source == ModelDrafter.name
        self._catch_up.on_step(by_model, self._model_ran, accepted + 1, cost)
        self._model_calls, self._model_ran = 0, False  # a step without draft() runs none
        for d in self._all():
            d.feedback(context, draft, accepted)

    def _learn_acceptance(self, context: Sequence[int], chosen: Draft) -> None:
        """Check each proposal against what the target emitted this step (the end of
        `context`).

        When sampling, every emitted token, the one drawn after a rejection included, is
        a draw from the target's distribution given the tokens before it (what makes
        speculative sampling exact), so a deterministic proposal is judged on all of them:
        leaving out the token after a rejection would judge the proposals that differ from
        the chosen draft only when they are wrong. Proposals sampled from a draft
        distribution are judged only when chosen: matching a sample is not their
        acceptance.
        """
        emitted = context[self._start :]
        greedy = self._sampling.greedy
        for index, cand in enumerate(self._candidates):
            sampled = any(q is not None for q in cand.probs)
            if not greedy and sampled and cand.source != chosen.source:
                continue
            m = _agreeing(cand.tokens, emitted)
            if m == len(cand) < len(emitted) and index in self._cut:
                # Right as far as it was drafted and checked further: the full proposal
                # has a verdict on more tokens (long copies learn to be trusted).
                drafter, full = self._cut[index]
                redrafted = drafter.draft(context[: self._start], full, self._sampling, self._rng)
                cand = before_end(redrafted, self._is_end)
                m = _agreeing(cand.tokens, emitted, m)
            # A proposal longer than what was checked has no verdict past that point.
            self.acceptance.record(cand, m, censored=m == len(emitted))

    def close(self) -> None:
        for d in self._all():
            d.close()
        if self._on_close is not None:
            self._on_close(self.acceptance)
            self._on_close = None


def _agreeing(tokens: Sequence[int], truth: Sequence[int], start: int = 0) -> int:
    """How many leading tokens equal the truth (the first `start` are known to)."""
    m = start
    while m < len(tokens) and m < len(truth) and tokens[m] == truth[m]:
        m += 1
    return m
