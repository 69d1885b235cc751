"""Shared test helpers: a fresh copy of the fixture repository for every test that writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mikb.site.portable_config import write_portable_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_mkdocs_config(root: Path) -> Path:
    """The repo's own mkdocs.yml, pointed at the repo's hook and without its watch list."""
    return write_portable_config(REPO, root)


@pytest.fixture
def kb_root(tmp_path: Path) -> Path:
    """The fixture entries plus the repo's hand-written pages (the nav names them)."""
    root = tmp_path / "kb"
    shutil.copytree(FIXTURES / "kb", root)
    for page in (REPO / "docs").glob("*.md"):
        if not (root / "docs" / page.name).exists():
            shutil.copyfile(page, root / "docs" / page.name)
    return root


def run_mikb(root: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "mikb.cli", "--root", str(root), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def repo_site() -> Path:
    """The repository's own site, built once per session with the real CLI (strict).
    MIKB_E2E_SITE may name a prebuilt site instead, for iterating on browser tests."""
    prebuilt = os.environ.get("MIKB_E2E_SITE")
    if prebuilt:
        return Path(prebuilt)
    proc = subprocess.run([sys.executable, "-m", "mikb.cli", "--root", str(REPO), "build"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return REPO / "site"


def small_native_model(**overrides):
    """A small TL-native bridge (3 layers, 4 heads, LayerNorm) for fast correctness tests."""
    import torch
    import transformer_lens.model_bridge.sources  # noqa: F401 - registers boot_native
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(0)
    cfg = {"n_layers": 3, "n_heads": 4, "d_model": 64, "d_head": 16, "d_vocab": 50,
           "n_ctx": 32, "act_fn": "gelu", "normalization_type": "LN", "seed": 0}
    cfg.update(overrides)
    return TransformerBridge.boot_native(cfg).eval()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session: Playwright's sync API allows one driver
    per process, so every browser test module shares this one."""
    from browser_support import CHROMIUM, LAUNCH_ARGS, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def load_script(circuit_id: str):
    """A circuit's reproduction script as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"repro_{circuit_id.replace('-', '_')}", REPO / "circuits_zoo" / circuit_id / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(circuit_id: str, model_id: str, out_dir: Path):
    """Run a script's quick mode in-process, as the runner's child would, and return its context."""
    from mikb.reproduce import ReproContext

    module = load_script(circuit_id)
    ctx = ReproContext(circuit_id=circuit_id, model_id=model_id, seed=0, quick=True,
                       params={**module.SPEC.params, **module.SPEC.quick_params},
                       out_dir=out_dir, show_progress=False)
    module.run(ctx)
    return ctx


def quick_through_runner(tmp_root: Path, circuit_id: str, model_id: str) -> dict:
    """Run a circuit's --quick mode through the real runner (child process, provenance,
    publishing) on a scratch copy of its entry, and return the published results.json. The
    committed full results are never touched: quick results go to results/<model>.quick/."""
    import json
    import shutil

    from mikb.loader import load_knowledge_base
    from mikb.reproduce.runner import reproduce

    root = tmp_root / "repo"
    (root / "circuits_zoo").mkdir(parents=True)
    shutil.copyfile(REPO / "circuits_zoo/models.yaml", root / "circuits_zoo/models.yaml")
    shutil.copytree(REPO / "circuits_zoo" / circuit_id, root / "circuits_zoo" / circuit_id,
                    ignore=shutil.ignore_patterns("results"))
    outcome = reproduce(load_knowledge_base(root), circuit_id, model_id, quick=True, show_progress=False)
    assert outcome.status == "ok", outcome.message
    assert outcome.folder == root / "circuits_zoo" / circuit_id / "results" / f"{model_id}.quick"
    return json.loads((outcome.folder / "results.json").read_text())



def tl_attribution_scores(model, clean, corrupt, readout, granularity: str):
    """TransformerLens's attribution_patch scores, one example per call (its metric sees
    logits only), averaged over the batch: node ``[L, H]`` and q/k/v edges ``[L, H, L, H]``.
    The reference for mikb.methods.attribution in test_attribution and the families test."""
    import torch
    from transformer_lens.tools.analysis.attribution_patching import (
        EdgeAttributionConfig,
        attribution_patch,
    )

    from mikb.methods.fast_patching import LogitReadout

    cfg, batch = model.cfg, clean.shape[0]
    node = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    edges = {c: torch.zeros(cfg.n_layers, cfg.n_heads, cfg.n_layers, cfg.n_heads, dtype=torch.float64)
             for c in "qkv"}
    for b in range(batch):
        one = LogitReadout(readout.token_ids[b : b + 1], readout.fn)
        res = attribution_patch(model, clean[b : b + 1], corrupt[b : b + 1], one.as_tl_metric(),
                                EdgeAttributionConfig(granularity=granularity))
        for n, score in res.node_scores.items():
            if n.kind == "attn_head_out":
                node[n.layer, n.head] += score / batch
        for (wr, rd), score in res.edge_scores.items():
            if wr.kind == "attn_head_out" and rd.kind in ("q_input", "k_input", "v_input"):
                edges[rd.kind[0]][wr.layer, wr.head, rd.layer, rd.head] += score / batch
    return node.float(), {c: e.float() for c, e in edges.items()}
