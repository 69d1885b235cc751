"""Turn hostile entry text into HTML that is safe wherever a page puts it.

Entries arrive from strangers' pull requests, and the generated Markdown is rendered again
by MkDocs (tables, attr_list, md_in_html, admonitions, emoji, superfences). Two rules make
every field safe in every context (a Markdown paragraph, a table cell, a raw HTML block,
an attribute value, the page title):

1. Rich text (summaries, notes, roles, statements) is rendered here from Markdown and passed
   through an allowlist sanitiser (nh3): no scripts, event handlers, frames, styles or forms,
   and links only to http(s), mailto or relative addresses.
2. Everything that reaches the page, plain text and the sanitised HTML's text and attribute
   values alike, is written *Markdown-inert*: HTML-escaped, with every ASCII punctuation
   character that Markdown or its extensions react to written as a numeric character
   reference. The second Markdown pass then has nothing to interpret (no links, no
   ``{: onclick=...}`` attribute lists, no fences to close), while the browser shows the
   same characters.

Why not only sanitise the final HTML: the generator must stay a plain library step that any
site generator can consume (Zensical runs no MkDocs hooks), so the Markdown it writes has to
be safe on its own; ``mikb.site.audit`` still scans the built pages as a second line.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from functools import lru_cache
from html.parser import HTMLParser

import markdown
import nh3

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})

BLOCK_TAGS = frozenset({
    "p", "a", "em", "strong", "code", "pre", "ul", "ol", "li", "blockquote", "br", "sub", "sup",
    "del", "hr", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
})
INLINE_TAGS = frozenset({"a", "em", "strong", "code", "br", "sub", "sup", "del"})
ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
VOID_TAGS = frozenset({"br", "hr"})

# One table for both escapes: HTML's special characters and the punctuation that Markdown
# (and the extensions mkdocs.yml enables: attr_list, tables, emphasis, links, code, fences)
# reacts to in the middle of a line. Values never start a line (text() keeps them on one,
# and blocks are wrapped in a tag), so line-start syntax such as '1.', '-' or '#' needs
# nothing, and ordinary punctuation stays readable in the generated Markdown.
MARKDOWN_ACTIVE = "\\`*_{}[]<>&!|~#\"'^$"
_INERT = {ord(ch): f"&#{ord(ch)};" for ch in MARKDOWN_ACTIVE}
_INERT.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;"})
# Line breaks inside a value would end a table row or an indented block.
_INERT_ONE_LINE = {**_INERT, ord("\n"): " ", ord("\r"): " "}

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]+")


def text(value: object) -> str:
    """Plain text as inert HTML on one line: safe in Markdown, tables, HTML and attributes."""
    return str(value).translate(_INERT_ONE_LINE)


def text_multiline(value: object) -> str:
    """As :func:`text`, keeping line breaks (for ``<pre>`` blocks such as run logs)."""
    return str(value).translate(_INERT)


def url_scheme(url: str) -> str | None:
    """The scheme a browser would see, after the tricks that hide one: character references
    (``&#106;avascript:``), percent-encoding, embedded tabs or newlines, letter case."""
    probe = html.unescape(str(url))
    probe = urllib.parse.unquote(probe)
    probe = _CONTROL.sub("", probe).lower()
    match = _SCHEME.match(probe)
    return match.group(1) if match else None


def is_safe_url(url: str) -> bool:
    """http(s), mailto, or a relative address (no scheme at all)."""
    scheme = url_scheme(url)
    return scheme is None or scheme in SAFE_SCHEMES


def link(url: str | None, label: object, *, external: bool = True) -> str:
    """``<a>`` to ``url`` with an inert label; only the label is shown for an unsafe address."""
    if not url or not is_safe_url(url):
        return text(label)
    rel = ' rel="noopener noreferrer nofollow"' if external else ""
    return f'<a href="{text(url)}"{rel}>{text(label)}</a>'


def code(value: object) -> str:
    """Inline code (commands, ids, paths) that keeps its characters literally."""
    return f"<code>{text(value)}</code>"


def pre(value: object) -> str:
    """A preformatted block (a run's log); no fence that entry text could close."""
    return f'<pre class="mikb-log"><code>{text_multiline(value)}</code></pre>'


@lru_cache(maxsize=8192)
def block(source: str) -> str:
    """Markdown -> sanitised, inert HTML for a block of its own (place it at column 0,
    followed by a blank line)."""
    return _inert(_sanitise(_render(source), BLOCK_TAGS))


@lru_cache(maxsize=8192)
def inline(source: str) -> str:
    """Markdown -> sanitised, inert HTML on one line: for table cells, list items, captions.
    Paragraphs are joined with line breaks; block elements are reduced to their text."""
    cleaned = _sanitise(_render(source), INLINE_TAGS | {"p"})
    cleaned = re.sub(r"\s*</p>\s*<p>\s*", "<br>", cleaned.strip())
    cleaned = re.sub(r"</?p>", "", cleaned)
    return _inert(cleaned).replace("\n", " ")


def _render(source: str) -> str:
    return markdown.markdown(str(source), extensions=[], output_format="html")


def _sanitise(rendered: str, tags: frozenset[str]) -> str:
    return nh3.clean(
        rendered,
        tags=set(tags),
        attributes={tag: set(attrs) for tag, attrs in ATTRIBUTES.items() if tag in tags},
        url_schemes=set(SAFE_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


class _InertWriter(HTMLParser):
    """Re-serialises sanitised HTML with every text and attribute value made inert."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.anchors: list[bool] = []  # per open <a>: was it kept?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            # A link whose address the sanitiser removed (javascript: ...) keeps only its text.
            href = dict(attrs).get("href")
            self.anchors.append(bool(href) and is_safe_url(href))
            if not self.anchors[-1]:
                return
        rendered = "".join(f' {k}="{text(v or "")}"' for k, v in attrs)
        self.out.append(f"<{tag}{rendered}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.anchors and not self.anchors.pop():
            return
        if tag not in VOID_TAGS:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(text_multiline(data))


def _inert(sanitised: str) -> str:
    writer = _InertWriter()
    writer.feed(sanitised)
    writer.close()
    return "".join(writer.out).strip()
