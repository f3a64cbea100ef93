"""Run every method on every prompt, interleaved so machine drift hits all methods alike.

For each prompt, each repeat and each turn, every method generates from the same prompt
tokens with the same seed, in an order rotated from one group to the next: a method is
never always first (cold caches) or always last (a warming CPU). Multi-turn prompts carry
the `none` method's answers as history, so all methods see the same conversation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from spec_cli.bench.suites import BenchPrompt
from spec_cli.drafters.base import Drafter
from spec_cli.engine import DEFAULT_DRAFT_MAX, GenerationConfig
from spec_cli.errors import PromptError
from spec_cli.events import Event
from spec_cli.render import counted
from spec_cli.result import Result, consume
from spec_cli.sampling import SamplingParams
from spec_cli.stats import GenerationStats

BASELINE = "none"


class BenchSession(Protocol):
    """What the runner needs from a `Session` (tests may pass a fake)."""

    def make_drafter(
        self, name: str, ngram_cache: str | None = None, learn: bool | None = None
    ) -> Drafter: ...

    def has_chat_template(self) -> bool: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]: ...

    def raw_prompt(self, text: str) -> list[int]: ...

    def stream(
        self,
        prompt: Sequence[int],
        drafter: Drafter,
        config: GenerationConfig,
        rng: np.random.Generator,
        stats: GenerationStats,
        stops: Sequence[str] = (),
    ) -> Iterator[Event]: ...


@dataclass(frozen=True)
class BenchSettings:
    """How to run: methods (the baseline `none` among them), repeats and generation settings."""

    methods: tuple[str, ...]
    repeats: int = 1
    max_tokens: int = 96
    draft_max: int = DEFAULT_DRAFT_MAX
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    raw: bool = False  # skip the chat template even when the model has one
    warmup_tokens: int = 8
    ngram_cache: str | None = None


@dataclass
class Measurement:
    """One generation: a method on one turn of one prompt in one repeat."""

    method: str
    category: str
    prompt_id: str
    turn: int
    repeat: int
    slot: int  # position of the method in its group's rotated order
    stats: GenerationStats
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = ""


def rotated(methods: Sequence[str], shift: int) -> list[str]:
    """`methods` rotated left by `shift` (modulo their number)."""
    k = shift % len(methods)
    return [*methods[k:], *methods[:k]]


def total_generations(prompts: Sequence[BenchPrompt], settings: BenchSettings) -> int:
    """How many measured generations a full run makes (for progress bars)."""
    return sum(len(p.turns) for p in prompts) * settings.repeats * len(settings.methods)


class BenchRunner:
    """Runs the benchmark, keeping every finished measurement in `results`.

    Ctrl-C (or SIGTERM turned into KeyboardInterrupt) stops the run between or inside
    generations: `run` then returns normally with `interrupted` set, and `results` holds
    every generation that finished (the interrupted one is dropped: its timing is partial).
    """

    def __init__(
        self,
        session: BenchSession,
        prompts: Sequence[BenchPrompt],
        settings: BenchSettings,
        on_start: Callable[[BenchPrompt, int, int, str], None] | None = None,
        on_result: Callable[[Measurement], None] | None = None,
    ) -> None:
        if BASELINE not in settings.methods:
            raise ValueError("the methods must include the baseline `none`")
        if settings.repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.session = session
        self.prompts = list(prompts)
        self.settings = settings
        self.on_start = on_start
        self.on_result = on_result
        self.results: list[Measurement] = []
        self.interrupted = False
        self._chat = not settings.raw and session.has_chat_template()

    def check_fit(self, n_ctx: int, suite_file: str | None = None) -> None:
        """Fail before any work, naming the prompt, when its user turns alone (answers left
        empty) cannot fit the context; answers add to this and are checked as they come.
        `suite_file` is the suite's path, to say where such a prompt can be removed."""
        worst: tuple[int, str, str] | None = None  # (prompt tokens, prompt id, what)
        too_long = 0
        need = 0  # room for every prompt with all its answers
        for prompt in self.prompts:
            history = [(text, "") for text in prompt.turns[:-1]]
            n = len(self.prompt_tokens(history, prompt.turns[-1]))
            turns = len(prompt.turns)
            need = max(need, n + turns * self.settings.max_tokens)
            if n < n_ctx:
                continue
            too_long += 1
            what = f"is {n} tokens"
            if turns > 1:
                what += f" over its {turns} turns, before any answer,"
            if worst is None or n > worst[0]:
                worst = n, prompt.id, what
        if worst is None:
            return
        # One message naming the size that fits them all, not one per retry.
        _, pid, what = worst
        others = f" ({counted(too_long - 1, 'other prompt')} too)" if too_long > 1 else ""
        remedy = f" or remove such prompts from {suite_file}" if suite_file else ""
        raise PromptError(
            f"prompt {pid!r} {what} but the context holds {n_ctx}{others}: "
            f"raise --ctx-size to {need}{remedy}"
        )

    def run(self) -> list[Measurement]:
        """Warm up, then measure every (prompt, repeat, turn, method)."""
        s = self.settings
        drafters: dict[str, Drafter] = {}
        try:
            # One drafter per method for the whole run, as one `spec chat` session keeps it;
            # `begin` resets per-generation state.
            # Nothing learned in earlier runs: the learned n-grams would hold earlier
            # benchmark runs' answers to these very prompts and inflate `ngram` and `auto`.
            for method in s.methods:
                drafters[method] = self.session.make_drafter(method, s.ngram_cache, learn=False)
            self._warm_up(drafters)
            group = 0
            for index, prompt in enumerate(self.prompts):
                for repeat in range(s.repeats):
                    self._conversation(index, prompt, repeat, group, drafters)
                    group += len(prompt.turns)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            for drafter in drafters.values():
                drafter.close()
        return self.results

    def _conversation(
        self,
        index: int,
        prompt: BenchPrompt,
        repeat: int,
        group: int,
        drafters: dict[str, Drafter],
    ) -> None:
        history: list[tuple[str, str]] = []
        for turn, text in enumerate(prompt.turns):
            tokens = self.prompt_tokens(history, text)
            answers: dict[str, str] = {}
            for slot, method in enumerate(rotated(self.settings.methods, group + turn)):
                if self.on_start is not None:
                    self.on_start(prompt, turn, repeat, method)
                rng = np.random.default_rng([self.settings.seed, index, repeat, turn])
                where = f"prompt {prompt.id!r} turn {turn + 1}"
                stats, result = self._generate(tokens, drafters[method], rng, where)
                m = Measurement(
                    method,
                    prompt.category,
                    prompt.id,
                    turn,
                    repeat,
                    slot,
                    stats,
                    result.tokens,
                    result.text,
                    result.finish_reason,
                )
                self.results.append(m)
                answers[method] = result.text
                if self.on_result is not None:
                    self.on_result(m)
            history.append((text, answers[BASELINE]))

    def prompt_tokens(self, history: Sequence[tuple[str, str]], text: str) -> list[int]:
        """Tokens for the next user turn after `history` of (user, answer) pairs."""
        if self._chat:
            messages: list[dict[str, str]] = []
            for user, answer in history:
                messages.append({"role": "user", "content": user})
                messages.append({"role": "assistant", "content": answer})
            messages.append({"role": "user", "content": text})
            return self.session.chat_prompt(messages)
        # Without a chat template the conversation is plain text, one block per message.
        parts = [part for pair in history for part in pair]
        return self.session.raw_prompt("\n\n".join([*parts, text]))

    def _generate(
        self,
        tokens: Sequence[int],
        drafter: Drafter,
        rng: np.random.Generator,
        where: str,
        max_tokens: int | None = None,
    ) -> tuple[GenerationStats, Result]:
        s = self.settings
        stats = GenerationStats()
        config = GenerationConfig(max_tokens or s.max_tokens, s.sampling, s.draft_max)
        started = time.perf_counter()
        try:
            result = consume(self.session.stream(tokens, drafter, config, rng, stats))
        except PromptError as e:
            raise PromptError(f"{where}: {e}") from None
        stats.wall_seconds = time.perf_counter() - started
        if result.finish_reason == "interrupted":
            # consume() ended the stream cleanly; the run itself must stop too.
            raise KeyboardInterrupt
        return stats, result

    def _warm_up(self, drafters: dict[str, Drafter]) -> None:
        """A few unmeasured tokens per method: first calls pay for allocation and paging."""
        n = min(self.settings.warmup_tokens, self.settings.max_tokens)
        if n <= 0 or not self.prompts:
            return
        first = self.prompts[0]
        tokens = self.prompt_tokens([], first.turns[0])
        for drafter in drafters.values():
            rng = np.random.default_rng(self.settings.seed)
            self._generate(tokens, drafter, rng, f"prompt {first.id!r} turn 1", n)
