"""Limits: prompts that do not fit, runs that reach the context end, long prompts, bad text.

The policy a user relies on: a prompt that leaves no room in the context is refused with
one line before any work; a generation whose prompt + max-tokens exceeds the context
stops at the context end with finish_reason "length" (no error); prompts longer than one
llama.cpp batch are prefilled in batches; binary or non-UTF-8 prompts are refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clitools import isolated_env, spec_command
from fakes import FakeBackend, ScriptedDrafter, greedy_reference, oracle_script

from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions
from spec_cli.engine import GenerationConfig, generate
from spec_cli.errors import PromptError
from spec_cli.events import FinishEvent, TokenEvent

TINY_CTX = 256


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh cache per test: nothing measured or learned before."""
    return isolated_env(tmp_path)


def spec(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*spec_command(), "run", *args], input=stdin, capture_output=True, env=env, timeout=120
    )


def one_line_error(proc: subprocess.CompletedProcess[bytes], expect: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("spec: error: "), err
    assert expect in err


# -- prompts that do not fit ---------------------------------------------------------------


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_too_long_prompt_is_refused_before_any_work(
    env: dict[str, str], tmp_path: Path, tiny_model: str, source: str
) -> None:
    """With the default drafter (auto, which measures this machine's costs on first use)
    the refusal comes first: no measuring note, nothing measured or cached."""
    text = "lorem ipsum dolor " * 30  # 540 byte tokens: more than the context holds
    path = tmp_path / "long.txt"
    path.write_text(text)
    common = ["--model", tiny_model, "--threads", "1", "--ctx-size", str(TINY_CTX)]
    if source == "file":
        proc = spec(env, str(path), *common)
    else:
        proc = spec(env, "-", *common, stdin=text.encode())
    one_line_error(proc, "--ctx-size")
    assert f"holds {TINY_CTX}" in proc.stderr.decode()
    assert not (Path(env["SPEC_CACHE_DIR"]) / "calibration").exists()


def test_engine_refuses_before_evaluating_anything() -> None:
    target = FakeBackend(n_ctx=8)
    drafter = ScriptedDrafter([[1, 2]])
    with pytest.raises(PromptError, match="--ctx-size"):
        next(generate(target, drafter, [1] * 8, GenerationConfig(4), np.random.default_rng(0)))
    assert target.eval_calls == 0
    assert drafter.begun == []


def test_prompt_one_short_of_the_context_gets_exactly_one_token() -> None:
    target = FakeBackend(n_ctx=8)
    prompt = [1, 2, 3, 1, 2, 3, 13]
    events = list(
        generate(
            target,
            ScriptedDrafter(oracle_script(target)),
            prompt,
            GenerationConfig(50),
            np.random.default_rng(0),
        )
    )
    tokens = [e.token for e in events if isinstance(e, TokenEvent)]
    assert tokens == greedy_reference(target, prompt, 1)
    assert events[-1] == FinishEvent("length", tuple(tokens))


# -- reaching the end of the context -------------------------------------------------------


@pytest.mark.parametrize("drafter", ["none", "prompt-lookup", "model", "auto"])
def test_generation_stops_at_the_context_end_as_length(
    env: dict[str, str], tmp_path: Path, tiny_model: str, tiny_draft: str, drafter: str
) -> None:
    """Asking for far more tokens than fit is no error: every slot of the context is
    used, then the run ends with finish_reason "length" and exit 0, for every drafter
    (the draft model's own context included)."""
    path = tmp_path / "p.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. The quick brown")
    proc = spec(
        env, str(path), "--model", tiny_model, "--draft", tiny_draft, "--drafter", drafter,
        "--threads", "1", "--ctx-size", str(TINY_CTX), "-n", "100000", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert "error" not in proc.stderr.decode()
    payload = json.loads(proc.stdout)
    stats = payload["stats"]
    assert payload["finish_reason"] == "length"
    assert stats["prompt_tokens"] + stats["generated_tokens"] == TINY_CTX
    assert len(payload["tokens"]) == stats["generated_tokens"]


# -- prompts longer than one batch ---------------------------------------------------------


@pytest.fixture(scope="module")
def long_prompt_tokens(tiny_model: str) -> list[int]:
    backend = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=4096, n_threads=1, vocab_only=True))
    try:
        tokens = backend.tokenize("The quick brown fox. " * 95, add_bos=True)
    finally:
        backend.close()
    assert len(tokens) > 3 * 512  # several llama.cpp batches of 512
    return tokens


def test_prompt_longer_than_a_batch_is_prefilled_in_batches(
    tiny_model: str, long_prompt_tokens: list[int]
) -> None:
    """One eval of ~2,000 tokens (llama.cpp takes 512 per call) gives the same logits as
    evaluating the prompt in small pieces, and the cache holds all of it."""
    tokens = long_prompt_tokens
    backend = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=4096, n_threads=1))
    try:
        assert backend.n_batch == 512
        whole = np.array(backend.eval(tokens, 3))
        assert list(backend.cached) == tokens
        backend.truncate(0)
        for i in range(0, len(tokens) - 3, 300):
            backend.eval(tokens[i : min(i + 300, len(tokens) - 3)], 0)
        pieces = np.array(backend.eval(tokens[-3:], 3))
        np.testing.assert_allclose(whole, pieces, atol=1e-3)
    finally:
        backend.close()


def test_long_prompt_runs_end_to_end(
    env: dict[str, str], tmp_path: Path, long_prompt_tokens: list[int], tiny_model: str
) -> None:
    path = tmp_path / "long.txt"
    path.write_text("The quick brown fox. " * 95)
    proc = spec(
        env, str(path), "--model", tiny_model, "--drafter", "prompt-lookup", "--threads", "1",
        "--ctx-size", "4096", "-n", "16", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    payload = json.loads(proc.stdout)
    assert payload["stats"]["prompt_tokens"] == len(long_prompt_tokens)
    assert payload["stats"]["generated_tokens"] == 16
    assert payload["finish_reason"] == "length"


# -- prompts that are not text -------------------------------------------------------------

BAD_PROMPTS = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
    "utf-16": ("hello".encode("utf-16"), "UTF-16 text"),
    "latin-1-on-stdin": ("naïve café".encode("latin-1"), "not UTF-8"),
    "cut-mid-character": ("résumé 日本".encode()[:-1], "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_PROMPTS))
def test_non_text_prompts_are_refused_with_one_line(
    env: dict[str, str], tmp_path: Path, tiny_model: str, case: str
) -> None:
    data, expect = BAD_PROMPTS[case]
    common = ["--model", tiny_model, "--threads", "1"]
    if case.endswith("on-stdin"):
        proc = spec(env, "-", *common, stdin=data)
        assert "standard input" in proc.stderr.decode()
    else:
        path = tmp_path / "prompt.txt"
        path.write_bytes(data)
        proc = spec(env, str(path), *common)
        assert str(path) in proc.stderr.decode()
    one_line_error(proc, expect)


def test_a_directory_is_not_a_prompt_file(
    env: dict[str, str], tmp_path: Path, tiny_model: str
) -> None:
    one_line_error(spec(env, str(tmp_path), "--model", tiny_model), "is a directory")


def test_utf8_with_a_byte_order_mark_is_text(
    env: dict[str, str], tmp_path: Path, tiny_model: str
) -> None:
    """Editors on Windows write a BOM; it is not part of the prompt."""
    plain, marked = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text("café au lait")
    marked.write_bytes(b"\xef\xbb\xbf" + "café au lait".encode())
    outs = []
    for path in (plain, marked):
        proc = spec(
            env, str(path), "--model", tiny_model, "--drafter", "none", "--threads", "1",
            "-n", "4", "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        outs.append(json.loads(proc.stdout))
    assert outs[0]["stats"]["prompt_tokens"] == outs[1]["stats"]["prompt_tokens"]
    assert outs[0]["tokens"] == outs[1]["tokens"]


def test_more_threads_than_ggml_allows_is_a_usage_error(env: dict[str, str]) -> None:
    """llama.cpp crashed (bad_alloc, segfault) or hung on such counts."""
    proc = spec(env, "-", "--threads", "100000", stdin=b"hi")
    assert (
        proc.returncode == 2
        and b"--threads': Input should be less than or equal to 512" in proc.stderr
    )
