"""llama.cpp through llama-cpp-python's low-level ctypes API (the only `llama_cpp` importer).

Verification reads logits straight from llama.cpp's output buffer as a numpy view; the
high-level `Llama.eval` would copy every row into Python and cost speed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as lc
import numpy as np

from spec_cli.backend.base import Logits, VocabInfo
from spec_cli.envflags import flag
from spec_cli.errors import ModelError, PromptError
from spec_cli.signals import deferred_interrupts

_init_lock = threading.Lock()
_initialised = False
_VOCAB_KINDS = {0: "none", 1: "spm", 2: "bpe", 3: "wpm", 4: "ugm", 5: "rwkv", 6: "plamo2"}


@lc.llama_log_callback  # type: ignore[misc,untyped-decorator]
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs model loading at length on stderr; keep stderr for our own messages.
    if flag("SPEC_LLAMA_LOG"):
        os.write(2, text)


def ensure_backend() -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            lc.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            lc.llama_backend_init()
            _initialised = True


@functools.cache
def amx_compiled() -> bool:
    """Whether this llama.cpp build carries its AMX matrix kernels."""
    return "AMX_INT8 = 1" in system_info()


def extra_buffers_allowed() -> bool:
    """Whether llama.cpp may hold weights in its extra CPU buffer types (AMX, repacked):
    its AMX kernels crash with a protection fault on the first batch of a quantized
    model on many AMX machines (llama.cpp issue 20824), so not on those unless asked."""
    return not amx_compiled() or flag("SPEC_LLAMA_AMX")


@functools.cache
def physical_cores() -> int:
    """Physical core count (llama.cpp's default thread count), falling back to logical,
    and no more than the CPUs this process may use."""
    try:
        seen = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = val.strip()
            elif key == "core id":
                core = val.strip()
                seen.add((phys, core))
        if seen:
            return min(len(seen), _usable_cpus())
    except OSError:
        pass
    return _usable_cpus()


def _usable_cpus() -> int:
    """CPUs this process may run on (taskset, a container's CPU set), or all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


MIN_CONTEXT = 64  # >= the largest verify batch (costs.MAX_BATCH)
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: context size, threads and layers offloaded to the GPU."""

    n_ctx: int | None = None  # None: DEFAULT_CONTEXT, or the model's own when smaller; 0: its own
    n_threads: int = 0  # 0: all physical cores
    n_gpu_layers: int = 0
    n_batch: int = 512
    vocab_only: bool = False  # tokenizer and metadata only: no weights, no context


def check_gguf(path: str) -> None:
    """Fail with one clear line when `path` is not a readable GGUF file."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {path}")
    if p.is_dir():
        raise ModelError(f"{path} is a directory: give the .gguf file inside it")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (wrong magic bytes)")


def decode_failure(rc: int, name: str) -> str:
    """A user's line for llama_decode's return code (1: no cache slot, 2: aborted,
    -1: a bad batch, below: a failed computation, usually memory)."""
    if rc == 1:
        return f"{name}: llama.cpp found no room in the KV cache: raise --ctx-size"
    if rc == 2:
        return f"{name}: llama.cpp aborted the computation"
    return (
        f"{name}: llama.cpp could not evaluate a batch (llama_decode code {rc}); if it ran "
        "out of memory, lower --ctx-size or offload fewer --gpu-layers"
    )


class LlamaCppBackend:
    """One llama.cpp model + context, holding a single sequence (seq 0)."""

    def __init__(self, path: str, options: LoadOptions = LoadOptions()) -> None:
        check_gguf(path)
        ensure_backend()
        self.path = path
        self._closed = True  # nothing to free until the model is loaded
        self._ctx: Any = None
        self._mem: Any = None
        self._batch: Any = None
        self.n_ctx = self.n_batch = self.n_ctx_train = self._capacity = 0
        self.threads = options.n_threads or physical_cores()
        self.n_gpu_layers = options.n_gpu_layers
        self._cached: list[int] = []
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        # Loading takes seconds on a big model, in native code: keep Ctrl-C from being lost.
        with deferred_interrupts() as interrupted:
            self._model = self._load_model(options, interrupted)
            self._closed = False
            self._vocab = lc.llama_model_get_vocab(self._model)
            self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
            self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
            # A recurrent state (Mamba, RWKV, and hybrids such as LFM2 or Granite 4) holds
            # only its latest position: llama.cpp cannot roll it back to an earlier one.
            self.can_roll_back = not (
                lc.llama_model_is_recurrent(self._model) or lc.llama_model_is_hybrid(self._model)
            )
            # Sliding-window layers forget positions older than their window (once pruned).
            self._n_swa = int(lc.llama_model_n_swa(self._model))
            if not options.vocab_only:
                self._create_context(options)

    def _load_model(self, options: LoadOptions, interrupted: Callable[[], bool]) -> Any:
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = options.n_gpu_layers
        mparams.vocab_only = options.vocab_only
        if not extra_buffers_allowed():
            mparams.use_extra_bufts = False
        # llama.cpp stops loading when its progress callback returns false.
        keep_loading = lc.llama_progress_callback(lambda progress, data: not interrupted())
        mparams.progress_callback = keep_loading
        model = lc.llama_model_load_from_file(self.path.encode(), mparams)
        if not model:
            if interrupted():
                raise KeyboardInterrupt
            raise ModelError(
                f"llama.cpp could not load {self.path}: the file is corrupt or unsupported"
            )
        return model

    def _create_context(self, options: LoadOptions) -> None:
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(self._model))
        if options.n_ctx is None:
            n_ctx = min(DEFAULT_CONTEXT, self.n_ctx_train) or DEFAULT_CONTEXT
        else:
            n_ctx = options.n_ctx or self.n_ctx_train or DEFAULT_CONTEXT
        cparams = lc.llama_context_default_params()
        # llama.cpp limits a call to the context asked for, and rounds the context itself
        # up to 256: asking for at least MIN_CONTEXT costs nothing and lets one call hold
        # a full draft (and the cost calibration's largest batch). The batch it allows is
        # read back below, and the engine keeps drafts within it.
        cparams.n_ctx = max(n_ctx, MIN_CONTEXT)
        cparams.n_batch = options.n_batch
        cparams.n_ubatch = options.n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        if self.n_gpu_layers == 0:
            # llama.cpp's CPU flash-attention kernel makes every call dearer, batches
            # most: SmolLM2 Q4_1 at 230 tokens of context verified 8 tokens in 50 ms with
            # it and 36 ms without, and at 3000 tokens decoded one in 38 ms against 19.
            # (Bindings from before llama.cpp's flash_attn_type had it off by default.)
            cparams.flash_attn_type = getattr(lc, "LLAMA_FLASH_ATTN_TYPE_DISABLED", 0)
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            self.close()  # frees the model, once: __del__ must not free it again
            raise ModelError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {self.path}: "
                "try a smaller --ctx-size"
            )
        # What was allocated may exceed what was asked for (llama.cpp's rounding, or
        # MIN_CONTEXT): the engine keeps to the size asked for, while the calibration may
        # use the rest.
        self._capacity = int(lc.llama_n_ctx(self._ctx))
        self.n_ctx = min(n_ctx, self._capacity)
        self.n_batch = int(lc.llama_n_batch(self._ctx))
        self._mem = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)

    # -- tokens ---------------------------------------------------------------------------

    @property
    def cached(self) -> Sequence[int]:
        return self._cached

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            # Undecodable input bytes reach Python as lone surrogates (from a terminal,
            # argv or a JSON "\ud800"); they are not text, and have no tokens.
            raise PromptError("the text is not valid UTF-8: convert it to UTF-8") from None
        cap = len(data) + 8
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        return list(buf[:n])

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = lc.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lc.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        # Asked for every drafted token each step: a dict beats a ctypes call.
        known = self._eog.get(token)
        if known is None:
            known = self._eog[token] = bool(lc.llama_vocab_is_eog(self._vocab, token))
        return known

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    # -- evaluation -----------------------------------------------------------------------

    def eval(self, tokens: Sequence[int], n_logits: int = 1) -> Logits:
        n = len(tokens)
        if n == 0:
            raise ValueError("eval needs at least one token")
        if len(self._cached) + n > self._capacity:
            raise PromptError(
                f"the context of {self._capacity} tokens is full: raise --ctx-size or shorten "
                "the input"
            )
        if n_logits > min(n, self.n_batch):
            raise ValueError("n_logits exceeds the tokens of one batch")
        if n > self.n_batch and n_logits > 0:
            # Keep every requested row in the last llama_decode call.
            self.eval(tokens[: n - n_logits], 0)
            return self.eval(tokens[n - n_logits :], n_logits)
        # Drop anything an interrupted call may have left beyond what we track. A
        # recurrent state cannot drop part of itself: it is read again from the start.
        if not lc.llama_memory_seq_rm(self._mem, 0, len(self._cached), -1):
            known = [*self._cached, *tokens]
            lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
            self._cached.clear()
            return self.eval(known, n_logits)
        batch = self._batch
        start = 0
        while start < n:
            chunk = min(self.n_batch, n - start)
            pos0 = len(self._cached)
            for i in range(chunk):
                j = start + i
                batch.token[i] = tokens[j]
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = j >= n - n_logits
            batch.n_tokens = chunk
            try:
                rc = lc.llama_decode(self._ctx, batch)
            except BaseException:
                # Ctrl-C is raised as the call returns: a batch that went in is tracked,
                # or a recurrent state would hold tokens nobody knows of.
                if lc.llama_memory_seq_pos_max(self._mem, 0) + 1 == pos0 + chunk:
                    self._cached.extend(tokens[start : start + chunk])
                raise
            if rc != 0:
                # Leave the cache as it was before this chunk.
                lc.llama_memory_seq_rm(self._mem, 0, pos0, -1)
                raise ModelError(decode_failure(rc, Path(self.path).name))
            self._cached.extend(tokens[start : start + chunk])
            start += chunk
        if n_logits == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = lc.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_logits, self.n_vocab))

    def truncate(self, n: int) -> None:
        if self._closed:  # a late generator cleanup: the context is already freed
            del self._cached[n:]
            return
        if n < len(self._cached):
            if not (self._still_holds(n) and lc.llama_memory_seq_rm(self._mem, 0, n, -1)):
                # The state before position n is gone: start over, keeping nothing.
                lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
                n = 0
            del self._cached[n:]

    def _still_holds(self, n: int) -> bool:
        """Whether the cache still has what a token at position n attends to: a
        sliding-window cache prunes positions a window behind its newest one."""
        oldest = int(lc.llama_memory_seq_pos_min(self._mem, 0))
        return n == 0 or oldest <= max(0, n - max(1, self._n_swa))

    # -- metadata -------------------------------------------------------------------------

    def chat_template(self) -> str | None:
        tmpl = lc.llama_model_chat_template(self._model, None)
        return tmpl.decode("utf-8", errors="replace") if tmpl else None

    def token_text(self, token: int) -> str:
        raw = lc.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def special_tokens(self) -> dict[str, int]:
        return {
            "bos": int(lc.llama_vocab_bos(self._vocab)),
            "eos": int(lc.llama_vocab_eos(self._vocab)),
        }

    def vocab_info(self) -> VocabInfo:
        digests = bytearray()
        eog = []
        for t in range(self.n_vocab):
            raw = lc.llama_vocab_get_text(self._vocab, t) or b""
            attr = int(lc.llama_vocab_get_attr(self._vocab, t))
            one = hashlib.blake2b(raw + b"\x00", digest_size=8)
            one.update(attr.to_bytes(4, "little", signed=True))
            digests += one.digest()
            if lc.llama_vocab_is_eog(self._vocab, t):
                eog.append(t)
        specials = self.special_tokens()
        return VocabInfo(
            kind=_VOCAB_KINDS.get(int(lc.llama_vocab_type(self._vocab)), "unknown"),
            size=self.n_vocab,
            bos=specials["bos"],
            eos=specials["eos"],
            eog=frozenset(eog),
            text_digest=hashlib.sha256(digests).hexdigest(),
            token_digests=bytes(digests),
        )

    def vocab_id(self) -> str:
        """Cheap fingerprint of the vocabulary (size, type, a strided sample of token texts)
        that keys n-gram caches."""
        h = hashlib.sha256(f"{self.n_vocab}:{int(lc.llama_vocab_type(self._vocab))}".encode())
        for t in range(0, self.n_vocab, max(1, self.n_vocab // 2048)):
            h.update((lc.llama_vocab_get_text(self._vocab, t) or b"") + b"\x00")
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        buf = ctypes.create_string_buffer(256)
        lc.llama_model_desc(self._model, buf, 256)
        return {
            "description": buf.value.decode(errors="replace"),
            "parameters": int(lc.llama_model_n_params(self._model)),
            "size_bytes": int(lc.llama_model_size(self._model)),
            "context_length": int(lc.llama_model_n_ctx_train(self._model)),
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ctx is not None:
            lc.llama_batch_free(self._batch)
            lc.llama_free(self._ctx)
        lc.llama_model_free(self._model)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def llama_cpp_version() -> str:
    """Version of the llama-cpp-python bindings (and so of the bundled llama.cpp)."""
    return str(getattr(lc, "__version__", "unknown"))


def build_id() -> str:
    """The llama.cpp build a measurement belongs to: the bindings' version and what the
    library was compiled with (CPU features, GPU backends), so a CUDA or Metal reinstall
    of the same version is measured afresh, and which weight kernels it may use."""
    compiled = hashlib.sha256(system_info().encode()).hexdigest()[:8]
    plain = "" if extra_buffers_allowed() else "-plain"
    return f"llama.cpp-{llama_cpp_version()}-{compiled}{plain}"


def system_info() -> str:
    ensure_backend()
    info: bytes = lc.llama_print_system_info()
    return info.decode(errors="replace").strip()
