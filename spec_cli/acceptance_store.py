"""Acceptance estimates kept between runs, per target and draft model, so `auto` starts
from what it saw before rather than from its priors."""

from __future__ import annotations

from pathlib import Path

from spec_cli.acceptance import AcceptanceModel
from spec_cli.backend.base import Backend
from spec_cli.cachefiles import cache_dir, read_json, write_json
from spec_cli.calibration import calibration_key


def _acceptance_path(target: Backend, draft: Backend | None) -> Path:
    key = calibration_key(target, draft, "acceptance")
    return cache_dir() / "acceptance" / f"{key}.json"


def load_acceptance(target: Backend, draft: Backend | None) -> AcceptanceModel:
    """What `auto` learned about its drafters' acceptance with these models before
    (a fresh model when nothing was saved or the file is corrupt)."""
    return AcceptanceModel.from_json(read_json(_acceptance_path(target, draft)))


def save_acceptance(target: Backend, draft: Backend | None, model: AcceptanceModel) -> None:
    """Keep the estimates for the next run (atomically; failure to write is harmless)."""
    write_json(_acceptance_path(target, draft), model.to_json())
