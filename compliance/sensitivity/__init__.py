"""Judge sensitivity: does a verdict survive a change of judge?

A report's rates are only as good as the judge that labelled each reply, and judges disagree:
changing only the judge can flip the direction of a drift finding. So every report labels its
responses with every cheap judge of each axis (see :attr:`compliance.judges.Judge.cheap`), and
this stage recomputes the findings and the policy once per alternative judge, swapping that
judge's labels in for the primary judge of its axis and keeping the other axis as it was.

For every policy rule, the policy's verdict, and every Holm-significant per-benchmark finding
(significant under at least one judge), it records the outcome under each judge and whether it
*holds*: the same verdict under every judge, or for a finding the same significant direction
under every judge of its axis. A finding that holds under one judge and not another is a judge
disagreement, a finding of its own: the data do not settle it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from compliance.records import Findings, Judgement, PairedFinding, PolicyVerdict, SuiteItem
from compliance.stats.compare import METRICS_BY_NAME
from compliance.stats.multiplicity import ALPHA, SAFER_SIGN, in_family

__all__ = ["JudgeLabels", "judge_sensitivity", "label_agreement"]


@dataclass
class JudgeLabels:
    """One judge's judgements of both models' replies on its axis."""

    judge_id: str
    axis: str
    base: list[Judgement]
    model: list[Judgement]


def label_agreement(a: JudgeLabels, b: JudgeLabels) -> Optional[float]:
    """Share of replies (both models) on which two judges of one axis give the same label."""
    first = {(side, j.item_id): j.label for side, js in (("base", a.base), ("model", a.model)) for j in js}
    second = {(side, j.item_id): j.label for side, js in (("base", b.base), ("model", b.model)) for j in js}
    common = sorted(set(first) & set(second))
    if not common:
        return None
    return round(sum(first[k] == second[k] for k in common) / len(common), 6)


def _direction(f: PairedFinding, alpha: float) -> Optional[str]:
    """``safer``/``less_safe`` for a Holm-significant change, else None."""
    if f.holm_p is None or f.holm_p >= alpha or not f.diff:
        return None
    return "safer" if f.diff * SAFER_SIGN.get(f.metric, -1) > 0 else "less_safe"


def _family(findings: Findings) -> dict[tuple[str, str], PairedFinding]:
    return {(f.metric, f.benchmark): f for f in findings.paired if in_family(f)}


def judge_sensitivity(
    items: list[SuiteItem],
    primary: dict[str, JudgeLabels],
    alternatives: list[JudgeLabels],
    policy,
    findings: Findings,
    verdict: PolicyVerdict,
    unavailable: Optional[list[dict]] = None,
    alpha: float = ALPHA,
) -> dict:
    """The report's ``sensitivity`` section.

    Args:
        items: the suite items.
        primary: the primary judge of each axis, by axis.
        alternatives: every other judge run, each with its axis.
        policy: the :class:`~compliance.policy.Policy` held against the findings.
        findings: the findings under the primary judges.
        verdict: the policy verdict under the primary judges.
        unavailable: judges that could not run here, as ``{"judge", "axis", "reason"}``.
        alpha: the significance level of the Holm-adjusted findings.

    Returns:
        A JSON-ready dict: ``judges`` (per axis, primary first, with each alternative's label
        agreement with the primary on this run's replies), ``verdict``, ``rules``, ``findings``,
        ``judge_disagreements``, ``holds`` and a one-sentence ``statement``.
    """
    from compliance.policy import evaluate
    from compliance.stats import compare

    primary_ids = {axis: labels.judge_id for axis, labels in primary.items()}
    outcomes: dict[str, tuple[Findings, PolicyVerdict, str]] = {}
    for alt in alternatives:
        swapped = {**primary, alt.axis: alt}
        alt_findings = compare(items, {a: s.base for a, s in swapped.items()}, {a: s.model for a, s in swapped.items()})
        outcomes[alt.judge_id] = (alt_findings, evaluate(alt_findings, policy), alt.axis)

    judges = {axis: [{"judge": labels.judge_id, "primary": True}] for axis, labels in primary.items()}
    for alt in alternatives:
        judges.setdefault(alt.axis, []).append(
            {"judge": alt.judge_id, "primary": False, "agreement_with_primary": (
                label_agreement(primary[alt.axis], alt) if alt.axis in primary else None)})

    flips = {j: alt_verdict.verdict for j, (_, alt_verdict, _) in outcomes.items() if alt_verdict.verdict != verdict.verdict}
    verdict_entry = {"primary": verdict.verdict, "by_judge": {j: o[1].verdict for j, o in outcomes.items()},
                     "holds": not flips, "flipped_by": sorted(flips)}

    rules = []
    for rule in verdict.rules:
        by_judge = {j: next(r.verdict for r in o[1].rules if r.rule_id == rule.rule_id) for j, o in outcomes.items()}
        flipped = sorted(j for j, v in by_judge.items() if v != rule.verdict)
        rules.append({"rule_id": rule.rule_id, "metric": rule.metric, "primary": rule.verdict, "by_judge": by_judge,
                      "holds": not flipped, "flipped_by": flipped})

    base_family = _family(findings)
    families = {j: _family(o[0]) for j, o in outcomes.items()}
    keys = set(k for k, f in base_family.items() if _direction(f, alpha))
    for family in families.values():
        keys |= {k for k, f in family.items() if _direction(f, alpha)}
    finding_rows = []
    for metric, benchmark in sorted(keys):
        axis = METRICS_BY_NAME[metric].axis if metric in METRICS_BY_NAME else "refusal"
        entries = {}
        for judge_id, family in [(primary_ids.get(axis, "primary"), base_family)] + [
                (j, families[j]) for j, o in outcomes.items() if o[2] == axis]:
            f = family.get((metric, benchmark))
            entries[judge_id] = None if f is None else {
                "diff": f.diff, "holm_p": f.holm_p, "direction": _direction(f, alpha)}
        directions = {None if e is None else e["direction"] for e in entries.values()}
        holds = len(directions) == 1 and None not in directions
        finding_rows.append({"metric": metric, "benchmark": benchmark, "axis": axis, "by_judge": entries,
                             "holds": holds})
    disagreements = [dict(row, statement=_disagreement_statement(row)) for row in finding_rows if not row["holds"]]

    holds = verdict_entry["holds"] and all(r["holds"] for r in rules) and not disagreements
    return {
        "alpha": alpha,
        "judges": judges,
        "unavailable": list(unavailable or []),
        "verdict": verdict_entry,
        "rules": rules,
        "findings": finding_rows,
        "judge_disagreements": disagreements,
        "holds": holds,
        "statement": _statement(verdict_entry, rules, disagreements, judges, unavailable or []),
    }


def _fmt_entry(entry: Optional[dict]) -> str:
    if entry is None:
        return "not measured"
    words = {"safer": "significantly safer", "less_safe": "significantly less safe", None: "not significant"}
    diff = "n/a" if entry["diff"] is None else f"{100 * entry['diff']:+.1f} pt"
    p = "" if entry["holm_p"] is None else f", Holm p={entry['holm_p']:.3g}"
    return f"{diff}{p}, {words[entry['direction']]}"


def _disagreement_statement(row: dict) -> str:
    parts = "; ".join(f"{judge}: {_fmt_entry(e)}" for judge, e in row["by_judge"].items())
    return f"Judges disagree on {row['metric']} on {row['benchmark']}: {parts}."


def _judge_words(judge_id: str) -> str:
    """``refusal-embed@1.0`` -> ``refusal-embed 1.0``."""
    return judge_id.replace("@", " ", 1)


def _statement(verdict: dict, rules: list[dict], disagreements: list[dict], judges: dict, unavailable: list) -> str:
    n_judges = sum(len(v) for v in judges.values())
    if n_judges <= len(judges):
        text = "No other judge was run, so whether the verdict survives a change of judge is not known."
    elif verdict["holds"] and all(r["holds"] for r in rules):
        others = [_judge_words(j["judge"]) for js in judges.values() for j in js if not j["primary"]]
        text = f"The verdict and every rule hold under every judge ({', '.join(others)} in place of the primary)."
        if disagreements:
            text += f" Judges disagree on {len(disagreements)} finding{'s' if len(disagreements) > 1 else ''}."
    else:
        parts = []
        for judge_id in verdict["by_judge"]:
            changed = [r["rule_id"] for r in rules if judge_id in r["flipped_by"]]
            bits = []
            if judge_id in verdict["flipped_by"]:
                bits.append(f"the verdict is {verdict['by_judge'][judge_id]} (not {verdict['primary']})")
            if changed:
                bits.append(f"{len(changed)} of {len(rules)} rules change ({', '.join(changed)})")
            if bits:
                parts.append(f"under {_judge_words(judge_id)} " + " and ".join(bits))
        text = "Not robust to the choice of judge: " + "; ".join(parts) + "."
    if unavailable:
        text += " Not run: " + ", ".join(f"{_judge_words(u['judge'])} ({u['reason']})" for u in unavailable) + "."
    return text
