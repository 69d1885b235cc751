"""`mikb reproduce`: run a circuit's script for one model and publish its results atomically.

The script runs in a child process (so a timeout or a crash cannot take the runner down, and
so a killed run leaves nothing half-written). It writes into a fresh staging folder; only a
run that finishes is swapped into ``results/<model>/`` in one rename. A failed run writes
``failure.json`` next to the previous good results instead of replacing them. Runs are keyed
by a hash of script, entry, model, seed, mode and parameters: an unchanged key is not re-run.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from mikb.atomic import write_text_atomic
from mikb.loader import KnowledgeBase
from mikb.reproduce.claims import judge
from mikb.reproduce.context import ModelUnavailable, ReproContext, ScriptSpec
from mikb.reproduce.fingerprint import file_sha256, run_key, script_sha256
from mikb.reproduce.provenance import (
    device_description,
    git_state,
    package_versions,
    resolve_device,
)
from mikb.reproduce.results import FAILURE_FILE, LOG_FILE, RESULTS_FILE, read_json

DEFAULT_SEED = 0


class ReproError(Exception):
    """A request the runner cannot carry out (unknown circuit, unsupported model, ...)."""


@dataclass
class RunOutcome:
    circuit_id: str
    model_id: str
    status: str  # ok | failed | unavailable | cached | due (a dry run that would run)
    message: str
    folder: Path
    wall_time_s: float = 0.0


def load_script(path: Path) -> ModuleType:
    """Import a reproduction script by path (scripts are not a package)."""
    name = f"mikb_repro_{path.parent.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ReproError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    if not isinstance(getattr(module, "SPEC", None), ScriptSpec) or not callable(getattr(module, "run", None)):
        raise ReproError(f"{path}: a reproduction script must define SPEC = ScriptSpec(...) and run(ctx)")
    return module


def resolve_params(spec: ScriptSpec, quick: bool, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    params = dict(spec.params)
    if quick:
        params.update(spec.quick_params)
    params.update(overrides or {})
    return params


def reproduce(
    kb: KnowledgeBase,
    circuit_id: str,
    model_id: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    quick: bool = False,
    force: bool = False,
    timeout_s: int | None = None,
    params: dict[str, Any] | None = None,
    show_progress: bool = True,
    device: str = "cpu",
    dry_run: bool = False,
) -> RunOutcome:
    """Run one circuit's script on one model and publish its results, unless the published
    results already have this run's cache key. ``dry_run`` stops after that check: the outcome
    is ``cached`` or ``due``, so "which results are current?" is answered by the same code that
    decides whether to run."""
    circuit = kb.circuits.get(circuit_id)
    if circuit is None:
        known = ", ".join(sorted(kb.circuits)) or "none"
        raise ReproError(f"unknown circuit '{circuit_id}' (known: {known})")
    if not circuit.script_path.is_file():
        raise ReproError(f"{kb.rel(circuit.script_path)}: reproduction script not found")
    module = load_script(circuit.script_path)
    spec: ScriptSpec = module.SPEC
    model_id = model_id or spec.models[0]
    if model_id not in spec.models:
        raise ReproError(f"{circuit_id}: the script supports models {', '.join(spec.models)}, not '{model_id}'")
    run_params = resolve_params(spec, quick, params)
    try:
        device = resolve_device(device, spec.devices)
    except ValueError as exc:
        raise ReproError(f"{circuit_id}: {exc}") from None
    script_hash = script_sha256(circuit.script_path)
    entry_hash = file_sha256(circuit.doc.path)
    key = run_key(script_hash, entry_hash, model_id, seed, quick, run_params, device)
    final = circuit.outputs_dir / model_id
    previous = read_json(final / RESULTS_FILE)
    if not force and previous and previous.get("provenance", {}).get("cache_key") == key and not (final / FAILURE_FILE).exists():
        return RunOutcome(circuit_id, model_id, "cached", "unchanged script, entry and parameters: not re-run (use --force)", final)
    if dry_run:
        if (final / FAILURE_FILE).exists():
            why = "the last run failed or could not run (see failure.json)"
        elif previous is None:
            why = "no results yet"
        else:
            why = "results are from another script, entry, parameters or device"
        return RunOutcome(circuit_id, model_id, "due", why, final)

    for leftover in circuit.outputs_dir.glob(f".staging-{model_id}-*") if circuit.outputs_dir.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)  # from a run that was killed
    staging = circuit.outputs_dir / f".staging-{model_id}-{os.getpid()}"
    staging.mkdir(parents=True)
    model = kb.models.get(model_id)
    # The code the run starts from (not what HEAD is when it ends); other runs' outputs do not count.
    commit, dirty = git_state(kb.root, ignore=[c.outputs_dir for c in kb.circuits.values()])
    started = datetime.now(UTC)
    t0 = time.monotonic()
    job = {
        "script": str(circuit.script_path), "circuit_id": circuit_id, "model_id": model_id, "seed": seed,
        "quick": quick, "params": run_params, "out_dir": str(staging), "show_progress": show_progress,
        "device": device,
    }
    status, payload = _run_in_child(job, timeout_s or spec.timeout_s)
    wall = time.monotonic() - t0
    provenance = {
        "model_id": model_id, "model_kind": model.kind if model else "unknown",
        "weights_source": payload.get("weights_source"), "seed": seed,
        "script": kb.rel(circuit.script_path), "script_sha256": script_hash, "entry_sha256": entry_hash,
        "git_commit": commit, "git_dirty": dirty, "packages": package_versions(),
        "device": device_description(device), "wall_time_s": round(wall, 2),
        "peak_rss_mb": payload.get("peak_rss_mb"),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": _command(circuit_id, model_id, seed, quick, device), "cache_key": key,
    }
    log_text = payload.get("log", "")
    if status != "ok":
        shutil.rmtree(staging, ignore_errors=True)
        failure = {
            "status": status, "circuit": circuit_id, "model": model_id, "error": payload.get("error", ""),
            "log_tail": "\n".join((log_text + payload.get("traceback", "")).splitlines()[-30:]),
            "finished_at": provenance["finished_at"], "provenance": provenance,
        }
        write_text_atomic(final / FAILURE_FILE, json.dumps(failure, indent=2, sort_keys=True) + "\n")
        return RunOutcome(circuit_id, model_id, status, payload.get("error", ""), final, wall)

    metrics = payload["metrics"]
    verdicts = [judge(claim, model_id, metrics).as_dict() for claim in circuit.claims]
    results = {
        "schema_version": 1, "circuit": circuit_id, "model": model_id, "status": "ok", "quick": quick,
        "seed": seed, "device": device, "params": run_params, "metrics": metrics, "claims": verdicts,
        "figures": payload["figures"], "notes": payload["notes"], "provenance": provenance,
    }
    (staging / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (staging / LOG_FILE).write_text(log_text)
    _publish(staging, final)
    failed = [v["id"] for v in verdicts if v["verdict"] == "fail"]
    message = f"{len(verdicts) - len(failed)}/{len(verdicts)} claims without failure" + (f"; failed: {', '.join(failed)}" if failed else "")
    return RunOutcome(circuit_id, model_id, "ok", message, final, wall)


def _publish(staging: Path, final: Path) -> None:
    """Swap the staging folder in with renames; the old results exist until the last moment."""
    backup = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(backup)
    try:
        staging.rename(final)
    except BaseException:
        if backup.exists() and not final.exists():
            backup.rename(final)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _command(circuit_id: str, model_id: str, seed: int, quick: bool, device: str = "cpu") -> str:
    parts = ["mikb", "reproduce", circuit_id, "--model", model_id]
    if seed != DEFAULT_SEED:
        parts += ["--seed", str(seed)]
    if quick:
        parts.append("--quick")
    if device != "cpu":
        parts += ["--device", device]
    return " ".join(parts)


def _run_in_child(job: dict[str, Any], timeout_s: int) -> tuple[str, dict[str, Any]]:
    ctx_mp = mp.get_context("spawn")
    parent, child = ctx_mp.Pipe(duplex=False)
    proc = ctx_mp.Process(target=_child_main, args=(job, child), daemon=True)
    proc.start()
    child.close()
    result: tuple[str, dict[str, Any]] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if parent.poll(0.5):
            try:
                result = parent.recv()
            except EOFError:
                result = None
            break
        if not proc.is_alive():
            break
    if result is None and proc.is_alive():
        proc.kill()
        proc.join(5)
        return "failed", {"error": f"timed out after {timeout_s} s", "log": ""}
    proc.join(10)
    if result is None:
        return "failed", {"error": f"the script process died (exit code {proc.exitcode})", "log": ""}
    return result


def _peak_rss_mb() -> float:
    """Peak resident memory of this (child) process: the run's own footprint."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _child_main(job: dict[str, Any], conn: Any) -> None:
    """Runs in the child: import the script, run it, send back what ctx collected."""
    if not job["show_progress"]:
        # Libraries a script calls (TransformerLens's patching helpers) draw their own tqdm bars;
        # tqdm reads TQDM_* variables as defaults, so this silences them as well as ctx.progress.
        os.environ["TQDM_DISABLE"] = "1"
    ctx = ReproContext(
        circuit_id=job["circuit_id"], model_id=job["model_id"], seed=job["seed"], quick=job["quick"],
        params=job["params"], out_dir=Path(job["out_dir"]), show_progress=job["show_progress"],
        device=job["device"],
    )
    try:
        module = load_script(Path(job["script"]))
        ctx.seed_everything()
        module.run(ctx)
        payload = {
            "metrics": ctx.metrics, "figures": [vars(f) for f in ctx.figures], "notes": ctx.notes,
            "weights_source": ctx.weights_source, "log": ctx.log_text,
            "peak_rss_mb": _peak_rss_mb(),
        }
        conn.send(("ok", payload))
    except ModelUnavailable as exc:
        conn.send(("unavailable", {"error": str(exc), "log": ctx.log_text, "weights_source": ctx.weights_source}))
    except BaseException as exc:  # noqa: BLE001 - any script error becomes a recorded failure
        conn.send(("failed", {"error": f"{type(exc).__name__}: {exc}", "log": ctx.log_text,
                              "traceback": traceback.format_exc(), "weights_source": ctx.weights_source}))
    finally:
        conn.close()
