"""Problem pages: the filterable index, one page per category, one page per problem."""

from __future__ import annotations

import re
from collections import Counter

from mikb.entries import Problem
from mikb.graph import incoming, node_id, related_problems
from mikb.site.context import SiteContext
from mikb.site.md import (
    STATUS_LABELS,
    admonition,
    cell,
    esc,
    front_matter,
    rel_link,
    rel_url,
    status_badge,
)
from mikb.site.safe_html import block, code, inline, link
from mikb.site.writer import SiteWriter

INDEX = "problems/index.md"
CATEGORIES_PAGE = "problems/categories.md"
RECENT_PAGE = "problems/recent.md"
STATUSES_PAGE = "problems/statuses.md"
STATUS_MEANINGS = {
    "open": "No work addresses the question as posed yet (or none that mikb has recorded).",
    "in-progress": "Work addresses the question or a close variant, without answering it.",
    "partially-solved": "Work answers part of the question, or answers it for some models or settings only.",
    "solved": "A work answers the question as posed; the evidence names it.",
}
DIFFICULTY_ORDER = ["A", "A-B", "B", "B-C", "C", "C-D", "D", "unknown"]


TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")


def tag_link(tags_page: str, tag: str) -> str:
    """A tag chip linking to its section of the tags page (only well-formed tags get an
    anchor: the tag is part of a URL fragment)."""
    if not TAG_PATTERN.fullmatch(tag):
        return code(tag)
    return f"[{code(tag)}]({tags_page}#{tag})"


def problem_page(problem: Problem) -> str:
    return f"problems/{problem.id}.md"


def category_page(slug: str) -> str:
    # An index page, like every page that carries raw HTML links: its source and its output
    # then sit in the same folder, so the links mean the same to MkDocs (which leaves raw HTML
    # alone) and to Zensical (which resolves raw links from the source file).
    return f"problems/category/{slug}/index.md"


def write_problem_pages(ctx: SiteContext, out: SiteWriter) -> None:
    problems = ctx.kb.sorted_problems()
    out.text(INDEX, _index(ctx, problems))
    out.text(CATEGORIES_PAGE, _categories_overview(ctx, problems))
    out.text(RECENT_PAGE, _recent(ctx, problems))
    out.text(STATUSES_PAGE, _statuses_page(ctx, problems))
    for slug, category in ctx.kb.categories.items():
        members = [p for p in problems if p.category == slug]
        out.text(category_page(slug), _category(ctx, category, members))
    for problem in problems:
        out.text(problem_page(problem), _problem(ctx, problem))


SPREADSHEET_TITLE = "the companion spreadsheet's mark; the source's own mark is not known"


def difficulty_cell(p: Problem) -> str:
    """The difficulty as a table shows it: the spreadsheet's mark is labelled as such."""
    if p.difficulty_from_spreadsheet:
        return (f'{esc(p.shown_difficulty)} <span class="mikb-sheet" title="{esc(SPREADSHEET_TITLE)}">'
                "(spreadsheet)</span>")
    return esc(p.difficulty)


def _difficulties(problems: list[Problem]) -> list[str]:
    present = {p.shown_difficulty for p in problems}
    return [d for d in DIFFICULTY_ORDER if d in present] + sorted(present - set(DIFFICULTY_ORDER))


def problem_table(ctx: SiteContext, page: str, problems: list[Problem], *, table_id: str, show_category: bool = True) -> str:
    """The filterable table: plain HTML rows carrying data-* attributes that mikb.js filters
    in the browser, so filtering needs no server and works on a static host."""
    cats = ctx.kb.categories
    tags = sorted({t for p in problems for t in p.tags})

    def options(values: list[tuple[str, str]], everything: str) -> str:
        return f'<option value="">{esc(everything)}</option>' + "".join(
            f'<option value="{esc(v)}">{esc(label)}</option>' for v, label in values)

    difficulty_letters = [(d, d) for d in ("A", "B", "C", "D")] + [("unknown", "unknown")]
    controls = [
        f'<div class="mikb-filters" data-table="{table_id}">',
        '<input type="search" data-filter="text" placeholder="Search titles, summaries, tags" aria-label="Search problems">',
    ]
    lists = ctx.kb.lists
    if show_category and len({ctx.kb.list_of(p) for p in problems}) > 1:
        controls.append(f'<select data-filter="list" aria-label="Source list">{options([(s, li.name) for s, li in lists.items()], "All lists")}</select>')
    if show_category:
        controls.append(f'<select data-filter="category" aria-label="Category">{options([(s, c.name) for s, c in cats.items()], "All categories")}</select>')
    controls += [
        # A letter matches every range that includes it: B finds A-B, B, B-C and B-D.
        f'<select data-filter="difficulty" aria-label="Difficulty">{options(difficulty_letters, "Any difficulty")}</select>',
        f'<select data-filter="status" aria-label="Status">{options(list(STATUS_LABELS.items()), "Any status")}</select>',
        f'<select data-filter="tags" aria-label="Tag">{options([(t, t) for t in tags], "Any tag")}</select>',
        '<label class="mikb-check"><input type="checkbox" data-filter="star" value="1"> ★ starred</label>',
        '<label class="mikb-check"><input type="checkbox" data-filter="circuit" value="1"> has a circuit</label>',
        '<button type="button" class="mikb-clear" data-clear>Clear filters</button>',
        '<span class="mikb-count" aria-live="polite"></span>',
        "</div>",
    ]
    sortable = [("number", "#"), ("title", "Problem")] + ([("category", "Category")] if show_category else []) + [
        ("difficulty", "Difficulty"), ("status", "Status")]
    head = "".join(f'<th aria-sort="none"><button type="button" data-sort="{key}">{label}</button></th>' for key, label in sortable)
    rows = []
    for p in problems:
        words = " ".join([p.title, p.summary, p.subcategory or "", " ".join(p.tags)]).lower()
        category_name = cats[p.category].name if p.category in cats else p.category
        star = ' <span class="mikb-star" title="starred by the source">★</span>' if p.priority == "starred" else ""
        has_circuit = bool(incoming(ctx.graph, node_id("problem", p.id), "addresses", "circuit"))
        number = ctx.problem_number(p)
        rows.append(
            f'<tr data-category="{esc(p.category)}" data-list="{esc(ctx.kb.list_of(p) or "")}" '
            f'data-difficulty="{esc(p.shown_difficulty)}" data-status="{esc(p.status)}" '
            f'data-tags="{esc(" ".join(p.tags))}" data-text="{esc(words)}" data-star="{1 if p.priority == "starred" else ""}" '
            f'data-circuit="{1 if has_circuit else ""}" data-sort-number="{esc(_number_sort_key(number))}" '
            f'data-sort-title="{esc(p.title.lower())}" data-sort-category="{esc(category_name.lower())}" '
            f'data-sort-difficulty="{esc(_difficulty_sort_key(p.shown_difficulty))}" '
            f'data-sort-status="{list(STATUS_LABELS).index(p.status) if p.status in STATUS_LABELS else 9}">'
            f"<td>{esc(number)}</td>"
            f'<td><a href="{esc(rel_url(page, problem_page(p)))}">{esc(p.title)}</a>{star}</td>'
            + (f'<td><a href="{esc(rel_url(page, category_page(p.category)))}">{esc(category_name)}</a></td>' if show_category else "")
            + f"<td>{difficulty_cell(p)}</td><td>{status_badge(p.status)}</td></tr>"
        )
    rows.append(f'<tr class="mikb-empty" hidden><td colspan="{len(sortable)}">No problem matches these filters. '
                '<button type="button" data-clear>Clear filters</button></td></tr>')
    table = (f'<div class="mikb-table-wrap"><table class="mikb-problems" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>'
             + "\n".join(rows) + "</tbody></table></div>")
    return "\n".join(controls) + "\n\n" + table + "\n"


def status_banner(ctx: SiteContext, page: str, p: Problem) -> str:
    """The problem's standing at a glance: its status, since when, and the evidence that set it
    (the last entry of its status history), linked to the definition of each status. Written
    as a Markdown paragraph with attribute lists so both MkDocs and Zensical resolve its links."""
    last = p.status_history[-1]
    evidence = link(last.evidence, last.evidence) if last.evidence_is_url else ctx.paper_link(page, last.evidence)
    since = "posed" if len(p.status_history) == 1 else "since"
    label = esc(STATUS_LABELS.get(p.status, p.status))
    note = f' <span class="mikb-banner-note">{inline(last.note)}</span>' if last.note else ""
    return (f"[{label}]({rel_link(page, STATUSES_PAGE)}){{ .mikb-banner-status }} {since} {esc(last.date)} · "
            f"evidence: {evidence}{note}\n{{ .mikb-banner .mikb-banner-{p.status} }}\n")


def facts_table(facts: list[tuple[str, str]]) -> str:
    """Label/value rows as a Markdown table whose first fact is the header row (an empty
    header row would sit above the table otherwise)."""
    (first_key, first_value), *rest = facts
    rows = [f"| {first_key} | {cell(first_value)} |", "|---|---|"] + [f"| {k} | {cell(v)} |" for k, v in rest]
    return '<div class="mikb-facts" markdown>\n\n' + "\n".join(rows) + "\n\n</div>\n"


def _statuses_page(ctx: SiteContext, problems: list[Problem]) -> str:
    counts = Counter(p.status for p in problems)
    lines = [front_matter(title="What the statuses mean"), "# What the statuses mean\n",
             "Every problem carries a dated status history; each change names the work it rests on and says in one "
             "sentence what that work showed. The current status is the last entry.\n",
             "| Status | Problems | Use it when |", "|---|---|---|"]
    for status, meaning in STATUS_MEANINGS.items():
        lines.append(f"| {status_badge(status)} | [{counts.get(status, 0)}](index.md?status={status}) | {meaning} |")
    lines.append("\nBe conservative: a paper that makes progress moves a problem to *in progress* or *partially "
                 "solved*; *solved* needs a work that answers the question as it was posed. See "
                 "[how to contribute](../contributing.md) for how to record a change.\n")
    return "\n".join(lines)


def _number_sort_key(number: str) -> str:
    """Zero-padded parts, so that a plain string sort orders 6.7 before 6.52 and 2.25 before 2.25b."""
    if not number:
        return "~"
    parts = re.findall(r"\d+|[a-z]+", number.lower())
    return ".".join(p.zfill(5) if p.isdigit() else p for p in parts)


def _difficulty_sort_key(difficulty: str) -> str:
    return "~" if difficulty == "unknown" else difficulty


def _index(ctx: SiteContext, problems: list[Problem]) -> str:
    counts = Counter(p.status for p in problems)
    summary = ", ".join(f"{counts.get(s, 0)} {label}" for s, label in STATUS_LABELS.items())
    return (
        front_matter(title="Problems", hide=["toc"])
        + "# Problems\n\n"
        + f"{len(problems)} problems ({summary}). Filter by category, difficulty, status, tag or words; "
        + f"the filters are kept in the address bar, so a filtered list can be shared. [Browse by category]({'categories.md'}); "
        + "[recently addressed](recent.md): which problems moved, when, and by which papers; "
        + "[what the statuses mean](statuses.md).\n\n"
        + "Difficulty follows the source's marks (A easiest to D hardest, ranges such as B-C); "
        + "where only the companion spreadsheet's mark is known it is shown and filtered on, labelled *(spreadsheet)*; "
        + "`unknown` where neither could be recovered. ★ marks problems the source starred.\n\n"
        + problem_table(ctx, INDEX, problems, table_id="mikb-problem-table")
    )


def list_groups(ctx: SiteContext) -> list[tuple[object | None, list]]:
    """Categories grouped by their source list, lists in registry order (categories with no
    list, or an unknown one, come last under no heading)."""
    groups: list[tuple[object | None, list]] = [(li, []) for li in ctx.kb.lists.values()]
    loose: list = []
    for category in ctx.kb.categories.values():
        for li, members in groups:
            if li is not None and category.list == li.slug:
                members.append(category)
                break
        else:
            loose.append(category)
    if loose:
        groups.append((None, loose))
    return [(li, cats) for li, cats in groups if cats]


def _categories_overview(ctx: SiteContext, problems: list[Problem]) -> str:
    lines = [front_matter(title="Problem categories"), "# Problem categories\n"]
    groups = list_groups(ctx)
    level = "###" if len(groups) > 1 else "##"
    for source_list, categories in groups:
        if len(groups) > 1:
            lines.append(f"## {esc(source_list.name) if source_list else 'Other categories'}\n")
            if source_list is not None:
                lines.append(f"Posed in {ctx.paper_link(CATEGORIES_PAGE, source_list.source)}. "
                             + (block(source_list.description) if source_list.description else "") + "\n")
        for category in categories:
            members = [p for p in problems if p.category == category.slug]
            counts = Counter(p.status for p in members)
            progress = ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in counts.items() if s != "open")
            number = f"{category.number}. " if category.number not in (None, "") else ""
            lines.append(f"{level} [{esc(number + category.name)}]({rel_link(CATEGORIES_PAGE, category_page(category.slug))})\n")
            lines.append(block(category.description) + "\n")
            lines.append(f"{len(members)} problems" + (f"; {progress}" if progress else "") + ".\n")
    return "\n".join(lines)


def _category(ctx: SiteContext, category, members: list[Problem]) -> str:
    page = category_page(category.slug)
    source = ""
    if category.source:
        source = f"Source: {ctx.paper_link(page, category.source)}.\n\n"
    sub_counts = Counter(p.subcategory or "Other" for p in members)
    subs = " · ".join(f"{esc(name)} ({n})" for name, n in sub_counts.items())
    return (
        front_matter(title=category.name, hide=["toc"])
        + f"# {esc(category.name)}\n\n{block(category.description)}\n\n{source}"
        + f"{len(members)} problems. Sub-topics: {subs}.\n\n"
        + problem_table(ctx, page, members, table_id="mikb-category-table", show_category=False)
    )


def status_changes(p: Problem) -> list:
    """The moves after a problem was posed (every history entry but the first)."""
    return list(p.status_history[1:])


def _recent(ctx: SiteContext, problems: list[Problem]) -> str:
    """Per source list and per category: which problems moved, when, and on which papers."""
    page = RECENT_PAGE
    lines = [front_matter(title="Recently addressed"),
             "# Recently addressed\n",
             "Every status change recorded after a problem was posed, newest first, with the work it rests on. "
             "A change records what a paper showed about the question as posed; `solved` is used only when a paper "
             "answers it as asked.\n"]
    solved = sorted(((ch, p) for p in problems for ch in status_changes(p) if ch.status == "solved"),
                    key=lambda item: (item[0].date, item[1].sort_key), reverse=True)
    lines.append("## Recently solved\n")
    if solved:
        lines.append("| Date | Problem | Work | What it showed |\n|---|---|---|---|")
        for change, p in solved:
            evidence = link(change.evidence, change.evidence) if change.evidence_is_url else ctx.paper_link(page, change.evidence)
            number = ctx.problem_number(p)
            lines.append(f"| {esc(change.date)} | [{esc((number + ' ' if number else '') + p.title)}]({rel_link_problem(p)}) "
                         f"| {cell(evidence)} | {inline(change.note or '')} |")
        lines.append("")
    else:
        lines.append("No problem is recorded as solved yet.\n")
    for source_list, categories in list_groups(ctx):
        slugs = {c.slug for c in categories}
        members = [p for p in problems if p.category in slugs]
        moved = [p for p in members if status_changes(p)]
        papers = {ch.evidence for p in members for ch in status_changes(p)}
        still_open = sum(1 for p in members if p.status == "open")
        title = source_list.name if source_list else "Other categories"
        lines.append(f"## {esc(title)}\n")
        lines.append(f"{len(members)} problems: {len(moved)} moved ({sum(len(status_changes(p)) for p in members)} "
                     f"status changes resting on {len(papers)} works), {still_open} still open.\n")
        quiet = [c for c in categories if not any(status_changes(p) for p in members if p.category == c.slug)]
        if quiet:
            lines.append("No status change recorded yet in: " + ", ".join(
                f"[{esc(c.name)}]({rel_link(page, category_page(c.slug))})" for c in quiet) + ".\n")
        for category in categories:
            changes = sorted(((ch, p) for p in members if p.category == category.slug for ch in status_changes(p)),
                             key=lambda item: (item[0].date, item[1].sort_key), reverse=True)
            if not changes:
                continue
            lines.append(f"### {esc(category.name)}\n")
            lines.append("| Date | Problem | Now | Work | What it showed |\n|---|---|---|---|---|")
            for change, p in changes:
                evidence = (link(change.evidence, change.evidence) if change.evidence_is_url
                            else ctx.paper_link(page, change.evidence))
                number = ctx.problem_number(p)
                label = f"{number} {p.title}" if number else p.title
                lines.append(f"| {esc(change.date)} | [{esc(label)}]({rel_link_problem(p)}) | {status_badge(change.status)} "
                             f"| {cell(evidence)} | {inline(change.note or '')} |")
            lines.append("")
    return "\n".join(lines)


def rel_link_problem(p: Problem) -> str:
    return f"{p.id}.md"


def _source_label(ctx: SiteContext, p: Problem) -> str:
    paper = ctx.kb.papers.get(p.source["paper"])
    return "original post" if paper is None or paper.kind in ("post", "sequence") else "the paper"


def _other_list(ctx: SiteContext, p: Problem, node: str) -> bool:
    other = ctx.kb.problems.get(node.partition(":")[2])
    return other is not None and ctx.kb.list_of(other) is not None and ctx.kb.list_of(other) != ctx.kb.list_of(p)


def _problem(ctx: SiteContext, p: Problem) -> str:
    page = problem_page(p)
    me = node_id("problem", p.id)
    number = ctx.problem_number(p)
    cat = ctx.kb.categories.get(p.category)
    cat_link = f"[{esc(cat.name)}]({rel_link(page, category_page(p.category))})" if cat else esc(p.category)
    facts = [
        ("Status", status_badge(p.status)),
        ("Category", cat_link + (f" › {esc(p.subcategory)}" if p.subcategory else "")),
        ("Difficulty", (code(p.shown_difficulty) + f" ({esc(SPREADSHEET_TITLE)})" if p.difficulty_from_spreadsheet
                        else code(p.difficulty)) + (" ★ (starred by the source)" if p.priority == "starred" else "")),
        ("Posed in", ctx.paper_link(page, p.source["paper"])
         + (f", {esc(p.source['where'])}" if p.source.get("where") else "")
         + (f" — {link(p.source['url'], _source_label(ctx, p))}" if p.source.get("url") else "")),
    ]
    my_list = ctx.kb.lists.get(ctx.kb.list_of(p) or "")
    if my_list is not None and len(ctx.kb.lists) > 1:
        facts.insert(1, ("List", esc(my_list.name)))
    if p.tags:
        facts.append(("Tags", " ".join(tag_link("../tags.md", t) for t in p.tags)))
    lines = [
        front_matter(title=f"{number + ' ' if number else ''}{p.title}", tags=p.tags, mikb_source=ctx.kb.rel(p.doc.path)),
        f"# {esc(number + ' · ') if number else ''}{esc(p.title)}\n",
        status_banner(ctx, page, p),
        # The summary comes before the metadata: search results show a page's first text.
        block(p.summary) + "\n",
        facts_table(facts),
    ]
    if p.notes:
        lines.append(admonition("note", "About the source", block(p.notes)))
    lines.append("## Status history\n")
    lines.append("| Date | Status | Evidence | Note |\n|---|---|---|---|")
    for change in p.status_history:
        evidence = link(change.evidence, change.evidence) if change.evidence_is_url else ctx.paper_link(page, change.evidence)
        lines.append(f"| {esc(change.date)} | {status_badge(change.status)} | {cell(evidence)} | {inline(change.note or '')} |")
    lines.append("")
    circuits = incoming(ctx.graph, me, "addresses", "circuit")
    related = related_problems(ctx.graph, me)
    overlaps = [r for r in related if _other_list(ctx, p, r)]
    related = [r for r in related if r not in overlaps]
    lines.append("## Addressed by\n")
    lines.append("\n".join(f"- {ctx.link(page, c)}" for c in circuits) + "\n" if circuits else "No circuit in the zoo addresses this problem yet.\n")
    if overlaps:
        lines.append("## Overlaps with the other list\n")
        lines.append("Problems of another source list that ask the same or an overlapping question:\n")
        for r in overlaps:
            other = ctx.kb.problems[r.partition(":")[2]]
            other_list = ctx.kb.lists.get(ctx.kb.list_of(other) or "")
            where = f" ({esc(other_list.name)})" if other_list else ""
            lines.append(f"- {ctx.link(page, r)}{where} {status_badge(other.status)}")
        lines.append("")
    if related:
        lines.append("## Related problems\n")
        lines.extend(f"- {ctx.link(page, r)} {status_badge(ctx.graph.nodes[r]['status'])}" for r in related)
        lines.append("")
    refs = list(dict.fromkeys([*p.references, p.source["paper"]]))
    lines.append("## References\n")
    for key in refs:
        paper = ctx.kb.papers.get(key)
        title = f" — <em>{esc(paper.title)}</em>" if paper else ""
        lines.append(f"- {ctx.paper_link(page, key)}{title}")
    lines.append("")
    lines.append(ctx.edit_link(ctx.kb.rel(p.doc.path)) + "\n")
    return "\n".join(lines)
