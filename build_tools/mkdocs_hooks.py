"""Thin MkDocs hook: generate the site source from the entries before each build.

All logic lives in :mod:`mikb.site.generate`; this file only adapts it to MkDocs' events, so
moving to another generator means replacing these few lines, not the page code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mikb.site.context import SiteOptions
from mikb.site.generate import InvalidEntries, generate_site

log = logging.getLogger("mkdocs.plugins.mikb")
SKIP_ENV = "MIKB_PAGES_GENERATED"


def on_pre_build(config) -> None:  # noqa: ANN001 - MkDocs passes its config object
    if os.environ.get(SKIP_ENV) == "1":  # `mikb build` generated the pages just before
        return
    root = Path(config["config_file_path"]).resolve().parent
    options = SiteOptions(repo_url=config.get("repo_url"), site_name=config.get("site_name", "mikb"))
    try:
        report = generate_site(root, Path(config["docs_dir"]), options)
    except InvalidEntries as exc:
        for diagnostic in exc.errors:
            log.error(diagnostic.format())
        raise SystemExit(f"mikb: {len(exc.errors)} error(s) in the entries; run `mikb check`") from None
    log.info("mikb: %d file(s) regenerated, %d unchanged, %d removed",
             len(report.written), report.unchanged, len(report.removed))
    for warning in report.check.warnings:
        log.info("mikb: %s", warning.format())


def on_page_markdown(markdown: str, page, config, **_: object) -> str:  # noqa: ANN001
    """Point Material's edit button at the entry's YAML instead of the generated page, and
    drop it on generated index pages, which have no source file to edit."""
    if not page.edit_url:
        return markdown
    source = page.meta.get("mikb_source")
    if os.environ.get(SKIP_ENV) == "1":  # `mikb build` generated the pages just before
        return
    root = Path(config["config_file_path"]).resolve().parent
    base = page.edit_url.split("/edit/", 1)[0]
    if source:
        page.edit_url = f"{base}/edit/main/{source}"
    elif not (root / "docs" / page.file.src_uri).is_file():
        page.edit_url = None
    return markdown
