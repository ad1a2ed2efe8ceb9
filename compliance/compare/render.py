"""Render a comparison to HTML and PDF with ``templates/compare.html.j2`` (styled by report.css)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compliance.compare.build import NOT_MEASURED, RANKING_RULE, CompareResult, cell, metric_keys
from compliance.report.chart import change_direction, metric_label
from compliance.report.render import _environment, slice_label

TEMPLATE_NAME = "compare.html.j2"


def _view(result: CompareResult) -> dict[str, Any]:
    cands = result.candidates
    rows = []
    for key in metric_keys(cands):
        metric, bench, domain, cat = key
        if cat != "*":
            continue  # page-sized: overall, per domain, per benchmark; the CSV has every slice
        cells = []
        for c in cands:
            x = cell(c, key)
            x["direction"] = change_direction(metric, x["drift"])
            cells.append(x)
        rows.append({"metric": metric_label(metric), "slice": slice_label(bench, domain, cat), "cells": cells})
    return {"candidates": cands, "rows": rows, "ranking_rule": RANKING_RULE, "not_measured": NOT_MEASURED,
            "created_at": max(c.report["created_at"] for c in cands)}


def render_compare_html(result: CompareResult) -> str:
    """One self-contained HTML page (report.css inline); all report text escaped."""
    return _environment().get_template(TEMPLATE_NAME).render(**_view(result))


def render_compare_pdf(html: str, out_path: Path) -> Path:
    """The PDF of ``html`` (from :func:`render_compare_html`), written atomically."""
    import weasyprint

    from compliance.io import atomic_write_bytes
    from compliance.resources import resource_dir

    data = weasyprint.HTML(string=html, base_url=str(resource_dir("templates"))).write_pdf()
    return atomic_write_bytes(out_path, data)
