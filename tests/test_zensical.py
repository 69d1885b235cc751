"""The generated Markdown builds with Zensical too (Material for MkDocs' successor, which runs
no MkDocs hooks): the same pages exist and every internal link resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_mikb, write_mkdocs_config

from mikb.site.linkcheck import check_site

ZENSICAL = shutil.which("zensical") or str(Path(sys.executable).with_name("zensical"))


def _pages(site: Path) -> set[str]:
    return {p.relative_to(site).as_posix() for p in site.rglob("index.html")}


@pytest.mark.slow
def test_zensical_builds_the_same_site(kb_root: Path) -> None:
    if not Path(ZENSICAL).is_file():
        if os.environ.get("CI") == "true":
            raise RuntimeError("zensical is part of the test extra; `make test` installs it")
        pytest.skip("zensical not installed")
    write_mkdocs_config(kb_root)
    assert run_mikb(kb_root, "build").returncode == 0
    mkdocs_pages = _pages(kb_root / "site")
    shutil.rmtree(kb_root / "site")
    # Zensical runs no hooks: the library step writes the pages first, as documented.
    assert run_mikb(kb_root, "build", "--generate-only").returncode == 0
    proc = subprocess.run([ZENSICAL, "build", "-f", str(kb_root / "mkdocs.yml")], cwd=kb_root, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    zensical_pages = _pages(kb_root / "site")
    assert mkdocs_pages - zensical_pages == set()
    checked, broken = check_site(kb_root / "site")
    assert checked > 100
    assert [b.format() for b in broken] == []
