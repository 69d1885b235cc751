"""Every hostile entry of the corpus gives its root-cause error at its line, fast, without a traceback.

The corpus (``tests/malformed_corpus.py``) is run through the real command line in-process
(``mikb.cli.main``, so exit code and printed lines are what a user sees) under a wall-clock
alarm, so a hang fails the case instead of stalling CI; a few cases that could block or
exhaust memory are also run in a subprocess with a timeout.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_mikb, write_mkdocs_config
from jsonschema import Draft202012Validator
from malformed_corpus import CIRCUIT, CORPUS, PAPERS, PROBLEM, Case, change, edited, original, write

from mikb.cli import main
from mikb.entries import Circuit
from mikb.loader import load_knowledge_base
from mikb.schema_check import SCHEMA_NAMES, ecma_regex, load_schema

SECONDS_PER_CASE = 5
_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")


@dataclass(frozen=True)
class Printed:
    path: str
    line: int
    col: int
    message: str

    @property
    def is_error(self) -> bool:
        return not self.message.startswith(("warning: ", "note: "))


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the running code after ``seconds`` (a blocked open() is interrupted too)."""
    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[Printed], str]:
    """Run `mikb check` in-process; the exit code, the parsed diagnostics and all output."""
    start = time.monotonic()
    with alarm(SECONDS_PER_CASE * 2):
        code = main(["--root", str(root), "check"])
    took = time.monotonic() - start
    out, err = capsys.readouterr()
    assert took < SECONDS_PER_CASE, f"check took {took:.1f} s"
    printed = []
    for text in out.splitlines():
        match = _LINE.match(text)
        assert match, f"not a path:line:col diagnostic: {text[:200]!r}"
        printed.append(Printed(match["path"], int(match["line"]), int(match["col"]), match["message"]))
    return code, printed, out + err


def assert_lines_inside_files(root: Path, printed: list[Printed]) -> None:
    for d in printed:
        assert d.line >= 1 and d.col >= 1, d
        target = root / d.path
        if target.is_file() and not target.is_symlink() and target.stat().st_size < (1 << 20):
            lines = max(1, len(target.read_bytes().splitlines()))
            assert d.line <= lines, f"{d} is past the end of a {lines}-line file"


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_malformed_entry_is_reported_at_its_source(kb_root: Path, case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.setup(kb_root)
    code, printed, output = check(kb_root, capsys)
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]
    assert code == 1
    errors = [d for d in printed if d.is_error]
    shown = "\n".join(f"{d.path}:{d.line}:{d.col}: {d.message}"[:200] for d in printed)
    assert any(d.path == case.path and d.line == case.line and case.words in d.message for d in errors), shown
    assert len(errors) <= case.max_errors, shown
    assert all(len(text) < 600 for text in output.splitlines()), "an echoed value was not clipped"
    assert_lines_inside_files(kb_root, printed)


def test_corpus_is_large_and_names_are_unique() -> None:
    assert len(CORPUS) >= 100
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("rel", "kind", "count"), [
    (PAPERS, "papers", 15),  # every reference into the fixture's papers, summed up in one line
    ("circuits_zoo/models.yaml", "models", 2),
    ("problems/_categories.yaml", "categories", 3),
])
def test_broken_registry_gives_one_error_and_one_note(kb_root: Path, capsys: pytest.CaptureFixture[str],
                                                     rel: str, kind: str, count: int) -> None:
    (kb_root / rel).write_text(original(rel) + "  - [unclosed\n")
    code, printed, _ = check(kb_root, capsys)
    assert code == 1
    assert [d.path for d in printed if d.is_error] == [rel]
    notes = [d.message for d in printed if d.message.startswith("note: ")]
    assert notes == [f"note: {count} reference(s) to {kind} not checked because {rel} could not be read "
                     "(fix the error above first)"]


# Special cases in a real subprocess: a hang or memory blow-up here would kill pytest itself.
@pytest.mark.parametrize("name", ["file-fifo", "file-symlink-dev-zero", "alias-billion-laughs", "alias-deep-list"])
def test_dangerous_inputs_in_a_real_process(kb_root: Path, name: str) -> None:
    case = next(c for c in CORPUS if c.name == name)
    case.setup(kb_root)
    start = time.monotonic()
    proc = run_mikb(kb_root, "check", timeout=30)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert any(line.startswith(f"{case.path}:{case.line}:") and case.words in line for line in proc.stdout.splitlines())


@pytest.mark.parametrize("setup", [
    write(PROBLEM, "\ufeff" + original(PROBLEM)),  # a byte-order mark is allowed
    change(PROBLEM, "    evidence: doe2022toys", "    evidence: &p doe2022toys"),  # anchors and a few aliases are fine
    change(PROBLEM, 'number: "1.2"', 'number: "1.345.6"'),
    change(PROBLEM, "date: 2022-12-28", "date: 2020-02-29"),  # a leap day
    write(PAPERS, edited(PAPERS, "    venue: Example Forum", "    date: 2022-04-30\n    venue: Example Forum")),
    change(PROBLEM, "a zebra keyword.", "a [zebra](https://example.org/zebra) keyword, [mail](mailto:a@b.org)."),
    change(PROBLEM, "a zebra keyword.", "a zebra keyword: `[x](x.md)`.\n\n  ```\n  [y](y.md)\n  ```"),
], ids=["bom", "anchor", "deep-number", "leap-day", "paper-date", "url-links", "links-in-code"])
def test_valid_variants_stay_valid(kb_root: Path, capsys: pytest.CaptureFixture[str], setup) -> None:
    setup(kb_root)
    code, printed, _ = check(kb_root, capsys)
    assert (code, printed) == (0, [])


def test_alias_value_is_loaded(kb_root: Path) -> None:
    text = edited(PROBLEM, "    evidence: doe2022toys", "    evidence: &p doe2022toys")
    (kb_root / PROBLEM).write_text(text.replace("references: [doe2022toys]", "references: [*p]"))
    kb = load_knowledge_base(kb_root)
    assert kb.problems["fx-2"].references == ["doe2022toys"]


def test_circuit_paths_refuse_to_leave_the_folder(tmp_path: Path) -> None:
    def circuit(reproduction: dict) -> Circuit:
        return Circuit(id="c", name="c", models=["m"], task="t", behaviour="b", components=[], edges=[], claims=[],
                       references=[], reproduction=reproduction, folder=tmp_path)
    good = circuit({"script": "reproduce.py", "outputs": "results"})
    assert (good.script_path, good.outputs_dir) == (tmp_path / "reproduce.py", tmp_path / "results")
    assert circuit({"script": "reproduce.py"}).outputs_dir == tmp_path / "results"
    for bad in ({"script": "../x.py"}, {"script": "/etc/x.py"}):
        with pytest.raises(ValueError, match="reproduction.script"):
            _ = circuit(bad).script_path
    for outputs in ("../../x", "/tmp", ".", "a/../.."):
        with pytest.raises(ValueError, match="reproduction.outputs"):
            _ = circuit({"script": "reproduce.py", "outputs": outputs}).outputs_dir


def test_invalid_circuit_never_becomes_an_entry(kb_root: Path) -> None:
    change(CIRCUIT, "outputs: results", "outputs: ../../../../tmp")(kb_root)
    kb = load_knowledge_base(kb_root)
    assert "toy-copy" not in kb.circuits


def test_tricky_but_valid_entry_passes_check_and_builds(kb_root: Path) -> None:
    """Check passing must mean the strict site build works: the values the corpus refuses
    have valid neighbours (full-URL links, markup, Unicode, pipes) that must still build."""
    # Raw HTML is an error in entries (the sanitiser would drop it); its Markdown neighbours,
    # comparisons ("a < b") and HTML inside code are valid and must build.
    text = edited(PROBLEM, "a zebra keyword.",
                  "a zebra keyword | **bold** `<b>code</b>` a < b [link](https://example.org/x#part) é ★.")
    (kb_root / PROBLEM).write_text(text.replace("title: Explain positional attention in a toy model", "title: 'Explain | *this* > that'"))
    assert run_mikb(kb_root, "check", "--strict").returncode == 0
    write_mkdocs_config(kb_root)
    proc = run_mikb(kb_root, "build", timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_stay_valid_json_schema(name: str) -> None:
    """Editors read the schemas too (yaml-language-server): the hardening must not break them."""
    Draft202012Validator.check_schema(load_schema(name))


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^[a-z]+$", "abc", True), ("^[a-z]+$", "abc\n", False), (r"^\d+$", "12", True), (r"^\d+$", "1²", False),
    (r"^\d+$", "١٢", False), ("^(a|b)$", "b", True), ("^(a|b)$", "b\n", False), (r"^a\$$", "a$", True),
])
def test_patterns_have_ecma_meaning(pattern: str, text: str, matches: bool) -> None:
    assert bool(ecma_regex(pattern).search(text)) is matches
