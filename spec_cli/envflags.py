"""On/off environment variables (SPEC_DEBUG, SPEC_LLAMA_LOG, SPEC_LLAMA_AMX, SPEC_NO_LEARN), read
one way."""

from __future__ import annotations

import os

_OFF = {"", "0", "false", "no", "off"}


def flag(name: str) -> bool:
    """Whether variable `name` is set to something other than empty, 0, false, no or off."""
    return os.environ.get(name, "").strip().lower() not in _OFF
