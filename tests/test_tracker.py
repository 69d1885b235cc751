"""The problem tracker's own fields: the spreadsheet's difficulty mark."""

from __future__ import annotations

from pathlib import Path

from mikb.site.generate import generate_site


def _set(root: Path, name: str, old: str, new: str) -> None:
    path = root / "problems" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_spreadsheet_difficulty_is_labelled_and_filtered_on(kb_root: Path) -> None:
    _set(kb_root, "fx-3.yaml", "difficulty: unknown\n", "difficulty: unknown\ndifficulty_spreadsheet: A\n")
    generate_site(kb_root)
    index = (kb_root / "site_src/problems/index.md").read_text()
    row = next(line for line in index.splitlines() if 'href="fx-3/"' in line)
    assert 'data-difficulty="A"' in row and "(spreadsheet)</span>" in row
    assert '<option value="A">A</option>' in index
    page = (kb_root / "site_src/problems/fx-3.md").read_text()
    facts = next(line for line in page.splitlines() if line.startswith("| Difficulty |"))
    assert "<code>A</code>" in facts and "companion spreadsheet" in facts


def test_source_mark_wins_over_the_spreadsheet(kb_root: Path) -> None:
    _set(kb_root, "fx-2.yaml", "difficulty: B-C\n", "difficulty: B-C\ndifficulty_spreadsheet: A\n")
    generate_site(kb_root)
    index = (kb_root / "site_src/problems/index.md").read_text()
    row = next(line for line in index.splitlines() if 'href="fx-2/"' in line)
    assert 'data-difficulty="B-C"' in row and "(spreadsheet)" not in row


LISTS = """lists:
  - slug: old-list
    name: Old list
    source: doe2022toys
    id_prefix: fx-
  - slug: new-list
    name: New list
    source: roe2023methods
"""


def _two_lists(root: Path) -> None:
    path = root / "problems/_categories.yaml"
    text = path.read_text().replace("    source: doe2022toys\n", "    source: doe2022toys\n    list: old-list\n")
    text = text.replace("    source: roe2023methods\n", "    source: roe2023methods\n    list: new-list\n")
    path.write_text(LISTS + text)


def test_lists_group_categories_and_show_cross_list_overlap(kb_root: Path) -> None:
    _two_lists(kb_root)
    _set(kb_root, "fx-3.yaml", "  paper: roe2023methods\n", "  paper: roe2023methods\n  where: Section 4.2\n")
    generate_site(kb_root)
    site = kb_root / "site_src/problems"
    # fx-3 (new list) declares fx-1 (old list) related: both pages show the overlap, not a plain relation
    for name, other in (("fx-1.md", "fx-3"), ("fx-3.md", "fx-1")):
        page = (site / name).read_text()
        overlap = page.split("## Overlaps with the other list", 1)
        assert len(overlap) == 2 and f"({other}.md)" in overlap[1].split("## ", 1)[0], name
    assert "Section 4.2" in (site / "fx-3.md").read_text()
    index = (site / "index.md").read_text()
    assert 'data-filter="list"' in index and 'data-list="new-list"' in index
    overview = (site / "categories.md").read_text()
    assert overview.index("## Old list") < overview.index("## New list")
    recent = (site / "recent.md").read_text()
    assert "## Old list" in recent and "### Toy models" in recent and "(fx-1.md)" in recent


def test_id_prefix_of_a_list_is_checked(kb_root: Path) -> None:
    from mikb.check import run_check

    _two_lists(kb_root)
    path = kb_root / "problems/_categories.yaml"
    path.write_text(path.read_text().replace("    id_prefix: fx-\n", "    id_prefix: cop-\n"))
    messages = [d.format() for d in run_check(kb_root).diagnostics]
    assert any("problems/fx-1.yaml:" in m and "should start with 'cop-'" in m for m in messages), messages


def test_section_numbers_sort_by_their_digits_then_letters() -> None:
    from mikb.entries import Problem

    def make(number: str) -> Problem:
        return Problem(id=f"x-{number}", title="t", category="c", difficulty="unknown", status="open",
                       status_history=[], summary="s", source={}, number=number)

    numbers = ["2.1.3a.1", "2.1.2c.2", "2.1.10", "2.1.2c.1", "2.1.2a.1", "1.2", "2.25b", "2.25"]
    ordered = [p.number for p in sorted(map(make, numbers), key=lambda p: p.sort_key)]
    assert ordered == ["1.2", "2.1.2a.1", "2.1.2c.1", "2.1.2c.2", "2.1.3a.1", "2.1.10", "2.25", "2.25b"]


def test_repository_cross_list_overlaps_are_declared_both_ways() -> None:
    """The tracker's own data: an overlap between two lists is stated on both problems."""
    from mikb.loader import load_knowledge_base

    kb = load_knowledge_base(Path(__file__).resolve().parents[1])
    one_way = [(p.id, other) for p in kb.problems.values() for other in p.related_problems
               if other in kb.problems and kb.list_of(kb.problems[other]) != kb.list_of(p)
               and p.id not in kb.problems[other].related_problems]
    assert one_way == []
