"""Test doubles: a Backend with hand-computable logits and a drafter that follows a script.

`FakeBackend` keeps its cache exactly like the llama.cpp backend (eval appends and returns
one logits row per requested position, truncate rolls back) and counts its calls, so
tests can check the engine's rollback bookkeeping token by token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from spec_cli.backend.base import Logits, VocabInfo
from spec_cli.drafters.base import Draft
from spec_cli.errors import PromptError
from spec_cli.sampling import SamplingParams

EOS = 0
# Pieces chosen so UTF-8 characters split across tokens: 4+5 is "é", 6+7 is "日",
# 8+9 is "😀" (two 2-byte halves), 10 is a whole "ü". EOS decodes to nothing, as with
# llama.cpp's token_to_piece on control tokens.
PIECES: tuple[bytes, ...] = (
    b"",  # 0  EOS
    b"a",  # 1
    b"b",  # 2
    b" ",  # 3
    b"\xc3",  # 4  first byte of é
    b"\xa9",  # 5  second byte of é
    b"\xe6\x97",  # 6  first two bytes of 日
    b"\xa5",  # 7  last byte of 日
    b"\xf0\x9f",  # 8  first half of 😀
    b"\x98\x80",  # 9  second half of 😀
    "ü".encode(),  # 10
    b"xy",  # 11
    b"\n",  # 12
    b"c",  # 13
)
VOCAB = len(PIECES)

LogitsRule = Callable[[Sequence[int]], npt.NDArray[np.float32]]


def table_rule(
    vocab: int = VOCAB, seed: int = 0, scale: float = 2.0, eos_bias: float = -4.0
) -> LogitsRule:
    """Logits that depend only on the last two tokens, via a seeded random table.

    `eos_bias` is added to the EOS logit: the default keeps greedy runs long; raise it to
    make EOS reachable.
    """
    table = np.random.default_rng(seed).standard_normal((vocab, vocab, vocab)) * scale
    table[:, :, EOS] += eos_bias
    table = table.astype(np.float32)

    def rule(context: Sequence[int]) -> npt.NDArray[np.float32]:
        prev = context[-2] if len(context) >= 2 else 0
        out: npt.NDArray[np.float32] = table[prev, context[-1]]
        return out

    return rule


def cycle_rule(vocab: int = VOCAB, step: int = 1, peak: float = 5.0) -> LogitsRule:
    """Hand-computable logits: the argmax after token t is (t + step) % vocab, margin `peak`."""

    def rule(context: Sequence[int]) -> npt.NDArray[np.float32]:
        row = np.zeros(vocab, dtype=np.float32)
        row[(context[-1] + step) % vocab] = peak
        return row

    return rule


class FakeBackend:
    """A Backend whose logits at each position are `rule(tokens up to that position)`."""

    def __init__(
        self,
        rule: LogitsRule | None = None,
        *,
        n_ctx: int = 256,
        n_batch: int = 512,
        pieces: Sequence[bytes] = PIECES,
        eos: int = EOS,
        path: str = "fake.gguf",
        can_roll_back: bool = True,
    ) -> None:
        self.rule = rule or table_rule(len(pieces))
        # False: like a recurrent model's state, any rollback empties the cache.
        self.can_roll_back = can_roll_back
        self.pieces = list(pieces)
        self.n_vocab = len(self.pieces)
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.eos = eos
        self.path = path
        self._cached: list[int] = []
        self.eval_calls = 0
        self.evaluated_tokens = 0
        self.truncate_calls = 0
        self.batches: list[list[int]] = []
        self.closed = False

    @property
    def cached(self) -> Sequence[int]:
        return self._cached

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        """Greedy longest match over the pieces (no BOS: this vocabulary has none)."""
        data = text.encode("utf-8")
        out: list[int] = []
        i = 0
        while i < len(data):
            best = max(
                (t for t, p in enumerate(self.pieces) if p and data.startswith(p, i)),
                key=lambda t: len(self.pieces[t]),
                default=None,
            )
            if best is None:
                raise ValueError(f"fake vocabulary cannot encode byte {data[i]:#x}")
            out.append(best)
            i += len(self.pieces[best])
        return out

    def token_bytes(self, token: int) -> bytes:
        return self.pieces[token]

    def is_eog(self, token: int) -> bool:
        return token == self.eos

    def logits_for(self, context: Sequence[int]) -> npt.NDArray[np.float32]:
        """The row the model gives after `context` (what eval returns for its last token)."""
        return np.asarray(self.rule(context), dtype=np.float32)

    def eval(self, tokens: Sequence[int], n_logits: int = 1) -> Logits:
        if not tokens:
            raise ValueError("eval needs at least one token")
        if n_logits > min(len(tokens), self.n_batch):
            raise ValueError("n_logits exceeds the tokens of one batch")
        if len(self._cached) + len(tokens) > self.n_ctx:
            raise PromptError(f"the context of {self.n_ctx} tokens is full")
        if any(not 0 <= t < self.n_vocab for t in tokens):
            raise ValueError(f"token out of range in {list(tokens)}")
        self.eval_calls += 1
        self.evaluated_tokens += len(tokens)
        self.batches.append(list(tokens))
        self._cached.extend(tokens)
        end = len(self._cached)
        rows = [self.logits_for(self._cached[:i]) for i in range(end - n_logits + 1, end + 1)]
        return np.array(rows, dtype=np.float32).reshape(n_logits, self.n_vocab)

    def truncate(self, n: int) -> None:
        self.truncate_calls += 1
        if not self.can_roll_back and n < len(self._cached):
            n = 0
        del self._cached[n:]

    def vocab_info(self) -> VocabInfo:
        digest = hashlib.sha256(b"\x00".join(self.pieces)).hexdigest()
        return VocabInfo("fake", self.n_vocab, -1, self.eos, frozenset({self.eos}), digest)

    def chat_template(self) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True


def greedy_reference(backend: FakeBackend, prompt: Sequence[int], max_tokens: int) -> list[int]:
    """Plain greedy decoding computed from the rule directly (no engine, no cache)."""
    context = list(prompt)
    out: list[int] = []
    while len(out) < max_tokens:
        tok = int(np.argmax(backend.logits_for(context)))
        if backend.is_eog(tok):
            break
        out.append(tok)
        context.append(tok)
    return out


Script = Callable[[Sequence[int], int], Sequence[int]]


class ScriptedDrafter:
    """Drafts what a script says: a list of drafts used in turn, or a function of context.

    `probs` (optional) gives the q row for every drafted token (the same row each time),
    making the drafter stochastic for rejection sampling; otherwise q is one-hot. With
    `ignore_max_len` the script's drafts are returned whole, however long.
    """

    def __init__(
        self,
        script: Script | Sequence[Sequence[int]],
        *,
        probs: npt.NDArray[np.float64] | None = None,
        ignore_max_len: bool = False,
        name: str = "scripted",
        confidence: float = 1.0,
    ) -> None:
        self.script = script
        self.probs = probs
        self.ignore_max_len = ignore_max_len
        self.name = name
        self.confidence = confidence  # the drafter's own prior for each of its tokens
        self.steps = 0
        self.begun: list[list[int]] = []
        self.requested: list[int] = []  # max_len of each draft call
        self.verdicts: list[tuple[list[int], int]] = []  # (draft tokens, accepted) per step
        self.closed = False

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        self.begun.append(list(context))

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        self.requested.append(max_len)
        if callable(self.script):
            tokens = list(self.script(list(context), max_len))
        else:
            tokens = list(self.script[self.steps]) if self.steps < len(self.script) else []
        self.steps += 1
        if not self.ignore_max_len:
            tokens = tokens[:max_len]
        probs = [self.probs if self.probs is not None else None for _ in tokens]
        return Draft(tokens, probs, [self.confidence] * len(tokens), self.name)

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        self.verdicts.append((list(draft.tokens), accepted))

    def close(self) -> None:
        self.closed = True


def oracle_script(backend: FakeBackend, wrong_from: int | None = None) -> Script:
    """Drafts the target's true greedy continuation; from index `wrong_from` on, a wrong token.

    Greedy continuation ignores EOS on purpose: drafts then run past where generation ends.
    """

    def script(context: Sequence[int], max_len: int) -> list[int]:
        ctx = list(context)
        out: list[int] = []
        for i in range(max_len):
            tok = int(np.argmax(backend.logits_for(ctx)))
            if wrong_from is not None and i >= wrong_from:
                tok = (tok + 1) % backend.n_vocab
            out.append(tok)
            ctx.append(tok)
        return out

    return script


class SamplingDrafter:
    """A stochastic drafter: token i is drawn from the fixed row `q` with the engine's rng."""

    def __init__(self, q: npt.NDArray[np.float64], length: int, name: str = "sampling") -> None:
        self.q = q
        self.length = length
        self.name = name

    def begin(self, context: Sequence[int], max_new: int | None = None) -> None:
        pass

    def draft(
        self,
        context: Sequence[int],
        max_len: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
    ) -> Draft:
        from spec_cli.sampling import sample

        n = min(self.length, max_len)
        tokens = [sample(self.q, rng) for _ in range(n)]
        return Draft(tokens, [self.q] * n, [float(self.q[t]) for t in tokens], self.name)

    def feedback(self, context: Sequence[int], draft: Draft, accepted: int) -> None:
        pass

    def close(self) -> None:
        pass
