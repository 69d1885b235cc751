"""Re-key results recorded under the old whole-file entry hash, without re-running them.

Results used to be keyed by a hash of the whole circuit entry; they are now keyed by its
run-deciding fields (``fingerprint.RUN_FIELDS``). A result from before the change is re-keyed
only when nothing that decides its numbers changed: the script hash it records equals the
current one, and the entry's run fields at the commit the run started from (read with git)
equal the current ones. The provenance then gains the new key and a ``rekeyed`` record saying
when, from which key, and why; metrics, figures and every other field stay as the run wrote
them. Anything else must be re-run.

    python -m mikb.reproduce.rekey CIRCUIT MODEL
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from mikb.atomic import write_text_atomic
from mikb.loader import load_knowledge_base
from mikb.reproduce.fingerprint import RUN_FIELDS, entry_run_sha256, run_key, script_sha256
from mikb.reproduce.results import RESULTS_FILE


class RekeyRefused(Exception):
    """The result cannot be shown to be what a re-run would compute: re-run it instead."""


def rekey(root: Path, circuit_id: str, model_id: str) -> str:
    kb = load_knowledge_base(root)
    circuit = kb.circuits[circuit_id]
    path = circuit.outputs_dir / model_id / RESULTS_FILE
    results = json.loads(path.read_text())
    prov = results["provenance"]
    if "entry_run_sha256" in prov:
        raise RekeyRefused("already keyed by the run fields")
    script_hash = script_sha256(circuit.script_path)
    if prov.get("script_sha256") != script_hash:
        raise RekeyRefused("the script or a library module it uses changed since this run")
    entry_rel = circuit.doc.path.resolve().relative_to(kb.root).as_posix()
    then = subprocess.run(["git", "show", f"{prov['git_commit']}:{entry_rel}"], cwd=kb.root, capture_output=True,
                          text=True, check=False)
    if then.returncode != 0 or prov.get("git_dirty"):
        raise RekeyRefused("the entry at the run's commit cannot be read (or the run started from a dirty tree)")
    old_fields = {k: yaml.safe_load(then.stdout).get(k) for k in RUN_FIELDS}
    if old_fields != {k: circuit.doc.data.get(k) for k in RUN_FIELDS}:
        raise RekeyRefused("the entry's models or reproduction settings changed since this run")
    entry_hash = entry_run_sha256(circuit.doc.data)
    key = run_key(script_hash, entry_hash, model_id, results["seed"], results["quick"], results["params"], results["device"])
    prov["rekeyed"] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "from_cache_key": prov.get("cache_key"),
                       "why": "keyed by the entry's run fields instead of the whole file; script hash and run fields "
                              "verified unchanged since the run's commit, so nothing was re-run"}
    prov["entry_run_sha256"], prov["cache_key"] = entry_hash, key
    write_text_atomic(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return key


def main(argv: list[str]) -> int:
    try:
        rekey(Path.cwd(), argv[0], argv[1])
    except RekeyRefused as exc:
        print(f"mikb rekey: refused: {exc}; re-run it with `mikb reproduce {argv[0]} --model {argv[1]} --force`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
