"""Content hashes that decide whether a reproduction is up to date.

A result is current only while the script, the circuit entry and the run's parameters are
byte-for-byte what produced it; otherwise the site marks it stale and the runner re-runs it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def script_sha256(script: Path) -> str:
    """Hash of the script plus Python helper modules beside it (they are part of the method)."""
    digest = hashlib.sha256()
    for path in sorted([script, *(p for p in script.parent.glob("*.py") if p != script)]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_key(
    script_hash: str, entry_hash: str, model_id: str, seed: int, quick: bool, params: dict[str, Any],
    device: str = "cpu",
) -> str:
    """The cache key of a run. A run on an accelerator gives (slightly) different numbers, so
    the device is part of the key; it is left out for CPU so that keys of CPU runs recorded
    before devices were selectable stay valid."""
    fields: dict[str, Any] = {
        "script": script_hash, "entry": entry_hash, "model": model_id, "seed": seed, "quick": quick, "params": params,
    }
    if device != "cpu":
        fields["device"] = device
    payload = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
