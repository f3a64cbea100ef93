"""A multi-turn conversation: its messages, the tokens the model has seen, KV-cache reuse.

The model's chat template turns messages into text. Re-tokenizing the whole rendered
history every turn would not give back the tokens the model generated (tokenization is
not unique), so the cache could only be reused up to the first difference. Instead the
conversation keeps its own token history (previous prompt + generated tokens + the
template's end-of-turn tokens) and a new turn appends only the tokens of the newly
rendered text. `sync_cache` then finds the whole history in the KV caches of the target
and the draft model, and a turn prefills only the new message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spec_cli.backend.base import common_prefix
from spec_cli.errors import PromptError, SpecError
from spec_cli.outfiles import check_output, write_file

if TYPE_CHECKING:
    from spec_cli.session import Session

FORMAT = "spec-chat"
VERSION = 1
ROLES = ("user", "assistant")

Message = dict[str, str]


class ConversationFileError(SpecError):
    """A conversation file cannot be read or written."""


class ContextFullError(PromptError):
    """The new message does not fit in the context even without any earlier turn."""


@dataclass(frozen=True)
class Turn:
    """A prepared exchange: the prompt that asks for the answer to `user`.

    `dropped` counts the oldest exchanges newly left out of the prompt to make room (they
    stay in the transcript); `reused` is how many prompt tokens the target's KV cache
    already holds.
    """

    user: str
    prompt: list[int]
    text: str  # the rendered conversation that `prompt` encodes, generation prompt included
    first: int = 0  # index of the first earlier message the prompt holds
    dropped: int = 0
    reused: int = 0


class Conversation:
    """Messages (user/assistant, alternating) plus an optional system prompt.

    `messages` is the whole transcript, which /save writes; when the context fills up,
    the model sees only the messages from `_start` on.
    """

    def __init__(self, session: Session, system: str | None = None) -> None:
        self.session = session
        self.system = system or None
        self.messages: list[Message] = []
        self._start = 0  # the first message still in the model's prompt
        # The rendered history (no generation prompt) and the exact tokens the model saw
        # for it; empty when unknown (new, reset, loaded or shortened conversations).
        self._text = ""
        self._tokens: list[int] = []

    @property
    def n_ctx(self) -> int:
        return self.session.target.n_ctx

    @property
    def exchanges(self) -> int:
        return sum(1 for m in self.messages if m["role"] == "user")

    @property
    def history_tokens(self) -> int:
        """Tokens of the conversation so far as the model saw them (0 when unknown)."""
        return len(self._tokens)

    def reset(self) -> None:
        """Forget every exchange (the system prompt stays)."""
        self.messages.clear()
        self._start = 0
        self._forget_tokens()

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        self._forget_tokens()

    def _forget_tokens(self) -> None:
        self._text = ""
        self._tokens = []

    def _with_system(self, messages: Sequence[Message]) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *messages]

    def reserve(self, max_tokens: int) -> int:
        """Room kept free for an answer: --max-tokens, capped at a quarter of the context
        so that long limits do not drop the whole history."""
        return max(1, min(max_tokens, self.n_ctx // 4))

    # -- turns ------------------------------------------------------------------------

    def prepare(self, user: str, max_tokens: int) -> Turn:
        """The prompt that asks for an answer to `user`.

        When the conversation does not leave room for the answer, the oldest exchanges
        are left out (the turn says how many). Nothing changes until `commit`.
        """
        reserve = self.reserve(max_tokens)
        first = self._start
        dropped = 0
        while True:
            messages = [*self.messages[first:], {"role": "user", "content": user}]
            text = self.session.chat_text(self._with_system(messages))
            fresh = first == self._start  # the history the model saw, plus the message
            prompt = self._encode(text) if fresh else self.session.chat_tokens(text)
            if len(prompt) + reserve <= self.n_ctx:
                break
            if first >= len(self.messages):
                if len(prompt) < self.n_ctx:
                    break  # room for a shorter answer than asked; the engine stops at the end
                raise ContextFullError(self._too_long(user, len(prompt)))
            first = self._next_exchange(first)
            dropped += 1
        cached = self.session.target.cached
        reused = common_prefix(cached, prompt[:-1])
        if reused < len(cached) and not self.session.target.can_roll_back:
            reused = 0  # a recurrent cache cannot go back to the shared part: all is re-read
        return Turn(user, prompt, text, first, dropped, reused)

    def _too_long(self, user: str, tokens: int) -> str:
        """Why a message alone does not fit: itself, or the system prompt before it."""
        if self.system:
            alone = self.session.chat_tokens(
                self.session.chat_text([{"role": "user", "content": user}])
            )
            if len(alone) < self.n_ctx:
                return (
                    f"the system prompt leaves no room: with it the message is {tokens} "
                    f"tokens but the context holds {self.n_ctx}: shorten the system prompt "
                    "(/system) or raise --ctx-size"
                )
        return (
            f"the message is {tokens} tokens with the template but the context "
            f"holds {self.n_ctx}: shorten it or raise --ctx-size"
        )

    def _next_exchange(self, first: int) -> int:
        """Index of the user message that starts the exchange after the one at `first`."""
        i = first + 1
        while i < len(self.messages) and self.messages[i]["role"] != "user":
            i += 1
        return i

    def _encode(self, text: str) -> list[int]:
        """Tokens of `text`: the known history's own tokens plus the new part's."""
        if self._tokens and text.startswith(self._text):
            suffix = text[len(self._text) :]
            return [*self._tokens, *self._tokenize(suffix)]
        return self.session.chat_tokens(text)

    def _tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self.session.target.tokenize(text, add_bos=False, special=True)

    def commit(self, turn: Turn, answer: str, generated: Sequence[int]) -> None:
        """Record the exchange; the token history ends with the template's end of turn."""
        self._start = turn.first
        self.messages.append({"role": "user", "content": turn.user})
        self.messages.append({"role": "assistant", "content": answer})
        after = self.session.chat_text(
            self._with_system(self.messages[self._start :]), add_generation_prompt=False
        )
        head = turn.text + answer
        if after.startswith(head):
            closing = self._tokenize(after[len(head) :])
            self._tokens = [*turn.prompt, *generated, *closing]
        else:
            # The template rewrites earlier turns (trims them, hides reasoning): use its
            # own tokens; the cache is then reused only up to the first difference.
            self._tokens = self.session.chat_tokens(after)
        self._text = after

    # -- files ------------------------------------------------------------------------

    def to_dict(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON document `/save` writes; `extra` adds informational fields."""
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        doc.update(extra or {})
        doc["system"] = self.system
        doc["messages"] = [dict(m) for m in self.messages]
        return doc

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the conversation to `path`: a new file, or one an earlier /save wrote."""
        target = check_output(str(path), force=True)
        if target.exists() and not _is_saved_conversation(target):
            raise ConversationFileError(
                f"{path} exists and is not a saved conversation: choose another name"
            )
        data = json.dumps(self.to_dict(extra), ensure_ascii=False, indent=2) + "\n"
        write_file(target, data.encode("utf-8"))
        return target

    def load(self, path: str | Path) -> Path:
        """Replace the conversation with the one saved in `path`."""
        source = Path(path).expanduser()
        try:
            raw = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConversationFileError(f"no such file: {source}") from None
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise ConversationFileError(f"cannot read {source}: {why}") from None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConversationFileError(
                f"{source} is not JSON (line {e.lineno}): give a file written by /save"
            ) from None
        system, messages = parse_document(doc, str(source))
        self.system = system
        self.messages = messages
        self._start = 0
        self._forget_tokens()
        return source


def saved_settings(path: str | Path) -> object:
    """The "settings" object a /save stored in `path`, or None (unreadable files are
    reported when the conversation itself is loaded)."""
    try:
        doc = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc.get("settings") if isinstance(doc, dict) else None


def _is_saved_conversation(path: Path) -> bool:
    """Whether /save wrote `path` (its opening says so: a mistyped name may be a model)."""
    try:
        with path.open("rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and f'"format": "{FORMAT}"'.encode() in head


def parse_document(doc: Any, where: str) -> tuple[str | None, list[Message]]:
    """System prompt and messages of a saved conversation.

    Accepts what `/save` writes, and also a bare list of messages or {"messages": [...]}
    with a leading system message, as other chat tools export them.
    """
    if isinstance(doc, dict):
        system = doc.get("system")
        items = doc.get("messages")
    else:
        system, items = None, doc
    if not isinstance(items, list):
        raise ConversationFileError(f"{where} has no list of messages: give a file from /save")
    if system is not None and not isinstance(system, str):
        raise ConversationFileError(f"{where}: the system prompt must be text")
    messages: list[Message] = []
    for i, item in enumerate(items):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("role"), str)
            and isinstance(item.get("content"), str)
        ):
            raise ConversationFileError(
                f"{where}: message {i + 1} needs a text 'role' and 'content'"
            )
        role, content = item["role"], item["content"]
        if role == "system" and i == 0 and system is None:
            system = content
            continue
        if role not in ROLES:
            raise ConversationFileError(
                f"{where}: message {i + 1} has role {role!r}; use user or assistant"
            )
        messages.append({"role": role, "content": content})
    return system or None, messages
