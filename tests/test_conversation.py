"""Conversation state: incremental turn tokens (KV reuse), context-full policy, files.

Most tests use a fake backend with a small text vocabulary and a hand-written template,
so every token and every rendered character can be checked exactly; the real-model tests
check that SmolLM2's caches (target and draft model) are reused across turns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeBackend

from spec_cli.conversation import (
    ContextFullError,
    Conversation,
    ConversationFileError,
)
from spec_cli.drafters.base import NoDrafter
from spec_cli.engine import GenerationConfig
from spec_cli.result import consume
from spec_cli.session import Session
from spec_cli.stats import GenerationStats

PIECES = (b"", b"a", b"b", b"ab", b" ", b"\n", b"U:", b"A:", b"S:", b"<end>", b"c")
END = PIECES.index(b"<end>")
NEWLINE = PIECES.index(b"\n")
TEMPLATE = (
    "{% for m in messages %}"
    "{{ {'user': 'U:', 'assistant': 'A:', 'system': 'S:'}[m['role']] }}"
    "{{ m['content'] }}<end>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)
# Like Llama 3's templates: the content is trimmed, so rendered history can differ from
# what the model generated.
TRIMMING = TEMPLATE.replace("{{ m['content'] }}", "{{ m['content'] | trim }}")


def alternate(context: Sequence[int]) -> np.ndarray:
    """Greedy output "abab...", one letter per token (never EOS, never the `ab` token)."""
    row = np.zeros(len(PIECES), dtype=np.float32)
    row[2 if context[-1] == 1 else 1] = 5.0
    return row


class ChatBackend(FakeBackend):
    """A fake backend with a chat template (no BOS token, like some real vocabularies)."""

    def __init__(self, template: str = TEMPLATE, n_ctx: int = 256) -> None:
        super().__init__(alternate, n_ctx=n_ctx, pieces=PIECES)
        self.template = template

    def chat_template(self) -> str | None:
        return self.template

    def special_tokens(self) -> dict[str, int]:
        return {"bos": -1, "eos": 0}

    def token_text(self, token: int) -> str:
        return self.pieces[token].decode()

    @property
    def add_bos(self) -> bool:
        return False

    def text(self, tokens: Sequence[int]) -> str:
        return b"".join(self.pieces[t] for t in tokens).decode()


def make(template: str = TEMPLATE, n_ctx: int = 256, system: str | None = None) -> Conversation:
    return Conversation(Session(ChatBackend(template, n_ctx)), system)  # type: ignore[arg-type]


def answer(conv: Conversation, user: str, max_tokens: int = 4) -> tuple[list[int], list[int]]:
    """Run one real turn through the engine; return (prompt, generated tokens)."""
    turn = conv.prepare(user, max_tokens)
    result = consume(
        conv.session.stream(
            turn.prompt,
            NoDrafter(),
            GenerationConfig(max_tokens=max_tokens),
            np.random.default_rng(0),
            GenerationStats(),
        )
    )
    conv.commit(turn, result.text, result.tokens)
    return turn.prompt, result.tokens


def test_second_turn_prefills_only_the_new_tokens() -> None:
    """Turn 2's prompt starts with turn 1's prompt + answer + end of turn, exactly the
    tokens in the cache, so its prefill evaluates only those not yet cached."""
    conv = make()
    backend = conv.session.target
    assert isinstance(backend, ChatBackend)
    prompt1, gen1 = answer(conv, "ab")
    assert len(gen1) == 4  # cut at max_tokens: the last answer token is not cached yet
    history = [*prompt1, *gen1, END, NEWLINE]
    assert conv.history_tokens == len(history)

    turn2 = conv.prepare("c", 4)
    assert turn2.prompt[: len(history)] == history
    assert backend.text(turn2.prompt) == conv.session.chat_text(
        [*conv.messages, {"role": "user", "content": "c"}]
    )
    assert turn2.reused == len(prompt1) + len(gen1) - 1

    batches_before = len(backend.batches)
    answer_result = consume(
        conv.session.stream(
            turn2.prompt,
            NoDrafter(),
            GenerationConfig(max_tokens=1),
            np.random.default_rng(0),
            GenerationStats(),
        )
    )
    assert answer_result.tokens
    prefill = backend.batches[batches_before]
    # The last answer token, the end of turn and the new message (its last token is
    # evaluated by the first decoding step).
    assert prefill == [gen1[-1], END, NEWLINE, *turn2.prompt[len(history) : -1]]


def test_history_keeps_the_models_own_tokens() -> None:
    """Re-tokenizing "ab" would give the single token `ab`; the model said `a`, `b`, and
    the cache holds those, so the next prompt must too."""
    conv = make()
    turn = conv.prepare("c", 4)
    a, b, ab = PIECES.index(b"a"), PIECES.index(b"b"), PIECES.index(b"ab")
    conv.commit(turn, "ab", [a, b])
    nxt = conv.prepare("c", 4)
    assert nxt.prompt[len(turn.prompt) : len(turn.prompt) + 3] == [a, b, END]
    assert ab not in nxt.prompt[len(turn.prompt) :]


def test_template_that_rewrites_content_falls_back_to_its_own_tokens() -> None:
    """A trimming template renders " ab " as "ab": the history follows the template."""
    conv = make(TRIMMING)
    backend = conv.session.target
    assert isinstance(backend, ChatBackend)
    turn = conv.prepare("c", 4)
    a, b, space = PIECES.index(b"a"), PIECES.index(b"b"), PIECES.index(b" ")
    conv.commit(turn, " ab ", [space, a, b, space])
    nxt = conv.prepare("c", 4)
    expected = conv.session.chat_text([*conv.messages, {"role": "user", "content": "c"}])
    assert backend.text(nxt.prompt) == expected
    assert "A:ab<end>" in expected


def test_system_prompt_is_rendered_first_and_survives_reset() -> None:
    conv = make(system="c")
    backend = conv.session.target
    assert isinstance(backend, ChatBackend)
    answer(conv, "a")
    conv.reset()
    assert conv.messages == [] and conv.history_tokens == 0
    turn = conv.prepare("b", 4)
    assert backend.text(turn.prompt) == "S:c<end>\nU:b<end>\nA:"
    conv.set_system(None)
    assert backend.text(conv.prepare("b", 4).prompt) == "U:b<end>\nA:"


USER_ASSISTANT = (("user", "a b"), ("assistant", "ab ab"))


def test_full_context_drops_the_oldest_exchanges_and_says_how_many() -> None:
    conv = make(n_ctx=40, system="c")
    conv.messages = [
        {"role": role, "content": text} for _ in range(4) for role, text in USER_ASSISTANT
    ]
    # System 4 tokens, each exchange 12, the new message 7 and 4 kept for the answer:
    # 4 + 12k + 7 + 4 <= 40 leaves room for two of the four exchanges.
    turn = conv.prepare("b a", 4)
    assert turn.dropped == 2
    assert len(turn.prompt) + conv.reserve(4) <= conv.n_ctx
    assert conv.exchanges == 4  # nothing changes until the exchange is committed
    conv.commit(turn, "c", [10])
    backend = conv.session.target
    assert isinstance(backend, ChatBackend)
    assert backend.text(turn.prompt).startswith("S:c<end>\nU:a b<end>\n")
    # The model no longer sees the two oldest exchanges, but the transcript keeps them.
    assert conv.exchanges == 5
    assert conv.messages[-2:] == [
        {"role": "user", "content": "b a"},
        {"role": "assistant", "content": "c"},
    ]
    nxt = conv.prepare("a", 4)
    assert nxt.first >= 4 and backend.text(nxt.prompt).startswith("S:c<end>\nU:a b<end>\n")


def test_saving_after_the_context_filled_keeps_every_exchange(tmp_path: Path) -> None:
    """Exchanges left out of the prompt are the user's: /save writes them all, so saving
    over the file a long conversation was loaded from loses nothing."""
    conv = make(n_ctx=40)
    for i in range(6):
        answer(conv, "ab" if i % 2 else "ba")
    assert conv.exchanges == 6
    path = conv.save(tmp_path / "chat.json")
    again = make(n_ctx=40)
    again.load(path)
    assert again.messages == conv.messages and len(again.messages) == 12


def test_message_longer_than_the_context_is_refused_with_advice() -> None:
    conv = make(n_ctx=16)
    with pytest.raises(ContextFullError, match="--ctx-size"):
        conv.prepare("ab " * 20, 4)


def test_a_system_prompt_that_fills_the_context_is_named_as_the_cause() -> None:
    conv = make(n_ctx=24, system="ab " * 10)
    with pytest.raises(ContextFullError, match="the system prompt leaves no room"):
        conv.prepare("a", 4)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    conv = make(system="c")
    answer(conv, "ab")
    path = conv.save(tmp_path / "chat.json", {"model": "fake.gguf"})
    doc = json.loads(path.read_text())
    assert doc["format"] == "spec-chat" and doc["model"] == "fake.gguf"
    assert doc["system"] == "c"
    assert [m["role"] for m in doc["messages"]] == ["user", "assistant"]

    other = make()
    other.load(path)
    assert other.system == "c" and other.messages == conv.messages
    assert other.history_tokens == 0  # re-tokenized on the next turn, never trusted
    backend = other.session.target
    assert isinstance(backend, ChatBackend)
    assert backend.text(other.prepare("a", 4).prompt) == backend.text(conv.prepare("a", 4).prompt)


def test_save_replaces_an_earlier_save_but_no_other_file(tmp_path: Path) -> None:
    conv = make()
    answer(conv, "ab")
    path = conv.save(tmp_path / "chat.json")
    answer(conv, "a")
    conv.save(path)  # saving again as the talk goes on
    assert len(json.loads(path.read_text())["messages"]) == 4
    notes = tmp_path / "notes.md"
    notes.write_text("my notes")
    with pytest.raises(ConversationFileError, match="exists and is not a saved conversation"):
        conv.save(notes)
    assert notes.read_text() == "my notes"


def test_load_accepts_a_plain_message_list_with_a_system_message(tmp_path: Path) -> None:
    path = tmp_path / "openai.json"
    path.write_text(
        json.dumps(
            [
                {"role": "system", "content": "c"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
            ]
        )
    )
    conv = make()
    conv.load(path)
    assert conv.system == "c" and conv.exchanges == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"messages": 3}', "no list of messages"),
        ('[{"role": "tool", "content": "x"}]', "role 'tool'"),
        ('[{"role": "user"}]', "needs a text 'role' and 'content'"),
    ],
)
def test_load_refuses_bad_files_with_one_clear_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    conv = make()
    answer(conv, "a")
    with pytest.raises(ConversationFileError, match=message):
        conv.load(path)
    assert conv.exchanges == 1  # a failed load leaves the conversation as it was


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConversationFileError, match="no such file"):
        make().load(tmp_path / "nope.json")


# -- the real model ---------------------------------------------------------------------


class EvalCounter:
    """Wraps a backend's eval to record how many tokens each call evaluated."""

    def __init__(self, backend: object) -> None:
        self.sizes: list[int] = []
        inner = backend.eval  # type: ignore[attr-defined]

        def counting(tokens: Sequence[int], n_logits: int = 1) -> object:
            self.sizes.append(len(tokens))
            return inner(tokens, n_logits)

        backend.eval = counting  # type: ignore[attr-defined]


@pytest.mark.real
def test_smollm2_second_turn_prefills_only_the_new_message(default_model: str) -> None:
    from spec_cli.session import ModelOptions, open_session

    with open_session(ModelOptions(default_model, ctx_size=1024)) as session:
        conv = Conversation(session, "You are brief.")
        counter = EvalCounter(session.target)
        turn1 = conv.prepare("Name a colour.", 12)
        stats1 = GenerationStats()
        r1 = consume(
            session.stream(
                turn1.prompt, NoDrafter(), GenerationConfig(12), np.random.default_rng(0), stats1
            )
        )
        conv.commit(turn1, r1.text, r1.tokens)
        assert counter.sizes[0] == len(turn1.prompt) - 1  # nothing cached before turn 1

        turn2 = conv.prepare("And another one?", 12)
        assert turn2.prompt[: len(turn1.prompt) + len(r1.tokens)] == [*turn1.prompt, *r1.tokens]
        counter.sizes.clear()
        consume(
            session.stream(
                turn2.prompt,
                NoDrafter(),
                GenerationConfig(1),
                np.random.default_rng(0),
                GenerationStats(),
            )
        )
        new = len(turn2.prompt) - len(turn1.prompt) - len(r1.tokens)
        # Prefill: the new part minus its last token (evaluated by the first step), plus
        # the last answer token when the answer was cut before it could be cached.
        uncached_answer = 1 if r1.finish_reason == "length" else 0
        assert counter.sizes[0] == new - 1 + uncached_answer
        assert counter.sizes[0] < 30 < len(turn2.prompt)


@pytest.mark.real
def test_smollm2_draft_model_cache_is_reused_across_turns(default_model: str) -> None:
    """The draft model (here the model itself) syncs to the conversation: its first draft
    of turn 2 evaluates the new tokens, not the whole history again."""
    from spec_cli.drafters.model import ModelDrafter
    from spec_cli.session import ModelOptions, open_session

    opts = ModelOptions(default_model, draft=default_model, ctx_size=1024)
    with open_session(opts) as session:
        assert session.draft is not None
        conv = Conversation(session)
        counter = EvalCounter(session.draft)
        drafter = ModelDrafter(session.draft)
        config = GenerationConfig(10, draft_max=4)

        def one_turn(message: str) -> tuple[list[int], int]:
            counter.sizes.clear()
            turn = conv.prepare(message, 10)
            result = consume(
                session.stream(
                    turn.prompt, drafter, config, np.random.default_rng(0), GenerationStats()
                )
            )
            conv.commit(turn, result.text, result.tokens)
            return turn.prompt, counter.sizes[0]

        prompt1, first_sync1 = one_turn("Say hello.")
        assert first_sync1 == len(prompt1)  # an empty draft cache: the whole prompt
        history = conv.history_tokens
        prompt2, first_sync2 = one_turn("Say goodbye.")
        # The draft cache lags the conversation by at most the last step's tokens and the
        # end of turn (2 tokens for SmolLM2's template).
        assert first_sync2 <= len(prompt2) - history + config.draft_max + 3
        assert first_sync2 < len(prompt2) // 2


def test_saved_settings_of_the_wrong_kind_are_skipped_and_a_seed_of_minus_one_is_random() -> None:
    from spec_cli.chat_repl import ChatSettings

    cli = ChatSettings(max_tokens=64)
    saved = {"seed": -1, "temperature": "hot", "top_k": True, "drafter": "nonsense", "min_p": 0.1}
    merged = cli.with_saved(saved, keep={"max_tokens"})
    assert merged == ChatSettings(max_tokens=64, min_p=0.1, seed=None)
    assert cli.with_saved({"seed": -5, "max_tokens": 9}, keep={"max_tokens"}).seed is None
    assert cli.with_saved({"seed": 11}, keep=set()).seed == 11
    assert cli.with_saved(["not", "a", "dict"], keep=set()) == cli


def test_stats_count_only_the_prompt_read_before_ctrl_c(
    default_model: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during a long prompt's prefill: /stats counts the tokens the model read by
    then (one 64-token batch here), not the whole message, and the time it took."""
    from spec_cli.backend.llama_cpp import LlamaCppBackend
    from spec_cli.chat_repl import ChatRepl, ChatSettings
    from spec_cli.render.chat import ChatTerminal
    from spec_cli.session import ModelOptions, open_session

    with open_session(ModelOptions(default_model, ctx_size=2048, threads=1)) as session:
        real_eval = LlamaCppBackend.eval

        def eval_then_interrupt(self: LlamaCppBackend, tokens: Any, n_logits: int = 1) -> Any:
            real_eval(self, tokens[:64], 0)  # the first batch is read, then Ctrl-C
            raise KeyboardInterrupt

        settings = ChatSettings(drafter="none")  # no machine measurement before answering
        repl = ChatRepl(session, Conversation(session), settings, ChatTerminal("never"))
        monkeypatch.setattr(LlamaCppBackend, "eval", eval_then_interrupt)
        repl.answer("word " * 500)
        monkeypatch.undo()
        assert repl.prefilled == 64 and repl.answers == 0
        assert repl.total.prefill_seconds > 0
    assert "interrupted before the answer began" in capsys.readouterr().err
