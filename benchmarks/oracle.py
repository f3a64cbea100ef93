"""How much of the drafting headroom `auto` captures: its score against a perfect-knowledge bound.

Greedy decoding is deterministic, so each prompt's output is generated once (plain
decoding) and everything else runs offline against it, in milliseconds and without timing
noise, under replay.py's fixed cost curves:

- auto: the `auto` drafter stepped through that output as the engine would (its decisions
  are replay.py's on F32, where speculative output equals plain output; on Q4 near-ties
  can make the texts differ);
- oracle: the cheapest sequence of target calls for a drafter that proposes prompt
  lookup's copy at every position and knows how far each copy is right (dynamic
  programming over positions: draft exactly the right part, or nothing).

Scores are generated tokens per unit of verify cost (1.0 is plain decoding).

    python benchmarks/oracle.py --model F32.gguf --f32           # the benchmark prompts
    python benchmarks/oracle.py --suite --copy-heavy             # plus 38 suite prompts
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("SPEC_NO_LEARN", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from replay import F32, Q4, prompt_texts

from spec_cli.costs import CostModel
from spec_cli.drafters.auto import AutoDrafter
from spec_cli.drafters.base import Draft, before_end
from spec_cli.drafters.ngram import NgramDrafter
from spec_cli.drafters.prompt_lookup import PromptLookupDrafter
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import FinishEvent
from spec_cli.sampling import SamplingParams
from spec_cli.session import ModelOptions, open_session

MAX_NEW = 200
DRAFT_MAX = 32


Outputs = dict[str, tuple[list[int], list[int]]]


def greedy_outputs(model: str | None, texts: dict[str, str]) -> tuple[Outputs, set[int]]:
    """Each prompt's tokens and plain greedy output (ending with the end token when one
    was reached), and the vocabulary's end tokens."""
    out: Outputs = {}
    with open_session(ModelOptions(model=model)) as session:
        for name, text in texts.items():
            prompt = session.chat_prompt([{"role": "user", "content": text}])
            events = generate(
                session.target,
                session.make_drafter("none"),
                prompt,
                GenerationConfig(MAX_NEW),
                np.random.default_rng(0),
            )
            finish = next(e for e in events if isinstance(e, FinishEvent))
            tokens = list(finish.tokens)
            if finish.reason == "stop":
                end = next(t for t in range(session.target.n_vocab) if session.target.is_eog(t))
                tokens.append(end)
            out[name] = (list(prompt), tokens)
        ends = {t for t in range(session.target.n_vocab) if session.target.is_eog(t)}
    return out, ends


def _agreeing(tokens: Sequence[int], truth: Sequence[int], pos: int) -> int:
    n = 0
    while n < len(tokens) and pos + n < len(truth) and tokens[n] == truth[pos + n]:
        n += 1
    return n


def auto_score(prompt: list[int], truth: list[int], costs: CostModel, ends: set[int]) -> float:
    """Tokens per unit cost of `auto` (prompt lookup + context n-grams) on this output."""
    drafter = AutoDrafter(
        [PromptLookupDrafter(), NgramDrafter()], costs, learn_costs=False, is_end=ends.__contains__
    )
    context = list(prompt)
    drafter.begin(context)
    greedy, rng = SamplingParams(), np.random.default_rng(0)
    pos, spent = 0, 0.0
    while pos < min(MAX_NEW, len(truth)):
        k_max = min(DRAFT_MAX, MAX_NEW - pos - 1)
        draft = Draft()
        if k_max > 0:
            draft = before_end(drafter.draft(context, k_max, greedy, rng), ends.__contains__)
            draft = draft.truncated(k_max) if len(draft) > k_max else draft
        accepted = _agreeing(draft.tokens, truth, pos)
        spent += costs.verify_cost(len(draft) + 1)
        emitted = truth[pos : pos + accepted + 1]
        context.extend(emitted)
        pos += accepted + 1
        drafter.feedback(context, draft, accepted)
        if emitted[-1] in ends:
            break
    return min(pos, len(truth)) / spent


def oracle_score(prompt: list[int], truth: list[int], costs: CostModel) -> float:
    """The perfect-knowledge bound for prompt lookup's proposals (see the module doc)."""
    n = min(MAX_NEW, len(truth))
    lookup = PromptLookupDrafter()
    greedy, rng = SamplingParams(), np.random.default_rng(0)
    right = []
    for pos in range(n):
        copy = lookup.draft([*prompt, *truth[:pos]], DRAFT_MAX, greedy, rng)
        right.append(min(_agreeing(copy.tokens, truth, pos), n - pos - 1))
    best = [0.0] * (n + 1)
    for pos in range(n - 1, -1, -1):
        best[pos] = min(
            costs.verify_cost(k + 1) + best[min(n, pos + k + 1)] for k in range(right[pos] + 1)
        )
    return n / best[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="target GGUF (default: the default model)")
    parser.add_argument("--f32", action="store_true", help="score with the F32 cost curve")
    parser.add_argument("--suite", action="store_true", help="add the quick suite's prompts")
    parser.add_argument("--copy-heavy", action="store_true", help="add the copying prompts")
    args = parser.parse_args()
    names = ["code_edit", "code_edit_only", "summarize", "open_ended"]
    texts = prompt_texts(names, args.suite, args.copy_heavy)
    costs = F32 if args.f32 else Q4
    outputs, ends = greedy_outputs(args.model, texts)
    scores = {
        name: (auto_score(p, t, costs, ends), oracle_score(p, t, costs))
        for name, (p, t) in outputs.items()
    }
    for name, (auto, oracle) in scores.items():
        print(f"{name:16s} auto {auto:5.2f}  oracle {oracle:5.2f}  share {auto / oracle:4.0%}")
    extra = [v for n, v in scores.items() if n not in names]
    if extra:
        gm_auto = math.exp(sum(math.log(a) for a, _ in extra) / len(extra))
        gm_oracle = math.exp(sum(math.log(o) for _, o in extra) / len(extra))
        print(f"suite ({len(extra)} prompts): geometric mean auto {gm_auto:.3f}", end="")
        print(f", oracle {gm_oracle:.3f}")


if __name__ == "__main__":
    main()
