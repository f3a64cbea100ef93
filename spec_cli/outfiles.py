"""Files a user names for a command to write: checked before any work, written whole.

A link is written through (its target gets the new content, the link stays), an existing
file is replaced only with --force where the command has it, and devices, pipes and
missing directories are refused: an output path that is mistyped or names something
else must not cost the user a file, or leave stray folders behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from spec_cli.cachefiles import replace_file
from spec_cli.errors import SpecError, UsageError


def check_output(
    path: str, *, option: str = "", force: bool = False, inputs: Iterable[str] = ()
) -> Path:
    """The file to write for `path` (a link's target), or a one-line UsageError.

    `option` names the flag in messages; `inputs` are files the command reads, which it
    must never write over, --force or not.
    """
    where = f"{option} {path}" if option else path
    if not path.strip():
        raise UsageError(f"{option or 'the output file'} needs a file name, not an empty one")
    if path.endswith(("/", os.sep)):
        raise UsageError(f"{where} names a directory: give a file name")
    given = Path(path).expanduser()
    try:
        real = given.resolve(strict=False) if given.is_symlink() else given
    except (OSError, RuntimeError):  # a loop of links
        raise UsageError(f"{where} is a link that leads nowhere: give a file name") from None
    if real.is_dir():
        raise UsageError(f"{where} is a directory: give a file name")
    if real.exists() and not real.is_file():
        raise UsageError(f"{where} is not a regular file (a device or a pipe): give a file name")
    parent = real.parent
    if not parent.is_dir():
        raise UsageError(f"{where}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{where}: directory {parent} is not writable")
    if real.exists():
        for source in inputs:
            with contextlib.suppress(OSError):
                if real.samefile(Path(source).expanduser()):
                    raise UsageError(f"{where} is one of the files read: write elsewhere")
        if not force:
            raise UsageError(f"{where} already exists: pass --force to overwrite it")
    return real


def new_file_mode() -> int:
    """The permissions a newly created file gets here (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically, with the usual permissions for a new file;
    a one-line SpecError when it cannot."""
    try:
        replace_file(path, data, new_file_mode())
    except OSError as e:
        raise SpecError(f"cannot write {path}: {e.strerror or e}") from None
