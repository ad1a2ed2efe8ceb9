"""Fold a person's labels back into the report: checks, the audit section, re-render, re-sign.

The labels file is checked against the report it claims to come from (its digest), against the
sample that seed draws from that report (so the labelled replies are the drawn ones), and for
completeness; each problem is one line naming the file and the fix. The report then gains an
``audit`` section (schema 2.1), is rendered again and, when it was signed, signed again: the
labels file's sha256 and the auditor's name are part of the signed statement.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from compliance.audit.estimate import agreement_rows, audited_metrics, audited_policy, build_frame
from compliance.audit.sample import (
    AUDITED_SCHEMA_VERSION,
    AuditError,
    AuditSample,
    check_auditable,
    draw_sample,
    report_digest,
)
from compliance.audit.sheet import LabelsFile, normalise_label, read_labels
from compliance.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from compliance.progress import Reporter

__all__ = ["ESTIMATOR", "FoldResult", "fold_labels", "load_report", "match_labels"]

REPORT_JSON, REPORT_PDF, REPORT_HTML, ENVELOPE = "report.json", "report.pdf", "report.html", "report.intoto.json"

ESTIMATOR = {
    "name": "stratified prediction-powered inference",
    "confidence": 0.95,
    "description": (
        "Each rate is the judge's rate on every reply plus the person's corrections (person minus judge) on the "
        "sampled replies, each stratum's corrections weighted by its size over its sample size (Angelopoulos et al., "
        "Science 2023; stratified as in Fisch et al. 2024). The drift is the same estimator applied to each prompt's "
        "paired difference (fine-tune minus base) with the judge's paired difference as the prediction, so the "
        "pairing is kept exactly. Variance: the prompts' part (the suite is a sample of prompts; Wilson's score form "
        "for rates) plus the audit sample's part (finite-population corrected, each stratum's variance with one "
        "pseudo-observation spread over the outcome's values). A stratum with no labelled reply counts at its "
        "widest. Valid whatever the judge's errors; the judge only sets how narrow the interval is."),
}


@dataclass
class FoldResult:
    """What the fold-back wrote."""

    out_dir: Path
    json_path: Path
    html_path: Path
    pdf_path: Optional[Path]
    labels_path: Path
    signed: bool
    report: dict
    notes: list[str] = field(default_factory=list)

    @property
    def audit(self) -> dict:
        return self.report["audit"]


def load_report(report_dir: str | Path) -> tuple[Path, dict]:
    """The report folder and its ``report.json``, checked against its schema.

    Raises:
        AuditError: no such folder or report, or one that is not valid or has no prompts.
    """

    folder = Path(report_dir)
    path = folder / REPORT_JSON
    if not path.is_file():
        raise AuditError(f"{path} not found: give a report folder written by compliance report")
    from compliance.documents import DocumentError, read_capped
    from compliance.schemas import REPORT_MAX_BYTES, parse_report

    try:
        report = parse_report(read_capped(path, REPORT_MAX_BYTES))
    except DocumentError as exc:
        raise AuditError(f"{path} {exc}: give a report folder written by compliance report") from None
    check_auditable(report, str(path))
    return folder, report


def _listed(values: list[str], n: int = 5) -> str:
    shown = ", ".join(values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def match_labels(report: dict, labels: LabelsFile, where: str, partial: bool) -> tuple[AuditSample, dict]:
    """Check ``labels`` against ``report`` and its seeded sample; the sample and ``(axis, role, item) -> label``.

    Raises:
        AuditError: one line per problem: a labels file from another report, labels for items
            not in the report or replies outside the sample, a label that is not one of the
            axis's, a reply labelled twice, or (without ``partial``) a partly labelled sheet.
    """
    name = labels.path
    digest = report_digest(report)
    if labels.report_sha256 is None or labels.seed is None or labels.size is None:
        raise AuditError(f"labels file {name} does not say which sample it belongs to (report_sha256, seed, size): "
                         "give the file the sheet saved, or the audit.csv with its columns kept")
    if labels.report_sha256 != digest:
        named = f" ({labels.report_id})" if labels.report_id else ""
        raise AuditError(f"labels file {name} was drawn from another report{named}: its report sha256 "
                         f"{labels.report_sha256[:16]}… is not {where}'s {digest[:16]}… ({report['report_id']}); fold it "
                         "into the report it was drawn from, or draw a new sample with compliance audit REPORT_DIR --sample N")
    known_items = {it["item_id"] for it in report["items"]}
    strangers = sorted({e.item_id for e in labels.entries if e.item_id not in known_items})
    if strangers:
        raise AuditError(f"labels file {name} has labels for {len(strangers)} item(s) that are not in {where}: "
                         f"{_listed(strangers)}; remove those rows, or fold the file into the report they come from")
    sample = draw_sample(report, size=labels.size, seed=labels.seed, where=where)
    if labels.sample_sha256 != sample.sha256:
        raise AuditError(f"labels file {name}: its sample (sha256 {str(labels.sample_sha256)[:16]}…) is not the one "
                         f"seed {labels.seed} draws from {where} (sha256 {sample.sha256[:16]}…): it was drawn by another "
                         "version of compliance or edited; draw the sample again with compliance audit REPORT_DIR "
                         f"--sample {labels.size} --seed {labels.seed}")
    cards = {c.unit: c for c in sample.cards}
    outside = [e.where for e in labels.entries if e.unit not in cards or cards[e.unit].item_id != e.item_id
               or cards[e.unit].axis != e.axis]
    if outside:
        raise AuditError(f"labels file {name}: {len(outside)} label(s) are for replies outside the seeded sample "
                         f"({_listed(outside)}): label only the replies the sheet shows")
    human: dict[tuple[str, str, str], str] = {}
    seen: set[str] = set()
    for e in labels.entries:
        if e.unit in seen:
            raise AuditError(f"labels file {name}: {e.where} labels reply {e.unit} a second time: keep one label per reply")
        seen.add(e.unit)
        if e.label is None:
            continue
        label = normalise_label(e.label, e.axis)
        if label is None:
            from compliance.audit.sheet import AXES

            allowed = ", ".join(f"{o['label']} ({o['key']})" for o in AXES[e.axis]["options"])
            raise AuditError(f"labels file {name}: {e.where} has label {e.label!r}, not one of {allowed} for the "
                             f"{e.axis} axis")
        card = cards[e.unit]
        human[(card.axis, card.role, card.item_id)] = label
    missing = len(cards) - len(human)
    if not human:
        raise AuditError(f"labels file {name} has no labels: label the replies in audit.html (or the label column of "
                         "audit.csv) first")
    if missing and not partial:
        raise AuditError(f"labels file {name} labels {len(human)} of the {len(cards)} sampled replies: label the other "
                         f"{missing} (audit.html keeps your labels in the browser), or pass --partial to fold back "
                         "these (strata with no label then count at their widest)")
    return sample, human


def _statement(audit: dict, verdict: str, report: dict) -> str:
    primary = [r for r in audit["agreement"] if r["primary"] and r["model_role"] == "model"]
    agree = "; ".join(f"the {r['axis']} judge ({r['judge']}) agrees with the person on an estimated "
                      f"{100 * r['agreement']:.0f}% of the fine-tune's replies [{100 * r['ci_low']:.0f}, "
                      f"{100 * r['ci_high']:.0f}]" for r in primary)
    lab = audit["labels"]
    text = (f"{audit['auditor']} labelled {lab['n_labelled']} of {lab['n_sampled']} sampled replies "
            f"(labels sha256 {lab['sha256'][:12]}…): {agree}. ")
    changed = audit["policy"]["changed"]
    on = "prediction-powered intervals"
    if audit["policy"]["verdict"] == verdict:
        text += f"On {on} the policy verdict is still {verdict.upper()}"
    else:
        text += f"On {on} the policy verdict is {audit['policy']['verdict'].upper()} (judges alone: {verdict.upper()})"
    n_rules = len(report["policy"]["rules"])
    text += (f"; {len(changed)} of {n_rules} rules change." if changed else "; every rule keeps its verdict.")
    if lab["partial"]:
        text += f" Partly labelled: {lab['n_sampled'] - lab['n_labelled']} sampled replies have no label."
    return text


def build_audit(report: dict, sample: AuditSample, human: dict, labels: LabelsFile, auditor: str,
                labels_file: str, folded_at: datetime) -> dict:
    """The ``audit`` section for ``report``."""
    frame = build_frame(report, human)
    rates, paired = audited_metrics(report, frame)
    verdict = audited_policy(report, rates, paired)
    judged = {r["rule_id"]: r for r in report["policy"]["rules"]}
    rules = [asdict(r) for r in verdict.rules]
    changed = [{"rule_id": r["rule_id"], "judge_verdict": judged[r["rule_id"]]["verdict"], "audited_verdict": r["verdict"],
                "observed": r["observed"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
               for r in rules if r["verdict"] != judged[r["rule_id"]]["verdict"]]
    strata = sample.describe()
    metric_index = {p.metric: i for i, p in enumerate(frame.pops)}
    for s in strata["strata"]:
        cell = 4 * metric_index[s["metric"]] + 2 * s["base_event"] + s["model_event"]
        s["labelled"] = int(sum(((frame.strata[0] == cell) & frame.labelled(role)[0]).sum() for role in ("base", "model")))
    audit = {
        "report_sha256": sample.report_sha256,
        "report_schema_version": report["schema_version"],
        "auditor": auditor,
        "folded_at": folded_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": {"file": labels_file, "sha256": labels.sha256, "format": labels.format,
                   "n_labelled": len(human), "n_sampled": len(sample.cards), "partial": len(human) < len(sample.cards)},
        "sample": strata,
        "estimator": ESTIMATOR,
        "agreement": agreement_rows(report, frame),
        "rates": rates,
        "paired": paired,
        "policy": {"verdict": verdict.verdict, "rules": rules, "changed": changed},
    }
    audit["statement"] = _statement(audit, report["policy"]["verdict"], report)
    return audit


def fold_labels(report_dir: str | Path, labels_path: str | Path, auditor: Optional[str] = None,
                keys: Optional[str | Path] = None, partial: bool = False, progress: bool = False) -> FoldResult:
    """Fold a labels file into the report in ``report_dir``; see :mod:`compliance.audit.fold`.

    Args:
        report_dir: the report folder (``report.json``; ``report.pdf`` and the signature when present).
        labels_path: ``audit-labels.json`` from the sheet, or the filled ``audit.csv``.
        auditor: who labelled (default: the name saved in the labels file).
        keys: key folder to sign again with (default ``$COMPLIANCE_SIGNING_KEYS``); required when
            the report is signed, since its old signature no longer matches.
        partial: accept a partly labelled sheet.

    Raises:
        AuditError: any check above, a missing auditor name, or a signed report and no keys.
    """
    from compliance.constants import signing_keys_dir

    folder, report = load_report(report_dir)
    where = str(folder / REPORT_JSON)
    signed = (folder / ENVELOPE).is_file()
    keys_dir = Path(keys) if keys else signing_keys_dir()
    if keys_dir is None and signed:
        raise AuditError(f"{folder} is signed, and its signature will not match the audited report: give --keys DIR "
                         "(or set $COMPLIANCE_SIGNING_KEYS) to sign it again")
    if keys_dir is not None:
        from compliance.signing import load_signing_keys

        load_signing_keys(keys_dir)  # fail fast, before anything is written
    notes = []
    with Reporter(enabled=progress) as reporter:
        with reporter.stage("Check the labels against the report and its sample"):
            labels = read_labels(labels_path)
            sample, human = match_labels(report, labels, where, partial)
        name = (auditor or labels.auditor or "").strip()
        if not name:
            raise AuditError("give --auditor NAME: the audited report names the person who labelled "
                             f"(the labels file {labels.path} names no one)")
        if labels.format == "csv" or len(human) < len(sample.cards):
            notes.append(f"{len(human)} of {len(sample.cards)} sampled replies labelled" +
                         ("; strata with no label count at their widest" if len(human) < len(sample.cards) else ""))
        if "audit" in report:
            old = report["audit"]
            notes.append(f"replaces the audit folded on {old['folded_at']} by {old['auditor']}")
        labels_file = "audit-labels" + (".csv" if labels.format == "csv" else ".json")
        with reporter.stage("Prediction-powered intervals and the policy"):
            base = copy.deepcopy(report)
            if "audit" in base:
                base["schema_version"] = base.pop("audit")["report_schema_version"]
            audited = dict(base, schema_version=AUDITED_SCHEMA_VERSION)
            audited["audit"] = build_audit(base, sample, human, labels, name, labels_file, datetime.now(timezone.utc))
            from compliance.report.build import validate_report

            validate_report(audited)
        from compliance.report.render import render_html, render_pdf

        with reporter.stage("Render the report again"):
            pdf_path = None
            if (folder / REPORT_PDF).is_file():
                tmp = render_pdf(audited, folder / f".{REPORT_PDF}.audit.tmp")
                pdf_path = folder / REPORT_PDF
            html = render_html(audited)
        copy_path = folder / labels_file
        if Path(labels_path).resolve() != copy_path.resolve():
            atomic_write_bytes(copy_path, Path(labels_path).read_bytes())
        json_path = atomic_write_json(folder / REPORT_JSON, audited)
        html_path = atomic_write_text(folder / REPORT_HTML, html)
        if pdf_path is not None:
            os.replace(tmp, pdf_path)
        if keys_dir is not None:
            from compliance.signing import sign_report

            with reporter.stage("Sign the audited report"):
                sign_report(folder, keys_dir)
    return FoldResult(out_dir=folder, json_path=json_path, html_path=html_path, pdf_path=pdf_path,
                      labels_path=copy_path, signed=keys_dir is not None, report=audited, notes=notes)
