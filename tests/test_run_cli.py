"""`spec run` as a user runs it: a real subprocess on the tiny GGUF, stdout vs stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from clitools import isolated_env, spec_command

PROMPT = "The quick brown fox jumps over the lazy dog. The quick brown"
JSON_KEYS = {"text", "tokens", "finish_reason", "model", "draft_model", "drafter", "stats"}
STATS_KEYS = {
    "prompt_tokens",
    "generated_tokens",
    "target_calls",
    "drafted_tokens",
    "accepted_tokens",
    "acceptance_rate",
    "mean_accepted_length",
    "prefill_seconds",
    "decode_seconds",
    "wall_seconds",
    "tokens_per_second",
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A clean environment: caches and settings in a temp dir, no debug, no colour hints."""
    return isolated_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("prompts") / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    return str(path)


def spec(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*spec_command(), *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env,
        timeout=120,
    )


def base(prompt: str, model: str, *extra: str) -> list[str]:
    # One thread: a tiny model gains nothing from more, and spinning workers are slow on
    # a busy machine.
    return ["run", prompt, "--model", model, "--threads", "1", "-n", "24", *extra]


@pytest.fixture(scope="module")
def plain_stdout(env: dict[str, str], prompt_file: str, tiny_model: str) -> str:
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none"))
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8")


def test_piped_stdout_holds_only_the_generated_text(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none"))
    assert proc.returncode == 0
    assert proc.stderr == b""
    assert b"\x1b" not in proc.stdout
    assert proc.stdout.decode() == plain_stdout
    assert PROMPT not in plain_stdout  # the continuation only, not the prompt echoed
    assert len(plain_stdout.strip()) > 0


def test_stats_go_to_stderr(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none", "--stats"))
    assert proc.returncode == 0
    assert proc.stdout.decode() == plain_stdout
    err = proc.stderr.decode()
    assert "24 tokens" in err
    assert "target calls" in err


def test_json_is_one_object_with_the_documented_keys(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none", "--json"))
    assert proc.returncode == 0
    assert proc.stderr == b""
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data.keys() >= JSON_KEYS
    assert data["stats"].keys() >= STATS_KEYS
    assert data["text"] == plain_stdout
    assert data["finish_reason"] == "length"
    assert data["model"] == tiny_model
    assert data["draft_model"] is None
    assert data["drafter"] == "none"
    stats = data["stats"]
    assert len(data["tokens"]) == stats["generated_tokens"] == 24
    assert stats["target_calls"] == 24
    assert stats["prompt_tokens"] == len(PROMPT.encode()) + 1  # bytes + BOS
    assert stats["drafted_tokens"] == stats["accepted_tokens"] == 0
    assert stats["wall_seconds"] >= stats["decode_seconds"] > 0


@pytest.mark.parametrize("drafter", ["model", "auto", "prompt-lookup"])
def test_speculative_runs_print_the_plain_text(
    env: dict[str, str],
    prompt_file: str,
    tiny_model: str,
    tiny_draft: str,
    plain_stdout: str,
    drafter: str,
) -> None:
    args = base(prompt_file, tiny_model, "--drafter", drafter, "--draft", tiny_draft, "--json")
    proc = spec(env, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert data["text"] == plain_stdout
    assert data["drafter"] == drafter
    if drafter == "prompt-lookup":  # it has no use for a draft model: not even loaded
        assert data["draft_model"] is None
        assert "--draft is not used by --drafter prompt-lookup" in proc.stderr.decode()
    else:
        assert data["draft_model"] == tiny_draft
    if drafter == "model":
        assert data["stats"]["accepted_tokens"] > 0
        assert data["stats"]["target_calls"] < 24


def test_llama_cpp_option_spellings_work(
    env: dict[str, str], prompt_file: str, tiny_model: str, tiny_draft: str
) -> None:
    """--temp, --n-predict and -md as in llama.cpp: the same run as spec's own names."""
    ours = ["run", prompt_file, "-m", tiny_model, "--threads", "1", "--json"]
    ours += ["-n", "12", "-t", "0.8", "--seed", "3", "--draft", tiny_draft]
    theirs = ["run", prompt_file, "-m", tiny_model, "--threads", "1", "--json"]
    theirs += ["--n-predict", "12", "--temp", "0.8", "--seed", "3", "-md", tiny_draft]
    a, b = spec(env, *ours), spec(env, *theirs)
    assert a.returncode == b.returncode == 0, b.stderr.decode()
    first, second = json.loads(a.stdout), json.loads(b.stdout)
    assert second["text"] == first["text"]
    assert second["draft_model"] == tiny_draft
    assert second["stats"]["generated_tokens"] <= 12


def test_n_predict_minus_one_runs_until_the_context_is_full(
    env: dict[str, str], prompt_file: str, tiny_model: str
) -> None:
    """llama.cpp's -n -1: no token limit; the context's room ends the run. -n 0 is refused."""
    small = ["run", prompt_file, "-m", tiny_model, "--threads", "1", "--raw", "--json"]
    small += ["--ctx-size", "64", "--drafter", "none"]
    unlimited = spec(env, *small, "-n", "-1")
    assert unlimited.returncode == 0, unlimited.stderr.decode()
    out = json.loads(unlimited.stdout)
    room = 64 - out["stats"]["prompt_tokens"]  # the size asked for, not llama.cpp's 256
    assert out["finish_reason"] in ("length", "stop")
    if out["finish_reason"] == "length":
        assert out["stats"]["generated_tokens"] == room
    assert json.loads(spec(env, *small, "-n", str(room)).stdout)["text"] == out["text"]
    zero = spec(env, *small, "-n", "0")
    assert zero.returncode == 2 and zero.stdout == b""
    assert "give N >= 1, or -1" in zero.stderr.decode()


def test_prompt_from_stdin(env: dict[str, str], tiny_model: str, plain_stdout: str) -> None:
    proc = spec(env, *base("-", tiny_model, "--drafter", "none"), stdin=PROMPT.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode() == plain_stdout


@pytest.mark.parametrize(
    "drafter",
    ["none", "prompt-lookup", "model", "auto"],
)
def test_seed_makes_sampled_runs_repeatable(
    env: dict[str, str], prompt_file: str, tiny_model: str, tiny_draft: str, drafter: str
) -> None:
    def sampled(seed: int) -> str:
        args = base(prompt_file, tiny_model, "-t", "1.0", "--seed", str(seed))
        args += ["--drafter", drafter, "--draft", tiny_draft]
        proc = spec(env, *args)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode()

    first = sampled(1)
    assert sampled(1) == first
    assert first != sampled(2)  # the seed matters (24 sampled tokens: a tie is negligible)


def test_color_always_emits_ansi_and_never_emits_none(
    env: dict[str, str], prompt_file: str, tiny_model: str, tiny_draft: str, plain_stdout: str
) -> None:
    spec_args = ("--drafter", "model", "--draft", tiny_draft)
    always = spec(env, *base(prompt_file, tiny_model, *spec_args, "--color", "always"))
    assert always.returncode == 0
    assert ANSI.search(always.stdout.decode())
    never = spec(env, *base(prompt_file, tiny_model, *spec_args, "--color", "never"))
    assert never.returncode == 0
    assert b"\x1b" not in never.stdout
    assert never.stdout.decode() == plain_stdout


def test_color_always_text_is_the_plain_text(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    """Colour only: without drafts there is no ghost text, so removing the escape codes
    leaves exactly the generated text (plus a final newline that ends the line)."""
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none", "--color", "always"))
    assert proc.returncode == 0
    assert ANSI.sub("", proc.stdout.decode()).rstrip("\n") == plain_stdout.rstrip("\n")


# -- errors: one line on stderr, non-zero exit, no traceback -------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "not-gguf": (d / "model.gguf", b"this is not a model\n"),
        "empty": (d / "empty.txt", b"   \n\n"),
        "latin1": (d / "latin1.txt", "café crème".encode("latin-1")),
        "long": (d / "long.txt", ("lorem ipsum dolor sit amet " * 40).encode()),
        # More bytes than 256 tokens of any vocabulary could hold: refused untokenized.
        "huge": (d / "huge.txt", b"x" * (256 * 1024 + 1)),
    }
    for path, data in files.values():
        path.write_bytes(data)
    out = {k: str(p) for k, (p, _) in files.items()}
    out["missing"] = str(d / "does-not-exist.txt")
    return out


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing-model", "not found"),
        ("not-gguf", "not a GGUF"),
        ("missing-prompt", "not found"),
        ("text-as-prompt-file", "to give the text itself, pipe it in: echo '...' | spec run -"),
        ("model-is-a-directory", "is a directory: give the .gguf file inside it"),
        ("empty-prompt", "empty"),
        ("non-utf8-prompt", "UTF-8"),
        ("prompt-too-long", "--ctx-size"),
        ("incompatible-draft", "cannot draft"),
        ("system-without-template", "--system"),
        ("missing-ngram-cache", "n-gram cache not found"),
        ("huge-prompt", "bytes, far more than a context of 256 tokens holds"),
    ],
)
def test_user_errors_are_one_line(
    env: dict[str, str],
    prompt_file: str,
    tiny_model: str,
    tiny_other_vocab: str,
    bad_files: dict[str, str],
    case: str,
    expect: str,
) -> None:
    args = {
        "missing-model": base(prompt_file, bad_files["missing"] + ".gguf"),
        "not-gguf": base(prompt_file, bad_files["not-gguf"]),
        "missing-prompt": base(bad_files["missing"], tiny_model),
        "text-as-prompt-file": base("What is 2+2?", tiny_model),
        "model-is-a-directory": base(prompt_file, str(Path(prompt_file).parent)),
        "empty-prompt": base(bad_files["empty"], tiny_model),
        "non-utf8-prompt": base(bad_files["latin1"], tiny_model),
        "prompt-too-long": base(bad_files["long"], tiny_model, "--ctx-size", "256"),
        "incompatible-draft": base(prompt_file, tiny_model, "--draft", tiny_other_vocab),
        "system-without-template": base(prompt_file, tiny_model, "--raw", "--system", "Be brief."),
        "huge-prompt": base(bad_files["huge"], tiny_model, "--ctx-size", "256"),
        # Refused even when the drafter chosen would never read it.
        "missing-ngram-cache": base(
            prompt_file, tiny_model, "--drafter", "none", "--ngram-cache", bad_files["missing"]
        ),
    }[case]
    proc = spec(env, *args)
    err = proc.stderr.decode()
    assert proc.returncode in (1, 2)  # never a crash (negative: killed by a signal)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("spec: error: ")
    assert expect in err
    assert proc.stdout == b""


def test_the_cli_default_draft_length_is_the_engines() -> None:
    """The options module keeps its own copy (the CLI starts without importing the
    engine); `spec run --help` must advertise the length generation really uses."""
    from spec_cli.commands import options
    from spec_cli.engine import DEFAULT_DRAFT_MAX

    assert options.DEFAULT_DRAFT_MAX == DEFAULT_DRAFT_MAX


@pytest.mark.parametrize(
    ("stdout", "expect"), [("closed", "standard output is closed"), ("full", "No space left")]
)
def test_output_that_cannot_be_written_is_one_line(
    env: dict[str, str], prompt_file: str, tiny_model: str, stdout: str, expect: str
) -> None:
    if stdout == "full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    target = subprocess.DEVNULL if stdout == "closed" else open("/dev/full", "wb")  # noqa: SIM115
    try:
        proc = subprocess.run(
            [*spec_command(), *base(prompt_file, tiny_model, "--drafter", "none")],
            stdin=subprocess.DEVNULL,
            stdout=target,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            # A closed descriptor 1, as `spec run p >&-` leaves it.
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )
    finally:
        if stdout == "full":
            target.close()  # type: ignore[union-attr]
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.startswith("spec: error: ") and len(err.strip().splitlines()) == 1, err
    assert expect in err


def test_seed_minus_one_asks_for_a_random_seed(
    env: dict[str, str], prompt_file: str, tiny_model: str
) -> None:
    """llama.cpp's convention; below -1 is a usage error."""
    assert spec(env, *base(prompt_file, tiny_model, "-t", "0.8", "--seed", "-1")).returncode == 0
    assert spec(env, *base(prompt_file, tiny_model, "--seed", "-2")).returncode == 2


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["run", "--bogus"], "No such option: --bogus (see spec run -h)"),
        (["run", "p.txt", "-n", "many"], "'--max-tokens' / '-n' / '--n-predict'"),
        (["models", "check"], "Missing argument 'target' (see spec models check -h)"),
        (["nosuch"], "No such command 'nosuch' (see spec -h)"),
    ],
)
def test_usage_errors_are_one_line_like_every_other_error(
    env: dict[str, str], args: list[str], expect: str
) -> None:
    proc = spec(env, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b""
    assert err.startswith("spec: error: ") and err.count("\n") == 1, err
    assert expect in err


def test_a_misspelt_drafter_is_refused_before_any_model_loads(
    env: dict[str, str], prompt_file: str
) -> None:
    """A model that does not exist shows the drafter is checked first, as a usage error."""
    proc = spec(env, *base(prompt_file, "missing.gguf", "--drafter", "prompt_lookup"))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b""
    assert "'prompt_lookup' is not one of auto, none, prompt-lookup" in err
    assert "missing.gguf" not in err


def test_a_small_context_is_kept_to_the_size_asked_for(
    env: dict[str, str], prompt_file: str, tiny_model: str, tmp_path: Path
) -> None:
    """llama.cpp allocates at least 256 tokens; `-c 80` still means 80: a longer prompt
    is refused, generation stops at 80 tokens in all, and drafts fit in what is left."""
    small = ("--ctx-size", "80", "--raw", "-n", "200", "--draft-max", "64", "--json")
    plain = spec(env, *base(prompt_file, tiny_model, *small, "--drafter", "none"))
    drafted = spec(env, *base(prompt_file, tiny_model, *small, "--drafter", "prompt-lookup"))
    assert plain.returncode == 0 and drafted.returncode == 0, drafted.stderr.decode()
    out, spec_out = json.loads(plain.stdout), json.loads(drafted.stdout)
    assert out["stats"]["prompt_tokens"] + out["stats"]["generated_tokens"] == 80
    assert out["finish_reason"] == "length"
    assert spec_out["tokens"] == out["tokens"]
    long_prompt = tmp_path / "long.txt"
    long_prompt.write_text(PROMPT * 3, encoding="utf-8")
    refused = spec(env, *base(str(long_prompt), tiny_model, "--ctx-size", "80", "--raw"))
    assert refused.returncode != 0 and refused.stdout == b""
    assert b"context holds 80" in refused.stderr


def test_a_cache_that_cannot_be_written_is_reported(
    env: dict[str, str], prompt_file: str, tiny_model: str, tmp_path: Path
) -> None:
    """Otherwise every run would silently pay for measuring the machine again."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    proc = spec({**env, "SPEC_CACHE_DIR": str(blocked)}, *base(prompt_file, tiny_model))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "could not save the measurement" in proc.stderr.decode()
    assert "SPEC_CACHE_DIR" in proc.stderr.decode()


def test_settings_that_work_against_the_user_get_a_note_and_the_run_goes_on(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    """A context beyond what the model was trained on (the tiny one: 512 tokens), or more
    threads than physical cores: one note each on stderr, the text unchanged on stdout."""
    from spec_cli.backend.llama_cpp import physical_cores

    threads = str(physical_cores() + 1)
    args = base(prompt_file, tiny_model, "--drafter", "none", "-c", "1024", "--threads", threads)
    proc = spec(env, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == plain_stdout
    notes = proc.stderr.decode().splitlines()
    assert any("--ctx-size 1024 is beyond the 512 tokens" in line for line in notes)
    assert any(f"--threads {threads} is more than" in line for line in notes)


def test_a_closed_stdin_reads_as_empty_input(env: dict[str, str], tiny_model: str) -> None:
    """`spec run - <&-`: one line saying there is no text, not an internal error."""
    proc = subprocess.run(
        [*spec_command(), *base("-", tiny_model)],
        capture_output=True,
        env=env,
        timeout=120,
        preexec_fn=lambda: os.close(0),  # the child starts with descriptor 0 closed
    )
    assert proc.returncode == 1 and proc.stdout == b""
    err = proc.stderr.decode()
    assert err == "spec: error: standard input is empty: give some text to continue\n"


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_debug_and_log_variables_set_to_off_are_off(
    env: dict[str, str], prompt_file: str, tiny_model: str, value: str
) -> None:
    off = {**env, "SPEC_DEBUG": value, "SPEC_LLAMA_LOG": value}
    failed = spec(off, *base(prompt_file + ".missing", tiny_model))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr.decode()
    ran = spec(off, *base(prompt_file, tiny_model, "--drafter", "none"))
    assert ran.returncode == 0 and ran.stderr == b""  # no llama.cpp log


def test_version_prints_spec_and_llama_cpp_python_versions(env: dict[str, str]) -> None:
    proc = spec(env, "--version")
    assert proc.returncode == 0 and proc.stderr == b""
    assert re.fullmatch(rb"spec \S+ \(llama-cpp-python \S+\)\n", proc.stdout)


def test_an_ngram_cache_a_drafter_never_reads_gets_a_note(
    env: dict[str, str], prompt_file: str, tiny_model: str, tmp_path: Path, plain_stdout: str
) -> None:
    cache = tmp_path / "corpus.ngrams"
    built = spec(env, "ngram", "build", prompt_file, "-o", str(cache), "--model", tiny_model)
    assert built.returncode == 0, built.stderr.decode()
    args = base(prompt_file, tiny_model, "--drafter", "none", "--ngram-cache", str(cache))
    proc = spec(env, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == plain_stdout
    assert "--ngram-cache is not used by --drafter none" in proc.stderr.decode()


def test_json_counts_what_a_stop_string_left(
    env: dict[str, str], prompt_file: str, tiny_model: str, plain_stdout: str
) -> None:
    """Tokens that only made up the stop string are not in `tokens`, and not counted as
    generated either."""
    stop = plain_stdout[6:9]
    proc = spec(env, *base(prompt_file, tiny_model, "--drafter", "none", "--json", "--stop", stop))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["finish_reason"] == "stop" and stop not in data["text"]
    assert len(data["tokens"]) == data["stats"]["generated_tokens"] < 9
