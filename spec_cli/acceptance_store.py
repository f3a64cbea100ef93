"""The draft model's acceptance estimates, kept between runs per target and draft model,
so `auto` starts from what it saw before rather than from its prior.

Only the draft model's rates are kept: how well a draft model agrees with its target is
known only from experience with that pair, while the cheap drafters' priors were measured
on a 68-prompt suite. Carried over from a user's last runs (a smaller, skewed sample:
mostly copying, say) their rates did worse than those priors: replayed under fixed cost
curves on an F32 target after 38 earlier prompts, open-ended writing fell from 1.31x to
1.17x and the worst prompt from 0.99x to 0.94x.
"""

from __future__ import annotations

from pathlib import Path

from spec_cli.acceptance import AcceptanceModel
from spec_cli.backend.base import Backend
from spec_cli.cachefiles import cache_dir, read_json, write_json
from spec_cli.calibration import calibration_key
from spec_cli.drafters.model import ModelDrafter

CARRIED = (ModelDrafter.name,)


def _acceptance_path(target: Backend, draft: Backend) -> Path:
    key = calibration_key(target, draft, "acceptance")
    return cache_dir() / "acceptance" / f"{key}.json"


def load_acceptance(target: Backend, draft: Backend) -> AcceptanceModel:
    """What `auto` learned about the draft model's acceptance with these models before
    (a fresh model when nothing was saved or the file is corrupt)."""
    data = read_json(_acceptance_path(target, draft))
    return AcceptanceModel.from_json(data, sources=CARRIED)


def save_acceptance(target: Backend, draft: Backend, model: AcceptanceModel) -> None:
    """Keep the estimates for the next run (atomically; failure to write is harmless)."""
    write_json(_acceptance_path(target, draft), model.to_json(sources=CARRIED))
