"""Running estimates of how often drafted tokens are accepted.

Each drafted token carries a drafter name, its position in the draft and a feature bucket
(how it was found). Tokens the target checked (up to and including the first rejection)
update Beta-smoothed rates per (drafter, feature) and per (drafter, feature, position);
an estimate starts from the drafter's own confidence for the token, is shrunk toward the
feature's rate, then toward the position's (unless the feature already encodes the
position, as prompt lookup's copy length does). Drafters' confidences differ by feature (a
long copy is likelier right than a one-token match), so a feature with no evidence yet
keeps its own prior rather than borrowing the drafter's average. A per-drafter rate is
also kept, for drafters judged as a whole (the draft model).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from spec_cli.drafters.base import Draft

PRIOR_WEIGHT = 3.0  # pseudo-observations behind each level's prior
DECAY = 0.95  # older evidence fades, so estimates follow the text as it changes
CARRIED_WEIGHT = 12.0  # observations an earlier run's rate is worth at the start of a new one


def position_bucket(i: int) -> int:
    return i if i < 4 else 4 if i < 8 else 5 if i < 16 else 6


@dataclass
class _Rate:
    accepted: float = 0.0
    seen: float = 0.0

    def add(self, ok: bool) -> None:
        self.accepted = self.accepted * DECAY + (1.0 if ok else 0.0)
        self.seen = self.seen * DECAY + 1.0

    def shrunk(self, prior: float) -> float:
        return (self.accepted + PRIOR_WEIGHT * prior) / (self.seen + PRIOR_WEIGHT)


class AcceptanceModel:
    """Hierarchically smoothed acceptance rates learned online."""

    def __init__(self) -> None:
        self._by_source: dict[str, _Rate] = {}
        self._by_feature: dict[tuple[str, int], _Rate] = {}
        self._by_position: dict[tuple[str, int, int], _Rate] = {}

    def _levels(self, source: str, feat: int, i: int) -> tuple[_Rate | None, _Rate | None]:
        return (
            self._by_feature.get((source, feat)),
            self._by_position.get((source, feat, position_bucket(i))),
        )

    def estimate(self, draft: Draft, floor: float = 0.0, caution: float = 0.0) -> list[float]:
        """P(token i accepted | tokens before it accepted), per drafted token.

        `caution` lowers each estimate by that many posterior standard deviations of the
        evidence for its feature: with little evidence a guess must look clearly worth
        it, which keeps expensive-to-verify targets from losing time on hopeful guesses
        while the estimates learn. Stops early once the chance that the whole draft so
        far is accepted falls below `floor`: later tokens could not change a length
        decision.
        """
        out = []
        alive = 1.0
        for i in range(len(draft)):
            if alive < floor:
                break
            p = draft.confidence[i] if i < len(draft.confidence) else 0.5
            feat = draft.features[i] if i < len(draft.features) else 0
            by_feature, by_position = self._levels(draft.source, feat, i)
            # A feature that already says how far into a copy the token lies makes the
            # position level a needless split of the same evidence.
            levels = (by_feature,) if draft.features_cover_position else (by_feature, by_position)
            for level in levels:
                if level is not None:
                    p = level.shrunk(p)
            # How often tokens like this one have been checked: the estimate's evidence.
            evidence = PRIOR_WEIGHT + (by_feature.seen if by_feature is not None else 0.0)
            if caution:
                p = max(0.0, p - caution * math.sqrt(p * (1.0 - p) / (evidence + 1.0)))
            out.append(p)
            alive *= p
        return out

    def record(self, draft: Draft, accepted: int, censored: bool = False) -> None:
        """Learn from one verification: tokens < accepted passed, token `accepted` failed
        (unless `censored`: the check ended there without a verdict on that token)."""
        src = draft.source
        for i in range(min(len(draft), accepted if censored else accepted + 1)):
            ok = i < accepted
            feat = draft.features[i] if i < len(draft.features) else 0
            self._by_source.setdefault(src, _Rate()).add(ok)
            self._by_feature.setdefault((src, feat), _Rate()).add(ok)
            if not draft.features_cover_position:  # estimate() would never read it
                self._by_position.setdefault((src, feat, position_bucket(i)), _Rate()).add(ok)

    def checked(self, source: str) -> float:
        """How many of a drafter's tokens the target has checked (recent ones weigh more)."""
        rate = self._by_source.get(source)
        return 0.0 if rate is None else rate.seen

    def mean_rate(self, source: str, prior: float) -> float:
        """A drafter's overall per-token acceptance, smoothed toward `prior`."""
        rate = self._by_source.get(source)
        return prior if rate is None else rate.shrunk(prior)

    # -- persistence: what earlier runs learned is a better start than the priors --------

    def to_json(self, sources: Collection[str] | None = None) -> dict[str, list[list[object]]]:
        """Every rate (of `sources` only, when given) as [key..., accepted, seen] rows."""
        return {
            "source": [
                [k, r.accepted, r.seen] for k, r in self._by_source.items() if _wanted(k, sources)
            ],
            "feature": [
                [*k, r.accepted, r.seen]
                for k, r in self._by_feature.items()
                if _wanted(k[0], sources)
            ],
            "position": [
                [*k, r.accepted, r.seen]
                for k, r in self._by_position.items()
                if _wanted(k[0], sources)
            ],
        }

    @classmethod
    def from_json(
        cls, data: object, weight: float = CARRIED_WEIGHT, sources: Collection[str] | None = None
    ) -> AcceptanceModel:
        """Rates saved by `to_json` (those of `sources` only, when given), each worth at
        most `weight` observations, so the text at hand soon outweighs them. Malformed
        data gives a fresh model."""
        model = cls()
        try:
            assert isinstance(data, dict)
            for row in data["source"]:
                if _wanted(str(row[0]), sources):
                    model._by_source[str(row[0])] = _carried(row[1], row[2], weight)
            for row in data["feature"]:
                if _wanted(str(row[0]), sources):
                    key2 = (str(row[0]), int(row[1]))
                    model._by_feature[key2] = _carried(row[2], row[3], weight)
            for row in data["position"]:
                if _wanted(str(row[0]), sources):
                    key3 = (str(row[0]), int(row[1]), int(row[2]))
                    model._by_position[key3] = _carried(row[3], row[4], weight)
        except (AssertionError, KeyError, TypeError, ValueError, IndexError):
            return cls()
        return model


def _wanted(source: str, sources: Collection[str] | None) -> bool:
    """Whether a drafter's rates are among `sources` (None: all are)."""
    return sources is None or source in sources


def _carried(accepted: object, seen: object, weight: float) -> _Rate:
    a, s = float(accepted), float(seen)  # type: ignore[arg-type]
    # JSON allows Infinity, which would make every rate NaN.
    if not (0.0 <= a <= s) or s <= 0 or not math.isfinite(s):
        raise ValueError("bad rate")
    scale = min(1.0, weight / s)
    return _Rate(a * scale, s * scale)
