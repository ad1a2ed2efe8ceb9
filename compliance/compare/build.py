"""Load reports as candidates, check their signatures, rank them, and build the long table.

A metric a report did not measure (no such slice, or no prompts of that kind) is
``"not measured"``: its numbers are missing (empty in CSV, null in parquet), never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from compliance.errors import ComplianceError

NOT_MEASURED = "not measured"
VERDICT_ORDER = {"pass": 0, "inconclusive": 1, "fail": 2}

RANKING_RULE = (
    "Candidates are ranked by policy outcome first (pass, then inconclusive, then fail), then by the "
    "worst rule margin, largest first. A rule's margin is how far its 95% interval stays on the allowed "
    "side of its threshold: threshold minus the interval's upper end for a maximum, the interval's lower "
    "end minus the threshold for a minimum (percentage points; negative means the interval crosses or "
    "lies beyond the limit). A candidate's worst margin is the smallest over its policy's rules. "
    "Ties keep the order the reports were given in. Signatures do not change the rank; a candidate "
    "whose signature does not verify is flagged."
)

#: Columns of the long table, in order.
COLUMNS = ["rank", "model", "base", "policy", "verdict", "signature_ok", "judges", "metric", "benchmark", "domain",
           "category", "status", "n", "model_rate", "model_ci_low", "model_ci_high", "base_rate",
           "drift", "drift_ci_low", "drift_ci_high", "mcnemar_p", "report_id"]


class CompareError(ComplianceError):
    """A report given to ``compliance compare`` cannot be read."""


@dataclass
class Candidate:
    """One report, as a candidate in the comparison."""

    path: Path
    report: dict[str, Any]
    signature_ok: bool = False
    signature_reason: str = "unsigned"
    rank: int = 0

    @property
    def model(self) -> str:
        return self.report["summary"]["model"]

    @property
    def base(self) -> str:
        return self.report["summary"]["base"]

    @property
    def verdict(self) -> str:
        return self.report["summary"]["verdict"]

    @property
    def policy(self) -> str:
        return self.report["policy"]["name"]

    @property
    def judges(self) -> str:
        """The primary judge of each axis (``refusal: ...; harm: ...``)."""
        from compliance.report.versions import judge_names

        return judge_names(self.report)

    @property
    def worst_rule(self) -> Optional[dict[str, Any]]:
        margins = [(rule_margin(r), r) for r in self.report["policy"]["rules"]]
        known = [(m, r) for m, r in margins if m is not None]
        return min(known, key=lambda x: x[0])[1] if known else None

    @property
    def worst_margin(self) -> Optional[float]:
        rule = self.worst_rule
        return None if rule is None else rule_margin(rule)

    def summary(self) -> dict[str, Any]:
        worst = self.worst_rule
        return {"rank": self.rank, "model": self.model, "base": self.base, "verdict": self.verdict,
                "signature_ok": self.signature_ok, "signature_reason": self.signature_reason,
                "policy": self.policy, "judges": self.judges, "schema_version": self.report["schema_version"],
                "judge_sensitivity": self.report["summary"].get("judge_sensitivity"),
                "report_id": self.report["report_id"], "path": str(self.path),
                "worst_rule": None if worst is None else worst["rule_id"],
                "worst_margin": None if worst is None else round(rule_margin(worst), 6)}


@dataclass
class CompareResult:
    """The ranked candidates and the files written."""

    candidates: list[Candidate]
    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ranking_rule": RANKING_RULE, "candidates": [c.summary() for c in self.candidates],
                "files": {k: str(v) for k, v in self.files.items()}}


def rule_margin(rule: dict[str, Any]) -> Optional[float]:
    """How far the rule's 95% interval stays inside its threshold (negative: it crosses or lies beyond)."""
    lo = rule.get("ci_low") if rule.get("ci_low") is not None else rule.get("observed")
    hi = rule.get("ci_high") if rule.get("ci_high") is not None else rule.get("observed")
    if lo is None or hi is None:
        return None
    return rule["threshold"] - hi if rule["bound"] == "max" else lo - rule["threshold"]


def _read(path: Path) -> tuple[dict[str, Any], Path]:
    from compliance.documents import document_errors, read_capped
    from compliance.schemas import REPORT_MAX_BYTES, parse_report

    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f"{path}: no report.json found; give report folders written by `compliance report`")
    with document_errors(CompareError, str(file), "give report folders written by `compliance report`",
                         document_fix=False):
        report = parse_report(read_capped(file, REPORT_MAX_BYTES))
    return report, file.parent


def check_signature(folder: Path, keys_dir=None, key=None, trust=None) -> tuple[bool, str]:
    """``(ok, reason)`` for the report in ``folder``: ``"unsigned"`` when it has no envelope."""
    from compliance.signing import ENVELOPE, SigningError, verify_report

    if not (folder / ENVELOPE).is_file():
        return False, "unsigned"
    if keys_dir is None and key is None and trust is None:
        return False, "signed, but not checked: give --keys DIR (or --key/--trust) to verify"
    try:
        result = verify_report(folder, keys_dir=keys_dir, key=key, trust=trust)
    except (SigningError, ComplianceError) as exc:
        return False, str(exc)
    if result.ok:
        return True, "verified" + (f" (signer: {result.signer})" if result.signer else "")
    return False, result.failed[0]


def load_candidates(paths: list[str | Path], keys_dir=None, key=None, trust=None) -> list[Candidate]:
    """Read each report and check its signature."""
    if not paths:
        raise CompareError("give at least one report folder to compare")
    out = []
    for p in paths:
        report, folder = _read(Path(p))
        ok, reason = check_signature(folder, keys_dir, key, trust)
        out.append(Candidate(path=folder, report=report, signature_ok=ok, signature_reason=reason))
    return out


def rank_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """Sort by :data:`RANKING_RULE` and number the ranks from 1."""
    def key(ic: tuple[int, Candidate]) -> tuple:
        i, c = ic
        margin = c.worst_margin
        return (VERDICT_ORDER.get(c.verdict, 3), -(margin if margin is not None else -math.inf), i)

    ranked = [c for _, c in sorted(enumerate(candidates), key=key)]
    for n, c in enumerate(ranked, 1):
        c.rank = n
    return ranked


def _slice_key(f: dict[str, Any]) -> tuple[str, str, str, str]:
    return (f["metric"], f["benchmark"], f["domain"], f["category"])


def metric_keys(candidates: list[Candidate]) -> list[tuple[str, str, str, str]]:
    """Every (metric, benchmark, domain, category) any report has, overall first."""
    from compliance.report.chart import METRIC_ORDER as order

    keys = {_slice_key(f) for c in candidates for f in c.report["metrics"]["rates"]}

    def rank(k):
        metric, bench, domain, cat = k
        return (order.index(metric) if metric in order else 9, metric, bench != "*", bench, domain != "*", domain,
                cat != "*", cat)
    return sorted(keys, key=rank)


def cell(c: Candidate, key: tuple[str, str, str, str]) -> dict[str, Any]:
    """One candidate's numbers for one metric slice; ``status`` is ``not measured`` when absent."""
    rates = {(f["model_role"], *_slice_key(f)): f for f in c.report["metrics"]["rates"]}
    paired = {_slice_key(f): f for f in c.report["metrics"]["paired"]}
    m, b, p = rates.get(("model", *key)), rates.get(("base", *key)), paired.get(key)
    if m is None or m["rate"] is None or not m["n"]:
        return {"status": NOT_MEASURED, "n": None, "model_rate": None, "model_ci_low": None, "model_ci_high": None,
                "base_rate": None, "drift": None, "drift_ci_low": None, "drift_ci_high": None, "mcnemar_p": None}
    return {"status": "measured", "n": m["n"], "model_rate": m["rate"], "model_ci_low": m["ci_low"],
            "model_ci_high": m["ci_high"], "base_rate": None if b is None else b["rate"],
            "drift": None if p is None else p["diff"], "drift_ci_low": None if p is None else p["ci_low"],
            "drift_ci_high": None if p is None else p["ci_high"], "mcnemar_p": None if p is None else p["mcnemar_p"]}


def long_table(candidates: list[Candidate]) -> list[dict[str, Any]]:
    """One row per candidate and metric slice (the union over all reports), in rank order."""
    rows = []
    for c in candidates:
        for key in metric_keys(candidates):
            metric, bench, domain, cat = key
            rows.append({"rank": c.rank, "model": c.model, "base": c.base, "policy": c.policy, "verdict": c.verdict,
                         "signature_ok": c.signature_ok, "judges": c.judges, "metric": metric, "benchmark": bench,
                         "domain": domain,
                         "category": cat, **cell(c, key), "report_id": c.report["report_id"]})
    return rows


#: Numeric columns of the comparison's long table that may be missing (never written as 0).
_FLOAT_COLUMNS = ("model_rate", "model_ci_low", "model_ci_high", "base_rate", "drift", "drift_ci_low",
                  "drift_ci_high", "mcnemar_p")


def write_tables(rows: list[dict[str, Any]], out: Path, columns: list[str] = COLUMNS, stem: str = "compare",
                 integers: tuple[str, ...] = ("n",), floats: tuple[str, ...] = _FLOAT_COLUMNS,
                 booleans: tuple[str, ...] = ()) -> dict[str, Path]:
    """``<stem>.csv`` and ``<stem>.parquet`` of ``rows`` (missing numbers stay missing, never 0).

    Args:
        rows: one dict per row.
        out: the folder.
        columns: the columns, in order.
        stem: the files' name without suffix.
        integers, floats, booleans: columns typed as nullable integers, floats and booleans.
    """
    import io

    import pandas as pd

    from compliance.io import atomic_write_bytes, atomic_write_text

    df = pd.DataFrame(rows, columns=columns)
    for col in integers:
        df[col] = df[col].astype("Int64")
    for col in floats:
        df[col] = df[col].astype("float64")
    for col in booleans:
        df[col] = df[col].astype("boolean")
    files = {"csv": atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False))}
    try:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
    except ImportError:  # pyarrow is a dependency; a stripped install still gets the CSV
        return files
    files["parquet"] = atomic_write_bytes(out / f"{stem}.parquet", buf.getvalue())
    return files


def compare_reports(paths: list[str | Path], out_dir: Optional[str | Path] = None, keys_dir=None, key=None,
                    trust=None, pdf: bool = True) -> CompareResult:
    """Compare reports: rank them, and write HTML, PDF, CSV, parquet and JSON to ``out_dir``.

    Args:
        paths: report folders (or their ``report.json``).
        out_dir: where to write; nothing is written when None.
        keys_dir, key, trust: what signatures are verified against (as for ``compliance verify``).
        pdf: also render ``compare.pdf``.
    """
    from compliance.io import atomic_write_json, atomic_write_text

    candidates = rank_candidates(load_candidates(paths, keys_dir, key, trust))
    result = CompareResult(candidates=candidates, rows=long_table(candidates))
    if out_dir is not None:
        from compliance.compare.render import render_compare_html, render_compare_pdf

        out = Path(out_dir)
        html = render_compare_html(result)
        result.files["html"] = atomic_write_text(out / "compare.html", html)
        if pdf:
            result.files["pdf"] = render_compare_pdf(html, out / "compare.pdf")
        result.files.update(write_tables(result.rows, out))
        result.files["json"] = out / "compare.json"
        atomic_write_json(out / "compare.json", result.to_json())
    return result
