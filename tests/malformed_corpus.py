"""A corpus of hostile entries, each with the one diagnostic `mikb check` must give for it.

Each :class:`Case` changes a fresh copy of ``tests/fixtures/kb`` (writes a file, makes a
FIFO or a symlink) and names where the root-cause error must be reported: file, line and
words of the message. ``tests/test_loader_hardening.py`` runs the real command on every case.
The fixture's line numbers are used below; ``fixtures/kb/problems/fx-2.yaml`` reads:

     1 id / 2 number / 3 title / 4 category / 5 difficulty / 6 status / 7 status_history:
     8 - date / 9 status / 10 evidence / 11 summary: | / 12 (text) / 13 references /
    14 tags / 15 source: / 16 paper
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kb"
PROBLEM = "problems/fx-2.yaml"
CIRCUIT = "circuits_zoo/toy-copy/circuit.yaml"
PAPERS = "literature/papers.yaml"
MODELS = "circuits_zoo/models.yaml"
CATEGORIES = "problems/_categories.yaml"

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One malformed input and the diagnostic it must produce (``path:line``, ``words``)."""

    name: str
    setup: Setup
    path: str
    line: int
    words: str
    max_errors: int = 3  # a hostile file yields a few errors at most, never a flood


def original(rel: str) -> str:
    return (FIXTURE / rel).read_text()


def edited(rel: str, old: str, new: str) -> str:
    """The fixture file ``rel`` with ``old`` (which must occur exactly once) replaced."""
    text = original(rel)
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {rel}"
    return text.replace(old, new)


def write(rel: str, content: str | bytes) -> Setup:
    def setup(root: Path) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return setup


def change(rel: str, old: str, new: str) -> Setup:
    return write(rel, edited(rel, old, new))


def symlink(rel: str, target: str | Callable[[Path], str]) -> Setup:
    def setup(root: Path) -> None:
        link = root / rel
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target(root) if callable(target) else target)
    return setup


def fifo(rel: str) -> Setup:
    def setup(root: Path) -> None:
        (root / rel).unlink(missing_ok=True)
        os.mkfifo(root / rel)
    return setup


def both(*steps: Setup) -> Setup:
    def setup(root: Path) -> None:
        for step in steps:
            step(root)
    return setup


def _outside_file(root: Path) -> str:
    secret = root.parent / "outside-secret.yaml"
    secret.write_text(original(PROBLEM))
    return str(secret)


def _outside_dir(root: Path) -> str:
    folder = root.parent / "outside-dir"
    folder.mkdir(exist_ok=True)
    return str(folder)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
MANY_ALIASES = "id: fx-2\nx: &x v\nys: [" + ", ".join(["*x"] * 101) + "]\n"
DEEP_LIST = "id: " + "[" * 100_000 + "]" * 100_000 + "\n"
DEEP_MAP = "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "v: 1\n"


def p(name: str, old: str, new: str, line: int, words: str, **kw: int) -> Case:
    """A case that edits fx-2.yaml."""
    return Case(name, change(PROBLEM, old, new), PROBLEM, line, words, **kw)


def c(name: str, old: str, new: str, line: int, words: str, **kw: int) -> Case:
    """A case that edits the fixture circuit."""
    return Case(name, change(CIRCUIT, old, new), CIRCUIT, line, words, **kw)


def w(name: str, rel: str, content: str | bytes, line: int, words: str, path: str | None = None, **kw: int) -> Case:
    """A case that writes a whole file."""
    return Case(name, write(rel, content), path or rel, line, words, **kw)


SYNTAX = [
    p("syntax-unclosed-flow", "tags: [positional]", "tags: [positional", 15, "YAML syntax error"),
    p("syntax-bad-indent", "  paper: doe2022toys", "   paper: doe2022toys\n  x: 1", 17, "YAML syntax error"),
    p("syntax-tab-indent", "    status: open", "\tstatus: open", 9, "YAML syntax error"),
    p("syntax-unclosed-quote", 'number: "1.2"', 'number: "1.2', 2, "YAML syntax error"),
    p("syntax-nested-colon", "category: toy-models", "category: toy: models", 4, "YAML syntax error"),
    p("syntax-stray-bracket", "tags: [positional]", "tags: positional]", 14, "tags must be array, got text"),
    p("syntax-two-documents", "source:", "---\nsource:", 15, "more than one YAML document"),
    p("syntax-bad-escape", 'number: "1.2"', 'number: "1\\q2"', 2, "YAML syntax error"),
    p("syntax-control-char", "title: Explain", "title: Expl\x07ain", 3, "is not allowed"),
    p("syntax-undefined-alias", "tags: [positional]", "tags: [*nope]", 14, "alias *nope names no earlier anchor"),
    p("syntax-bad-directive", "id: fx-2", "%YAML 9.9\n---\nid: fx-2", 1, "YAML syntax error"),
    p("syntax-block-scalar-indent", "summary: |\n  Work", "summary: |-+\n  Work", 11, "YAML syntax error"),
    w("syntax-top-level-list", PROBLEM, "- id: fx-2\n- title: x\n", 1, "expected a mapping at the top level"),
    w("syntax-top-level-text", PROBLEM, "just some words\n", 1, "expected a mapping at the top level"),
    w("syntax-top-level-empty-string", PROBLEM, '""\n', 1, "expected a mapping at the top level"),
]

ALIASES = [
    w("alias-billion-laughs", PROBLEM, BOMB, 6, "once aliases are expanded"),
    w("alias-self-reference", PROBLEM, "id: fx-2\nloop: &a [x, *a]\n", 2, "refers to the value that contains it"),
    w("alias-self-reference-map", PROBLEM, "id: fx-2\nloop: &a {x: *a}\n", 2, "refers to the value that contains it"),
    w("alias-too-many", PROBLEM, MANY_ALIASES, 3, "more than 100 aliases"),
    w("alias-bomb-in-papers", PAPERS, "papers:\n  - key: boom\n" + "".join("    " + ln + "\n" for ln in BOMB.splitlines()), 8,
      "once aliases are expanded", max_errors=1),
    w("alias-deep-list", PROBLEM, DEEP_LIST, 1, "nested more than 64 levels"),
    w("alias-deep-map", PROBLEM, DEEP_MAP, 65, "nested more than 64 levels"),
    p("merge-key", "source:\n  paper: doe2022toys", "base: &b {paper: doe2022toys}\nsource:\n  <<: *b", 17,
      "merge keys (<<: *name) are not supported"),
    p("merge-key-value", "tags: [positional]", "tags: [<<]", 14, "merge keys"),
]

TAGS = [
    p("tag-python-name", "title: Explain", "title: !!python/name:os.system Explain", 3, "YAML tag !!python/name:os.system is not allowed"),
    p("tag-python-apply", "tags: [positional]", 'tags: !!python/object/apply:os.system ["echo hi"]', 14, "is not allowed"),
    p("tag-bool-maybe", "status: open\nstatus_history", "status: !!bool maybe\nstatus_history", 6, "cannot read maybe as bool"),
    p("tag-include", "summary: |", "summary: !include other.md\nx: |", 11, "YAML tag !include is not allowed"),
    p("tag-binary", "title: Explain", "title: !!binary aGVsbG8= Explain", 3, "is not allowed"),
    p("tag-set", "tags: [positional]", "tags: !!set {a, b}", 14, "is not allowed"),
    p("tag-timestamp", "  - date: 2022-12-28", "  - date: !!timestamp 2022-12-28", 8, "is not allowed"),
    p("tag-int-garbage", 'number: "1.2"', "number: !!int abc", 2, "cannot read abc as int"),
    p("tag-float-garbage", 'number: "1.2"', "number: !!float x", 2, "cannot read x as float"),
    p("tag-verbatim", "title: Explain", "title: !<tag:example.com,2000:evil> Explain", 3, "is not allowed"),
    p("tag-omap", "tags: [positional]", "tags: !!omap [a: 1]", 14, "is not allowed"),
    p("tag-local-on-map", "source:\n  paper", "source: !thing\n  paper", 15, "YAML tag !thing is not allowed"),
]

FILES = [
    Case("file-fifo", fifo("problems/fx-9.yaml"), "problems/fx-9.yaml", 1, "not a regular file (a FIFO"),
    Case("file-symlink-dev-zero", symlink("problems/fx-9.yaml", "/dev/zero"), "problems/fx-9.yaml", 1,
         "symlink points outside the repository"),
    Case("file-symlink-outside", symlink("problems/fx-9.yaml", _outside_file), "problems/fx-9.yaml", 1,
         "symlink points outside the repository"),
    Case("file-symlink-loop", both(symlink("problems/fx-8.yaml", "fx-9.yaml"), symlink("problems/fx-9.yaml", "fx-8.yaml")),
         "problems/fx-9.yaml", 1, "symlink loop"),
    Case("file-symlink-self", symlink("problems/fx-9.yaml", "fx-9.yaml"), "problems/fx-9.yaml", 1, "symlink loop"),
    Case("file-broken-symlink", symlink("problems/fx-9.yaml", "does-not-exist.yaml"), "problems/fx-9.yaml", 1,
         "broken symlink"),
    Case("file-directory", lambda root: (root / "problems" / "fx-9.yaml").mkdir(), "problems/fx-9.yaml", 1,
         "not a regular file (a directory)"),
    Case("file-papers-fifo", fifo(PAPERS), PAPERS, 1, "not a regular file (a FIFO", max_errors=1),
    Case("file-models-dev-null", symlink(MODELS, "/dev/null"), MODELS, 1, "symlink points outside", max_errors=1),
    Case("file-categories-symlink-outside", symlink(CATEGORIES, _outside_file), CATEGORIES, 1, "outside the repository",
         max_errors=1),
    Case("file-circuit-dir-outside", symlink("circuits_zoo/evil", _outside_dir), "circuits_zoo/evil", 1,
         "circuit folder has no circuit.yaml"),
    Case("file-circuit-yaml-fifo", fifo(CIRCUIT), CIRCUIT, 1, "not a regular file (a FIFO"),
    w("file-huge-problem", PROBLEM, original(PROBLEM) + "notes: |\n" + ("  " + "x" * 1000 + "\n") * 1100, 1,
      "file too large"),
    w("file-huge-papers", PAPERS, original(PAPERS) + "# " + "x" * (9 << 20) + "\n", 1, "file too large", max_errors=1),
]

ENCODING = [
    w("enc-binary", PROBLEM, b"id: fx-2\x00\x01\x02", 1, "binary file"),
    w("enc-latin1", PROBLEM, original(PROBLEM).replace("zebra", "z\xe9bra").encode("latin-1"), 12, "not valid UTF-8"),
    w("enc-utf16", PROBLEM, original(PROBLEM).encode("utf-16"), 1, "binary file"),
    w("enc-truncated-multibyte", PROBLEM, original(PROBLEM).encode() + b"notes: \xe2\x82", 17, "not valid UTF-8"),
    w("enc-overlong", PROBLEM, original(PROBLEM).encode() + b"notes: \xc0\xaf\n", 17, "not valid UTF-8"),
    w("enc-surrogate-escape", PROBLEM, original(PROBLEM) + 'notes: "\\ud800"\n', 17, "YAML syntax error"),
    w("enc-bom-then-null", PROBLEM, "\ufeffnull\n", 1, "empty document"),
]

EMPTY = [
    w("empty-file", PROBLEM, "", 1, "empty file"),
    w("empty-comments", PROBLEM, "# nothing\n   \n# here\n", 1, "empty file"),
    w("empty-null", PROBLEM, "null\n", 1, "empty document (null)"),
    w("empty-tilde", PROBLEM, "~\n", 1, "empty document (null)"),
    w("empty-dashes", PROBLEM, "---\n", 1, "empty document (null)"),
    w("empty-dashes-tilde", PROBLEM, "--- ~\n", 1, "empty document (null)"),
    w("empty-end-marker", PROBLEM, "...\n", 1, "YAML syntax error"),
    w("empty-papers-null", PAPERS, "~\n", 1, "empty document (null)", max_errors=1),
    w("empty-models-file", MODELS, "", 1, "empty file", max_errors=1),
    w("empty-mapping", PROBLEM, "{}\n", 1, "missing required fields 'category', 'difficulty', 'id'", max_errors=1),
    w("empty-circuit-null", CIRCUIT, "null\n", 1, "empty document (null)"),
]

TYPES = [
    p("type-tags-text", "tags: [positional]", "tags: positional", 14, "tags must be array, got text"),
    p("type-number-float", 'number: "1.2"', "number: 1.2", 2, "number must be string, got a number"),
    p("type-id-int", "id: fx-2", "id: 12", 1, "id must be string, got an integer"),
    p("type-title-list", "title: Explain positional attention in a toy model", "title: [a, b]", 3, "title must be string"),
    p("type-history-map", "  - date: 2022-12-28\n    status: open\n    evidence: doe2022toys",
      "  date: 2022-12-28", 8, "status_history must be array"),
    p("type-summary-bool", "summary: |\n  Work out how a one-layer model attends by position with learned positional "
      "embeddings, a zebra keyword.", "summary: yes", 11, "summary must be string, got a boolean"),
    w("type-year-text", PAPERS, edited(PAPERS, "year: 2022", 'year: "2022"'), 5, "year must be integer, got text"),
    w("type-year-bool", PAPERS, edited(PAPERS, "year: 2022", "year: true"), 5, "year must be integer, got a boolean"),
    w("type-layers-text", MODELS, edited(MODELS, "n_layers: 2", "n_layers: two"), 5, "n_layers must be integer"),
    c("type-components-map", "components:\n  - id: prev", "components: prev\nx:\n  - id: prev", 7, "components must be array"),
    c("type-tolerance-text", "tolerance: 0.2", "tolerance: small", 34, "tolerance must be number"),
    c("type-location-int", 'location: "0.1"', "location: 0", 10, "location must be string"),
]

DATES = [
    p("date-feb-30", "date: 2022-12-28", "date: 2023-02-30", 8, "is not a real date"),
    p("date-month-13", "date: 2022-12-28", "date: 2022-13-45", 8, "is not a real date"),
    p("date-feb-29-non-leap", "date: 2022-12-28", "date: 2022-02-29", 8, "is not a real date"),
    p("date-quoted-newline", "date: 2022-12-28", 'date: "2022-12-28\\n"', 8, "date has an invalid value"),
    p("date-block-newline", "  - date: 2022-12-28", "  - date: |\n      2022-12-28", 8, "date has an invalid value"),
    p("date-short", "date: 2022-12-28", "date: 2022-1-2", 8, "date has an invalid value"),
    p("date-fullwidth-digits", "date: 2022-12-28", "date: ２０２２-12-28", 8, "date has an invalid value"),
    p("date-arabic-digits", "date: 2022-12-28", "date: ٢٠٢٢-12-28", 8, "date has an invalid value"),
    w("date-paper-impossible", PAPERS, edited(PAPERS, "    venue: Example Forum", "    date: 2022-04-31\n    venue: Example Forum"),
      6, "is not a real date"),
    w("date-paper-newline", PAPERS, edited(PAPERS, "    venue: Example Forum", '    date: "2022-04-01\\n"\n    venue: Example Forum'),
      6, "date has an invalid value"),
]

NEWLINES = [
    p("nl-problem-id", "id: fx-2", 'id: "fx-2\\n"', 1, "id has an invalid value"),
    p("nl-number", 'number: "1.2"', 'number: "1.2\\n"', 2, "number has an invalid value"),
    p("nl-category", "category: toy-models", 'category: "toy-models\\n"', 4, "category has an invalid value"),
    p("nl-difficulty", "difficulty: B-C", 'difficulty: "B-C\\n"', 5, "difficulty has an invalid value"),
    p("nl-reference", "references: [doe2022toys]", 'references: ["doe2022toys\\n"]', 13, "references[0] has an invalid value"),
    p("nl-tag-block", "tags: [positional]", "tags:\n  - |\n    positional", 15, "tags[0] has an invalid value"),
    p("nl-source-paper", "  paper: doe2022toys", '  paper: "doe2022toys\\n"', 16, "source.paper has an invalid value"),
    w("nl-paper-key", PAPERS, edited(PAPERS, "key: doe2022toys", 'key: "doe2022toys\\n"'), 2, "key has an invalid value",
      max_errors=1),
    w("nl-paper-key-block", PAPERS, edited(PAPERS, "  - key: doe2022toys", "  - key: |\n      doe2022toys"), 2,
      "key has an invalid value", max_errors=1),
    w("nl-paper-arxiv", PAPERS, edited(PAPERS, 'arxiv: "2301.00001"', 'arxiv: "2301.00001\\n"'), 15, "arxiv has an invalid value"),
    w("nl-model-id", MODELS, edited(MODELS, "id: toy-2l", 'id: "toy-2l\\n"'), 2, "id has an invalid value", max_errors=1),
    w("nl-category-slug", CATEGORIES, edited(CATEGORIES, "slug: methods", 'slug: "methods\\n"'), 7, "slug has an invalid value",
      max_errors=1),
    c("nl-circuit-id", "id: toy-copy", 'id: "toy-copy\\n"', 1, "id has an invalid value"),
    c("nl-component-id", "  - id: prev\n", '  - id: "prev\\n"\n', 8, "id has an invalid value"),
    c("nl-location", 'location: "0.1"', 'location: "0.1\\n"', 10, "location has an invalid value"),
    c("nl-metric", "metric: copy_score", 'metric: "copy_score\\n"', 29, "metric has an invalid value"),
    c("nl-script", "script: reproduce.py", 'script: "reproduce.py\\n"', 43, "script has an invalid value"),
]

UNICODE_DIGITS = [
    p("digits-superscript-number", 'number: "1.2"', 'number: "1.²"', 2, "number has an invalid value"),
    p("digits-arabic-number", 'number: "1.2"', 'number: "١.٢"', 2, "number has an invalid value"),
    p("digits-empty-part", 'number: "1.2"', 'number: "1..2"', 2, "number has an invalid value"),
    c("digits-arabic-location", 'location: "0.1"', 'location: "٠.١"', 10, "location has an invalid value"),
    c("digits-superscript-location", 'location: "1.*"', 'location: "¹.*"', 14, "location has an invalid value"),
]

NUMBERS = [
    c("num-tolerance-nan", "tolerance: 0.2", "tolerance: .nan", 34, "not a finite number"),
    c("num-value-inf", "value: 0.9", "value: .inf", 31, "not a finite number"),
    c("num-value-neg-inf", "value: 0.9", "value: -.Inf", 31, "not a finite number"),
    c("num-expect-nan", "{min: 0.5}", "{min: .NaN}", 39, "not a finite number"),
    c("num-overflow", "value: 0.9", "value: 1.0e+999", 31, "not a finite number"),
    w("num-year-nan", PAPERS, edited(PAPERS, "year: 2022", "year: .nan"), 5, "not a finite number", max_errors=1),
    w("num-year-float", PAPERS, edited(PAPERS, "year: 2022", "year: 2022.0"), 5, "year must be integer, got a number"),
    w("num-year-exponent", PAPERS, edited(PAPERS, "year: 2022", "year: 2.022e+3"), 5, "year must be integer, got a number"),
    w("num-layers-float", MODELS, edited(MODELS, "n_layers: 2", "n_layers: 2.0"), 5, "n_layers must be integer"),
    w("num-heads-fraction", MODELS, edited(MODELS, "n_heads: 4", "n_heads: 4.5"), 6, "n_heads must be integer"),
    w("num-category-number-float", CATEGORIES, edited(CATEGORIES, "number: 1", "number: 1.0"), 3, "number must be integer"),
    w("num-huge-int-digits", PAPERS, edited(PAPERS, "year: 2022", "year: " + "9" * 5000), 5, "cannot read"),
]

FIELDS = [
    p("field-unknown-top", "tags: [positional]", "tags: [positional]\ndificulty_note: hard", 15, "unknown field 'dificulty_note'"),
    p("field-unknown-nested", "  paper: doe2022toys", "  paper: doe2022toys\n  pages: 3", 17, "unknown field 'pages'"),
    p("field-unknown-history", "    evidence: doe2022toys", "    evidence: doe2022toys\n    by: me", 11, "unknown field 'by'"),
    c("field-unknown-component", "    role: output", "    role: output\n    colour: red", 19, "unknown field 'colour'"),
    w("field-unknown-paper", PAPERS, edited(PAPERS, "    kind: post", "    kind: post\n    pages: 12"), 8, "unknown field 'pages'"),
    w("field-unknown-model", MODELS, edited(MODELS, "    kind: planted", "    kind: planted\n    size: small"), 5, "unknown field 'size'"),
    p("field-huge-name", "tags: [positional]", "tags: [positional]\n" + "k" * 1000 + ": 1", 15, "unknown field 'kkkk"),
    p("field-missing-summary", "summary: |\n  Work out how a one-layer model attends by position with learned positional "
      "embeddings, a zebra keyword.\n", "", 1, "missing required field 'summary'"),
    p("field-title-huge", "title: Explain positional attention in a toy model", "title: " + "t" * 500_000, 3,
      "title is out of range"),
    p("field-bad-enum-huge", "status: open\nstatus_history", "status: " + "s" * 100_000 + "\nstatus_history", 6,
      "status must be one of"),
    w("field-blank-author", PAPERS, edited(PAPERS, "authors: [Rick Roe]", 'authors: [" "]'), 11,
      "authors[0] has an invalid value"),
]

DUPLICATES = [
    p("dup-top-key", "tags: [positional]", "tags: [positional]\ntitle: Again", 15, "duplicate key 'title'"),
    p("dup-nested-key", "    evidence: doe2022toys", "    evidence: doe2022toys\n    status: solved", 11, "duplicate key 'status'"),
    w("dup-paper-key-field", PAPERS, edited(PAPERS, "    kind: post", "    kind: post\n    year: 2021"), 8, "duplicate key 'year'",
      max_errors=1),
    w("dup-paper-entry", PAPERS, original(PAPERS) + "  - key: doe2022toys\n    title: Again\n    authors: [A B]\n    year: 2020\n"
      "    url: https://example.org/again\n", 17, "duplicate paper key 'doe2022toys'"),
    c("dup-component-id", "  - id: copy\n", "  - id: prev\n", 12, "duplicate component id 'prev'"),
]

KEYS = [
    p("key-int", "tags: [positional]", "tags: [positional]\n1: one", 15, "key '1' is not text"),
    p("key-bool", "tags: [positional]", "tags: [positional]\nyes: sure", 15, "key 'yes' is not text"),
    p("key-null", "tags: [positional]", "tags: [positional]\n~: nothing", 15, "an empty key"),
    p("key-empty", "tags: [positional]", 'tags: [positional]\n"": nothing', 15, "an empty key"),
    p("key-complex", "tags: [positional]", "tags: [positional]\n? [a, b]\n: c", 15, "a key must be text"),
    c("key-int-expect", "toy-2l: {min: 0.5}", "7: {min: 0.5}", 39, "key '7' is not text"),
]

CROSSREFS = [
    c("xref-unknown-model", "models: [toy-2l]", "models: [toy-9l]", 3, "unknown model id 'toy-9l'"),
    c("xref-reported-model", "      model: toy-2l", "      model: gpt-9", 32, "unknown model id 'gpt-9'"),
    c("xref-reported-paper", "paper: roe2023methods", "paper: nobody2020", 33, "unknown paper key 'nobody2020'"),
    c("xref-related-problem", "related_problems: [fx-1]", "related_problems: [fx-77]", 41, "unknown problem id 'fx-77'"),
    p("xref-evidence", "    evidence: doe2022toys", "    evidence: ghost2021", 10, "unknown paper key 'ghost2021'"),
    p("xref-category", "category: toy-models", "category: vision", 4, "unknown category 'vision'"),
    w("xref-model-reference", MODELS, edited(MODELS, "references: [doe2022toys]", "references: [zed2019]"), 8,
      "unknown paper key 'zed2019'"),
    p("xref-long-key", "references: [doe2022toys]", "references: [" + "a" * 5000 + "]", 13, "unknown paper key 'aaaa"),
]

PATHS = [
    c("path-script-parent", "script: reproduce.py", "script: ../../../../tmp/evil.py", 43, "must not contain '..'"),
    c("path-script-absolute", "script: reproduce.py", "script: /tmp/evil.py", 43, "not an absolute path"),
    c("path-outputs-parent", "outputs: results", "outputs: ../../../../tmp", 44, "must not contain '..'"),
    c("path-outputs-absolute", "outputs: results", "outputs: /tmp", 44, "not an absolute path"),
    c("path-outputs-dot", "outputs: results", "outputs: .", 44, "not the folder itself"),
    c("path-outputs-inner-parent", "outputs: results", "outputs: results/../..", 44, "must not contain '..'"),
    c("path-outputs-home", "outputs: results", "outputs: ~/x", 44, "has an invalid value"),
    c("path-outputs-empty", "outputs: results", 'outputs: ""', 44, "has an invalid value"),
    c("path-outputs-newline", "outputs: results", 'outputs: "results\\n"', 44, "has an invalid value"),
    c("path-outputs-too-long", "outputs: results", "outputs: " + "r" * 300, 44, "outputs is out of range"),
    c("path-outputs-backslash", "outputs: results", "outputs: 'results\\..\\..'", 44, "has an invalid value"),
    Case("path-outputs-symlink-out", both(symlink("circuits_zoo/toy-copy/out", _outside_dir),
                                          change(CIRCUIT, "outputs: results", "outputs: out/x")),
         CIRCUIT, 44, "leads out of the circuit's folder through a symlink"),
    Case("path-script-symlink-out", both(symlink("circuits_zoo/toy-copy/ext.py", _outside_file),
                                         change(CIRCUIT, "script: reproduce.py", "script: ext.py")),
         CIRCUIT, 43, "leads out of the circuit's folder through a symlink"),
]

EXTENSIONS = [
    w("ext-problem-yml", "problems/fx-9.yml", original(PROBLEM).replace("fx-2", "fx-9"), 1, "entries must end in '.yaml'"),
    w("ext-problem-upper", "problems/fx-9.YAML", original(PROBLEM).replace("fx-2", "fx-9"), 1, "entries must end in '.yaml'"),
    Case("name-with-newline", write("problems/fx\n9.yaml", original(PROBLEM).replace("id: fx-2", "id: fx-9")),
         "problems/fx\\n9.yaml", 1, "does not match the file name 'fx\\n9'"),  # no fake diagnostic lines
    w("ext-literature-yml", "literature/more.yml", "papers: []\n", 1, "entries must end in '.yaml'"),
    Case("ext-circuit-yml", both(write("circuits_zoo/toy-copy/circuit.yml", original(CIRCUIT)),
                                 lambda root: (root / CIRCUIT).unlink()),
         "circuits_zoo/toy-copy/circuit.yml", 1, "entries must end in '.yaml'"),
]

REGISTRIES = [
    w("reg-papers-syntax", PAPERS, edited(PAPERS, "title: Methods for circuits", "title: [Methods for circuits"), 11,
      "YAML syntax error", max_errors=1),
    w("reg-papers-top-type", PAPERS, "papers: 5\n", 1, "papers must be array", max_errors=1),
    w("reg-papers-wrong-root", PAPERS, "- key: doe2022toys\n", 1, "expected a mapping at the top level", max_errors=1),
    w("reg-papers-bad-item", PAPERS, edited(PAPERS, "year: 2022", "year: twenty"), 5, "year must be integer", max_errors=1),
    w("reg-papers-tab", PAPERS, edited(PAPERS, "    year: 2023", "\tyear: 2023"), 12, "YAML syntax error", max_errors=1),
    w("reg-models-syntax", MODELS, edited(MODELS, "n_heads: 4", "n_heads: [4"), 7, "YAML syntax error", max_errors=1),
    w("reg-models-bad-item", MODELS, edited(MODELS, "kind: planted", "kind: grown"), 4, "kind must be one of", max_errors=1),
    w("reg-categories-syntax", CATEGORIES, edited(CATEGORIES, "name: Methods", "name: 'Methods"), 9, "YAML syntax error",
      max_errors=1),
    w("reg-categories-bad-item", CATEGORIES, edited(CATEGORIES, "number: 2", "number: 0"), 8,
      "number is out of range", max_errors=1),
    w("reg-categories-bad-slug", CATEGORIES, edited(CATEGORIES, "slug: methods", "slug: Methods!"), 7,
      "slug has an invalid value", max_errors=2),  # fx-3 names 'methods', which truly no longer exists
    w("reg-problem-invalid-referenced", PROBLEM, edited(PROBLEM, "difficulty: B-C", "difficulty: Z"), 5,
      "difficulty has an invalid value", max_errors=1),
    c("reg-circuit-invalid-referenced", "  - id: out\n    kind: unembed", "  - id: out\n    kind: wire", 17,
      "kind must be one of", max_errors=1),
]

SUMMARY_END = "a zebra keyword."
MARKDOWN = [
    p("md-relative-link", SUMMARY_END, "a zebra [keyword](other.md).", 11, "link to 'other.md': use a full https:// URL"),
    p("md-anchor-link", SUMMARY_END, "a zebra [keyword](#nope).", 11, "link to '#nope'"),
    p("md-reference-definition", SUMMARY_END, "a [zebra][z].\n\n  [z]: zebra.md", 11, "link to 'zebra.md'"),
    p("md-image", SUMMARY_END, "a zebra ![pic](zebra.png).", 11, "link to 'zebra.png'"),
    p("md-empty-target", SUMMARY_END, "a zebra [keyword]().", 11, "link to ''"),
    p("md-title-link", "title: Explain positional", "title: See [x](x.md) Explain positional", 3, "link to 'x.md'"),
    c("md-behaviour-link", "copy head writes it to the output.", "copy head writes it to [the output](../out.md).", 5,
      "link to '../out.md'"),
    w("md-paper-title-link", PAPERS, edited(PAPERS, "title: Methods for circuits", "title: '[Methods](m.md) for circuits'"), 10,
      "link to 'm.md'"),
]

CORPUS: list[Case] = [
    *SYNTAX, *ALIASES, *TAGS, *FILES, *ENCODING, *EMPTY, *TYPES, *DATES, *NEWLINES, *UNICODE_DIGITS, *NUMBERS,
    *FIELDS, *DUPLICATES, *KEYS, *CROSSREFS, *PATHS, *EXTENSIONS, *REGISTRIES, *MARKDOWN,
]
