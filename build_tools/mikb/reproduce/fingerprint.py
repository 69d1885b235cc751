"""Content hashes that decide whether a reproduction is up to date.

A result is current only while the script, the circuit entry and the run's parameters are
byte-for-byte what produced it; otherwise the site marks it stale and the runner re-runs it.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


# The runner's own harness: it shapes how results are stored, not what they are, and every
# script imports it, so a change there must not mark every result stale.
HARNESS_PACKAGE = "mikb.reproduce"


def script_sha256(script: Path) -> str:
    """Hash of the method a script runs: the script, the Python helpers beside it and every
    ``mikb`` module they import, directly or through each other (the harness excepted).

    Library modules count because most of a reproduction's method lives there (patching,
    training loops, the Fourier analysis); without them an edit to, say, the key-frequency
    rule would leave results looking current. Modules are named by their dotted name, not
    their path, so the hash is the same in every checkout.
    """
    local = sorted([script, *(p for p in script.parent.glob("*.py") if p != script)])
    named = [(path.name, path) for path in local]
    named += sorted(mikb_dependencies(local).items())
    digest = hashlib.sha256()
    for name, path in named:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def mikb_dependencies(sources: list[Path]) -> dict[str, Path]:
    """``{dotted module name: file}`` of the ``mikb`` modules that ``sources`` import, followed
    transitively through those modules; imports inside functions count too."""
    import mikb

    root = Path(mikb.__file__).parent
    found: dict[str, Path] = {}
    queue = list(sources)
    while queue:
        tree = ast.parse(queue.pop().read_text())
        for node in ast.walk(tree):
            for module in _imported_modules(node):
                if not _is_library_module(module):
                    continue
                path = _module_file(root, module)
                if path is not None and module not in found:
                    found[module] = path
                    queue.append(path)
    return found


def _is_library_module(module: str) -> bool:
    """A ``mikb`` submodule outside the harness (``mikb`` itself only re-exports)."""
    in_harness = module == HARNESS_PACKAGE or module.startswith(HARNESS_PACKAGE + ".")
    return module.startswith("mikb.") and not in_harness


def _imported_modules(node: ast.AST) -> list[str]:
    """Module names an import statement may load (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def _module_file(root: Path, module: str) -> Path | None:
    parts = module.split(".")[1:]
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


# The parts of a circuit entry that decide what a run computes: which script, where it writes,
# for which models. Claims, prose and references are judged or shown at page-build time from
# the committed metrics, so editing them never makes a result stale or forces a re-run.
RUN_FIELDS = ("id", "models", "reproduction")


def entry_run_sha256(entry: dict[str, Any]) -> str:
    """Hash of the run-deciding fields of a circuit entry (see RUN_FIELDS)."""
    payload = json.dumps({k: entry.get(k) for k in RUN_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_key(
    script_hash: str, entry_hash: str, model_id: str, seed: int, quick: bool, params: dict[str, Any], device: str,
) -> str:
    """The cache key of a run: everything that decides its numbers. The device is part of it
    because a GPU run of the same seed gives different numbers (even another trajectory)."""
    payload = json.dumps(
        {"script": script_hash, "entry": entry_hash, "model": model_id, "seed": seed, "quick": quick,
         "params": params, "device": device},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
