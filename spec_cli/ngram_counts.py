"""Incrementally maintained n-gram continuation counts over token ids.

`counts[n][key]` maps an n-token context (a tuple) to {next token: count}. Adding a token
updates the four orders in O(1), so a growing context is never rescanned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

MAX_ORDER = 4


class NgramCounts:
    """Continuation counts for 1..max_order token contexts."""

    def __init__(self, max_order: int = MAX_ORDER) -> None:
        self.max_order = max_order
        self.tables: list[dict[tuple[int, ...], dict[int, int]]] = [
            {} for _ in range(max_order + 1)
        ]

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables)

    def rows(self) -> int:
        """How many (context, continuation) pairs are counted: a file's row count."""
        return sum(len(row) for table in self.tables for row in table.values())

    def age(self, factor: float) -> None:
        """Scale every count down by `factor`, rounding down; a continuation that falls
        to 0 goes, except each context's most frequent one (kept at least at 1). So
        contexts seen long ago give way to ones seen since unless they keep coming back,
        and a context of many one-off continuations shrinks to one."""
        for table in self.tables:
            for row in table.values():
                top = max(row, key=row.__getitem__)
                for tok in list(row):
                    scaled = int(row[tok] * factor)
                    if scaled > 0 or tok == top:
                        row[tok] = max(1, scaled)
                    else:
                        del row[tok]

    def keep_most_frequent(self, limit: int) -> None:
        """Keep whole contexts, most frequent first (the newest among equals), up to
        `limit` rows: what to_arrays writes, done in place."""
        contexts = [
            (n, key, row) for n, table in enumerate(self.tables) for key, row in table.items()
        ]
        kept = _most_frequent([row for _, _, row in contexts], limit)
        if kept is None:
            return
        self.tables = [{} for _ in range(self.max_order + 1)]
        for i in kept:
            n, key, row = contexts[i]
            self.tables[n][key] = row

    def add(self, key: tuple[int, ...], token: int, count: int = 1) -> None:
        row = self.tables[len(key)].setdefault(key, {})
        row[token] = row.get(token, 0) + count

    def add_position(self, tokens: Sequence[int], j: int, min_order: int = 1) -> None:
        """Count tokens[j] as the continuation of each context ending just before j (of
        at least `min_order` tokens)."""
        nxt = tokens[j]
        for n in range(min_order, min(self.max_order, j) + 1):
            self.add(tuple(tokens[j - n : j]), nxt)

    def add_sequence(self, tokens: Sequence[int], min_order: int = 1) -> None:
        """Count every position's continuation (see add_position)."""
        for j in range(1, len(tokens)):
            self.add_position(tokens, j, min_order)

    def lookup(self, suffix: Sequence[int], min_order: int = 1) -> tuple[int, int, int, int] | None:
        """Best continuation of the longest known context that ends `suffix`.

        Returns (token, its count, total count of that context, order) or None.
        """
        for n in range(min(self.max_order, len(suffix)), min_order - 1, -1):
            row = self.tables[n].get(tuple(suffix[len(suffix) - n :]))
            if row:
                tok = max(row, key=row.__getitem__)
                return tok, row[tok], sum(row.values()), n
        return None

    def orders_from(self, min_order: int) -> NgramCounts:
        """These counts without contexts shorter than `min_order` tokens (tables shared,
        not copied)."""
        kept = NgramCounts(self.max_order)
        for n in range(min_order, self.max_order + 1):
            kept.tables[n] = self.tables[n]
        return kept

    def merge(self, other: NgramCounts) -> None:
        for n in range(1, min(self.max_order, other.max_order) + 1):
            for key, row in other.tables[n].items():
                for tok, c in row.items():
                    self.add(key, tok, c)

    # -- compact array form, for files ----------------------------------------------------

    def to_arrays(
        self, limit: int | None = None, min_order: int = 1
    ) -> dict[str, npt.NDArray[np.int32]]:
        """Rows (key padded with -1, next, count) of contexts of at least `min_order` tokens.

        With a row `limit`, whole contexts are kept, most frequent first (cutting some of a
        context's continuations would change the shares the drafter judges them by), and
        among equals the most recently added (so a full learned cache makes room for new
        text rather than keeping whatever came first).
        """
        contexts = [
            (key, row)
            for n in range(min_order, self.max_order + 1)
            for key, row in self.tables[n].items()
        ]
        kept = None if limit is None else _most_frequent([row for _, row in contexts], limit)
        if kept is not None:
            contexts = [contexts[i] for i in kept]
        keys: list[list[int]] = []
        nexts: list[int] = []
        counts: list[int] = []
        for key, row in contexts:
            padded = [*key, *([-1] * (self.max_order - len(key)))]
            for tok, cnt in row.items():
                keys.append(padded)
                nexts.append(tok)
                counts.append(cnt)
        k = np.asarray(keys, dtype=np.int32).reshape(-1, self.max_order)
        t = np.asarray(nexts, dtype=np.int32)
        c = np.asarray(counts, dtype=np.int32)
        return {"keys": k, "nexts": t, "counts": c}

    @classmethod
    def from_arrays(
        cls,
        keys: npt.NDArray[np.int32],
        nexts: npt.NDArray[np.int32],
        counts: npt.NDArray[np.int32],
    ) -> NgramCounts:
        out = cls(int(keys.shape[1]) if keys.ndim == 2 and keys.shape[1] else MAX_ORDER)
        for key_row, tok, c in zip(keys.tolist(), nexts.tolist(), counts.tolist(), strict=False):
            key = tuple(v for v in key_row if v >= 0)
            if key:
                out.add(key, tok, c)
        return out


def _most_frequent(rows: Sequence[dict[int, int]], limit: int) -> list[int] | None:
    """Indexes of the contexts (`rows`, oldest first) to keep within `limit` rows: whole
    contexts, the most frequent first, the newest among equals; in their original order,
    so "newest" still means newest after a file is read back and merged again. None when
    all fit."""
    if sum(len(row) for row in rows) <= limit:
        return None
    totals = np.asarray([sum(row.values()) for row in rows], dtype=np.int64)
    kept, used = [], 0
    for i in np.lexsort((-np.arange(len(rows)), -totals)).tolist():
        if used + len(rows[i]) <= limit:
            kept.append(i)
            used += len(rows[i])
    return sorted(kept)


def iter_suffix(context: Sequence[int], drafted: Sequence[int], n: int) -> Iterable[int]:
    """The last n tokens of context + drafted without copying the whole context."""
    if len(drafted) >= n:
        return drafted[len(drafted) - n :]
    need = n - len(drafted)
    return [*context[max(0, len(context) - need) :], *drafted]
