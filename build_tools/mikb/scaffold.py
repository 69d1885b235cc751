"""`mikb new`: start an entry from a template that already passes `mikb check`.

Templates carry the schema comment (editor completion) and placeholders that are valid but
obviously unfinished, so a contributor edits a working entry instead of guessing the format;
`mikb check --strict` flags every placeholder left in place (mikb.entry_hygiene). Free text
given on the command line is written as a quoted YAML string, so a colon or a quote in a
title cannot break the file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from mikb.atomic import write_text_atomic
from mikb.layout import Layout

PROBLEM_TEMPLATE = """\
# yaml-language-server: $schema=../build_tools/mikb/schemas/problem.schema.json
id: {id}
number: {number}
title: {title}
category: {category}
subcategory: null
difficulty: unknown
priority: unknown
status: open
status_history:
  - date: {today}
    status: open
    evidence: {paper}
    note: Posed in the source.
summary: |
  Say in your own words what is asked, concretely, and why an answer would matter.
related_problems: []
related_circuits: []
references: [{paper}]
tags: []
source:
  paper: {paper}
contributors: []
"""

CIRCUIT_TEMPLATE = """\
# yaml-language-server: $schema=../../build_tools/mikb/schemas/circuit.schema.json
id: {id}
name: {title}
models: [{model}]
task: Describe the task in one sentence.
behaviour: |
  Describe, in your own words, how the model performs the task.
components:
  - id: main-head
    kind: head
    location: "0.0"
    role: describe its role
edges: []
claims: []
references: [{paper}]
related_problems: []
reproduction:
  script: reproduce.py
  outputs: results
tags: []
contributors: []
"""

SCRIPT_TEMPLATE = '''\
"""Reproduction script for the {id} circuit. See mikb.reproduce.context for the contract."""

from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(models=("{model}",), params={{}}, quick_params={{}})


def run(ctx: ReproContext) -> None:
    ctx.set_weights_source("describe where the weights come from")
    ctx.metric("example_metric", 0.0)
'''

PAPER_TEMPLATE = """\
  - key: {id}
    title: {title}
    authors: [First Author]
    year: {year}
    venue: arXiv
    kind: paper
    url: https://example.org/replace-me
"""


def scaffold(layout: Layout, kind: str, entry_id: str, title: str, *, category: str = "", paper: str = "",
             model: str = "", number: str | None = None) -> tuple[list[Path], str]:
    """Create the files of a new entry; refuses to overwrite anything. Returns the files and
    what was done to them ("created" or "appended to")."""
    today = dt.date.today().isoformat()
    fields = {"id": entry_id, "title": json.dumps(title, ensure_ascii=False), "category": category, "paper": paper,
              "model": model, "today": today, "year": dt.date.today().year,
              "number": json.dumps(number) if number else "null"}
    if kind == "problem":
        path = layout.problems_dir / f"{entry_id}.yaml"
        _create(path, PROBLEM_TEMPLATE.format(**fields))
        return [path], "created"
    if kind == "circuit":
        folder = layout.circuits_dir / entry_id
        circuit, script = folder / "circuit.yaml", folder / "reproduce.py"
        if folder.exists():
            raise FileExistsError(f"{folder} already exists")
        _create(circuit, CIRCUIT_TEMPLATE.format(**fields))
        _create(script, SCRIPT_TEMPLATE.format(**fields))
        return [circuit, script], "created"
    if kind == "paper":
        path = layout.literature_dir / "papers.yaml"
        text = path.read_text() if path.is_file() else "papers:\n"
        if f"key: {entry_id}\n" in text:
            raise FileExistsError(f"paper key '{entry_id}' already exists in {path}")
        write_text_atomic(path, text.rstrip("\n") + "\n" + PAPER_TEMPLATE.format(**fields))
        return [path], "appended to"
    raise ValueError(f"unknown entry kind '{kind}'")


def next_problem_number(category_number: object, taken: list[str]) -> str | None:
    """The first free ``N.k`` after the category's highest number, so a new problem sorts
    with its category instead of after every numbered one."""
    if category_number in (None, ""):
        return None
    prefix = f"{category_number}."
    used = [int(n[len(prefix):]) for n in taken if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return f"{prefix}{max(used, default=0) + 1}"


def _create(path: Path, text: str) -> None:
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    write_text_atomic(path, text)
