"""Token events -> text: UTF-8 split across tokens, stop strings, streamed == final text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from fakes import PIECES, FakeBackend, ScriptedDrafter, greedy_reference, oracle_script
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import Event, FinishEvent, Origin, RejectedEvent, StepEvent, TokenEvent
from spec_cli.result import consume
from spec_cli.textstream import stream_text

E_ACUTE = [4, 5]  # "é" as two tokens
NICHI = [6, 7]  # "日" split 2 + 1
SMILE = [8, 9]  # "😀" split 2 + 2


def token_bytes(t: int) -> bytes:
    return PIECES[t]


def events_for(tokens: Sequence[int], reason: str = "length") -> Iterator[Event]:
    for t in tokens:
        yield TokenEvent(t, Origin.TARGET)
    yield FinishEvent(reason, tuple(tokens))


def texts(events: Sequence[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TokenEvent)]


def streamed(events: Sequence[Event]) -> str:
    """What a renderer shows: every token's text, then the finish tail."""
    out = "".join(texts(events))
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    return out + finish.tail


def test_multibyte_characters_split_across_tokens_are_never_replaced() -> None:
    tokens = [1, *E_ACUTE, 3, *NICHI, *SMILE, 10, 1]
    out = list(stream_text(events_for(tokens), token_bytes))
    assert texts(out) == ["a", "", "é", " ", "", "日", "", "😀", "ü", "a"]
    assert "\ufffd" not in streamed(out)
    assert streamed(out) == "aé 日😀üa"


def test_a_dangling_partial_character_at_the_end_is_flushed_as_replacement() -> None:
    """Only truly broken UTF-8 (generation cut mid-character) becomes U+FFFD, at the end."""
    out = list(stream_text(events_for([1, 8]), token_bytes))
    assert texts(out) == ["a", ""]
    assert out[-1] == FinishEvent("length", (1, 8), tail="\ufffd")


def test_stop_string_across_token_boundaries() -> None:
    # "a b" + "xy" + "a": the stop "bxy" spans the tokens b and xy.
    tokens = [1, 3, 2, 11, 1, 1]
    out = list(stream_text(events_for(tokens), token_bytes, stops=["bxy"]))
    assert streamed(out) == "a "
    # "b" and "xy" made only the stop string: not part of the result.
    assert out[-1] == FinishEvent("stop", unsaid=2)
    # Nothing after the stop string was consumed.
    assert len(texts(out)) == 4


@pytest.mark.parametrize(
    ("tokens", "stop", "kept"),
    [
        ([1, 3, 2, 11, 1], "bxy", [1, 3]),  # the stop spans whole tokens
        ([1, 11, 1], "y", [1, 11]),  # "xy": the token's "x" is in the text
        ([1, 2, 2, 1], "b", [1]),  # the stop is one whole token
        ([1, 3, 2, 13], "bc", [1, 3]),  # held back, then the stop: "b" was never said
    ],
)
def test_result_tokens_are_those_whose_text_is_in_the_result(
    tokens: list[int], stop: str, kept: list[int]
) -> None:
    result = consume(stream_text(events_for(tokens), token_bytes, stops=[stop]))
    assert result.finish_reason == "stop"
    assert result.tokens == kept
    assert result.text == b"".join(PIECES[t] for t in kept).decode().split(stop)[0]


def test_possible_stop_prefix_is_held_back_then_released() -> None:
    tokens = [1, 2, 13, 1]  # "abca" with stop "bx": "b" waits, then goes out with "c"
    out = list(stream_text(events_for(tokens), token_bytes, stops=["bx"]))
    assert texts(out) == ["a", "", "bc", "a"]
    assert out[-1].reason == "length"  # type: ignore[union-attr]


def test_held_back_text_is_released_as_the_tail_when_generation_ends() -> None:
    out = list(stream_text(events_for([1, 2]), token_bytes, stops=["bx"]))
    assert texts(out) == ["a", ""]
    assert out[-1] == FinishEvent("length", (1, 2), tail="b")


def test_ctrl_c_keeps_the_text_held_back_as_a_possible_stop_string() -> None:
    """Ctrl-C while the engine works on the next token: "b" could begin the stop string
    "bx", so its text was held back, yet its token is in the result; its text must be
    too, and shown."""

    def interrupted() -> Iterator[Event]:
        yield TokenEvent(1, Origin.TARGET)
        yield TokenEvent(2, Origin.TARGET)
        raise KeyboardInterrupt

    shown: list[Event] = []
    result = consume(stream_text(interrupted(), token_bytes, stops=["bx"]), shown.append)
    assert result.finish_reason == "interrupted"
    assert (result.text, result.tokens) == ("ab", [1, 2])
    assert streamed(shown) == "ab"


def test_ctrl_c_in_the_consumer_also_keeps_the_held_back_text() -> None:
    """The same when Ctrl-C lands while the consumer shows a token (the stream waits)."""
    stream = stream_text(events_for([1, 2, 3]), token_bytes, stops=["bx"])
    shown: list[Event] = []

    def show(event: Event) -> None:
        shown.append(event)
        if isinstance(event, TokenEvent) and event.token == 2:
            raise KeyboardInterrupt

    result = consume(stream, show)
    assert result.finish_reason == "interrupted"
    assert (result.text, result.tokens) == ("ab", [1, 2])
    assert streamed(shown) == "ab"


def test_stop_string_inside_one_token_and_multibyte_stop() -> None:
    out = list(stream_text(events_for([1, 11, 1]), token_bytes, stops=["x"]))
    assert streamed(out) == "a"
    out = list(stream_text(events_for([1, *E_ACUTE, 2]), token_bytes, stops=["é"]))
    assert streamed(out) == "a"
    assert "\ufffd" not in "".join(texts(out))


def test_earliest_of_several_stop_strings_wins() -> None:
    tokens = [1, 2, 13, 1, 2]  # "abcab"
    out = list(stream_text(events_for(tokens), token_bytes, stops=["ca", "bc"]))
    assert streamed(out) == "a"


def test_rejected_drafts_get_their_text_and_step_events_pass_through() -> None:
    step = StepEvent("x", 2, 0, 0.0, 0.0)
    events: list[Event] = [RejectedEvent((1, 11), "x"), step, FinishEvent("length")]
    out = list(stream_text(iter(events), token_bytes))
    assert out[0] == RejectedEvent((1, 11), "x", text="axy")
    assert out[1] is step


def test_stopping_closes_the_upstream_generator() -> None:
    closed = []

    def upstream() -> Iterator[Event]:
        try:
            yield from events_for([1, 11, 1, 1, 1])
        finally:
            closed.append(True)

    out = list(stream_text(upstream(), token_bytes, stops=["xy"]))
    assert closed == [True]
    assert out[-1] == FinishEvent("stop", unsaid=1)


@settings(max_examples=300, deadline=None, database=None)
@given(
    tokens=st.lists(st.integers(1, len(PIECES) - 1), max_size=30),
    stops=st.lists(st.sampled_from(["a", "ab", "bxy", "é", " c", "\n\n", "üa", "日b"]), max_size=3),
)
def test_streamed_text_equals_the_final_text(tokens: list[int], stops: list[str]) -> None:
    """Concatenated streamed text == decoding all bytes at once, cut at the first stop."""
    full = b"".join(PIECES[t] for t in tokens).decode("utf-8", errors="replace")
    hits = [i for i in (full.find(s) for s in stops) if i >= 0]
    expected = full[: min(hits)] if hits else full
    out = list(stream_text(events_for(tokens), token_bytes, stops))
    assert streamed(out) == expected
    assert out[-1].reason == ("stop" if hits else "length")  # type: ignore[union-attr]
    # Text is released as soon as it is final: no stop prefix and no partial character
    # stays pending longer than needed, so at most the longest stop minus one character
    # (or one partial character) is ever held.
    assert len(streamed(out)) - len("".join(texts(out))) <= max([1, *(len(s) for s in stops)])


def test_valid_utf8_never_streams_a_replacement_character() -> None:
    rng = np.random.default_rng(0)
    whole = [[1], [2], [3], [10], [11], [12], [13], E_ACUTE, NICHI, SMILE]
    for _ in range(200):
        tokens = [t for i in rng.integers(0, len(whole), size=20) for t in whole[i]]
        out = list(stream_text(events_for(tokens), token_bytes))
        assert "\ufffd" not in streamed(out)


@pytest.mark.parametrize("stop_at", ["xy", "\n", "b"])
def test_engine_through_textstream_stops_and_keeps_the_cache_consistent(stop_at: str) -> None:
    """End to end on the fake target: a speculative run cut by a stop string shows exactly
    the plain run's text up to the stop, and the target cache holds nothing unseen."""
    prompt = [1, 2, 3]
    target = FakeBackend()
    plain_tokens = greedy_reference(target, prompt, 60)
    plain_text = b"".join(PIECES[t] for t in plain_tokens).decode("utf-8", errors="replace")
    cut = plain_text.find(stop_at)
    assert cut >= 0, "choose a stop string the plain run produces"
    drafter = ScriptedDrafter(oracle_script(target))
    events = generate(
        target, drafter, prompt, GenerationConfig(60, draft_max=8), np.random.default_rng(0)
    )
    received: list[int] = []

    def note(event: Event) -> None:
        if isinstance(event, TokenEvent):
            received.append(event.token)

    result = consume(stream_text(events, target.token_bytes, [stop_at]), note)
    assert result.text == plain_text[:cut]
    assert result.finish_reason == "stop"
    assert received[: len(result.tokens)] == result.tokens
    cached = list(target.cached)
    seen = [*prompt, *received]
    assert cached == seen[: len(cached)]
