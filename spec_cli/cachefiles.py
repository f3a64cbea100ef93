"""Cache files that survive crashes, concurrent runs and corruption.

Writes go to a temporary file in the same directory and are renamed into place, so a
reader sees the old or the new file, never half of one. A file that fails to parse is
treated as absent (and rebuilt by the caller). Failing to write (disk full, read-only
home) is never fatal: caches are an optimisation.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """spec's cache directory (SPEC_CACHE_DIR overrides the platform default)."""
    override = os.environ.get("SPEC_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("spec", appauthor=False))


def file_key(path: str) -> str:
    """What identifies one version of a file: its resolved path, size and modification
    time (links share it; a rewritten file gets a new one)."""
    p = Path(path)
    try:
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return path


def replace_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` through a temporary file beside it, so a reader or a
    killed run never sees half a file (`mode`: its permissions; default private). Raises
    OSError, leaving `path` as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` atomically; False (and nothing changed) on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data)
    except OSError:
        return False
    return True


def read_json(path: Path) -> Any | None:
    """Parsed JSON at `path`, or None when missing, unreadable or corrupt."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> bool:
    return write_atomic(path, json.dumps(value, separators=(",", ":")).encode())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path`.lock (a no-op where locking fails)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        yield
        return
    try:
        # A file system without locks (some NFS mounts) still gets the atomic writes.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
