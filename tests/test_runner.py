"""`mikb reproduce`: caching, atomic publication, failures, provenance and determinism,
exercised with the fixture's real reproduction script in real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_mikb

from mikb.loader import load_knowledge_base
from mikb.reproduce.runner import ReproError, reproduce
from mikb.site.generate import generate_site

CIRCUIT = "toy-copy"
MODEL = "toy-2l"


def _results_dir(root: Path) -> Path:
    return root / "circuits_zoo" / CIRCUIT / "results" / MODEL


def _run(root: Path, **kwargs):
    return reproduce(load_knowledge_base(root), CIRCUIT, MODEL, show_progress=False, **kwargs)


def test_run_publishes_results_with_complete_provenance(kb_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    outcome = _run(kb_root)
    assert outcome.status == "ok", outcome.message
    results = json.loads((_results_dir(kb_root) / "results.json").read_text())
    prov = results["provenance"]
    for key in ("model_id", "model_kind", "weights_source", "seed", "script_sha256", "entry_run_sha256", "packages",
                "device", "wall_time_s", "started_at", "finished_at", "command", "cache_key", "git_commit"):
        assert key in prov, key
    assert prov["model_kind"] == "planted" and prov["weights_source"] == "planted by the fixture"
    assert {"torch", "transformer-lens", "python", "mikb"} <= set(prov["packages"])
    assert prov["thread_settings"]["OMP_NUM_THREADS"] == "1"  # a thread count can change a trajectory
    assert len(prov["script_sha256"]) == 64 and prov["command"] == "mikb reproduce toy-copy --model toy-2l"
    assert {c["id"]: c["verdict"] for c in results["claims"]} == {"copy-score": "pass", "prev-score": "pass"}
    assert results["figures"] == [{"file": "curve.svg", "caption": "A fixture curve", "kind": "static"}]
    assert (_results_dir(kb_root) / "curve.svg").is_file() and (_results_dir(kb_root) / "log.txt").is_file()


def test_unchanged_run_is_cached_and_changed_script_reruns(kb_root: Path) -> None:
    assert _run(kb_root, dry_run=True).status == "due"
    assert not _results_dir(kb_root).exists()  # a dry run writes nothing
    assert _run(kb_root).status == "ok"
    assert _run(kb_root).status == "cached"
    assert _run(kb_root, dry_run=True).status == "cached"
    assert _run(kb_root, force=True).status == "ok"
    script = kb_root / "circuits_zoo" / CIRCUIT / "reproduce.py"
    script.write_text(script.read_text() + "\n# a change\n")
    assert _run(kb_root, dry_run=True).status == "due"
    assert _run(kb_root).status == "ok"
    assert _run(kb_root, seed=1).status == "ok"  # another seed is another run


def test_same_seed_same_metrics_other_seed_differs(kb_root: Path) -> None:
    _run(kb_root)
    first = json.loads((_results_dir(kb_root) / "results.json").read_text())
    _run(kb_root, force=True)
    second = json.loads((_results_dir(kb_root) / "results.json").read_text())
    assert first["metrics"] == second["metrics"]
    assert (_results_dir(kb_root) / "curve.svg").read_bytes()  # written deterministically
    _run(kb_root, seed=3)
    third = json.loads((_results_dir(kb_root) / "results.json").read_text())
    assert third["metrics"] != first["metrics"]


def test_failed_run_keeps_previous_results_and_page_shows_failure(kb_root: Path, monkeypatch) -> None:
    assert _run(kb_root).status == "ok"
    before = (_results_dir(kb_root) / "results.json").read_bytes()
    monkeypatch.setenv("MIKB_FIXTURE_MODE", "crash")
    outcome = _run(kb_root, force=True)
    assert outcome.status == "failed" and "fixture crash requested" in outcome.message
    assert (_results_dir(kb_root) / "results.json").read_bytes() == before
    failure = json.loads((_results_dir(kb_root) / "failure.json").read_text())
    assert "ValueError" in failure["log_tail"]
    generate_site(kb_root)
    page = (kb_root / "site_src/circuits/toy-copy/index.md").read_text()
    assert "The latest run failed" in page and "fixture crash requested" in page
    assert "results below are from the last successful run" in page


def test_unavailable_model_is_not_run_with_a_command(kb_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIKB_FIXTURE_MODE", "unavailable")
    outcome = _run(kb_root)
    assert outcome.status == "unavailable"
    assert not (_results_dir(kb_root) / "results.json").exists()
    generate_site(kb_root)
    page = (kb_root / "site_src/circuits/toy-copy/index.md").read_text()
    assert "weights could not be obtained" in page and "mikb reproduce toy-copy --model toy-2l" in page
    proc = run_mikb(kb_root, "reproduce", CIRCUIT, "--no-progress", env={**os.environ, "MIKB_FIXTURE_MODE": "unavailable"})
    assert proc.returncode == 3 and "unavailable" in proc.stdout


def test_timeout_is_enforced(kb_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIKB_FIXTURE_MODE", "hang")
    t0 = time.monotonic()
    outcome = _run(kb_root, timeout_s=8)
    assert outcome.status == "failed" and "timed out" in outcome.message
    assert time.monotonic() - t0 < 60


def test_killed_run_leaves_old_results_intact(kb_root: Path) -> None:
    assert _run(kb_root).status == "ok"
    before = {p.name: p.read_bytes() for p in _results_dir(kb_root).iterdir()}
    env = {**os.environ, "MIKB_FIXTURE_MODE": "hang"}
    proc = subprocess.Popen([sys.executable, "-m", "mikb.cli", "--root", str(kb_root), "reproduce", CIRCUIT, "--force",
                             "--no-progress"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging_glob = lambda: list((kb_root / "circuits_zoo" / CIRCUIT / "results").glob(".staging-*"))  # noqa: E731
    deadline = time.monotonic() + 60
    while not staging_glob() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert staging_glob(), "the run never started"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    after = {p.name: p.read_bytes() for p in _results_dir(kb_root).iterdir()}
    assert after == before
    assert _run(kb_root, force=True).status == "ok"  # the next run cleans up the staging folder
    assert not staging_glob()


def test_stale_results_are_marked_on_the_page(kb_root: Path) -> None:
    _run(kb_root)
    entry = kb_root / "circuits_zoo" / CIRCUIT / "circuit.yaml"
    # Prose and claims are judged at page-build time against the committed metrics: not stale,
    # and a tightened claim is re-judged from the same run.
    entry.write_text(entry.read_text().replace("task: Copy the previous token.", "task: Copy the previous token again.")
                     .replace("      toy-2l: {min: 0.5}", "      toy-2l: {min: 0.99}")
                     .replace("    metric: prev_score\n", "    metric: prev_score\n    unit: (attention weight)\n"))
    generate_site(kb_root)
    page = (kb_root / "site_src/circuits/toy-copy/index.md").read_text()
    assert "Stale results" not in page
    assert "value ≥ 0.99 (attention weight)" in page and "mikb-state-fail" in page  # criterion with its unit
    assert reproduce(load_knowledge_base(kb_root), CIRCUIT, dry_run=True).status == "cached"
    # What decides the run (models, script, outputs) does make the results stale.
    models = kb_root / "circuits_zoo/models.yaml"
    models.write_text(models.read_text() + "  - {id: toy-3l, name: Toy three-layer model, kind: planted, n_layers: 3, n_heads: 4}\n")
    entry.write_text(entry.read_text().replace("models: [toy-2l]", "models: [toy-2l, toy-3l]"))
    generate_site(kb_root)
    page = (kb_root / "site_src/circuits/toy-copy/index.md").read_text()
    assert "Stale results" in page and "the circuit&#39;s models or reproduction settings changed since this run" in page


def test_results_appear_on_the_page_with_provenance(kb_root: Path) -> None:
    _run(kb_root)
    generate_site(kb_root)
    page = (kb_root / "site_src/circuits/toy-copy/index.md").read_text()
    assert 'src="results/toy-2l/curve.svg"' in page
    assert "Provenance" in page and "planted by the fixture" in page and "toy-2l (planted)" in page
    assert (kb_root / "site_src/circuits/toy-copy/results/toy-2l/curve.svg").is_file()


def test_unknown_circuit_and_model_are_clear_errors(kb_root: Path) -> None:
    kb = load_knowledge_base(kb_root)
    with pytest.raises(ReproError, match="unknown circuit 'nope'"):
        reproduce(kb, "nope")
    with pytest.raises(ReproError, match="supports models toy-2l, not 'gpt2-small'"):
        reproduce(kb, CIRCUIT, "gpt2-small")


def test_no_progress_silences_library_progress_bars_too(kb_root: Path) -> None:
    env = {**os.environ, "MIKB_FIXTURE_MODE": "library-bar"}
    shown = run_mikb(kb_root, "reproduce", CIRCUIT, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "library bar" in shown.stderr
    quiet = run_mikb(kb_root, "reproduce", CIRCUIT, "--force", "--no-progress", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "library bar" not in quiet.stderr


def test_device_choice_is_checked_and_auto_falls_back_to_the_cpu(kb_root: Path) -> None:
    import torch

    kb = load_knowledge_base(kb_root)
    # The fixture script declares no devices, so it runs on the CPU only.
    with pytest.raises(ReproError, match="supports devices cpu, not 'cuda'"):
        reproduce(kb, CIRCUIT, MODEL, device="cuda", show_progress=False)
    assert _run(kb_root).status == "ok"
    outcome = _run(kb_root, device="auto")
    assert outcome.status == "cached"  # auto resolved to the CPU: the same run as before
    prov = json.loads((_results_dir(kb_root) / "results.json").read_text())["provenance"]
    assert prov["device"].startswith("cpu (") and "--device" not in prov["command"]
    if not torch.cuda.is_available():
        script = kb_root / "circuits_zoo" / CIRCUIT / "reproduce.py"
        script.write_text(script.read_text().replace("SPEC = ScriptSpec(", 'SPEC = ScriptSpec(devices=("cpu", "cuda"), ', 1))
        with pytest.raises(ReproError, match="no CUDA device is visible"):
            reproduce(load_knowledge_base(kb_root), CIRCUIT, MODEL, device="cuda", show_progress=False)


def test_committed_results_match_the_current_scripts_and_entries() -> None:
    """Every committed result must still be what `mikb reproduce` would call current (a dry run
    of the same circuit, model, seed, mode and device finds it cached); otherwise the runner
    would re-run it and the site would show it stale. Nothing is run."""
    repo = Path(__file__).resolve().parents[1]
    kb = load_knowledge_base(repo)
    checked = 0
    for circuit in kb.circuits.values():
        for results_file in sorted(circuit.outputs_dir.glob("*/results.json")):
            results = json.loads(results_file.read_text())
            outcome = reproduce(kb, circuit.id, results["model"], seed=results["seed"], quick=results["quick"],
                                device=results["device"], dry_run=True)
            assert outcome.status == "cached", \
                f"{results_file}: stale ({outcome.message}); re-run `{results['provenance']['command']}`"
            checked += 1
    assert checked >= 5


def test_script_hash_covers_the_mikb_modules_it_imports(tmp_path: Path) -> None:
    from mikb.reproduce.fingerprint import mikb_dependencies, script_sha256

    script = tmp_path / "a" / "reproduce.py"
    script.parent.mkdir()
    script.write_text("from mikb.lm.grokking_run import StopRule\nfrom mikb.reproduce import ScriptSpec\n\n"
                      "def run(ctx):\n    import mikb.methods.induction\n")
    deps = mikb_dependencies([script])
    # Direct, transitive (grokking_run -> fourier, training, lean_native) and lazy imports count;
    # the runner's harness does not.
    assert {"mikb.lm.grokking_run", "mikb.lm.grokking", "mikb.lm.training", "mikb.lm.lean_native",
            "mikb.methods.fourier", "mikb.methods.induction"} <= set(deps)
    assert not any(name.startswith("mikb.reproduce") for name in deps)
    other = tmp_path / "b" / "reproduce.py"
    other.parent.mkdir()
    other.write_text(script.read_text().replace("mikb.methods.induction", "mikb.methods.fourier"))
    assert script_sha256(script) != script_sha256(other)
    assert "mikb.methods.induction" not in mikb_dependencies([other])


def test_git_state_ignores_run_outputs_but_not_code(tmp_path: Path) -> None:
    """A fresh result from an earlier run must not make the next run's tree 'dirty'; an edited script must."""
    from mikb.reproduce.provenance import git_state

    script = tmp_path / "circuits_zoo" / "c" / "reproduce.py"
    result = tmp_path / "circuits_zoo" / "c" / "results" / "m" / "results.json"
    for path, text in ((script, "x = 1\n"), (result, "{}\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=tmp_path, check=True)
    outputs = [result.parents[1]]
    commit, dirty = git_state(tmp_path, ignore=outputs)
    assert commit and len(commit) == 40 and not dirty
    result.write_text('{"new": 1}\n')
    assert git_state(tmp_path, ignore=outputs) == (commit, False)
    assert git_state(tmp_path) == (commit, True)  # outputs count unless they are ignored
    script.write_text("x = 2\n")
    assert git_state(tmp_path, ignore=outputs) == (commit, True)


def test_readme_reproduction_table_matches_committed_results() -> None:
    from conftest import REPO

    from mikb.reproduce.report import current_block, reproduction_table

    readme = (REPO / "README.md").read_text()
    assert current_block(readme) == reproduction_table(load_knowledge_base(REPO)).strip(), \
        "README's reproduction table is out of date: run `python -m mikb.reproduce.report README.md`"


def test_rekey_only_when_script_and_run_fields_are_unchanged(kb_root: Path) -> None:
    from mikb.reproduce.rekey import RekeyRefused, rekey

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=kb_root, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "entries")
    assert _run(kb_root).status == "ok"
    results_file = _results_dir(kb_root) / "results.json"
    old = json.loads(results_file.read_text())
    # What a result from before the key change looks like: whole-file entry hash, old cache key.
    prov = old["provenance"]
    prov["entry_sha256"] = "0" * 64
    del prov["entry_run_sha256"]
    prov["cache_key"] = "old"
    results_file.write_text(json.dumps(old))
    assert _run(kb_root, dry_run=True).status == "due"
    rekey(kb_root, CIRCUIT, MODEL)
    assert _run(kb_root, dry_run=True).status == "cached"
    rekeyed = json.loads(results_file.read_text())
    assert rekeyed["metrics"] == old["metrics"] and rekeyed["provenance"]["rekeyed"]["from_cache_key"] == "old"
    with pytest.raises(RekeyRefused, match="already keyed"):
        rekey(kb_root, CIRCUIT, MODEL)
    # A changed script is never re-keyed.
    prov = rekeyed["provenance"]
    del prov["entry_run_sha256"]
    results_file.write_text(json.dumps(rekeyed))
    script = kb_root / "circuits_zoo" / CIRCUIT / "reproduce.py"
    script.write_text(script.read_text() + "\n# changed\n")
    with pytest.raises(RekeyRefused, match="script"):
        rekey(kb_root, CIRCUIT, MODEL)
