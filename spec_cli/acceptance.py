"""Running estimates of how often drafted tokens are accepted.

Each drafted token carries a drafter name, its position in the draft and a feature bucket
(how it was found). Tokens the target actually checked (up to and including the first
rejection) update a Beta-smoothed rate for their bucket; the drafter's own confidence is
the prior, so a bucket with little evidence falls back to what the drafter believes.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_cli.drafters.base import Draft

PRIOR_WEIGHT = 3.0  # pseudo-observations behind a drafter's own confidence
DECAY = 0.995  # older evidence fades so estimates follow the text as it changes


def position_bucket(i: int) -> int:
    return i if i < 4 else 4 if i < 8 else 5 if i < 16 else 6


@dataclass
class _Rate:
    accepted: float = 0.0
    seen: float = 0.0


class AcceptanceModel:
    """Per (drafter, feature, position) acceptance rates learned online."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, int, int], _Rate] = {}
        self.totals: dict[str, _Rate] = {}

    def estimate(self, draft: Draft) -> list[float]:
        """P(token i accepted | tokens before it accepted), per drafted token."""
        out = []
        for i in range(len(draft)):
            feat = draft.features[i] if i < len(draft.features) else 0
            prior = draft.confidence[i] if i < len(draft.confidence) else 0.5
            r = self._rates.get((draft.source, feat, position_bucket(i)))
            if r is None:
                out.append(prior)
            else:
                out.append((r.accepted + PRIOR_WEIGHT * prior) / (r.seen + PRIOR_WEIGHT))
        return out

    def record(self, draft: Draft, accepted: int) -> None:
        """Learn from one verification: tokens < accepted passed, token `accepted` failed."""
        checked = min(len(draft), accepted + 1)
        total = self.totals.setdefault(draft.source, _Rate())
        for i in range(checked):
            feat = draft.features[i] if i < len(draft.features) else 0
            r = self._rates.setdefault((draft.source, feat, position_bucket(i)), _Rate())
            r.accepted = r.accepted * DECAY + (1.0 if i < accepted else 0.0)
            r.seen = r.seen * DECAY + 1.0
            total.accepted = total.accepted * DECAY + (1.0 if i < accepted else 0.0)
            total.seen = total.seen * DECAY + 1.0

    def mean_rate(self, source: str, prior: float) -> float:
        """A drafter's overall per-token acceptance, smoothed toward `prior`."""
        t = self.totals.get(source)
        if t is None:
            return prior
        return (t.accepted + PRIOR_WEIGHT * prior) / (t.seen + PRIOR_WEIGHT)
