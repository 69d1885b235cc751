"""A fixture repository whose every free-text field is an attack, for the site-safety tests.

Each payload either calls ``alert`` (a dialog the browser test listens for) or sets
``window.__pwned``; results files try to publish a secret file that lies outside the repo.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

SECRET_MARKER = "MIKB-SECRET-d41d8cd98f00b204"

PAYLOADS = [
    "<script>window.__pwned = 1; alert('script')</script>",
    '<img src=x onerror="window.__pwned = 2; alert(\'img\')">',
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "<style>body { display: none }</style>",
    "<form action=\"javascript:alert('form')\"><button>send</button></form>",
    "[inline](javascript:alert('inline-link'))",
    "[reference][r]\n\n[r]: javascript:alert('reference-link')",
    "<javascript:alert('autolink')>",
    "text {: onclick=\"alert('attr-list')\" }",
    "</title><script>alert('title')</script>",
    "```\n</code></pre><script>alert('fence')</script>\n```",
    "<svg onload=\"alert('svg')\"></svg>",
    "<a href=\"&#106;avascript:alert('entity')\">x</a>",
    "\" onmouseover=\"alert('attribute')\" x=\"",
    "![img](javascript:alert('image'))",
]


def attack(tag: str) -> str:
    """All payloads in one value, labelled with the field they sit in."""
    return f"{tag}: " + " ".join(PAYLOADS)


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000))


def make_hostile_repo(fixtures: Path, target: Path) -> Path:
    """Copy the fixture repo to ``target/kb`` and poison it; a secret file sits beside it."""
    root = target / "kb"
    shutil.copytree(fixtures, root)
    secret = target / "secret.txt"
    secret.write_text(SECRET_MARKER + "\n")

    def problem(data: dict) -> None:
        data["title"] = attack("problem title")
        data["summary"] = attack("problem summary")
        data["notes"] = attack("problem notes")
        data["status_history"][-1]["note"] = attack("status note")
        data["status_history"][0]["evidence"] = "https://example.org/\"><script>alert('evidence')</script>"
        data["source"]["url"] = "https://example.org/\" onmouseover=\"alert('source-url')"
        data["subcategory"] = attack("subcategory")

    def categories(data: dict) -> None:
        data["categories"][0]["name"] = attack("category name")
        data["categories"][0]["description"] = attack("category description")

    def papers(data: dict) -> None:
        first = data["papers"][0]
        first["title"] = attack("paper title")
        first["authors"] = [attack("author"), "Ann Poe"]
        first["venue"] = attack("venue")
        first["summary"] = attack("paper summary")
        first["url"] = "https://example.org/\"><script>alert('paper-url')</script>"

    def models(data: dict) -> None:
        data["models"][0]["name"] = attack("model name")
        data["models"][0]["weights"] = attack("model weights")
        data["models"][0]["description"] = attack("model description")

    def circuit(data: dict) -> None:
        data["name"] = attack("circuit name")
        data["task"] = attack("circuit task")
        data["behaviour"] = attack("circuit behaviour")
        data["notes"] = attack("circuit notes")
        data["components"][0]["role"] = attack("component role")
        data["components"][0]["description"] = attack("component description")
        data["edges"][0]["description"] = attack("edge description")
        data["claims"][0]["statement"] = attack("claim statement")
        data["claims"][0]["unit"] = attack("unit")
        data["claims"][0]["reported"]["source"]["where"] = attack("where")

    _edit_yaml(root / "problems" / "fx-1.yaml", problem)
    _edit_yaml(root / "problems" / "_categories.yaml", categories)
    _edit_yaml(root / "literature" / "papers.yaml", papers)
    _edit_yaml(root / "circuits_zoo" / "models.yaml", models)
    _edit_yaml(root / "circuits_zoo" / "toy-copy" / "circuit.yaml", circuit)
    _write_hostile_results(root / "circuits_zoo" / "toy-copy" / "results" / "toy-2l", secret)
    os.symlink(secret, root / "docs" / "leak.md")
    os.symlink(secret, root / "CONTRIBUTING.md")
    return root


def _write_hostile_results(folder: Path, secret: Path) -> None:
    folder.mkdir(parents=True)
    os.symlink(secret, folder / "leak.svg")
    os.symlink(secret, folder / "leak.json")
    results = {
        "schema_version": 1, "circuit": "toy-copy", "model": "toy-2l", "status": "ok", "quick": False, "seed": 0,
        "params": {attack("param"): attack("param value")},
        "metrics": {"copy_score": 0.9, "prev_score": 0.7, attack("metric name"): attack("metric value")},
        "claims": [],
        "figures": [
            {"file": "../../../../../secret.txt", "caption": attack("caption 1"), "kind": "static"},
            {"file": str(secret), "caption": attack("caption 2"), "kind": "static"},
            {"file": "leak.svg", "caption": attack("caption 3"), "kind": "static"},
            {"file": "leak.json", "caption": attack("caption 4"), "kind": "interactive"},
        ],
        "notes": [attack("results note")],
        "provenance": {"model_id": attack("provenance model"), "weights_source": attack("weights source"),
                       "seed": attack("seed"), "packages": {attack("package"): attack("version")},
                       "device": attack("device"), "finished_at": "2020-01-01T00:00:00+00:00",
                       "git_commit": attack("commit")},
    }
    failure = {"status": "failed", "circuit": "toy-copy", "model": "toy-2l", "error": attack("failure error"),
               "log_tail": attack("log tail"), "finished_at": "2030-01-01T00:00:00+00:00"}
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    (folder / "failure.json").write_text(json.dumps(failure, indent=2))
    (folder / "log.txt").write_text(attack("log"))
