"""Noise-free tuning aid: replay `auto` on the benchmark prompts and score it in cost units.

Greedy outputs and drafting decisions are deterministic once the cost curve is fixed, so
scoring each run as generated tokens / sum of verify costs (from a fixed curve measured
on the reference 2-core machine) compares drafting policies without the timing noise of
a shared machine. It is not a speed measurement: `speed.py` is.

    python benchmarks/replay.py                      # F32 and Q4 targets, all prompts
    python benchmarks/replay.py code_edit summarize  # some prompts
"""

from __future__ import annotations

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


def _curve(head: list[float], slope: float) -> tuple[float, ...]:
    return tuple(head + [head[-1] + slope * i for i in range(1, 34 - len(head))])


# Verify-cost curves measured on the reference machine (SmolLM2-135M, 2 threads).
F32 = CostModel(
    _curve([1.0, 1.3, 1.38, 1.47, 1.55, 1.63, 1.78, 1.93, 2.03, 2.13, 2.23], 0.1), 0.45, 0.016
)
Q4 = CostModel(_curve([1.0, 1.95, 2.38, 2.96, 3.55, 4.13, 4.53, 4.92, 5.4], 0.5), 0.0, 0.0075)


def score(model: str | None, costs: CostModel, prompt_name: str) -> float:
    with open_session(ModelOptions(model=model)) as session:
        session._costs = costs  # the fixed curve instead of this machine's calibration
        text = (HERE / "prompts" / f"{prompt_name}.txt").read_text()
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
    names = sys.argv[1:] or sorted(p.stem for p in (HERE / "prompts").glob("*.txt"))
    f32 = os.environ.get("SPEC_F32_MODEL")
    targets = [("Q4 default", None, Q4)]
    if f32:
        targets.insert(0, ("F32 " + Path(f32).name, f32, F32))
    else:
        print("(set SPEC_F32_MODEL=path/to/f32.gguf to replay the F32 target too)")
    for label, model, costs in targets:
        row = "  ".join(f"{n}={score(model, costs, n):.2f}x" for n in names)
        print(f"{label}: {row}", flush=True)


if __name__ == "__main__":
    main()
