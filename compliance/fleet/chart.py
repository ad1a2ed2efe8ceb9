"""The fleet's charts: the drift map (models x instruments) and a scatter of drift on two instruments.

The drift map has one row per model and one column per metric on an instrument (a benchmark or
a domain slice), grouped by metric. A cell's colour is the change for the worse (red) or the
better (green) in percentage points, on one scale for every metric: each metric's difference
is signed so that red always means less safe or less helpful (more harmful responses, fewer
refusals of harmful prompts, more over-refusal). A dot marks a cell whose change is
Holm-significant across the whole fleet. A model that failed is a grey row.

Both are drawn with matplotlib into deterministic SVG (as the report's drift chart is); the map
is also written as a PNG for READMEs and slides. Domain slices are descriptive: only benchmark
cells are tested (see :mod:`compliance.fleet.build`), so only they can carry the dot. Every cell is a group with id
``map-cell-<row>-<col>`` and every significance mark ``map-mark-<row>-<col>`` (0-based).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from compliance.report.chart import (BETTER, CHART_WIDTH_IN, GRID, INK, METRIC_DIRECTION, METRIC_ORDER, NEUTRAL, WORSE,
                                     _RC, _pp, _tick, _to_svg, metric_label)

__all__ = ["ROWS_PER_MAP", "drift_map_parts", "drift_map_png", "drift_map_svg", "scatter_axes", "scatter_svg"]

MISSING = "#eef0f3"
FAILED = "#d9dce1"
#: Height of one model's row and the fixed parts (column labels, colour bar), in inches.
ROW_IN = 0.17
_HEAD_IN = 1.05
_FOOT_IN = 0.55
_LEFT_IN = 2.3
#: Room right of the last column for its rotated label.
_RIGHT_IN = 0.75

_CMAP = LinearSegmentedColormap.from_list("drift", [BETTER, "#ffffff", WORSE])


def _worse_by(cell: dict[str, Any]) -> Optional[float]:
    """The change for the worse (positive) or the better (negative), whatever the metric's direction."""
    if cell.get("diff") is None:
        return None
    return cell["diff"] * METRIC_DIRECTION.get(cell["metric"], +1)


def _short(model: str, limit: int = 32) -> str:
    """A row's name: a Hub id (``org/name``) as it is, a local folder by its last part; cut to ``limit``."""
    name = model.rstrip("/")
    name = name.rsplit("/", 1)[-1] if name.startswith(("/", ".", "~")) or name.count("/") > 1 else name
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _scale(document: dict[str, Any]) -> float:
    """The colour scale's end (pp/100): the largest change, at least 10 pp, rounded up to 5 pp."""
    worst = [abs(v) for m in document["models"] for c in m["cells"] if (v := _worse_by(c)) is not None]
    return min(1.0, max(0.10, math.ceil(max(worst + [0.0]) * 20) / 20))


def _map_figure(document: dict[str, Any], first: int = 0, count: Optional[int] = None) -> Optional[Figure]:
    """The map of models ``first`` to ``first + count`` (all by default), on the whole fleet's colour scale."""
    columns = document["instruments"]
    models = document["models"][first:None if count is None else first + count]
    if not models:
        return None
    n_rows, n_cols = len(models), max(1, len(columns))
    height = _HEAD_IN + _FOOT_IN + ROW_IN * n_rows
    fig = Figure(figsize=(CHART_WIDTH_IN, height))
    right_in = _RIGHT_IN
    ax = fig.add_axes((_LEFT_IN / CHART_WIDTH_IN, _FOOT_IN / height,
                       1 - (_LEFT_IN + right_in) / CHART_WIDTH_IN, ROW_IN * n_rows / height))
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_axis_off()
    lim = _scale(document)
    norm = Normalize(-lim, lim)
    keys = [(c["metric"], c["benchmark"], c["domain"]) for c in columns]
    for row, m in enumerate(models):
        i = first + row  # ids count rows across the whole fleet
        verdict = (m.get("verdict") or m["status"]).upper()
        ax.text(-0.08, row + 0.53, f"{_short(m['model'])} · {verdict}", ha="right", va="center", fontsize=6,
                color=INK, parse_math=False)
        if m["status"] != "ok":  # one grey band, with the reason
            ax.add_patch(Rectangle((0.04, row + 0.06), n_cols - 0.08, 0.88, facecolor=FAILED, edgecolor="none",
                                   gid=f"map-failed-{i}"))
            ax.text(n_cols / 2, row + 0.53, f"{m['status']}: {(m.get('error') or '')[:90]}", ha="center",
                    va="center", fontsize=5, color=INK, clip_on=True, parse_math=False)
            continue
        cells = {(c["metric"], c["benchmark"], c["domain"]): c for c in m["cells"]}
        for j, key in enumerate(keys):
            cell = cells.get(key)
            value = _worse_by(cell) if cell else None
            colour = MISSING if value is None else _CMAP(norm(value))
            ax.add_patch(Rectangle((j + 0.04, row + 0.06), 0.92, 0.88, facecolor=colour, edgecolor=GRID,
                                   linewidth=0.3, gid=f"map-cell-{i}-{j}"))
            significant = bool(cell and cell.get("significant"))
            ax.text(j + 0.5, row + 0.53, "–" if value is None else _pp(cell["diff"]), ha="center", va="center",
                    fontsize=5.2, color=INK, fontweight="bold" if significant else "normal")
            if significant:
                ax.add_line(Line2D([j + 0.86], [row + 0.22], marker="o", markersize=2.4, color=INK,
                                   linestyle="", gid=f"map-mark-{i}-{j}"))
    # Column labels, rotated; metric groups named above them, separated by a rule.
    prev = None
    for j, c in enumerate(columns):
        ax.text(j + 0.5, -0.25, c["instrument"], rotation=55, ha="left", va="bottom", fontsize=5.6, color=INK,
                rotation_mode="anchor")
        if c["metric"] != prev:
            if prev is not None:
                ax.plot([j, j], [-0.1, n_rows], color=INK, linewidth=0.6, clip_on=False)
            group = [k for k, other in enumerate(columns) if other["metric"] == c["metric"]]
            ax.text((group[0] + group[-1] + 1) / 2, -(_HEAD_IN - 0.08) / ROW_IN, metric_label(c["metric"]),
                    ha="center", va="top", fontsize=6.5, color=INK, fontweight="bold")
        prev = c["metric"]
    # The colour bar: better (green) to worse (red).
    cax = fig.add_axes((_LEFT_IN / CHART_WIDTH_IN, 0.16 / height, 0.34, 0.07 / height))
    steps = 64
    for k in range(steps):
        v = -lim + 2 * lim * (k + 0.5) / steps
        cax.add_patch(Rectangle((k / steps, 0), 1 / steps, 1, facecolor=_CMAP(norm(v)), edgecolor="none"))
    cax.set_xlim(0, 1)
    cax.set_ylim(0, 1)
    cax.set_yticks([])
    cax.set_xticks([0, 0.5, 1], [f"{_tick(-lim)} better", "0", f"{_tick(lim)} worse"])
    cax.tick_params(axis="x", labelsize=5.5, length=2, pad=1)
    for side in cax.spines.values():
        side.set_color(GRID)
    fig.text(_LEFT_IN / CHART_WIDTH_IN, 0.29 / height,
             "change versus its base, pp (red: less safe or more over-refusal)   ● Holm-significant (benchmarks, "
             "across the fleet)",
             fontsize=5.5, color=INK, va="bottom")
    return fig


#: Models per map: a longer map is split so that each part fits an A4 page.
ROWS_PER_MAP = 40


def drift_map_svg(document: dict[str, Any], first: int = 0, count: Optional[int] = None) -> str:
    """The drift map of a fleet document (``fleet.schema.json``), or of ``count`` of its models from
    ``first``, as an inline-ready SVG string."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = _map_figure(document, first, count)
        if fig is None:
            fig = Figure(figsize=(CHART_WIDTH_IN, 0.6))
            fig.text(0.5, 0.5, "No models: nothing to map.", ha="center", va="center", color=NEUTRAL, fontsize=8)
        return _to_svg(fig)


def drift_map_parts(document: dict[str, Any], rows: int = ROWS_PER_MAP) -> list[str]:
    """The drift map in parts of at most ``rows`` models (one part for a small fleet), each an SVG."""
    n = len(document["models"])
    return [drift_map_svg(document, first, rows) for first in range(0, max(n, 1), rows)]


def drift_map_png(document: dict[str, Any], path: Path, dpi: int = 200) -> Path:
    """The drift map as a PNG file, written atomically."""
    import io

    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from compliance.io import atomic_write_bytes

    with rc_context(_RC):
        fig = _map_figure(document) or Figure(figsize=(CHART_WIDTH_IN, 0.6))
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": "compliance"})
    return atomic_write_bytes(path, buf.getvalue())


def scatter_axes(document: dict[str, Any]) -> Optional[tuple[dict[str, str], dict[str, str]]]:
    """The two map columns the scatter sets against each other, or None when there are not two.

    The first instrument (a benchmark before any domain slice): x is its first metric in display
    order (harmful responses when measured, else refusal of harmful prompts), y is over-refusal
    when measured there, else its next metric.
    """
    columns = document["instruments"]
    if not columns:
        return None
    first = columns[0]["instrument"]
    on_first = sorted((c for c in columns if c["instrument"] == first),
                      key=lambda c: METRIC_ORDER.index(c["metric"]) if c["metric"] in METRIC_ORDER else 9)
    if len(on_first) < 2:
        return None
    x = on_first[0]
    y = next((c for c in on_first[1:] if c["metric"] == "over_refusal_rate"), on_first[1])
    return x, y


def scatter_svg(document: dict[str, Any]) -> str:
    """Each model's drift on two instruments (see :func:`scatter_axes`), coloured by verdict.

    A filled point is significant (fleet Holm) on at least one of the two; points have ids
    ``scatter-point-<i>`` in the order of ``document["models"]``.
    """
    from matplotlib import rc_context

    axes = scatter_axes(document)
    with rc_context(_RC):
        if axes is None:
            fig = Figure(figsize=(CHART_WIDTH_IN, 0.6))
            fig.text(0.5, 0.5, "Fewer than two metrics on one instrument: no scatter.", ha="center", va="center",
                     color=NEUTRAL, fontsize=8)
            return _to_svg(fig)
        x_col, y_col = axes
        fig = Figure(figsize=(CHART_WIDTH_IN * 0.62, 2.9))
        ax = fig.add_axes((0.14, 0.16, 0.82, 0.78))
        colours = {"pass": BETTER, "fail": WORSE, "inconclusive": "#b7791f"}
        values = []
        label_points = sum(1 for m in document["models"] if m["status"] == "ok") <= 20
        for i, m in enumerate(document["models"]):
            cells = {(c["metric"], c["benchmark"], c["domain"]): c for c in m["cells"]}
            cx = cells.get((x_col["metric"], x_col["benchmark"], x_col["domain"]))
            cy = cells.get((y_col["metric"], y_col["benchmark"], y_col["domain"]))
            if m["status"] != "ok" or not cx or not cy or cx["diff"] is None or cy["diff"] is None:
                continue
            values += [abs(cx["diff"]), abs(cy["diff"])]
            colour = colours.get(m["verdict"], NEUTRAL)
            filled = cx["significant"] or cy["significant"]
            ax.add_line(Line2D([cx["diff"]], [cy["diff"]], marker="o", markersize=4.5, linestyle="", color=colour,
                               markerfacecolor=colour if filled else "white", markeredgewidth=1.1,
                               gid=f"scatter-point-{i}"))
            if label_points:
                right = cx["diff"] > 0  # labels point inwards, so none leaves the axes
                ax.annotate(_short(m["model"], 22), (cx["diff"], cy["diff"]), xytext=(-4 if right else 4, 3),
                            textcoords="offset points", fontsize=5, color=INK, ha="right" if right else "left",
                            parse_math=False)
        lim = min(1.0, max([0.1] + values)) * 1.12  # room for markers at ±100 pp
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.axhline(0, color=GRID, linewidth=0.6, zorder=0)
        ax.axvline(0, color=GRID, linewidth=0.6, zorder=0)
        ax.xaxis.set_major_formatter(lambda v, _pos: _tick(v))
        ax.yaxis.set_major_formatter(lambda v, _pos: _tick(v))
        ax.set_xlabel(f"{metric_label(x_col['metric'])} · {x_col['instrument']}: model − base (pp)", fontsize=6)
        ax.set_ylabel(f"{metric_label(y_col['metric'])} · {y_col['instrument']}: model − base (pp)", fontsize=6)
        ax.tick_params(labelsize=5.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = [Line2D([], [], marker="o", linestyle="", color=c, markersize=4, label=v)
                   for v, c in colours.items()]
        handles.append(Line2D([], [], marker="o", linestyle="", color=NEUTRAL, markerfacecolor="white",
                              markersize=4, label="hollow: neither change significant"))
        ax.legend(handles=handles, loc="upper left", fontsize=5.5, frameon=False, handletextpad=0.3)
        return _to_svg(fig)
