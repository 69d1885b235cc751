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
