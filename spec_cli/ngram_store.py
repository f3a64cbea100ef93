"""N-gram count files: the persistent cache learned from earlier runs and static caches
built from a corpus. Both are keyed to a vocabulary, since token ids mean nothing across
tokenizers."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spec_cli.cachefiles import cache_dir, locked, write_atomic
from spec_cli.errors import SpecError
from spec_cli.ngram_counts import NgramCounts
from spec_cli.ngram_table import FrozenNgrams, NgramLookup

PERSISTENT_LIMIT = 100_000  # rows kept in the learned cache (a few MB)
# Once the learned cache is full, what it holds is aged by this factor before a run's
# counts join it: without it, contexts seen twice long ago would fill every row and a new
# run's contexts (seen once so far) would be dropped on every write, never adding up.
AGE_WHEN_FULL = 0.8


Arrays = tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]


def read_arrays(path: Path) -> tuple[Arrays, str] | None:
    """((keys, nexts, counts), vocabulary id) stored at `path`, or None when missing or
    corrupt."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, nexts, counts = data["keys"], data["nexts"], data["counts"]
            vocab = str(data["vocab"])
    except Exception:  # numpy and zipfile raise many kinds for a damaged file
        return None
    if keys.ndim != 2 or not len(keys) == len(nexts) == len(counts):
        return None
    # Counts of 0 or less, or negative token ids, are not ours: a damaged or hand-edited
    # file, read as none.
    if counts.size and (counts.min() <= 0 or nexts.min() < 0 or keys.min() < -1):
        return None
    return (keys, nexts, counts), vocab


def read_counts(path: Path) -> tuple[NgramCounts, str] | None:
    """(counts, vocabulary id) stored at `path`, or None when missing or corrupt."""
    loaded = read_arrays(path)
    return None if loaded is None else (NgramCounts.from_arrays(*loaded[0]), loaded[1])


def read_table(path: Path) -> tuple[FrozenNgrams, str] | None:
    """As read_counts, as a read-only table that loads in a fraction of the time."""
    loaded = read_arrays(path)
    return None if loaded is None else (FrozenNgrams(*loaded[0]), loaded[1])


STATIC_MIN_ORDER = 2  # a corpus's single-token contexts say little about this text
CORPUS_CHUNK = 1 << 20  # characters of a corpus tokenized at a time (cut at a line end)
# While counting a corpus, the table may grow to SPARE_ROWS times the rows the file keeps;
# then it is cut to KEPT_ROWS times, the most frequent contexts first. The room between
# the two lets contexts that recur now and then across chunks add up before the next cut.
SPARE_ROWS = 4
KEPT_ROWS = 2


def count_corpus_text(
    counts: NgramCounts, text: str, tokenize: Callable[..., list[int]], limit: int
) -> int:
    """Add `text`'s 2..4-token contexts to `counts`, a chunk at a time; how many tokens
    it had. Memory stays in proportion to `limit`, not to the corpus (see SPARE_ROWS)."""
    n_tokens = 0
    start = 0
    while start < len(text):
        end = min(len(text), start + CORPUS_CHUNK)
        if end < len(text):
            newline = text.rfind("\n", start + CORPUS_CHUNK // 2, end)
            end = newline + 1 if newline >= 0 else end  # n-grams across a cut are lost
        tokens = tokenize(text[start:end], add_bos=False)
        counts.add_sequence(tokens, STATIC_MIN_ORDER)
        n_tokens += len(tokens)
        if counts.rows() > SPARE_ROWS * limit:
            counts.keep_most_frequent(KEPT_ROWS * limit)
        start = end
    return n_tokens


def counts_file(
    counts: NgramCounts, vocab: str, limit: int | None = None, min_order: int = 1
) -> tuple[bytes, int]:
    """The file holding `counts` (see NgramCounts.to_arrays) and how many rows it has."""
    buf = io.BytesIO()
    arrays = counts.to_arrays(limit, min_order)
    np.savez_compressed(
        buf,
        vocab=np.asarray(vocab),
        keys=arrays["keys"],
        nexts=arrays["nexts"],
        counts=arrays["counts"],
    )
    return buf.getvalue(), len(arrays["counts"])


def write_counts(path: Path, counts: NgramCounts, vocab: str, limit: int | None = None) -> bool:
    """Replace the cache file at `path` atomically; False (nothing changed) on failure."""
    return write_atomic(path, counts_file(counts, vocab, limit)[0])


def check_static(path: str) -> None:
    """Refuse a missing --ngram-cache file before any model loads (a drafter that would
    read it may only be chosen later, or never)."""
    if not Path(path).is_file():
        raise SpecError(f"n-gram cache not found: {path}")


def load_static(path: str, vocab: str) -> FrozenNgrams:
    """A corpus cache from `spec ngram build`; refused when built for another vocabulary."""
    check_static(path)
    p = Path(path)
    loaded = read_table(p)
    if loaded is None:
        raise SpecError(
            f"{path} is not a readable n-gram cache: rebuild it with `spec ngram build`"
        )
    counts, built_for = loaded
    if built_for != vocab:
        raise SpecError(
            f"{path} was built with another model's vocabulary: rebuild it with "
            "`spec ngram build --model` for this model"
        )
    return counts


class PersistentNgrams:
    """The learned cache for one vocabulary, in the user cache directory."""

    def __init__(
        self,
        vocab: str,
        directory: Path | None = None,
        on_unsaved: Callable[[Path], None] | None = None,
    ) -> None:
        self.vocab = vocab
        self.path = (directory or cache_dir() / "ngram") / f"{vocab[:32]}.npz"
        self._on_unsaved = on_unsaved

    def load(self) -> NgramCounts:
        loaded = read_counts(self.path)
        if loaded is None or loaded[1] != self.vocab:
            return NgramCounts()
        return loaded[0]

    def table(self) -> NgramLookup:
        """What earlier runs taught, read-only, for drafting (an empty table if none)."""
        loaded = read_table(self.path)
        if loaded is None or loaded[1] != self.vocab:
            return NgramCounts()
        return loaded[0]

    def learn(self, new: NgramCounts) -> bool:
        """Merge `new` into the file under a lock (concurrent runs add up, none is lost),
        keeping the most frequent rows."""
        if not len(new):
            return True
        with locked(self.path):
            current = self.load()
            if current.rows() >= PERSISTENT_LIMIT * 0.95:
                current.age(AGE_WHEN_FULL)
            current.merge(new)
            saved = write_counts(self.path, current, self.vocab, PERSISTENT_LIMIT)
        if not saved and self._on_unsaved is not None:
            self._on_unsaved(self.path.parent)
        return saved
