"""Site generation and a real strict MkDocs build of the fixture repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_mikb, write_mkdocs_config

from mikb.site.generate import InvalidEntries, generate_site
from mikb.site.linkcheck import check_site


def _build(root: Path) -> subprocess.CompletedProcess:
    write_mkdocs_config(root)
    return run_mikb(root, "build")


@pytest.fixture
def built(kb_root: Path) -> Path:
    proc = _build(kb_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return kb_root / "site"


def test_every_page_kind_exists(built: Path) -> None:
    for rel in ["index.html", "problems/index.html", "problems/categories/index.html",
                "problems/category/toy-models/index.html", "problems/fx-1/index.html", "circuits/index.html",
                "circuits/toy-copy/index.html", "papers/index.html", "papers/doe2022toys/index.html",
                "models/toy-2l/index.html", "explore/index.html", "tags/index.html", "schemas/index.html",
                "data/entries.json", "data/graph.json", "data/graph.graphml", "schemas/problem.schema.json",
                "search/search_index.json", "assets/mikb.js", "assets/graph.js", "assets/edges.js"]:
        assert (built / rel).is_file(), rel


def test_links_and_anchors_resolve(built: Path) -> None:
    checked, broken = check_site(built)
    assert checked > 100
    assert [b.format() for b in broken] == []


def test_backlinks_appear(built: Path) -> None:
    paper = (built / "papers/roe2023methods/index.html").read_text()
    assert 'href="../../problems/fx-1/"' in paper and 'href="../../circuits/toy-copy/"' in paper
    assert "Evidence for status changes" in paper
    problem = (built / "problems/fx-1/index.html").read_text()
    assert 'href="../../circuits/toy-copy/"' in problem  # addressed by
    assert 'href="../fx-3/"' in problem  # related, declared on fx-3 only
    model = (built / "models/toy-2l/index.html").read_text()
    assert "Circuits in this model" in model and 'href="../../circuits/toy-copy/"' in model


def test_edit_links_open_the_yaml_source(built: Path) -> None:
    problem = (built / "problems/fx-1/index.html").read_text()
    assert "https://github.com/mikb-dev/mikb/edit/main/problems/fx-1.yaml" in problem
    circuit = (built / "circuits/toy-copy/index.html").read_text()
    assert "edit/main/circuits_zoo/toy-copy/circuit.yaml" in circuit
    index = (built / "problems/index.html").read_text()
    assert "/edit/" not in index  # generated index: nothing to edit


def test_circuit_page_before_reproduction_says_not_run(built: Path) -> None:
    page = (built / "circuits/toy-copy/index.html").read_text()
    assert '<svg class="mikb-diagram"' in page and "H0.1" in page
    assert "0.9 (±0.2)" in page  # reported, with tolerance
    assert "not run" in page and "mikb reproduce toy-copy --model toy-2l" in page
    assert "reproduced</span>" not in page


def test_problem_index_carries_filter_data(built: Path) -> None:
    page = (built / "problems/index.html").read_text()
    assert page.count("<tr data-category=") == 3
    assert 'data-status="partially-solved"' in page and 'data-difficulty="B-C"' in page
    assert "zebra keyword" in page  # summary words feed the text filter


def test_rebuild_with_nothing_changed_writes_nothing(kb_root: Path) -> None:
    first = generate_site(kb_root)
    assert first.written
    second = generate_site(kb_root)
    assert second.written == [] and second.removed == []
    (kb_root / "problems/fx-2.yaml").write_text((kb_root / "problems/fx-2.yaml").read_text().replace(
        "Explain positional attention", "Explain positional attention well"))
    third = generate_site(kb_root)
    assert "problems/fx-2.md" in third.written
    assert all(not w.endswith(".svg") for w in third.written)


def test_removed_entry_removes_its_page(kb_root: Path) -> None:
    generate_site(kb_root)
    (kb_root / "problems/fx-2.yaml").unlink()
    text = (kb_root / "problems/fx-1.yaml").read_text().replace("related_problems: [fx-2]", "related_problems: []")
    (kb_root / "problems/fx-1.yaml").write_text(text)
    report = generate_site(kb_root)
    assert "problems/fx-2.md" in report.removed
    assert not (kb_root / "site_src/problems/fx-2.md").exists()


def test_invalid_entries_stop_generation_with_locations(kb_root: Path) -> None:
    (kb_root / "problems/fx-2.yaml").write_text("id: fx-2\ntitle: [\n")
    with pytest.raises(InvalidEntries) as info:
        generate_site(kb_root)
    assert any(e.format().startswith("problems/fx-2.yaml:") and "YAML syntax error" in e.message for e in info.value.errors)
    proc = _build(kb_root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "problems/fx-2.yaml:" in proc.stderr


def test_plain_mkdocs_build_uses_the_hook(kb_root: Path) -> None:
    """`mkdocs build` alone (no mikb CLI) generates the pages through the thin hook."""
    config = write_mkdocs_config(kb_root)
    (kb_root / "site_src").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MIKB_PAGES_GENERATED"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)], cwd=kb_root,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (kb_root / "site/problems/fx-1/index.html").is_file()


def test_status_feed_and_banner(built: Path) -> None:
    import xml.etree.ElementTree as ET

    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.parse(built / "feed.xml").getroot()
    entries = feed.findall("a:entry", ns)
    # fx-1 moved once after being posed; "posed" entries are not changes
    assert [e.find("a:title", ns).text for e in entries] == ["1.1 Find the copying head in a toy model: partially solved"]
    assert entries[0].find("a:link", ns).get("href").endswith("problems/fx-1/")
    problem = (built / "problems/fx-1/index.html").read_text()
    assert 'class="mikb-banner mikb-banner-partially-solved"' in problem
    assert 'href="../statuses/"' in problem and (built / "problems/statuses/index.html").is_file()
    assert "<thead>\n<tr>\n<th></th>" not in problem  # no empty header row above the facts
