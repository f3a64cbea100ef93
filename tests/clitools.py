"""Running the real `spec` console script in tests, isolated from the user's machine."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def spec_command() -> list[str]:
    """The installed `spec` console script (next to this Python, else on PATH)."""
    here = Path(sys.executable).parent / "spec"
    found = str(here) if here.exists() else shutil.which("spec")
    if found is None:
        pytest.fail("the `spec` console script is not installed: pip install -e .")
    return [found]


def isolated_env(home: Path) -> dict[str, str]:
    """The caller's environment without SPEC_*, HF_* or NO_COLOR settings, with every
    cache, config and data directory under `home` and the hub offline."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("SPEC_", "HF_", "NO_COLOR"))}
    (home / "hf-cache").mkdir(parents=True, exist_ok=True)
    out.update(
        SPEC_CACHE_DIR=str(home / "spec-cache"),
        SPEC_CONFIG_DIR=str(home / "config"),
        HF_HUB_CACHE=str(home / "hf-cache"),
        HF_HUB_OFFLINE="1",
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_DATA_HOME=str(home / "xdg-data"),
    )
    return out
