"""What a benchmark ran on: the machine's description and its speculation ceiling."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from spec_cli.backend.base import Backend


def cpu_model() -> str:
    """The CPU's marketing name, or the architecture when the OS does not say."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """The `machine` object of `--json`: CPU, cores, threads used and llama.cpp build."""
    from spec_cli.backend.llama_cpp import llama_cpp_version, physical_cores, system_info

    return {
        "cpu": cpu_model(),
        "cores": physical_cores(),
        "logical_cpus": os.cpu_count() or 0,
        "threads": threads,
        "load_average": load_average(),
        "backend": system_info(),
        "llama_cpp_version": llama_cpp_version(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load_average() -> float | None:
    """One-minute load average (None where the OS has none, e.g. Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_note() -> str | None:
    """A warning when other programs already keep the CPU busy: timings will be noisy."""
    from spec_cli.backend.llama_cpp import physical_cores

    cores = physical_cores()
    load = load_average()
    if load is None or load < max(1.0, 0.5 * cores):
        return None
    return (
        f"the CPU is already busy (load {load:.1f} on {cores} cores): timings will be noisy; "
        "close other programs for a fair comparison"
    )


def ceiling(
    target: Backend, draft: Backend | None, draft_max: int, refresh: bool = False
) -> dict[str, Any]:
    """Speedup of a perfect, free drafter at its best draft length, up to `draft_max`, under
    this machine's measured verify cost curve (measured once and cached, a few seconds the
    first time; `refresh` measures again and replaces what was cached)."""
    from spec_cli.backend.llama_cpp import build_id
    from spec_cli.calibration import load_or_measure

    build = build_id()
    cost = load_or_measure(target, draft, build, refresh=refresh)
    length, speedup = cost.ceiling(draft_max)
    return {
        "speedup": speedup,
        "draft_length": length,
        "target_call_seconds": cost.target_seconds,
        "draft_token_cost": cost.draft_token,
        "verify_cost": list(cost.verify),
        "backend_id": build,
    }
