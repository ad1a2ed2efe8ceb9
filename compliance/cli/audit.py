"""The audit command: draw a sample of a report's replies for a person to label, then fold the labels back."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compliance.cli.app import app, err, out
from compliance.errors import ComplianceError


@app.command()
def audit(
    report_dir: Path = typer.Argument(..., help="Report folder (holds report.json)."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Replies to label, two per prompt (default: planned "
                                                                "from the report's size and its judges' error rates)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for audit.html and audit.csv "
                                                               "(default: REPORT_DIR/audit)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Fold back this labels file: the audit-labels.json "
                                                                 "the sheet saved, or audit.csv with its label column filled."),
    auditor: Optional[str] = typer.Option(None, "--auditor", help="Who labelled (default: the name the sheet saved)."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Sign the audited report with this key folder (needed when "
                                                             "the report is signed; default $COMPLIANCE_SIGNING_KEYS)."),
    partial: bool = typer.Option(False, "--partial", help="Fold back a partly labelled sheet (strata without a label "
                                                          "count at their widest)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Audit a report: a person labels a seeded sample of its replies; prediction-powered intervals follow.

    Without --labels: draw the sample (stratified by model, axis and judge label) and write
    audit.html (offline; one key per label, undo, saves audit-labels.json) and audit.csv. The
    judges' labels and which model wrote each reply are not shown.

    With --labels: check the labels against the report and its sample, add the Audit section
    (judge agreement, prediction-powered intervals for every rate and drift, the policy on them),
    render the report again and sign it again.

    Example: compliance audit reports/my-model --sample 200, then
    compliance audit reports/my-model --labels ~/Downloads/audit-labels.json --auditor "A. Person"
    """
    from compliance import api

    if labels is None:
        if auditor or keys or partial:
            raise ComplianceError("--auditor, --keys and --partial apply when folding labels back: add --labels FILE")
        _draw(api, report_dir, sample, seed, out_dir)
        return
    if sample is not None or out_dir is not None:
        raise ComplianceError("--labels folds labels back and --sample/--out draw a sample: give one or the other")
    result = api.fold_audit(report_dir, labels, auditor=auditor, keys=keys, partial=partial, progress=not quiet)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    audit_section = result.audit
    out.print(audit_section["statement"], highlight=False, soft_wrap=True)
    judged = {r["rule_id"]: r for r in result.report["policy"]["rules"]}
    for change in audit_section["policy"]["changed"]:
        rule = judged[change["rule_id"]]
        lo, hi = change["ci_low"], change["ci_high"]
        where = "" if lo is None else f" (audited 95% interval {_fmt(lo, rule['kind'])} to {_fmt(hi, rule['kind'])})"
        out.print(f"  {change['rule_id']}: {change['judge_verdict']} -> {change['audited_verdict']}{where}",
                  highlight=False, soft_wrap=True)
    out.print(f"Report: {result.json_path}" + (f", {result.pdf_path}" if result.pdf_path else "") +
              (" (signed again)" if result.signed else ""), highlight=False, soft_wrap=True)
    out.print(f"Labels kept as {result.labels_path}", highlight=False, soft_wrap=True)


def _fmt(x: float, kind: str) -> str:
    return f"{100 * x:+.1f} pt" if kind == "drift" else f"{100 * x:.1f}%"


def _draw(api, report_dir: Path, size: Optional[int], seed: int, out_dir: Optional[Path]) -> None:
    from compliance.audit.sample import sample_plan_lines

    sheet = api.audit(report_dir, size=size, seed=seed, out_dir=out_dir)
    s = sheet.sample
    how = "the planned size" if s.planned else f"--sample {s.size}"
    out.print(f"Drew {s.size} replies ({s.size // 2} prompts, both models' replies to each) from {report_dir}, "
              f"seed {s.seed}, {how}:", highlight=False, soft_wrap=True)
    for line in sample_plan_lines(s):
        out.print(f"  {line}", highlight=False, soft_wrap=True)
    for note in s.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    out.print(f"Sheet: {sheet.html_path} (open in a browser; works offline) and {sheet.csv_path}", highlight=False, soft_wrap=True)
    out.print("The sheet hides the judges' labels and which model wrote each reply. When done: "
              f"compliance audit {report_dir} --labels audit-labels.json --auditor NAME", highlight=False, soft_wrap=True)
