"""Benchmark suites: the built-in `quick` and `full` sets, or a user's JSONL file.

One prompt per line: {"id": "...", "category": "...", "turns": ["first message", ...]}
(`"prompt": "text"` is accepted as a one-turn shorthand). A line holding only a `_meta`
object describes the file (name, licence) and is skipped, as are blank lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from spec_cli.errors import PromptError, UsageError

OVERALL = "all"  # the summary over every category, so no category may be called so

BUILTIN = ("quick", "full")


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark item: a conversation of one or more user turns."""

    id: str
    category: str
    turns: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    """A named, ordered list of prompts."""

    name: str
    prompts: tuple[BenchPrompt, ...]
    meta: dict[str, Any]

    def categories(self) -> list[str]:
        """Categories in first-seen order."""
        return list(dict.fromkeys(p.category for p in self.prompts))

    def only(self, categories: list[str]) -> Suite:
        """The prompts of the given categories (a UsageError names the ones that exist)."""
        known = self.categories()
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise UsageError(
                f"suite {self.name} has no category {unknown[0]!r}: choose from {', '.join(known)}"
            )
        kept = tuple(p for p in self.prompts if p.category in categories)
        return Suite(self.name, kept, self.meta)


def load_suite(name: str) -> Suite:
    """A built-in suite by name, or the JSONL file at path `name`."""
    if name in BUILTIN:
        data = resources.files("spec_cli").joinpath(f"data/bench_{name}.jsonl").read_bytes()
        return parse_suite(data, name)
    path = Path(name).expanduser()
    if not path.exists():
        if path.suffix or "/" in name or "\\" in name:
            raise PromptError(f"suite file not found: {name}")
        raise UsageError(f"unknown suite {name!r}: use quick, full or the path of a .jsonl file")
    if path.is_dir():
        raise PromptError(f"{name} is a directory, not a suite file (.jsonl)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PromptError(f"cannot read suite file {name}: {e.strerror}") from None
    return parse_suite(data, name)


def parse_suite(data: bytes, where: str) -> Suite:
    """Parse and check JSONL suite text; every problem is one line naming file and line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptError(f"{where} is not UTF-8 text (bad byte at offset {e.start})") from None
    prompts: list[BenchPrompt] = []
    meta: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise PromptError(f"{where}:{number}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise PromptError(
                f"{where}:{number}: each line must be a JSON object like "
                '{"id": "p1", "category": "qa", "turns": ["..."]}'
            )
        if "_meta" in obj:
            if isinstance(obj["_meta"], dict):
                meta = obj["_meta"]
            continue
        prompt = _prompt(obj, f"{where}:{number}")
        if prompt.id in first_line:
            raise PromptError(
                f"{where}:{number}: duplicate id {prompt.id!r} (first used on line "
                f"{first_line[prompt.id]}): ids must be unique"
            )
        first_line[prompt.id] = number
        prompts.append(prompt)
    if not prompts:
        raise PromptError(
            f"{where} holds no prompts: add lines like "
            '{"id": "p1", "category": "qa", "turns": ["..."]}'
        )
    name = str(meta.get("name") or Path(where).stem)
    return Suite(name, tuple(prompts), meta)


def _prompt(obj: dict[str, Any], at: str) -> BenchPrompt:
    pid = obj.get("id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or str(pid).strip() == "":
        raise PromptError(f'{at}: "id" must be a non-empty string')
    category = obj.get("category")
    if not isinstance(category, str) or not category.strip():
        raise PromptError(f'{at}: "category" must be a non-empty string (e.g. "qa")')
    if category.strip() == OVERALL:
        raise PromptError(
            f'{at}: category "{OVERALL}" names the overall summary: call it otherwise'
        )
    if "turns" in obj:
        turns = obj["turns"]
    elif "prompt" in obj:
        turns = [obj["prompt"]]
    else:
        raise PromptError(f'{at}: missing "turns" (a list of user messages)')
    if not isinstance(turns, list) or not turns:
        raise PromptError(f'{at}: "turns" must be a non-empty list of strings')
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise PromptError(f"{at}: turn {i} must be a non-empty string")
    return BenchPrompt(str(pid), category.strip(), tuple(turns))
