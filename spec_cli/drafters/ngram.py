"""N-gram drafting from three sources: this context, runs before, and a corpus.

The context counts grow with every accepted token (no rescans). At each draft position
the longest matching context (order 4 down to 2) is looked up in the context, then the
learned persistent cache, then the static corpus cache; order-1 context statistics come
last. The chain follows the most frequent continuation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spec_cli.drafters.base import Draft, extends
from spec_cli.ngram_counts import MAX_ORDER, NgramCounts, iter_suffix
from spec_cli.ngram_store import PersistentNgrams
from spec_cli.ngram_table import NgramLookup
from spec_cli.sampling import SamplingParams

SOURCES = ("context", "learned", "static")
# Prior that the top continuation of a match in this text is right, by matched order and
# its share of the continuations (< 0.4, < 0.7, < 0.95, then alone: seen once, or always
# so): long matches in this very text are copies, and a context this text always
# continues one way is continued that way again. Rates measured on the full bench
# suite's outputs.
_CONTEXT_PRIOR = (
    (),
    (0.1, 0.18, 0.45, 0.28, 0.55),
    (0.18, 0.27, 0.5, 0.55, 0.75),
    (0.2, 0.27, 0.5, 0.68, 0.83),
    (0.22, 0.42, 0.78, 0.88, 0.96),
)
# For counts from other texts (earlier runs, a corpus), by order, scaled by the share.
_PRIOR_BY_ORDER = (
    (),
    (0.0, 0.1, 0.3, 0.45, 0.6),
    (0.0, 0.1, 0.25, 0.35, 0.45),
)


def _share_bin(count: int, total: int) -> int:
    share = count / total
    return 0 if share < 0.4 else 1 if share < 0.7 else 2 if share < 0.95 else 3


def classify(source: int, order: int, count: int, total: int) -> tuple[int, float]:
    """(feature bucket for acceptance calibration, the drafter's own prior) of a token
    found as `count` of `total` continuations of an order-`order` match in `source`."""
    share_bin = _share_bin(count, total)
    seen_again = total >= 2
    feature = source * 100 + order * 10 + share_bin * 2 + int(seen_again)
    if source != 0:
        return feature, _PRIOR_BY_ORDER[source][order] * count / total
    # The last column is for a context seen more than once, always continued this way.
    column = 4 if share_bin == 3 and seen_again else share_bin
    return feature, _CONTEXT_PRIOR[order][column]


class NgramDrafter:
    """Most-frequent-continuation chains over counted n-grams."""

    name = "ngram"

    def __init__(
        self,
        persistent: PersistentNgrams | None = None,
        static: NgramLookup | None = None,
        max_order: int = MAX_ORDER,
    ) -> None:
        self.persistent = persistent
        self.learned = persistent.table() if persistent is not None else None
        self.static = static
        self.max_order = max_order
        self.context = NgramCounts(max_order)
        self._tokens: list[int] = []

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        self.context = NgramCounts(self.max_order)
        self._tokens = []

    def _index(self, context: Sequence[int]) -> None:
        if not extends(self._tokens, context):
            self.begin(context)
        known = len(self._tokens)
        for j in range(max(known, 1), len(context)):
            self.context.add_position(context, j)
        self._tokens.extend(context[known:])

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        self._index(context)
        out = Draft(source=self.name)
        tables = [
            (0, self.context, 2),
            (1, self.learned, 2),
            (2, self.static, 2),
            (0, self.context, 1),
        ]
        for _ in range(max_len):
            suffix = list(iter_suffix(context, out.tokens, self.max_order))
            hit = None
            for source, table, min_order in tables:
                if table is not None:
                    found = table.lookup(suffix, min_order)
                    if found is not None:
                        hit = source, found
                        break
            if hit is None:
                break
            source, (tok, count, total, order) = hit
            out.tokens.append(tok)
            out.probs.append(None)
            feature, prior = classify(source, order, count, total)
            out.confidence.append(prior)
            out.features.append(feature)
        return out

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        """Teach the persistent cache this run's n-grams (orders >= 2)."""
        if self.persistent is None or len(self._tokens) < 2:
            return
        self.persistent.learn(self.context.orders_from(2))
        self._tokens = []
