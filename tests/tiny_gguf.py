"""Write tiny random llama-architecture GGUF models for fast real-backend tests.

The vocabulary is byte-level (SentencePiece "llama" tokenizer with byte fallback):
`<unk>`, `<s>`, `</s>`, the 256 `<0xXX>` byte tokens, then `▁` (the escaped space, so
spaces round-trip as spaces) and any `extra_tokens`. Any UTF-8 text tokenizes and
detokenizes exactly. Weights are random F32, seeded; a draft that partly agrees with a
target is the same seed with `noise` added to every weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

UNK, BOS, EOS = 0, 1, 2
N_SPECIAL = 3
SPACE = "\u2581"  # SentencePiece's escaped space
ANTI_REPEAT = 0.1


@dataclass(frozen=True)
class TinyShape:
    """Model dimensions: small enough that llama.cpp loads and runs it in milliseconds."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    n_ctx: int = 512


def vocabulary(extra_tokens: tuple[str, ...] = ()) -> tuple[list[str], list[float], list[int]]:
    """Token texts, scores and token types of the byte-level vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # UNKNOWN, CONTROL, CONTROL, then BYTE
    tokens.append(SPACE)
    types.append(1)
    for t in extra_tokens:
        tokens.append(t)
        types.append(1)  # NORMAL
    # Byte tokens score lowest so any normal token wins the SentencePiece merge.
    scores = [0.0] * N_SPECIAL + [-1000.0] * 256 + [-float(i) for i in range(1 + len(extra_tokens))]
    return tokens, scores, types


def _silent_tokens(n_vocab: int) -> npt.NDArray[np.bool_]:
    """Tokens given a zero output row, so greedy decoding practically never emits them.

    Specials (greedy runs last their full length; sampling still reaches EOS now and
    then), control bytes (no escape codes in generated text) and non-ASCII bytes (no
    invalid UTF-8): greedy output is printable ASCII, spaces and newlines.
    """
    silent = np.zeros(n_vocab, dtype=bool)
    silent[:N_SPECIAL] = True
    for b in range(256):
        if not (0x20 <= b < 0x7F or b == 0x0A):
            silent[N_SPECIAL + b] = True
    return silent


def _weights(
    shape: TinyShape, n_vocab: int, seed: int, noise: float, noise_seed: int
) -> dict[str, npt.NDArray[np.float32]]:
    """Random weights scaled so logits are spread (greedy output varies with context)."""
    rng = np.random.default_rng(seed)
    d, f = shape.n_embd, shape.n_ff

    def mat(rows: int, cols: int, scale: float) -> npt.NDArray[np.float32]:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    w: dict[str, npt.NDArray[np.float32]] = {
        "token_embd.weight": mat(n_vocab, d, 1.0),
        "output_norm.weight": np.ones(d, dtype=np.float32),
        # Logit spread of a few units: sampling at temperature 1 is neither uniform nor
        # one-hot, and greedy argmaxes are rarely near-ties.
        "output.weight": mat(n_vocab, d, 0.6),
    }
    for i in range(shape.n_layer):
        w[f"blk.{i}.attn_norm.weight"] = np.ones(d, dtype=np.float32)
        w[f"blk.{i}.ffn_norm.weight"] = np.ones(d, dtype=np.float32)
        # Attention and MLP of the same order as the embedding, so earlier tokens matter.
        w[f"blk.{i}.attn_q.weight"] = mat(d, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.attn_k.weight"] = mat(d, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.attn_v.weight"] = mat(d, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.attn_output.weight"] = mat(d, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.ffn_gate.weight"] = mat(f, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.ffn_up.weight"] = mat(f, d, 1.0 / np.sqrt(d))
        w[f"blk.{i}.ffn_down.weight"] = mat(d, f, 1.0 / np.sqrt(f))
    # Push each token's output row away from its own embedding: without this a random
    # model soon settles on repeating one token forever.
    w["output.weight"] -= ANTI_REPEAT * w["token_embd.weight"]
    silent = _silent_tokens(n_vocab)
    w["output.weight"][silent] = 0.0
    if noise > 0.0:
        nrng = np.random.default_rng(noise_seed)
        for name, arr in w.items():
            if arr.ndim == 2:
                scale = float(np.std(arr[~silent] if name == "output.weight" else arr))
                arr += (nrng.standard_normal(arr.shape) * noise * scale).astype(np.float32)
        w["output.weight"][silent] = 0.0
    return w


def _add_vocabulary(writer: Any, extra_tokens: tuple[str, ...] = ()) -> None:
    """The byte-level tokenizer (see vocabulary) and its special tokens, into `writer`."""
    tokens, scores, types = vocabulary(extra_tokens)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_unk_token_id(UNK)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # No leading-space insertion: detokenize(tokenize(text)) is then exactly `text`.
    writer.add_add_space_prefix(False)


def write_tiny_gguf(
    path: str | Path,
    *,
    seed: int = 0,
    noise: float = 0.0,
    noise_seed: int = 1234,
    shape: TinyShape = TinyShape(),
    extra_tokens: tuple[str, ...] = (),
    name: str = "tiny",
    weights: bool = True,
) -> Path:
    """Write a tiny llama GGUF to `path` and return the path.

    `noise` adds Gaussian noise of that many standard deviations (relative to each weight
    matrix) to the weights of seed `seed`: 0 gives the target itself, ~0.1-0.5 a draft that
    agrees with it often but not always. `extra_tokens` change the vocabulary (size and
    texts), for incompatible-draft tests. Without `weights` the file holds only the
    vocabulary, like the ones llama.cpp ships for its tokenizer tests.
    """
    import gguf

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all F32
    _add_vocabulary(writer, extra_tokens)
    n_vocab = len(vocabulary(extra_tokens)[0])
    tensors = _weights(shape, n_vocab, seed, noise, noise_seed) if weights else {}
    for tensor_name, arr in tensors.items():
        writer.add_tensor(tensor_name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_mamba(path: str | Path, *, seed: int = 0, n_layer: int = 2) -> Path:
    """Write a tiny random Mamba GGUF (a recurrent model: its state holds only the
    latest position, so llama.cpp cannot roll it back) with the same vocabulary."""
    import gguf

    path = Path(path)
    d, d_inner, d_state, d_conv, dt_rank = 64, 128, 16, 4, 4
    n_vocab = len(vocabulary()[0])
    rng = np.random.default_rng(seed)

    def mat(*shape: int, scale: float = 1.0) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_name("tiny-mamba")
    writer.add_context_length(512)
    writer.add_embedding_length(d)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(0)
    writer.add_head_count(0)
    writer.add_ssm_conv_kernel(d_conv)
    writer.add_ssm_inner_size(d_inner)
    writer.add_ssm_state_size(d_state)
    writer.add_ssm_time_step_rank(dt_rank)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)
    _add_vocabulary(writer)
    output = mat(n_vocab, d, scale=0.6)
    output[_silent_tokens(n_vocab)] = 0.0
    writer.add_tensor("token_embd.weight", mat(n_vocab, d))
    writer.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for i in range(n_layer):
        blk = f"blk.{i}."
        writer.add_tensor(blk + "attn_norm.weight", np.ones(d, dtype=np.float32))
        writer.add_tensor(blk + "ssm_in.weight", mat(2 * d_inner, d, scale=d**-0.5))
        writer.add_tensor(blk + "ssm_conv1d.weight", mat(d_inner, d_conv, scale=0.5))
        writer.add_tensor(blk + "ssm_conv1d.bias", mat(d_inner, scale=0.1))
        writer.add_tensor(
            blk + "ssm_x.weight", mat(dt_rank + 2 * d_state, d_inner, scale=d_inner**-0.5)
        )
        writer.add_tensor(blk + "ssm_dt.weight", mat(d_inner, dt_rank, scale=0.5))
        writer.add_tensor(blk + "ssm_dt.bias", mat(d_inner, scale=0.1))
        writer.add_tensor(blk + "ssm_a", -np.exp(mat(d_inner, d_state, scale=0.5)))
        writer.add_tensor(blk + "ssm_d", np.ones(d_inner, dtype=np.float32))
        writer.add_tensor(blk + "ssm_out.weight", mat(d, d_inner, scale=d_inner**-0.5))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
