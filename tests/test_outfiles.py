"""Files a user names as outputs: links written through, nothing else lost or created."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spec_cli.errors import UsageError
from spec_cli.outfiles import check_output, write_file


def test_files_are_replaced_whole_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_file(target, b"old")
    write_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_an_existing_file_needs_force_and_an_input_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    assert check_output(str(out)) == out  # new: fine
    out.write_text("keep me")
    with pytest.raises(UsageError, match="already exists: pass --force"):
        check_output(str(out))
    assert check_output(str(out), force=True) == out
    with pytest.raises(UsageError, match="is one of the files read"):
        check_output(str(out), force=True, inputs=[str(tmp_path / "other"), str(out)])
    home = str(tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", home)  # a suite given as --suite=~/... reaches us unexpanded
        with pytest.raises(UsageError, match="is one of the files read"):
            check_output("~/out.txt", force=True, inputs=["~/out.txt"])
    assert out.read_text() == "keep me"


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_file(check_output(str(link), force=True), b"new")
    assert link.is_symlink() and real.read_text() == "new"


def test_devices_pipes_directories_and_missing_folders_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    cases = {
        "": "needs a file name",
        str(loop): "a link that leads nowhere",
        "/dev/null": "not a regular file",
        str(fifo): "not a regular file",
        str(tmp_path): "is a directory",
        str(tmp_path / "typo" / "x.json"): "does not exist",
    }
    for path, why in cases.items():
        with pytest.raises(UsageError, match=why):
            check_output(path, option="--json", force=True)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not (tmp_path / "typo").exists()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
