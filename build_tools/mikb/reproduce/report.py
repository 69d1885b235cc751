"""The README's reproduction table, generated from the committed results' provenance.

Why generated: a hand-copied timing drifts from the runs it describes. The table lists every
circuit's committed full-run results, with the device, wall time and peak memory its
provenance records and the claims judged against the current entry, and a test checks that
the README holds exactly this table. Run ``python -m mikb.reproduce.report README.md`` after
committing new results.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mikb.evidence import LABELS, evidence_of
from mikb.loader import KnowledgeBase, load_knowledge_base
from mikb.reproduce.claims import judge
from mikb.reproduce.results import load_model_results

START, END = "<!-- reproduction-table:start -->", "<!-- reproduction-table:end -->"


def reproduction_table(kb: KnowledgeBase) -> str:
    rows = ["| circuit | model | evidence | device | wall time | peak RSS | claims pass |",
            "|---|---|---|---|---|---|---|"]
    for circuit in sorted(kb.circuits.values(), key=lambda c: c.id):
        for model_id in circuit.models:
            found = load_model_results(circuit, model_id)
            if not found.results:
                continue
            prov = found.results.get("provenance", {})
            model = kb.models.get(model_id)
            verdicts = [judge(claim, model_id, found.metrics).verdict for claim in circuit.claims]
            judged = [v for v in verdicts if v != "n/a"]
            passed = sum(v == "pass" for v in judged)
            wall, peak = prov.get("wall_time_s"), prov.get("peak_rss_mb")
            rows.append(
                f"| `{circuit.id}` | `{model_id}` | {LABELS[evidence_of(model.kind if model else None)]} "
                f"| {prov.get('device', '?')} | {wall:,.0f} s | {peak:,.0f} MiB | {passed}/{len(judged)} |"
                if isinstance(wall, (int, float)) and isinstance(peak, (int, float)) else
                f"| `{circuit.id}` | `{model_id}` | {LABELS[evidence_of(model.kind if model else None)]} "
                f"| {prov.get('device', '?')} | not recorded | not recorded | {passed}/{len(judged)} |")
    return "\n".join(rows)


def replace_table(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def current_block(text: str) -> str:
    return text.partition(START)[2].partition(END)[0].strip()


def main(argv: list[str]) -> int:
    readme = Path(argv[0] if argv else "README.md")
    kb = load_knowledge_base(readme.resolve().parent)
    text = readme.read_text()
    if START not in text:
        print(f"{readme}: no {START} marker", file=sys.stderr)
        return 1
    readme.write_text(replace_table(text, reproduction_table(kb)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
