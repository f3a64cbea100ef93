"""`--draft self`: a quantized copy of the target drafts for it, made once and cached.

A model stored at 8 bits or more (F32, F16, BF16, Q8_0) is slow to decode because every
token reads all its weights; its own 4-bit quantization reads a half to a sixth as much
and agrees with it on most tokens, so it drafts without a second model to find.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from spec_cli.errors import ModelError, UsageError

SELF = "self"
# Bits a weight each copy type stores (block scales included).
COPY_BITS = {"q4_0": 4.5, "q4_1": 5.0, "q4_k_m": 4.85, "q5_k_m": 5.7, "q6_k": 6.56, "q8_0": 8.5}
QUANT_BITS = {**COPY_BITS, "f16": 16.0, "f32": 32.0}  # every type `models quantize` writes
# A copy must read at most this share of the target's bytes to draft profitably.
MAX_SHARE = 0.6
# Q4_K_M: llama.cpp's usual 4-bit type, fast on every backend. Against an F32 SmolLM2-135M
# moved off the 4-bit grid of the release it came from (each weight by up to half a
# step), greedy next tokens matched at 87.7% of 450 positions (Q8_0 95.2% at 1.7x the
# bytes, Q4_1 74.1%, Q4_0 66.8%), and on an x86 CPU it read a 224-token prompt in 0.34 s
# against Q4_1's 0.72 s. (An F32 copy of a Q4_1 release favours Q4_1, which lands back
# on the release's weights: 97.6%.)
DEFAULT_KIND = "q4_k_m"


def parse(draft: str) -> str | None:
    """The copy type a --draft value asks for (`self`, `self:q8_0`), or None when it
    names a file or preset."""
    name, sep, kind = draft.partition(":")
    if name != SELF:
        return None
    if not sep:
        return DEFAULT_KIND
    kind = kind.lower()
    if kind not in COPY_BITS:
        raise UsageError(f"unknown --draft self:{kind}: use one of {', '.join(COPY_BITS)}")
    return kind


def bits_per_weight(path: str) -> float:
    """Average stored bits a weight: file size over parameter count."""
    from spec_cli.ggufinfo import check_complete

    info = check_complete(path)
    return 8.0 * info.file_size / max(info.n_params, 1)


def copy_path(target: str, kind: str) -> Path:
    """Where the cached copy of this target lives: the one already made under any name,
    else one named after the path given (not the resolved one: a Hugging Face blob's
    name is a hash)."""
    from spec_cli.cachefiles import cache_dir, file_key

    # A changed target gets a new copy; links and other names of one file share one.
    key = hashlib.sha256(file_key(target).encode()).hexdigest()[:16]
    folder = cache_dir() / "drafts"
    made = sorted(folder.glob(f"*-{key}-{kind}.gguf"))
    return made[0] if made else folder / f"{Path(target).stem}-{key}-{kind}.gguf"


def _usable(copy: Path) -> bool:
    """Whether a cached copy is whole; a damaged one is deleted, to be made again."""
    from spec_cli.ggufinfo import check_complete

    if not copy.exists():
        return False
    try:
        check_complete(str(copy))
        return True
    except ModelError:
        copy.unlink(missing_ok=True)
        return False


def check_kind(target: str, kind: str) -> None:
    """Refuse a copy type that would not read much less than the target."""
    bits = bits_per_weight(target)
    if COPY_BITS[kind] > MAX_SHARE * bits:
        raise UsageError(
            f"--draft self drafts with a {kind.upper()} copy of the target, but "
            f"{Path(target).name} is stored at {bits:.1f} bits a weight: the copy would "
            "not be much faster. Pass a smaller model of the same family with --draft"
        )


def check_room(source: str, bits: float, folder: Path, what: str, hint: str = "") -> None:
    """Refuse before quantizing when `what` (a copy of `source` at `bits` a weight)
    cannot fit in `folder`'s free space; `hint` ends the message."""
    from spec_cli.ggufinfo import check_complete, human_size

    info = check_complete(source)
    # At least this much: some tensors (embeddings, output) often stay at higher
    # precision, so the file can be larger, but a job refused here could never fit.
    need = int(info.n_params * bits / 8)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ModelError(
            f"not enough free space in {folder} for {what} of {Path(source).name}: it "
            f"needs at least {human_size(need)}, {human_size(free)} is free; free some "
            f"space{hint}"
        )


def self_draft(target: str, kind: str, notify: Callable[[str], None]) -> str:
    """The path of the target's quantized copy, made first when not cached."""
    from spec_cli.backend.quantize import quantize
    from spec_cli.cachefiles import locked
    from spec_cli.ggufinfo import human_size
    from spec_cli.signals import sigterm_as_interrupt

    check_kind(target, kind)
    out = copy_path(target, kind)
    if _usable(out):
        return str(out)
    # One run makes the copy; another starting meanwhile waits for it.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
    except OSError as e:
        raise ModelError(
            f"cannot write the draft copy in {out.parent}: {e.strerror or e}; set "
            "SPEC_CACHE_DIR to a writable directory"
        ) from None
    try:
        with locked(out):
            if _usable(out):
                return str(out)
            # Left by a run killed outright: nobody else writes while we hold the lock.
            for stale in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
                if stale != tmp:
                    stale.unlink(missing_ok=True)
            hint = " or set SPEC_CACHE_DIR to another disk"
            check_room(target, COPY_BITS[kind], out.parent, f"a {kind.upper()} copy", hint)
            notify(
                f"making a {kind.upper()} copy of {Path(target).name} to draft with, once, "
                f"in {out.parent}"
            )
            with sigterm_as_interrupt():
                quantize(target, str(tmp), kind)
            os.replace(tmp, out)
            notify(f"made {out.name} ({human_size(out.stat().st_size)})")
    finally:
        tmp.unlink(missing_ok=True)
    return str(out)
