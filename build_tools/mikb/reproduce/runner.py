"""`mikb reproduce`: run a circuit's script for one model and publish its results atomically.

The script runs in a child process (:mod:`mikb.reproduce.supervise`: a timeout, a crash or an
interruption cannot take the runner down or leave the child running). It writes into a fresh
staging folder; only a run that finishes, and whose results were all written, is published
over ``results/<model>/`` (:mod:`mikb.reproduce.publish`: old or new results complete in
place at every instant). A failed run writes ``failure.json`` next to the previous good
results instead of replacing them; an interrupted one writes nothing. Runs are keyed by a hash
of script, entry, model, seed, mode and parameters: an unchanged key is not re-run. Quick runs
have their own folder, ``results/<model>.quick/``.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from mikb.atomic import write_text_atomic
from mikb.evidence import LABELS, evidence_of
from mikb.loader import KnowledgeBase
from mikb.reproduce.claims import judge
from mikb.reproduce.context import ModelUnavailable, ReproContext, ScriptSpec, json_problem
from mikb.reproduce.fingerprint import entry_run_sha256, run_key, script_sha256
from mikb.reproduce.provenance import (
    device_description,
    git_state,
    package_versions,
    resolve_device,
    thread_settings,
)
from mikb.reproduce.publish import (
    FolderLock,
    LockHeld,
    fault_point,
    fsync_tree,
    publish,
    recover,
    staging_path,
)
from mikb.reproduce.results import FAILURE_FILE, LOG_FILE, RESULTS_FILE, read_json
from mikb.reproduce.supervise import forward_signals, interrupted, prepare_child, run_child

DEFAULT_SEED = 0


class ReproError(Exception):
    """A request the runner cannot carry out (unknown circuit, unsupported model, ...)."""


@dataclass
class RunOutcome:
    circuit_id: str
    model_id: str
    status: str  # ok | failed | unavailable | interrupted | cached | due (a dry run that would run)
    message: str
    folder: Path
    wall_time_s: float = 0.0
    quick: bool = False
    signum: int | None = None  # the signal behind an interruption

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


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


def results_folder_name(model_id: str, quick: bool) -> str:
    """Full runs publish to ``results/<model>/`` (what the site shows and what is committed);
    quick runs to ``results/<model>.quick/`` (git-ignored), so a CI-sized check never
    replaces the full results. Model ids cannot contain a dot, so the names cannot collide."""
    return f"{model_id}.quick" if quick else model_id


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
    entry_hash = entry_run_sha256(circuit.doc.data)
    key = run_key(script_hash, entry_hash, model_id, seed, quick, run_params, device)
    folder = results_folder_name(model_id, quick)
    final = circuit.outputs_dir / folder
    mode = "quick" if quick else "full"
    outcome = partial(RunOutcome, circuit_id, model_id, folder=final, quick=quick)
    previous = read_json(final / RESULTS_FILE)
    if not force and previous and previous.get("provenance", {}).get("cache_key") == key and not (final / FAILURE_FILE).exists():
        return outcome("cached", f"{mode} results current: unchanged script, entry and parameters; not re-run (use --force)")
    if dry_run:
        return outcome("due", f"{mode} run due: {_why_due(final, previous)}")
    run = _Run(kb, circuit, model_id, seed, quick, run_params, device, key, script_hash, entry_hash, final)
    try:
        with forward_signals(), FolderLock(circuit.outputs_dir, folder):
            if interrupted():  # --all after a Ctrl-C: start nothing more
                return outcome("interrupted", "not started: the runner was interrupted", signum=interrupted())
            for action in recover(circuit.outputs_dir, folder):
                print(f"mikb reproduce: {circuit_id} on {model_id}: {action}", file=sys.stderr)
            return run.execute(timeout_s or spec.timeout_s, show_progress, outcome)
    except LockHeld as held:
        who = f"pid {held.pid}" if held.pid else "another process"
        raise ReproError(f"another mikb reproduce ({who}) is running {circuit_id} on {model_id} ({mode} run); "
                         f"wait for it to finish, or stop it (lock: {kb.rel(circuit.outputs_dir / f'.{folder}.lock')})") from None


def _why_due(final: Path, previous: dict[str, Any] | None) -> str:
    failure = read_json(final / FAILURE_FILE)
    if failure and failure.get("status") == "unavailable":
        return "the model's weights were unavailable at the last attempt (see failure.json)"
    if (final / FAILURE_FILE).exists():
        return "the last run failed or could not run (see failure.json)"
    if previous is None:
        return "no results yet"
    return "results are from another script, entry, parameters or device"


@dataclass
class _Run:
    """One run past the cache check: child, staging, failure record and publication."""

    kb: KnowledgeBase
    circuit: Any
    model_id: str
    seed: int
    quick: bool
    params: dict[str, Any]
    device: str
    key: str
    script_hash: str
    entry_hash: str
    final: Path

    def execute(self, timeout_s: int, show_progress: bool, outcome: Any) -> RunOutcome:
        circuit_id, outputs = self.circuit.id, self.circuit.outputs_dir
        staging = staging_path(outputs, self.final.name)
        staging.mkdir(parents=True)
        try:
            model = self.kb.models.get(self.model_id)
            # The code the run starts from (not what HEAD is when it ends); other runs' outputs do not count.
            commit, dirty = git_state(self.kb.root, ignore=[c.outputs_dir for c in self.kb.circuits.values()])
            started = datetime.now(UTC)
            t0 = time.monotonic()
            job = {
                "script": str(self.circuit.script_path), "circuit_id": circuit_id, "model_id": self.model_id,
                "seed": self.seed, "quick": self.quick, "params": self.params, "out_dir": str(staging),
                "show_progress": show_progress, "device": self.device,
            }
            status, payload = run_child(_child_main, job, timeout_s)
            wall = time.monotonic() - t0
            command = _command(circuit_id, self.model_id, self.seed, self.quick, self.device)
            provenance = {
                "model_id": self.model_id, "model_kind": model.kind if model else "unknown",
                "weights_source": payload.get("weights_source"), "seed": self.seed,
                "script": self.kb.rel(self.circuit.script_path), "script_sha256": self.script_hash,
                "entry_run_sha256": self.entry_hash, "git_commit": commit, "git_dirty": dirty,
                "packages": package_versions(), "device": device_description(self.device),
                "thread_settings": thread_settings(),
                "wall_time_s": round(wall, 2), "peak_rss_mb": payload.get("peak_rss_mb"),
                "started_at": started.isoformat(timespec="seconds"),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": command, "cache_key": self.key,
            }
            if status == "interrupted":
                return outcome(status, f"{payload['error']}: nothing published, previous results untouched", wall_time_s=wall,
                               signum=payload.get("signum"))
            if status == "unavailable":
                payload["error"] = complete_unavailable(payload.get("error", ""), circuit_id, self.model_id, command)
            if status == "ok":
                results, problem = self._results(payload, provenance)
                if problem is None:
                    problem = _write_staging(staging, results, payload.get("log", ""))
                if problem is None:
                    fsync_tree(staging)
                    fault_point("staged")
                    publish(staging, self.final)
                    return outcome("ok", _claims_message(results["claims"], results["evidence"]), wall_time_s=wall)
                status, payload = "failed", {**payload, "error": problem}
            note = self._record_failure(status, payload, provenance)
            return outcome(status, payload.get("error", "") + note, wall_time_s=wall)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _results(self, payload: dict[str, Any], provenance: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        metrics = payload["metrics"]
        problem = json_problem(metrics)
        if problem:  # the child checks too; this guards what only the parent adds
            return {}, f"metrics {problem}"
        verdicts = [judge(claim, self.model_id, metrics).as_dict() for claim in self.circuit.claims]
        results = {
            "schema_version": 1, "circuit": self.circuit.id, "model": self.model_id, "status": "ok",
            # reproduction (a model that learned the behaviour) or method check (a hand-built one)
            "evidence": evidence_of(provenance.get("model_kind")),
            "quick": self.quick, "seed": self.seed, "device": self.device, "params": self.params,
            "metrics": metrics, "claims": verdicts, "figures": payload["figures"], "notes": payload["notes"],
            "provenance": provenance,
        }
        problem = json_problem(results)
        return results, (f"results.json {problem}" if problem else None)

    def _record_failure(self, status: str, payload: dict[str, Any], provenance: dict[str, Any]) -> str:
        """Write failure.json beside the previous results (which stay); returns a note for the
        message when it was left as it was or could not be written."""
        log_text = payload.get("log", "")
        failure = {
            "status": status, "circuit": self.circuit.id, "model": self.model_id, "error": payload.get("error", ""),
            "log_tail": "\n".join((log_text + payload.get("traceback", "")).splitlines()[-30:]),
            "finished_at": provenance["finished_at"], "provenance": provenance,
        }
        if same_failure(read_json(self.final / FAILURE_FILE), failure):
            return " (unchanged failure.json left as it was)"
        try:
            write_text_atomic(self.final / FAILURE_FILE, json.dumps(failure, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            return f" (failure.json could not be written either: {_os_error_text(exc, FAILURE_FILE)})"
        return ""


def same_failure(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a new failure record says nothing the committed one does not: same status, same
    error, same cache key. Rewriting it would only change timestamps, and dirty a clean tree
    on every offline attempt of a model whose weights are not here."""
    if not old:
        return False
    return (old.get("status"), old.get("error"), old.get("provenance", {}).get("cache_key")) == (
        new["status"], new["error"], new["provenance"]["cache_key"])


_GENERIC_COMMAND = re.compile(r"mikb reproduce <circuit>(?: --model [a-z0-9-]+)?")


def complete_unavailable(message: str, circuit_id: str, model_id: str, command: str) -> str:
    """Fill in a ModelUnavailable message written by a loader that serves several circuits."""
    message = _GENERIC_COMMAND.sub(command, message)
    return message.replace("<circuit>", circuit_id).replace("<model>", model_id)


def _write_staging(staging: Path, results: dict[str, Any], log_text: str) -> str | None:
    """Write log.txt, then results.json (last: its presence marks a complete staging folder).
    Returns what went wrong, or None; a full disk is said as such."""
    for name, text in ((LOG_FILE, log_text), (RESULTS_FILE, json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n")):
        try:
            fault_point(f"writing-{name}")
            (staging / name).write_text(text)
        except OSError as exc:
            return _os_error_text(exc, name) + "; nothing was published, the previous results are untouched"
    return None


def _os_error_text(exc: OSError, name: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {name} ({exc.strerror}); free some space and re-run"
    return f"could not write {name}: {exc}"


def _claims_message(verdicts: list[dict[str, Any]], evidence: str) -> str:
    """A metric the script never recorded counts against the run, like a failed claim."""
    failed = [v["id"] for v in verdicts if v["verdict"] == "fail"]
    missing = [v["id"] for v in verdicts if v["verdict"] == "missing"]
    passed = sum(v["verdict"] == "pass" for v in verdicts)
    judged = [v for v in verdicts if v["verdict"] != "n/a"]
    text = f"{LABELS.get(evidence, evidence)}: {passed}/{len(judged)} claims pass"
    if len(judged) < len(verdicts):
        text += f" ({len(verdicts) - len(judged)} with no criterion on this model)"
    if failed:
        text += f"; failed: {', '.join(failed)}"
    if missing:
        text += f"; missing (not recorded): {', '.join(missing)}"
    return text


def _command(circuit_id: str, model_id: str, seed: int, quick: bool, device: str = "cpu") -> str:
    parts = ["mikb", "reproduce", circuit_id, "--model", model_id]
    if seed != DEFAULT_SEED:
        parts += ["--seed", str(seed)]
    if quick:
        parts.append("--quick")
    if device != "cpu":
        parts += ["--device", device]
    return " ".join(parts)


# Set in the child before the script (and so transformers / huggingface_hub) is imported: both
# read them once, at import, and a script imports them at its top, before any loader could set
# them. Without them an unreachable hub is retried for about 30 s. A user's explicit value
# (HF_HUB_OFFLINE=0 to download) wins.
OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def _peak_rss_mb() -> float:
    """Peak resident memory of this (child) process: the run's own footprint."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _child_main(job: dict[str, Any], conn: Any) -> None:
    """Runs in the child: import the script, run it, send back what ctx collected."""
    prepare_child(job["parent_pid"])
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
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
        problem = _payload_problem(payload)
        if problem:
            raise ValueError(problem)
        conn.send(("ok", payload))
    except ModelUnavailable as exc:
        conn.send(("unavailable", {"error": str(exc), "log": ctx.log_text, "weights_source": ctx.weights_source}))
    except BaseException as exc:  # noqa: BLE001 - any script error becomes a recorded failure
        conn.send(("failed", {"error": f"{type(exc).__name__}: {exc}", "log": ctx.log_text,
                              "traceback": traceback.format_exc(), "weights_source": ctx.weights_source}))
    finally:
        conn.close()


def _payload_problem(payload: dict[str, Any]) -> str | None:
    """What in the child's report is not strict JSON (a script may fill ``ctx.metrics`` or
    ``ctx.notes`` directly), checked before sending so the parent never receives it."""
    for name in ("metrics", "figures", "notes"):
        problem = json_problem(payload[name])
        if problem:
            return f"ctx.{name} {problem}"
    return None
