"""`spec bench` as a user runs it: a real subprocess on the tiny GGUF models."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import isolated_env, spec_command

SUITE = [
    {"id": "edit", "category": "code-edit", "turns": ["def f(x):\n    return x\n\ndef f(x):"]},
    {"id": "talk", "category": "multi-turn", "turns": ["Hello, who are you?", "Tell me more."]},
    {"id": "fact", "category": "qa", "prompt": "Why is the sky blue?"},
]
RESULT_KEYS = {
    "method",
    "category",
    "prompt_id",
    "turn",
    "repeat",
    "generated_tokens",
    "tokens_per_second",
    "speedup",
    "mean_accepted_length",
    "acceptance_rate",
    "matches_baseline",
    "draft_share",
    "verify_share",
    "per_position_acceptance",
}
MACHINE_KEYS = {"cpu", "cores", "threads", "backend", "llama_cpp_version", "os", "python"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Caches in a temp dir, no SPEC_* settings from the caller's shell."""
    return isolated_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("suite") / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in SUITE) + "\n", encoding="utf-8")
    return str(path)


def spec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*spec_command(), *args], capture_output=True, text=True, env=env, timeout=120
    )


def tiny_args(suite: str, model: str, *extra: str) -> list[str]:
    # One thread: spinning llama.cpp workers are slow on a busy test machine.
    return ["bench", "--suite", suite, "--model", model, "--threads", "1", "-c", "512", *extra]


def test_bench_reports_on_stdout_and_writes_json_and_csv(
    env: dict[str, str], suite: str, tiny_model: str, tiny_draft: str, tmp_path: Path
) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = tiny_args(suite, tiny_model, "--draft", tiny_draft, "-n", "16", "--seed", "5")
    args += ["--methods", "none,prompt-lookup,model", "--json", str(out_json)]
    proc = spec(env, *args, "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    # The report is the product (stdout); stderr has one plan line and no progress codes.
    for text in ("Speedup over plain decoding", "code-edit", "multi-turn", "Recommendation:"):
        assert text in proc.stdout
    assert "Ceiling on this machine" in proc.stdout
    # A multi-turn prompt makes more generations than prompts: the plan says how.
    plan = proc.stderr.splitlines()[0]
    assert plan.startswith("spec bench: 3 prompts, 4 turns (code-edit, multi-turn, qa) x ")
    assert "\x1b[" not in proc.stderr and "\x1b[" not in proc.stdout

    doc = json.loads(out_json.read_text())
    assert doc["interrupted"] is False
    assert set(doc["machine"]) >= MACHINE_KEYS
    assert doc["model"] == tiny_model and doc["draft_model"] == tiny_draft
    assert doc["settings"]["seed"] == 5 and doc["settings"]["max_tokens"] == 16
    assert {"speedup", "draft_length"} <= set(doc["ceiling"]) and doc["ceiling"]["speedup"] >= 1
    results = doc["results"]
    assert len(results) == (1 + 2 + 1) * 3
    assert all(set(r) >= RESULT_KEYS for r in results)
    assert {r["turn"] for r in results if r["prompt_id"] == "talk"} == {1, 2}
    assert all(r["speedup"] == 1.0 for r in results if r["method"] == "none")
    assert all(r["matches_baseline"] is True for r in results)  # greedy is lossless
    assert all(r["generated_tokens"] == 16 for r in results)
    summary = {(s["category"], s["method"]) for s in doc["summary"]}
    assert ("all", "model") in summary and ("qa", "prompt-lookup") in summary
    assert doc["recommendation"]["command"].startswith("spec run --drafter ")

    with out_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    assert [r["prompt_id"] for r in rows] == [r["prompt_id"] for r in results]


def test_json_dash_puts_json_on_stdout_and_the_report_on_stderr(
    env: dict[str, str], suite: str, tiny_model: str
) -> None:
    args = tiny_args(suite, tiny_model, "-n", "4", "--methods", "prompt-lookup", "--json", "-")
    proc = spec(env, *args, "--category", "qa")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # `none` is added as the baseline, with a note saying so.
    assert [r["method"] for r in doc["results"]] == ["none", "prompt-lookup"]
    assert "added method none" in proc.stderr
    assert "Recommendation:" in proc.stderr


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--methods", "none,model"], 2, "--methods model needs a draft model: pass --draft PATH"),
        (["--methods", "none,warp"], 2, "unknown method 'warp' in --methods"),
        (["--suite", "quik"], 2, "unknown suite 'quik'"),
        (["--category", "poetry"], 2, "suite quick has no category 'poetry'"),
        (["--json", "/no/such/dir/r.json"], 2, "directory /no/such/dir does not exist"),
        (["--json", "same.out", "--plot", "same.out"], 2, "--json and --plot both write same.out"),
        (["--plot", "chart.gif"], 2, "--plot chart.gif: give a file name ending in .png, .svg"),
    ],
)
def test_bad_options_fail_fast_with_one_line(
    env: dict[str, str], extra: list[str], code: int, message: str
) -> None:
    proc = spec(env, "bench", "--model", "/no/model.gguf", *extra)
    assert proc.returncode == code
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stdout == ""


def test_result_files_never_replace_the_suite_or_an_existing_file_unasked(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Results are minutes of measuring, a suite is the user's work: writing over either
    takes --force, and the suite being read is never written over at all."""
    suite = tmp_path / "s.jsonl"
    suite.write_text('{"id": "a", "category": "qa", "turns": ["q"]}\n')
    earlier = tmp_path / "earlier.json"
    earlier.write_text("{}")
    args = ["bench", "--model", "/no/model.gguf", "--suite", str(suite)]
    for extra, message in [
        (["--json", str(earlier)], "already exists: pass --force to overwrite it"),
        (["--csv", str(suite), "--force"], "is one of the files read: write elsewhere"),
    ]:
        proc = spec(env, *args, *extra)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr
    assert earlier.read_text() == "{}" and suite.read_text().startswith('{"id": "a"')


def test_bad_suite_file_names_the_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "category": "qa", "turns": ["q"]}\n{"id": "b", "turns": ["q"]}\n')
    proc = spec(env, "bench", "--suite", str(bad))
    assert proc.returncode == 1
    assert (
        proc.stderr == f'spec: error: {bad}:2: "category" must be a non-empty string (e.g. "qa")\n'
    )


def test_sigterm_keeps_the_results_so_far_and_exits_130(
    env: dict[str, str], suite: str, tiny_model: str, tmp_path: Path
) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = tiny_args(suite, tiny_model, "-n", "8", "--repeats", "2000", "--category", "qa")
    proc = subprocess.Popen(
        [*spec_command(), *args, "--json", str(out_json), "--csv", str(out_csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not out_json.exists():  # written as soon as the first result is in
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no results file after 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = json.loads(out_json.read_text())
    assert doc["interrupted"] is True
    n = len(doc["results"])
    assert 1 <= n < 4000
    with out_csv.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == n
    assert f"interrupted: partial results ({n} generation{'s' if n > 1 else ''})" in stdout


def test_a_prompt_too_long_for_the_context_names_the_prompt(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"id": "huge", "category": "qa", "turns": ["word " * 200]}) + "\n")
    proc = spec(env, *tiny_args(str(long), tiny_model, "-n", "4"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "spec: error: prompt 'huge' is 1001 tokens but the context holds 512: "
        f"raise --ctx-size to 1005 or remove such prompts from {long}"
    )


def test_one_message_names_the_context_every_prompt_needs(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """Raising --ctx-size as told must not just lead to the next prompt's error."""
    rows = [("short", 100), ("huge", 300), ("mid", 200)]
    long = tmp_path / "long.jsonl"
    long.write_text(
        "".join(
            json.dumps({"id": i, "category": "qa", "turns": ["word " * n]}) + "\n" for i, n in rows
        )
    )
    proc = spec(env, *tiny_args(str(long), tiny_model, "-n", "4", "-c", "300"))
    assert proc.returncode == 1
    line = proc.stderr.splitlines()[-1]
    assert line.startswith("spec: error: prompt 'huge' is 1501 tokens but the context holds 300")
    assert "(2 other prompts too): raise --ctx-size to 1505" in line
    ok = spec(env, *tiny_args(str(long), tiny_model, "-n", "4", "-c", "1505", "-r", "1"))
    assert ok.returncode == 0, ok.stderr


def test_a_category_named_all_is_refused(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """ "all" is the overall summary's row: a category of that name would merge with it."""
    suite = tmp_path / "all.jsonl"
    suite.write_text(json.dumps({"id": "a", "category": "all", "turns": ["hi"]}) + "\n")
    proc = spec(env, *tiny_args(str(suite), tiny_model, "-n", "4"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f'spec: error: {suite}:1: category "all" names the overall summary: call it otherwise'
    )


@pytest.mark.parametrize("read", ["model", "preset", "ngram"])
def test_outputs_never_overwrite_the_model_or_cache_read(
    env: dict[str, str], tiny_model: str, tmp_path: Path, read: str
) -> None:
    """--force replaces earlier outputs, never a file the run reads, whether the model
    is given by path or by a preset's name."""
    import shutil

    model = tmp_path / "victim.gguf"
    shutil.copy(tiny_model, model)
    before = model.read_bytes()
    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"id": "a", "category": "qa", "turns": ["hi"]}) + "\n")
    args = tiny_args(str(suite), str(model), "-n", "2")
    if read == "preset":
        config = Path(env["SPEC_CONFIG_DIR"])
        config.mkdir(parents=True, exist_ok=True)
        (config / "models.toml").write_text(f'[models.victim]\npath = "{model}"\n')
        args = tiny_args(str(suite), "victim", "-n", "2")
    target = model
    if read == "ngram":
        target = tmp_path / "cache.npz"
        target.write_bytes(b"not really a cache")
        args = [*args, "--ngram-cache", str(target)]
    before = target.read_bytes()
    proc = spec(env, *args, "--json", str(target), "--force")
    assert proc.returncode == 2, proc.stderr
    assert "is one of the files read: write elsewhere" in proc.stderr.splitlines()[-1]
    assert target.read_bytes() == before


def test_a_run_that_fails_midway_leaves_files_marked_incomplete(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """Six 60-byte turns fit the context, but not with 40-token answers between them: the
    run fails at a later turn, and the files keep what finished, marked as incomplete."""
    grow = tmp_path / "grow.jsonl"
    turns = [f"Turn {i}: " + "tell me more " * 4 for i in range(6)]
    grow.write_text(json.dumps({"id": "g", "category": "chat", "turns": turns}) + "\n")
    out_json, out_csv = tmp_path / "part.json", tmp_path / "part.csv"
    args = tiny_args(str(grow), tiny_model, "-n", "40", "--methods", "none,prompt-lookup")
    proc = spec(env, *args, "--json", str(out_json), "--csv", str(out_csv))
    assert proc.returncode == 1
    error = proc.stderr.splitlines()[-1].removeprefix("spec: error: ")
    assert error.startswith("prompt 'g' turn ") and "but the context holds 512" in error
    assert "Recommendation:" not in proc.stdout
    doc = json.loads(out_json.read_text())
    assert doc["interrupted"] is True and doc["error"] == error
    assert doc["recommendation"] is None
    assert doc["results"] and all(r["turn"] < 6 for r in doc["results"])
    with out_csv.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == len(doc["results"])


def test_ceiling_and_advice_follow_the_draft_length_models_and_sampling(
    env: dict[str, str], suite: str, tiny_model: str
) -> None:
    args = tiny_args(suite, tiny_model, "-n", "4", "--category", "qa", "--draft-max", "0")
    proc = spec(env, *args, "--temperature", "0.7", "--top-k", "40", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ceiling"]["draft_length"] == 0 and doc["ceiling"]["speedup"] == 1.0
    assert "would reach 1.00x at draft length 0" in proc.stderr
    command = doc["recommendation"]["command"]
    assert f"--model {tiny_model} " in command and "--temperature 0.7 --top-k 40" in command
    assert f"use `{command}`" in proc.stderr


@pytest.mark.real
def test_builtin_multi_turn_prompts_run_through_the_real_chat_template(
    env: dict[str, str], default_model: str, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    args = ["bench", "--category", "multi-turn", "-n", "8", "--methods", "none,prompt-lookup"]
    proc = spec(env, *args, "--model", default_model, "--threads", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["settings"]["suite"] == "quick" and doc["settings"]["chat_template"] is True
    results = doc["results"]
    assert [(r["prompt_id"], r["turn"]) for r in results[::2]] == [
        ("mt-01", 1),
        ("mt-01", 2),
        ("mt-02", 1),
        ("mt-02", 2),
    ]
    # The second turn's prompt holds the first exchange, so it is longer than the first.
    first, second = results[0], results[2]
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["generated_tokens"]
    assert "Recommendation:" in proc.stdout


def test_recalibrate_measures_the_machine_again_for_every_later_run(
    tmp_path: Path, suite: str, tiny_model: str
) -> None:
    env = isolated_env(tmp_path)
    args = tiny_args(suite, tiny_model, "-n", "2", "--category", "qa", "--methods", "none")
    assert spec(env, *args).returncode == 0
    (saved,) = (tmp_path / "spec-cache" / "calibration").glob("*.json")
    first = json.loads(saved.read_text())["measured_at"]
    assert spec(env, *args).returncode == 0
    assert json.loads(saved.read_text())["measured_at"] == first  # cached
    proc = spec(env, *args, "--recalibrate")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(saved.read_text())["measured_at"] > first


def test_the_plan_line_counts_in_words(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    suite = tmp_path / "one.jsonl"
    suite.write_text(json.dumps({"id": "a", "category": "qa", "turns": ["hi"]}) + "\n")
    proc = spec(env, *tiny_args(str(suite), tiny_model, "-n", "2", "--methods", "none", "-r", "1"))
    assert proc.returncode == 0, proc.stderr
    assert "spec bench: 1 prompt (qa) x none x 1 = 1 generation\n" in proc.stderr
