"""The command line as a contributor uses it: scaffold, check, export."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_mikb


def test_new_entries_pass_check(kb_root: Path) -> None:
    title = 'Heads: "copying" & more # not a comment'
    for kind, entry_id, extra in (("problem", "fx-new", ["--category", "methods"]),
                                  ("circuit", "new-circuit", ["--paper", "roe2023methods"]),
                                  ("paper", "new2026paper", [])):
        proc = run_mikb(kb_root, "new", kind, entry_id, "--title", title, *extra)
        assert proc.returncode == 0, proc.stderr
    assert "appended to literature/papers.yaml" in proc.stdout
    proc = run_mikb(kb_root, "check")
    assert proc.returncode == 0, proc.stdout
    # the new paper is cited by nobody yet: a warning, named at its line
    assert "literature/papers.yaml:17:10: warning: paper 'new2026paper' is not cited" in proc.stdout
    assert (kb_root / "circuits_zoo/new-circuit/reproduce.py").is_file()
    problem = (kb_root / "problems/fx-new.yaml").read_text()
    assert problem.startswith("# yaml-language-server: $schema=")
    assert 'number: "2.2"' in problem  # after fx-3, numbered 2.1 in category 2 (methods)
    export = run_mikb(kb_root, "export", "-o", str(kb_root / "out.json"))
    assert export.returncode == 0
    data = json.loads((kb_root / "out.json").read_text())
    assert {p["title"] for p in data["problems"] if p["id"] == "fx-new"} == {title}
    # untouched placeholders pass a plain check but fail --strict, each named at its line
    strict = run_mikb(kb_root, "check", "--strict")
    assert strict.returncode == 1
    assert "circuits_zoo/new-circuit/circuit.yaml:5:7: warning: placeholder from `mikb new` left in place" in strict.stdout
    assert "placeholder from `mikb new` left in place: 'First Author'" in strict.stdout


def test_new_refuses_what_would_not_check(kb_root: Path) -> None:
    circuit = run_mikb(kb_root, "new", "circuit", "no-paper")
    assert circuit.returncode == 1 and "--paper" in circuit.stderr
    assert not (kb_root / "circuits_zoo/no-paper").exists()
    problem = run_mikb(kb_root, "new", "problem", "fx-9", "--category", "no-such-category")
    assert problem.returncode == 1 and "unknown category 'no-such-category'" in problem.stderr


def test_duplicate_arxiv_id_is_flagged(kb_root: Path) -> None:
    papers = kb_root / "literature/papers.yaml"
    papers.write_text(papers.read_text() + """  - key: roe2023again
    title: Methods for circuits
    authors: [Rick Roe]
    year: 2023
    kind: paper
    arxiv: "2301.00001"
    url: https://arxiv.org/abs/2301.00001
""")
    proc = run_mikb(kb_root, "check", "--strict")
    assert "arxiv 2301.00001 is already registered as 'roe2023methods'" in proc.stdout


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


def test_sigterm_to_serve_stops_the_server(kb_root: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    from conftest import write_mkdocs_config

    write_mkdocs_config(kb_root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mikb.cli", "--root", str(kb_root), "serve", "--dev-addr",
                             f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        deadline = time.monotonic() + 120
        while not listening():
            assert proc.poll() is None and time.monotonic() < deadline, "mikb serve never started listening"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        time.sleep(0.5)
        assert not listening(), "the MkDocs server outlived mikb serve"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_every_option_has_help_text() -> None:
    import argparse

    from mikb.cli import _parser

    parser = _parser()
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, sub in parser._subparsers._group_actions[0].choices.items()
               for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []
    reproduce = parser._subparsers._group_actions[0].choices["reproduce"].format_help()
    assert "results/<model>.quick/" in reproduce


def test_near_duplicate_tags_are_flagged(kb_root: Path) -> None:
    problem = kb_root / "problems/fx-2.yaml"
    text = problem.read_text()
    assert "tags: [" in text
    problem.write_text(text.replace("tags: [", "tags: [toy-model, ", 1))
    proc = run_mikb(kb_root, "check", "--strict")
    assert "warning: tag 'toy-model' duplicates 'toy-models': use 'toy-models'" in proc.stdout


def test_check_states_the_zoo_by_kind_of_model() -> None:
    """The repository's own zoo, as `mikb check` summarises it: the field asked for at least
    twelve circuits found in pretrained language models (issue 11), and the summary says how
    many there are, beside those trained here and the method checks."""
    import re

    from conftest import REPO

    out = run_mikb(REPO, "check")
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.search(r"(\d+) circuits \((\d+) in pretrained language models, (\d+) trained here, "
                      r"(\d+) method checks only\)", out.stderr)
    assert found, out.stderr
    total, pretrained, trained, checks = (int(g) for g in found.groups())
    assert pretrained >= 12 and trained >= 10 and checks >= 1
    assert pretrained + trained + checks >= total  # a circuit may be studied on both kinds
