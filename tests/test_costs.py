"""The cost model's length choice and the cached calibration."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeBackend

from spec_cli import calibration
from spec_cli.costs import MAX_BATCH, CostModel, OnlineCosts, _interpolate

FLAT = CostModel(tuple([1.0] * MAX_BATCH))  # verifying n tokens costs the same as one
LINEAR = CostModel(tuple(float(n) for n in range(1, MAX_BATCH + 1)))  # compute-bound


def test_free_verification_drafts_everything_that_may_pass() -> None:
    k, value = FLAT.best_length([0.9] * 8)
    assert k == 8
    assert value == pytest.approx(1 + sum(0.9**i for i in range(1, 9)))


def test_linear_cost_never_drafts_uncertain_tokens() -> None:
    """When n tokens cost n single steps, only a sure draft breaks even."""
    assert LINEAR.best_length([0.99] * 8) == (0, 1.0)
    assert LINEAR.best_length([])[0] == 0


def test_hand_computed_choice() -> None:
    # Costs 1, 1.5, 2: k=1 gives (1+0.8)/1.5 = 1.2; k=2 gives (1+0.8+0.08)/2 = 0.94.
    model = CostModel((1.0, 1.5, 2.0))
    k, value = model.best_length([0.8, 0.1])
    assert k == 1
    assert value == pytest.approx(1.2)


def test_draft_cost_and_sunk_tokens() -> None:
    model = CostModel((1.0, 1.2, 1.4, 1.6))
    # k=1: 1.9 / (1.2 + 0.8) < 1 and k=2: 2.71 / (1.4 + 1.6) < 1, so drafting does not pay.
    assert model.best_length([0.9, 0.9], draft_cost=0.8)[0] == 0
    # Once drafted, their 1.6 is spent whatever the length: keeping both (2.71 / 3.0)
    # beats verifying none (1 / 2.6), and the value still counts the drafting time.
    k, value = model.best_length([0.9, 0.9], draft_cost=0.8, sunk=2)
    assert k == 2
    assert value == pytest.approx(2.71 / (1.4 + 1.6))


def test_spent_drafting_counts_when_deciding_to_draft_more() -> None:
    """A sure token more costs 0.2 of verification and 0.5 of drafting. Leaving out the
    0.5 x 2 already spent makes the 2-token draft look like 3 / 1.4 = 2.14 and a third
    token (4 / 2.1 = 1.9) not worth it; counted, 3 / 2.4 = 1.25 < 4 / 3.1 = 1.29."""
    model = CostModel((1.0, 1.2, 1.4, 1.6))
    assert model.best_length([1.0, 1.0, 1.0], draft_cost=0.5, sunk=2)[0] == 3


def test_break_even_is_the_first_token_rate_where_drafting_starts_to_pay() -> None:
    bandwidth_bound = CostModel(tuple(1.0 + 0.05 * i for i in range(MAX_BATCH)))
    moderate = CostModel(tuple(1.0 + 0.4 * i for i in range(MAX_BATCH)))
    for costs in (bandwidth_bound, moderate, LINEAR):
        p = costs.break_even(16)
        assert costs.best_length([p - 1e-9] + [1.0] * 15)[0] == 0
        assert costs.best_length([p + 1e-6] + [1.0] * 15)[0] > 0


def test_ceiling_is_perfect_free_drafting_at_the_best_length() -> None:
    model = CostModel(_interpolate([1, 8, 33], [1.0, 2.0, 8.0], MAX_BATCH))
    k, speed = model.ceiling()
    assert speed == pytest.approx(max((n) / model.verify_cost(n) for n in range(1, 34)))
    assert k == max(range(1, 34), key=lambda n: n / model.verify_cost(n)) - 1


def test_measured_curve_is_made_monotone() -> None:
    curve = _interpolate([1, 2, 4], [1.0, 0.9, 2.0], 4)
    assert list(curve) == sorted(curve)
    assert curve[0] == 1.0


class FakeMeasurement:
    """Stands in for calibrate(): counts its calls and returns a curve of `slope`."""

    def __init__(self) -> None:
        self.calls = 0
        self.slope = 0.1

    def __call__(self, target: object, draft: object) -> CostModel:
        self.calls += 1
        return CostModel(tuple(1.0 + self.slope * i for i in range(MAX_BATCH)), 0.3, 0.01)


@pytest.fixture
def measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMeasurement:
    """Calibrations cached under tmp_path and measured by a FakeMeasurement."""
    monkeypatch.setenv("SPEC_CACHE_DIR", str(tmp_path))
    fake = FakeMeasurement()
    monkeypatch.setattr(calibration, "calibrate", fake)
    return fake


def test_calibration_is_cached_and_rebuilt_when_corrupt_or_stale(
    tmp_path: Path, measure: FakeMeasurement
) -> None:
    target = FakeBackend()
    first = calibration.load_or_measure(target, None, "test")
    again = calibration.load_or_measure(target, None, "test")
    assert again == first and measure.calls == 1

    (path,) = (tmp_path / "calibration").glob("*.json")
    path.write_text("{truncated")
    calibration.load_or_measure(target, None, "test")
    assert measure.calls == 2

    data = json.loads(path.read_text())
    data["measured_at"] = time.time() - calibration.MAX_AGE_SECONDS - 10
    path.write_text(json.dumps(data))
    calibration.load_or_measure(target, None, "test")
    assert measure.calls == 3

    # Other settings (here another backend build) get their own measurement.
    calibration.load_or_measure(target, None, "other-build")
    assert measure.calls == 4


def test_unwritable_cache_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SPEC_CACHE_DIR", str(blocker))  # a file where a directory should be
    monkeypatch.setattr(calibration, "calibrate", lambda t, d: CostModel(tuple([1.0] * MAX_BATCH)))
    assert calibration.load_or_measure(FakeBackend(), None, "x").verify[0] == 1.0


def test_online_costs_follow_the_machine_not_a_stale_calibration() -> None:
    """Calibrated: 2 tokens cost 1.1x. Observed: single calls 10 ms, 2-token calls 20 ms.
    After enough steps the model mostly believes the observations (2x), and the single-call
    time follows the machine."""
    prior = CostModel(tuple(1.0 + 0.1 * i for i in range(MAX_BATCH)), 0.5, 0.005)
    online = OnlineCosts(prior)
    for _ in range(32):
        online.observe(1, 0.010)
        online.observe(2, 0.020)
    model = online.model
    assert model.target_seconds == pytest.approx(0.010)
    assert 1.5 < model.verify_cost(2) <= 2.0  # most of the way, the prior still counts
    # The draft model's absolute time (0.5 x 5 ms) is now a quarter of a 10 ms call.
    assert model.draft_token == pytest.approx(0.25)
    assert list(model.verify) == sorted(model.verify)


def test_online_costs_keep_the_prior_without_evidence() -> None:
    prior = CostModel(tuple(1.0 + 0.1 * i for i in range(MAX_BATCH)), 0.5, 0.005)
    online = OnlineCosts(prior)
    online.observe(1, 0.005)
    assert online.model is prior


def test_refresh_measures_again_and_replaces_the_cached_model(measure: FakeMeasurement) -> None:
    target = FakeBackend()
    old = calibration.load_or_measure(target, None, "test")
    measure.slope = 0.2
    new = calibration.load_or_measure(target, None, "test", refresh=True)
    assert new != old
    assert calibration.load_or_measure(target, None, "test") == new


def test_a_build_compiled_differently_is_another_calibration_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CUDA or Metal reinstall of the same llama-cpp-python version is measured afresh."""
    import spec_cli.backend.llama_cpp as backend

    cpu = backend.build_id()
    monkeypatch.setattr(backend, "system_info", lambda: "CUDA : ARCHS = 890 | CPU : AVX2 = 1 |")
    assert backend.build_id() != cpu
    assert backend.build_id().startswith(f"llama.cpp-{backend.llama_cpp_version()}-")


def test_allowing_the_amx_kernels_is_another_calibration_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SPEC_LLAMA_AMX=1 changes the kernels a batch runs on, and so the verify costs."""
    import spec_cli.backend.llama_cpp as backend

    monkeypatch.setattr(backend, "amx_compiled", lambda: True)
    monkeypatch.setenv("SPEC_LLAMA_AMX", "0")
    plain = backend.build_id()
    monkeypatch.setenv("SPEC_LLAMA_AMX", "1")
    assert backend.build_id() != plain


@pytest.mark.parametrize(
    "damage",
    ["a zero cost", "NaN", "costs that shrink", "a negative draft cost", "a date in the future"],
)
def test_a_hand_edited_calibration_is_measured_again(
    tmp_path: Path, measure: FakeMeasurement, damage: str
) -> None:
    target = FakeBackend()
    good = calibration.load_or_measure(target, None, "test")
    (path,) = (tmp_path / "calibration").glob("*.json")
    data = json.loads(path.read_text())
    if damage == "a zero cost":
        data["verify"][1] = 0
    elif damage == "NaN":
        data["verify"][3] = float("nan")
    elif damage == "costs that shrink":
        data["verify"][5] = 1.1
    elif damage == "a negative draft cost":
        data["draft_token"] = -1
    else:
        data["measured_at"] = time.time() + 10 * 24 * 3600
    path.write_text(json.dumps(data))
    assert calibration.load_or_measure(target, None, "test") == good
    assert measure.calls == 2


def _plans(costs: CostModel, accept: list[float]) -> list[tuple[int, int, float]]:
    """Every plan by hand: (draft now, planned, expected tokens / expected cost)."""
    alive = [float(np.prod(accept[: i + 1])) for i in range(len(accept))]
    plans = [(0, 0, 1.0 / costs.verify_cost(1))]
    for planned in range(1, len(accept) + 1):
        tokens = 1.0 + sum(alive[:planned])
        plans.append((planned, planned, tokens / costs.verify_cost(planned + 1)))
        for now in range(planned):
            later = costs.verify_cost(planned - now)  # the rest, after token `now` checks
            cost = costs.verify_cost(now + 1) + alive[now] * later
            plans.append((now, planned, tokens / cost))
    return plans


def test_best_split_is_the_best_of_every_plan() -> None:
    """Against plans enumerated by hand, on random acceptance chains (some longer than
    the measured curve) and cost curves from flat to steeper than linear."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        accept = list(rng.uniform(0.0, 1.0, int(rng.integers(0, 40))) ** rng.uniform(0.1, 2))
        slope, bend = float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.5, 1.2))
        costs = CostModel(tuple(1.0 + slope * i**bend for i in range(MAX_BATCH)))
        plan = costs.best_split(accept)
        assert plan.value == pytest.approx(max(v for _, _, v in _plans(costs, accept)))
        assert plan.value >= costs.best_length(accept)[1] - 1e-12
        assert 0 <= plan.now <= plan.planned <= len(accept)
        # Its cost is what its expected tokens cost at that value.
        tokens = 1.0 + float(np.sum(np.cumprod(accept[: plan.planned])))
        assert plan.cost == pytest.approx(tokens / plan.value)


def test_a_doubtful_token_before_sure_ones_is_left_to_the_target() -> None:
    """With a second token costing 0.4 of a call, a 50% token ahead of 15 sure ones: all
    16 now gives 9 / 7.4 = 1.22 tokens a unit of cost; none now, and the 15 once the
    target's own token has confirmed the first, gives 9 / (1 + 0.5 x 7) = 2.
    When a second token costs only 0.05, sending all 16 is best."""
    moderate = CostModel(tuple(1.0 + 0.4 * i for i in range(MAX_BATCH)))
    accept = [0.5] + [1.0] * 15
    assert moderate.best_length(accept)[0] == 16
    plan = moderate.best_split(accept)
    assert (plan.now, plan.planned) == (0, 16)
    assert plan.value == pytest.approx(2.0)
    assert plan.cost == pytest.approx(4.5)
    sure_then_doubtful = [1.0, 1.0, 0.5] + [1.0] * 13
    assert moderate.best_split(sure_then_doubtful)[:2] == (2, 16)
    bandwidth_bound = CostModel(tuple(1.0 + 0.05 * i for i in range(MAX_BATCH)))
    assert bandwidth_bound.best_split(accept)[:2] == (16, 16)


def test_a_sure_draft_is_never_split() -> None:
    """Splitting adds a call's fixed cost; with nothing doubtful it buys nothing."""
    for costs in (FLAT, LINEAR, CostModel(_interpolate([1, 8, 33], [1.0, 2.0, 8.0], MAX_BATCH))):
        plan = costs.best_split([1.0] * 16)
        assert plan.now == plan.planned
