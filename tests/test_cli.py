"""The command line as a contributor uses it: scaffold, check, export."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_mikb


def test_new_entries_pass_check(kb_root: Path) -> None:
    for kind, entry_id in (("problem", "fx-new"), ("circuit", "new-circuit"), ("paper", "new2026paper")):
        proc = run_mikb(kb_root, "new", kind, entry_id, "--title", "A new entry")
        assert proc.returncode == 0, proc.stderr
    proc = run_mikb(kb_root, "check")
    assert proc.returncode == 0, proc.stdout
    # the new paper is cited by nobody yet: a warning, named at its line
    assert "literature/papers.yaml:17:10: warning: paper 'new2026paper' is not cited" in proc.stdout
    assert (kb_root / "circuits_zoo/new-circuit/reproduce.py").is_file()
    assert (kb_root / "problems/fx-new.yaml").read_text().startswith("# yaml-language-server: $schema=")


def test_new_refuses_to_overwrite(kb_root: Path) -> None:
    before = (kb_root / "problems/fx-1.yaml").read_text()
    proc = run_mikb(kb_root, "new", "problem", "fx-1")
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert (kb_root / "problems/fx-1.yaml").read_text() == before


def test_export_writes_every_entry(kb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "entries.json"
    assert run_mikb(kb_root, "export", "-o", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert [p["id"] for p in data["problems"]] == ["fx-1", "fx-2", "fx-3"]
    assert data["circuits"][0]["components"][0]["location"] == "0.1"
    assert {p["key"] for p in data["papers"]} == {"doe2022toys", "roe2023methods"}
    assert data["problems"][0]["source_file"] == "problems/fx-1.yaml"


def test_strict_check_fails_on_warnings(kb_root: Path) -> None:
    run_mikb(kb_root, "new", "paper", "uncited2026")
    assert run_mikb(kb_root, "check").returncode == 0
    assert run_mikb(kb_root, "check", "--strict").returncode == 1
