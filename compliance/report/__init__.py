"""Report: assemble the JSON document, validate it, and render it as HTML/PDF."""

from compliance.report.build import build_report, validate_report
from compliance.report.chart import drift_chart_svg
from compliance.report.render import render_html, render_pdf

__all__ = ["build_report", "drift_chart_svg", "render_html", "render_pdf", "validate_report"]
