"""The bench runner on the tiny GGUF: interleaving, shared history, baselines, interrupts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spec_cli.bench.metrics import result_rows
from spec_cli.bench.runner import BenchRunner, BenchSettings, Measurement, rotated
from spec_cli.bench.suites import BenchPrompt
from spec_cli.drafters.base import Drafter
from spec_cli.engine import GenerationConfig
from spec_cli.events import Event
from spec_cli.session import ModelOptions, Session, open_session
from spec_cli.stats import GenerationStats

PROMPTS = (
    BenchPrompt("copy", "code", ("def add(a, b):\n    return a + b\n\ndef add(a, b):\n",)),
    BenchPrompt("chat", "multi-turn", ("Hello there, how are you?", "And tomorrow?")),
    BenchPrompt("plain", "qa", ("The quick brown fox jumps over the lazy dog.",)),
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def session(tiny_model: str, tiny_draft: str) -> Iterator[Session]:
    # One per test: the runner closes its drafters at the end, and closing a model drafter
    # closes the draft model with it.
    with open_session(ModelOptions(tiny_model, tiny_draft, ctx_size=512, threads=1)) as s:
        yield s


class Recording:
    """Wraps a Session: records raw prompts and can interrupt the n-th generation."""

    def __init__(self, session: Session, interrupt_generation: int | None = None) -> None:
        self.session = session
        self.raw_texts: list[str] = []
        self.generations = 0
        self.interrupt_generation = interrupt_generation
        self.closed: list[str] = []
        self.learning: list[bool | None] = []

    def make_drafter(
        self, name: str, ngram_cache: str | None = None, learn: bool | None = None
    ) -> Drafter:
        drafter = self.session.make_drafter(name, ngram_cache, learn)
        self.learning.append(learn)
        recording = self

        class Closing:
            def __getattr__(self, attr: str) -> Any:
                return getattr(drafter, attr)

            def close(self) -> None:
                recording.closed.append(name)

        return Closing()  # type: ignore[return-value]

    def has_chat_template(self) -> bool:
        return self.session.has_chat_template()

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return self.session.chat_prompt(messages)

    def raw_prompt(self, text: str) -> list[int]:
        self.raw_texts.append(text)
        return self.session.raw_prompt(text)

    def stream(
        self,
        prompt: Sequence[int],
        drafter: Drafter,
        config: GenerationConfig,
        rng: np.random.Generator,
        stats: GenerationStats,
        stops: Sequence[str] = (),
    ) -> Iterator[Event]:
        self.generations += 1
        events = self.session.stream(prompt, drafter, config, rng, stats, stops)
        if self.generations != self.interrupt_generation:
            return events
        return self._interrupt_after(events, 3)

    @staticmethod
    def _interrupt_after(events: Iterator[Event], n: int) -> Iterator[Event]:
        for i, event in enumerate(events):
            if i == n:
                raise KeyboardInterrupt  # what Ctrl-C does in the middle of a generation
            yield event


def settings(methods: tuple[str, ...], **kw: Any) -> BenchSettings:
    return BenchSettings(methods, max_tokens=16, warmup_tokens=2, seed=3, **kw)


def test_rotation_gives_each_method_every_position() -> None:
    methods = ["none", "prompt-lookup", "auto"]
    orders = [rotated(methods, g) for g in range(6)]
    assert all(sorted(o) == sorted(methods) for o in orders)
    for slot in range(3):
        assert Counter(o[slot] for o in orders) == Counter({m: 2 for m in methods})


def test_runs_interleave_every_method_per_input_in_rotated_order(session: Session) -> None:
    """For each (prompt, repeat, turn) all methods run back to back, the first one rotating,
    so no method is always first (cold caches) or last (a warm CPU)."""
    methods = ("none", "prompt-lookup", "model")
    starts: list[tuple[str, int, int, str]] = []
    runner = BenchRunner(
        session,
        PROMPTS,
        settings(methods, repeats=2),
        on_start=lambda p, turn, rep, m: starts.append((p.id, turn, rep, m)),
    )
    results = runner.run()
    assert not runner.interrupted
    assert len(results) == (1 + 2 + 1) * 2 * 3
    assert [(m.prompt_id, m.turn, m.repeat, m.method) for m in results] == starts
    groups = [starts[i : i + 3] for i in range(0, len(starts), 3)]
    for group in groups:
        assert len({(p, t, r) for p, t, r, _ in group}) == 1  # one input per group
        assert sorted(m for *_, m in group) == sorted(methods)
    firsts = Counter(group[0][3] for group in groups)
    assert set(firsts) == set(methods) and max(firsts.values()) - min(firsts.values()) <= 1
    # Prompt by prompt: all repeats of one prompt finish before the next one starts.
    ids = [p for p, *_ in starts]
    assert ids == sorted(ids, key=[q.id for q in PROMPTS].index)
    assert [m.slot for m in results] == [i % 3 for i in range(len(results))]


def test_greedy_speculation_reproduces_plain_decoding(session: Session) -> None:
    """Greedy verification is lossless: prompt lookup and a draft model give the same
    tokens as `none`, and `none` is its own baseline (speedup exactly 1)."""
    runner = BenchRunner(session, PROMPTS, settings(("none", "prompt-lookup", "model")))
    rows = result_rows(runner.run(), greedy=True)
    assert all(r["generated_tokens"] == 16 for r in rows)  # tiny models never pick EOS
    assert all(r["matches_baseline"] is True for r in rows)
    assert [r["speedup"] for r in rows if r["method"] == "none"] == [1.0] * 4
    assert all(r["speedup"] > 0 for r in rows)
    drafted = [r for r in rows if r["method"] == "model"]
    assert all(r["drafted_tokens"] > 0 and r["per_position_acceptance"] for r in drafted)
    copy = next(r for r in rows if r["method"] == "prompt-lookup" and r["prompt_id"] == "copy")
    assert copy["drafted_tokens"] > 0


def test_auto_runs_as_a_method(session: Session) -> None:
    runner = BenchRunner(session, PROMPTS[:1], settings(("none", "auto")))
    rows = result_rows(runner.run(), greedy=True)
    assert [r["method"] for r in rows] == ["none", "auto"]
    assert all(r["matches_baseline"] for r in rows)


def test_bench_drafters_use_nothing_learned_in_earlier_runs(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Earlier bench runs' answers to these very prompts would inflate `ngram` and `auto`:
    even where learning is on, the bench's drafters neither read nor add to it."""
    monkeypatch.delenv("SPEC_NO_LEARN", raising=False)
    rec = Recording(session)
    BenchRunner(rec, PROMPTS[:1], settings(("none", "ngram", "auto"))).run()
    assert rec.learning == [False, False, False]


def test_later_turns_carry_the_baseline_answer_for_every_method(session: Session) -> None:
    rec = Recording(session)
    runner = BenchRunner(rec, PROMPTS[1:2], settings(("none", "prompt-lookup")))
    results = runner.run()
    none_first = next(m for m in results if m.method == "none" and m.turn == 0)
    turn2 = f"Hello there, how are you?\n\n{none_first.text}\n\nAnd tomorrow?"
    # Tokenized once per input, shared by all methods (warm-up, turn 1, turn 2).
    assert rec.raw_texts[-1] == turn2
    assert {m.stats.prompt_tokens for m in results if m.turn == 1} == {
        len(session.raw_prompt(turn2))
    }


def test_interrupt_between_generations_keeps_finished_results(session: Session) -> None:
    seen: list[Measurement] = []

    def on_result(m: Measurement) -> None:
        seen.append(m)
        if len(seen) == 4:
            raise KeyboardInterrupt

    rec = Recording(session)
    runner = BenchRunner(rec, PROMPTS, settings(("none", "prompt-lookup")), on_result=on_result)
    results = runner.run()
    assert runner.interrupted
    assert results == seen and len(results) == 4
    assert sorted(rec.closed) == ["none", "prompt-lookup"]  # drafters closed on the way out


def test_interrupt_inside_a_generation_drops_only_that_one(session: Session) -> None:
    # Generation 1 and 2 are warm-ups, 3 and 4 measured, 5 is cut off after three events.
    rec = Recording(session, interrupt_generation=5)
    runner = BenchRunner(rec, PROMPTS, settings(("none", "prompt-lookup")))
    results = runner.run()
    assert runner.interrupted
    assert len(results) == 2
    assert all(m.finish_reason == "length" and len(m.tokens) == 16 for m in results)


def test_sampling_runs_share_a_seed_per_input_and_skip_the_agreement_check(
    session: Session,
) -> None:
    from spec_cli.sampling import SamplingParams

    runs = [
        BenchRunner(session, PROMPTS[2:], settings(("none",), sampling=SamplingParams(1.0))).run()[
            0
        ]
        for _ in range(2)
    ]
    assert runs[0].tokens == runs[1].tokens  # same --seed, same input: same sample
    assert result_rows(runs[:1], greedy=False)[0]["matches_baseline"] is None


def test_fit_check_counts_every_user_turn_before_any_work(session: Session) -> None:
    """A conversation whose user turns alone overflow the context is refused up front, even
    when its first turn fits; the advice names a context that holds the answers too."""
    from spec_cli.errors import PromptError

    rec = Recording(session)
    turn = "x" * 199  # 199 bytes: 199 tokens of the byte-level vocabulary
    long = BenchPrompt("long", "qa", (turn, turn, turn))
    runner = BenchRunner(rec, (PROMPTS[2], long), settings(("none",)))
    # BOS + three turns + two empty answers, each message joined by a blank line.
    with pytest.raises(PromptError) as e:
        runner.check_fit(512, "mine.jsonl")
    assert str(e.value) == (
        "prompt 'long' is 606 tokens over its 3 turns, before any answer, but the context "
        "holds 512: raise --ctx-size to 654 or remove such prompts from mine.jsonl"
    )
    assert rec.generations == 0
    with pytest.raises(PromptError, match=r"raise --ctx-size to 654$"):
        runner.check_fit(512)  # a built-in suite: no file to remove it from
    BenchRunner(rec, (PROMPTS[2], long), settings(("none",))).check_fit(607)  # fits: no error


def test_the_size_asked_for_also_holds_prompts_whose_turns_fit(session: Session) -> None:
    """A prompt that fits until its answers are added still counts toward the size named,
    so raising --ctx-size as told is enough for every prompt."""
    from spec_cli.errors import PromptError

    one = BenchPrompt("one", "qa", ("x" * 560,))  # 561 tokens: over 512 on its own
    many = BenchPrompt("many", "qa", ("x" * 150,) * 3)  # 459 tokens before its 3 answers
    fast = BenchSettings(("none",), max_tokens=64, warmup_tokens=2, seed=3)
    runner = BenchRunner(Recording(session), (one, many), fast)
    with pytest.raises(PromptError, match=r"prompt 'one' is 561 tokens .* to 651$"):
        runner.check_fit(512)
