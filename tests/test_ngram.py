"""N-gram counts, the n-gram drafter and its cache files."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from spec_cli import ngram_store
from spec_cli.drafters.ngram import NgramDrafter
from spec_cli.ngram_counts import NgramCounts
from spec_cli.ngram_store import (
    STATIC_MIN_ORDER,
    PersistentNgrams,
    counts_file,
    read_counts,
    write_counts,
)
from spec_cli.sampling import SamplingParams

GREEDY = SamplingParams()
RNG = np.random.default_rng(0)


def test_lookup_prefers_longest_context_and_most_frequent_continuation() -> None:
    counts = NgramCounts()
    counts.add_sequence([1, 2, 3, 9, 1, 2, 3, 9, 5, 2, 3, 7])
    # Order 3 context (1, 2, 3) was followed by 9 twice.
    assert counts.lookup([1, 2, 3]) == (9, 2, 2, 3)
    assert counts.lookup([5, 2, 3]) == (7, 1, 1, 3)
    # (4, 2, 3) was never seen; order 2 (2, 3): 9 twice, 7 once -> 9 with count 2 of 3.
    assert counts.lookup([4, 2, 3]) == (9, 2, 3, 2)
    assert counts.lookup([42]) is None


def test_incremental_updates_equal_a_full_rebuild() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 6, 300).tolist()
    drafter = NgramDrafter()
    drafter.begin(tokens[:5])
    for end in range(5, len(tokens), 7):
        drafter.draft(tokens[:end], 4, GREEDY, RNG)
    drafter.draft(tokens, 4, GREEDY, RNG)
    rebuilt = NgramCounts()
    rebuilt.add_sequence(tokens)
    assert drafter.context.tables == rebuilt.tables


def test_drafter_chains_the_most_likely_continuation_with_confidence() -> None:
    context = [1, 2, 3, 4, 5, 6, 1, 2, 3]
    drafter = NgramDrafter()
    drafter.begin(context)
    draft = drafter.draft(context, 3, GREEDY, RNG)
    assert draft.tokens == [4, 5, 6]
    assert draft.source == "ngram"
    assert all(0 < c < 1 for c in draft.confidence)
    assert len(draft.features) == 3


def first_confidence(context: list[int]) -> float:
    drafter = NgramDrafter()
    drafter.begin(context)
    return drafter.draft(context, 1, GREEDY, RNG).confidence[0]


def test_confidence_follows_how_consistently_the_text_continued_the_context() -> None:
    """(2, 3) seen twice, both times followed by 4, beats (2, 3) seen once; a context
    continued two ways is the least sure, and a longer match beats a shorter one."""
    consistent = first_confidence([2, 3, 4, 9, 2, 3, 4, 8, 2, 3])
    once = first_confidence([2, 3, 4, 9, 8, 2, 3])
    split = first_confidence([2, 3, 4, 9, 2, 3, 5, 8, 2, 3])
    assert consistent > once > split
    assert first_confidence([1, 2, 3, 4, 9, 1, 2, 3]) > once


def test_static_and_learned_sources_are_consulted_after_the_context() -> None:
    static = NgramCounts()
    static.add_sequence([7, 8, 9, 10, 11])
    drafter = NgramDrafter(static=static)
    drafter.begin([1, 7, 8])
    assert drafter.draft([1, 7, 8], 3, GREEDY, RNG).tokens == [9, 10, 11]


def test_cache_file_round_trip_and_size_bound(tmp_path: Path) -> None:
    counts = NgramCounts()
    counts.add_sequence(list(range(50)) * 3)
    path = tmp_path / "c.npz"
    assert write_counts(path, counts, "vocab-a", limit=40)
    loaded = read_counts(path)
    assert loaded is not None
    small, vocab = loaded
    assert vocab == "vocab-a"
    assert sum(len(r) for t in small.tables for r in t.values()) == 40


def test_a_bounded_cache_keeps_whole_contexts_frequent_and_recent_first() -> None:
    """Cutting rows one by one would keep a frequent context's main continuation and drop
    its rarer one, making it look surer than it is; among equally frequent contexts a full
    cache keeps the newest, so learning goes on once it is full."""
    counts = NgramCounts()
    counts.add((1, 2), 3, 5)
    counts.add((1, 2), 4, 2)  # the context seen 7 times, with two continuations
    counts.add((5, 6), 7, 6)  # one continuation, 6 times: its row outranks (1, 2) -> 4
    counts.add((8, 9), 1, 1)
    counts.add((9, 8), 1, 1)  # added last: kept before (8, 9) at equal counts
    kept = NgramCounts.from_arrays(**counts.to_arrays(limit=4))
    assert kept.tables[2] == {(1, 2): {3: 5, 4: 2}, (5, 6): {7: 6}, (9, 8): {1: 1}}


def test_a_full_learned_cache_keeps_taking_in_new_runs(tmp_path: Path) -> None:
    """Saved and read back again and again, a full cache still drops its oldest equals."""
    store = PersistentNgrams("v", tmp_path)
    for run in range(1, 6):
        counts = NgramCounts()
        for i in range(3):
            counts.add((run, i), 0)
        merged = store.load()
        merged.merge(counts)
        assert write_counts(store.path, merged, "v", limit=6)
    assert {key[0] for key in store.load().tables[2]} == {4, 5}


def test_corpus_caches_keep_no_single_token_contexts(tmp_path: Path) -> None:
    """The drafter reads a corpus cache from two-token contexts up, so a build spends its
    row budget there."""
    counts = NgramCounts()
    counts.add_sequence([1, 2, 3, 1, 2, 4])
    path = tmp_path / "c.npz"
    data, rows = counts_file(counts, "v", min_order=STATIC_MIN_ORDER)
    path.write_bytes(data)
    assert rows == 4 + 3 + 2  # continuations of its 2-, 3- and 4-token contexts
    loaded = read_counts(path)
    assert loaded is not None
    assert not loaded[0].tables[1] and loaded[0].tables[2][(1, 2)] == {3: 1, 4: 1}


def test_corrupt_or_truncated_cache_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    store = PersistentNgrams("v", tmp_path)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(b"PK\x03\x04 not really a zip")
    assert len(store.load()) == 0
    new = NgramCounts()
    new.add_sequence([1, 2, 3, 4])
    assert store.learn(new)
    assert store.load().lookup([2, 3]) == (4, 1, 1, 2)


def test_learned_cache_for_another_vocabulary_is_not_used(tmp_path: Path) -> None:
    counts = NgramCounts()
    counts.add_sequence([1, 2, 3])
    PersistentNgrams("vocab-a", tmp_path).learn(counts)
    assert len(PersistentNgrams("vocab-b", tmp_path).load()) == 0
    assert len(PersistentNgrams("vocab-a", tmp_path).load()) > 0


def _learn_many(args: tuple[str, int]) -> None:
    directory, seed = args
    store = PersistentNgrams("v", Path(directory))
    for i in range(5):
        c = NgramCounts()
        c.add(((seed * 100 + i),), 1)  # a key only this writer uses
        c.add((1, 2), 3)  # a key every writer bumps
        store.learn(c)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Four processes each add 5 updates under the lock: every update survives."""
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_learn_many, [(str(tmp_path), s) for s in range(4)])
    merged = PersistentNgrams("v", tmp_path).load()
    assert merged.tables[2][(1, 2)][3] == 20
    assert len(merged.tables[1]) == 20


def test_drafter_teaches_the_persistent_cache_on_close(tmp_path: Path) -> None:
    store = PersistentNgrams("v", tmp_path)
    drafter = NgramDrafter(persistent=store)
    context = [5, 6, 7, 8, 9]
    drafter.begin(context)
    drafter.draft(context, 2, GREEDY, RNG)
    drafter.close()
    fresh = NgramDrafter(persistent=PersistentNgrams("v", tmp_path))
    fresh.begin([1, 5, 6])
    assert fresh.draft([1, 5, 6], 3, GREEDY, RNG).tokens == [7, 8, 9]


def test_spec_ngram_build_writes_a_cache_that_run_accepts(tiny_model: str, tmp_path: Path) -> None:
    """`spec ngram build` learns a corpus with the model's tokenizer; `spec run
    --ngram-cache` uses it; a cache built for another vocabulary is refused in one line."""
    import subprocess

    from clitools import isolated_env, spec_command

    env = isolated_env(tmp_path / "home")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 20, encoding="utf-8")
    cache = tmp_path / "fox.npz"
    build = subprocess.run(
        [*spec_command(), "ngram", "build", str(corpus), "-o", str(cache), "-m", tiny_model],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    assert build.stdout == "" and "kept" in build.stderr and "n-gram rows" in build.stderr
    loaded = read_counts(cache)
    assert loaded is not None and len(loaded[0]) > 0
    mask = os.umask(0)
    os.umask(mask)
    assert cache.stat().st_mode & 0o777 == 0o666 & ~mask  # a file to share, not a private cache

    prompt = tmp_path / "p.txt"
    prompt.write_text("the quick brown", encoding="utf-8")
    run = [
        *spec_command(),
        "run",
        str(prompt),
        "-m",
        tiny_model,
        "--raw",
        "-n",
        "8",
        "--threads",
        "1",
        "--drafter",
        "ngram",
        "--ngram-cache",
    ]
    ok = subprocess.run([*run, str(cache)], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr

    write_counts(cache, loaded[0], "another-vocabulary")
    bad = subprocess.run([*run, str(cache)], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "another model's vocabulary" in bad.stderr


def test_spec_ngram_build_never_overwrites_a_corpus_and_asks_before_replacing(
    tiny_model: str, tmp_path: Path
) -> None:
    import subprocess

    from clitools import isolated_env, spec_command

    env = isolated_env(tmp_path / "home")
    corpus = tmp_path / "corpus.md"
    corpus.write_text("some words to count\n", encoding="utf-8")

    def build(output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["ngram", "build", str(corpus), "-o", str(output), "-m", tiny_model, *extra]
        return subprocess.run(
            [*spec_command(), *args], capture_output=True, text=True, env=env, timeout=60
        )

    same = build(corpus, "--force")
    assert same.returncode == 2 and "is one of the files read" in same.stderr
    assert corpus.read_text(encoding="utf-8") == "some words to count\n"
    # The model is read too, and so is a corpus file given as standard input.
    model = Path(tiny_model).read_bytes()
    over_model = build(Path(tiny_model), "--force")
    assert over_model.returncode == 2 and "is one of the files read" in over_model.stderr
    assert Path(tiny_model).read_bytes() == model
    with corpus.open("rb") as stdin:
        piped = subprocess.run(
            [*spec_command(), "ngram", "build", "-", "-o", str(corpus), "-m", tiny_model, "-f"],
            stdin=stdin, capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert piped.returncode == 2 and "is one of the files read" in piped.stderr
    assert corpus.read_text(encoding="utf-8") == "some words to count\n"
    cache = tmp_path / "c.npz"
    assert build(cache).returncode == 0
    again = build(cache)
    assert again.returncode == 2 and "--force" in again.stderr
    assert build(cache, "--force").returncode == 0


def test_spec_ngram_build_reads_standard_input(tiny_model: str, tmp_path: Path) -> None:
    """`-` reads the corpus from a pipe, as `spec run -` reads a prompt."""
    import subprocess

    from clitools import isolated_env, spec_command

    cache = tmp_path / "piped.npz"
    build = subprocess.run(
        [*spec_command(), "ngram", "build", "-", "-o", str(cache), "-m", tiny_model],
        input="the quick brown fox jumps over the lazy dog\n" * 20,
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path / "home"),
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    loaded = read_counts(cache)
    assert loaded is not None and len(loaded[0]) > 0


def test_a_full_learned_cache_takes_in_a_text_that_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old contexts seen three times fill the cache; a new text seen once per run gets
    in by its second run and stays, instead of being dropped on every write."""
    monkeypatch.setattr(ngram_store, "PERSISTENT_LIMIT", 20)
    store = PersistentNgrams("v", tmp_path)
    old = NgramCounts()
    for i in range(20):
        old.add((100, i), 0, 3)
    assert store.learn(old)
    new = NgramCounts()
    for i in range(5):
        new.add((200, i), 0)
    for _ in range(2):
        store.learn(new)
    assert {key for key in store.load().tables[2] if key[0] == 200} == {(200, i) for i in range(5)}
    store.learn(new)
    assert all(store.load().tables[2][(200, i)][0] >= 2 for i in range(5))  # adding up


@pytest.mark.parametrize("damage", ["zero count", "negative count", "negative id"])
def test_a_cache_file_with_impossible_counts_or_ids_is_ignored(tmp_path: Path, damage: str) -> None:
    counts = NgramCounts()
    counts.add_sequence([1, 2, 3, 1, 2, 4])
    arrays = counts.to_arrays()
    if damage == "zero count":
        arrays["counts"][0] = 0
    elif damage == "negative count":
        arrays["counts"][0] = -3
    else:
        arrays["nexts"][0] = -5
    store = PersistentNgrams("v", tmp_path)
    np.savez_compressed(
        store.path,
        vocab=np.asarray("v"),
        keys=arrays["keys"],
        nexts=arrays["nexts"],
        counts=arrays["counts"],
    )
    assert read_counts(store.path) is None
    assert store.load().rows() == 0  # read as no cache, and rebuilt by the next run


def test_a_learned_cache_that_cannot_be_saved_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    unsaved: list[Path] = []
    store = PersistentNgrams("v", blocker / "ngram", on_unsaved=unsaved.append)
    counts = NgramCounts()
    counts.add((1, 2), 3)
    assert not store.learn(counts)
    assert unsaved == [blocker / "ngram"]


def test_a_large_corpus_is_counted_in_memory_bounded_by_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table is cut to the most frequent contexts whenever it outgrows SPARE_ROWS
    times the limit: a phrase that keeps coming back survives, one-off noise goes, and
    no 1-token contexts are held."""
    monkeypatch.setattr(ngram_store, "CORPUS_CHUNK", 200)
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(60):
        noise = "".join(chr(c) for c in rng.integers(0x4E00, 0x9FFF, 30))
        lines.append(f"{noise} the same phrase again\n")
    counts = NgramCounts()

    def tokenize(text: str, add_bos: bool = False) -> list[int]:
        return [ord(c) for c in text]

    n = ngram_store.count_corpus_text(counts, "".join(lines), tokenize, limit=100)
    assert n == sum(len(line) for line in lines)
    assert counts.rows() <= ngram_store.SPARE_ROWS * 100 + 200 * 3  # a chunk's worth over
    assert not counts.tables[1]
    phrase = tokenize(" same phr")
    assert counts.tables[4][tuple(phrase[:4])][phrase[4]] > 30


def test_a_frozen_table_answers_every_lookup_as_the_counts_it_was_written_from() -> None:
    """Best continuation (the first added among equal counts), its count, the context's
    total and the order matched: the same from the file's arrays as from the dicts."""
    from spec_cli.ngram_table import FrozenNgrams

    rng = np.random.default_rng(3)
    counts = NgramCounts()
    for _ in range(40):
        counts.add_sequence(rng.integers(0, 12, 30).tolist())  # small vocabulary: ties
    arrays = counts.to_arrays()
    frozen = FrozenNgrams(arrays["keys"], arrays["nexts"], arrays["counts"])
    suffixes = [list(key) for table in counts.tables for key in table]
    suffixes += [[int(t), *s] for s in suffixes for t in rng.integers(0, 15, 2)]
    suffixes += rng.integers(0, 15, (300, 4)).tolist()
    for suffix in suffixes:
        for min_order in (1, 2):
            assert frozen.lookup(suffix, min_order) == counts.lookup(suffix, min_order), suffix


def test_aging_keeps_one_continuation_of_a_context_seen_many_ways_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs that each add a context with five one-off continuations, and three contexts
    seen three times: the one-off contexts shrink to one row each when aged, so they
    never crowd out what later runs saw more than once."""
    monkeypatch.setattr(ngram_store, "PERSISTENT_LIMIT", 20)
    store = PersistentNgrams("v", tmp_path)
    for run in range(30):
        counts = NgramCounts()
        for tok in range(5):
            counts.add((1000 + run, 7), tok)
        for i in range(3):
            counts.add((run, i), 0, 3)
        store.learn(counts)
        kept = store.load()
        assert all((run, i) in kept.tables[2] for i in range(3)), run
    aged = NgramCounts()
    aged.add((1, 2), 5)
    aged.add((1, 2), 6)
    aged.add((1, 2), 6)
    aged.age(0.8)
    assert aged.tables[2][(1, 2)] == {6: 1}  # the top one stays, at least at 1


def test_contexts_sharing_a_hash_stay_apart_in_a_frozen_table() -> None:
    """These two 4-token contexts have the same 64-bit hash (found by a lattice search):
    each still answers with its own continuations and total."""
    from spec_cli.ngram_table import FrozenNgrams, _hash_key

    one, other = (100, 19793, 100, 100), (23889, 100, 31744, 23348)
    assert _hash_key(one, 4) == _hash_key(other, 4)
    counts = NgramCounts()
    counts.add(one, 7, 5)
    counts.add(other, 9, 3)
    counts.add(other, 4, 1)
    arrays = counts.to_arrays()
    frozen = FrozenNgrams(arrays["keys"], arrays["nexts"], arrays["counts"])
    assert frozen.lookup(list(one)) == counts.lookup(list(one)) == (7, 5, 5, 4)
    assert frozen.lookup(list(other)) == counts.lookup(list(other)) == (9, 3, 4, 4)
    numpy_ids = cast(list[int], [np.int64(t) for t in one])  # as numpy hands them out
    assert frozen.lookup(numpy_ids) == (7, 5, 5, 4)


def test_spec_ngram_build_reads_a_file_named_dash_and_skips_blank_ones(
    tiny_model: str, tmp_path: Path
) -> None:
    """`./-` is a file (only `-` is stdin), so it is read and never written over; a file
    of only a BOM or Unicode spaces is skipped like an empty one; `-o DIR/` is refused."""
    import subprocess

    from clitools import isolated_env, spec_command

    env = isolated_env(tmp_path / "home")
    (tmp_path / "-").write_text("words in the file named dash\n" * 5, encoding="utf-8")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    (tmp_path / "spaces.txt").write_text("\u00a0\u3000\n", encoding="utf-8")

    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*spec_command(), "ngram", "build", *args, "-m", tiny_model],
            input="stdin text",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )

    ok = build("bom.txt", "./-", "spaces.txt", "-o", "c.npz")
    assert ok.returncode == 0, ok.stderr
    assert "skipping bom.txt: it is empty" in ok.stderr
    assert "skipping spaces.txt: it is empty" in ok.stderr
    assert "from 145 tokens" in ok.stderr  # the file's 145 bytes, not stdin's 10
    same = build("./-", "-o", "./-", "--force")
    assert same.returncode == 2 and "is one of the files read" in same.stderr
    folder = build("./-", "-o", "newdir/")
    assert folder.returncode == 2 and "names a directory" in folder.stderr
    assert not (tmp_path / "newdir").exists()
