"""A last look at the built site: nothing in it may run script that the theme did not bring.

Entry text is escaped and sanitised when pages are generated; hand-written pages in docs/
are copied as they are. This scan of the HTML MkDocs produced catches what either path
let through (a new page module that forgot to escape a field, a docs page with a script
tag) before the site is published: event-handler attributes and script-capable URLs
anywhere, and active elements inside a page's content or title.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from mikb.site.safe_html import is_safe_url

ACTIVE_IN_CONTENT = frozenset({
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "form",
    "base", "meta", "link", "noscript", "template", "portal",
})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background", "cite", "srcset"})


@dataclass(frozen=True)
class Finding:
    page: str
    line: int
    message: str

    def format(self) -> str:
        return f"{self.page}:{self.line}: {self.message}"


class _PageAudit(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.findings: list[Finding] = []
        self.content_depth = 0  # >0 while inside <article> (the page's own content)
        self.in_title = False

    def _flag(self, message: str) -> None:
        self.findings.append(Finding(self.page, self.getpos()[0], message))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            self.content_depth += 1
        if tag == "title":
            self.in_title = True
        elif self.in_title:
            self._flag(f"<{tag}> inside the page title")
        if self.content_depth and tag in ACTIVE_IN_CONTENT:
            self._flag(f"<{tag}> element in the page content")
        for name, value in attrs:
            if name.startswith("on"):
                self._flag(f"event-handler attribute {name}= on <{tag}>")
            elif name == "srcdoc":
                self._flag(f"srcdoc attribute on <{tag}>")
            elif name in URL_ATTRIBUTES and value and not _urls_safe(name, value):
                self._flag(f"unsafe address in {name}= on <{tag}>: {value[:60]!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "article":
            self.content_depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self.content_depth:
            self.content_depth -= 1
        if tag == "title":
            self.in_title = False


def _urls_safe(name: str, value: str) -> bool:
    candidates = [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
    return all(is_safe_url(url) for url in candidates)


def audit_page(html_text: str, page: str) -> list[Finding]:
    parser = _PageAudit(page)
    parser.feed(html_text)
    parser.close()
    return parser.findings


def audit_site(site_dir: Path) -> list[Finding]:
    """Every finding in every HTML page of a built site."""
    findings: list[Finding] = []
    for path in sorted(site_dir.rglob("*.html")):
        findings += audit_page(path.read_text(encoding="utf-8", errors="replace"), path.relative_to(site_dir).as_posix())
    return findings
