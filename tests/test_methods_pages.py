"""Methods pages: leaderboards gathered from published leaderboard.json files, ranked by AUC,
each row linked to its run; hostile method names are shown as text."""

from __future__ import annotations

import json
from pathlib import Path

from test_evidence_labels import _publish_results

from mikb.site.generate import generate_site


def _leaderboard(root: Path, rows: list[dict]) -> None:
    (root / "circuits_zoo/toy-copy/results/toy-2l/leaderboard.json").write_text(json.dumps(rows))


def test_leaderboard_ranks_methods_and_links_runs(kb_root: Path, tmp_path: Path) -> None:
    _publish_results(kb_root)
    _leaderboard(kb_root, [
        {"method": "EAP", "ablation": "zero", "auc": 0.8, "cpr": 0.5, "cmd": 0.4, "wall_s": 0.1, "peak_rss_mib": 3},
        {"method": "ACDC", "ablation": "zero", "auc": 0.95, "cpr": 0.7, "cmd": 0.2, "wall_s": 2.0, "peak_rss_mib": 5,
         "flags": {"ablation": "zero", "metric": "KL"}},
        {"method": "<script>alert(1)</script>", "ablation": "zero", "auc": float("nan")},
    ])
    out = tmp_path / "src"
    generate_site(kb_root, out)
    board = (out / "methods/tasks/toy-2l/index.md").read_text()
    ranked = [line.split("|")[2].strip() for line in board.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert ranked[0].startswith("[ACDC]") and ranked[1].startswith("[EAP]")
    assert "(../../../circuits/toy-copy/index.md)" in board
    assert "<script>" not in board and "&lt;script&gt;" in board
    index = (out / "methods/index.md").read_text()
    assert "| [ACDC](acdc/index.md) | zero | 1 | 0.950 | 0.700 | 0.200 |" in index
    acdc = (out / "methods/acdc/index.md").read_text()
    assert "Where it fails" in acdc and "metric: KL" in acdc
    circuit = (out / "circuits/toy-copy/index.md").read_text()
    assert "## Discovery methods that recover it" in circuit
    # columns in name order: the hostile method (no finite AUC), ACDC, EAP
    assert "| toy-2l | — | 0.950 | 0.800 | [leaderboard](../../methods/tasks/toy-2l/index.md) |" in circuit
    assert "<script>" not in circuit
