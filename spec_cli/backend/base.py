"""What the engine needs from a model: tokens in, logits out, and a rollback-able cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Logits = npt.NDArray[np.float32]


@dataclass(frozen=True)
class VocabInfo:
    """What must agree between a target and a draft model for drafts to mean anything."""

    kind: str  # tokenizer type, e.g. "bpe" or "spm"
    size: int
    bos: int
    eos: int
    eog: frozenset[int]
    text_digest: str  # hash over every token's text and attributes
    # 8 bytes per token (its text and attributes), to compare vocabularies of different sizes
    token_digests: bytes = b""


class Backend(Protocol):
    """A loaded model with one sequence in its KV cache.

    The cache holds `cached` (positions 0..n-1). `eval` appends tokens and returns logits
    rows for the last `n_logits` of them; `truncate(n)` rolls the cache back to n tokens,
    or to none when the model cannot return to position n (`can_roll_back` is False for
    recurrent models: any rollback empties their cache).
    """

    path: str
    n_vocab: int
    n_ctx: int
    n_batch: int  # most tokens one call can return logits for
    can_roll_back: bool

    @property
    def cached(self) -> Sequence[int]: ...

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...

    def eval(self, tokens: Sequence[int], n_logits: int = 1) -> Logits:
        """Append `tokens` to the cache; return a (n_logits, n_vocab) view.

        The view is only valid until the next `eval`.
        """
        ...

    def truncate(self, n: int) -> None: ...

    def vocab_info(self) -> VocabInfo: ...

    def chat_template(self) -> str | None: ...

    def close(self) -> None: ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the shared prefix of two token sequences."""
    n = min(len(a), len(b))
    # Caches and contexts mostly part near their ends (a rolled-back draft, new tokens):
    # compare all but the last few at C speed, step only through those one by one.
    i = max(0, n - 64)
    if list(a[:i]) != list(b[:i]):
        i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def sync_cache(backend: Backend, tokens: Sequence[int], n_logits: int = 0) -> Logits | None:
    """Make the cache hold exactly `tokens`, reusing the longest cached prefix.

    Returns logits for the last `n_logits` tokens (re-evaluating at least that many).
    """
    keep = common_prefix(backend.cached, tokens)
    keep = min(keep, len(tokens) - n_logits)
    backend.truncate(keep)
    rest = tokens[len(backend.cached) :]  # all of them when the rollback emptied the cache
    if not rest:
        return None
    return backend.eval(rest, n_logits)
