"""Small Markdown/HTML helpers shared by the page modules."""

from __future__ import annotations

import json
import posixpath
import re

from mikb.evidence import DONE_LABELS, REPRODUCTION
from mikb.site.safe_html import text

STATUS_LABELS = {
    "open": "open",
    "in-progress": "in progress",
    "partially-solved": "partially solved",
    "solved": "solved",
}


def esc(value: object) -> str:
    """Plain text made safe for any place on a page (see :mod:`mikb.site.safe_html`)."""
    return text(value)


def cell(markup: object) -> str:
    """Markup that mikb built (links, badges, already-escaped text) kept on one table row.
    Entry text must be escaped or rendered first: this only guards the row's structure."""
    return str(markup).replace("|", "\\|").replace("\n", " ")


def rel_link(from_page: str, to_page: str) -> str:
    """Relative link between two generated Markdown files (MkDocs resolves .md links)."""
    start = posixpath.dirname(from_page) or "."
    return posixpath.relpath(to_page, start)


def status_badge(status: str) -> str:
    return f'<span class="mikb-status mikb-status-{esc(status)}">{esc(STATUS_LABELS.get(status, status))}</span>'


def state_badge(state: str, evidence: str = REPRODUCTION) -> str:
    """A run's state or a claim's verdict. A finished run is "reproduced" only when the model
    learned the behaviour; on a hand-built model it is a method check (see mikb.evidence)."""
    labels = {"ok": DONE_LABELS.get(evidence, "ran"), "stale": "stale", "failed": "failed", "unavailable": "not run",
              "not-run": "not run", "pass": "pass", "fail": "fail", "missing": "missing: not recorded",
              "n/a": "no verdict"}
    css = state.replace("/", "")
    if state == "ok" and evidence != REPRODUCTION:
        css = "method"
    return f'<span class="mikb-state mikb-state-{esc(css)}">{esc(labels.get(state, state))}</span>'


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def fmt_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(fmt_value(v) for v in value[:8])
        return f"[{shown}{', …' if len(value) > 8 else ''}]"
    return str(value)


def front_matter(**fields: object) -> str:
    """YAML front matter; values are quoted by json.dumps so any text is valid YAML. The
    title is escaped as well: the theme prints ``page.meta.title`` into the header and the
    ``<title>`` element without escaping it."""
    lines = ["---"]
    for key, value in fields.items():
        if value is None:
            continue
        if key == "title":
            value = text(value)
        lines.append(f"{key}: {json.dumps(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n\n"


def page_url(page: str) -> str:
    """The directory-style URL MkDocs gives a Markdown file (``a/b.md`` -> ``a/b/``)."""
    if page == "index.md":
        return ""
    if page.endswith("/index.md"):
        return page[: -len("index.md")]
    return page[: -len(".md")] + "/"


def rel_url(from_page: str, to_page: str) -> str:
    """Relative URL between two pages' rendered locations, for raw HTML (which MkDocs does
    not rewrite)."""
    start = page_url(from_page) or "."
    target = page_url(to_page) or "."
    out = posixpath.relpath(target, start)
    return "./" if out == "." else out + "/"


def component_anchor(component_node_id: str) -> str:
    """The anchor of a component on its model's page (``component:gpt2-small:9.9`` -> ``9-9``)."""
    return component_node_id.split(":")[-1].replace(".", "-").replace("*", "any")


def rel_asset(from_page: str, asset: str) -> str:
    """Relative URL from a page's rendered location to a static file in the site."""
    start = page_url(from_page) or "."
    return posixpath.relpath(asset, start)


ADMONITION_KINDS = frozenset({"note", "info", "warning", "failure", "abstract", "tip"})


def admonition(kind: str, title: str, body_html: str) -> str:
    """A Material admonition written as raw HTML at column 0, so that the text inside is
    never re-read as Markdown (an indented ``!!!`` block re-parses whatever it holds, and
    an error message could end the box early)."""
    if kind not in ADMONITION_KINDS:
        raise ValueError(f"unknown admonition kind {kind!r}")
    return (f'<div class="admonition {kind}"><p class="admonition-title">{text(title)}</p>\n'
            f"{body_html}\n</div>\n")
