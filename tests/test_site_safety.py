"""Hostile entries: `mikb check` names each attack, `mikb build` refuses them, and even pages
generated from them anyway (the sanitiser alone) run no script and publish no outside file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import serve_directory
from conftest import FIXTURES, REPO, run_mikb, write_mkdocs_config
from hostile_repo import SECRET_MARKER, make_hostile_repo

from mikb.check import run_check
from mikb.site.audit import audit_page, audit_site
from mikb.site.generate import generate_site
from mikb.site.safe_html import block, inline, is_safe_url, text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    root = make_hostile_repo(FIXTURES / "kb", base)
    for page in (REPO / "docs").glob("*.md"):  # the nav names them
        if not (root / "docs" / page.name).exists():
            shutil.copyfile(page, root / "docs" / page.name)
    write_mkdocs_config(root)
    return root


@pytest.fixture(scope="module")
def hostile_site(hostile: Path) -> Path:
    """Pages generated from the hostile entries without the check gate, built by real MkDocs."""
    generate_site(hostile, require_valid=False)
    env = {**os.environ, "MIKB_PAGES_GENERATED": "1", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-f", str(hostile / "mkdocs.yml")],
                          cwd=hostile, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return hostile / "site"


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_check_reports_every_attack_where_it_stands(hostile: Path) -> None:
    result = run_check(hostile)
    errors = {(d.path, d.line, d.message.split(" (")[0].split(":")[0]) for d in result.errors}
    problem = hostile / "problems" / "fx-1.yaml"
    title_line = _line_of(problem, "problem title")
    assert ("problems/fx-1.yaml", title_line, "raw HTML is not allowed in entries") in errors
    messages = "\n".join(d.format() for d in result.errors)
    for where in ("problems/fx-1.yaml", "problems/_categories.yaml", "literature/papers.yaml",
                  "circuits_zoo/models.yaml", "circuits_zoo/toy-copy/circuit.yaml"):
        assert f"{where}:" in messages and "raw HTML is not allowed" in messages
    assert "unsafe link 'javascript:alert('inline-link'))'" in messages or "unsafe link 'javascript:alert('inline-link'" in messages
    assert "unsafe link 'javascript:alert('reference-link')'" in messages
    results = "circuits_zoo/toy-copy/results/toy-2l"
    assert f"{results}/leak.svg:1:1: symlinks are not allowed in results folders" in messages
    assert f"{results}/results.json:" in messages and "figures.0.file" in messages and "figures.1.file" in messages
    assert "docs/leak.md:1:1: symlinks are not published" in messages
    assert "CONTRIBUTING.md:1:1: symlinks are not published" in messages


def test_cli_build_refuses_hostile_entries(hostile: Path, tmp_path: Path) -> None:
    proc = run_mikb(hostile, "build")
    assert proc.returncode == 1
    assert "the site was not built" in proc.stderr
    assert not (hostile / "site").exists() or not any((hostile / "site").rglob("*.html"))


def test_sanitised_site_publishes_no_outside_file(hostile_site: Path) -> None:
    leaked = [p for p in hostile_site.rglob("*") if p.is_file() and SECRET_MARKER.encode() in p.read_bytes()]
    assert leaked == []
    assert not any(p.is_symlink() for p in hostile_site.rglob("*"))
    results = hostile_site / "circuits/toy-copy/results/toy-2l"
    assert sorted(p.name for p in results.iterdir()) == ["failure.json", "log.txt", "results.json"]


def test_sanitised_site_passes_its_own_audit(hostile_site: Path) -> None:
    assert audit_site(hostile_site) == []
    page = (hostile_site / "circuits/toy-copy/index.html").read_text()
    assert "circuit behaviour" in page and "&lt;script&gt;" in page  # shown as text, not dropped silently


def test_audit_flags_what_the_sanitiser_would_have_removed() -> None:
    page = ('<html><head><title>x</title></head><body><article><p onclick="x()">a</p><script>1</script>'
            '<a href=" JaVa&#09;script:alert(1)">b</a><img srcset="ok.png 1x, javascript:x 2x"></article></body></html>')
    findings = [f.message for f in audit_page(page, "p.html")]
    assert any("onclick" in m for m in findings)
    assert any("<script>" in m for m in findings)
    assert any("href=" in m for m in findings)
    assert any("srcset=" in m for m in findings)


@pytest.mark.parametrize("url, safe", [
    ("https://arxiv.org/abs/2211.00593", True), ("mailto:a@b.org", True), ("../papers/x.md", True),
    ("javascript:alert(1)", False), (" JAVASCRIPT:alert(1)", False), ("java\tscript:alert(1)", False),
    ("&#106;avascript:alert(1)", False), ("javascript%3Aalert(1)", False), ("data:text/html,x", False),
    ("vbscript:x", False), ("file:///etc/passwd", False),
])
def test_url_schemes(url: str, safe: bool) -> None:
    assert is_safe_url(url) is safe


def test_rendered_text_is_inert_for_a_second_markdown_pass() -> None:
    import markdown

    for source in ("[x](javascript:alert(1))", "{: onclick=alert(1) }", "`a` *b* <b>c</b>", "a | b"):
        for rendered in (text(source), inline(source)):
            again = markdown.markdown(f"| h |\n|---|\n| {rendered} |", extensions=["tables", "attr_list"])
            assert audit_page(f"<article>{again}</article>", "t.html") == []
            assert "<a " not in again and "<b>" not in again and not re.search(r"<[^>]*\son\w+=", again)
    assert "<em>b</em>" in block("*b*") and "<script" not in block("<script>x</script>")


@pytest.mark.browser
@pytest.mark.slow
def test_no_hostile_script_runs_in_chromium(hostile_site: Path, browser) -> None:
    pages = sorted(p.relative_to(hostile_site).as_posix() for p in hostile_site.rglob("index.html"))
    assert len(pages) > 10
    dialogs: list[str] = []
    outside: list[str] = []
    with serve_directory(hostile_site) as base:
        context = browser.new_context()
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:", "blob:")) else None)
        for rel in pages:
            page.goto(f"{base}/{rel}")
            page.wait_for_load_state("load")
            # Hover everything (mouseover handlers) and collect every address a click could follow.
            page.evaluate("() => document.querySelectorAll('*').forEach(e => e.dispatchEvent("
                          "new MouseEvent('mouseover', {bubbles: true})))")
            addresses = page.evaluate("() => [...document.querySelectorAll('[href],[src],[action],[formaction]')]"
                                      ".map(e => e.getAttribute('href') || e.getAttribute('src') || "
                                      "e.getAttribute('action') || e.getAttribute('formaction'))")
            assert [a for a in addresses if not is_safe_url(a)] == [], rel
            assert page.evaluate("() => window.__pwned === undefined"), rel
        context.close()
    assert dialogs == []
    assert outside == []
