"""What a benchmark will run: the methods from `--methods`, and the facts its report opens
with (machine, models, settings, ceiling)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from spec_cli.bench.runner import BASELINE, BenchSettings
from spec_cli.bench.suites import Suite
from spec_cli.errors import UsageError

if TYPE_CHECKING:
    from spec_cli.session import Session

DEFAULT_METHODS = ("none", "prompt-lookup", "auto")


def parse_methods(spec: str | None, has_draft: bool) -> tuple[tuple[str, ...], bool]:
    """Methods from a comma-separated `--methods` value (None: the default set).

    Returns (methods, whether the baseline `none` was added because it was missing: every
    speedup is measured against it). Unknown names and `model` without a draft model are
    usage errors, raised before any model loads.
    """
    from spec_cli.session import DRAFTERS

    if spec is None:
        methods = list(DEFAULT_METHODS) + (["model"] if has_draft else [])
    else:
        methods = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
        if not methods:
            raise UsageError("--methods is empty: give e.g. none,prompt-lookup,auto")
    for m in methods:
        if m not in DRAFTERS:
            raise UsageError(
                f"unknown method {m!r} in --methods: choose from {', '.join(DRAFTERS)}"
            )
    if "model" in methods and not has_draft:
        raise UsageError("--methods model needs a draft model: pass --draft PATH")
    added = BASELINE not in methods
    if added:
        methods.insert(0, BASELINE)
    return tuple(methods), added


def settings_dict(settings: BenchSettings, suite: Suite, ctx_size: int) -> dict[str, Any]:
    """The `settings` object of `--json` (enough to repeat the run)."""
    s = settings.sampling
    return {
        "suite": suite.name,
        "prompts": len(suite.prompts),
        "categories": suite.categories(),
        "methods": list(settings.methods),
        "repeats": settings.repeats,
        "max_tokens": settings.max_tokens,
        "draft_max": settings.draft_max,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "seed": settings.seed,
        "chat_template": not settings.raw,
        "ctx_size": ctx_size,
        "ngram_cache": settings.ngram_cache,
    }


def header(
    session: Session, settings: BenchSettings, suite: Suite, ceiling: dict[str, Any] | None
) -> dict[str, Any]:
    """The facts a report opens with."""
    from spec_cli import __version__
    from spec_cli.bench.machine import machine_info

    target = session.target
    return {
        "spec_version": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(target.threads),
        "model": session.model_path,
        "draft_model": session.draft_path,
        "model_info": target.describe(),
        "draft_model_info": session.draft.describe() if session.draft is not None else None,
        "settings": {
            **settings_dict(settings, suite, target.n_ctx),
            "chat_template": not settings.raw and session.has_chat_template(),
        },
        "ceiling": ceiling,
    }
