"""The site's figure rules, on real matplotlib and plotly figures: what a script may save."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mikb.reproduce import ReproContext  # noqa: E402
from mikb.reproduce.figure_rules import figure_problems  # noqa: E402


def _heatmap(cmap: str = "RdBu", vmin: float = -1.0, vmax: float = 1.0, bar_label: str = "effect (logits)"):
    fig, ax = plt.subplots(figsize=(4, 3), constrained_layout=True)
    im = ax.imshow(np.linspace(-1, 1, 12).reshape(3, 4), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label=bar_label)
    return fig


def test_a_labelled_heatmap_on_the_shared_scale_passes() -> None:
    assert figure_problems(_heatmap()) == []
    assert figure_problems(_heatmap("Blues", 0.0, 1.0, "attention weight")) == []


@pytest.mark.parametrize(("fig_args", "expected"), [
    (("viridis", 0.0, 1.0), "colour map 'viridis'"),
    (("RdBu", -0.5, 1.0), "centred on zero"),
    (("Blues", 0.2, 1.0), "must start at zero"),
    (("RdBu", -1.0, 1.0, ""), "colour bar has no label"),
])
def test_colour_rules(fig_args, expected: str) -> None:
    problems = figure_problems(_heatmap(*fig_args))
    assert len(problems) == 1 and expected in problems[0]


def test_missing_axis_labels_are_named_per_panel() -> None:
    fig, (left, right) = plt.subplots(1, 2, constrained_layout=True)
    left.plot([0, 1], [0, 1])
    left.set_xlabel("step")
    right.plot([0, 1], [1, 0])
    right.set_title("loss")
    problems = figure_problems(fig)
    assert problems == ["panel 1: no y-axis label", "panel 2 ('loss'): no x-axis label", "panel 2 ('loss'): no y-axis label"]


def test_a_twin_axes_shares_its_partners_x_label_and_switched_off_axes_are_exempt() -> None:
    fig, (ax, blank) = plt.subplots(1, 2, figsize=(8, 3), constrained_layout=True)
    ax.plot([1, 2], [3, 4])
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats)")
    twin = ax.twinx()
    twin.plot([1, 2], [10, 20])
    twin.set_ylabel("weight norm")
    blank.axis("off")
    blank.text(0.1, 0.5, "a diagram")
    assert figure_problems(fig) == []
    twin.set_ylabel("")
    assert figure_problems(fig) == ["panel 3: no y-axis label"]


def test_crowded_tick_labels_and_small_text_are_refused() -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    names = [f"head {i}.{j} (long name)" for i in range(4) for j in range(4)]
    ax.bar(names, range(16))
    ax.set_xlabel("head")
    ax.set_ylabel("effect")
    ax.text(0, 1, "0.25", fontsize=5)
    ax.legend(["effect"], fontsize=6)
    problems = figure_problems(fig)
    assert any("legend entry 'effect' is 6 pt" in p for p in problems)
    assert any("overlaps" in p and "x tick label" in p for p in problems)
    assert any("'0.25' is 5 pt" in p for p in problems)


def test_panels_that_run_into_each_other_are_refused() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    for ax in (a, b):
        ax.plot([0, 1000000], [0, 1])
        ax.set_xlabel("x")
        ax.set_ylabel("a long y-axis label that runs")
    a.set_title("a title long enough to run across into the next panel's axis labels")
    assert any("overlaps panel 2" in p for p in figure_problems(fig))


def test_plotly_needs_axis_titles() -> None:
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[1e-4, 1e-2]))
    fig.update_layout(yaxis_type="log")
    assert figure_problems(fig) == ["interactive plot: no x-axis title", "interactive plot: no y-axis title"]
    fig.update_layout(xaxis_title="training step", yaxis_title="loss (nats)")
    assert figure_problems(fig) == []  # plain-number ticks are the site's job (mikb.js)


def test_save_figure_refuses_a_figure_that_breaks_a_rule_and_writes_nothing(tmp_path: Path) -> None:
    ctx = ReproContext(circuit_id="c", model_id="m", seed=0, quick=True, params={}, out_dir=tmp_path / "out",
                       show_progress=False)
    with pytest.raises(ValueError, match="colour map 'viridis'"):
        ctx.save_figure(_heatmap("viridis", 0.0, 1.0), "scores", caption="Scores.")
    assert not (tmp_path / "out" / "scores.svg").exists() and ctx.figures == []
    ctx.save_figure(_heatmap(), "scores", caption="Scores.")
    assert (tmp_path / "out" / "scores.svg").is_file() and len(ctx.figures) == 1
