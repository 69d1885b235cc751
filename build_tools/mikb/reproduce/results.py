"""Reading published reproduction results, and judging whether they are still current.

Layout per circuit and model: ``<circuit>/results/<model>/results.json`` (the last good run),
figures beside it, ``log.txt``, and ``failure.json`` when the most recent attempt failed or
the model's weights could not be obtained (the previous good results stay untouched).
Quick (``--quick``, CI-sized) runs publish to ``<circuit>/results/<model>.quick/`` instead,
which git ignores; the site reads the full results only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikb.entries import Circuit
from mikb.reproduce.fingerprint import entry_run_sha256, script_sha256

RESULTS_FILE = "results.json"
FAILURE_FILE = "failure.json"
LOG_FILE = "log.txt"


@dataclass
class ModelResults:
    """What the site can say about one circuit on one model."""

    circuit_id: str
    model_id: str
    folder: Path
    results: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    stale_reasons: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """ok | stale | failed | unavailable | not-run (failure wins only if newer)."""
        if self.failure and (not self.results or self.failure.get("finished_at", "") >= self.results["provenance"].get("finished_at", "")):
            return "unavailable" if self.failure.get("status") == "unavailable" else "failed"
        if self.results:
            return "stale" if self.stale_reasons else "ok"
        return "not-run"

    @property
    def metrics(self) -> dict[str, Any]:
        return (self.results or {}).get("metrics", {})

    def claim(self, claim_id: str) -> dict[str, Any] | None:
        for item in (self.results or {}).get("claims", []):
            if item.get("id") == claim_id:
                return item
        return None

    def figure_files(self) -> list[Path]:
        if not self.results:
            return []
        return [self.folder / fig["file"] for fig in self.results.get("figures", []) if (self.folder / fig["file"]).is_file()]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_model_results(circuit: Circuit, model_id: str) -> ModelResults:
    """The full-run results of one circuit on one model, as the site shows them (never the
    ``<model>.quick/`` folder: a CI-sized run is not the result an entry's claims rest on)."""
    folder = circuit.outputs_dir / model_id
    found = ModelResults(circuit.id, model_id, folder, read_json(folder / RESULTS_FILE), read_json(folder / FAILURE_FILE))
    if found.results:
        found.stale_reasons = stale_reasons(circuit, found.results)
    return found


def stale_reasons(circuit: Circuit, results: dict[str, Any]) -> list[str]:
    prov = results.get("provenance", {})
    reasons = []
    if results.get("quick"):  # published where full results belong, by a runner before the split
        reasons.append("these are quick (CI-sized) results; run without --quick for the full results")
    if circuit.script_path.is_file() and prov.get("script_sha256") != script_sha256(circuit.script_path):
        reasons.append("the reproduction script or the mikb code it uses changed since this run")
    if circuit.doc and prov.get("entry_run_sha256") != entry_run_sha256(circuit.doc.data):
        reasons.append("the circuit's models or reproduction settings changed since this run")
    return reasons
