"""Bench metrics, advice and outputs on hand-made measurements (numbers checkable by hand)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from spec_cli.bench.metrics import ROW_FIELDS, geometric_mean, result_rows
from spec_cli.bench.outputs import OutputFiles, csv_bytes, json_bytes
from spec_cli.bench.recommend import RunOptions, run_command
from spec_cli.bench.report import Report, build_report
from spec_cli.bench.runner import Measurement
from spec_cli.bench.suites import OVERALL
from spec_cli.errors import UsageError
from spec_cli.render.bench import bar, render_report
from spec_cli.sampling import SamplingParams
from spec_cli.stats import GenerationStats

CEILING = {"speedup": 3.0, "draft_length": 12, "target_call_seconds": 0.01}


def measure(
    method: str,
    category: str,
    prompt_id: str,
    tps: float,
    tokens: list[int] | None = None,
    *,
    calls: int = 10,
    drafted: tuple[int, ...] = (),
    accepted: tuple[int, ...] = (),
    repeat: int = 0,
) -> Measurement:
    """A measurement of 10 tokens at `tps` tokens/s; drafted/accepted are per position."""
    stats = GenerationStats(
        generated_tokens=10,
        decode_seconds=10 / tps,
        target_calls=calls,
        drafted_tokens=sum(drafted),
        accepted_tokens=sum(accepted),
        draft_seconds=1 / tps,
        verify_seconds=8 / tps,
        position_drafted=list(drafted),
        position_accepted=list(accepted),
    )
    toks = tokens if tokens is not None else list(range(10))
    return Measurement(method, category, prompt_id, 0, repeat, 0, stats, toks, "x", "length")


def sample_results() -> list[Measurement]:
    return [
        measure("none", "code", "c1", 10.0),
        # 5 calls of 2 drafts, each keeping the first: 5 x 2 tokens.
        measure("lookup", "code", "c1", 20.0, calls=5, drafted=(5, 5), accepted=(5, 0)),
        measure("none", "code", "c2", 10.0),
        measure("lookup", "code", "c2", 40.0, calls=4, drafted=(4, 2), accepted=(2, 1)),
        measure("none", "qa", "q1", 10.0),
        measure("lookup", "qa", "q1", 5.0, [9] * 10, calls=9, drafted=(4,), accepted=(1,)),
    ]


def report(results: list[Measurement] | None = None, **kw: Any) -> Report:
    options: dict[str, Any] = {"greedy": True, "options": RunOptions()}
    options.update(kw)
    return build_report(
        {"machine": {"cpu": "Test CPU"}, "ceiling": CEILING},
        results if results is not None else sample_results(),
        ["none", "lookup"],
        interrupted=False,
        **options,
    )


def test_speedup_is_against_none_on_the_same_prompt() -> None:
    rows = result_rows(sample_results(), greedy=True)
    assert [r["speedup"] for r in rows] == [1.0, 2.0, 1.0, 4.0, 1.0, 0.5]
    assert [r["matches_baseline"] for r in rows] == [True, True, True, True, True, False]
    assert all(tuple(r) == ROW_FIELDS for r in rows)
    lookup = rows[1]
    assert lookup["mean_accepted_length"] == 2.0
    assert lookup["acceptance_rate"] == 0.5
    assert lookup["per_position_acceptance"] == [1.0, 0.0]
    assert lookup["draft_share"] == pytest.approx(0.1) and lookup["verify_share"] == 0.8


def test_categories_aggregate_with_the_geometric_mean() -> None:
    summary = {(s.category, s.method): s for s in report().summaries}
    assert summary[("code", "lookup")].speedup == pytest.approx(math.sqrt(2.0 * 4.0))
    # tokens/s is total tokens over total decode time: 20 tokens in 0.5 + 0.25 s.
    assert summary[("code", "lookup")].tokens_per_second == pytest.approx(20 / 0.75)
    assert summary[(OVERALL, "lookup")].speedup == pytest.approx((2.0 * 4.0 * 0.5) ** (1 / 3))
    assert summary[(OVERALL, "lookup")].position_rates() == [8 / 13, 1 / 7]
    assert summary[(OVERALL, "none")].speedup == 1.0
    assert summary[(OVERALL, "lookup")].matches_baseline == pytest.approx(2 / 3)
    assert [s.category for s in report().summaries][-1] == OVERALL
    assert geometric_mean([]) is None


def test_results_without_their_baseline_get_no_speedup() -> None:
    """An interrupted run may end between a method and `none` on the same input."""
    results = [*sample_results(), measure("lookup", "qa", "q2", 50.0)]
    rows = result_rows(results, greedy=True)
    assert rows[-1]["speedup"] is None and rows[-1]["matches_baseline"] is None
    qa = next(s for s in report(results).summaries if s.category == "qa" and s.method == "lookup")
    assert qa.results == 2 and qa.speedup == 0.5


def test_recommendation_names_method_best_category_and_command() -> None:
    rec = report().recommendation
    assert rec is not None and rec.method == "lookup"
    overall = (2.0 * 4.0 * 0.5) ** (1 / 3)
    assert rec.text == (
        f"lookup: 2.83x on code, {overall:.2f}x overall; use `spec run --drafter lookup`"
    )


def test_recommended_command_reproduces_models_sampling_and_draft_settings() -> None:
    """The command carries every non-default option that changes what or how fast `spec run`
    generates, quoted for the shell; options the method does not use are left out."""
    options = RunOptions(
        model="/tmp/my models/t.gguf",
        draft_model="d.gguf",
        draft_max=8,
        sampling=SamplingParams(0.7, 40, 0.9, 0.05),
        threads=4,
        draft_gpu_layers=-1,
    )
    assert run_command("model", options) == (
        "spec run --drafter model --model '/tmp/my models/t.gguf' --draft d.gguf "
        "--draft-max 8 --temperature 0.7 --top-k 40 --top-p 0.9 --min-p 0.05 --threads 4 "
        "--draft-gpu-layers -1"
    )
    assert run_command("none", options) == (
        "spec run --drafter none --model '/tmp/my models/t.gguf' --temperature 0.7 --top-k 40 "
        "--top-p 0.9 --min-p 0.05 --threads 4"
    )
    cached = RunOptions(model="t.gguf", ngram_cache="c.bin", raw=True)
    assert run_command("ngram", cached) == (
        "spec run --drafter ngram --model t.gguf --ngram-cache c.bin --raw"
    )
    assert run_command("prompt-lookup", RunOptions()) == "spec run --drafter prompt-lookup"
    rec = report(options=RunOptions(model="t.gguf", sampling=SamplingParams(0.5))).recommendation
    assert rec is not None
    assert rec.command == "spec run --drafter lookup --model t.gguf --temperature 0.5"
    assert rec.text.endswith(f"use `{rec.command}`")


def test_a_failed_run_is_marked_incomplete_with_its_error_and_no_advice() -> None:
    error = "prompt 'g' turn 3: the prompt is 651 tokens but the context holds 512"
    doc = json.loads(json_bytes(report(error=error)))
    assert doc["interrupted"] is True and doc["error"] == error
    assert doc["recommendation"] is None
    assert len(doc["results"]) == 6  # what finished is kept
    done = json.loads(json_bytes(report()))
    assert done["interrupted"] is False and done["error"] is None
    assert done["recommendation"] is not None


def test_no_win_overall_points_to_a_category_win_or_to_plain_decoding() -> None:
    niche = [
        measure("none", "code", "c1", 10.0),
        measure("lookup", "code", "c1", 15.0),
        measure("none", "qa", "q1", 10.0),
        measure("lookup", "qa", "q1", 6.0),
    ]
    rec = report(niche).recommendation
    assert rec is not None and rec.method == "none"
    assert "lookup gives 1.50x on code" in rec.text
    assert "use `spec run --drafter lookup` for that kind of input" in rec.text
    flat = [measure("none", "qa", "q1", 10.0), measure("lookup", "qa", "q1", 10.2)]
    rec = report(flat).recommendation
    assert rec is not None and rec.command == "spec run --drafter none"
    assert rec.text.startswith("speculation does not pay here")


def test_caveats_flag_a_noisy_machine_and_outputs_that_differ() -> None:
    notes = report().caveats
    assert notes == [
        "lookup: 1 of 3 greedy outputs differ from plain decoding (batched verification can "
        "round near-tied logits differently)"
    ]
    noisy = [measure("none", "qa", f"q{i}", tps) for i, tps in enumerate((5.0, 10.0, 12.0))]
    assert "plain decoding ran at 5.0 to 12.0 tok/s" in report(noisy).caveats[0]
    assert report(sample_results(), greedy=False).caveats == []


def test_json_document_and_csv_rows() -> None:
    rep = report()
    doc = json.loads(json_bytes(rep))
    assert {"machine", "ceiling", "interrupted", "aggregation", "recommendation"} <= set(doc)
    assert len(doc["results"]) == 6 and doc["results"][1]["speedup"] == 2.0
    assert {s["category"] for s in doc["summary"]} == {"code", "qa", OVERALL}
    rows = list(csv.DictReader(io.StringIO(csv_bytes(rep).decode())))
    assert list(rows[0]) == [f for f in ROW_FIELDS if f != "text"]
    assert len(rows) == 6
    assert rows[1]["per_position_acceptance"] == "1.0000 0.0000"
    assert rows[1]["matches_baseline"] == "True"
    empty = report([])
    assert csv_bytes(empty).decode().count("\n") == 1  # header only
    assert empty.recommendation is None


def test_terminal_report_shows_table_chart_ceiling_and_advice() -> None:
    buf = io.StringIO()
    render_report(Console(file=buf, width=150, color_system=None), report())
    out = buf.getvalue()
    for text in ("code", "qa", "all", "lookup", "2.83x", "Recommendation: lookup"):
        assert text in out
    assert "perfect, free drafter would reach 3.00x at draft length 12" in out
    assert "Acceptance by draft position" in out
    assert "note: lookup: 1 of 3 greedy outputs differ" in out


def test_accept_column_is_a_dash_for_a_method_that_drafted_nothing() -> None:
    """0% would say every draft was rejected; a method with no drafts has no rate."""
    results = [
        measure("none", "qa", "q1", 10.0),
        measure("lookup", "qa", "q1", 10.0),
        measure("model", "qa", "q1", 12.0, calls=8, drafted=(4,), accepted=(0,)),
    ]
    buf = io.StringIO()
    rep = build_report(
        {},
        results,
        ["none", "lookup", "model"],
        greedy=True,
        options=RunOptions(),
        interrupted=False,
    )
    render_report(Console(file=buf, width=150, color_system=None), rep)
    # The last row of each method is its overall one (category cells show once per section).
    rows = [[c.strip() for c in line.split("│")] for line in buf.getvalue().splitlines()]
    accept = {cells[2]: cells[7] for cells in rows if len(cells) > 7 and cells[2] != "method"}
    assert accept == {"none": "", "lookup": "-", "model": "0%"}


def test_bars_grow_with_the_value_and_stay_in_their_width() -> None:
    widths = [len(bar(v, 4.0, 20)) for v in (0.0, 0.5, 1.0, 2.0, 4.0, 9.0)]
    assert widths == sorted(widths) and widths[0] == 0 and widths[-1] == 20
    assert bar(2.0, 4.0, 20) == "█" * 10


def test_output_paths_are_checked_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        OutputFiles(str(tmp_path / "missing" / "r.json"), None, None)
    with pytest.raises(UsageError, match="is a directory"):
        OutputFiles(None, str(tmp_path), None)
    with pytest.raises(UsageError, match="only --json can write to standard output"):
        OutputFiles(None, "-", None)


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    same = str(tmp_path / "same.out")
    with pytest.raises(UsageError, match=f"--json and --csv both write {same}: give each its own"):
        OutputFiles(same, same, None)
    # The same file under another spelling is the same file.
    other = str(tmp_path / "sub" / ".." / "same.out")
    (tmp_path / "sub").mkdir()
    with pytest.raises(UsageError, match="--csv and --plot both write"):
        OutputFiles(None, same, other)
    OutputFiles("-", same, None)  # stdout is no file


@pytest.mark.parametrize("name", ["p.gif", "p", "p.png.txt"])
def test_plot_files_without_a_known_extension_are_refused(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(UsageError, match=r"ending in \.png, \.svg or \.pdf"):
        OutputFiles(None, None, path)


def test_plot_needs_matplotlib_and_writes_a_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from spec_cli.bench.plot import plot_bytes

    assert plot_bytes(report()).startswith(b"\x89PNG\r\n\x1a\n")
    # The extension picks the format.
    starts = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF"}
    for ext, magic in starts.items():
        files = OutputFiles(None, None, str(tmp_path / f"chart.{ext.upper()}"))
        files.finish(report())
        assert (tmp_path / f"chart.{ext.upper()}").read_bytes().startswith(magic)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    with pytest.raises(
        UsageError, match=r"--plot needs matplotlib: pip install 'spec-cli\[plot\]'"
    ):
        OutputFiles(None, None, str(tmp_path / "p.png"))


def test_a_plot_through_a_link_takes_its_format_from_the_name_given(tmp_path: Path) -> None:
    link = tmp_path / "chart.png"
    link.symlink_to(tmp_path / "store_v3")
    assert OutputFiles(None, None, str(link)).plot_format == "png"
