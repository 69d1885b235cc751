"""Shared test helpers: a fresh copy of the fixture repository for every test that writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_mkdocs_config(root: Path) -> Path:
    """The repo's own mkdocs.yml, pointed at the repo's hook and without its watch list."""
    lines, skipping = [], False
    for line in (REPO / "mkdocs.yml").read_text().splitlines():
        if line.startswith("watch:"):
            skipping = True
            continue
        if skipping and (line.startswith("  ") or not line.strip()):
            continue
        skipping = False
        lines.append(line.replace("build_tools/mkdocs_hooks.py", str(REPO / "build_tools" / "mkdocs_hooks.py")))
    config = root / "mkdocs.yml"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture
def kb_root(tmp_path: Path) -> Path:
    """The fixture entries plus the repo's hand-written pages (the nav names them)."""
    root = tmp_path / "kb"
    shutil.copytree(FIXTURES / "kb", root)
    for page in (REPO / "docs").glob("*.md"):
        if not (root / "docs" / page.name).exists():
            shutil.copyfile(page, root / "docs" / page.name)
    return root


def run_mikb(root: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "mikb.cli", "--root", str(root), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def repo_site() -> Path:
    """The repository's own site, built once per session with the real CLI (strict).
    MIKB_E2E_SITE may name a prebuilt site instead, for iterating on browser tests."""
    prebuilt = os.environ.get("MIKB_E2E_SITE")
    if prebuilt:
        return Path(prebuilt)
    proc = subprocess.run([sys.executable, "-m", "mikb.cli", "--root", str(REPO), "build"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return REPO / "site"
