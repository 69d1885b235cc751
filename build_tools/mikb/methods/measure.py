"""Wall time and peak memory of one call, for comparing methods.

Peak memory is the kernel's resident-set high-water mark (``VmHWM``), reset to the current
RSS just before the call by writing ``5`` to ``/proc/self/clear_refs``, minus the RSS at that
moment: the extra memory the call needed at its peak, whoever allocated it (torch allocates
CPU tensors outside Python's tracemalloc). ``benchmarks/_memory.py`` measures the same way.
Freed memory that the C allocator keeps would hide a later call's allocations from RSS, so
``malloc_trim`` hands it back to the kernel first (glibc only; elsewhere this is skipped and
the number can only be lower). Where the kernel does not offer the reset (not Linux), the
peak is ``None``. On CUDA, use
``torch.cuda.max_memory_allocated`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> int | None:
    """Reset the high-water mark; the RSS it was reset to (KiB), or None if unsupported."""
    _trim()
    try:
        _CLEAR.write_text("5")
        return _status_kib("VmRSS")
    except (OSError, RuntimeError):
        return None


def measured(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float | None]:
    """(result, wall seconds, peak memory increase in MiB or None) of ``fn(*args, **kwargs)``."""
    base = _reset_peak()
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    wall = time.perf_counter() - t0
    peak = None if base is None else max(0, _status_kib("VmHWM") - base) / 1024
    return result, wall, peak
