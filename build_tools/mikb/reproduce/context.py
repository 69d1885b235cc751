"""The contract between `mikb reproduce` and a circuit's reproduction script.

A script (``circuits_zoo/<id>/reproduce.py``) declares a module-level ``SPEC``
(:class:`ScriptSpec`) and a function ``run(ctx: ReproContext) -> None``. The runner owns
everything around the science: choosing the output folder, seeding, timing, provenance,
atomic publication of results and caching. The script only computes and reports through
``ctx``. Keeping that boundary narrow is what lets the site trust every number it shows:
a metric exists on a page only if a script called :meth:`ReproContext.metric` in a run
whose provenance the runner recorded.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ModelUnavailable(RuntimeError):
    """Raised by a script when the weights of the requested model cannot be obtained.

    The message must say what is missing and how to run the script where it is available;
    the runner records the run as ``unavailable`` (shown as "not run" on the site), never as
    a result. A loader shared by several scripts cannot know which circuit it serves, so the
    runner completes the message: ``mikb reproduce <circuit> ...`` becomes the run's exact
    command, and any other ``<circuit>`` or ``<model>`` the run's ids.
    """


@dataclass(frozen=True)
class ScriptSpec:
    """What a reproduction script supports and which parameters it takes.

    ``models`` are model ids from ``circuits_zoo/models.yaml``; the first one is the default.
    ``params`` are the full-run defaults; ``quick_params`` override them under ``--quick``
    (CI-sized runs that must still show the phenomenon). ``devices`` lists where the script
    can run (``cpu``, ``cuda``); the runner refuses any other and hands the chosen one to the
    script as ``ctx.device``.
    """

    models: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)
    quick_params: dict[str, Any] = field(default_factory=dict)
    timeout_s: int = 3600
    description: str = ""


@dataclass
class FigureRecord:
    file: str
    caption: str
    kind: str  # "static" (svg/png) or "interactive" (html)


@dataclass
class ReproContext:
    """Everything a script may read and the only channel through which it reports."""

    circuit_id: str
    model_id: str
    seed: int
    quick: bool
    params: dict[str, Any]
    out_dir: Path
    device: str = "cpu"
    show_progress: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[FigureRecord] = field(default_factory=list)
    weights_source: str | None = None
    notes: list[str] = field(default_factory=list)
    _log_lines: list[str] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)

    # -- reproducibility -------------------------------------------------------------
    def seed_everything(self, offset: int = 0) -> None:
        """Seed python, numpy and torch from the run's seed (plus an optional offset)."""
        seed = self.seed + offset
        random.seed(seed)
        try:
            import numpy as np

            np.random.seed(seed % (2**32))
        except ImportError:  # pragma: no cover - numpy ships with torch
            pass
        # cuBLAS is deterministic only with a fixed workspace; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)

    # -- reporting --------------------------------------------------------------------
    def metric(self, name: str, value: Any) -> None:
        """Record one metric; claims in the entry name metrics by this key.

        The value must become valid JSON (numbers, strings, booleans, None, lists, dicts;
        tensors and numpy values are converted). NaN and infinities are refused here, naming
        the metric, rather than when results.json is written: JSON has no NaN, and the line
        of the script that produced it is on this call's traceback.
        """
        converted = _jsonable(value)
        problem = json_problem(converted)
        if problem:
            raise ValueError(f"metric {name!r} {problem}")
        self.metrics[name] = converted

    def set_weights_source(self, source: str) -> None:
        """Say where the model's weights came from (trained here / planted / downloaded)."""
        self.weights_source = source

    def note(self, text: str) -> None:
        """A remark shown with the results (e.g. which frequencies this seed found)."""
        self.notes.append(text)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        line = f"[{elapsed:8.1f}s] {message}"
        self._log_lines.append(line)
        print(line, flush=True)

    def progress(self, iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterator[T]:
        """Wrap a long loop in a progress bar (stderr) unless progress is switched off."""
        if not self.show_progress:
            yield from iterable
            return
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, leave=False, mininterval=1.0)

    def save_figure(self, fig: Any, name: str, caption: str) -> Path:
        """Save a matplotlib figure as SVG, or a plotly figure as its JSON spec.

        SVGs are written with a fixed hash salt and no date so that identical runs give
        identical bytes. Plotly figures are stored as JSON, not HTML, so the site can render
        them with the one plotly.js it ships (no CDN: the site must work offline).
        A figure that breaks the site's figure rules (labels, one colour convention, legible
        text that does not overlap; see :mod:`mikb.reproduce.figure_rules`) is refused, naming
        each problem, so the script's quick run fails before the figure reaches a page.
        """
        from mikb.reproduce.figure_rules import figure_problems

        problems = figure_problems(fig)
        if problems:
            raise ValueError(f"figure {name!r} breaks the site's figure rules (mikb.reproduce.figure_rules):\n  - "
                             + "\n  - ".join(problems))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if hasattr(fig, "savefig"):
            import matplotlib

            matplotlib.rcParams["svg.hashsalt"] = "mikb"
            path = self.out_dir / f"{name}.svg"
            fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
            kind = "static"
            try:
                import matplotlib.pyplot as plt

                plt.close(fig)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        elif hasattr(fig, "to_json"):
            path = self.out_dir / f"{name}.plotly.json"
            path.write_text(fig.to_json(pretty=False, engine="json") + "\n")
            kind = "interactive"
        else:
            raise TypeError(f"save_figure: unsupported figure type {type(fig).__name__}")
        self.figures.append(FigureRecord(file=path.name, caption=caption, kind=kind))
        return path

    def save_json(self, name: str, obj: Any) -> Path:
        """Save an auxiliary JSON artefact (e.g. edge scores) next to the results.

        NaN and infinities become null (a path-patching grid marks undefined cells with NaN;
        JSON has no NaN and the site's reader would reject the file); other non-JSON values
        are an error naming the file.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        converted = _finite_or_none(_jsonable(obj))
        problem = json_problem(converted)
        if problem:
            raise ValueError(f"save_json({name!r}): the object {problem}")
        path.write_text(json.dumps(converted, indent=2, sort_keys=True, allow_nan=False) + "\n")
        return path

    @property
    def log_text(self) -> str:
        return "\n".join(self._log_lines) + ("\n" if self._log_lines else "")


def _jsonable(value: Any) -> Any:
    """Convert tensors, numpy scalars and tuples into plain JSON values."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def json_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` (after conversion) cannot be written as strict JSON, naming where inside
    it (``[2]['loss']``), or None. Used on every metric, and again on everything the child
    sends, because a script may also assign ``ctx.metrics[...]`` directly."""
    at = f" at {where}" if where else ""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value!r}{at}: JSON has no NaN or Infinity (report a finite number, or None for 'undefined')"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a key of type {type(key).__name__}{at}: JSON keys are strings"
            found = json_problem(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = json_problem(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"is of type {type(value).__name__}{at}, which is not JSON (use numbers, strings, booleans, None, lists, dicts)"
