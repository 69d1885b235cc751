"""Small Markdown/HTML helpers shared by the page modules."""

from __future__ import annotations

import html
import posixpath
import re

STATUS_LABELS = {
    "open": "open",
    "in-progress": "in progress",
    "partially-solved": "partially solved",
    "solved": "solved",
}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def rel_link(from_page: str, to_page: str) -> str:
    """Relative link between two generated Markdown files (MkDocs resolves .md links)."""
    start = posixpath.dirname(from_page) or "."
    return posixpath.relpath(to_page, start)


def status_badge(status: str) -> str:
    return f'<span class="mikb-status mikb-status-{esc(status)}">{esc(STATUS_LABELS.get(status, status))}</span>'


def state_badge(state: str) -> str:
    labels = {"ok": "reproduced", "stale": "stale", "failed": "failed", "unavailable": "not run", "not-run": "not run",
              "pass": "pass", "fail": "fail", "missing": "missing", "n/a": "no verdict"}
    return f'<span class="mikb-state mikb-state-{esc(state.replace("/", ""))}">{esc(labels.get(state, state))}</span>'


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
    """YAML front matter; values are quoted by json.dumps so any text is safe."""
    import json

    lines = ["---"]
    for key, value in fields.items():
        if value is None:
            continue
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


def rel_asset(from_page: str, asset: str) -> str:
    """Relative URL from a page's rendered location to a static file in the site."""
    start = page_url(from_page) or "."
    return posixpath.relpath(asset, start)
