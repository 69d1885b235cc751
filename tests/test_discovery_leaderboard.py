"""The leaderboard gathers recorded rows and averages them; it computes nothing else."""

from __future__ import annotations

import json

from mikb.compiled.leaderboard import collect, markdown, summary


def _row(model, method, auc):
    return {"model": model, "ablation": "zero", "method": method, "auc": auc, "auc_active": auc, "cpr": 0.5,
            "cmd": 0.25, "wall_s": 0.1, "peak_rss_mib": 1.0, "flags": {}}


def test_collect_and_summary(tmp_path):
    base = tmp_path / "circuits_zoo" / "compiled-rasp" / "results"
    for model, auc in (("tracr-a", 1.0), ("tracr-b", 0.5)):
        (base / model).mkdir(parents=True)
        (base / model / "leaderboard.json").write_text(json.dumps([_row(model, "ACDC", auc)]))
    (base / "tracr-a.quick").mkdir()
    (base / "tracr-a.quick" / "leaderboard.json").write_text(json.dumps([_row("tracr-a", "ACDC", 0.0)]))
    rows = collect(tmp_path)
    assert [r["model"] for r in rows] == ["tracr-a", "tracr-b"]
    (s,) = summary(rows)
    assert s["models"] == 2 and s["mean_auc"] == 0.75
    assert "| tracr-b | zero | ACDC | 0.500 |" in markdown(rows)
