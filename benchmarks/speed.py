"""Side-by-side decode speed of drafters on one machine (not a test: numbers to report).

Loads the models once, then runs every method on every prompt in interleaved, rotated
order, `--repeats` times, so machine drift hits all methods alike. Every method, ours and
other tools', is timed alike: from the arrival of its first generated tokens to that of
its n-th (the first call, which others count as prefill, and a last call that only ends
the text are left out, and a tool that overshoots n is cut at n). A draft model reads the
prompt afresh in every run and that counts as decoding, for `spec` (which reads it in a
step before its first token, when at all) as for llama.cpp's examples (which read it in
their first draft). Reports the median decode tokens/s per method and the median of per-pair
speedups against `none`, and whether each method's greedy output matched `none` (token
for token; other tools' by text).

    python benchmarks/speed.py --model F32.gguf --methods none,prompt-lookup,auto \
        --prompts benchmarks/prompts/code_edit.txt --repeats 5
    python benchmarks/speed.py --methods none,auto,prompt-lookup@10,llama-cpp-python-lookup,\
        llama.cpp-lookup@8 --llama-lookup path/to/llama-lookup      # against other tools
    python benchmarks/speed.py --llama-cpp-python   # `none` vs llama-cpp-python's decode

The learned n-gram cache is disabled (SPEC_NO_LEARN=1) so repeats do not teach `auto`
the answer; the calibration cache is kept. A method named `auto:warm` (or `ngram:warm`)
instead reads, and never adds to, what the learned cache would hold after `spec` had
answered 38 other prompts (replay.py's suite prompts, plain-decoded before the timed runs):
the model's habitual phrases, as a user's cache holds them after some use, and none of
the benchmark prompts' answers.

    python benchmarks/speed.py --model F32.gguf --methods none,auto,auto:warm --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SPEC_NO_LEARN", "1")

import numpy as np
from replay import prompt_texts
from rivals import LCPP_LOOKUP, LLAMA_LOOKUP, LLAMA_SPEC, LlamaCppExample, LlamaCppPython

from spec_cli.backend.llama_cpp import physical_cores
from spec_cli.costs import calibrate
from spec_cli.drafters.base import NoDrafter
from spec_cli.drafters.ngram import NgramDrafter
from spec_cli.engine import DEFAULT_DRAFT_MAX, GenerationConfig, generate
from spec_cli.events import StepEvent, TokenEvent
from spec_cli.ngram_counts import NgramCounts
from spec_cli.session import ModelOptions, Session, open_session
from spec_cli.stats import GenerationStats

HERE = Path(__file__).parent
CTX = 4096
Rival = LlamaCppPython | LlamaCppExample


def prompt_tokens(session: Session, path: Path) -> list[int]:
    text = path.read_text()
    if session.has_chat_template():
        return session.chat_prompt([{"role": "user", "content": text}])
    return session.raw_prompt(text)


def warm_ngrams(session: Session) -> NgramCounts:
    """What the learned n-gram cache would hold after `spec` answered the 38 suite
    prompts replay.py scores (the quick suite and the full suite's copy-heavy ones, none
    of them a benchmark prompt): their prompts and plain answers, orders 2-4, as
    NgramDrafter.close teaches it."""
    learned = NgramCounts()
    for text in prompt_texts([], suite=True, copy_heavy=True).values():
        prompt = session.chat_prompt([{"role": "user", "content": text}])
        events = generate(
            session.target, NoDrafter(), prompt, GenerationConfig(200), np.random.default_rng(0)
        )
        run = NgramCounts()
        run.add_sequence([*prompt, *(e.token for e in events if isinstance(e, TokenEvent))])
        learned.merge(run.orders_from(2))
    return learned


WARM = ":warm"  # a method suffix: that drafter reads warm_ngrams() and never adds to it


def run_once(
    session: Session,
    method: str,
    prompt: list[int],
    n: int,
    draft_max: int = DEFAULT_DRAFT_MAX,
    warm: NgramCounts | None = None,
) -> tuple[float, list[int], GenerationStats]:
    """One generation with a `spec` drafter; `name@N` drafts at most N tokens a step,
    `name:warm` reads `warm` as its learned n-grams."""
    name, _, fixed = method.partition("@")
    drafter = session.make_drafter(name.removesuffix(WARM))
    if name.endswith(WARM):
        for cheap in getattr(drafter, "cheap", [drafter]):
            if isinstance(cheap, NgramDrafter):
                cheap.learned = warm
    if session.draft is not None:
        session.draft.truncate(0)  # every run reads the prompt afresh, as other tools' do
    stats = GenerationStats()
    config = GenerationConfig(max_tokens=n, draft_max=int(fixed) if fixed else draft_max)
    events = generate(session.target, drafter, prompt, config, np.random.default_rng(0), stats)
    tokens: list[int] = []
    first_step = 0  # tokens of the first step, which arrive together
    first = last = 0.0
    # The first step's drafting (a draft model reading the prompt) comes before its
    # tokens: it counts as decoding, as in llama.cpp's examples' first draft.
    first_draft = 0.0
    for event in events:
        if isinstance(event, TokenEvent):
            last = time.perf_counter()
            first = first or last
            tokens.append(event.token)
        elif isinstance(event, StepEvent) and not first_step:
            first_step, first_draft = len(tokens), event.draft_seconds
    drafter.close()
    # Timed as the other tools are (see rivals.py): from the first step's tokens to the
    # last token, so neither the first call (the last prompt token; their prefill) nor
    # a final call that only ends the text counts.
    elapsed = last - first + first_draft
    speed = (len(tokens) - first_step) / elapsed if last > first else 0.0
    return speed, tokens, stats


def text_of(session: Session, tokens: list[int]) -> str:
    return b"".join(session.target.token_bytes(t) for t in tokens).decode("utf-8", "replace")


def make_rivals(session: Session, args: argparse.Namespace, methods: list[str]) -> dict[str, Rival]:
    """The other tools among `methods`, loaded once."""
    threads = args.threads or physical_cores()
    rivals: dict[str, Rival] = {}
    for m in methods:
        if m == LCPP_LOOKUP:
            rivals[m] = LlamaCppPython(session.model_path, CTX, threads, lookup=True)
        elif m.startswith((LLAMA_LOOKUP + "@", LLAMA_SPEC)):
            kind, _, n = m.partition("@")
            spec_type = kind.removeprefix(LLAMA_SPEC) if kind.startswith(LLAMA_SPEC) else ""
            binary = args.llama_speculative if spec_type else args.llama_lookup
            if not binary or (spec_type.startswith("draft") and not session.draft_path):
                needs = "--llama-speculative PATH" if spec_type else "--llama-lookup PATH"
                sys.exit(f"{m} needs {needs} (llama.cpp's example binary) and a draft if named")
            extra = ["--spec-type", spec_type] if spec_type else []
            if spec_type.startswith("draft"):
                extra += ["-md", str(session.draft_path)]
            rivals[m] = LlamaCppExample(m, binary, session.model_path, CTX, threads, int(n), extra)
    return rivals


def agreeing_chars(a: str, b: str) -> int | None:
    """None when the outputs agree up to where the shorter one stops (a rival's text is
    cut at n re-tokenized tokens, so its end may fall a piece off ours), else how many
    characters they share before differing."""
    a, b = a.rstrip(), b.rstrip()
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), None)


def print_machine_state(session: Session) -> None:
    """The verify-cost curve right now: speedups on a shared machine move with it (a
    busy memory bus makes single-token steps slower and batches relatively cheaper)."""
    now = calibrate(session.target)
    print(
        f"verify cost now: 1 token {now.target_seconds * 1000:.1f} ms; "
        + ", ".join(f"{n} tokens {now.verify_cost(n):.2f}x" for n in (2, 4, 8, 16, 33))
        + f"; perfect-draft ceiling {now.ceiling()[1]:.2f}x"
    )


def compare_methods(args: argparse.Namespace) -> None:
    opts = ModelOptions(args.model, args.draft, ctx_size=CTX, threads=args.threads)
    methods = args.methods.split(",")
    with open_session(opts) as session:
        session.cost_model()  # calibrate outside the timed runs
        print_machine_state(session)
        rivals = make_rivals(session, args, methods)
        warm = None
        if any(m.partition("@")[0].endswith(WARM) for m in methods):
            warm = warm_ngrams(session)
            print(f"warm n-grams: {len(warm)} contexts learned from 38 other prompts' answers")
        for path in args.prompts:
            prompt = prompt_tokens(session, path)
            speeds: dict[str, list[float]] = {m: [] for m in methods}
            ratios: dict[str, list[float]] = {m: [] for m in methods}
            same: dict[str, bool] = dict.fromkeys(methods, True)
            # Where another tool's text first differed (near-tie flips: see README).
            differs: dict[str, list[str]] = {m: [] for m in methods}
            per_call: dict[str, list[float]] = {m: [] for m in methods}
            for rep in range(args.repeats):
                order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
                speed: dict[str, float] = {}
                texts: dict[str, str] = {}
                tokens: dict[str, list[int]] = {}
                for m in order:
                    if m in rivals:
                        outcome = rivals[m].run(prompt, args.max_tokens)
                        speed[m], texts[m] = outcome.tokens_per_second, outcome.text
                    else:
                        speed[m], tokens[m], stats = run_once(
                            session, m, prompt, args.max_tokens, args.draft_max, warm
                        )
                        per_call[m].append(stats.mean_accepted_length)
                        texts[m] = text_of(session, tokens[m])
                for m in methods:
                    speeds[m].append(speed[m])
                    ratios[m].append(speed[m] / speed["none"])
                    if m in tokens:
                        same[m] &= tokens[m] == tokens["none"]
                    elif (at := agreeing_chars(texts[m], texts["none"])) is not None:
                        same[m] = False
                        differs[m].append(f"{at}/{len(texts['none'])}")
            print(f"\n{path.name}  ({len(prompt)} prompt tokens, {args.max_tokens} max new)")
            for m in methods:
                calls = f"{statistics.median(per_call[m]):5.2f}" if per_call[m] else "    -"
                verdict = "yes" if same[m] else "NO"
                if differs[m]:
                    verdict += f" (same up to char {', '.join(differs[m])})"
                print(
                    f"  {m:32s} {statistics.median(speeds[m]):7.1f} tok/s   "
                    f"speedup x{statistics.median(ratios[m]):.2f} "
                    f"(min {min(ratios[m]):.2f}, max {max(ratios[m]):.2f})   "
                    f"{calls} tok/call   "
                    f"identical to none: {verdict}"
                )
            sys.stdout.flush()


def compare_llama_cpp_python(args: argparse.Namespace) -> None:
    """`--drafter none` against llama-cpp-python's own generate loop, same model/context."""
    threads = args.threads or physical_cores()
    path = args.prompts[0]
    ours_s: list[float] = []
    theirs_s: list[float] = []
    with open_session(ModelOptions(args.model, None, CTX, threads)) as session:
        prompt = prompt_tokens(session, path)
        plain = LlamaCppPython(session.model_path, CTX, threads, lookup=False)
        for _ in range(args.repeats):
            speed, ours_tokens, _ = run_once(session, "none", prompt, args.max_tokens)
            ours_s.append(speed)
            # The same number of tokens as ours.
            theirs_s.append(plain.run(prompt, len(ours_tokens)).tokens_per_second)
    ours, theirs = statistics.median(ours_s), statistics.median(theirs_s)
    for label, value, runs in (
        ("spec --drafter none", ours, ours_s),
        ("llama-cpp-python   ", theirs, theirs_s),
    ):
        print(f"{label}: {value:.1f} tok/s (runs: {', '.join(f'{v:.1f}' for v in runs)})")
    print(f"ratio spec/llama-cpp-python: {ours / theirs:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--draft", default=None)
    ap.add_argument("--methods", default="none,prompt-lookup,ngram,auto")
    ap.add_argument(
        "--prompts", nargs="+", type=Path, default=sorted((HERE / "prompts").glob("*.txt"))
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--draft-max", type=int, default=DEFAULT_DRAFT_MAX)
    ap.add_argument("--llama-cpp-python", action="store_true")
    ap.add_argument("--llama-lookup", default=None, help="llama.cpp's llama-lookup binary")
    ap.add_argument(
        "--llama-speculative", default=None, help="llama.cpp's llama-speculative-simple binary"
    )
    args = ap.parse_args()
    if args.llama_cpp_python:
        compare_llama_cpp_python(args)
    else:
        if "none" not in args.methods.split(","):
            args.methods = "none," + args.methods
        compare_methods(args)


if __name__ == "__main__":
    main()
