"""Which files of a circuit's results folders may be read and published.

Results folders are written by ``mikb reproduce``, but in a pull request they are just files
a stranger committed: a ``results.json`` naming ``/proc/self/environ`` or ``../../x`` as a
figure, or a symlink planted in the folder, would otherwise copy files of the build machine
into the public site. The same rules serve ``mikb check`` (which reports every breach at its
line) and the site generator (which copies only what passes them, as a second guard).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from mikb.diagnostics import Diagnostic, display_path
from mikb.entries import Circuit

RESULTS_FILE, FAILURE_FILE, LOG_FILE = "results.json", "failure.json", "log.txt"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
MAX_RESULTS_BYTES = 16 * 1024 * 1024  # a results folder's JSON; figures are copied, never parsed


def folder_is_inside(folder: Path, parent: Path) -> bool:
    """``folder`` is ``parent`` or below it once every symlink is resolved, and is not
    itself a symlink (a link inside the repo could still point anywhere later)."""
    try:
        return not folder.is_symlink() and folder.resolve().is_relative_to(parent.resolve())
    except OSError:
        return False


def contained_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a regular file (no symlink, FIFO or device) directly in
    ``folder`` and ``name`` is a plain file name; otherwise None."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        return None
    path = folder / name
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or path.resolve().parent != folder.resolve():
        return None
    return path


def model_folder(circuit: Circuit, model_id: str) -> Path | None:
    """The results folder of ``model_id``, if it stays inside the circuit's folder."""
    outputs = circuit.outputs_dir
    folder = outputs / model_id
    if not PLAIN_NAME.fullmatch(model_id) or not folder_is_inside(outputs, circuit.folder):
        return None
    return folder if folder_is_inside(folder, outputs) else None


def valid_figures(results: dict[str, Any] | None, folder: Path) -> list[dict[str, Any]]:
    """The figures of a results file that name a publishable file of ``folder``."""
    figures = (results or {}).get("figures", [])
    if not isinstance(figures, list):
        return []
    return [f for f in figures if isinstance(f, dict) and contained_file(folder, f.get("file")) is not None]


def publishable_files(circuit: Circuit, model_id: str, results: dict[str, Any] | None) -> list[Path]:
    """Files of one model's results folder that the site may copy: the run's records, its
    figures and its other JSON data, each a plain file inside the folder."""
    folder = model_folder(circuit, model_id)
    if folder is None or not folder.is_dir():
        return []
    names = [RESULTS_FILE, LOG_FILE, FAILURE_FILE, *(f["file"] for f in valid_figures(results, folder))]
    names += sorted(p.name for p in folder.glob("*.json"))
    found = (contained_file(folder, name) for name in dict.fromkeys(names))
    return [path for path in found if path is not None]


# -- mikb check -----------------------------------------------------------------------------

@cache
def _validator(name: str) -> Draft202012Validator:
    text = resources.files("mikb.schemas").joinpath(f"{name}.schema.json").read_text()
    return Draft202012Validator(json.loads(text))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def check_results_files(circuits: list[Circuit], root: Path) -> list[Diagnostic]:
    """Every problem with the results folders the site would read, at its line."""
    found: list[Diagnostic] = []
    for circuit in circuits:
        found += _check_circuit(circuit, root)
    return found


def _check_circuit(circuit: Circuit, root: Path) -> Iterator[Diagnostic]:
    outputs = circuit.outputs_dir
    if not outputs.exists() and not outputs.is_symlink():
        return
    shown = display_path(outputs, root)
    if not folder_is_inside(outputs, circuit.folder):
        yield Diagnostic(shown, 1, 1, "results folder must be a real folder inside the circuit's folder (no symlink out)")
        return
    for link in _symlinks_below(outputs):
        yield Diagnostic(display_path(link, root), 1, 1, "symlinks are not allowed in results folders")
    for model_id in circuit.models:
        folder = model_folder(circuit, model_id)
        if folder is None or not folder.is_dir():
            continue
        yield from _check_json(folder, RESULTS_FILE, "results", circuit, model_id, root)
        yield from _check_json(folder, FAILURE_FILE, "failure", circuit, model_id, root)


def _symlinks_below(folder: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(current) / name
            if path.is_symlink():
                yield path


def _check_json(folder: Path, name: str, schema: str, circuit: Circuit, model_id: str, root: Path) -> Iterator[Diagnostic]:
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return
    shown = display_path(path, root)
    if contained_file(folder, name) is None:
        yield Diagnostic(shown, 1, 1, "must be a regular file")
        return
    if path.stat().st_size > MAX_RESULTS_BYTES:
        yield Diagnostic(shown, 1, 1, f"larger than {MAX_RESULTS_BYTES // 2**20} MiB")
        return
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        yield Diagnostic(shown, 1, 1, "not valid UTF-8")
        return
    except json.JSONDecodeError as exc:
        yield Diagnostic(shown, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}")
        return
    except ValueError as exc:  # NaN / Infinity
        yield Diagnostic(shown, *_locate(raw, str(exc).split()[0]), str(exc))
        return
    for err in sorted(_validator(schema).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "top level"
        needle = err.instance if isinstance(err.instance, str) else str(err.absolute_path[-1]) if err.absolute_path else ""
        yield Diagnostic(shown, *_locate(raw, needle), f"{where}: {_short(err.message)}")
    if not isinstance(data, dict):
        return
    for key, expected in (("circuit", circuit.id), ("model", model_id)):
        if isinstance(data.get(key), str) and data[key] != expected:
            yield Diagnostic(shown, *_locate(raw, data[key]), f"{key} is '{_short(data[key])}' but this folder is for '{expected}'")
    if schema == "results":
        for figure in data.get("figures", []) if isinstance(data.get("figures"), list) else []:
            file = figure.get("file") if isinstance(figure, dict) else None
            if isinstance(file, str) and PLAIN_NAME.fullmatch(file) and contained_file(folder, file) is None:
                yield Diagnostic(shown, *_locate(raw, file), f"figure '{file}' is not a regular file in {folder.name}/")


def _locate(raw: str, needle: str) -> tuple[int, int]:
    """Line and column of the first JSON string ``needle`` in ``raw`` (1, 1 if absent)."""
    if needle:
        index = raw.find(json.dumps(needle)[1:-1])
        if index >= 0:
            line = raw.count("\n", 0, index) + 1
            return line, index - (raw.rfind("\n", 0, index) + 1) + 1
    return 1, 1


def _short(text: str, limit: int = 80) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
