"""Peak-memory measurement for CPU torch code: the kernel's resident-set high-water mark.

Why this and not tracemalloc: torch allocates tensor storage in C++, which tracemalloc never
sees, and torch keeps no allocator statistics for CPU tensors. The kernel does: ``VmHWM`` in
``/proc/self/status`` is the process's peak resident set, and writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0) resets it to the current RSS. So we reset it after the
model and inputs are loaded, run the method once, and report ``VmHWM - RSS at reset``: the
extra memory the method needed at its peak, whoever allocated it (torch, MKL, glibc).

Each method is measured in a fresh subprocess so that memory cached by the allocator after
one method cannot hide or inflate the next one's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the resident-set high-water mark; returns the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def peak_bytes() -> int:
    """The resident-set high-water mark since the last reset, in bytes."""
    return _status_kib("VmHWM") * 1024


def measure_extra_peak(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``fn`` once; return its result, the extra peak RSS it caused and the baseline RSS."""
    baseline = reset_peak()
    result = fn()
    return result, peak_bytes() - baseline, baseline


def run_probe(script: Path, probe: str, extra_args: list[str]) -> dict[str, Any]:
    """Run ``script --probe probe`` in a fresh interpreter; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, str(script), "--probe", probe, *extra_args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])
