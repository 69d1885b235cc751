"""Wall time and peak memory of the trained-here reproductions on this machine.

Runs each script through the real runner on a scratch copy of its entry (committed results
are untouched) and prints wall time and the run's peak resident memory (measured inside the
run's own process). Default: the --quick runs CI uses; --full: the full runs whose results
are committed (induction heads about 2 minutes, grokking p=113 about 15 minutes on 2 cores).

    python benchmarks/bench_reproductions.py [--full]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from mikb.loader import load_knowledge_base
from mikb.reproduce.runner import reproduce

REPO = Path(__file__).resolve().parents[1]
RUNS = [("induction-heads", "attn-only-2l"), ("modular-addition-grokking", "grokking-1l-p113")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "circuits_zoo").mkdir()
        shutil.copyfile(REPO / "circuits_zoo/models.yaml", root / "circuits_zoo/models.yaml")
        for circuit, _ in RUNS:
            shutil.copytree(REPO / "circuits_zoo" / circuit, root / "circuits_zoo" / circuit,
                            ignore=shutil.ignore_patterns("results"))
        kb = load_knowledge_base(root)
        print(f"{'circuit':28} {'mode':6} {'wall s':>8} {'peak MiB':>9}  status")
        for circuit, model in RUNS:
            outcome = reproduce(kb, circuit, model, quick=not args.full, show_progress=False)
            prov = {}
            results = outcome.folder / "results.json"  # results/<model>.quick/ for quick runs
            if results.is_file():
                prov = json.loads(results.read_text())["provenance"]
            print(f"{circuit:28} {'full' if args.full else 'quick':6} {outcome.wall_time_s:8.1f} "
                  f"{prov.get('peak_rss_mb') or float('nan'):9.0f}  {outcome.status}")


if __name__ == "__main__":
    main()
