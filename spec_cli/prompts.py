"""Reading prompt text from files or stdin, with clear errors for bad input."""

from __future__ import annotations

import codecs
import sys
from pathlib import Path

from spec_cli.errors import PromptError, UsageError


def decode_prompt(data: bytes, where: str) -> str:
    """UTF-8 text of a prompt; binary or non-UTF-8 input and empty prompts are refused."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Windows editors save "Unicode" as UTF-16, whose NUL bytes look binary.
        raise PromptError(
            f"{where} is UTF-16 text, not UTF-8: convert it, e.g. with `iconv -f utf-16 -t utf-8`"
        )
    if b"\x00" in data:
        raise PromptError(f"{where} looks binary (it contains NUL bytes): give a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptError(
            f"{where} is not UTF-8 text (bad byte at offset {e.start}): convert it, "
            "e.g. with `iconv -t utf-8`"
        ) from None
    if not text.strip():
        raise PromptError(f"{where} is empty: give some text to continue")
    return text


def read_prompt(path: str | None) -> str:
    """The prompt from PATH, or from stdin for `-` (or no path with piped input)."""
    if path is None or path == "-":
        if path is None and sys.stdin.isatty():
            raise UsageError("no prompt: give a PROMPT_FILE, or pipe text in with `-`")
        return decode_prompt(sys.stdin.buffer.read(), "standard input")
    if not path.strip():
        raise UsageError("the prompt file name is empty: give a PROMPT_FILE, or - for stdin")
    p = Path(path)
    if not p.exists():
        if " " in path.strip() or "\n" in path:
            # Reads as text meant as the prompt itself (as `llm "..."` takes it).
            raise PromptError(
                f"prompt file not found: {path!r}; to give the text itself, pipe it in: "
                f"echo '...' | spec run -"
            )
        raise PromptError(f"prompt file not found: {path}")
    if p.is_dir():
        raise PromptError(f"{path} is a directory, not a prompt file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PromptError(f"cannot read prompt file {path}: {e.strerror}") from None
    return decode_prompt(data, path)
