"""The site's rules for figures, checked when a script saves one.

Why at save time: a figure is drawn by a contributor's script, and a reader meets it on a page
beside figures from other scripts. If one page's red means "supports the answer" and another's
means "hurts it", or a panel's tick labels run into its neighbour, the reader is misled or
cannot read it; no review of SVG bytes catches that reliably, but the figure object knows its
labels, colour maps and text boxes. So :meth:`ReproContext.save_figure` refuses a figure that
breaks a rule, naming the axes and the rule, and the script's quick run in the tests fails
before a bad figure is ever committed.

The rules:

- every plotting axes has an x label and a y label (the quantity, with its unit where it has
  one); axes switched off (``ax.axis("off")``: a diagram, a text panel) are exempt;
- every colour bar has a label;
- one colour convention on every page: signed quantities use ``RdBu`` centred on zero (red
  below zero, blue above, white at zero); non-negative quantities use ``Blues`` starting at
  zero (fractions, attention and probabilities from 0 to 1); no other colour map;
- tick labels, axis labels, titles, legend entries and annotations are at least 7 pt, and no
  two labels or titles overlap, within a panel or across panels.

Plotly figures (the site's interactive plots) need axis titles. Their ticks are the site's job:
it renders plain numbers wherever a spec names no exponent format (plotly's default SI prefixes
would print 0.0001 as "100μ", which reads as a unit).
"""

from __future__ import annotations

import json
from typing import Any

SIGNED_CMAP = "RdBu"
NONNEGATIVE_CMAP = "Blues"
MIN_FONT_PT = 7.0
_OVERLAP_TOLERANCE_PX = 1.0


def figure_problems(fig: Any) -> list[str]:
    """Every rule the figure breaks, one sentence each (empty when it is fine)."""
    if hasattr(fig, "savefig"):
        return _matplotlib_problems(fig)
    if hasattr(fig, "to_json"):
        return _plotly_problems(fig)
    return []


# -- matplotlib ---------------------------------------------------------------------------


def _matplotlib_problems(fig: Any) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    colorbar_axes = _colorbar_axes(fig)
    problems: list[str] = []
    texts: list[tuple[str, Any]] = []  # (description, bbox)
    for number, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        name = _axes_name(ax, number)
        if ax in colorbar_axes:
            if not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
                problems.append(f"{name}: the colour bar has no label (say what the colour measures)")
        else:
            if not _label(ax, "x"):
                problems.append(f"{name}: no x-axis label")
            if not _label(ax, "y"):
                problems.append(f"{name}: no y-axis label")
            problems += [f"{name}: {p}" for p in _colour_problems(ax)]
        for description, artist in _text_artists(ax):
            if artist.get_fontsize() < MIN_FONT_PT:
                problems.append(f"{name}: {description} is {artist.get_fontsize():g} pt (at least {MIN_FONT_PT:g} pt)")
            texts.append((f"{name} {description}", artist.get_window_extent(renderer)))
        legend = ax.get_legend()
        for entry in legend.get_texts() if legend is not None else []:
            if entry.get_visible() and entry.get_fontsize() < MIN_FONT_PT:
                problems.append(f"{name}: legend entry {entry.get_text()[:20]!r} is {entry.get_fontsize():g} pt "
                                f"(at least {MIN_FONT_PT:g} pt)")
        for annotation in ax.texts:  # cell values and notes: legible, may sit inside the plot
            if annotation.get_visible() and annotation.get_text().strip() and annotation.get_fontsize() < MIN_FONT_PT:
                problems.append(f"{name}: text {annotation.get_text()[:20]!r} is {annotation.get_fontsize():g} pt "
                                f"(at least {MIN_FONT_PT:g} pt)")
    problems += _overlaps(texts)
    return problems


def _label(ax: Any, which: str) -> str:
    """The axes' label on one axis, or its twin's: a ``twinx()`` axes shares the x axis (and
    its label) with the axes it was made from, drawn at the same place."""
    own = (ax.get_xlabel() if which == "x" else ax.get_ylabel()).strip()
    if own:
        return own
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    for twin in shared.get_siblings(ax):
        if twin is not ax and twin.get_position().bounds == ax.get_position().bounds:
            label = (twin.get_xlabel() if which == "x" else twin.get_ylabel()).strip()
            if label:
                return label
    return ""


def _colorbar_axes(fig: Any) -> set[Any]:
    found = set()
    for ax in fig.axes:
        for mappable in [*ax.images, *ax.collections]:
            bar = getattr(mappable, "colorbar", None)
            if bar is not None:
                found.add(bar.ax)
    return found


def _axes_name(ax: Any, number: int) -> str:
    title = ax.get_title().strip()
    return f"panel {number + 1}" + (f" ({title[:40]!r})" if title else "")


def _colour_problems(ax: Any) -> list[str]:
    problems = []
    for mappable in [*ax.images, *ax.collections]:
        if not hasattr(mappable, "get_cmap") or mappable.get_array() is None:
            continue
        cmap = mappable.get_cmap().name
        vmin, vmax = mappable.norm.vmin, mappable.norm.vmax
        if cmap == SIGNED_CMAP:
            if vmin is None or vmax is None or abs(vmin + vmax) > 1e-9 * max(abs(vmin), abs(vmax), 1.0):
                problems.append(f"colour map {SIGNED_CMAP} must be centred on zero (vmin = -vmax), got {vmin}..{vmax}")
        elif cmap == NONNEGATIVE_CMAP:
            if vmin != 0:
                problems.append(f"colour map {NONNEGATIVE_CMAP} must start at zero (vmin = 0), got vmin {vmin}")
        else:
            problems.append(f"colour map {cmap!r}: use {SIGNED_CMAP} (signed, centred on zero) or "
                            f"{NONNEGATIVE_CMAP} (non-negative, from zero) so colours mean the same on every page")
    return problems


def _text_artists(ax: Any) -> list[tuple[str, Any]]:
    """Tick labels, axis labels and the title that will actually be drawn."""
    found: list[tuple[str, Any]] = []
    for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        lo, hi = sorted(axis.get_view_interval())
        for tick in axis.get_major_ticks():
            if not (lo - 1e-9 * max(1.0, abs(hi - lo)) <= tick.get_loc() <= hi + 1e-9 * max(1.0, abs(hi - lo))):
                continue
            for label in (tick.label1, tick.label2):
                if label.get_visible() and label.get_text().strip():
                    found.append((f"{axis_name} tick label {label.get_text()!r}", label))
        label = axis.label
        if label.get_visible() and label.get_text().strip():
            found.append((f"{axis_name}-axis label", label))
    for title in (ax.title, ax._left_title, ax._right_title):
        if title.get_visible() and title.get_text().strip():
            found.append(("title", title))
    return found


def _overlaps(texts: list[tuple[str, Any]]) -> list[str]:
    problems = []
    for i, (name_a, box_a) in enumerate(texts):
        for name_b, box_b in texts[i + 1:]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > _OVERLAP_TOLERANCE_PX and height > _OVERLAP_TOLERANCE_PX:
                problems.append(f"{name_a} overlaps {name_b}")
    return problems


# -- plotly -------------------------------------------------------------------------------


def _plotly_problems(fig: Any) -> list[str]:
    layout = json.loads(fig.to_json()).get("layout", {})  # the spec the site will render
    problems = []
    for axis in ("xaxis", "yaxis"):
        spec = layout.get(axis, {})
        title = spec.get("title", {})
        text = title.get("text") if isinstance(title, dict) else title
        if not (text or "").strip():
            problems.append(f"interactive plot: no {axis[0]}-axis title")
    return problems
