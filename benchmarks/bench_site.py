"""Site build speed: a clean `mikb build` against `mkdocs build` over the same Markdown alone.

Both run in this process, interleaved, on a copy of the repository's content:
- peer: MkDocs building the already generated site_src/ (the hook skipped);
- mikb: generating site_src/ from the entries from scratch, then the same MkDocs build.
Target: mikb <= 1.5x peer. Also checks that a rebuild with nothing changed rewrites no page
and no figure. Prints medians and the ratio.

    python benchmarks/bench_site.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mkdocs.commands.build import build
from mkdocs.config import load_config

from mikb.site.generate import generate_site
from mikb.site.portable_config import write_portable_config

REPO = Path(__file__).resolve().parents[1]


def _copy_repo(dest: Path) -> Path:
    for name in ("problems", "circuits_zoo", "literature", "docs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns(".staging-*", ".old-*"))
    for name in ("CONTRIBUTING.md",):
        if (REPO / name).exists():
            shutil.copyfile(REPO / name, dest / name)
    write_portable_config(REPO, dest)
    (dest / "site_src").mkdir()
    return dest


def _mkdocs(root: Path) -> float:
    os.environ["MIKB_PAGES_GENERATED"] = "1"
    t0 = time.perf_counter()
    build(load_config(str(root / "mkdocs.yml")))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("mkdocs").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy_repo(Path(tmp))
        generate_site(root)
        peer, ours = [], []
        for _ in range(args.repeats):
            peer.append(_mkdocs(root))
            shutil.rmtree(root / "site_src")
            t0 = time.perf_counter()
            report = generate_site(root)
            gen = time.perf_counter() - t0
            ours.append(gen + _mkdocs(root))
        again = generate_site(root)
        figures = [w for w in again.written if w.endswith((".svg", ".png", ".json"))]
        p, o = statistics.median(peer), statistics.median(ours)
        print(f"pages generated from entries: {len(report.written)} files")
        print(f"mkdocs build over generated Markdown (peer): median {p:.2f} s  runs {[round(x, 2) for x in peer]}")
        print(f"clean mikb build (generate + mkdocs):      median {o:.2f} s  runs {[round(x, 2) for x in ours]}")
        print(f"ratio mikb / peer: {o / p:.2f}x (target <= 1.5x)")
        print(f"rebuild with nothing changed: {len(again.written)} files rewritten ({len(figures)} figures/data), "
              f"{again.unchanged} unchanged")


if __name__ == "__main__":
    main()
