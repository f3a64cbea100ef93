"""Option declarations shared by `run`, `chat` and `bench` (types only, no logic)."""

from __future__ import annotations

from typing import Annotated

import typer

Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Target GGUF: a path, a preset name or hf:OWNER/REPO/FILE."),
]
DraftModel = Annotated[
    str | None,
    typer.Option(
        "--draft",
        "-d",
        "--model-draft",
        "-md",
        help="Draft GGUF with the same vocabulary as the target; `self` (or self:q4_0, "
        "...): the target's own quantized copy, made once.",
    ),
]


def _known_drafter(name: str) -> str:
    """Refuse a misspelt drafter before any model loads."""
    from spec_cli.session import DRAFTERS

    if name not in DRAFTERS:
        raise typer.BadParameter(f"{name!r} is not one of {', '.join(DRAFTERS)}")
    return name


DrafterName = Annotated[
    str,
    typer.Option(
        "--drafter",
        callback=_known_drafter,
        help="auto, none (plain decoding), prompt-lookup, ngram or model.",
    ),
]
DEFAULT_DRAFT_MAX = 32  # spec_cli.engine.DEFAULT_DRAFT_MAX, without importing the engine
DraftMax = Annotated[int, typer.Option("--draft-max", min=0, max=64, help="Longest draft.")]
MaxTokens = Annotated[
    int,
    typer.Option(
        "--max-tokens", "-n", "--n-predict", min=1, help="Stop after this many new tokens."
    ),
]
UNLIMITED = -1


def _no_zero(n: int) -> int:
    if n == 0:
        raise typer.BadParameter("0 new tokens generates nothing: give N >= 1, or -1")
    return n


# `run` alone takes llama.cpp's -1: a chat turn and a bench need a budget to plan with.
MaxTokensOrAll = Annotated[
    int,
    typer.Option(
        "--max-tokens",
        "-n",
        "--n-predict",
        min=UNLIMITED,
        callback=_no_zero,
        help="Stop after this many new tokens (-1: when the model stops or the context is full).",
    ),
]
Temperature = Annotated[
    float,
    typer.Option(
        "--temperature", "-t", "--temp", min=0.0, help="0 is greedy; > 0 samples (lossless)."
    ),
]
TopK = Annotated[int, typer.Option("--top-k", min=0, help="Keep the k likeliest tokens (0: off).")]
# The ranges of top-p and min-p are half-open, which the option parser cannot say:
# SamplingParams checks them, and the help states them.
TopP = Annotated[float, typer.Option("--top-p", help="Nucleus mass, in (0, 1] (1: off).")]
MinP = Annotated[
    float, typer.Option("--min-p", help="Drop tokens below min-p x top prob, in [0, 1) (0: off).")
]


def _random_when_minus_one(seed: int | None) -> int | None:
    """llama.cpp's convention: a seed of -1 asks for a random one."""
    return None if seed == -1 else seed


Seed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        min=-1,
        callback=_random_when_minus_one,
        help="Seed for repeatable sampling (-1: random).",
    ),
]
CtxSize = Annotated[
    int | None,
    typer.Option(
        "--ctx-size",
        "-c",
        min=0,
        show_default=False,
        help="Context tokens (default: 4096, or the model's own when smaller; 0: the model's own).",
    ),
]
# ggml's own limit (GGML_MAX_N_THREADS): more crashed or hung inside llama.cpp.
MAX_THREADS = 512
Threads = Annotated[
    int,
    typer.Option("--threads", min=0, max=MAX_THREADS, help="CPU threads (0: all physical cores)."),
]
GpuLayers = Annotated[
    int,
    typer.Option(
        "--gpu-layers",
        "-ngl",
        min=-1,
        help="Target layers to offload to the GPU (-1: all; needs a Metal/CUDA build).",
    ),
]
DraftGpuLayers = Annotated[
    int, typer.Option("--draft-gpu-layers", min=-1, help="Draft-model layers on the GPU.")
]
NgramCache = Annotated[
    str | None,
    typer.Option("--ngram-cache", help="Static n-gram cache from `spec ngram build`."),
]
Color = Annotated[
    str, typer.Option("--color", help="auto (colours on a terminal), always or never.")
]
