"""Cross-reference checks: every id an entry names must exist and make sense.

Schema validation proves each file is well-formed on its own; this module checks the links
between files (paper keys, problem and circuit ids, model ids, component locations against
the model's shape, scripts on disk) and reports each at the line of the offending value.

A reference is only reported as unknown when the thing it names could have been found: if
the registry it points into failed to load, the failure is the one error and the skipped
references are summed up in one note; a reference to an entry that exists but is invalid
is not reported at all (that entry's own error says what to fix).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mikb.diagnostics import Diagnostic, clip
from mikb.entries import Circuit, Problem
from mikb.loader import KnowledgeBase
from mikb.yaml_source import YamlDocument


def check_cross_references(kb: KnowledgeBase) -> list[Diagnostic]:
    kb.unchecked_refs.clear()
    found: list[Diagnostic] = []
    for problem in kb.problems.values():
        found.extend(_check_problem(kb, problem))
    for circuit in kb.circuits.values():
        found.extend(_check_circuit(kb, circuit))
    found.extend(_check_registries(kb))
    found.extend(_check_markdown_links(kb))
    found.extend(_skipped_notes(kb))
    return found


_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*<?([^\s>]*)", re.MULTILINE)
_SAFE_TARGET = re.compile(r"(https?://|mailto:)\S", re.ASCII)


def _check_markdown_links(kb: KnowledgeBase) -> list[Diagnostic]:
    """Text fields become Markdown pages, and the site is built with ``mkdocs build --strict``:
    a relative link ('other.md') or an anchor ('#part') resolves against the generated page
    and fails the build. Entries may only link to full URLs."""
    out: list[Diagnostic] = []
    for doc in kb.documents.values():
        for path, text in _strings(doc.data, ()):
            if "](" not in text and "]:" not in text:
                continue
            prose = _without_code(text)
            for match in (*_INLINE_LINK.finditer(prose), *_REFERENCE_LINK.finditer(prose)):
                target = match.group(1)
                if not _SAFE_TARGET.match(target):
                    out.append(doc.diag(path, f"link to '{clip(target)}': use a full https:// URL "
                                              "(relative links and #anchors break the site build)"))
                    break
    return out


_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _without_code(text: str) -> str:
    """Markdown outside code: a link written inside backticks is shown, not followed.
    Fences are split off rather than matched with a regex, so hostile text stays linear."""
    outside_fences = "".join(text.split("```")[::2])
    return _CODE_SPAN.sub("", outside_fences)


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _unchecked(kb: KnowledgeBase, kind: str, key: str) -> bool:
    """True when a reference to ``key`` cannot be judged: its registry failed, or its entry did."""
    if kind in kb.unreadable:
        kb.unchecked_refs[kind] += 1
        return True
    return kb.is_invalid(kind, key)


def _skipped_notes(kb: KnowledgeBase) -> list[Diagnostic]:
    """One line per failed registry instead of one error per reference into it."""
    notes = []
    for kind, count in sorted(kb.unchecked_refs.items()):
        cause = kb.unreadable[kind]
        notes.append(Diagnostic(cause.path, cause.line, cause.col, f"{count} reference(s) to {kind} not checked because "
                                f"{cause.path} could not be read (fix the error above first)", "note"))
    return notes


def _paper_ref(kb: KnowledgeBase, doc: YamlDocument, path: tuple, key: str) -> list[Diagnostic]:
    if key in kb.papers or _unchecked(kb, "papers", key):
        return []
    return [doc.diag(path, f"unknown paper key '{clip(key)}' (not in {kb.rel(kb.layout.literature_dir)}/*.yaml)")]


def _known_model(kb: KnowledgeBase, model_id: str) -> bool:
    return model_id in kb.models or _unchecked(kb, "models", model_id)


def _check_problem(kb: KnowledgeBase, problem: Problem) -> list[Diagnostic]:
    doc = problem.doc
    assert doc is not None
    out: list[Diagnostic] = []
    if problem.id != doc.path.stem:
        out.append(doc.diag(("id",), f"id '{clip(problem.id)}' does not match the file name '{clip(doc.path.stem)}'"))
    if kb.categories and problem.category not in kb.categories and not _unchecked(kb, "categories", problem.category):
        out.append(doc.diag(("category",), f"unknown category '{clip(problem.category)}' (see {kb.rel(kb.layout.categories_file)})"))
    elif not kb.categories:
        _unchecked(kb, "categories", problem.category)
    for i, other in enumerate(problem.related_problems):
        if other == problem.id:
            out.append(doc.diag(("related_problems", i), "a problem cannot be related to itself"))
        elif other not in kb.problems and not kb.is_invalid("problem", other):
            out.append(doc.diag(("related_problems", i), f"unknown problem id '{clip(other)}'"))
    for i, circuit_id in enumerate(problem.related_circuits):
        if circuit_id not in kb.circuits and not kb.is_invalid("circuit", circuit_id):
            out.append(doc.diag(("related_circuits", i), f"unknown circuit id '{clip(circuit_id)}'"))
    for i, key in enumerate(problem.references):
        out.extend(_paper_ref(kb, doc, ("references", i), key))
    out.extend(_paper_ref(kb, doc, ("source", "paper"), problem.source["paper"]))
    previous = ""
    for i, change in enumerate(problem.status_history):
        if not change.evidence_is_url:
            out.extend(_paper_ref(kb, doc, ("status_history", i, "evidence"), change.evidence))
        if change.date < previous:
            out.append(doc.diag(("status_history", i, "date"), "status history must be in date order (oldest first)"))
        previous = change.date
    last = problem.status_history[-1].status
    if last != problem.status:
        out.append(doc.diag(("status",), f"status '{problem.status}' differs from the latest status history entry '{last}'"))
    return out


def _check_circuit(kb: KnowledgeBase, circuit: Circuit) -> list[Diagnostic]:
    doc = circuit.doc
    assert doc is not None and circuit.folder is not None
    out: list[Diagnostic] = []
    if circuit.id != circuit.folder.name:
        out.append(doc.diag(("id",), f"id '{clip(circuit.id)}' does not match the folder name '{clip(circuit.folder.name)}'"))
    for i, model_id in enumerate(circuit.models):
        if not _known_model(kb, model_id):
            out.append(doc.diag(("models", i), f"unknown model id '{clip(model_id)}' (see {kb.rel(kb.layout.models_file)})"))
    seen: set[str] = set()
    for comp in circuit.components:
        path = ("components", comp.index)
        if comp.id in seen:
            out.append(doc.diag((*path, "id"), f"duplicate component id '{clip(comp.id)}'"))
        seen.add(comp.id)
        if comp.model not in circuit.models:
            out.append(doc.diag((*path, "model"), f"component model '{clip(comp.model)}' is not one of the circuit's models"))
        out.extend(_check_location(kb, doc, path, comp.kind, comp.location, comp.model))
    for edge in circuit.edges:
        for end, name in (("from", edge.source), ("to", edge.target)):
            if circuit.component(name) is None:
                out.append(doc.diag(("edges", edge.index, end), f"unknown component '{clip(name)}'"))
        if edge.input and (target := circuit.component(edge.target)) and target.kind != "head":
            out.append(doc.diag(("edges", edge.index, "input"), f"input '{edge.input}' needs an attention head as receiver"))
    claim_ids: set[str] = set()
    for claim in circuit.claims:
        path = ("claims", claim.index)
        if claim.id in claim_ids:
            out.append(doc.diag((*path, "id"), f"duplicate claim id '{clip(claim.id)}'"))
        claim_ids.add(claim.id)
        if claim.reported:
            if not _known_model(kb, claim.reported["model"]):
                out.append(doc.diag((*path, "reported", "model"), f"unknown model id '{clip(claim.reported['model'])}'"))
            out.extend(_paper_ref(kb, doc, (*path, "reported", "source", "paper"), claim.reported["source"]["paper"]))
            if not any(k in claim.reported for k in ("value", "range", "text")):
                out.append(doc.diag((*path, "reported"), "reported needs a value, a range or a text"))
        for model_id in claim.expect:
            if model_id not in circuit.models:
                out.append(doc.diag((*path, "expect", model_id), f"expect names '{clip(model_id)}', which is not one of the circuit's models", key=True))
    for i, key in enumerate(circuit.references):
        out.extend(_paper_ref(kb, doc, ("references", i), key))
    for i, problem_id in enumerate(circuit.related_problems):
        if problem_id not in kb.problems and not kb.is_invalid("problem", problem_id):
            out.append(doc.diag(("related_problems", i), f"unknown problem id '{clip(problem_id)}'"))
    if not circuit.script_path.is_file():
        out.append(doc.diag(("reproduction", "script"), f"reproduction script not found: {kb.rel(circuit.script_path)}"))
    return out


def _check_location(kb: KnowledgeBase, doc: YamlDocument, path: tuple, kind: str, location: str | None, model_id: str) -> list[Diagnostic]:
    """Heads are 'L.H' or 'L.*', MLPs and layers 'L', neurons 'L.N'; all within the model."""
    here = (*path, "location")
    if kind in ("embed", "unembed"):
        return [doc.diag(here, f"a {kind} component takes no location")] if location else []
    if location is None:
        return [doc.diag(path, f"a {kind} component needs a location")]
    parts = location.split(".")
    if kind == "head" and len(parts) != 2:
        return [doc.diag(here, f"head location must be 'layer.head' (e.g. 9.9), got '{clip(location)}'")]
    if kind in ("mlp", "layer") and len(parts) != 1:
        return [doc.diag(here, f"{kind} location must be a layer number, got '{clip(location)}'")]
    if kind == "neuron" and (len(parts) != 2 or parts[1] == "*"):
        return [doc.diag(here, f"neuron location must be 'layer.neuron', got '{clip(location)}'")]
    model = kb.models.get(model_id)
    if model is None:
        return []
    layer = int(parts[0])
    if model.n_layers is None or model.n_heads is None:
        return [doc.diag(here, f"{model_id} is a paper's model with no stated shape: components need a model mikb runs")]
    if layer >= model.n_layers:
        return [doc.diag(here, f"layer {layer} does not exist in {model_id} (layers 0-{model.n_layers - 1})")]
    if kind == "head" and parts[1] != "*" and int(parts[1]) >= model.n_heads:
        return [doc.diag(here, f"head {clip(location)} does not exist in {model_id} (heads 0-{model.n_heads - 1} per layer)")]
    if kind == "neuron" and model.n_neurons and int(parts[1]) >= model.n_neurons:
        return [doc.diag(here, f"neuron {clip(location)} does not exist in {model_id} ({model.n_neurons} neurons per layer)")]
    return []


def _check_registries(kb: KnowledgeBase) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for model in kb.models.values():
        doc, index = kb.model_docs[model.id]
        for i, key in enumerate(model.references):
            out.extend(_paper_ref(kb, doc, ("models", index, "references", i), key))
    categories_doc = kb.registry_docs.get("categories")
    for category in kb.categories.values():
        if category.source and categories_doc:
            out.extend(_paper_ref(kb, categories_doc, ("categories", category.index, "source"), category.source))
        if category.list and categories_doc and category.list not in kb.lists:
            out.append(categories_doc.diag(("categories", category.index, "list"), f"unknown list '{category.list}'"))
    for source_list in kb.lists.values():
        if categories_doc:
            out.extend(_paper_ref(kb, categories_doc, ("lists", source_list.index, "source"), source_list.source))
    for problem in kb.problems.values():
        source_list = kb.lists.get(kb.list_of(problem) or "")
        if source_list and source_list.id_prefix and not problem.id.startswith(source_list.id_prefix) and problem.doc:
            out.append(problem.doc.diag(("id",), f"id '{problem.id}' should start with '{source_list.id_prefix}', "
                                               f"the prefix of its list '{source_list.slug}'"))
    if kb.problems and not kb.layout.categories_file.exists() and "categories" not in kb.unreadable:
        out.append(Diagnostic(kb.rel(kb.layout.categories_file), 1, 1, "missing category registry"))
    if kb.circuits and not kb.layout.models_file.exists() and "models" not in kb.unreadable:
        out.append(Diagnostic(kb.rel(kb.layout.models_file), 1, 1, "missing model registry"))
    return out
