"""When a draft model that sat idle is worth catching up.

While cheap drafters win, the draft model reads nothing, and before it can draft again
it must read all they produced: on a CPU that can cost as much per token as copying the
text did. The catch-up pays back only over the tokens the model then helps with, and
how many those will be is unknown. This is the ski-rental problem: keep renting (going
on without the model, forgoing what it would have saved) until the rent paid equals the
price, then buy. That never costs more than twice what knowing the future would.
"""

from __future__ import annotations

from collections import deque

WINDOW = 16


class CatchUpPolicy:
    """Tracks what the model's steps save per token and what going on without it has
    forgone since, and judges catch-ups by them. Costs are in single target calls."""

    def __init__(self) -> None:
        self._steps: deque[tuple[int, float]] = deque(maxlen=WINDOW)  # model (tokens, cost)
        self._prior = (1.0, 1.0)  # a predicted model step (tokens, cost), worth one step
        self._rent = 0.0  # saving forgone since the model's last step

    def saving(self) -> float:
        """What a model step saves per token it yields."""
        tokens = self._prior[0] + sum(t for t, _ in self._steps)
        cost = self._prior[1] + sum(c for _, c in self._steps)
        return 1.0 - cost / tokens if tokens > 0 else 0.0

    def restart(self) -> None:
        """A generation begins: the model has read the prompt, nothing is owed."""
        self._rent = 0.0

    def on_step(self, by_model: bool, ran_model: bool, tokens: int, cost: float) -> None:
        """Record a verified step: whether its draft was the model's and whether the model
        ran at all (caught up), the tokens it yielded and what it cost. A step without the
        model pays rent: what the model would have saved on its tokens, less what the step
        saved itself (copies save more: no rent)."""
        if by_model:
            self._steps.append((tokens, cost))
        if ran_model:
            self._rent = 0.0
        else:
            forgone = tokens * self.saving() - (tokens - cost)
            self._rent = max(0.0, self._rent + forgone)

    def worth(
        self, catch_up: float, predicted: tuple[float, float], tokens_left: int | None = None
    ) -> bool:
        """Whether to pay `catch_up` now, a model step being predicted to yield
        `predicted` (tokens, cost): only once the rent paid reaches it, and never when
        the tokens left could not pay it back."""
        self._prior = predicted
        if catch_up <= 0:
            return True
        if tokens_left is not None and tokens_left * self.saving() < catch_up:
            return False
        return self._rent >= catch_up
