"""Cache files survive truncation, concurrent runs and a full disk: written atomically,
a damaged one is rebuilt, and no failure of the cache is ever fatal.

tests/test_costs.py and tests/test_ngram.py cover the basic round trips; this module
covers damage at every length, writers racing readers, and ENOSPC at each write stage.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from fakes import FakeBackend

from spec_cli import cachefiles, calibration
from spec_cli.cachefiles import locked, read_json, write_atomic, write_json
from spec_cli.costs import MAX_BATCH, CostModel
from spec_cli.ngram_counts import NgramCounts
from spec_cli.ngram_store import PersistentNgrams

MODEL = CostModel(tuple(1.0 + 0.1 * i for i in range(MAX_BATCH)), 0.3, 0.01)
FORK = multiprocessing.get_context("fork")


def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDiskFile:
    """What os.fdopen gives on a full disk: writes fail with ENOSPC."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        enospc()
        return 0

    def __enter__(self) -> FullDiskFile:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.close(self.fd)


class FullDiskOs:
    """The os module as cachefiles sees it once the disk is full at one stage of an
    atomic write (everything else, and every other module, untouched)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __getattr__(self, name: str) -> Any:
        if name == self.stage:
            return enospc
        if name == "fdopen" and self.stage == "write":
            return lambda fd, mode: FullDiskFile(fd)
        return getattr(os, name)


STAGES = ["write", "fsync", "replace"]


def fill_disk(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    monkeypatch.setattr(cachefiles, "os", FullDiskOs(stage))


@pytest.fixture(params=STAGES)
def full_disk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The disk fills up at one stage of an atomic write."""
    fill_disk(monkeypatch, request.param)
    return str(request.param)


def leftovers(directory: Path) -> list[str]:
    """Temporary files an interrupted write would leave behind (lock files aside)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# -- cachefiles ----------------------------------------------------------------------------


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.json"
    assert write_json(path, {"v": 1})
    assert write_json(path, {"v": 2, "more": "x" * 10_000})
    assert read_json(path) == {"v": 2, "more": "x" * 10_000}
    assert leftovers(path.parent) == []


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporaries(
    tmp_path: Path, full_disk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"v": 1}))
    assert write_json(path, {"v": 2}) is False
    assert read_json(path) == {"v": 1}
    assert leftovers(tmp_path) == []


def test_no_writable_directory_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert write_atomic(blocker / "c.json", b"{}") is False
    with locked(blocker / "c.json"):  # cannot lock either: runs unlocked
        pass


def test_a_file_system_without_locks_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flock fails with ENOLCK on some NFS mounts: caches are still written (atomically)."""
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = tmp_path / "c.json"
    with locked(path):
        assert write_json(path, {"v": 1})
    assert read_json(path) == {"v": 1}


def test_damaged_json_of_any_length_reads_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    data = json.dumps({"verify": [1.0, 1.5, 2.0], "note": "é"}).encode()
    for n in range(len(data)):
        path.write_bytes(data[:n])
        assert read_json(path) is None, n
    path.write_bytes(b"\x00\xff" * 50)
    assert read_json(path) is None
    assert read_json(tmp_path / "missing.json") is None
    assert read_json(tmp_path) is None  # a directory


def _write_many(args: tuple[str, int]) -> None:
    path, ident = args
    for _ in range(40):
        write_json(Path(path), {"writer": ident, "payload": [ident] * 20_000})


def test_readers_never_see_half_written_files(tmp_path: Path) -> None:
    """Three processes rewrite a 100 KB file while this one reads it: every read is one
    writer's whole document, never a mix or a torn file."""
    path = tmp_path / "c.json"
    write_json(path, {"writer": -1, "payload": [-1] * 20_000})
    with FORK.Pool(3) as pool:
        pending = pool.map_async(_write_many, [(str(path), i) for i in range(3)])
        reads = 0
        while not pending.ready() or reads < 20:
            doc = read_json(path)
            assert doc is not None
            assert set(doc["payload"]) == {doc["writer"]}
            assert len(doc["payload"]) == 20_000
            reads += 1
        pending.get()
    assert leftovers(tmp_path) == []


def _increment(args: tuple[str, int]) -> None:
    path, times = args
    for _ in range(times):
        with locked(Path(path)):
            value = read_json(Path(path)) or 0
            write_json(Path(path), value + 1)


def test_the_lock_serialises_read_modify_write(tmp_path: Path) -> None:
    path = tmp_path / "counter.json"
    with FORK.Pool(4) as pool:
        pool.map(_increment, [(str(path), 25)] * 4)
    assert read_json(path) == 100


# -- calibration ---------------------------------------------------------------------------


@pytest.fixture
def measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Calibration with a fake measurement that records when it ran."""
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path))
    calls: list[float] = []

    def fake_calibrate(target: object, draft: object) -> CostModel:
        calls.append(time.time())
        return MODEL

    monkeypatch.setattr(calibration, "calibrate", fake_calibrate)
    return calls


def calibration_file(tmp_path: Path) -> Path:
    (path,) = (tmp_path / "calibration").glob("*.json")
    return path


def test_calibration_truncated_anywhere_is_measured_again(
    tmp_path: Path, measured: list[float]
) -> None:
    target = FakeBackend()
    assert calibration.load_or_measure(target, None, "b") == MODEL
    path = calibration_file(tmp_path)
    good = path.read_bytes()
    for n in range(0, len(good), 7):
        path.write_bytes(good[:n])
        before = len(measured)
        assert calibration.load_or_measure(target, None, "b") == MODEL
        assert len(measured) == before + 1
        assert path.read_bytes() != good[:n] and read_json(path) is not None  # rewritten
    assert calibration.load_or_measure(target, None, "b") == MODEL
    assert len(measured) == before + 1  # and used again once whole


@pytest.mark.parametrize(
    "damage",
    [
        [],
        {"verify": "fast"},
        {"verify": [1.0, 2.0], "draft_token": 0.1, "target_seconds": 0.1, "measured_at": 0},
        {"verify": [0.0] * MAX_BATCH, "draft_token": 0.1, "target_seconds": 0.1},
        {"verify": [1.0] * MAX_BATCH, "draft_token": "x", "target_seconds": 0.1},
    ],
    ids=["list", "bad-type", "short", "zero-cost", "bad-field"],
)
def test_calibration_of_the_wrong_shape_is_measured_again(
    tmp_path: Path, measured: list[float], damage: Any
) -> None:
    target = FakeBackend()
    calibration.load_or_measure(target, None, "b")
    path = calibration_file(tmp_path)
    if isinstance(damage, dict):
        damage.setdefault("measured_at", time.time())
    path.write_text(json.dumps(damage))
    assert calibration.load_or_measure(target, None, "b") == MODEL
    assert len(measured) == 2


def test_calibration_on_a_full_disk_still_runs(
    tmp_path: Path, measured: list[float], full_disk: str
) -> None:
    """The measurement is used even when it cannot be saved; the next run measures
    again rather than reading a half-written file."""
    target = FakeBackend()
    assert calibration.load_or_measure(target, None, "b") == MODEL
    assert calibration.load_or_measure(target, None, "b") == MODEL
    assert len(measured) == 2
    assert not list((tmp_path / "calibration").glob("*.json"))
    assert leftovers(tmp_path / "calibration") == []


def _calibrate_slowly(target: object, draft: object) -> CostModel:
    log = Path(os.environ["SPEC_CACHE_DIR"]) / "measurements.log"
    with log.open("a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.3)  # long enough for every other run to reach the lock
    return MODEL


def _load_in_child(_: int) -> tuple[float, ...]:
    return calibration.load_or_measure(FakeBackend(), None, "b").verify


def test_concurrent_first_runs_measure_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four runs start together on a fresh machine: one measures, the others wait for
    its result instead of measuring (and loading the CPU) at the same time."""
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "calibrate", _calibrate_slowly)
    with FORK.Pool(4) as pool:
        results = pool.map(_load_in_child, range(4))
    assert results == [MODEL.verify] * 4
    assert len((tmp_path / "measurements.log").read_text().split()) == 1


# -- learned n-gram cache ------------------------------------------------------------------


def counts_of(*sequences: list[int]) -> NgramCounts:
    counts = NgramCounts()
    for seq in sequences:
        counts.add_sequence(seq)
    return counts


def test_ngram_cache_truncated_or_corrupted_anywhere_is_rebuilt(tmp_path: Path) -> None:
    store = PersistentNgrams("v", tmp_path)
    assert store.learn(counts_of(list(range(1, 40)) * 2))
    good = store.path.read_bytes()
    for n in range(0, len(good), max(1, len(good) // 60)):
        store.path.write_bytes(good[:n])
        assert len(store.load()) == 0, n
        assert store.learn(counts_of([7, 8, 9]))
        assert store.load().lookup([7, 8]) == (9, 1, 1, 2)
        store.path.write_bytes(good)
    for offset in range(0, len(good), max(1, len(good) // 40)):
        flipped = bytearray(good)
        flipped[offset] ^= 0xFF
        store.path.write_bytes(bytes(flipped))
        store.load()  # whatever it makes of it, it does not raise
        assert store.learn(counts_of([7, 8, 9]))


@pytest.mark.parametrize("stage", STAGES)
def test_ngram_cache_on_a_full_disk_keeps_what_was_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    store = PersistentNgrams("v", tmp_path)
    assert store.learn(counts_of([1, 2, 3]))
    fill_disk(monkeypatch, stage)
    assert store.learn(counts_of([4, 5, 6])) is False
    kept = store.load()
    assert kept.lookup([1, 2]) == (3, 1, 1, 2)
    assert kept.lookup([4, 5]) is None
    assert leftovers(tmp_path) == []


def _learn_in_child(args: tuple[str, int]) -> None:
    directory, ident = args
    store = PersistentNgrams("v", Path(directory))
    for i in range(10):
        store.learn(counts_of([ident * 100 + i, 1, 2]))


def test_ngram_readers_during_concurrent_learning_see_whole_caches(tmp_path: Path) -> None:
    """While three runs learn at once, every read gets a whole cache that only grows."""
    store = PersistentNgrams("v", tmp_path)
    store.learn(counts_of([1, 2]))
    with FORK.Pool(3) as pool:
        pending = pool.map_async(_learn_in_child, [(str(tmp_path), i) for i in range(3)])
        seen = 0
        while not pending.ready():
            now = store.load()
            assert len(now) >= seen
            assert now.lookup([1]) is not None  # the first lesson is never lost
            seen = len(now)
        pending.get()
    final = store.load()
    assert final.tables[1][(1,)][2] == 1 + 30
