"""The llama.cpp backend and session on tiny generated GGUF models (milliseconds each)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_gguf import BOS, EOS

from spec_cli.backend.base import sync_cache
from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions, check_gguf
from spec_cli.costs import MAX_BATCH
from spec_cli.engine import GenerationConfig, generate
from spec_cli.errors import IncompatibleDraftError, ModelError, PromptError, UsageError
from spec_cli.events import TokenEvent
from spec_cli.result import consume
from spec_cli.sampling import SamplingParams
from spec_cli.session import ModelOptions, Session, open_session
from spec_cli.stats import GenerationStats

TEXT = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # é日😀 ünïcode\n"
# F32 on CPU: a batched row differs from a single-token row only by summation order (logits
# near 10, and the attention reads an F16 cache).
ATOL = 5e-3
# One thread: tiny models gain nothing from more, and on a busy 2-core machine llama.cpp's
# spinning worker threads can slow a token from 0.1 ms to 200 ms.
THREADS = 1


@pytest.fixture
def backend(tiny_model: str) -> Iterator[LlamaCppBackend]:
    b = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=256, n_threads=THREADS))
    yield b
    b.close()


def single_steps(b: LlamaCppBackend, tokens: Sequence[int]) -> np.ndarray:
    """Logits after each token, evaluating one token per call from an empty cache."""
    b.truncate(0)
    return np.stack([b.eval([t], 1)[0].copy() for t in tokens])


def detokenize(b: LlamaCppBackend, tokens: Sequence[int]) -> str:
    return b"".join(b.token_bytes(t) for t in tokens).decode("utf-8")


# -- tokens --------------------------------------------------------------------------------


def test_a_failed_evaluation_is_one_line_with_a_remedy_and_keeps_the_cache(
    backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama_decode failing (out of memory on a GPU: a negative code) reaches the user as
    an error line saying what to try, and the tokens already evaluated stay usable."""
    import llama_cpp

    tokens = backend.tokenize("hello world", add_bos=True)
    backend.eval(tokens, 1)
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: -3)
    with pytest.raises(ModelError, match="lower --ctx-size or offload fewer --gpu-layers") as e:
        backend.eval([5], 1)
    assert "\n" not in str(e.value)
    assert backend.cached == tokens


def test_tokenize_detokenize_round_trip(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(TEXT)
    assert tokens[0] == BOS
    assert detokenize(backend, tokens) == TEXT  # BOS has no text
    assert backend.tokenize(TEXT, add_bos=False) == tokens[1:]


def test_special_tokens_and_vocab(backend: LlamaCppBackend) -> None:
    assert backend.is_eog(EOS)
    assert not backend.is_eog(BOS)
    assert not backend.is_eog(backend.tokenize("a", add_bos=False)[0])
    info = backend.vocab_info()
    assert (info.kind, info.size, info.bos, info.eos) == ("spm", 260, BOS, EOS)
    assert info.eog == frozenset({EOS})
    assert backend.chat_template() is None


# -- evaluation and the cache --------------------------------------------------------------


def test_batched_eval_rows_equal_single_token_evals(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(TEXT)[:40]
    backend.truncate(0)
    batched = backend.eval(tokens, len(tokens)).copy()
    assert batched.shape == (len(tokens), backend.n_vocab)
    assert list(backend.cached) == tokens
    singles = single_steps(backend, tokens)
    np.testing.assert_allclose(batched, singles, atol=ATOL)
    assert (batched.argmax(axis=1) == singles.argmax(axis=1)).all()
    # The rows differ from position to position: the model is not degenerate.
    assert len(set(singles.argmax(axis=1).tolist())) > 5


def test_a_quantized_model_evaluates_a_batch(tiny_model: str, tmp_path: Path) -> None:
    """Quantized weights are where llama.cpp's AMX kernels crash the process on many AMX
    machines (a protection fault on the first multi-token batch)."""
    from spec_cli.backend.quantize import quantize

    q8 = tmp_path / "q8.gguf"
    quantize(tiny_model, str(q8), "q8_0")
    b = LlamaCppBackend(str(q8), LoadOptions(n_ctx=256, n_threads=THREADS))
    try:
        tokens = b.tokenize(TEXT)[:16]
        batched = b.eval(tokens, len(tokens)).copy()
        singles = single_steps(b, tokens)
        # Different kernels for one row and many: close, not equal.
        np.testing.assert_allclose(batched, singles, atol=0.2)
    finally:
        b.close()


def params_passed(monkeypatch: pytest.MonkeyPatch, function: str, field: str) -> list[Any]:
    """The `field` of the parameters each call of llama_cpp's `function` (which takes
    them last) is given, gathered as the calls happen."""
    import llama_cpp

    seen: list[Any] = []
    real = getattr(llama_cpp, function)

    def recording(*args: Any) -> Any:
        seen.append(getattr(args[-1], field))
        return real(*args)

    monkeypatch.setattr(llama_cpp, function, recording)
    return seen


@pytest.mark.parametrize(
    ("amx", "allowed", "extra"), [(True, "", False), (True, "1", True), (False, "", True)]
)
def test_llama_cpp_amx_kernels_stay_off_unless_allowed(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch, amx: bool, allowed: str, extra: bool
) -> None:
    seen = params_passed(monkeypatch, "llama_model_load_from_file", "use_extra_bufts")
    monkeypatch.setattr("spec_cli.backend.llama_cpp.amx_compiled", lambda: amx)
    monkeypatch.setenv("SPEC_LLAMA_AMX", allowed)
    LlamaCppBackend(tiny_model, LoadOptions(n_ctx=64, n_threads=THREADS)).close()
    assert seen == [extra]


@pytest.mark.parametrize(("gpu_layers", "flash_attn"), [(0, "disabled"), (99, "auto")])
def test_flash_attention_is_off_on_the_cpu_and_llama_cpps_choice_on_a_gpu(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch, gpu_layers: int, flash_attn: str
) -> None:
    """On the CPU llama.cpp's flash-attention kernel made verify batches a third dearer
    (and long-context steps twice as dear) for the same output."""
    import llama_cpp

    kinds = {
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED: "disabled",
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO: "auto",
    }
    seen = params_passed(monkeypatch, "llama_init_from_model", "flash_attn_type")
    options = LoadOptions(n_ctx=64, n_threads=THREADS, n_gpu_layers=gpu_layers)
    LlamaCppBackend(tiny_model, options).close()
    assert [kinds.get(v, "enabled") for v in seen] == [flash_attn]


def test_eval_returns_only_the_last_rows(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(TEXT)[:20]
    backend.truncate(0)
    all_rows = backend.eval(tokens, len(tokens)).copy()
    backend.truncate(0)
    last3 = backend.eval(tokens, 3)
    assert last3.shape == (3, backend.n_vocab)
    np.testing.assert_allclose(last3, all_rows[-3:], atol=ATOL)


def test_truncate_and_re_eval_reproduces_logits(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(TEXT)[:30]
    backend.truncate(0)
    reference = backend.eval(tokens, 10).copy()
    # Roll back, evaluate something else in those positions, roll back again, redo.
    backend.truncate(20)
    assert list(backend.cached) == tokens[:20]
    backend.eval([7, 8, 9, 10, 11], 1)
    backend.truncate(20)
    again = backend.eval(tokens[20:], 10)
    np.testing.assert_allclose(again, reference, atol=ATOL)


def test_eval_longer_than_a_batch_keeps_every_requested_row(tiny_model: str) -> None:
    b = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=128, n_threads=THREADS, n_batch=16))
    try:
        tokens = b.tokenize(TEXT)[:50]
        rows = b.eval(tokens, 8).copy()
        assert list(b.cached) == tokens
        np.testing.assert_allclose(rows, single_steps(b, tokens)[-8:], atol=ATOL)
    finally:
        b.close()


def test_eval_past_the_context_is_a_prompt_error(tiny_model: str) -> None:
    """llama.cpp allocates at least 256 tokens: n_ctx stays the size asked for (the engine
    keeps to it), and eval refuses only what the allocation cannot hold."""
    b = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=32, n_threads=THREADS))
    try:
        assert b.n_ctx == 32
        n = b._capacity
        b.eval([10 + i % 200 for i in range(n - 2)], 1)
        with pytest.raises(PromptError, match="context"):
            b.eval([5, 6, 7], 1)
        assert len(b.cached) == n - 2  # unchanged by the refused call
        b.eval([5, 6], 1)  # exactly full is fine
    finally:
        b.close()


def test_sync_cache_reuses_the_common_prefix(backend: LlamaCppBackend) -> None:
    tokens = backend.tokenize(TEXT)[:30]
    backend.truncate(0)
    backend.eval(tokens, 1)
    evaluated: list[int] = []
    real_eval = backend.eval

    def counting_eval(toks: Sequence[int], n_logits: int = 1) -> np.ndarray:
        evaluated.extend(toks)
        return real_eval(toks, n_logits)

    backend.eval = counting_eval  # type: ignore[method-assign,assignment]
    changed = [*tokens[:25], 100, 101]
    rows = sync_cache(backend, changed, n_logits=2)
    rows = None if rows is None else rows.copy()  # a view, valid until the next eval
    assert evaluated == [100, 101]  # only the new suffix
    assert list(backend.cached) == changed
    assert rows is not None
    np.testing.assert_allclose(rows, single_steps(backend, changed)[-2:], atol=ATOL)
    # Already cached: the last n_logits tokens are re-evaluated to produce logits.
    evaluated.clear()
    sync_cache(backend, changed, n_logits=1)
    assert evaluated == [101]
    evaluated.clear()
    assert sync_cache(backend, changed[:10]) is None
    assert evaluated == []
    assert list(backend.cached) == changed[:10]


# -- model files ---------------------------------------------------------------------------


def test_check_gguf_refuses_missing_directory_and_non_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        check_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelError, match="directory"):
        check_gguf(str(tmp_path))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(ModelError, match="not a GGUF"):
        check_gguf(str(junk))


def test_truncated_gguf_is_a_model_error(tiny_model: str, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(tiny_model).read_bytes()[:5000])
    with pytest.raises(ModelError):
        LlamaCppBackend(str(cut), LoadOptions(n_ctx=64))


# -- sessions: drafting with real models is lossless ---------------------------------------


def generate_tokens(
    session: Session,
    drafter: str,
    prompt_text: str,
    *,
    max_tokens: int = 64,
    sampling: SamplingParams = SamplingParams(),
    seed: int = 0,
) -> tuple[list[int], GenerationStats]:
    stats = GenerationStats()
    events = session.stream(
        session.raw_prompt(prompt_text),
        session.make_drafter(drafter),
        GenerationConfig(max_tokens, sampling, draft_max=8),
        np.random.default_rng(seed),
        stats,
    )
    return consume(events).tokens, stats


def test_model_drafter_greedy_output_is_identical_to_plain(
    tiny_model: str, tiny_draft: str
) -> None:
    with open_session(ModelOptions(tiny_model, tiny_draft, ctx_size=512, threads=THREADS)) as s:
        for prompt in ("The quick brown fox", TEXT, "a b c d e f g"):
            plain, plain_stats = generate_tokens(s, "none", prompt)
            spec, stats = generate_tokens(s, "model", prompt)
            assert spec == plain, prompt
            assert len(plain) == 64
            assert plain_stats.target_calls == 64
            # The noised draft is right often but not always: both paths were exercised.
            assert 0 < stats.accepted_tokens < stats.drafted_tokens
            assert stats.target_calls < 64


def test_target_as_its_own_draft_has_every_draft_accepted(tiny_model: str) -> None:
    """Same weights, same kernels: each greedy draft is exactly what the target picks, so
    the only target calls are one per full draft of 8 plus its bonus token."""
    with open_session(ModelOptions(tiny_model, tiny_model, ctx_size=512, threads=THREADS)) as s:
        plain, _ = generate_tokens(s, "none", TEXT, max_tokens=45)
        spec, stats = generate_tokens(s, "model", TEXT, max_tokens=45)
    assert spec == plain
    assert stats.accepted_tokens == stats.drafted_tokens == 40
    assert stats.target_calls == 5


def test_prompt_lookup_greedy_output_is_identical_to_plain(tiny_model: str) -> None:
    with open_session(ModelOptions(tiny_model, ctx_size=512, threads=THREADS)) as s:
        plain, _ = generate_tokens(s, "none", TEXT * 2, max_tokens=96)
        spec, stats = generate_tokens(s, "prompt-lookup", TEXT * 2, max_tokens=96)
        assert spec == plain
        assert stats.drafted_tokens > 0


def test_sampled_model_drafting_repeats_with_a_seed(tiny_model: str, tiny_draft: str) -> None:
    sampling = SamplingParams(temperature=1.0)
    with open_session(ModelOptions(tiny_model, tiny_draft, ctx_size=512, threads=THREADS)) as s:
        a, stats = generate_tokens(s, "model", TEXT, sampling=sampling, seed=3)
        b, _ = generate_tokens(s, "model", TEXT, sampling=sampling, seed=3)
        c, _ = generate_tokens(s, "model", TEXT, sampling=sampling, seed=4)
    assert a == b
    assert a != c
    assert stats.accepted_tokens > 0


def test_incompatible_draft_is_refused(tiny_model: str, tiny_other_vocab: str) -> None:
    with pytest.raises(IncompatibleDraftError, match="vocabulary sizes differ"):
        open_session(ModelOptions(tiny_model, tiny_other_vocab, ctx_size=128, threads=THREADS))


def test_slightly_padded_draft_vocabulary_is_accepted_and_drafts_stay_in_range(
    tiny_model: str, tiny_padded_vocab: str
) -> None:
    """Same ids for every shared token, two extra at the end: accepted (as llama.cpp does),
    and the draft model never proposes an id the target does not have, greedy or sampled
    (its q then covers the target's ids only, as rejection sampling needs)."""
    with open_session(
        ModelOptions(tiny_model, tiny_padded_vocab, ctx_size=128, threads=THREADS)
    ) as s:
        assert s.draft is not None and s.draft.n_vocab == s.target.n_vocab + 2
        prompt = s.raw_prompt("hello world, hello")
        for sampling in (SamplingParams(), SamplingParams(temperature=0.8)):
            config = GenerationConfig(24, sampling, draft_max=6)
            drafter = s.make_drafter("model")
            events = list(generate(s.target, drafter, prompt, config, np.random.default_rng(0)))
            tokens = [e.token for e in events if isinstance(e, TokenEvent)]
            assert all(t < s.target.n_vocab for t in tokens)


def test_compatible_draft_is_accepted(tiny_model: str, tiny_draft: str) -> None:
    with open_session(ModelOptions(tiny_model, tiny_draft, ctx_size=128, threads=THREADS)) as s:
        assert s.draft_path == tiny_draft
        assert s.target.vocab_info() == s.draft.vocab_info()  # type: ignore[union-attr]


def test_model_drafter_without_a_draft_model_is_a_usage_error(tiny_model: str) -> None:
    with (
        open_session(ModelOptions(tiny_model, ctx_size=128, threads=THREADS)) as s,
        pytest.raises(UsageError),
    ):
        s.make_drafter("model")


def test_a_context_llama_cpp_cannot_create_is_a_model_error_and_frees_once(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when --ctx-size asks for more memory than there is (llama.cpp returns NULL)."""
    monkeypatch.setattr(
        "spec_cli.backend.llama_cpp.lc.llama_init_from_model", lambda model, params: None
    )
    with pytest.raises(ModelError, match="--ctx-size"):
        LlamaCppBackend(tiny_model, LoadOptions(n_threads=THREADS))
    gc.collect()  # a second free of the model here would crash the test process


def test_a_small_context_still_holds_a_full_verify_batch(tiny_model: str) -> None:
    """llama.cpp limits a call to the context asked for (and rounds the context up to
    256 anyway): a tiny --ctx-size must not shrink calls below one full draft, which the
    cost calibration also times."""
    b = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=16, n_threads=THREADS))
    try:
        assert b.n_ctx >= 16 and b.n_batch >= MAX_BATCH
        tokens = (b.tokenize("hello hello hello hello hello hello", add_bos=True) * 64)[:MAX_BATCH]
        assert b.eval(tokens, MAX_BATCH).shape == (MAX_BATCH, b.n_vocab)
    finally:
        b.close()


def test_ctrl_c_while_loading_stops_the_load(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The signal arrives while llama.cpp is loading (inside its callbacks, where Python
    cannot raise): loading stops and KeyboardInterrupt follows, with nothing printed."""
    from spec_cli.signals import deferred_interrupts as real

    @contextlib.contextmanager
    def interrupted_at_once() -> Iterator[Callable[[], bool]]:
        with real() as interrupted:
            os.kill(os.getpid(), signal.SIGINT)
            yield interrupted

    monkeypatch.setattr("spec_cli.backend.llama_cpp.deferred_interrupts", interrupted_at_once)
    with pytest.raises(KeyboardInterrupt):
        LlamaCppBackend(tiny_model, LoadOptions(n_threads=THREADS))
    assert "Exception ignored" not in capfd.readouterr().err


def test_the_default_context_never_exceeds_what_the_model_was_trained_on(
    tiny_model: str,
) -> None:
    """4096 tokens by default, but a model trained on fewer (the tiny one: 512) gets its
    own: positions it never saw would silently degrade the text. 0 asks for the model's
    own; an explicit size is the user's to choose (open_session notes it)."""
    sizes = {}
    for asked in (None, 0, 1024):
        b = LlamaCppBackend(tiny_model, LoadOptions(n_ctx=asked, n_threads=THREADS))
        sizes[asked] = (b.n_ctx, b.n_ctx_train)
        b.close()
    assert sizes == {None: (512, 512), 0: (512, 512), 1024: (1024, 512)}


def test_the_default_thread_count_stays_within_the_cpus_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under taskset or a container's CPU set, more threads than usable CPUs only spin."""
    from spec_cli.backend import llama_cpp as backend

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    backend.physical_cores.cache_clear()
    try:
        assert backend.physical_cores() == 1
    finally:
        backend.physical_cores.cache_clear()
