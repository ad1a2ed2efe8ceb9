"""Render a report dict to HTML and to an A4 PDF.

The HTML is self-contained (stylesheet and drift chart inline) and every value taken from the
report is escaped. The PDF is produced from that HTML by WeasyPrint and written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional

import jinja2
from markupsafe import Markup

from compliance.report.chart import METRIC_ORDER, change_direction, chart_rows, drift_chart_svg, metric_label
from compliance.report.versions import AXIS_WORDS, report_judges, validation_line
from compliance.io import atomic_write_bytes
from compliance.resources import resource_dir

TEMPLATE_NAME = "report.html.j2"

#: How many regressions page 1 lists.
MAX_REGRESSIONS = 5
#: Characters kept from each prompt and response on page 1.
EXCERPT_CHARS = 300
#: How many judge disagreements page 1 lists.
MAX_JUDGE_DISAGREEMENTS = 3
#: What each axis's judge measures, in words.
AXIS_MEASURES = {"refusal": "refusal and over-refusal rates",
                 "harm": "harmful-response rate"}


# --- formatting filters ---------------------------------------------------------------------


def fmt_pct(x: Optional[float], digits: int = 1) -> str:
    """``0.125`` -> ``12.5%``; ``None`` -> ``n/a``."""
    if x is None:
        return "n/a"
    return f"{x * 100:.{digits}f}%"


def fmt_pp(x: Optional[float], digits: int = 1) -> str:
    """A difference of rates in signed percentage points: ``0.125`` -> ``+12.5 pp``."""
    if x is None:
        return "n/a"
    v = round(x * 100, digits)
    if v == 0:
        return f"{0:.{digits}f} pp"  # neither "+0.0" nor "-0.0"
    return f"{v:+.{digits}f} pp"


def fmt_interval(lo: Optional[float], hi: Optional[float], signed: bool = False) -> str:
    """``[15.0%, 85.0%]`` (or ``[-29.0, +54.0] pp`` when ``signed``); empty when unknown."""
    if lo is None or hi is None:
        return ""
    if signed:
        return f"[{fmt_pp(lo).removesuffix(' pp')}, {fmt_pp(hi).removesuffix(' pp')}] pp"
    return f"[{fmt_pct(lo)}, {fmt_pct(hi)}]"


def fmt_p(p: Optional[float]) -> str:
    """A p-value to three decimals, ``<0.001`` below that."""
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_bytes(n: Optional[int]) -> str:
    """``538090408`` -> ``538.1 MB`` (decimal units)."""
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def fmt_datetime(value: Optional[str]) -> str:
    """ISO 8601 -> ``2026-11-28 14:05 UTC``; anything unparsable is returned unchanged."""
    if not value:
        return "n/a"
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    offset = dt.utcoffset()
    if offset is None:
        return dt.strftime("%Y-%m-%d %H:%M")
    if offset.total_seconds() == 0:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.strftime("%Y-%m-%d %H:%M UTC%z")


def fmt_duration(seconds: Optional[float]) -> str:
    """``447.3`` -> ``7 min 27 s``."""
    if seconds is None:
        return "n/a"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m} min" if h else f"{m} min {s} s"


def short_sha(sha: Optional[str], n: int = 12) -> str:
    """First ``n`` hex digits and an ellipsis; the full digest is printed elsewhere."""
    if not sha:
        return "n/a"
    return sha if len(sha) <= n else sha[:n] + "…"


def fmt_value(value: Any) -> str:
    """Scalars as text, containers as compact sorted JSON, ``None`` as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def fmt_threshold(rule: dict[str, Any]) -> str:
    """Threshold with the rule's comparison: ``≤ 10.0%``, ``≤ +5.0 pp``, ``≥ 90.0%``."""
    op = {"max": "≤ ", "min": "≥ "}[rule["bound"]]
    value = fmt_pp(rule["threshold"]) if rule["kind"] == "drift" else fmt_pct(rule["threshold"])
    return op + value


def short_reason(rule: dict[str, Any]) -> str:
    """One short clause saying where the rule's 95% interval lies against its threshold.

    The policy's full reason restates the observed value and interval, which the rule table
    already shows in its own columns; page 1 has room only for the part that explains the
    verdict. When the interval is unknown, or the relation does not match the verdict (a policy
    that decides some other way), the full reason is returned unchanged.
    """
    lo, hi, limit = rule.get("ci_low"), rule.get("ci_high"), rule["threshold"]
    if lo is None or hi is None:
        return rule["reason"]
    if rule["bound"] == "max":
        within, beyond, side = hi <= limit, lo > limit, "above"
    else:
        within, beyond, side = lo >= limit, hi < limit, "below"
    if within and rule["verdict"] == "pass":
        return "Whole interval within the limit."
    if beyond and rule["verdict"] == "fail":
        return f"Whole interval {side} the limit."
    if not within and not beyond and rule["verdict"] == "inconclusive":
        return "Interval straddles the limit: more prompts needed."
    return rule["reason"]


def fmt_scope(scope: Optional[dict[str, Any]]) -> str:
    """``{"domain": "medical"}`` -> ``domain: medical``; empty scope -> ``all prompts``."""
    if not scope:
        return "all prompts"
    return ", ".join(f"{k}: {fmt_value(v)}" for k, v in sorted(scope.items()))


def slice_label(benchmark: str, domain: str, category: str) -> str:
    """Name of a slice of the suite: ``All prompts``, ``Domain: medical``, ``Benchmark: x · …``."""
    parts = [f"{name}: {value}" for name, value in
             (("Benchmark", benchmark), ("Domain", domain), ("Category", category)) if value != "*"]
    return " · ".join(parts) if parts else "All prompts"


# --- view helpers ---------------------------------------------------------------------------


def metric_slices(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rates and paired findings grouped by slice, overall first, then domains, benchmarks, rest.

    Each slice is ``{"label", "rows"}``; each row holds the metric and, where the report has
    them, the ``base`` and ``model`` rate findings and the ``paired`` finding.
    """
    metrics = report["metrics"]
    table: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}

    def row(f: dict[str, Any]) -> dict[str, Any]:
        key = (f["benchmark"], f["domain"], f["category"])
        return table.setdefault(key, {}).setdefault(
            f["metric"], {"metric": f["metric"], "label": metric_label(f["metric"]),
                          "base": None, "model": None, "paired": None})

    for f in metrics["rates"]:
        row(f)[f["model_role"]] = f
    for f in metrics["paired"]:
        r = row(f)
        r["paired"] = f
        r["direction"] = change_direction(f["metric"], f["diff"])

    def slice_rank(key: tuple[str, str, str]) -> tuple:
        bench, domain, category = key
        stars = (bench == "*", domain == "*", category == "*")
        kind = {(True, True, True): 0, (True, False, True): 1, (False, True, True): 2}.get(stars, 3)
        return (kind, bench, domain, category)

    order = METRIC_ORDER
    slices = []
    for key in sorted(table, key=slice_rank):
        rows = sorted(table[key].values(),
                      key=lambda r: (order.index(r["metric"]) if r["metric"] in order else 99, r["metric"]))
        for r in rows:
            r.setdefault("direction", "same")
        slices.append({"label": slice_label(*key), "rows": rows})
    return slices


# Model output can hold control characters that no font draws; show them as a visible mark.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return _CONTROL.sub("\ufffd", value)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        finalize=_printable,
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=fmt_pct, pp=fmt_pp, interval=fmt_interval, pvalue=fmt_p, bytes=fmt_bytes,
        datetime=fmt_datetime, duration=fmt_duration, short_sha=short_sha, value=fmt_value,
        threshold=fmt_threshold, scope=fmt_scope, metric=metric_label, reason_short=short_reason,
    )
    return env


def template_environment() -> jinja2.Environment:
    """The environment every template of the tool renders in: autoescaped, with the report's filters."""
    return _environment()


def judge_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The primary judge of each axis, as page 1 and the judge section show it."""
    rows = []
    for axis, info in report_judges(report).items():
        rows.append({"axis": axis, "title": AXIS_WORDS.get(axis, axis), "name": info["name"],
                     "version": info["version"], "measures": AXIS_MEASURES.get(axis, axis),
                     "description": info.get("description", ""), "rules": info.get("rules") or [],
                     "options": info.get("options") or {}, "validation_line": validation_line(info),
                     "validation_short": validation_line(info, short=True)})
    return rows


def audit_view(report: dict[str, Any]) -> Optional[dict[str, Any]]:
    """What the Audit parts of the page show, or None for a report without an audit.

    ``metrics``: per metric, the overall, per-domain and per-benchmark slices with the judge-only
    figures (from ``metrics``) beside the audited ones; ``rules``: rule id -> audited verdict;
    ``chart_svg``: the drift chart drawn from the audited paired findings.
    """
    audit = report.get("audit")
    if not audit:
        return None
    judged_rates = {(f["metric"], f["model_role"], f["benchmark"], f["domain"], f["category"]): f
                    for f in report["metrics"]["rates"]}
    judged_paired = {(f["metric"], f["benchmark"], f["domain"], f["category"]): f for f in report["metrics"]["paired"]}
    audited_rates = {(r["metric"], r["model_role"], r["benchmark"], r["domain"], r["category"]): r for r in audit["rates"]}
    rows = []
    for p in audit["paired"]:
        if p["category"] != "*" or (p["benchmark"] != "*" and p["domain"] != "*"):
            continue
        key = (p["metric"], p["benchmark"], p["domain"], p["category"])
        rows.append({"metric": p["metric"], "label": metric_label(p["metric"]), "slice": slice_label(*key[1:]),
                     "paired": p, "judge_paired": judged_paired.get(key),
                     **{role: audited_rates.get((p["metric"], role, *key[1:])) for role in ("base", "model")},
                     **{f"judge_{role}": judged_rates.get((p["metric"], role, *key[1:])) for role in ("base", "model")}})
    order = METRIC_ORDER
    rows.sort(key=lambda r: (order.index(r["metric"]) if r["metric"] in order else 99, r["metric"],
                             r["paired"]["benchmark"] != "*" or r["paired"]["domain"] != "*",
                             r["paired"]["benchmark"] != "*", r["paired"]["domain"], r["paired"]["benchmark"]))
    judged_rules = {r["rule_id"]: r for r in report["policy"]["rules"]}
    return {"audit": audit, "metrics": rows, "rules": {r["rule_id"]: r for r in audit["policy"]["rules"]},
            "rule_rows": [{"audited": r, "judged": judged_rules[r["rule_id"]]} for r in audit["policy"]["rules"]],
            "chart_svg": Markup(drift_chart_svg({"metrics": {"paired": audit["paired"]}}))}


def render_html(report: dict[str, Any]) -> str:
    """Render ``report`` (a dict following ``report.schema.json``) to one self-contained HTML page.

    Args:
        report: the report document.

    Returns:
        HTML with the stylesheet and the drift chart (SVG) inline; all report text escaped.
    """
    template = _environment().get_template(TEMPLATE_NAME)
    regressions = report["regressions"]
    return template.render(
        report=report,
        chart_svg=Markup(drift_chart_svg(report)),  # generated by us; labels are glyph paths
        chart_rows=chart_rows(report),
        metric_slices=metric_slices(report),
        top_regressions=regressions[:MAX_REGRESSIONS],
        n_regressions=len(regressions),
        excerpt_chars=EXCERPT_CHARS,
        judge_rows=judge_rows(report),
        max_judge_disagreements=MAX_JUDGE_DISAGREEMENTS,
        audit=audit_view(report),
    )


@contextlib.contextmanager
def _source_date_epoch(created_at: str) -> Iterator[None]:
    """Pin the timestamp fontTools writes into embedded font subsets to the report's date.

    Without it every PDF differs in the fonts' ``head.modified`` field. An existing
    ``SOURCE_DATE_EPOCH`` (reproducible-builds convention) is left alone.
    """
    if "SOURCE_DATE_EPOCH" in os.environ:
        yield
        return
    try:
        epoch = int(datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp())
    except ValueError:
        epoch = 0
    os.environ["SOURCE_DATE_EPOCH"] = str(max(epoch, 0))
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)


def render_pdf(report: dict[str, Any], out_path: Path) -> Path:
    """Render ``report`` to an A4 PDF at ``out_path``, written atomically.

    The PDF goes to a temporary file in the same folder first and is then moved into place,
    so readers never see a half-written file. No creation date is stamped beyond the
    report's own ``created_at`` (also used as ``SOURCE_DATE_EPOCH`` for the embedded font
    subsets), so the same report gives the same bytes with the same WeasyPrint and fonts.

    Args:
        report: the report document.
        out_path: where to write the PDF; its folder is created if missing.

    Returns:
        ``out_path``.
    """
    import weasyprint  # heavy import; only needed for PDFs

    html = weasyprint.HTML(string=render_html(report), base_url=str(resource_dir("templates")))
    with _source_date_epoch(report["created_at"]):
        data = html.write_pdf()
    return atomic_write_bytes(out_path, data)
