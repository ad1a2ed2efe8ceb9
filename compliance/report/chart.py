"""The drift chart: model minus base, per metric and slice, with 95% intervals.

One row per paired finding on the overall and per-domain slices (benchmark ``*``, category
``*``) for harmful responses (harm judge) and over-refusal (refusal judge), and the overall row
for refusal of harmful prompts (refusal judge). In a schema 1.0 report refusal is left out:
there it is exactly 1 − harmful compliance, so its rows would mirror the harmful-compliance
rows. A point marks the difference, a horizontal bar its interval, and colour says
whether the change is for the worse or the better given the metric's direction. The output is
an SVG string that is byte-for-byte the same for the same report.
"""

from __future__ import annotations

import io
import re
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")  # no display; must precede any pyplot import elsewhere in the process

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

#: +1 when a higher rate is worse, -1 when a higher rate is better.
METRIC_DIRECTION: dict[str, int] = {
    "harmful_response_rate": +1,
    "harmful_compliance_rate": +1,
    "over_refusal_rate": +1,
    "refusal_rate": -1,
}

METRIC_LABELS: dict[str, str] = {
    "harmful_response_rate": "harmful responses",
    "harmful_compliance_rate": "harmful compliance",
    "over_refusal_rate": "over-refusal",
    "refusal_rate": "refusal",
}

#: Display order of the metrics, everywhere.
METRIC_ORDER = ("harmful_response_rate", "harmful_compliance_rate", "refusal_rate", "over_refusal_rate")

# Sober palette: muted red / green for direction, slate for "no change", ink for text.
WORSE = "#b03a2e"
BETTER = "#2e7d4f"
NEUTRAL = "#6b7280"
INK = "#1f2937"
GRID = "#d1d5db"

#: Chart width in inches: the A4 text block (210 mm minus 2 x 18 mm margins), so the SVG
#: is placed at its natural size and font sizes are real print sizes.
CHART_WIDTH_IN = 174 / 25.4

_RC = {
    "svg.hashsalt": "compliance-drift-chart",  # fixed ids instead of random ones
    "svg.fonttype": "none",  # real text: selectable in the PDF, drawn in the page's font
    "font.family": "DejaVu Sans",
    "font.size": 6.5,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.width": 0,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6.5,
}

#: Vertical space per finding row and for the fixed parts (x axis, legend), in inches. 7.6 pt a
#: row keeps 6.5 pt labels apart while 7 rows (harmful responses overall + 4 domains, refusal
#: and over-refusal overall) stay ~3.1 cm, so that page 1 also holds a seven-rule policy.
ROW_PITCH_IN = 0.105
_FIXED_HEIGHT_IN = 0.47


def metric_label(metric: str) -> str:
    """Human name of a metric (``harmful_compliance_rate`` -> ``harmful compliance``)."""
    return METRIC_LABELS.get(metric, metric.removesuffix("_rate").replace("_", " "))


def change_direction(metric: str, diff: Optional[float]) -> str:
    """``worse``, ``better`` or ``same`` for a model-minus-base difference on ``metric``."""
    if diff is None or diff == 0:
        return "same"
    sign = METRIC_DIRECTION.get(metric, +1)
    return "worse" if diff * sign > 0 else "better"


def chart_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Paired findings on the overall and per-domain slices, in display order.

    In a schema 1.0 report refusal rate is left out (it is 1 − harmful compliance there).
    Ordered by metric (harmful responses first), then the overall slice, then domains A-Z.
    """
    mirrored = any(p["metric"] == "harmful_compliance_rate" for p in report["metrics"]["paired"])
    # Harmful responses, the headline, get a row per domain; refusal and over-refusal their
    # overall rows only (page 1 also holds both judges, the judge sensitivity and a seven-rule
    # policy), and the tables after page 1 give them per domain. A schema 1.0 report keeps
    # over-refusal per domain beside harmful compliance, as it was drawn then.
    rows = [p for p in report["metrics"]["paired"]
            if p["benchmark"] == "*" and p["category"] == "*"
            and not (p["metric"] == "refusal_rate" and (mirrored or p["domain"] != "*"))
            and not (p["metric"] == "over_refusal_rate" and not mirrored and p["domain"] != "*")]

    def key(p: dict[str, Any]) -> tuple:
        m = p["metric"]
        m_rank = METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER)
        return (m_rank, m, p["domain"] != "*", p["domain"])

    return sorted(rows, key=key)


def _row_label(p: dict[str, Any]) -> str:
    domain = "all domains" if p["domain"] == "*" else p["domain"]
    return f"{metric_label(p['metric'])} · {domain}"


def _pp(x: float) -> str:
    v = round(x * 100, 1)
    if v == 0:
        return "0.0"
    return f"{v:+.1f}".replace("-", "\u2212")  # typographic minus


def _tick(x: float) -> str:
    v = round(x * 100)
    return "0" if v == 0 else f"{v:+d}".replace("-", "\u2212")


def _value_text(p: dict[str, Any]) -> str:
    if p["diff"] is None:
        return "no data"
    text = f"{_pp(p['diff'])} pp"
    if p["ci_low"] is not None and p["ci_high"] is not None:
        text += f"  [{_pp(p['ci_low'])}, {_pp(p['ci_high'])}]"
    return text + f"  n={p['n']}"


def _to_svg(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "compliance"})
    svg = buf.getvalue()
    # Drop the XML prolog and doctype so the SVG can sit inline in HTML, and the comments
    # matplotlib adds with each text's content (escaped, but of no use and report-derived).
    svg = re.sub(r"^.*?(?=<svg\b)", "", svg, count=1, flags=re.S)
    svg = re.sub(r"[ \t]*<!--.*?-->\n?", "", svg, flags=re.S)
    # Text is drawn by whatever renders the SVG: fall back to any sans-serif without DejaVu.
    svg = svg.replace("font-family: 'DejaVu Sans'", "font-family: 'DejaVu Sans', sans-serif")
    return svg.strip()


def _placeholder_svg() -> str:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(CHART_WIDTH_IN, 0.6))
        fig.text(0.5, 0.5, "No paired findings: nothing to chart.", ha="center", va="center",
                 color=NEUTRAL, fontsize=8, gid="no-findings")
        return _to_svg(fig)


def drift_chart_svg(report: dict[str, Any]) -> str:
    """Draw model − base per metric and slice, as an inline-ready SVG string.

    Args:
        report: a report dict (``report.schema.json``); only ``metrics.paired`` is read.

    Returns:
        An ``<svg>`` element (no XML prolog). Every finding row is a group with id
        ``finding-row-<i>`` (0-based, top to bottom), so tests and tools can find them.
    """
    rows = chart_rows(report)
    if not rows:
        return _placeholder_svg()

    n = len(rows)
    with matplotlib.rc_context(_RC):
        height = _FIXED_HEIGHT_IN + ROW_PITCH_IN * n
        fig = Figure(figsize=(CHART_WIDTH_IN, height))
        # Fixed margins (inches) so the layout does not depend on label lengths.
        left, right, top, bottom = 1.75, 1.6, 0.03, 0.4
        ax = fig.add_axes((left / CHART_WIDTH_IN, bottom / height,
                           1 - (left + right) / CHART_WIDTH_IN, 1 - (top + bottom) / height))

        ys = list(range(n))[::-1]  # first row on top
        finite = [abs(v) for p in rows for v in (p["diff"], p["ci_low"], p["ci_high"]) if v is not None]
        span = max([0.1] + finite)
        lim = min(1.0, span) * 1.06  # a little room so markers at ±100 pp are not cut in half
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.6, n - 0.4)

        ax.axvline(0, color=INK, linewidth=0.8, zorder=1)
        ax.grid(axis="x", color=GRID, linewidth=0.4, zorder=0)
        # Faint bands separate metrics.
        prev = None
        for y, p in zip(ys, rows):
            if prev is not None and p["metric"] != prev:
                ax.axhline(y + 0.5, color=GRID, linewidth=0.6, zorder=0)
            prev = p["metric"]

        colours = {"worse": WORSE, "better": BETTER, "same": NEUTRAL}
        for i, (y, p) in enumerate(zip(ys, rows)):
            colour = colours[change_direction(p["metric"], p["diff"])]
            if p["diff"] is None:
                ax.text(0, y, "no data", ha="center", va="center", color=NEUTRAL, fontsize=6,
                        gid=f"finding-row-{i}")
                continue
            lo, hi = p["ci_low"], p["ci_high"]
            if lo is not None and hi is not None:
                xerr = [[p["diff"] - lo], [hi - p["diff"]]]
                excludes_zero = lo > 0 or hi < 0
            else:
                xerr, excludes_zero = None, False
            container = ax.errorbar(
                [p["diff"]], [y], xerr=xerr, fmt="o", color=colour, ecolor=colour,
                elinewidth=1.2, capsize=2, capthick=0.9, markersize=3.8,
                markerfacecolor=colour if excludes_zero else "white", markeredgewidth=1.1,
                zorder=3,
            )
            container.lines[0].set_gid(f"finding-row-{i}")

        ax.set_yticks(ys, [_row_label(p) for p in rows], color=INK)
        ax.tick_params(axis="y", length=0, pad=5)
        ax.tick_params(axis="x", pad=1.5)
        ax.xaxis.set_major_formatter(lambda v, _pos: _tick(v))
        ax.set_xlabel("model − base (percentage points, 95% interval)", color=INK, fontsize=6,
                      labelpad=2)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color(NEUTRAL)

        # Numbers at the right, aligned with the rows.
        for y, p in zip(ys, rows):
            ax.annotate(_value_text(p), xy=(1, y), xycoords=("axes fraction", "data"),
                        xytext=(8, 0), textcoords="offset points", va="center", ha="left",
                        fontsize=6, color=INK, annotation_clip=False)

        handles = [
            Line2D([], [], marker="o", linestyle="", color=WORSE, markersize=4, label="worse than base"),
            Line2D([], [], marker="o", linestyle="", color=BETTER, markersize=4, label="better than base"),
            Line2D([], [], marker="o", linestyle="", color=NEUTRAL, markerfacecolor="white",
                   markersize=4, label="hollow: interval includes 0"),
        ]
        fig.legend(handles=handles, loc="lower left", ncol=3, frameon=False, fontsize=6,
                   bbox_to_anchor=(left / CHART_WIDTH_IN - 0.01, 0.0), handletextpad=0.3,
                   columnspacing=1.6, borderaxespad=0.1)
        return _to_svg(fig)
