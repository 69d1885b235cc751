"""`mikb check`: every error class reported as path:line:col, all in one run, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, run_mikb

from mikb.check import run_check

BAD = FIXTURES / "bad"
PROBLEM = "problems/fx-2.yaml"
CIRCUIT = "circuits_zoo/toy-copy/circuit.yaml"

# (bad fixture, where it goes, expected "path:line:col", expected words in the message)
CASES = [
    ("unknown_paper.yaml", PROBLEM, f"{PROBLEM}:12:27", "unknown paper key 'nosuch2020paper'"),
    ("unknown_problem.yaml", PROBLEM, f"{PROBLEM}:12:26", "unknown problem id 'fx-99'"),
    ("unknown_circuit.yaml", PROBLEM, f"{PROBLEM}:13:5", "unknown circuit id 'no-such-circuit'"),
    ("id_mismatch.yaml", PROBLEM, f"{PROBLEM}:1:5", "does not match the file name 'fx-2'"),
    ("unknown_field.yaml", PROBLEM, f"{PROBLEM}:14:1", "unknown field 'dificulty_note'"),
    ("wrong_type.yaml", PROBLEM, f"{PROBLEM}:12:7", "tags must be array, got text"),
    ("bad_enum.yaml", PROBLEM, f"{PROBLEM}:4:13", "difficulty has an invalid value 'E'"),
    ("bad_enum.yaml", PROBLEM, f"{PROBLEM}:5:9", "status must be one of"),
    ("missing_field.yaml", PROBLEM, f"{PROBLEM}:1:1", "missing required field 'summary'"),
    ("status_mismatch.yaml", PROBLEM, f"{PROBLEM}:5:9", "differs from the latest status history entry"),
    ("unknown_category.yaml", PROBLEM, f"{PROBLEM}:3:11", "unknown category 'vision'"),
    ("duplicate_id.yaml", "problems/fx-9.yaml", "problems/fx-9.yaml:1:5", "duplicate problem id 'fx-1' (also in problems/fx-1.yaml)"),
    ("broken_syntax.yaml", PROBLEM, f"{PROBLEM}:3:9", "YAML syntax error"),
    ("empty.yaml", PROBLEM, f"{PROBLEM}:1:1", "empty file"),
    ("binary.yaml", PROBLEM, f"{PROBLEM}:1:1", "binary file"),
    ("non_utf8.yaml", PROBLEM, f"{PROBLEM}:2:11", "not valid UTF-8"),
    ("duplicate_key.yaml", PROBLEM, f"{PROBLEM}:3:1", "duplicate key 'title'"),
    ("bad_head.yaml", CIRCUIT, f"{CIRCUIT}:10:15", "head 0.7 does not exist in toy-2l"),
    ("bad_layer.yaml", CIRCUIT, f"{CIRCUIT}:14:15", "layer 5 does not exist in toy-2l"),
    ("missing_script.yaml", CIRCUIT, f"{CIRCUIT}:43:11", "reproduction script not found"),
    ("circuit_id_mismatch.yaml", CIRCUIT, f"{CIRCUIT}:1:5", "does not match the folder name 'toy-copy'"),
    ("bad_edge.yaml", CIRCUIT, f"{CIRCUIT}:24:11", "unknown component 'cpy'"),
    ("papers_bad.yaml", "literature/papers.yaml", "literature/papers.yaml:10:11", "year must be integer"),
    ("papers_bad.yaml", "literature/papers.yaml", "literature/papers.yaml:12:10", "duplicate paper key 'doe2022toys'"),
]


def _install(root: Path, fixture: str, target: str) -> None:
    shutil.copyfile(BAD / fixture, root / target)


def test_fixture_repository_is_clean(kb_root: Path) -> None:
    result = run_check(kb_root)
    assert [d.format() for d in result.diagnostics] == []


@pytest.mark.parametrize(("fixture", "target", "where", "words"), CASES, ids=[f"{c[0]}-{c[3][:20]}" for c in CASES])
def test_bad_entry_is_reported_at_its_line(kb_root: Path, fixture: str, target: str, where: str, words: str) -> None:
    _install(kb_root, fixture, target)
    result = run_check(kb_root)
    lines = [d.format() for d in result.errors]
    assert any(line.startswith(where + ": ") and words in line for line in lines), "\n".join(lines)


def test_uncited_paper_is_a_warning_not_an_error(kb_root: Path) -> None:
    papers = kb_root / "literature" / "papers.yaml"
    papers.write_text(papers.read_text() + "  - key: lonely2024\n    title: Alone\n    authors: [Lo Nely]\n"
                      "    year: 2024\n    url: https://example.org/lonely\n")
    result = run_check(kb_root)
    assert result.errors == []
    assert [w.format() for w in result.warnings] == [
        "literature/papers.yaml:17:10: warning: paper 'lonely2024' is not cited by any problem, circuit or model"]


def test_all_errors_reported_in_one_run_and_exit_nonzero(kb_root: Path) -> None:
    _install(kb_root, "unknown_paper.yaml", PROBLEM)
    _install(kb_root, "bad_head.yaml", CIRCUIT)
    (kb_root / "problems" / "fx-bin.yaml").write_bytes((BAD / "binary.yaml").read_bytes())
    proc = run_mikb(kb_root, "check")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    assert f"{PROBLEM}:12:27: unknown paper key 'nosuch2020paper' (not in literature/*.yaml)" in out
    assert any(line.startswith(f"{CIRCUIT}:10:15: head 0.7") for line in out)
    assert "problems/fx-bin.yaml:1:1: binary file: expected YAML text" in out


@pytest.mark.parametrize("fixture", ["broken_syntax.yaml", "empty.yaml", "binary.yaml", "non_utf8.yaml"])
def test_unreadable_input_never_gives_a_traceback(kb_root: Path, fixture: str) -> None:
    _install(kb_root, fixture, PROBLEM)
    proc = run_mikb(kb_root, "check")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert any(line.startswith(f"{PROBLEM}:") for line in proc.stdout.splitlines())


def test_check_paths_filter_output_but_resolve_references(kb_root: Path) -> None:
    _install(kb_root, "bad_head.yaml", CIRCUIT)
    proc = run_mikb(kb_root, "check", str(kb_root / "problems"))
    assert proc.returncode == 0, proc.stdout
    proc = run_mikb(kb_root, "check", str(kb_root / "circuits_zoo"))
    assert proc.returncode == 1 and CIRCUIT in proc.stdout
