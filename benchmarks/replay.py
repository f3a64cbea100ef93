"""Noise-free tuning aid: replay `auto` on the benchmark prompts and score it in cost units.

Greedy outputs and drafting decisions are deterministic once the cost curve is fixed, so
scoring each run as generated tokens / sum of verify costs (from a fixed curve measured
on the reference 2-core machine) compares drafting policies without the timing noise of
a shared machine. It is not a speed measurement: `speed.py` is.

    python benchmarks/replay.py                      # F32 and Q4 targets, all prompts
    python benchmarks/replay.py code_edit summarize  # some prompts
    python benchmarks/replay.py --suite              # also the quick bench suite's prompts
    python benchmarks/replay.py --copy-heavy         # also the full suite's copying prompts

Tuning against four prompts overfits; `--suite` adds 14 more (first turns) and reports
their geometric mean and the worst one. `--copy-heavy` adds the full suite's 30 code-edit,
summarization and RAG prompts, where drafting has the most to gain or lose.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("SPEC_NO_LEARN", "1")

import numpy as np

from spec_cli.costs import CostModel
from spec_cli.engine import GenerationConfig, generate
from spec_cli.events import StepEvent
from spec_cli.session import ModelOptions, open_session

HERE = Path(__file__).parent


# Verify-cost curves measured on the reference machine (SmolLM2-135M, 2 threads of an
# AVX-512 Xeon, no flash attention), n = 1..33 tokens.
F32 = CostModel(
    (1.0, 1.18, 1.28, 1.45, 1.59, 1.73, 1.74, 1.75, 1.83, 1.91, 1.99, 2.07, 2.15, 2.22, 2.29,
     2.37, 2.43, 2.5, 2.57, 2.63, 2.7, 2.76, 2.83, 2.89, 2.96, 3.02, 3.08, 3.14, 3.2, 3.26,
     3.32, 3.38, 3.38),
    0.456, 0.0231, 0.119,
)  # fmt: skip
Q4 = CostModel(
    (1.0, 1.42, 1.69, 2.01, 2.4, 2.78, 3.03, 3.28, 3.57, 3.87, 4.16, 4.46, 4.73, 5.0, 5.27,
     5.54, 5.82, 6.1, 6.39, 6.67, 6.95, 7.23, 7.51, 7.8, 8.11, 8.41, 8.72, 9.03, 9.34, 9.65,
     9.96, 10.27, 10.62),
    0.0, 0.0112,
)  # fmt: skip


DATA = HERE.parent / "spec_cli" / "data"
COPY_HEAVY = {"code-edit", "summarization", "rag"}


def prompt_texts(names: list[str], suite: bool, copy_heavy: bool = False) -> dict[str, str]:
    texts = {n: (HERE / "prompts" / f"{n}.txt").read_text() for n in names}
    rows = []
    if suite:
        rows += [json.loads(line) for line in (DATA / "bench_quick.jsonl").read_text().splitlines()]
    if copy_heavy:
        full = [json.loads(line) for line in (DATA / "bench_full.jsonl").read_text().splitlines()]
        rows += [row for row in full if row.get("category") in COPY_HEAVY]
    for row in rows:
        if "turns" in row:
            texts[row["id"]] = row["turns"][0]
    return texts


def score(model: str | None, costs: CostModel, text: str) -> float:
    with open_session(ModelOptions(model=model)) as session:
        session._costs = costs  # the fixed curve instead of this machine's calibration
        prompt = session.chat_prompt([{"role": "user", "content": text}])
        drafter = session.make_drafter("auto")
        drafter.learn_costs = False  # type: ignore[attr-defined]
        events = generate(
            session.target, drafter, prompt, GenerationConfig(200), np.random.default_rng(0)
        )
        steps = [e for e in events if isinstance(e, StepEvent)]
    spent = sum(costs.verify_cost(s.drafted + 1) for s in steps)
    return sum(s.accepted + 1 for s in steps) / spent


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    names = args or sorted(p.stem for p in (HERE / "prompts").glob("*.txt"))
    texts = prompt_texts(names, "--suite" in sys.argv, "--copy-heavy" in sys.argv)
    f32 = os.environ.get("SPEC_F32_MODEL")
    targets: list[tuple[str, str | None, CostModel]] = [("Q4 default", None, Q4)]
    if f32:
        targets.insert(0, ("F32 " + Path(f32).name, f32, F32))
    else:
        print("(set SPEC_F32_MODEL=path/to/f32.gguf to replay the F32 target too)")
    for label, model, costs in targets:
        got = {n: score(model, costs, t) for n, t in texts.items()}
        row = "  ".join(f"{n}={v:.2f}x" for n, v in got.items())
        print(f"{label}: {row}", flush=True)
        extra = [v for n, v in got.items() if n not in names]
        if extra:
            mean = math.exp(sum(math.log(v) for v in extra) / len(extra))
            summary = f"geometric mean {mean:.3f}x, worst {min(extra):.2f}x"
            print(f"  added prompts ({len(extra)}): {summary}", flush=True)


if __name__ == "__main__":
    main()
