"""The side-by-side benchmark times other tools' streamed output over the first n tokens
only: a tool that overshoots the limit must not have its extra tokens counted."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

from rivals import _first_tokens


class ByteVocab:
    """One token per byte."""

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(text)

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return bytes(tokens)


ECHO = b"PROMPT"
# The prompt echo, then pieces as drafts are accepted: "a" at 1 s, "bc" at 2 s, and an
# overshooting "de" at 3 s.
ARRIVALS = [(0.0, ECHO), (1.0, b"a"), (2.0, b"bc"), (3.0, b"de")]


def test_an_overshoot_past_the_limit_is_cut_from_speed_and_text() -> None:
    outcome = _first_tokens(ByteVocab(), ARRIVALS, len(ECHO), 3)
    assert outcome.text == "abc"
    assert outcome.tokens_per_second == 2.0  # tokens 2..3 over the 1 s after the first


def test_a_text_shorter_than_the_limit_is_timed_to_its_end() -> None:
    outcome = _first_tokens(ByteVocab(), ARRIVALS, len(ECHO), 10)
    assert outcome.text == "abcde"
    assert outcome.tokens_per_second == 2.0  # tokens 2..5 over 2 s


def test_the_prompt_echo_is_not_timed() -> None:
    # The echo and the first piece arrive in separate chunks; a slow prefill between
    # them (0 s -> 5 s) does not count.
    arrivals = [(0.0, ECHO), (5.0, b"a"), (6.0, b"b")]
    assert _first_tokens(ByteVocab(), arrivals, len(ECHO), 2).tokens_per_second == 1.0
