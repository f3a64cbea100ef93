"""The chat terminal: reading messages (line editing, history) and everything printed
around the answers.

Answers stream to stdout; notes, footers and errors go to stderr, so `spec chat > log`
captures only what the model said. On a terminal the input is a prompt_toolkit prompt
with persistent history; from a pipe, messages are read line by line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.text import Text

from spec_cli.render.output import drafter_lines

if TYPE_CHECKING:
    from spec_cli.render.output import Renderer
    from spec_cli.stats import GenerationStats

PROMPT = ">>> "
CONTINUATION = "... "
HISTORY_FILE = "chat_history"


def history_path() -> Path | None:
    """Where input history persists between sessions: the user data dir, or
    SPEC_HISTORY_FILE (set but empty: nowhere, history lives only in memory)."""
    override = os.environ.get("SPEC_HISTORY_FILE")
    if override is not None:
        return Path(override).expanduser() if override else None
    import platformdirs

    return platformdirs.user_data_path("spec", appauthor=False) / HISTORY_FILE


def join_continued(lines: Iterable[str]) -> str | None:
    """Join lines while each ends with a backslash (the backslash becomes a newline);
    None when the input ended before any line."""
    parts: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        return "\n".join(parts)
    return "\n".join(parts) if parts else None


class ChatTerminal:
    """Owns the consoles and the line editor of one chat."""

    def __init__(self, color: str = "auto", commands: Iterable[str] = ()) -> None:
        """`color`: auto (colours where the stream is a terminal), always or never."""
        self.interactive = sys.stdin.isatty()
        self.color = _wants_color(color, sys.stdout)
        self.out = _console(sys.stdout, self.color)
        self.err = _console(sys.stderr, _wants_color(color, sys.stderr))
        self._commands = sorted(commands)
        self._prompt: Any = None  # the PromptSession, made on first read

    # -- input --------------------------------------------------------------------------

    def read_message(self) -> str | None:
        """The next message; None when the user quits (Ctrl-D, or Ctrl-C on an empty line)."""
        if not self.interactive:
            try:
                return join_continued(_lines(sys.stdin))
            except KeyboardInterrupt:
                return None
        if self._prompt is None:
            self._prompt = self._make_prompt()
        try:
            text: str = self._prompt.prompt(PROMPT)
        except (EOFError, KeyboardInterrupt):
            return None
        return text

    def stop_reading(self) -> bool:
        """End a prompt that waits for a line as Ctrl-D would (for SIGTERM); whether one
        was waiting. An exception raised inside prompt_toolkit's loop would print its
        traceback, so the loop is asked to end, from its own thread's queue."""
        app = getattr(self._prompt, "app", None)
        if app is None or not app.is_running or app.loop is None:
            return False
        app.loop.call_soon_threadsafe(lambda: app.exit(exception=EOFError()))
        return True

    def _make_prompt(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
        from prompt_toolkit.output import create_output

        keys = KeyBindings()

        @keys.add("enter")
        def _send(event: KeyPressEvent) -> None:
            buf = event.current_buffer
            if buf.document.text_before_cursor.endswith("\\"):
                buf.delete_before_cursor(1)  # a trailing backslash continues the message
                buf.insert_text("\n")
            else:
                buf.validate_and_handle()

        @keys.add("escape", "enter")
        def _newline(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("\n")

        @keys.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            buf = event.current_buffer
            if buf.text:
                buf.reset()  # like a shell: Ctrl-C drops the line being typed
            else:
                event.app.exit(exception=KeyboardInterrupt())

        history: History = InMemoryHistory()
        path = history_path()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # What was typed can be private: readable by its owner only.
                os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
                history = FileHistory(str(path))
            except OSError as e:
                self.note(f"input history is not saved ({e.strerror})")
        completer = WordCompleter(
            [f"/{c}" for c in self._commands], sentence=True, match_middle=False
        )
        return PromptSession(
            history=history,
            key_bindings=keys,
            multiline=True,
            prompt_continuation=CONTINUATION,
            completer=completer,
            complete_while_typing=False,
            enable_history_search=False,
            # With stdout redirected (`spec chat > log`) the prompt stays on the terminal.
            output=create_output(always_prefer_tty=True),
        )

    # -- output -------------------------------------------------------------------------

    def answer_renderer(self) -> Renderer:
        """Live colours (accepted drafts, rejected guesses) on a terminal, else plain text."""
        if self.color:
            from spec_cli.render.live import LiveRenderer

            return LiveRenderer(self.out)
        from spec_cli.render.plain import PlainRenderer

        return PlainRenderer(sys.stdout)

    @contextmanager
    def quiet_typing(self) -> Iterator[None]:
        """While an answer streams, keys typed (and ^C) are not echoed into it; they wait
        for the next prompt, which shows them."""
        try:
            import termios
        except ImportError:  # Windows: no termios, nothing to quiet
            yield
            return
        fd = sys.stdin.fileno() if self.interactive else -1
        try:
            saved = termios.tcgetattr(fd)
        except (termios.error, ValueError, OSError):
            yield
            return
        quiet = list(saved)
        quiet[3] &= ~termios.ECHO  # lflags
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, saved)

    def end_answer(self, text: str) -> None:
        """Make sure the next line starts at the left margin after an answer."""
        if text and not text.endswith("\n") and not self.color:
            sys.stdout.write("\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        self.err.print(Text(text, style="dim"))

    def footer(self, text: str) -> None:
        self.err.print(Text(text, style="dim"))
        if self.interactive:
            self.err.print()

    def warn(self, text: str) -> None:
        self.err.print(Text(text, style="yellow"))

    def error(self, text: str) -> None:
        self.err.print(Text(f"error: {text}", style="red"))

    def block(self, text: str) -> None:
        """Multi-line information (help, statistics, settings)."""
        self.err.print(Text(text))

    def banner(self, title: str, hints: list[str]) -> None:
        if not self.interactive:
            return
        self.err.print(Text(title, style="bold"))
        for hint in hints:
            self.err.print(Text(hint, style="dim"))
        if self.color:
            legend = Text("colours: ", style="dim")
            legend.append("accepted draft", style="green")
            legend.append(" · ", style="dim")
            legend.append("bonus token", style="cyan")
            legend.append(" · ", style="dim")
            legend.append("rejected guess", style="dim red strike")
            legend.append(" · ", style="dim")
            legend.append("target token")
            self.err.print(legend)
        self.err.print()


def footer_line(
    stats: GenerationStats,
    finish_reason: str,
    *,
    drafter: str,
    max_tokens: int,
    context_full: bool = False,
) -> str:
    """One line after each answer: speed, drafts accepted, mean accepted length, why it ended."""
    parts = [
        f"{stats.generated_tokens} tokens",
        f"{stats.tokens_per_second:.1f} tok/s",
    ]
    if stats.drafted_tokens:
        parts.append(
            f"accepted {stats.accepted_tokens}/{stats.drafted_tokens} drafted "
            f"({stats.acceptance_rate:.0%})"
        )
    else:
        parts.append("nothing drafted")
    parts.append(f"mean accepted length {stats.mean_accepted_length:.2f}")
    sources = sorted(set(stats.per_drafter) - {drafter})
    # A chain (auto) names the drafters that actually drafted this answer.
    parts.append(f"{drafter}: {', '.join(sources)}" if sources else drafter)
    if finish_reason == "interrupted":
        parts.append("interrupted")
    elif finish_reason == "length":
        if context_full:
            parts.append("context full: /reset, or the oldest exchanges are left out next")
        elif stats.generated_tokens >= max_tokens:
            parts.append(f"cut at {max_tokens} tokens (/max-tokens N to raise)")
    return " · ".join(parts)


def session_report(
    total: GenerationStats,
    *,
    answers: int,
    prefilled: int,
    reused: int,
    history_tokens: int,
    n_ctx: int,
) -> str:
    """The `/stats` block: totals over the session, per-drafter acceptance, cache reuse."""
    lines = [
        f"answers: {answers}, {total.generated_tokens} tokens in {total.decode_seconds:.2f}s "
        f"({total.tokens_per_second:.1f} tok/s)",
        f"target calls: {total.target_calls}, mean accepted length "
        f"{total.mean_accepted_length:.2f} tokens/call",
    ]
    if total.drafted_tokens:
        lines.append(
            f"drafts: accepted {total.accepted_tokens}/{total.drafted_tokens} "
            f"({total.acceptance_rate:.0%}); {total.steps_without_draft} steps without a draft"
        )
        lines.extend(drafter_lines(total))
        rates = total.position_rates()
        lines.append("  acceptance by draft position: " + " ".join(f"{r:.0%}" for r in rates[:16]))
    else:
        lines.append("drafts: none yet")
    lines.append(
        f"prompt: {prefilled} tokens prefilled in {total.prefill_seconds:.2f}s, "
        f"{reused} reused from the KV cache"
    )
    lines.append(f"context: {history_tokens}/{n_ctx} tokens in use")
    return "\n".join(lines)


def _wants_color(choice: str, stream: TextIO) -> bool:
    # NO_COLOR (no-color.org) turns off the automatic choice; --color always still wins.
    if choice == "auto" and os.environ.get("NO_COLOR"):
        return False
    return choice == "always" or (choice == "auto" and stream.isatty())


def _console(stream: TextIO, color: bool) -> Console:
    # soft_wrap: long notes are left to the terminal to wrap, never broken up by rich
    return Console(
        file=stream, force_terminal=color, no_color=not color, highlight=False, soft_wrap=True
    )


def _lines(stream: TextIO) -> Iterable[str]:
    while True:
        line = stream.readline()
        if not line:
            return
        yield line
