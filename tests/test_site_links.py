"""The repository's own site: a real strict build, every internal link and anchor resolves,
and every page kind is there with the full content."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO

from mikb.check import run_check
from mikb.site.linkcheck import check_site


def test_repository_entries_are_clean() -> None:
    result = run_check(REPO)
    assert [d.format() for d in result.diagnostics] == []
    assert len(result.kb.problems) >= 300 and len(result.kb.papers) >= 80 and len(result.kb.circuits) >= 5


def test_no_broken_internal_links_or_anchors(repo_site: Path) -> None:
    checked, broken = check_site(repo_site)
    assert checked > 10_000
    assert [b.format() for b in broken] == []


def test_every_entry_has_its_page(repo_site: Path) -> None:
    entries = json.loads((repo_site / "data/entries.json").read_text())
    for problem in entries["problems"]:
        assert (repo_site / "problems" / problem["id"] / "index.html").is_file(), problem["id"]
    for paper in entries["papers"]:
        assert (repo_site / "papers" / paper["key"] / "index.html").is_file(), paper["key"]
    for circuit in entries["circuits"]:
        page = (repo_site / "circuits" / circuit["id"] / "index.html").read_text()
        assert '<svg class="mikb-diagram"' in page
    for category in entries["categories"]:
        assert (repo_site / "problems/category" / category["slug"] / "index.html").is_file()
