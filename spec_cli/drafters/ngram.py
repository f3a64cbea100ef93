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
from spec_cli.sampling import SamplingParams

SOURCES = ("context", "learned", "static")
# Prior that the top continuation is right, by source and matched order, before the
# share of that continuation scales it: long matches in this very text are copies.
_PRIOR_BY_ORDER = (
    (0.0, 0.15, 0.35, 0.5, 0.65),
    (0.0, 0.1, 0.3, 0.45, 0.6),
    (0.0, 0.1, 0.25, 0.35, 0.45),
)


def feature(source: int, order: int, count: int, total: int) -> int:
    """Bucket describing how a token was found, for acceptance calibration."""
    share = count / total
    share_bin = 0 if share < 0.4 else 1 if share < 0.7 else 2 if share < 0.95 else 3
    return source * 100 + order * 10 + share_bin * 2 + (1 if total >= 2 else 0)


class NgramDrafter:
    """Most-frequent-continuation chains over counted n-grams."""

    name = "ngram"

    def __init__(
        self,
        persistent: PersistentNgrams | None = None,
        static: NgramCounts | None = None,
        max_order: int = MAX_ORDER,
    ) -> None:
        self.persistent = persistent
        self.learned = persistent.load() if persistent is not None else None
        self.static = static
        self.max_order = max_order
        self.context = NgramCounts(max_order)
        self._tokens: list[int] = []

    def begin(self, context: Sequence[int]) -> None:
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
            out.confidence.append(_PRIOR_BY_ORDER[source][order] * count / total)
            out.features.append(feature(source, order, count, total))
        return out

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        """Teach the persistent cache this run's n-grams (orders >= 2)."""
        if self.persistent is None or len(self._tokens) < 2:
            return
        run = NgramCounts(self.max_order)
        for n in range(2, self.max_order + 1):
            run.tables[n] = self.context.tables[n]
        self.persistent.learn(run)
        self._tokens = []
