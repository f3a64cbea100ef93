"""A read-only n-gram table over a count file's arrays: loads in milliseconds.

Building `NgramCounts` dicts from a file costs about a second per 500,000 rows, paid by
every run that reads the file. Drafting only asks each context's best continuation, so
this table keeps just that, per context, in lists sorted by a hash of the context.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from spec_cli.ngram_counts import MAX_ORDER


class NgramLookup(Protocol):
    """What drafting asks of a table: NgramCounts (growing) or FrozenNgrams (from a file)."""

    def lookup(
        self, suffix: Sequence[int], min_order: int = 1
    ) -> tuple[int, int, int, int] | None: ...


_MULT = 0x9E3779B97F4A7C15  # odd 64-bit multiplier (golden ratio): spreads ids apart
_MASK = (1 << 64) - 1


def _hash_rows(keys: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per key row (ids shifted by one, so -1 padding hashes as 0)."""
    h = np.zeros(len(keys), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(keys.shape[1]):
            h = h * np.uint64(_MULT) + (keys[:, col] + 1).astype(np.uint64)
    return h


def _hash_key(key: Sequence[int], width: int) -> int:
    """_hash_rows for one key (padded to `width`), in Python integers."""
    h = 0
    for i in range(width):
        h = (h * _MULT + (int(key[i]) + 1 if i < len(key) else 0)) & _MASK
    return h


class FrozenNgrams:
    """Best continuation, its count and the context's total, per stored context."""

    def __init__(
        self,
        keys: npt.NDArray[np.integer],
        nexts: npt.NDArray[np.integer],
        counts: npt.NDArray[np.integer],
    ) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        if keys.ndim != 2:  # an empty file's keys
            keys = keys.reshape(0, MAX_ORDER)
        counts = np.asarray(counts, dtype=np.int64)
        self.width = self.max_order = int(keys.shape[1]) or MAX_ORDER
        hashes = _hash_rows(keys)
        # Grouped by hash, then by the key itself (two contexts may share a hash); per
        # context, its rows by falling count, among equals the first stored (as
        # NgramCounts picks the first added).
        columns = [keys[:, c] for c in range(keys.shape[1] - 1, -1, -1)]
        order = np.lexsort((np.arange(len(counts)), -counts, *columns, hashes))
        hashes, sorted_keys = hashes[order], keys[order]
        new_context = np.r_[
            True, (hashes[1:] != hashes[:-1]) | (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
        ]
        starts = np.flatnonzero(new_context)[: len(hashes)]
        first = order[starts]
        self._hashes: list[int] = hashes[starts].tolist()
        self._keys = keys[first]  # checked on a hit: a shared hash is not a match
        self._best: list[int] = np.asarray(nexts)[first].tolist()
        self._best_count: list[int] = counts[first].tolist()
        self._totals: list[int] = (
            np.add.reduceat(counts[order], starts).tolist() if len(starts) else []
        )

    def __len__(self) -> int:
        return len(self._hashes)

    def lookup(self, suffix: Sequence[int], min_order: int = 1) -> tuple[int, int, int, int] | None:
        """As NgramCounts.lookup: (token, its count, the context's total, order) of the
        longest stored context ending `suffix`, or None."""
        for n in range(min(self.max_order, len(suffix)), min_order - 1, -1):
            key = tuple(suffix[len(suffix) - n :])
            h = _hash_key(key, self.width)
            i = bisect_left(self._hashes, h)
            while i < len(self._hashes) and self._hashes[i] == h:
                stored = self._keys[i].tolist()
                if tuple(stored[:n]) == key and (n == self.width or stored[n] < 0):
                    return self._best[i], self._best_count[i], self._totals[i], n
                i += 1
        return None
