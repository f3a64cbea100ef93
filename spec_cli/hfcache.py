"""Hugging Face files in the shared HF cache: look-ups, verified downloads, removal.

A file already in the cache is used without touching the network (a run must not wait on
a dead connection). Downloads go through huggingface_hub (progress bar, resume, tokens,
HF_HUB_OFFLINE) and are checked against the hub's size and sha256 (the LFS etag, which
is also the cached blob's name); a damaged copy is fetched again rather than handed to
llama.cpp. A check that passed is remembered by size and mtime, so it runs once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec_cli.errors import ModelError
from spec_cli.ggufinfo import check_complete, human_size

Notify = Callable[[str], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class HfFile:
    """One file of a Hugging Face model repo, at a revision (None: main)."""

    repo: str
    filename: str
    revision: str | None = None

    @property
    def label(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf:{self.repo}{rev}/{self.filename}"


# Hugging Face's own rules for repo ids: OWNER/NAME, each of letters, digits, - _ . and at
# most 96 characters, neither starting nor ending with - or .; no "--" or "..", and no
# ".git" at the end.
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")


def _repo_id_ok(repo: str) -> bool:
    parts = repo.split("/")
    return (
        len(parts) == 2
        and all(_REPO_PART.fullmatch(p) for p in parts)
        and "--" not in repo
        and ".." not in repo
        and not repo.endswith(".git")
    )


def name_problem(repo: str, filename: str | None, revision: str | None = None) -> str | None:
    """What makes these an impossible Hugging Face file address (no file: the repo and
    revision alone), or None."""
    if not _repo_id_ok(repo):
        return f"repo {repo!r} is not a Hugging Face repo id (OWNER/NAME: letters, digits, - _ .)"
    if filename is not None:
        parts = filename.split("/")
        bad = filename.startswith("/") or "\\" in filename
        if bad or any(p in ("", ".", "..") for p in parts):
            return f"file {filename!r} is not a path inside a repo"
    if revision is not None and (not revision or any(c.isspace() for c in revision)):
        return f"revision {revision!r} is not a branch, tag or commit"
    return None


def parse_ref(ref: str) -> HfFile:
    """`hf:OWNER/REPO/FILE.gguf` or `hf:OWNER/REPO@REVISION/PATH/FILE.gguf`."""
    body = ref[3:] if ref.startswith("hf:") else ref
    parts = body.split("/")
    usage = "use hf:OWNER/REPO/FILE.gguf"
    if len(parts) < 3 or not all(parts):
        raise ModelError(f"{ref!r} is not a Hugging Face file reference: {usage}")
    name, _, revision = parts[1].partition("@")
    found = HfFile(f"{parts[0]}/{name}", "/".join(parts[2:]), revision or None)
    problem = name_problem(found.repo, found.filename, found.revision)
    if problem is not None:
        raise ModelError(f"{ref!r} is not a Hugging Face file reference: {problem}; {usage}")
    return found


def hf_cache_dir() -> Path:
    """The HF hub cache, following the environment at call time (tests move it)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    if value in ("1", "ON", "YES", "TRUE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) and value not in ("0", "OFF", "NO", "FALSE")


def cached_path(f: HfFile) -> str | None:
    """The file's path in the cache, or None; never touches the network."""
    import huggingface_hub as hfh

    found = hfh.try_to_load_from_cache(
        f.repo, f.filename, cache_dir=hf_cache_dir(), revision=f.revision
    )
    return found if isinstance(found, str) and os.path.isfile(found) else None


# -- integrity ------------------------------------------------------------------------


def _stamp_path(blob: Path) -> Path:
    from spec_cli.cachefiles import cache_dir

    key = hashlib.sha1(str(blob).encode()).hexdigest()
    return cache_dir() / "verified" / f"{key}.json"


def _hash_file(path: Path, algo: str, prefix: bytes, notify: Notify) -> str:
    size = path.stat().st_size
    if size > 200_000_000:
        notify(f"checking {path.name} ({human_size(size)})")
    digest = hashlib.new(algo)
    digest.update(prefix)
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def problem(
    path: str, etag: str | None, size: int | None, *, full: bool, notify: Notify
) -> str | None:
    """Why the file at `path` is not the one expected, or None when it checks out.

    Always: the size (when known) and the GGUF structure (no missing tensor data).
    With `full`: the content digest too (sha256 for LFS files, git's sha1 otherwise).
    """
    from spec_cli.cachefiles import read_json, write_json

    blob = Path(os.path.realpath(path))
    st = blob.stat()
    if size is not None and st.st_size != size:
        return f"{human_size(st.st_size)} instead of {human_size(size)}"
    etag = etag or blob.name
    level = "digest" if full and (_SHA256.match(etag) or _SHA1.match(etag)) else "gguf"
    stamp = read_json(_stamp_path(blob))
    if (
        isinstance(stamp, dict)
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and (stamp.get("level") == "digest" or level == "gguf")
    ):
        return None
    try:
        check_complete(str(blob))
    except ModelError as e:
        return str(e).replace(str(blob), "the file")
    if level == "digest":
        if _SHA256.match(etag):
            actual = _hash_file(blob, "sha256", b"", notify)
        else:  # a regular git file: the etag is git's blob sha1
            actual = _hash_file(blob, "sha1", b"blob %d\0" % st.st_size, notify)
        if actual != etag:
            return f"its digest is {actual[:12]}..., expected {etag[:12]}..."
    write_json(_stamp_path(blob), {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "level": level})
    return None


# -- downloads ------------------------------------------------------------------------


def _errors() -> Any:
    import importlib

    try:
        return importlib.import_module("huggingface_hub.errors")
    except ImportError:  # huggingface_hub < 0.24 keeps them in utils
        return importlib.import_module("huggingface_hub.utils")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", line)


def _subject(f: HfFile, what: str) -> str:
    return what if what == f.label else f"{what} ({f.label})"


def _hub_error(f: HfFile, what: str, hint: str, e: Exception) -> ModelError:
    """One line saying why `f` could not be fetched and what to do instead."""
    err = _errors()

    def isa(name: str) -> bool:
        cls = getattr(err, name, None)
        return isinstance(cls, type) and isinstance(e, cls)

    if isa("LocalEntryNotFoundError") or isa("OfflineModeIsEnabled"):
        return ModelError(
            f"could not download {_subject(f, what)}: Hugging Face is unreachable; "
            f"check your connection, or {hint}"
        )
    if isa("GatedRepoError"):
        return ModelError(
            f"{f.repo} is gated: accept its terms on https://huggingface.co/{f.repo} and "
            "log in with `hf auth login` (or set HF_TOKEN)"
        )
    if isa("RepositoryNotFoundError"):
        return ModelError(
            f"Hugging Face repo {f.repo} does not exist or is private "
            "(for a private repo, log in with `hf auth login` or set HF_TOKEN)"
        )
    if isa("RevisionNotFoundError"):
        return ModelError(f"{f.repo} has no revision {f.revision!r}")
    if isa("EntryNotFoundError") or isa("RemoteEntryNotFoundError"):
        return ModelError(f"{f.repo} has no file {f.filename!r}")
    if isa("HfHubHTTPError"):
        return ModelError(f"Hugging Face refused {f.label}: {_first_line(e)}")
    if isinstance(e, OSError) and e.errno == 28:
        return ModelError(
            f"no space left to download {what} into {hf_cache_dir()}: free some space "
            "or point HF_HUB_CACHE at a bigger disk"
        )
    return ModelError(
        f"could not download {_subject(f, what)} from Hugging Face ({_first_line(e)}): "
        f"check your connection, or {hint}"
    )


def download(
    f: HfFile, notify: Notify, *, what: str = "", hint: str = "", force: bool = False
) -> str:
    """Fetch `f` into the HF cache, verified against the hub's size and sha256."""
    import huggingface_hub as hfh

    what = what or f.label
    hint = hint or "pass a local .gguf file instead"
    if offline():
        raise ModelError(
            f"{what} is not downloaded and HF_HUB_OFFLINE is set: unset it to fetch "
            f"{f.label}, or {hint}"
        )
    url = hfh.hf_hub_url(f.repo, f.filename, revision=f.revision)
    try:
        # No retries here: without a connection this fails in well under a second.
        meta = hfh.get_hf_file_metadata(url)
    except Exception as e:
        raise _hub_error(f, what, hint, e) from None
    size = meta.size
    cached = cached_path(f)
    if force or cached is None or Path(os.path.realpath(cached)).name != meta.etag:
        notify(f"downloading {_subject(f, what)}, {human_size(size) if size else 'size unknown'}")
    try:
        path = hfh.hf_hub_download(
            f.repo,
            f.filename,
            revision=f.revision,
            cache_dir=hf_cache_dir(),
            force_download=force,
        )
    except Exception as e:
        raise _hub_error(f, what, hint, e) from None
    etag = meta.etag if meta.etag and (_SHA256.match(meta.etag) or _SHA1.match(meta.etag)) else None
    issue = problem(str(path), etag, size, full=True, notify=notify)
    if issue is None:
        return str(path)
    if not force:
        notify(f"the copy of {what} in the HF cache is damaged ({issue}); fetching it again")
        return download(f, notify, what=what, hint=hint, force=True)
    raise ModelError(
        f"the download of {_subject(f, what)} is damaged ({issue}): try again, or {hint}"
    )


def fetch(f: HfFile, notify: Notify, *, what: str = "", hint: str = "") -> str:
    """A verified local copy of `f`: from the cache when it is there and sound, else
    downloaded (a damaged cached copy is downloaded again)."""
    what = what or f.label
    hint = hint or "pass a local .gguf file instead"
    path = cached_path(f)
    if path is None:
        return download(f, notify, what=what, hint=hint)
    issue = problem(path, None, None, full=False, notify=notify)
    if issue is None:
        return path
    if offline():
        raise ModelError(
            f"the cached copy of {what} is damaged ({issue}) and HF_HUB_OFFLINE is set: "
            f"unset it so spec can fetch it again, or {hint}"
        )
    notify(f"the cached copy of {what} is damaged ({issue}); fetching it again")
    return download(f, notify, what=what, hint=hint, force=True)


def local(f: HfFile, notify: Notify, *, what: str = "", strict: bool = False) -> str | None:
    """The cached, sound copy of `f`, or None; never downloads. With `strict`, a damaged
    copy is a ModelError saying so, not None."""
    path = cached_path(f)
    if path is None:
        return None
    issue = problem(path, None, None, full=False, notify=notify)
    if issue is None:
        return path
    if strict:
        name = what or f.label
        raise ModelError(
            f"the cached copy of {name} is damaged ({issue}): run `spec models pull {name}` "
            "to fetch it again"
        )
    return None


def verify(f: HfFile, notify: Notify) -> str | None:
    """A full digest check of the cached copy; the problem found, or None."""
    path = cached_path(f)
    if path is None:
        return "not downloaded"
    return problem(path, None, None, full=True, notify=notify)


# -- removal --------------------------------------------------------------------------


def _repo_dir(repo: str) -> Path:
    return hf_cache_dir() / ("models--" + repo.replace("/", "--"))


def remove(f: HfFile) -> int | None:
    """Delete every cached revision of `f`; the bytes freed, or None when none was cached.

    Only blobs in the repo's own `blobs/` folder are deleted, and only when no snapshot
    still links to them; a link to anywhere else is unlinked and its target left alone.
    """
    repo_dir = _repo_dir(f.repo)
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    real_repo = Path(os.path.realpath(repo_dir))
    entries = [snap / f.filename for snap in snapshots.iterdir()]
    # An entry whose folder is a link (to outside the cache) is not the cache's to delete.
    entries = [
        e
        for e in entries
        if (e.is_symlink() or e.is_file())
        and Path(os.path.realpath(e.parent)).is_relative_to(real_repo / "snapshots")
    ]
    if not entries:
        return None
    blobs: set[Path] = set()
    freed = 0
    for entry in entries:
        target = Path(os.path.realpath(entry))
        if not entry.is_symlink():
            freed += entry.stat().st_size
        elif target.parent == real_repo / "blobs":
            blobs.add(target)
        entry.unlink()
        with contextlib.suppress(OSError):
            _stamp_path(target).unlink()
    still_used = {Path(os.path.realpath(p)) for p in snapshots.rglob("*") if p.is_symlink()}
    for blob in blobs - still_used:
        if blob.is_file():
            freed += blob.stat().st_size
            blob.unlink()
    # A repo with no file left is removed whole (refs, partial downloads and all).
    if not any(p.is_file() or p.is_symlink() for p in snapshots.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
    return freed
