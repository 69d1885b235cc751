"""An Atom feed of problem status changes, so a researcher can follow what moves.

Built from the same status histories as the pages (newest first, "posed" entries left out).
Entries are plain text, XML-escaped; links are absolute where the site's address is known
(``site_url`` in mkdocs.yml) and relative to the feed otherwise.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from mikb.loader import KnowledgeBase
from mikb.site.md import STATUS_LABELS

FEED = "feed.xml"
FEED_ENTRIES = 50


def status_feed(kb: KnowledgeBase, site_url: str | None, number_of) -> str:
    """``number_of(problem)`` gives the number shown for a problem (duplicates told apart)."""
    base = (site_url or "").rstrip("/") + "/" if site_url else ""
    changes = sorted(((ch, p, i) for p in kb.problems.values() for i, ch in enumerate(p.status_history) if i > 0),
                     key=lambda item: (item[0].date, item[1].id, item[2]), reverse=True)[:FEED_ENTRIES]
    updated = f"{changes[0][0].date}T00:00:00Z" if changes else "1970-01-01T00:00:00Z"
    parts = ['<?xml version="1.0" encoding="utf-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
             "<title>mikb: status changes of open problems</title>",
             f"<id>{escape(base + FEED) if base else 'urn:mikb:status-changes'}</id>",
             f"<link rel=\"self\" href={quoteattr(base + FEED)}/>", f"<updated>{updated}</updated>"]
    for change, problem, index in changes:
        number = number_of(problem)
        status = STATUS_LABELS.get(change.status, change.status)
        title = f"{number + ' ' if number else ''}{problem.title}: {status}"
        url = f"{base}problems/{problem.id}/"
        evidence = change.evidence if change.evidence_is_url else kb.papers[change.evidence].citation \
            if change.evidence in kb.papers else change.evidence
        summary = f"{status} on {change.date}, on the evidence of {evidence}." + (f" {change.note}" if change.note else "")
        parts += ["<entry>", f"<title>{escape(title)}</title>", f"<id>urn:mikb:{escape(problem.id)}:{index}</id>",
                  f"<link href={quoteattr(url)}/>", f"<updated>{change.date}T00:00:00Z</updated>",
                  f"<summary>{escape(summary)}</summary>", "</entry>"]
    parts.append("</feed>")
    return "\n".join(parts) + "\n"
