"""Ctrl-C, SIGTERM and closed pipes end `spec run` cleanly: real processes, tiny model.

Each run asks for far more tokens than it will get (the tiny model with a 16k context
needs a minute for them), so the signal always lands mid-generation.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import isolated_env, spec_command
from conftest import TINY_SEED
from tiny_gguf import TinyShape, write_tiny_gguf

LONG_RUN = ["--threads", "1", "--ctx-size", "16384", "-n", "100000"]
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def long_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny target, trained (so its metadata says) for LONG_RUN's context."""
    path = tmp_path_factory.mktemp("long") / "long.gguf"
    return str(write_tiny_gguf(path, seed=TINY_SEED, shape=TinyShape(n_ctx=16384)))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("prompt") / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    return str(path)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*spec_command(), "run", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def read_some(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bytes:
    """Block until the process has written something on stdout; return it."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, "stdout closed before any output"
            return chunk
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
    pytest.fail("no output arrived")


def wait_generating(proc: subprocess.Popen[bytes], cpu_seconds: float = 1.5) -> None:
    """Block until the process has used `cpu_seconds` of CPU: past start-up and model
    loading (well under a second), so it is generating. Under --json nothing appears on
    stdout before the end, so CPU time is the sign of progress."""
    clock = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / clock >= cpu_seconds:  # utime + stime
            return
        assert proc.poll() is None
        time.sleep(0.05)
    pytest.fail("the process never got going")


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_signal_keeps_the_text_so_far_and_exits_130(
    env: dict[str, str], prompt_file: str, long_model: str, sig: signal.Signals
) -> None:
    proc = start(env, prompt_file, "--model", long_model, "--drafter", "none", *LONG_RUN)
    first = read_some(proc)
    proc.send_signal(sig)
    code, rest, err = finish(proc)
    assert code == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert err.strip() == b""
    text = (first + rest).decode("utf-8")  # complete characters only, even when cut
    assert text.strip()


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_signal_under_json_prints_the_interrupted_result(
    env: dict[str, str], prompt_file: str, long_model: str, sig: signal.Signals
) -> None:
    """The JSON object still comes, whole, with finish_reason "interrupted" and the
    tokens generated so far."""
    proc = start(
        env, prompt_file, "--model", long_model, "--drafter", "prompt-lookup", "--json",
        *LONG_RUN,
    )  # fmt: skip
    wait_generating(proc)
    proc.send_signal(sig)
    code, out, err = finish(proc)
    assert code == 130
    assert b"Traceback" not in err
    payload = json.loads(out)
    assert payload["finish_reason"] == "interrupted"
    assert len(payload["tokens"]) == payload["stats"]["generated_tokens"] > 0
    assert payload["text"]


def test_interrupted_text_is_what_an_uninterrupted_run_prints(
    env: dict[str, str], prompt_file: str, long_model: str
) -> None:
    """What was shown before Ctrl-C is exactly the start of the normal output: nothing
    lost, nothing made up (the same run with -n set to the tokens it got)."""
    proc = start(env, prompt_file, "--model", long_model, "--drafter", "none", "--json", *LONG_RUN)
    wait_generating(proc, cpu_seconds=1.0)
    proc.send_signal(signal.SIGINT)
    code, out, _ = finish(proc)
    assert code == 130
    interrupted = json.loads(out)
    n = len(interrupted["tokens"])
    args = [prompt_file, "--model", long_model, "--drafter", "none", "--json", *LONG_RUN]
    args[args.index("-n") + 1] = str(n)
    code, out, err = finish(start(env, *args))
    assert code == 0, err.decode()
    whole = json.loads(out)
    assert whole["tokens"] == interrupted["tokens"]
    assert whole["text"] == interrupted["text"]


@pytest.mark.parametrize("drafter", ["none", "prompt-lookup"])
def test_closed_pipe_ends_quietly(
    env: dict[str, str], prompt_file: str, long_model: str, drafter: str
) -> None:
    """`spec run p | head -c 10`: once the reader is gone spec stops at once, prints
    nothing on stderr and exits 0 (a pipeline's reader decides what happened)."""
    proc = start(env, prompt_file, "--model", long_model, "--drafter", drafter, *LONG_RUN)
    read_some(proc)
    assert proc.stdout is not None
    proc.stdout.close()
    started = time.monotonic()
    assert proc.stderr is not None
    err = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert code == 0
    assert err == b"", err.decode()
    assert time.monotonic() - started < 10  # it stopped, not ran the whole minute


def test_ctrl_c_before_generation_still_prints_the_json(
    tmp_path: Path,
    prompt_file: str,
    long_model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A first run measures the machine before generating (a few seconds on a big
    model): Ctrl-C then still gives the JSON object, with nothing generated."""
    import sys

    from spec_cli.cli import main
    from spec_cli.session import Session

    for key, value in isolated_env(tmp_path).items():
        if key.startswith(("SPEC_", "HF_")):
            monkeypatch.setenv(key, value)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "make_drafter", interrupted)
    monkeypatch.setattr(sys, "argv", ["spec", "run", prompt_file, "-m", long_model, "--json"])
    with pytest.raises(SystemExit) as stopped:
        main()
    out = capsys.readouterr().out
    assert stopped.value.code == 130
    payload = json.loads(out)
    assert payload["finish_reason"] == "interrupted"
    assert payload["tokens"] == [] and payload["text"] == ""
    assert payload["stats"]["prompt_tokens"] > 0


def test_bench_ctrl_c_while_measuring_the_machine_still_writes_the_report(
    tmp_path: Path,
    long_model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`spec bench --json -` promises a JSON document on Ctrl-C; before the first
    generation (while the verify costs are measured) it is an empty, interrupted one."""
    import sys

    from spec_cli.bench import machine
    from spec_cli.cli import main

    for key, value in isolated_env(tmp_path).items():
        if key.startswith(("SPEC_", "HF_")):
            monkeypatch.setenv(key, value)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"id": "a", "category": "qa", "turns": [PROMPT]}) + "\n")
    monkeypatch.setattr(machine, "ceiling", interrupted)
    argv = ["spec", "bench", "--suite", str(suite), "-m", long_model, "-n", "4", "--json", "-"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 130
    doc = json.loads(capsys.readouterr().out)
    assert doc["interrupted"] is True
    assert doc["results"] == []


def test_ctrl_c_while_the_models_load_still_prints_the_json(
    tiny_model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Interrupted before anything was generated (here: loading the models), --json still
    prints its object, with no tokens and finish_reason "interrupted", and exits 130."""
    import sys
    from collections.abc import Iterator
    from contextlib import contextmanager

    import spec_cli.session
    from spec_cli.cli import main

    @contextmanager
    def interrupted_load(*args: object, **kwargs: object) -> Iterator[None]:
        raise KeyboardInterrupt
        yield  # a generator, as a context manager must be

    monkeypatch.setattr(spec_cli.session, "open_session", interrupted_load)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT, encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["spec", "run", str(prompt), "-m", tiny_model, "--json"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 130
    payload = json.loads(capsys.readouterr().out)
    assert payload["finish_reason"] == "interrupted"
    assert (payload["text"], payload["tokens"], payload["model"]) == ("", [], tiny_model)
