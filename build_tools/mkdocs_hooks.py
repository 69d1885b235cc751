"""Thin MkDocs hook: generate the site source from the entries before each build.

All logic lives in :mod:`mikb.site.generate`; this file only adapts it to MkDocs' events, so
moving to another generator means replacing these few lines, not the page code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mikb.site.context import SiteOptions, is_plain_repo_path
from mikb.site.generate import InvalidEntries, generate_site

log = logging.getLogger("mkdocs.plugins.mikb")
SKIP_ENV = "MIKB_PAGES_GENERATED"


def on_pre_build(config) -> None:  # noqa: ANN001 - MkDocs passes its config object
    if os.environ.get(SKIP_ENV) == "1":  # `mikb build` generated the pages just before
        return
    root = Path(config["config_file_path"]).resolve().parent
    options = SiteOptions(repo_url=config.extra.get("mikb_repo"), branch=config.extra.get("mikb_branch", "main"),
                          site_name=config.get("site_name", "mikb"), site_url=config.get("site_url"))
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
    """Point Material's edit button at the YAML an entry was generated from, or at the
    hand-written page in docs/; generated index pages have no source and get no button."""
    repo = config.extra.get("mikb_repo")
    if not repo:
        return markdown
    branch = config.extra.get("mikb_branch", "main")
    root = Path(config["config_file_path"]).resolve().parent
    source = page.meta.get("mikb_source")
    if not source and (root / "docs" / page.file.src_uri).is_file():
        source = f"docs/{page.file.src_uri}"
    # The theme prints edit_url into an href unescaped: only plain repository paths qualify.
    ok = bool(source) and isinstance(source, str) and is_plain_repo_path(source)
    page.edit_url = f"{repo.rstrip('/')}/edit/{branch}/{source}" if ok else None
    return markdown
