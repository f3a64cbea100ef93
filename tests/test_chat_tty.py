"""`spec chat` end to end: in a real pseudo-terminal (pexpect), and from a pipe.

The pty tests drive the real SmolLM2 model the way a user does: type, watch the answer
and its footer, use slash commands, stop an answer with Ctrl-C, quit with Ctrl-D.
They use --drafter prompt-lookup: `auto` measures this machine's costs on first use,
which would dominate the test time in a fresh (temporary) cache directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

SPEC = [sys.executable, "-c", "from spec_cli.cli import main; main()"]
PROMPT = ">>>"
FOOTER = (
    r"\d+ tokens · [\d.]+ tok/s · (accepted \d+/\d+ drafted \(\d+%\)|nothing drafted)"
    r" · mean accepted length [\d.]+"
)
TIMEOUT = 60  # generous: a loaded 2-core machine; the tests themselves take seconds


def chat_env(home: Path) -> dict[str, str]:
    """Keep history, caches and learned n-grams out of the real home directory."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        TERM="xterm-256color",
        PROMPT_TOOLKIT_NO_CPR="1",  # no cursor-position queries that pexpect never answers
        SPEC_NO_LEARN="1",
    )
    env.pop("SPEC_DEBUG", None)
    return env


def spawn(args: list[str], home: Path) -> pexpect.spawn:
    child = pexpect.spawn(
        SPEC[0],
        [*SPEC[1:], "chat", *args],
        env=chat_env(home),
        encoding="utf-8",
        dimensions=(40, 120),
        timeout=TIMEOUT,
    )
    child.expect(PROMPT)
    return child


def command(child: pexpect.spawn, line: str, expected: str) -> None:
    """Send a line, wait for `expected`, then for the next prompt."""
    child.sendline(line)
    child.expect(expected)
    child.expect(PROMPT)


def quit_with(child: pexpect.spawn, key: str) -> int:
    child.send(key)
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus is None
    return int(child.exitstatus)


@pytest.mark.real
def test_chat_answers_with_a_footer_and_handles_commands(tmp_path: Path) -> None:
    child = spawn(["-n", "12", "--drafter", "prompt-lookup"], tmp_path)
    # A trailing backslash continues the message on a new line.
    child.send("Say hi\\\r")
    child.send("in French.\r")
    child.expect(FOOTER)
    child.expect(PROMPT)

    # Pasted text (bracketed paste) keeps its newlines and is sent only on Enter.
    command(child, "/max-tokens 2", "max-tokens set to 2")
    child.send("\x1b[200~first pasted line\nsecond pasted line\x1b[201~")
    child.send("\r")
    child.expect(FOOTER)
    child.expect(PROMPT)

    command(child, "/help", r"/max-tokens \[N\]")
    command(child, "/tmperature 0.5", r"unknown command /tmperature: did you mean /temperature\?")
    command(child, "/temperature 0.5", "temperature set to 0.5")
    command(child, "/temperature -1", "temperature must be a number >= 0")
    command(child, "/temperature nan", "temperature must be a number >= 0")
    command(child, "/stats", r"answers: 2, \d+ tokens")
    saved = tmp_path / "chat.json"
    command(child, f"/save {saved}", "saved 2 exchange")
    assert quit_with(child, "\x04") == 0  # Ctrl-D

    doc = json.loads(saved.read_text())
    messages = doc["messages"]
    assert messages[0] == {"role": "user", "content": "Say hi\nin French."}
    assert messages[1]["role"] == "assistant" and messages[1]["content"]
    assert messages[2] == {"role": "user", "content": "first pasted line\nsecond pasted line"}
    assert doc["settings"]["temperature"] == 0.5
    history_file = tmp_path / "data" / "spec" / "chat_history"
    history = history_file.read_text()
    assert "Say hi" in history and "/stats" in history  # persists for the next session
    assert history_file.stat().st_mode & 0o777 == 0o600  # what was typed stays private


def test_the_history_file_can_be_moved_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from spec_cli.render.chat import history_path

    monkeypatch.setenv("SPEC_HISTORY_FILE", "~/elsewhere/hist")
    assert history_path() == Path("~/elsewhere/hist").expanduser()
    monkeypatch.setenv("SPEC_HISTORY_FILE", "")
    assert history_path() is None


@pytest.mark.real
def test_ctrl_c_stops_the_answer_keeps_it_and_returns_to_the_prompt(tmp_path: Path) -> None:
    child = spawn(["-n", "2000", "--drafter", "prompt-lookup"], tmp_path)
    child.sendline("Write a very long story about a dragon and a knight.")
    child.expect(r"knight\.[^\n]*\n")  # the line as submitted (not as typed)
    child.expect(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+")  # the answer is streaming
    time.sleep(0.3)
    child.sendintr()
    child.expect(f"{FOOTER}.* · interrupted")
    child.expect(PROMPT)

    # Ctrl-C on a line being typed clears it and nothing is sent.
    child.send("half typed")
    child.send("\x03")
    saved = tmp_path / "chat.json"
    command(child, f"/save {saved}", "saved 1 exchange")
    assert quit_with(child, "\x03") == 0  # Ctrl-C on an empty line quits

    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"].startswith("Write a very long story")
    assert len(messages[1]["content"].split()) >= 3  # the part shown was kept


@pytest.mark.real
@pytest.mark.parametrize("mid_answer", [True, False], ids=["answering", "at the prompt"])
def test_sigterm_ends_the_chat_with_exit_130(tmp_path: Path, mid_answer: bool) -> None:
    """Unlike Ctrl-C, which stops only the answer, SIGTERM ends the chat: exit 130, no
    traceback, whether it comes while the model answers or while it waits for a line."""
    import signal

    child = spawn(["-n", "2000", "--drafter", "prompt-lookup"], tmp_path)
    if mid_answer:
        child.sendline("Write a very long story about a dragon and a knight.")
        child.expect(r"knight\.[^\n]*\n")
        child.expect(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+")  # the answer is streaming
    child.kill(signal.SIGTERM)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and child.signalstatus is None
    assert "Traceback" not in (child.before or "")


def piped_chat(home: Path, args: list[str], lines: str) -> subprocess.CompletedProcess[str]:
    """`spec chat ARGS` reading `lines` from a pipe."""
    return subprocess.run(
        [*SPEC, "chat", *args],
        input=lines,
        capture_output=True,
        text=True,
        env=chat_env(home),
        timeout=TIMEOUT,
    )


@pytest.mark.real
def test_piped_chat_keeps_answers_on_stdout_and_the_rest_on_stderr(tmp_path: Path) -> None:
    saved = tmp_path / "chat.json"
    done = piped_chat(
        tmp_path,
        ["-n", "8", "--drafter", "none", "--system", "Answer briefly."],
        f"What is the capital of France?\n/stats\n/save {saved}\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "tok/s" not in done.stdout and "\x1b[" not in done.stdout
    assert "nothing drafted" in done.stderr and "answers: 1" in done.stderr
    doc = json.loads(saved.read_text())
    assert doc["system"] == "Answer briefly."
    assert doc["messages"][1]["content"] == done.stdout.strip()


@pytest.mark.real
def test_load_over_unsaved_exchanges_asks_to_be_repeated_right_away(tmp_path: Path) -> None:
    """/load replaces the conversation: with exchanges not saved it warns first, and goes
    ahead only when repeated as the very next command."""
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    )
    load = f"/load {other}\n"
    done = piped_chat(
        tmp_path, ["-n", "4", "--drafter", "none"], f"Say hi.\n{load}/stats\n{load}{load}/stats\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("1 exchange(s) not saved: /save FILE keeps them") == 2
    assert done.stderr.count("loaded 1 exchange(s)") == 1
    assert done.stderr.index("loaded 1 exchange(s)") > done.stderr.rindex("not saved")


@pytest.mark.real
def test_piped_chat_goes_on_after_a_failing_line_and_exits_1_at_the_end(tmp_path: Path) -> None:
    """A line that is not text, or a bad command, is reported and skipped; the script
    still learns from the exit code that something failed."""
    done = subprocess.run(
        [*SPEC, "chat", "-n", "4", "--drafter", "none"],
        input=b"bad \xff bytes\n/temperature hot\nSay hi.\n",
        capture_output=True,
        env=chat_env(tmp_path),
        timeout=TIMEOUT,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "not valid UTF-8" in err and "Traceback" not in err
    assert done.stdout.strip()  # the third line was answered
    assert err.strip().splitlines()[-1] == (
        "spec: error: 2 of the piped messages and commands failed"
    )


def test_no_color_turns_off_automatic_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    from spec_cli.render.chat import _wants_color

    class Tty:
        def isatty(self) -> bool:
            return True

    assert _wants_color("auto", Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _wants_color("auto", Tty())  # type: ignore[arg-type]
    assert _wants_color("always", Tty())  # type: ignore[arg-type]


def test_model_without_a_chat_template_is_refused_in_one_line(
    tmp_path: Path, tiny_model: str
) -> None:
    done = subprocess.run(
        [*SPEC, "chat", "--model", tiny_model],
        input="hello\n",
        capture_output=True,
        text=True,
        env=chat_env(tmp_path),
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no chat template" in lines[0]
    assert "SmolLM2" in lines[0] and "Traceback" not in done.stderr


def test_piped_lines_ending_in_a_backslash_continue_the_message() -> None:
    from spec_cli.render.chat import join_continued

    lines = iter(["first\\\n", "second\\\n", "third\n", "next message\n"])
    assert join_continued(lines) == "first\nsecond\nthird"
    assert join_continued(lines) == "next message"
    assert join_continued(lines) is None  # end of input: the chat ends


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("tmperature", "temperature"), ("stat", "stats"), ("quti", "exit"), ("xyzzy", None)],
)
def test_mistyped_commands_get_the_closest_real_one(typed: str, meant: str | None) -> None:
    from spec_cli.chat_repl import closest_command

    assert closest_command(typed) == meant


@pytest.mark.real
def test_load_continues_with_the_saved_settings_unless_given_again(tmp_path: Path) -> None:
    """`spec chat --load FILE` takes the settings /save stored, except those on the
    command line; a saved value out of range is one line naming the file."""
    saved = tmp_path / "chat.json"
    doc = {
        "format": "spec-chat",
        "version": 1,
        "settings": {"drafter": "none", "max_tokens": 3, "temperature": 0.5, "seed": 7},
        "system": None,
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    }
    saved.write_text(json.dumps(doc))
    done = piped_chat(tmp_path, ["--load", str(saved), "-n", "5"], "/settings\n")
    assert done.returncode == 0, done.stderr
    shown = dict(line.split(None, 1) for line in done.stderr.splitlines() if "  " in line)
    assert shown["drafter"].startswith("none")
    assert shown["max-tokens"] == "5"  # given again: the command line wins
    assert shown["temperature"] == "0.5" and shown["seed"] == "7"
    doc["settings"] = {"top_p": 7.0}
    saved.write_text(json.dumps(doc))
    bad = piped_chat(tmp_path, ["--load", str(saved)], "")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and str(saved) in bad.stderr
