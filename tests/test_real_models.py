"""End to end on the real SmolLM2-135M: speculative greedy output is the target's own.

The target is an all-F32 copy of the default model, so its greedy argmax does not hinge
on quantized-kernel rounding that differs between batched and single-token evaluation;
the shipped Q4_1 file drafts for it (same tokenizer, different weights).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from spec_cli.engine import GenerationConfig
from spec_cli.result import Result, consume
from spec_cli.session import ModelOptions, Session, open_session
from spec_cli.stats import GenerationStats

pytestmark = pytest.mark.real

# A code edit: the answer repeats much of the prompt, so prompt lookup has something to copy.
PROMPT = """Here is a Python function:

def summarize(values):
    total = 0
    for v in values:
        total += v
    return total

Rewrite this function with the variable `total` renamed to `result`. Reply with only the code."""
MAX_TOKENS = 64
# One thread: on a busy two-core machine llama.cpp's spinning workers make two far slower.
THREADS = 1


@pytest.fixture(scope="module")
def session(default_model_f32: str, default_model: str) -> Iterator[Session]:
    with open_session(
        ModelOptions(default_model_f32, default_model, ctx_size=512, threads=THREADS)
    ) as s:
        yield s


@pytest.fixture(scope="module")
def plain(session: Session) -> Result:
    return run(session, "none")[0]


def run(session: Session, drafter: str) -> tuple[Result, GenerationStats]:
    stats = GenerationStats()
    prompt = session.chat_prompt([{"role": "user", "content": PROMPT}])
    events = session.stream(
        prompt,
        session.make_drafter(drafter),
        GenerationConfig(MAX_TOKENS, draft_max=8),
        np.random.default_rng(0),
        stats,
    )
    return consume(events), stats


def test_plain_run_is_a_real_answer(plain: Result) -> None:
    assert len(plain.tokens) >= 32
    assert "result" in plain.text or "summarize" in plain.text


@pytest.mark.parametrize("drafter", ["prompt-lookup", "model"])
def test_speculative_greedy_output_is_token_identical(
    session: Session, plain: Result, drafter: str
) -> None:
    result, stats = run(session, drafter)
    assert result.tokens == plain.tokens
    assert result.text == plain.text
    assert result.finish_reason == plain.finish_reason
    # The drafter really contributed: drafts were accepted, so fewer target calls.
    assert stats.accepted_tokens > 0
    assert stats.target_calls < len(plain.tokens)


def test_auto_leaves_out_a_draft_model_slower_than_the_target(
    default_model: str, default_model_f32: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The F32 copy drafting for the Q4_1 model costs over two target calls a token: no
    draft length can pay, so `auto` must not spend its warm-up on it."""
    from spec_cli.costs import CostModel
    from spec_cli.drafters.auto import AutoDrafter

    opts = ModelOptions(default_model, default_model_f32, ctx_size=512, threads=THREADS)
    with open_session(opts) as slow:
        slow._costs = CostModel((1.0, 1.9, 2.4), draft_token=2.2)  # as measured here
        drafter = slow.make_drafter("auto")
        assert isinstance(drafter, AutoDrafter) and drafter.model is None
        drafter.close()
    assert "cannot save time" in capsys.readouterr().err
