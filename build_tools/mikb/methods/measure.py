"""Wall time and peak resident memory of one call, for comparing methods.

Peak memory is the process's resident set size sampled every millisecond by a thread during
the call, minus its size just before (CPU tensors are allocated outside Python's tracemalloc,
so RSS is what sees them). On CUDA, use ``torch.cuda.max_memory_allocated`` instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measured(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, peak RSS increase in MiB) of ``fn(*args, **kwargs)``."""
    start_rss = _rss()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    finally:
        wall = time.perf_counter() - t0
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss())
    return result, wall, (peak[0] - start_rss) / 2**20
