"""Re-quantizing a GGUF with llama.cpp's quantizer, in a child process Ctrl-C can stop."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import llama_cpp as lc

from spec_cli.backend.llama_cpp import check_gguf, ensure_backend, physical_cores
from spec_cli.errors import ModelError

FTYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q8_0": 7,
    "q4_k_m": 15,
    "q5_k_m": 17,
    "q6_k": 18,
}


def quantize(src: str, dst: str, kind: str, threads: int = 0) -> None:
    """Write `src` re-quantized as `kind` (see FTYPES) to `dst` with llama.cpp's quantizer.

    The quantizer cannot be stopped from inside and takes minutes on a big model, so it
    runs in a child process of its own session: Ctrl-C (or SIGTERM) reaches only us, and
    ends it at once. What it had written to `dst` is then incomplete: the caller writes
    to a temporary name.
    """
    check_gguf(src)
    if kind not in FTYPES:
        raise ModelError(f"unknown quantization type {kind!r}: use one of {', '.join(FTYPES)}")
    child = subprocess.Popen(
        [sys.executable, "-c", _QUANTIZE_CHILD, src, dst, kind, str(threads or physical_cores())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        rc = child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    if rc != 0:
        raise ModelError(f"llama.cpp could not quantize {src} to {kind} (code {rc})")


_QUANTIZE_CHILD = (
    "import sys; from spec_cli.backend.quantize import quantize_here; "
    "sys.exit(quantize_here(*sys.argv[1:4], int(sys.argv[4])))"
)


def quantize_here(src: str, dst: str, kind: str, threads: int) -> int:
    """Run llama.cpp's quantizer in this process; its return code (0: done)."""
    ensure_backend()
    params = lc.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.allow_requantize = True
    params.nthread = threads
    return int(lc.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))
