"""A human check inside the report: audit a sample of its replies, and intervals that stay valid when the judge errs.

Two steps, each one function:

1. :func:`draw_audit` draws a seeded sample of the report's replies, stratified by model role,
   axis and judge label, and writes a labelling sheet (``audit.html`` for a browser, ``audit.csv``
   for a spreadsheet) that hides the judges' labels and which model wrote each reply.
2. :func:`fold_labels` reads the person's labels back, checks them against the report and its
   sample, and adds an ``audit`` section: the judges' agreement with the person on this run's
   replies, prediction-powered intervals (:mod:`compliance.audit.ppi`) for every rate and paired
   drift, and the policy evaluated on them. The report is rendered and signed again.

Example:
    >>> from compliance import audit
    >>> sheet = audit.draw_audit("reports/my-model")            # doctest: +SKIP
    >>> audit.fold_labels("reports/my-model", "audit-labels.json", auditor="A. Person")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from compliance.audit.fold import FoldResult, fold_labels, load_report
from compliance.audit.sample import AuditError, AuditSample, draw_sample, report_digest
from compliance.audit.sheet import read_labels, write_sheet

__all__ = ["AuditError", "AuditSample", "AuditSheet", "FoldResult", "draw_audit", "draw_sample", "fold_labels",
           "read_labels", "report_digest", "write_sheet"]

#: Where the sheet goes by default, inside the report folder.
AUDIT_DIR = "audit"


@dataclass
class AuditSheet:
    """A drawn sample and the sheet written for it."""

    sample: AuditSample
    html_path: Path
    csv_path: Path


def draw_audit(report_dir: str | Path, size: Optional[int] = None, seed: int = 0,
               out_dir: Optional[str | Path] = None) -> AuditSheet:
    """Draw the audit sample of the report in ``report_dir`` and write its sheet.

    Args:
        report_dir: the report folder.
        size: replies to label (even); None: the planned default (:mod:`compliance.audit.design`).
        seed: the sample's seed.
        out_dir: where ``audit.html`` and ``audit.csv`` go (default ``REPORT_DIR/audit``).

    Raises:
        AuditError: an unreadable report, one with nothing to audit, or a bad size.
    """
    folder, report = load_report(report_dir)
    sample = draw_sample(report, size=size, seed=seed, where=str(folder / "report.json"))
    html, table = write_sheet(sample, report, Path(out_dir) if out_dir is not None else folder / AUDIT_DIR)
    return AuditSheet(sample=sample, html_path=html, csv_path=table)
