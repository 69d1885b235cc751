"""Property-based fuzzing of the loader and validator, with a fixed, derandomized budget.

Three properties, each on inputs hypothesis generates:

* any bytes or YAML-ish text: reading never raises, never hangs, yields only plain finite
  data, and every diagnostic sits on a line of the file (``1 <= line <= line count``);
* random edits of real entries, checked through the whole of ``mikb check``: the same, and
  no 'internal error' backstop message;
* random values put into the fields of valid entries: if ``mikb check`` passes, generating
  the site (``mikb build --generate-only``) works: check passing must mean build works.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malformed_corpus import CATEGORIES, CIRCUIT, FIXTURE, MODELS, PAPERS, PROBLEM
from test_loader_hardening import alarm

from mikb.check import run_check
from mikb.schema_check import validate_document
from mikb.site.generate import generate_site
from mikb.yaml_source import YamlDocument, read_yaml

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=300, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
YAML_BITS = [":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!str ", "!x ", "<<: ", "|", ">", "'", '"', "#",
             "\n", "\n  ", "\t", "---\n", "...\n", "? ", "%YAML 1.1\n", "~", "null", ".nan", "-.inf", "1e3", "2022.0",
             "0x1F", "2023-02-30", "yes", "id", "key", "\\n", "\ufeff", "é", "\x00", "\x07", "\u2028", "9" * 30]
yamlish = st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=6)), max_size=60).map("".join)


def _line_count(raw: bytes) -> int:
    """Lines an editor could show: str.splitlines knows every break YAML knows (and a few more)."""
    return max(1, len(raw.decode("utf-8", "replace").splitlines()))


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _read_checked(path: Path, raw: bytes) -> YamlDocument:
    path.write_bytes(raw)
    with alarm(10):
        doc = read_yaml(path, path.name, root=path.parent)
        problems = [*doc.problems, *validate_document(doc, "problem")]
    assert doc.data is None or _plain(doc.data)
    for d in problems:
        assert 1 <= d.line <= _line_count(raw), (d, raw[:200])
        assert d.col >= 1
    return doc


@FUZZ
@given(raw=st.binary(max_size=400))
def test_any_bytes_read_without_raising(scratch: Path, raw: bytes) -> None:
    _read_checked(scratch / "entry.yaml", raw)


@FUZZ
@given(text=yamlish)
def test_yamlish_text_reads_without_raising(scratch: Path, text: str) -> None:
    _read_checked(scratch / "entry.yaml", text.encode("utf-8", "surrogatepass"))


def _mutate(text: str, data: st.DataObject) -> str:
    """One of: delete a span, insert a YAML fragment, duplicate or drop a line, swap two lines."""
    kind = data.draw(st.sampled_from(["delete", "insert", "duplicate", "drop", "swap"]))
    if kind in ("delete", "insert"):
        at = data.draw(st.integers(0, len(text)))
        if kind == "delete":
            return text[:at] + text[at + data.draw(st.integers(1, 20)):]
        return text[:at] + data.draw(yamlish) + text[at:]
    lines = text.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate":
        return "".join(lines[: i + 1] + lines[i:])
    if kind == "drop":
        return "".join(lines[:i] + lines[i + 1:])
    j = data.draw(st.integers(0, len(lines) - 1))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


# Real entries of this repository, mutated inside the fixture tree (their references need not resolve).
REAL_SEEDS = {
    "problems/cop-1.10.yaml": REPO / "problems" / "cop-1.10.yaml",
    "circuits_zoo/induction-heads/circuit.yaml": REPO / "circuits_zoo" / "induction-heads" / "circuit.yaml",
}
SEEDS = {rel: FIXTURE / rel for rel in (PROBLEM, CIRCUIT, PAPERS, MODELS, CATEGORIES)} | REAL_SEEDS


@pytest.fixture(scope="module")
def fuzz_root(scratch: Path) -> Path:
    root = scratch / "kb"
    shutil.copytree(FIXTURE, root)
    for rel, source in REAL_SEEDS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / rel)
    return root


@FUZZ
@given(target=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_entries_check_without_raising(fuzz_root: Path, target: str, data: st.DataObject) -> None:
    original = SEEDS[target].read_text()
    mutated = data.draw(st.integers(1, 3))
    text = original
    for _ in range(mutated):
        text = _mutate(text, data)
    (fuzz_root / target).write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with alarm(10):
            result = run_check(fuzz_root)
    finally:
        (fuzz_root / target).write_text(original)
    raw = text.encode("utf-8", "surrogatepass")
    for d in result.diagnostics:
        assert "internal error" not in d.message, d
        assert d.line >= 1 and d.col >= 1, d
        if d.path == target:
            assert d.line <= _line_count(raw), (d, text)


NASTY_TEXT = st.one_of(
    st.sampled_from(["", " ", "\n", "a\n", "1.²", "x" * 300, "<b>", "[x](y)", "|", "---", "a/b", "../x", "{{x}}",
                     "\u202e", "`", "'\"", "\x7f", "é", "0", "1.2", "fx-1", "toy-2l", "doe2022toys", "https://x\n"]),
    st.text(max_size=30),
)
# No subnormals: a library loaded earlier in the test session (built with fast-math) can turn
# them off process-wide, and hypothesis then refuses to draw them; YAML never needs them.
VALUES = st.one_of(NASTY_TEXT, st.integers(-5, 3000), st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
                   st.booleans(), st.none(), st.lists(NASTY_TEXT, max_size=3))


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_paths(v, (*path, i))]
    return [path]


@settings(FUZZ, max_examples=100, deadline=10_000)
@given(target=st.sampled_from([PROBLEM, CIRCUIT, PAPERS, MODELS, CATEGORIES]), data=st.data())
def test_check_passing_means_generation_works(fuzz_root: Path, scratch: Path, target: str, data: st.DataObject) -> None:
    original = (FIXTURE / target).read_text()
    entry = yaml.safe_load(original)
    path = data.draw(st.sampled_from(_string_paths(entry)))
    holder = entry
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = data.draw(VALUES)
    (fuzz_root / target).write_text(yaml.safe_dump(entry, allow_unicode=True))
    try:
        with alarm(20):
            if not run_check(fuzz_root).errors:
                generate_site(fuzz_root, out_dir=scratch / "site_src")
    finally:
        (fuzz_root / target).write_text(original)


def test_repository_entries_read_cleanly() -> None:
    """The fuzz targets' seeds: every real entry of this repository loads without a problem."""
    files = [*sorted((REPO / "problems").glob("*.yaml"))[:40], REPO / "literature" / "papers.yaml",
             *sorted((REPO / "circuits_zoo").glob("*/circuit.yaml"))]
    for path in files:
        doc = read_yaml(path, path.name, root=REPO)
        assert doc.problems == [] and _plain(doc.data), path
