"""When a draft model that sat idle is worth catching up.

The draft model reads the prompt only when first run, and while cheap drafters win it
reads nothing; before it can draft it must read all it missed: on a CPU that can cost
as much per token as copying the text did. The catch-up pays back only over the tokens
the model then helps with, and how many those will be is unknown. This is the
ski-rental problem: keep renting (going on without the model, forgoing what it would
have saved) until the rent paid equals the price, then buy. That never costs more than
twice what knowing the future would. Here the price grows while renting (every token
made without the model is one more to read), so the rent is held against the price when
renting began: waiting longer only makes buying dearer.
"""

from __future__ import annotations

from collections import deque

WINDOW = 16
# Before the model has run in a generation, nothing says how much of the text it will
# help with: it reads what it must at once if that is repaid by its help on this share
# of the tokens left (otherwise the rent decides, as for any catch-up). The budget often
# overstates what is left (a summary ended after 82 of 200 tokens), and a long prompt is
# often copied from, which cheap drafters do: so the share is small. A 47-token prompt is
# read at once; a 160-token one to summarize waits for the rent (with a Q4_K_M draft at
# 0.08 calls a token read, summarize went from 1.55x to 2.19x, open-ended 1.37x to 1.52x).
UPFRONT_SHARE = 0.1


class CatchUpPolicy:
    """Tracks what the model's steps save per token and what going on without it has
    forgone since, and judges catch-ups by them. Costs are in single target calls."""

    def __init__(self) -> None:
        self._steps: deque[tuple[int, float]] = deque(maxlen=WINDOW)  # model (tokens, cost)
        self._prior = (1.0, 1.0)  # a predicted model step (tokens, cost), worth one step
        self._rent = 0.0  # saving forgone since the model last ran
        self._price: float | None = None  # the catch-up's cost when renting began
        self._fresh = True  # the model has not run in this generation

    def saving(self) -> float:
        """What a model step saves per token it yields."""
        tokens = self._prior[0] + sum(t for t, _ in self._steps)
        cost = self._prior[1] + sum(c for _, c in self._steps)
        return 1.0 - cost / tokens if tokens > 0 else 0.0

    def restart(self) -> None:
        """A generation begins: nothing is owed yet."""
        self._rent, self._price, self._fresh = 0.0, None, True

    def on_step(self, by_model: bool, ran_model: bool, tokens: int, cost: float) -> None:
        """Record a verified step: whether its draft was the model's and whether the model
        ran at all (caught up), the tokens it yielded and what it cost. A step without the
        model pays rent: what the model would have saved on its tokens, less what the step
        saved itself (copies save more: no rent)."""
        if by_model:
            self._steps.append((tokens, cost))
        if ran_model:
            self._rent, self._price, self._fresh = 0.0, None, False
        else:
            forgone = tokens * self.saving() - (tokens - cost)
            self._rent = max(0.0, self._rent + forgone)

    def worth(
        self, catch_up: float, predicted: tuple[float, float], tokens_left: int | None = None
    ) -> bool:
        """Whether to pay `catch_up` now, a model step being predicted to yield
        `predicted` (tokens, cost): never when the tokens left could not pay it back; at
        once for a first reading that a share of them repays; else once the rent paid
        reaches the price it had when renting began. Asking also records the prediction
        (which the rent is then reckoned with) and, once, the price."""
        self._prior = predicted
        if catch_up <= 0:
            return True
        if self._price is None:
            self._price = catch_up
        if tokens_left is not None:
            can_save = tokens_left * self.saving()
            if can_save < catch_up:
                return False
            if self._fresh and catch_up <= UPFRONT_SHARE * can_save:
                return True
        return self._rent >= min(catch_up, self._price)
