"""The chat loop: messages go to the model, slash commands change the session.

Typer-free: `commands/chat.py` parses the options and hands over a loaded session.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from spec_cli.conversation import Conversation
from spec_cli.engine import DEFAULT_DRAFT_MAX, GenerationConfig
from spec_cli.errors import SpecError, UsageError
from spec_cli.render import counted
from spec_cli.render.chat import ChatTerminal, footer_line, session_report
from spec_cli.result import consume
from spec_cli.sampling import SamplingParams
from spec_cli.stats import GenerationStats

if TYPE_CHECKING:
    import numpy as np

    from spec_cli.drafters.base import Drafter
    from spec_cli.session import Session


@dataclass(frozen=True)
class ChatSettings:
    """What `/settings` shows and the setting commands change."""

    drafter: str = "auto"
    draft_max: int = DEFAULT_DRAFT_MAX
    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_k, self.top_p, self.min_p)

    def with_saved(self, saved: object, keep: Collection[str]) -> ChatSettings:
        """These settings with those a /save stored (`saved`, its "settings" object) in
        place of every one not named in `keep` (those given on the command line). Values
        of the wrong type are left out; out-of-range ones raise UsageError."""
        from spec_cli.session import DRAFTERS

        if not isinstance(saved, dict):
            return self
        changes: dict[str, Any] = {}
        for f in fields(self):
            if f.name in keep or f.name not in saved:
                continue
            value, now = saved[f.name], getattr(self, f.name)
            if f.name == "drafter":
                ok = value in DRAFTERS
            elif f.name == "seed":
                if value == -1:
                    value = None  # llama.cpp's "random seed"
                ok = value is None or (
                    isinstance(value, int) and not isinstance(value, bool) and value >= 0
                )
            elif isinstance(now, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if ok:
                changes[f.name] = float(value) if isinstance(now, float) else value
        merged = replace(self, **changes)
        merged.validate()
        return merged

    def validate(self) -> None:
        """Raise UsageError with a user-facing message on out-of-range values."""
        try:
            self.sampling.validate()
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.max_tokens < 1:
            raise UsageError("max-tokens must be >= 1")
        if not 0 <= self.draft_max <= 64:
            raise UsageError("draft-max must be in [0, 64]")


# name -> (argument, help). Setting commands are listed in SETTINGS too.
COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "show this help"),
    "stats": ("", "session totals and draft acceptance per drafter"),
    "settings": ("", "show the current settings"),
    "reset": ("", "forget the conversation (keeps the system prompt and settings)"),
    "system": ("[TEXT]", "show or set the system prompt ('/system -' removes it)"),
    "drafter": ("[NAME]", "show or switch the drafter: auto, none, prompt-lookup, ngram, model"),
    "temperature": ("[T]", "sampling temperature (0: greedy)"),
    "top-k": ("[K]", "keep the K likeliest tokens (0: off)"),
    "top-p": ("[P]", "nucleus mass (1: off)"),
    "min-p": ("[P]", "drop tokens below P x the top probability (0: off)"),
    "seed": ("[N|random]", "restart the random generator (repeatable sampling)"),
    "max-tokens": ("[N]", "longest answer in tokens"),
    "draft-max": ("[N]", "longest draft (0: plain decoding)"),
    "save": ("FILE", "save the conversation as JSON"),
    "load": ("FILE", "continue a conversation saved with /save"),
    "exit": ("", "leave the chat (also /quit, Ctrl-D)"),
}
ALIASES = {"quit": "exit", "q": "exit", "?": "help", "clear": "reset"}
# Setting commands: the ChatSettings field and how to read the value.
SETTINGS: dict[str, tuple[str, Callable[[str], float | int]]] = {
    "temperature": ("temperature", float),
    "top-k": ("top_k", int),
    "top-p": ("top_p", float),
    "min-p": ("min_p", float),
    "max-tokens": ("max_tokens", int),
    "draft-max": ("draft_max", int),
}
KEYS = (
    "Enter sends · a trailing \\ or Alt-Enter starts a new line · ↑/↓ browse history",
    "Ctrl-C stops an answer (keeping what was shown) or clears the line; "
    "on an empty line Ctrl-C or Ctrl-D quits",
    "start a message with // to send a leading /",
)


def closest_command(name: str) -> str | None:
    """The command a mistyped name most likely meant."""
    names = [*COMMANDS, *ALIASES]
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if not match:
        return None
    return ALIASES.get(match[0], match[0])


def help_text() -> str:
    width = max(len(f"/{n} {a}".rstrip()) for n, (a, _) in COMMANDS.items())
    lines = ["commands:"]
    for name, (arg, text) in COMMANDS.items():
        lines.append(f"  {f'/{name} {arg}'.rstrip():<{width}}  {text}")
    lines.append("keys:")
    lines.extend(f"  {k}" for k in KEYS)
    return "\n".join(lines)


class ChatRepl:
    """One interactive chat over a loaded session."""

    def __init__(
        self,
        session: Session,
        conversation: Conversation,
        settings: ChatSettings,
        terminal: ChatTerminal,
        ngram_cache: str | None = None,
        terminated: Callable[[], bool] = lambda: False,
    ) -> None:
        import numpy as np

        settings.validate()
        self.terminated = terminated  # SIGTERM: stop the answer, then quit
        self.session = session
        self.conv = conversation
        self.failed = 0  # messages and commands that ended in an error
        self.settings = settings
        self.term = terminal
        self.ngram_cache = ngram_cache
        self.rng: np.random.Generator = np.random.default_rng(settings.seed)
        self.total = GenerationStats()
        self.answers = 0
        self.prefilled = 0  # prompt tokens evaluated
        self.reused = 0  # prompt tokens found in the KV cache instead
        self._drafters: dict[str, Drafter] = {}
        self.drafter = self._drafter(settings.drafter)
        self._on_file = list(conversation.messages)  # what a file holds (--load, /save)
        self._discard_for: str | None = None  # a /load that was warned of unsaved messages

    def _drafter(self, name: str) -> Drafter:
        # Kept by name: a drafter keeps what it learned over turns and /drafter switches.
        if name not in self._drafters:
            self._drafters[name] = self.session.make_drafter(name, ngram_cache=self.ngram_cache)
        return self._drafters[name]

    def close(self) -> None:
        for drafter in self._drafters.values():
            drafter.close()
        self._drafters.clear()

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Read and act until the user quits."""
        while True:
            try:
                text = self.term.read_message()
                if text is None:
                    return
                if not text.strip():
                    continue
                if text.startswith("/") and not text.startswith("//"):
                    if not self.command(text):
                        return
                else:
                    # Surrounding blank lines are noise; leading indentation may be code.
                    message = text[1:] if text.startswith("//") else text
                    self._discard_for = None
                    self.answer(message.rstrip().lstrip("\n"))
            except SpecError as e:
                self.failed += 1
                self.term.error(str(e))
            except KeyboardInterrupt:
                if not self.terminated():
                    self.term.note("interrupted")
            if self.terminated():  # SIGTERM, at the prompt or while an answer ran
                return

    def answer(self, text: str) -> None:
        """Stream the model's answer to `text` and record the exchange."""
        s = self.settings
        turn = self.conv.prepare(text, s.max_tokens)
        if turn.dropped:
            self.term.warn(
                f"context full ({self.conv.n_ctx} tokens): left out the "
                f"{counted(turn.dropped, 'oldest exchange')} to make room; /reset starts afresh"
            )
        stats = GenerationStats()
        started = time.perf_counter()
        renderer = self.term.answer_renderer()
        events = self.session.stream(
            turn.prompt,
            self.drafter,
            GenerationConfig(s.max_tokens, s.sampling, s.draft_max, seed=s.seed),
            self.rng,
            stats,
        )
        try:
            with self.term.quiet_typing():
                result = consume(events, renderer.handle, stats)
        finally:
            renderer.close()
        stats.wall_seconds = time.perf_counter() - started
        self.term.end_answer(result.text)
        self.total.merge(stats)
        unanswered = result.finish_reason == "interrupted" and not result.tokens
        read = len(turn.prompt)
        if unanswered:
            # Ctrl-C may have come mid-prefill: count what the cache took in by then.
            read = min(read, len(self.session.target.cached))
        self.prefilled += max(0, read - turn.reused)
        self.reused += turn.reused
        if unanswered:
            self.term.note("interrupted before the answer began: the message was not kept")
            return
        self.conv.commit(turn, result.text, result.tokens)
        self.answers += 1
        self.term.footer(
            footer_line(
                stats,
                result.finish_reason,
                drafter=self.drafter.name,
                max_tokens=s.max_tokens,
                context_full=len(turn.prompt) + len(result.tokens) >= self.conv.n_ctx - 1,
            )
        )

    # -- slash commands -----------------------------------------------------------------

    def command(self, text: str) -> bool:
        """Run a slash command; False when the chat should end."""
        parts = text[1:].strip().split(None, 1)
        if not parts:
            raise UsageError("an empty command: /help lists the commands")
        name = parts[0].lower()
        arg = parts[1].strip() if len(parts) > 1 else ""
        name = ALIASES.get(name, name)
        if name not in COMMANDS:
            guess = closest_command(name)
            hint = f"did you mean /{guess}? " if guess else ""
            raise UsageError(
                f"unknown command /{parts[0]}: {hint}/help lists the commands "
                "(start a message with // to send a leading /)"
            )
        if name != "load":
            self._discard_for = None  # a warned /load must come right after its warning
        if name == "exit":
            return False
        if name in SETTINGS:
            self._set(name, arg)
        else:
            getattr(self, "_cmd_" + name)(arg)
        return True

    def _set(self, name: str, arg: str) -> None:
        field, parse = SETTINGS[name]
        if not arg:
            self.term.note(f"{name} is {getattr(self.settings, field)}")
            return
        try:
            value = parse(arg)
        except ValueError:
            kind = "a whole number" if parse is int else "a number"
            raise UsageError(f"/{name} needs {kind}, not {arg!r}") from None
        changes: dict[str, Any] = {field: value}
        updated = replace(self.settings, **changes)
        updated.validate()
        self.settings = updated
        self.term.note(f"{name} set to {value}")

    def _cmd_help(self, arg: str) -> None:
        self.term.block(help_text())

    def _cmd_stats(self, arg: str) -> None:
        self.term.block(
            session_report(
                self.total,
                answers=self.answers,
                prefilled=self.prefilled,
                reused=self.reused,
                history_tokens=self.conv.history_tokens,
                n_ctx=self.conv.n_ctx,
            )
        )

    def _cmd_settings(self, arg: str) -> None:
        s = self.settings
        seed = "random" if s.seed is None else str(s.seed)
        system = self.conv.system if self.conv.system else "(none)"
        self.term.block(
            "\n".join(
                [
                    f"drafter      {self._drafter_label()}",
                    f"draft-max    {s.draft_max}",
                    f"max-tokens   {s.max_tokens}",
                    f"temperature  {s.temperature}",
                    f"top-k        {s.top_k}",
                    f"top-p        {s.top_p}",
                    f"min-p        {s.min_p}",
                    f"seed         {seed}",
                    f"system       {system}",
                ]
            )
        )

    def _cmd_reset(self, arg: str) -> None:
        self.conv.reset()
        self.term.note("conversation cleared")

    def _cmd_system(self, arg: str) -> None:
        if not arg:
            current = self.conv.system
            self.term.note(f"system prompt: {current}" if current else "no system prompt")
            return
        self.conv.set_system(None if arg == "-" else arg)
        self.term.note("system prompt removed" if arg == "-" else "system prompt set")

    def _cmd_drafter(self, arg: str) -> None:
        if not arg:
            self.term.note(f"drafter: {self._drafter_label()}")
            return
        self.drafter = self._drafter(arg)
        self.settings = replace(self.settings, drafter=arg)
        self.term.note(f"drafter set to {self._drafter_label()}")

    def _drafter_label(self) -> str:
        name = self.settings.drafter
        return name if name == self.drafter.name else f"{name} ({self.drafter.name})"

    def _cmd_seed(self, arg: str) -> None:
        import numpy as np

        if not arg:
            seed = self.settings.seed
            self.term.note(f"seed is {'random' if seed is None else seed}")
            return
        if arg == "random":
            seed = None
        else:
            try:
                seed = int(arg)
            except ValueError:
                raise UsageError(f"/seed needs a whole number or 'random', not {arg!r}") from None
            if seed < 0:
                raise UsageError("/seed needs a number >= 0")
        self.settings = replace(self.settings, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.term.note(f"seed set to {arg}")

    def _cmd_save(self, arg: str) -> None:
        if not arg:
            raise UsageError("/save needs a file name, e.g. /save chat.json")
        extra = {
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": self.session.model_path,
            "draft_model": self.session.draft_path,
            "settings": asdict(self.settings),
        }
        path = self.conv.save(arg, extra)
        self._on_file = list(self.conv.messages)
        self.term.note(f"saved {self.conv.exchanges} exchange(s) to {path}")

    def _unsaved_exchanges(self) -> int:
        """Exchanges that no file holds: those after the last save or load, or all."""
        messages, kept = self.conv.messages, self._on_file
        if messages[: len(kept)] == kept:
            return (len(messages) - len(kept)) // 2
        return self.conv.exchanges

    def _cmd_load(self, arg: str) -> None:
        if not arg:
            raise UsageError("/load needs a file name, e.g. /load chat.json")
        unsaved = self._unsaved_exchanges()
        if unsaved and self._discard_for != arg:
            self._discard_for = arg
            self.term.warn(
                f"the conversation has {unsaved} exchange(s) not saved: "
                f"/save FILE keeps them; /load {arg} again discards them"
            )
            return
        self._discard_for = None
        path = self.conv.load(arg)
        self._on_file = list(self.conv.messages)
        self.term.note(f"loaded {self.conv.exchanges} exchange(s) from {path}")
        system = self.conv.system
        self.term.note(f"system prompt: {system}" if system else "no system prompt")
        if self.conv.messages:
            last = self.conv.messages[-1]
            first_line = last["content"].strip().splitlines()[0] if last["content"].strip() else ""
            shown = first_line if len(first_line) <= 70 else first_line[:69] + "…"
            self.term.note(f"last ({last['role']}): {shown}")
