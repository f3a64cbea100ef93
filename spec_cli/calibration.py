"""Cached cost models: measured once per model file and settings, re-measured when stale."""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spec_cli.backend.base import Backend
from spec_cli.cachefiles import cache_dir, file_key, locked, read_json, write_json
from spec_cli.costs import MAX_BATCH, CostModel, calibrate

MAX_AGE_SECONDS = 14 * 24 * 3600
_VERSION = 5  # bumped when the measuring procedure or the contexts measured change


def calibration_key(target: Backend, draft: Backend | None, backend_id: str) -> str:
    """What a measurement depends on: the files, threads, GPU layers and llama.cpp build."""
    parts = [
        f"v{_VERSION}",
        backend_id,
        file_key(target.path),
        f"t{getattr(target, 'threads', 0)}",
        f"g{getattr(target, 'n_gpu_layers', 0)}",
    ]
    if draft is not None:
        parts += [file_key(draft.path), f"dg{getattr(draft, 'n_gpu_layers', 0)}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _from_json(data: Any) -> CostModel | None:
    """A fresh, well-formed cached model, or None."""
    try:
        age = time.time() - float(data["measured_at"])
        if not -3600 < age <= MAX_AGE_SECONDS:  # stale, or dated in the future
            return None
        verify = tuple(float(v) for v in data["verify"])
        others = [float(data[k]) for k in ("draft_token", "target_seconds", "draft_batch_token")]
        # As calibrate() writes them: n tokens cost from 1 to n calls, never less for more.
        if len(verify) != MAX_BATCH or verify[0] != 1.0:
            return None
        if any(not 1.0 <= v <= n for n, v in enumerate(verify, 1)):
            return None
        if any(later < earlier for earlier, later in itertools.pairwise(verify)):
            return None
        if not all(math.isfinite(v) and v >= 0 for v in others) or others[1] <= 0:
            return None
        return CostModel(verify, *others)
    except (KeyError, TypeError, ValueError):
        return None


def load_or_measure(
    target: Backend,
    draft: Backend | None,
    backend_id: str,
    refresh: bool = False,
    on_measure: Callable[[], None] | None = None,
    on_unsaved: Callable[[Path], None] | None = None,
) -> CostModel:
    """The cached cost model for these settings, measuring (a few seconds) when missing,
    corrupt, older than two weeks or when `refresh` is set."""
    path = cache_dir() / "calibration" / f"{calibration_key(target, draft, backend_id)}.json"
    model = None if refresh else _from_json(read_json(path))
    if model is not None:
        return model
    with locked(path):
        # Another run may have measured while we waited for the lock.
        model = None if refresh else _from_json(read_json(path))
        if model is None:
            if on_measure is not None:
                on_measure()
            model = calibrate(target, draft)
            saved = write_json(
                path,
                {
                    "verify": list(model.verify),
                    "draft_token": model.draft_token,
                    "draft_batch_token": model.draft_batch_token,
                    "target_seconds": model.target_seconds,
                    "measured_at": time.time(),
                    "target": target.path,
                    "draft": draft.path if draft is not None else None,
                },
            )
            if not saved and on_unsaved is not None:
                on_unsaved(path.parent)
    return model
