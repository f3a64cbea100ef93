"""Recurrent models (Mamba, RWKV, hybrids like LFM2): llama.cpp cannot roll their state
back, so a rejected draft cannot be undone. Output stays the plain output, cache reuse
re-reads what it must, and nothing pretends to draft."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from clitools import isolated_env, spec_command
from fakes import FakeBackend

from spec_cli.backend.base import sync_cache
from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions
from spec_cli.drafters.base import Drafter, NoDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import TokenEvent
from spec_cli.stats import GenerationStats

PROMPT = "abcabcabcabcabc abcabc"


def tokens_of(
    backend: LlamaCppBackend,
    drafter: Drafter,
    prompt: list[int],
    stats: GenerationStats | None = None,
) -> list[int]:
    config = GenerationConfig(24)
    events = generate(backend, drafter, prompt, config, np.random.default_rng(0), stats)
    return [e.token for e in events if isinstance(e, TokenEvent)]


@pytest.fixture(scope="module")
def mamba(tiny_mamba: str) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(tiny_mamba, LoadOptions(n_ctx=256, n_threads=1))
    yield backend
    backend.close()


def test_a_recurrent_model_says_so_and_a_rollback_empties_its_cache(mamba: LlamaCppBackend) -> None:
    assert not mamba.can_roll_back
    mamba.truncate(0)
    prompt = mamba.tokenize(PROMPT)
    mamba.eval(prompt, 1)
    mamba.truncate(len(prompt) - 2)
    assert list(mamba.cached) == []
    # What the emptied cache then reads gives the same logits as a fresh start.
    again = np.array(mamba.eval(prompt, 1))
    mamba.truncate(0)
    fresh = np.array(mamba.eval(prompt, 1))
    assert np.allclose(again, fresh, atol=1e-4)


def test_a_transformer_model_still_rolls_back_in_place(tiny_model: str) -> None:
    backend = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=256, n_threads=1))
    try:
        assert backend.can_roll_back
        prompt = backend.tokenize(PROMPT)
        backend.eval(prompt, 1)
        backend.truncate(len(prompt) - 2)
        assert list(backend.cached) == prompt[:-2]
    finally:
        backend.close()


def test_a_sliding_window_cache_rolls_back_only_where_the_window_is_still_held(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sliding-window cache that has pruned positions below `oldest` can return to
    position n only if n's window starts at or after `oldest`; else it starts over."""
    backend = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=256, n_threads=1))
    try:
        prompt = backend.tokenize(PROMPT)[:20]
        backend.eval(prompt, 1)
        backend._n_swa = 8  # as if its layers saw 8 positions back
        monkeypatch.setattr("llama_cpp.llama_memory_seq_pos_min", lambda mem, seq: 6)
        backend.truncate(15)  # window 7..14: still held
        assert list(backend.cached) == prompt[:15]
        backend.truncate(12)  # window 4..11: positions 4 and 5 were pruned
        assert list(backend.cached) == []
    finally:
        backend.close()


def test_drafts_rejected_on_a_recurrent_target_still_give_the_plain_output(
    mamba: LlamaCppBackend,
) -> None:
    prompt = mamba.tokenize(PROMPT)
    plain = tokens_of(mamba, NoDrafter(), prompt)
    # Prompt lookup on a random model's text is right now and then, wrong more often.
    stats = GenerationStats()
    assert tokens_of(mamba, PromptLookupDrafter(), prompt, stats) == plain
    assert 0 < stats.accepted_tokens < stats.drafted_tokens  # some drafts were undone
    # A second run reuses no stale state: the cache must roll back to the prompt.
    assert tokens_of(mamba, NoDrafter(), prompt) == plain


def test_ctrl_c_mid_answer_leaves_a_recurrent_cache_ready_for_the_next_turn(
    mamba: LlamaCppBackend, tiny_mamba: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is raised as llama_decode returns, after the state took the batch in; the
    state cannot drop it again, so the backend must count it. The chat's next turn then
    gives what a fresh model gives."""
    import llama_cpp

    mamba.truncate(0)
    prompt = mamba.tokenize(PROMPT)
    real = llama_cpp.llama_decode
    calls = {"n": 0}

    def interrupted_on_the_fifth(ctx: object, batch: object) -> int:
        rc = real(ctx, batch)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return int(rc)

    monkeypatch.setattr(llama_cpp, "llama_decode", interrupted_on_the_fifth)
    answer = []
    with pytest.raises(KeyboardInterrupt):
        for event in generate(
            mamba, NoDrafter(), prompt, GenerationConfig(12), np.random.default_rng(0)
        ):
            if isinstance(event, TokenEvent):
                answer.append(event.token)
    monkeypatch.setattr(llama_cpp, "llama_decode", real)
    follow_up = [*prompt, *answer, *mamba.tokenize(" and more", add_bos=False)]
    fresh = LlamaCppBackend(tiny_mamba, LoadOptions(n_ctx=256, n_threads=1))
    try:
        assert tokens_of(mamba, NoDrafter(), follow_up) == tokens_of(fresh, NoDrafter(), follow_up)
    finally:
        fresh.close()


def test_a_recurrent_state_ahead_of_what_is_tracked_is_read_again(
    mamba: LlamaCppBackend,
) -> None:
    """Were a batch to go in untracked anyway, the next evaluation reads the text again
    rather than continuing from a state that holds more than the text."""
    mamba.truncate(0)
    prompt = mamba.tokenize(PROMPT)
    mamba.eval(prompt, 1)
    del mamba._cached[-3:]  # the state holds three tokens the backend lost count of
    got = np.array(mamba.eval(prompt[-3:], 1))
    assert list(mamba.cached) == prompt
    mamba.truncate(0)
    assert np.allclose(got, np.array(mamba.eval(prompt, 1)), atol=1e-4)


def test_sync_cache_rereads_everything_when_the_rollback_emptied_the_cache() -> None:
    fake = FakeBackend(can_roll_back=False)
    sync_cache(fake, [3, 4, 5, 6])
    sync_cache(fake, [3, 4, 7])
    assert fake.batches[-1] == [3, 4, 7]
    assert list(fake.cached) == [3, 4, 7]


def spec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*spec_command(), *args], capture_output=True, text=True, env=env, timeout=120, input=""
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def run_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`spec run` on a short raw prompt file, without a model yet."""
    prompt = tmp_path_factory.mktemp("prompt") / "p.txt"
    prompt.write_text(PROMPT)
    return ["run", str(prompt), "--raw", "--threads", "1", "-n", "16"]


def test_auto_decodes_a_recurrent_target_plainly_with_one_note(
    env: dict[str, str], tiny_mamba: str, run_args: list[str]
) -> None:
    args = [*run_args, "--model", tiny_mamba]
    plain = spec(env, *args, "--drafter", "none")
    auto = spec(env, *args)
    assert plain.returncode == auto.returncode == 0, auto.stderr
    assert auto.stdout == plain.stdout and plain.stdout
    notes = [line for line in auto.stderr.splitlines() if "recurrent" in line]
    assert len(notes) == 1 and "without drafts" in notes[0]


def test_an_explicit_drafter_on_a_recurrent_target_is_one_line_error(
    env: dict[str, str], tiny_mamba: str, run_args: list[str]
) -> None:
    args = [*run_args, "--model", tiny_mamba]
    result = spec(env, *args, "--drafter", "ngram")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "--drafter ngram" in result.stderr
    assert "recurrent" in result.stderr and "Traceback" not in result.stderr


def test_a_recurrent_draft_model_is_refused_and_a_draft_for_one_is_not_loaded(
    env: dict[str, str], tiny_mamba: str, tiny_model: str, run_args: list[str]
) -> None:
    common = run_args
    refused = spec(env, *common, "--model", tiny_model, "--draft", tiny_mamba)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "recurrent" in refused.stderr
    plain = spec(env, *common, "--model", tiny_mamba, "--drafter", "none")
    ignored = spec(env, *common, "--model", tiny_mamba, "--draft", tiny_model)
    assert ignored.returncode == 0, ignored.stderr
    assert ignored.stdout == plain.stdout
    assert ignored.stderr.count("\n") == 1 and "decoding without drafts" in ignored.stderr


def test_bench_on_a_recurrent_target_says_there_is_nothing_to_compare(
    env: dict[str, str], tiny_mamba: str
) -> None:
    result = spec(env, "bench", "--model", tiny_mamba, "--threads", "1")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nothing to compare" in result.stderr
    assert "--drafter none" in result.stderr
