"""Render a fleet document to HTML and PDF with ``templates/fleet.html.j2`` (styled by report.css)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from compliance.compare.render import render_compare_pdf
from compliance.fleet.chart import drift_map_parts, scatter_axes, scatter_svg
from compliance.report.render import _environment

TEMPLATE_NAME = "fleet.html.j2"

__all__ = ["render_fleet_html", "render_fleet_pdf"]


def render_fleet_html(document: dict[str, Any]) -> str:
    """One self-contained HTML page (stylesheet and charts inline); every value from the document escaped."""
    axes = scatter_axes(document)
    return _environment().get_template(TEMPLATE_NAME).render(
        fleet=document,
        drift_maps=[Markup(svg) for svg in drift_map_parts(document)],  # drawn by us; matplotlib escapes text
        scatter=Markup(scatter_svg(document)),
        scatter_axes=axes,
    )


def render_fleet_pdf(html: str, out_path: Path) -> Path:
    """The PDF of ``html`` (from :func:`render_fleet_html`), written atomically."""
    return render_compare_pdf(html, out_path)
