"""Read a GGUF file's header (metadata and tensor table) without loading the model.

Standard library only: `spec models info` and the truncation check must work on files
llama.cpp refuses, and must not pay for loading weights. Arrays (the vocabulary, merges)
are skipped, keeping only their length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec_cli.errors import ModelError

MAGIC = b"GGUF"
_CHUNK = 1 << 22  # header bytes read at a time; a 262k-token vocabulary takes ~5 MB

# GGUF value types -> struct codes (8 string, 9 array handled apart).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}  # fmt: skip

# general.file_type (llama_ftype) -> the quantization name users know.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip

# tokenizer.ggml.model -> llama.cpp's vocabulary type (what compat compares).
VOCAB_KINDS = {
    "llama": "spm", "gpt2": "bpe", "bert": "wpm", "t5": "ugm", "rwkv": "rwkv",
    "plamo2": "plamo2", "no_vocab": "none", "none": "none",
}  # fmt: skip


@dataclass(frozen=True)
class GGUFArray:
    """An array value, kept as its element type and length (contents skipped)."""

    item_type: int
    length: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says, and whether the file holds all the data it promises."""

    path: str
    version: int
    metadata: dict[str, Any]
    n_tensors: int
    n_params: int
    tensor_types: dict[str, int]  # ggml type name -> number of tensors
    data_offset: int
    expected_size: int | None  # None when a tensor type is unknown to this reader
    file_size: int

    @property
    def truncated(self) -> bool:
        return self.expected_size is not None and self.file_size < self.expected_size

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return str(value) if value is not None else None

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def quantization(self) -> str:
        """The file type's name, else the most common tensor type among weights."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int) and ftype in FILE_TYPES:
            return FILE_TYPES[ftype]
        weights = {k: v for k, v in self.tensor_types.items() if k not in ("F32",)}
        pool = weights or self.tensor_types
        return max(pool, key=lambda k: pool[k]) if pool else "unknown"

    @property
    def tokenizer_model(self) -> str | None:
        value = self.metadata.get("tokenizer.ggml.model")
        return str(value) if value is not None else None

    @property
    def vocab_kind(self) -> str:
        model = self.tokenizer_model
        return VOCAB_KINDS.get(model, model) if model else "none"

    @property
    def vocab_size(self) -> int | None:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        return tokens.length if isinstance(tokens, GGUFArray) else None

    @property
    def has_chat_template(self) -> bool:
        return bool(self.metadata.get("tokenizer.chat_template"))


class _Reader:
    """Sequential reads over a file, buffered in large chunks for the many tiny fields."""

    def __init__(self, path: Path, endian: str) -> None:
        self._f = path.open("rb")
        self._buf = b""
        self._pos = 0  # position in _buf
        self._base = 0  # file offset of _buf[0]
        self.endian = endian

    def close(self) -> None:
        self._f.close()

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _need(self, n: int) -> None:
        if self._pos + n <= len(self._buf):
            return
        rest = self._buf[self._pos :]
        more = self._f.read(max(_CHUNK, n - len(rest)))
        self._base += self._pos
        self._buf = rest + more
        self._pos = 0
        if len(self._buf) < n:
            raise EOFError

    def unpack(self, code: str) -> Any:
        size = struct.calcsize(code)
        self._need(size)
        (value,) = struct.unpack_from(self.endian + code, self._buf, self._pos)
        self._pos += size
        return value

    def skip(self, n: int) -> None:
        self._need(n)
        self._pos += n

    def string(self) -> str:
        n = self.unpack("Q")
        self._need(n)
        raw = self._buf[self._pos : self._pos + n]
        self._pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            self.skip(self.unpack("Q"))


def _value(r: _Reader, vtype: int) -> Any:
    if vtype in _SCALARS:
        return r.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        return r.string()
    if vtype == _ARRAY:
        item_type = r.unpack("I")
        length = r.unpack("Q")
        if item_type in _SCALARS:
            r.skip(struct.calcsize(_SCALARS[item_type]) * length)
        elif item_type == _STRING:
            r.skip_strings(length)
        else:
            raise ValueError(f"unsupported array element type {item_type}")
        return GGUFArray(item_type, length)
    raise ValueError(f"unknown metadata value type {vtype}")


def _tensor_bytes(dims: list[int], ggml_type: int) -> int | None:
    if ggml_type not in GGML_TYPES:
        return None
    _, block, size = GGML_TYPES[ggml_type]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def read_info(path: str) -> GGUFInfo:
    """Parse the header of the GGUF at `path`; ModelError when it is not a readable GGUF."""
    p = Path(path)
    if p.is_dir():
        raise ModelError(f"{path} is a directory: give the .gguf file inside it")
    if not p.is_file():
        raise ModelError(f"model file not found: {path}")
    file_size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
    if head[:4] != MAGIC:
        raise ModelError(f"{path} is not a GGUF model file (wrong magic bytes)")
    if len(head) < 8:
        raise ModelError(f"{path} is truncated inside its GGUF header: download or copy it again")
    version = struct.unpack("<I", head[4:8])[0]
    endian = "<"
    if version > 0xFFFF:  # a big-endian file reads as a huge little-endian number
        endian, version = ">", struct.unpack(">I", head[4:8])[0]
    if version < 2:
        raise ModelError(f"{path} is GGUF version {version}, too old: convert it again")
    r = _Reader(p, endian)
    try:
        r.skip(8)
        n_tensors = r.unpack("Q")
        n_kv = r.unpack("Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            metadata[key] = _value(r, r.unpack("I"))
        n_params = 0
        types: dict[str, int] = {}
        end: int | None = 0
        for _ in range(n_tensors):
            r.string()
            dims = [r.unpack("Q") for _ in range(r.unpack("I"))]
            ggml_type = r.unpack("I")
            offset = r.unpack("Q")
            count = 1
            for d in dims:
                count *= d
            n_params += count
            tname = GGML_TYPES.get(ggml_type, (f"type{ggml_type}", 0, 0))[0]
            types[tname] = types.get(tname, 0) + 1
            nbytes = _tensor_bytes(dims, ggml_type)
            if end is not None:
                end = None if nbytes is None else max(end, offset + nbytes)
        header_end = r.offset
    except EOFError:
        raise ModelError(
            f"{path} is truncated inside its GGUF header ({file_size:,} bytes): "
            "download or copy it again"
        ) from None
    except MemoryError:
        raise ModelError(
            f"{path} has a corrupt GGUF header: it claims more entries than memory holds"
        ) from None
    except (ValueError, UnicodeDecodeError, OverflowError) as e:
        raise ModelError(f"{path} has a corrupt GGUF header: {e}") from None
    finally:
        r.close()
    align = metadata.get("general.alignment", 32)
    align = align if isinstance(align, int) and align > 0 else 32
    data_offset = -(-header_end // align) * align
    return GGUFInfo(
        path=str(path),
        version=version,
        metadata=metadata,
        n_tensors=n_tensors,
        n_params=n_params,
        tensor_types=types,
        data_offset=data_offset,
        # A vocabulary-only file (llama.cpp ships them for tokenizer tests) has no data.
        expected_size=None if end is None else data_offset + end if n_tensors else header_end,
        file_size=file_size,
    )


def check_complete(path: str) -> GGUFInfo:
    """read_info, plus a ModelError when the file is shorter than its tensors need or
    has no tensors at all."""
    info = read_info(path)
    if info.n_tensors == 0:
        raise ModelError(f"{path} holds only a vocabulary, no weights: it cannot generate")
    if info.truncated and info.expected_size is not None:
        have, want = human_size(info.file_size), human_size(info.expected_size)
        if have == want:
            have, want = f"{info.file_size} bytes", f"{info.expected_size}"
        raise ModelError(f"{path} is truncated ({have} of {want}): download or copy it again")
    return info


def human_size(n: float) -> str:
    """Bytes as a short human string (decimal units, like download sizes are quoted)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit in ("B", "kB") or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: int) -> str:
    """A parameter count as 135M, 7.6B, ..."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}K"
    return str(n)
