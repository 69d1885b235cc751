"""A copy of the repository's mkdocs.yml that builds another content folder.

Tests and benchmarks build fixture or scratch copies of the content with the real site
configuration; the copy must point at the repository's hook by absolute path and drop the
`watch:` list (its folders exist only in the repository).
"""

from __future__ import annotations

from pathlib import Path

HOOK = "build_tools/mkdocs_hooks.py"


def write_portable_config(repo: Path, dest_root: Path) -> Path:
    lines, skipping = [], False
    for line in (repo / "mkdocs.yml").read_text().splitlines():
        if line.startswith("watch:"):
            skipping = True
            continue
        if skipping and (line.startswith("  ") or not line.strip()):
            continue
        skipping = False
        lines.append(line.replace(HOOK, str(repo / HOOK)))
    config = dest_root / "mkdocs.yml"
    config.write_text("\n".join(lines) + "\n")
    return config
