"""Long runs and many runs in one process keep memory and file descriptors flat.

RSS comes from /proc/self/statm (Linux). The tiny model's whole KV cache at 4096 tokens
is 2 MB, so a long run may grow by at most that much; anything per token or per
session beyond it is a leak.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions
from spec_cli.drafters.base import Drafter, NoDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import TokenEvent
from spec_cli.result import consume
from spec_cli.session import ModelOptions, Session, open_session
from spec_cli.stats import GenerationStats

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
MB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident memory of this process in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("drafter", [NoDrafter, PromptLookupDrafter], ids=["none", "prompt-lookup"])
def test_memory_stays_flat_over_a_long_generation(tiny_model: str, drafter: type[Drafter]) -> None:
    """2,000 tokens in one generation (drafts, rollbacks and all): RSS grows by less
    than 2 MB between the 25% mark and the end, i.e. nothing is kept per token."""
    n = 2000
    backend = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=4096, n_threads=1))
    try:
        prompt = backend.tokenize("Once upon a time there was a tiny model. ", add_bos=True)
        samples: dict[int, int] = {}
        count = 0
        config = GenerationConfig(n, draft_max=8)
        for event in generate(backend, drafter(), prompt, config, np.random.default_rng(0)):
            if isinstance(event, TokenEvent):
                count += 1
                if count % 250 == 0:
                    samples[count] = rss()
        assert count == n
    finally:
        backend.close()
    growth = samples[n] - samples[n // 4]
    assert growth < 2 * MB, {k: round(v / MB, 2) for k, v in samples.items()}


def one_session(tiny_model: str, tiny_draft: str, i: int) -> Session:
    """Alternately a target alone (prompt lookup) and a target with a draft model."""
    return open_session(
        ModelOptions(
            tiny_model,
            tiny_draft if i % 2 else None,
            ctx_size=1024,
            threads=1,
            auto_draft=False,
        )
    )


def use(session: Session, i: int) -> list[int]:
    prompt = session.raw_prompt("hello world, hello world, hello")
    drafter = session.make_drafter("model" if session.draft else "prompt-lookup")
    events = session.stream(
        prompt, drafter, GenerationConfig(12), np.random.default_rng(i), GenerationStats()
    )
    result = consume(events)
    drafter.close()
    return result.tokens


def test_many_sessions_leak_no_contexts_or_descriptors(tiny_model: str, tiny_draft: str) -> None:
    """120 open-generate-close cycles, as `spec` commands and the benchmark do in one
    process: after a 20-session warm-up, RSS grows by under 4 MB and no file descriptor
    stays open. (A leaked session holds ~2 MB of llama.cpp context: 100 would add
    200 MB.)"""
    outputs = set()
    for i in range(20):
        with one_session(tiny_model, tiny_draft, i) as session:
            outputs.add(tuple(use(session, i)))
    gc.collect()
    base_rss, base_fds = rss(), open_fds()
    for i in range(20, 120):
        with one_session(tiny_model, tiny_draft, i) as session:
            outputs.add(tuple(use(session, i)))
    gc.collect()
    assert open_fds() == base_fds
    assert rss() - base_rss < 4 * MB, round((rss() - base_rss) / MB, 2)
    # Greedy and lossless: every session, with or without a draft model, said the same.
    assert len(outputs) == 1


def test_the_leak_check_would_notice_a_leak(tiny_model: str, tiny_draft: str) -> None:
    """Guard against a check that cannot fail: 10 sessions left open add far more than
    the 4 MB allowed to 100 closed ones. Measured in a fresh interpreter, where freed
    memory from earlier tests cannot be reused to hide the growth."""
    import subprocess

    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_soak import one_session, rss
before = rss()
kept = [one_session({tiny_model!r}, {tiny_draft!r}, 0) for _ in range(10)]
print(rss() - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout.strip().splitlines()[-1]) > 8 * MB
