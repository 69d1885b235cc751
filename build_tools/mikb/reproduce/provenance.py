"""Provenance of a reproduction run: which code, which weights, which machine."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

TRACKED_PACKAGES = ("torch", "transformer-lens", "numpy", "mikb", "transformers")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: Path, ignore: Iterable[Path] = ()) -> tuple[str | None, bool]:
    """Commit hash and whether tracked files outside ``ignore`` have uncommitted changes
    (None outside a git tree).

    The runner ignores every circuit's results folder: otherwise each run of
    `mikb reproduce --all` after the first would be recorded as made from a dirty tree, by the
    fresh results of the runs before it.
    """
    excluded = [f":(exclude){path.resolve().relative_to(root.resolve()).as_posix()}" for path in ignore]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, False
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def device_description(device: str) -> str:
    """A readable name of the machine part that ran the script (for provenance)."""
    import os

    if device == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)"
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_settings() -> dict[str, str]:
    """The thread-count variables the run's child inherits: on a CPU, a different count can
    change float summation order (and so a training trajectory) and the wall time by 20x."""
    import os

    return {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}


def resolve_device(requested: str, supported: tuple[str, ...]) -> str:
    """Turn ``cpu``, ``cuda`` or ``auto`` into the device a run will use.

    ``auto`` takes CUDA when a GPU is visible and the script supports it, else the CPU. An
    explicit ``cuda`` that cannot be honoured is an error rather than a silent CPU run,
    because the two give different timings and (slightly) different numbers.
    """
    if requested == "cpu" and "cpu" in supported:
        return "cpu"  # without importing torch: it is most of the runner's start-up time
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if has_cuda and "cuda" in supported else "cpu"
    if requested not in supported:
        raise ValueError(f"the script supports devices {', '.join(supported)}, not '{requested}'")
    if requested == "cuda" and not has_cuda:
        raise ValueError("--device cuda: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False)")
    return requested
