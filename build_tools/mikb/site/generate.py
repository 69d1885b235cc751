"""Entries -> Markdown + assets: the one library step every site build goes through.

Called by `mikb build`/`mikb serve` and by the thin MkDocs hook; it knows nothing about
MkDocs' plugin API, so the generated folder could feed another generator (e.g. Zensical,
which reads the same mkdocs.yml). Hand-written pages from docs/ are copied in unchanged.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mikb.check import CheckResult, run_check
from mikb.diagnostics import Diagnostic
from mikb.export import export_entries
from mikb.graph import to_graphml, to_json
from mikb.site.circuits import write_circuit_pages
from mikb.site.context import SiteContext, SiteOptions
from mikb.site.feed import FEED, status_feed
from mikb.site.home import write_explore, write_home, write_tags
from mikb.site.methods import write_method_pages
from mikb.site.papers import write_model_pages, write_paper_pages
from mikb.site.problems import write_problem_pages
from mikb.site.writer import SiteWriter

ASSETS = ("mikb.js", "mikb.css", "graph.js", "edges.js")
HOME_INTRO_FILE = "_home.md"


class InvalidEntries(Exception):
    """The site is not generated from entries that fail `mikb check`."""

    def __init__(self, errors: list[Diagnostic]):
        self.errors = errors
        super().__init__("\n".join(d.format() for d in errors))


@dataclass
class GenerationReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    check: CheckResult | None = None


def generate_site(root: Path, out_dir: Path | None = None, options: SiteOptions | None = None, *,
                  require_valid: bool = True) -> GenerationReport:
    """Write the site source for the repository at ``root``; only changed files are written.

    ``require_valid=False`` generates pages even from entries `mikb check` rejects. Only the
    tests use it, to prove that escaping and sanitising hold on their own for hostile
    entries; every command refuses invalid entries."""
    check = run_check(root)
    if check.errors and require_valid:
        raise InvalidEntries(check.errors)
    kb, graph = check.kb, check.graph
    out = SiteWriter(out_dir or kb.layout.site_src_dir)
    ctx = SiteContext(kb, graph, options or SiteOptions())

    intro = ""
    docs = kb.layout.docs_dir
    if docs.is_dir():
        for path in hand_written_pages(docs):
            rel = path.relative_to(docs).as_posix()
            if rel == HOME_INTRO_FILE:
                intro = path.read_text()
                continue
            out.copy(rel, path)
    contributing = kb.root / "CONTRIBUTING.md"
    if is_plain_file(contributing) and not (docs / "contributing.md").is_file():
        out.copy("contributing.md", contributing)  # one source for GitHub and the site
    write_home(ctx, out, intro or "# mikb\n")
    write_problem_pages(ctx, out)
    write_circuit_pages(ctx, out)
    write_method_pages(ctx, out)
    write_paper_pages(ctx, out)
    write_model_pages(ctx, out)
    write_tags(ctx, out)
    write_explore(ctx, out)
    out.text(FEED, status_feed(ctx.kb, ctx.options.site_url, ctx.problem_number))
    _write_data(ctx, out)
    _write_assets(out)
    out.text(".gitkeep", "")  # the folder must exist before MkDocs validates its config
    removed = out.remove_stale()
    return GenerationReport(written=out.written, unchanged=out.unchanged, removed=removed, check=check)


def is_plain_file(path: Path) -> bool:
    """A regular file, not a symlink (which could point at any file of the build machine)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def hand_written_pages(docs: Path) -> list[Path]:
    """Files under docs/ that are published: regular files reached without any symlink."""
    found = []
    for current, dirs, files in os.walk(docs, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not (Path(current) / d).is_symlink())
        found += [Path(current) / name for name in sorted(files) if is_plain_file(Path(current) / name)]
    return sorted(found)


def _write_data(ctx: SiteContext, out: SiteWriter) -> None:
    out.text("data/entries.json", json.dumps(export_entries(ctx.kb), indent=1, sort_keys=True, default=str) + "\n")
    out.text("data/graph.json", json.dumps(to_json(ctx.graph), indent=1, sort_keys=True) + "\n")
    out.text("data/graph.graphml", to_graphml(ctx.graph))
    schemas = resources.files("mikb.schemas")
    for entry in sorted(schemas.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".schema.json"):
            out.bytes(f"schemas/{entry.name}", entry.read_bytes())


def _write_assets(out: SiteWriter) -> None:
    assets = resources.files("mikb.site").joinpath("assets")
    for name in ASSETS:
        out.bytes(f"assets/{name}", assets.joinpath(name).read_bytes())
    plotly_js = _plotly_bundle()
    if plotly_js is not None:
        out.copy("assets/vendor/plotly.min.js", plotly_js)


def _plotly_bundle() -> Path | None:
    """plotly.py ships plotly.js; the site serves that copy so interactive figures work offline."""
    try:
        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        return path if path.is_file() else None
    except ImportError:
        return None
