"""Build a ready engine (target, draft backend, drafter) from options: the one place
commands get one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spec_cli import hub
from spec_cli.chat_template import render
from spec_cli.compat import incompatibility
from spec_cli.costs import CostModel
from spec_cli.drafters.base import Drafter, NoDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.envflags import flag
from spec_cli.errors import IncompatibleDraftError, ModelError, PromptError, UsageError
from spec_cli.events import Event
from spec_cli.stats import GenerationStats
from spec_cli.textstream import stream_text

if TYPE_CHECKING:
    from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions

DRAFTERS = ("auto", "none", "prompt-lookup", "ngram", "model")


# Why a recurrent model (Mamba, RWKV, hybrids) can neither be drafted for nor draft.
CANNOT_ROLL_BACK = (
    "keeps a recurrent state that llama.cpp cannot roll back to before a rejected draft"
)


@dataclass(frozen=True)
class ModelOptions:
    """Which models to load and how."""

    model: str | None = None
    draft: str | None = None
    ctx_size: int | None = None  # None: DEFAULT_CONTEXT, or the model's own when smaller
    threads: int = 0
    gpu_layers: int = 0
    draft_gpu_layers: int = 0
    auto_draft: bool = True  # no --draft: use a preset target's draft if already local
    notify: Callable[[str], None] | None = None  # one-line notes (default: stderr)


class Session:
    """A loaded target (and optional draft model) with helpers to prompt and generate."""

    def __init__(
        self,
        target: LlamaCppBackend,
        draft: LlamaCppBackend | None = None,
        chat_template: str | None = None,
        notify: Callable[[str], None] = hub.note,
    ) -> None:
        self.target = target
        self.draft = draft
        self.chat_template = chat_template  # a preset's override of the GGUF's template
        self.notify = notify
        self._noted_recurrent = False
        self._costs: CostModel | None = None

    @property
    def model_path(self) -> str:
        return self.target.path

    @property
    def draft_path(self) -> str | None:
        return self.draft.path if self.draft else None

    def make_drafter(
        self, name: str, ngram_cache: str | None = None, learn: bool | None = None
    ) -> Drafter:
        """A fresh drafter by name; `model` needs a draft model. With `learn` (default:
        unless SPEC_NO_LEARN=1) it reads and adds to what earlier runs learned."""
        learn = _learning() if learn is None else learn
        from spec_cli.drafters.model import ModelDrafter
        from spec_cli.drafters.prompt_lookup import PromptLookupDrafter

        if name == "none":
            return NoDrafter()
        if not self.target.can_roll_back and name in DRAFTERS:
            return self._plain_for_recurrent(name)
        if name == "prompt-lookup":
            return PromptLookupDrafter()
        if name == "model":
            if self.draft is None:
                raise UsageError("--drafter model needs a draft model: pass --draft PATH")
            return ModelDrafter(self.draft, vocab_limit=self.target.n_vocab)
        if name == "ngram":
            return self._ngram_drafter(ngram_cache, learn)
        if name == "auto":
            from spec_cli.drafters.auto import AutoDrafter

            model = (
                ModelDrafter(self.draft, vocab_limit=self.target.n_vocab)
                if self.draft is not None and self._draft_can_pay()
                else None
            )
            cheap = [PromptLookupDrafter(), self._ngram_drafter(ngram_cache, learn)]
            if not learn or model is None or self.draft is None:
                return AutoDrafter(cheap, self.cost_model(), model, is_end=self.target.is_eog)
            from spec_cli.acceptance_store import load_acceptance, save_acceptance

            target, draft = self.target, self.draft
            return AutoDrafter(
                cheap,
                self.cost_model(),
                model,
                acceptance=load_acceptance(target, draft),
                on_close=lambda learned: save_acceptance(target, draft, learned),
                is_end=self.target.is_eog,
            )
        raise UsageError(f"unknown drafter {name!r}: choose one of {', '.join(DRAFTERS)}")

    def cannot_draft(self) -> str | None:
        """Why nothing can draft for this target (a recurrent model), or None."""
        if self.target.can_roll_back:
            return None
        return f"{Path(self.target.path).name} {CANNOT_ROLL_BACK}"

    def _plain_for_recurrent(self, name: str) -> Drafter:
        """A recurrent target cannot take back a rejected draft's tokens, so nothing can
        draft for it: `auto` decodes plainly (with a note), other drafters are refused."""
        why = self.cannot_draft()
        if name != "auto":
            raise UsageError(f"--drafter {name} cannot work here: {why}; use --drafter none")
        if not self._noted_recurrent:
            self._noted_recurrent = True
            self.notify(f"decoding without drafts: {why}")
        return NoDrafter()

    def _draft_can_pay(self) -> bool:
        """Whether a draft-model token costs less than a target call here: if not, no
        draft of any length saves time, and `auto` leaves the model out (with a note)."""
        cost = self.cost_model().draft_token
        if cost < 1.0:
            return True
        self.notify(
            f"the draft model costs {cost:.2f} target calls per token on this machine, so "
            "drafting with it cannot save time: auto uses prompt lookup and n-grams only"
        )
        return False

    def _ngram_drafter(self, ngram_cache: str | None, learn: bool) -> Drafter:
        from spec_cli.drafters.ngram import NgramDrafter
        from spec_cli.ngram_store import PersistentNgrams, load_static

        vocab = self.target.vocab_id()
        static = load_static(ngram_cache, vocab) if ngram_cache else None
        learned = PersistentNgrams(
            vocab,
            on_unsaved=lambda where: self.notify(
                f"could not save this run's n-grams in {where}, so later runs cannot draft "
                "from them: make it writable or set SPEC_CACHE_DIR to a writable directory"
            ),
        )
        return NgramDrafter(learned if learn else None, static)

    def cost_model(self) -> CostModel:
        """This machine's measured costs for these models (cached after the first run)."""
        from spec_cli.backend.llama_cpp import build_id
        from spec_cli.calibration import load_or_measure

        if self._costs is None:
            self._costs = load_or_measure(
                self.target,
                self.draft,
                build_id(),
                on_measure=lambda: self.notify(
                    "measuring this machine's verify costs once for this model (a few seconds)"
                ),
                on_unsaved=lambda where: self.notify(
                    f"could not save the measurement in {where}, so every run measures "
                    "again: make it writable or set SPEC_CACHE_DIR to a writable directory"
                ),
            )
        return self._costs

    def prompt(self, text: str, system: str | None = None, raw: bool = False) -> list[int]:
        """Tokens asking the model to answer `text` (as a user message, after `system`),
        or `text` as is when `raw` or when the model has no chat template."""
        if system is not None and not self.has_chat_template():
            raise UsageError(
                f"{self.model_path} has no chat template, so it takes no --system prompt"
            )
        self.refuse_oversized(text)
        if raw or not self.has_chat_template():
            return self.raw_prompt(text)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": text})
        return self.chat_prompt(messages)

    def has_chat_template(self) -> bool:
        return (self.chat_template or self.target.chat_template()) is not None

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Tokens of a conversation rendered with the model's template, ready to answer."""
        return self.chat_tokens(self.chat_text(messages))

    def chat_text(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """A conversation rendered as text with the model's template (`spec chat` renders
        it with and without the generation prompt to find each turn's new tokens)."""
        template = self.chat_template or self.target.chat_template()
        if template is None:
            raise UsageError(
                f"{self.model_path} has no chat template: use --raw to send the text as is"
            )
        bos, eos = self._special_texts()
        return render(
            template,
            messages,
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=add_generation_prompt,
        )

    def chat_tokens(self, text: str) -> list[int]:
        """Tokens of a whole rendered conversation: BOS added unless the template wrote it."""
        bos, _ = self._special_texts()
        add_bos = self.target.add_bos and not (bos and text.startswith(bos))
        return self.target.tokenize(text, add_bos=add_bos, special=True)

    def _special_texts(self) -> tuple[str, str]:
        specials = self.target.special_tokens()
        bos = self.target.token_text(specials["bos"]) if specials["bos"] >= 0 else ""
        eos = self.target.token_text(specials["eos"]) if specials["eos"] >= 0 else ""
        return bos, eos

    def refuse_oversized(self, text: str) -> None:
        """Refuse text no context of this size can hold whatever its tokens, before the
        tokenizer spends seconds a megabyte on it (uninterruptibly: native code)."""
        size = len(text.encode("utf-8", errors="surrogatepass"))
        if size > self.target.n_ctx * MAX_BYTES_PER_TOKEN:
            raise PromptError(
                f"the prompt is {size:,} bytes, far more than a context of "
                f"{self.target.n_ctx} tokens holds: shorten it or raise --ctx-size"
            )

    def raw_prompt(self, text: str) -> list[int]:
        return self.target.tokenize(text, add_bos=self.target.add_bos, special=True)

    def stream(
        self,
        prompt: Sequence[int],
        drafter: Drafter,
        config: GenerationConfig,
        rng: np.random.Generator,
        stats: GenerationStats,
        stops: Sequence[str] = (),
    ) -> Iterator[Event]:
        """Text-level events for one generation."""
        return stream_text(
            generate(self.target, drafter, prompt, config, rng, stats),
            self.target.token_bytes,
            stops,
        )

    def close(self) -> None:
        if self.draft is not None:
            self.draft.close()
        self.target.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# More bytes than any vocabulary's longest token: text longer than this per context
# token cannot fit.
MAX_BYTES_PER_TOKEN = 1024


def _learning() -> bool:
    """Whether runs learn from each other (n-grams, acceptance); SPEC_NO_LEARN=1 stops it."""
    return not flag("SPEC_NO_LEARN")


def open_session(options: ModelOptions) -> Session:
    """Resolve and load the target and, if given, the draft model (checked compatible).

    Without --draft, a preset target gets the first of its drafts already on this
    machine (never downloaded), with a note; one that does not fit is dropped with a note.
    """
    from spec_cli.backend.llama_cpp import LoadOptions

    notify = options.notify or hub.note
    target_path = hub.resolve(options.model, notify=notify)
    draft_path = _draft_path(options.draft, target_path, notify)
    auto = None
    if draft_path is None and options.auto_draft:
        auto = hub.pick_local_draft(options.model, notify)
        draft_path = auto[1] if auto else None
    target = _load(target_path, LoadOptions(options.ctx_size, options.threads, options.gpu_layers))
    _note_useless_settings(options, target, notify)
    template = hub.chat_template_for(options.model)
    if not target.can_roll_back:
        draft_path = None  # nothing can draft for it: make_drafter says so, once
    if draft_path is None:
        return Session(target, chat_template=template, notify=notify)
    try:
        draft = _load(
            draft_path,
            LoadOptions(target.n_ctx, options.threads, options.draft_gpu_layers),
        )
    except ModelError as e:
        if auto is None:
            target.close()
            raise
        notify(f"not using draft {auto[0]}: {e}")
        return Session(target, chat_template=template, notify=notify)
    except Exception:
        target.close()
        raise
    reason = incompatibility(target.vocab_info(), draft.vocab_info())
    advice = "pick a draft from the same model family (same tokenizer)"
    if reason is None and not draft.can_roll_back:
        reason = f"it {CANNOT_ROLL_BACK}"
        advice = "pick a transformer draft model"
    if reason is not None:
        draft.close()
        if auto is not None:
            notify(f"not using draft {auto[0]}: {reason}")
            return Session(target, chat_template=template, notify=notify)
        target.close()
        raise IncompatibleDraftError(
            f"draft model {draft_path} cannot draft for {target_path}: {reason}; {advice}"
        )
    if auto is not None:
        notify(f"using draft {auto[0]} (pass --draft to choose another)")
    return Session(target, draft, chat_template=template, notify=notify)


def _note_useless_settings(
    options: ModelOptions, target: LlamaCppBackend, notify: Callable[[str], None]
) -> None:
    """Settings that load fine but work against the user: a note each, then go on."""
    from spec_cli.backend.llama_cpp import physical_cores

    trained = target.n_ctx_train
    if options.ctx_size and trained and options.ctx_size > trained:
        notify(
            f"--ctx-size {options.ctx_size} is beyond the {trained} tokens "
            f"{Path(target.path).name} was trained on: text past that may lose coherence"
        )
    if options.threads and options.gpu_layers == 0 and options.threads > physical_cores():
        notify(
            f"--threads {options.threads} is more than the {physical_cores()} physical cores this "
            "process may use: CPU decoding usually gets slower, not faster"
        )


def _draft_path(draft: str | None, target: str, notify: Callable[[str], None]) -> str | None:
    """The --draft file: `self[:TYPE]` is the target's own quantized copy (made once)."""
    from spec_cli import self_draft

    if draft is None:
        return None
    kind = self_draft.parse(draft)
    if kind is not None:
        return self_draft.self_draft(target, kind, notify)
    return hub.resolve(draft, notify=notify)


def _load(path: str, options: LoadOptions) -> LlamaCppBackend:
    """Load a model; when llama.cpp refuses it, say why if the header tells (truncated)."""
    from spec_cli.backend.llama_cpp import LlamaCppBackend

    try:
        return LlamaCppBackend(path, options)
    except ModelError:
        hub.explain_load_failure(path)
        raise
