"""The data of a circuit-discovery leaderboard, gathered from committed results.

Every run of ``circuits_zoo/compiled-rasp/reproduce.py`` writes ``leaderboard.json`` beside
its ``results.json``: one row per (ablation, method) with ROC AUC against the compiled ground
truth (and against the ground-truth edges the ablation can see, ``auc_active``), CPR and CMD
over MIB's budgets, wall time, peak memory and the flags that produced it.
:func:`collect` reads every model's rows, :func:`summary` averages them per (ablation,
method) over models, and ``python -m mikb.compiled.leaderboard`` prints both as Markdown.
Nothing here computes a number: it only gathers what the runs recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import mean
from typing import Any

CIRCUIT = "compiled-rasp"
FIELDS = ("auc", "auc_active", "cpr", "cmd", "wall_s", "peak_rss_mib")


def collect(root: Path, circuit: str = CIRCUIT) -> list[dict[str, Any]]:
    """All rows of all full (non-quick) runs, sorted by model, ablation, method."""
    rows: list[dict[str, Any]] = []
    results = root / "circuits_zoo" / circuit / "results"
    for path in sorted(results.glob("*/leaderboard.json")):
        if path.parent.name.endswith(".quick"):
            continue
        rows.extend(json.loads(path.read_text()))
    return sorted(rows, key=lambda r: (r["model"], r["ablation"], r["method"]))


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (ablation, method): the mean of each field over models, and how many models."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["ablation"], r["method"]), []).append(r)
    return [{"ablation": a, "method": m, "models": len(rs),
             **{f"mean_{f}": _mean([r[f] for r in rs]) for f in FIELDS}}
            for (a, m), rs in sorted(groups.items())]


def _mean(values: list[float | None]) -> float | None:
    """Mean over models, or None when any model could not measure it (e.g. memory)."""
    return None if any(v is None for v in values) else mean(values)  # type: ignore[arg-type]


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | ablation | method | ROC AUC | AUC (active) | CPR | CMD | wall (s) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ablation']} | {r['method']} | {r['auc']:.3f} | "
                     f"{r['auc_active']:.3f} | "
                     f"{r['cpr']:.3f} | {r['cmd']:.3f} | {r['wall_s']:.3f} | {_num(r['peak_rss_mib'], 1)} |")
    lines += ["", "| ablation | method | models | mean AUC | mean AUC (active) | mean CPR | mean CMD |",
              "|---|---|---|---|---|---|---|"]
    for s in summary(rows):
        lines.append(f"| {s['ablation']} | {s['method']} | {s['models']} | {s['mean_auc']:.3f} | "
                     f"{s['mean_auc_active']:.3f} | "
                     f"{s['mean_cpr']:.3f} | {s['mean_cmd']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    root = Path(args[0]) if args else Path.cwd()
    sys.stdout.write(markdown(collect(root)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
