"""The fleet document: one entry per model, the drift cells of every instrument, the study's counts.

An *instrument* is a benchmark of the suite, or one domain's slice of it (and, when the suite has
several benchmarks, all its prompts together). Every metric a report measures on an instrument
is one *cell* of the drift map: the fine-tune's rate minus its base's, with its paired 95%
interval and McNemar p-value, copied from the model's own report.

Significance across the fleet: as in each report (:mod:`compliance.stats.multiplicity`), the
tested family is the per-benchmark cells, and here it spans every model: their McNemar p-values
are Holm-adjusted together (:func:`compliance.stats.holm`), so "how many fine-tunes degrade" is
not inflated by the number of models times benchmarks looked at. A cell is significant when its
fleet Holm p is below :data:`ALPHA` and its change is not zero. Domain slices (and all prompts
together) are subsets of the benchmarks' prompts: counting them as further tests would test the
same replies again, so, as in a report, they are descriptive (their ``holm_p`` is None; their
raw p stays in the table). Each report's own Holm p (across its benchmarks only) is kept beside.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from compliance.report.chart import METRIC_ORDER, change_direction, metric_label
from compliance.stats.multiplicity import ALPHA

__all__ = ["ALPHA", "COLUMNS", "FleetEntry", "cells_of", "fleet_counts", "in_family", "instrument_label",
           "instruments", "long_rows", "request_summary", "with_fleet_holm"]

ALL = "*"

#: Columns of ``fleet.csv`` / ``fleet.parquet``: one row per model and instrument cell.
COLUMNS = ["model", "base", "status", "verdict", "metric", "instrument", "benchmark", "domain", "n", "base_rate",
           "model_rate", "drift", "drift_ci_low", "drift_ci_high", "mcnemar_p", "report_holm_p", "fleet_holm_p",
           "significant", "direction", "error", "report_dir"]


@dataclass
class FleetEntry:
    """One model of the fleet: where it stands, and its report's drift cells once it has one.

    Attributes:
        model: the reference it was given as (Hub id, folder, built-in id).
        base: the base it was compared with (None until resolved).
        status: ``ok`` (its report is written), ``failed`` or ``pending``.
        error: the one-line reason it failed.
        verdict: the report's policy verdict.
        report_dir: its report folder, relative to the fleet's folder.
        attempts: how many times each of its tasks started (``resolve``, ``report``), retries included.
        resumed: its report was kept from an earlier run of the same fleet.
        seconds: wall time of its report task.
        generation: the report's ``reused``/``generated`` response counts per role.
        downloads: the Hub's download count, when the model came from discovery.
        cells: its drift cells (see :func:`cells_of`), with the fleet's Holm p.
    """

    model: str
    base: Optional[str] = None
    status: str = "pending"
    error: Optional[str] = None
    verdict: Optional[str] = None
    report_dir: Optional[str] = None
    attempts: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    seconds: Optional[float] = None
    generation: Optional[dict[str, Any]] = None
    downloads: Optional[int] = None
    cells: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        significant = [c for c in self.cells if c.get("significant")]
        data["degrades"] = any(c["direction"] == "worse" for c in significant) if self.status == "ok" else None
        data["improves"] = any(c["direction"] == "better" for c in significant) if self.status == "ok" else None
        return data


def request_summary(request: Any) -> dict[str, Any]:
    """What a fleet's reports depend on, from its template :class:`~compliance.request.ReportRequest`,
    with its sha256 (a resumed fleet keeps earlier reports only when this is unchanged).

    Progress, output folder and store location are left out: they do not change a report.
    """
    data = json.loads(json.dumps(asdict(request), default=str))
    data["output"].pop("progress", None)
    data["output"].pop("out_dir", None)
    data.pop("store", None)
    data["models"].pop("model", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return {**data, "sha256": digest}


def _is_instrument(p: dict[str, Any], several_benchmarks: bool) -> bool:
    if p["category"] != ALL:
        return False
    if p["benchmark"] == ALL and p["domain"] == ALL:
        return several_benchmarks  # the whole suite is an instrument of its own only beside its benchmarks
    return (p["benchmark"] == ALL) != (p["domain"] == ALL)  # one benchmark, or one domain slice


def cells_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report's drift cells: each metric on each instrument, from its paired findings."""
    paired = report["metrics"]["paired"]
    several = len({p["benchmark"] for p in paired if p["benchmark"] != ALL}) > 1
    cells = []
    for p in paired:
        if not _is_instrument(p, several):
            continue
        cells.append({"metric": p["metric"], "benchmark": p["benchmark"], "domain": p["domain"],
                      "instrument": instrument_label(p["benchmark"], p["domain"]), "n": p["n"],
                      "base_rate": p["base_rate"], "model_rate": p["model_rate"], "diff": p["diff"],
                      "ci_low": p["ci_low"], "ci_high": p["ci_high"], "mcnemar_p": p["mcnemar_p"],
                      "report_holm_p": p.get("holm_p"), "holm_p": None, "significant": False,
                      "direction": change_direction(p["metric"], p["diff"])})
    return cells


def instrument_label(benchmark: str, domain: str) -> str:
    """``starter``, ``domain: medical`` or ``all prompts``."""
    if benchmark != ALL:
        return benchmark
    return f"domain: {domain}" if domain != ALL else "all prompts"


def _column_key(metric: str, benchmark: str, domain: str) -> tuple:
    rank = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
    kind = 0 if benchmark == ALL and domain == ALL else 1 if domain == ALL else 2
    return (rank, metric, kind, benchmark, domain)


def instruments(entries: list[FleetEntry]) -> list[dict[str, str]]:
    """The map's columns: every (metric, instrument) any model has, grouped by metric, benchmarks before domains."""
    keys = {(c["metric"], c["benchmark"], c["domain"]) for e in entries for c in e.cells}
    return [{"metric": m, "benchmark": b, "domain": d, "instrument": instrument_label(b, d),
             "label": f"{metric_label(m)} · {instrument_label(b, d)}"}
            for m, b, d in sorted(keys, key=lambda k: _column_key(*k))]


def in_family(cell: dict[str, Any]) -> bool:
    """Whether a cell is tested: a benchmark (not a domain slice, not all prompts) with a McNemar p."""
    return cell["benchmark"] != ALL and cell["domain"] == ALL and cell["mcnemar_p"] is not None


def with_fleet_holm(entries: list[FleetEntry], alpha: float = ALPHA) -> int:
    """Holm-adjust the McNemar p of every model's benchmark cells together, in place; returns the
    family's size. Other cells get ``holm_p`` None and are never significant.

    The family is ordered by (model, metric, benchmark) before adjusting, so equal p-values
    always get the same ranks.
    """
    from compliance.stats import holm

    for e in entries:
        for c in e.cells:
            c["holm_p"], c["significant"] = None, False
    family = sorted(((e.model, c["metric"], c["benchmark"], id(c), c)
                     for e in entries if e.status == "ok" for c in e.cells if in_family(c)),
                    key=lambda t: t[:3])
    adjusted = holm([t[4]["mcnemar_p"] for t in family])
    for (*_, cell), p in zip(family, adjusted):
        cell["holm_p"] = p
        cell["significant"] = bool(p < alpha and cell["diff"])
    return len(family)


def fleet_counts(entries: list[FleetEntry]) -> dict[str, Any]:
    """The counts a study reports.

    ``degraded``: models with a significant change for the worse on at least one instrument;
    ``improved``: for the better on at least one; ``mixed``: better on one instrument and worse on
    another (opposite moves on one instrument, e.g. more refusals of harmful and of benign
    prompts, are a trade-off within it, not a disagreement between instruments).
    """
    ok = [e for e in entries if e.status == "ok"]
    verdicts = {v: sum(1 for e in ok if e.verdict == v) for v in ("pass", "fail", "inconclusive")}

    def moved(e: FleetEntry, direction: str) -> set[str]:
        return {c["instrument"] for c in e.cells if c["significant"] and c["direction"] == direction}

    mixed = sum(1 for e in ok if any(w != b for w in moved(e, "worse") for b in moved(e, "better")))
    return {"models": len(entries), "ok": len(ok), "failed": sum(1 for e in entries if e.status == "failed"),
            "pending": sum(1 for e in entries if e.status == "pending"), "verdicts": verdicts,
            "degraded": sum(1 for e in ok if moved(e, "worse")), "improved": sum(1 for e in ok if moved(e, "better")),
            "mixed": mixed}


def long_rows(entries: list[FleetEntry], columns: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per model and map column (empty numbers where a model has no such cell or no report)."""
    rows = []
    for e in entries:
        by_key = {(c["metric"], c["benchmark"], c["domain"]): c for c in e.cells}
        for col in columns or [{"metric": None, "benchmark": None, "domain": None, "instrument": None}]:
            c = by_key.get((col["metric"], col["benchmark"], col["domain"])) or {}
            rows.append({"model": e.model, "base": e.base, "status": e.status, "verdict": e.verdict,
                         "metric": col["metric"], "instrument": col["instrument"], "benchmark": col["benchmark"],
                         "domain": col["domain"], "n": c.get("n"), "base_rate": c.get("base_rate"),
                         "model_rate": c.get("model_rate"), "drift": c.get("diff"), "drift_ci_low": c.get("ci_low"),
                         "drift_ci_high": c.get("ci_high"), "mcnemar_p": c.get("mcnemar_p"),
                         "report_holm_p": c.get("report_holm_p"), "fleet_holm_p": c.get("holm_p"),
                         "significant": c.get("significant"), "direction": c.get("direction"), "error": e.error,
                         "report_dir": e.report_dir})
    return rows
