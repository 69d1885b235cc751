"""`mikb check`: entries that are valid but unfinished or registered twice.

`mikb new` writes entries that pass the schema so a contributor starts from something that
works; its placeholders must then not survive review. These are warnings (``--strict``, which
CI and the pre-commit hook use, makes them errors): an untouched placeholder, a problem number
outside its category's numbering, a paper registered under a second key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mikb.diagnostics import Diagnostic
from mikb.loader import KnowledgeBase
from mikb.yaml_source import YamlDocument

# Text the scaffold templates (mikb.scaffold) write; kept here so the two cannot drift apart.
PLACEHOLDERS = (
    "Replace this title", "First Author", "example.org/replace-me", "Describe the task in one sentence",
    "Describe, in your own words, how the model performs the task", "describe its role",
    "Say in your own words what is asked", "describe where the weights come from",
)


def check_entry_hygiene(kb: KnowledgeBase) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for doc in kb.documents.values():
        if doc.data is not None:
            found += list(_placeholders(doc, (), doc.data))
    found += _numbers_outside_category(kb)
    found += _papers_registered_twice(kb)
    found += _near_duplicate_tags(kb)
    return found


def _tag_stem(tag: str) -> str:
    """British and American spellings and plurals of one tag map to one stem."""
    return tag.replace("isation", "ization").replace("ise", "ize").removesuffix("s")


def _near_duplicate_tags(kb: KnowledgeBase) -> list[Diagnostic]:
    """Two spellings of one tag split its entries across two pages: name the rarer one where
    it is used, with the tag to use instead."""
    uses: dict[str, list[tuple[YamlDocument, tuple[Any, ...]]]] = {}
    tagged = [(p.doc, ("tags",), p.tags) for p in kb.problems.values()]
    tagged += [(c.doc, ("tags",), c.tags) for c in kb.circuits.values()]
    tagged += [(kb.paper_docs[p.key][0], ("papers", kb.paper_docs[p.key][1], "tags"), p.tags) for p in kb.papers.values()]
    for doc, path, tags in tagged:
        for i, tag in enumerate(tags):
            uses.setdefault(tag, []).append((doc, (*path, i)))
    by_stem: dict[str, list[str]] = {}
    for tag in uses:
        by_stem.setdefault(_tag_stem(tag), []).append(tag)
    out = []
    for spellings in by_stem.values():
        if len(spellings) < 2:
            continue
        keep = max(spellings, key=lambda t: (len(uses[t]), t))
        for tag in spellings:
            if tag != keep:
                out += [doc.diag(path, f"tag '{tag}' duplicates '{keep}': use '{keep}'", severity="warning")
                        for doc, path in uses[tag]]
    return out


def _placeholders(doc: YamlDocument, path: tuple[Any, ...], value: Any) -> Iterator[Diagnostic]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _placeholders(doc, (*path, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _placeholders(doc, (*path, index), item)
    elif isinstance(value, str):
        for placeholder in PLACEHOLDERS:
            if placeholder.lower() in value.lower():
                yield doc.diag(path, f"placeholder from `mikb new` left in place: '{placeholder}'", severity="warning")


def _numbers_outside_category(kb: KnowledgeBase) -> list[Diagnostic]:
    out = []
    for problem in kb.problems.values():
        category = kb.categories.get(problem.category)
        if category is None or category.number in (None, "") or not problem.number or "." not in str(problem.number):
            continue
        # A problem's number starts with its category's (1.x, or 1.x.y in a deeper scheme).
        if not (str(problem.number) + ".").startswith(f"{category.number}."):
            out.append(problem.doc.diag(("number",), f"number {problem.number} is outside category '{category.slug}', "
                                        f"whose problems are numbered {category.number}.N", severity="warning"))
    return out


def _papers_registered_twice(kb: KnowledgeBase) -> list[Diagnostic]:
    """The same arXiv id or DOI under two keys splits a paper's backlinks in two."""
    out = []
    for field in ("arxiv", "doi"):
        first: dict[str, str] = {}
        for paper in kb.papers.values():
            value = getattr(paper, field)
            if not value:
                continue
            ident = str(value).strip().lower()
            if ident in first:
                doc, index = kb.paper_docs[paper.key]
                out.append(doc.diag(("papers", index, field), f"{field} {value} is already registered as "
                                    f"'{first[ident]}': cite that key instead", severity="warning"))
            else:
                first[ident] = paper.key
    return out
