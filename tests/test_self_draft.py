"""`--draft self`: the target's own quantized copy drafts for it, made once and cached."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clitools import isolated_env, spec_command

from spec_cli.errors import ModelError, UsageError
from spec_cli.self_draft import parse, self_draft

PROMPT = "The quick brown fox jumps over the lazy dog. The quick brown"


def spec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*spec_command(), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path / "home")


@pytest.fixture
def prompt(tmp_path: Path) -> str:
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    return str(path)


def run_args(prompt: str, model: str, *extra: str) -> list[str]:
    return ["run", prompt, "-m", model, "--threads", "1", "-n", "24", "--json", *extra]


def test_the_copy_is_made_once_cached_and_gives_the_plain_text(
    env: dict[str, str], prompt: str, tiny_model: str
) -> None:
    plain = spec(env, *run_args(prompt, tiny_model, "--drafter", "none"))
    assert plain.returncode == 0, plain.stderr
    first = spec(env, *run_args(prompt, tiny_model, "--draft", "self", "--drafter", "model"))
    assert first.returncode == 0, first.stderr
    assert "making a Q4_K_M copy of target.gguf to draft with, once" in first.stderr
    data = json.loads(first.stdout)
    copy = Path(data["draft_model"])
    assert copy.parent == Path(env["SPEC_CACHE_DIR"]) / "drafts"
    assert copy.name.startswith("target-") and copy.name.endswith("-q4_k_m.gguf")
    assert copy.stat().st_size < Path(tiny_model).stat().st_size
    assert data["text"] == json.loads(plain.stdout)["text"]
    assert data["stats"]["accepted_tokens"] > 0
    assert not list(copy.parent.glob(".*partial"))

    again = spec(env, *run_args(prompt, tiny_model, "--draft", "self", "--drafter", "model"))
    assert again.returncode == 0, again.stderr
    assert "making" not in again.stderr
    assert json.loads(again.stdout)["draft_model"] == str(copy)

    other = spec(env, *run_args(prompt, tiny_model, "-d", "self:q8_0", "--drafter", "model"))
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["draft_model"].endswith("-q8_0.gguf")


def test_a_target_already_small_is_refused_in_one_line(
    env: dict[str, str], prompt: str, tiny_model: str
) -> None:
    made = spec(env, *run_args(prompt, tiny_model, "-d", "self:q4_0", "--drafter", "model"))
    q4_copy = json.loads(made.stdout)["draft_model"]
    proc = spec(env, *run_args(prompt, q4_copy, "--draft", "self"))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--draft self" in line and "bits a weight" in line and "--draft" in line
    assert proc.stdout == ""


def test_self_names_a_copy_type_or_none() -> None:
    assert parse("self") == "q4_k_m"
    assert parse("self:Q4_0") == "q4_0"
    assert parse("./self") is None and parse("selfish.gguf") is None
    with pytest.raises(UsageError, match="q4_0, q4_1"):
        parse("self:q3")


def test_links_share_the_copy_and_a_damaged_copy_is_made_again(
    env: dict[str, str], prompt: str, tiny_model: str, tmp_path: Path
) -> None:
    first = spec(env, *run_args(prompt, tiny_model, "--draft", "self", "--drafter", "model"))
    copy = Path(json.loads(first.stdout)["draft_model"])
    link = tmp_path / "other-name.gguf"
    link.symlink_to(tiny_model)
    via_link = spec(env, *run_args(prompt, str(link), "--draft", "self", "--drafter", "model"))
    assert via_link.returncode == 0, via_link.stderr
    assert "making" not in via_link.stderr
    assert json.loads(via_link.stdout)["draft_model"] == str(copy)

    # A run killed outright leaves its partial file; a later one that makes the copy
    # clears it. A cut-short copy is noticed and made again.
    stale = copy.with_name(f".{copy.name}.999999.partial")
    stale.write_bytes(b"x" * 100)
    with copy.open("r+b") as f:
        f.truncate(copy.stat().st_size // 2)
    again = spec(env, *run_args(prompt, tiny_model, "--draft", "self", "--drafter", "model"))
    assert again.returncode == 0, again.stderr
    assert "making a Q4_K_M copy" in again.stderr
    assert json.loads(again.stdout)["text"] == json.loads(first.stdout)["text"]
    assert not stale.exists()


def test_bench_without_a_drafting_method_makes_no_copy(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "a", "category": "qa", "prompt": PROMPT}) + "\n")
    args = ["bench", "--suite", str(suite), "-m", tiny_model, "--threads", "1", "-n", "8"]
    proc = spec(env, *args, "-c", "512", "--draft", "self", "--methods", "none,prompt-lookup")
    assert proc.returncode == 0, proc.stderr
    assert "not loading it" in proc.stderr
    assert not (Path(env["SPEC_CACHE_DIR"]) / "drafts").exists()


def test_a_copy_that_cannot_fit_is_refused_before_quantizing(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk gets one line naming the space needed, not a quantizer failure code;
    no partial file is left."""
    import shutil
    from types import SimpleNamespace

    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path / "cache"))
    full = SimpleNamespace(total=10, used=10, free=0)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: full)
    with pytest.raises(ModelError, match=r"not enough free space .* SPEC_CACHE_DIR"):
        self_draft(tiny_model, "q8_0", lambda _: None)
    assert not any(p.suffix in (".gguf", ".partial") for p in (tmp_path / "cache").rglob("*"))


def test_a_partial_copy_left_behind_is_cleared_whatever_the_models_name(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with glob characters must not hide a killed run's partial file."""
    import shutil

    from spec_cli.self_draft import copy_path

    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "tiny[1].gguf"
    shutil.copyfile(tiny_model, target)
    out = copy_path(str(target), "q4_k_m")
    out.parent.mkdir(parents=True)
    stale = out.with_name(f".{out.name}.999999.partial")
    stale.write_bytes(b"x" * 100)
    assert self_draft(str(target), "q4_k_m", lambda note: None) == str(out)
    assert out.exists() and not stale.exists()
