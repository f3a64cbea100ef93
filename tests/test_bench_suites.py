"""Benchmark suites: the built-in sets' shape, and one-line errors for bad user files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from spec_cli.bench.suites import load_suite, parse_suite
from spec_cli.errors import PromptError, UsageError


def test_quick_suite_covers_five_categories_in_about_a_dozen_prompts() -> None:
    suite = load_suite("quick")
    counts = Counter(p.category for p in suite.prompts)
    assert len(counts) >= 5
    assert 10 <= len(suite.prompts) <= 16
    assert any(len(p.turns) > 1 for p in suite.prompts)  # multi-turn is represented


def test_full_suite_has_ten_prompts_per_category_and_multi_turn() -> None:
    suite = load_suite("full")
    counts = Counter(p.category for p in suite.prompts)
    assert len(suite.prompts) >= 60
    assert set(counts.values()) == {10}
    assert {"multi-turn", "translation", "summarization", "qa", "math", "rag", "code-edit"} <= set(
        counts
    )
    assert all(len(p.turns) >= 2 for p in suite.prompts if p.category == "multi-turn")


def test_quick_is_a_subset_of_full_with_the_same_text() -> None:
    full = {p.id: p for p in load_suite("full").prompts}
    for p in load_suite("quick").prompts:
        assert full[p.id] == p


def test_input_grounded_prompts_carry_their_input_text() -> None:
    """Summaries, RAG and code edits need real material: a paragraph, documents, a function."""
    for p in load_suite("full").prompts:
        text = p.turns[0]
        if p.category == "summarization":
            assert len(text.split("\n\n", 1)[1].split()) >= 100, p.id  # a real paragraph
        if p.category == "rag":
            assert "[1]" in text and "[3]" in text and "Question:" in text, p.id
        if p.category == "code-edit":
            code = text.split("```")[1]
            assert len(code.strip().splitlines()[1:]) >= 4, p.id  # a function, not a line
            assert "def " in code or "function " in code, p.id


def test_builtin_files_declare_origin_and_licence() -> None:
    for name in ("quick", "full"):
        meta = load_suite(name).meta
        assert meta["name"] == name
        assert "Apache-2.0" in meta["license"]
        assert "written for spec" in meta["source"]


def test_user_suite_with_turns_shorthand_blank_lines_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"_meta": {"name": "mine"}}\n\n'
        '{"id": "a", "category": "qa", "turns": ["one", "two"]}\n'
        '{"id": 7, "category": "code", "prompt": "fix it"}\n'
    )
    suite = load_suite(str(path))
    assert suite.name == "mine"
    assert [(p.id, p.category, p.turns) for p in suite.prompts] == [
        ("a", "qa", ("one", "two")),
        ("7", "code", ("fix it",)),
    ]
    assert suite.only(["code"]).prompts == suite.prompts[1:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "x.jsonl:1: not valid JSON"),
        ('["a list"]\n', "x.jsonl:1: each line must be a JSON object"),
        ('{"category": "qa", "turns": ["q"]}\n', 'x.jsonl:1: "id" must be a non-empty string'),
        ('{"id": "a", "turns": ["q"]}\n', 'x.jsonl:1: "category" must be a non-empty string'),
        ('{"id": "a", "category": "qa"}\n', 'x.jsonl:1: missing "turns"'),
        ('{"id": "a", "category": "qa", "turns": []}\n', '"turns" must be a non-empty list'),
        ('{"id": "a", "category": "qa", "turns": ["ok", 3]}\n', "turn 2 must be a non-empty"),
        (
            '{"id": "a", "category": "qa", "turns": ["q"]}\n'
            '{"id": "a", "category": "qa", "turns": ["r"]}\n',
            "x.jsonl:2: duplicate id 'a' (first used on line 1)",
        ),
        ('{"_meta": {}}\n\n', "x.jsonl holds no prompts"),
    ],
)
def test_bad_suite_files_fail_with_one_line_naming_file_and_line(
    content: str, message: str
) -> None:
    with pytest.raises(PromptError) as err:
        parse_suite(content.encode(), "x.jsonl")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_suite_names_paths_and_categories_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown suite 'quik': use quick, full"):
        load_suite("quik")
    with pytest.raises(PromptError, match=r"suite file not found: nope\.jsonl"):
        load_suite("nope.jsonl")
    with pytest.raises(PromptError, match="is a directory"):
        load_suite(str(tmp_path))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps({"id": "a", "category": "qa", "turns": ["x"]}).encode() + b"\xe9")
    with pytest.raises(PromptError, match="not UTF-8"):
        load_suite(str(bad))
    with pytest.raises(UsageError, match="no category 'poetry': choose from multi-turn"):
        load_suite("quick").only(["poetry"])
