"""Provenance of a reproduction run: which code, which weights, which machine."""

from __future__ import annotations

import platform
import subprocess
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


def git_state(root: Path) -> tuple[str | None, bool]:
    """Commit hash and whether the tree has uncommitted changes (None outside a git tree)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, False
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def device_description(device: str) -> str:
    import os

    if device == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)"
    return device
