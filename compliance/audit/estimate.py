"""From a report and a person's labels to audited rates, drifts, judge agreement and policy verdicts.

Every rate and paired drift the report has (each metric on each slice) gets a prediction-powered
interval (:mod:`compliance.audit.ppi`); the policy is then evaluated on those intervals with
:func:`compliance.policy.evaluate`, exactly as the report evaluated it on the judge-only ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from compliance.audit.ppi import BINARY, PAIRED_DIFF, agreement_interval, drift_interval, ppi_mean, rate_interval
from compliance.audit.sample import ROLES, Population, judge_event, population_items, populations
from compliance.policy import Policy, evaluate
from compliance.records import Findings, PairedFinding, PolicyVerdict, RateFinding

__all__ = ["Frame", "agreement_rows", "audited_metrics", "audited_policy", "build_frame", "policy_from_report"]

#: ``(axis, role, item_id) -> label`` as the person gave it.
HumanLabels = dict[tuple[str, str, str], str]
ALL = "*"


@dataclass
class Frame:
    """Every unit (a prompt of one population) with the judge's and the person's labels, as ``(1, U)`` arrays."""

    pops: list[Population]
    items: list[dict]  # the report item of each unit
    pop_index: np.ndarray  # (U,)
    strata: np.ndarray  # (1, U): 4 * population + 2 * base judge event + fine-tune judge event
    judge: dict[str, np.ndarray]  # role -> (1, U) 0/1 judge events
    person: dict[str, np.ndarray]  # role -> (1, U) 0/1 person events, NaN where unlabelled
    person_label: dict[str, list[Optional[str]]]  # role -> the person's label per unit

    @property
    def n_strata(self) -> int:
        return 4 * len(self.pops)

    def labelled(self, role: str) -> np.ndarray:
        return ~np.isnan(self.person[role])


def build_frame(report: dict, human: HumanLabels) -> Frame:
    """Arrange the report's judged replies and the person's labels by population."""
    pops = populations(report)
    items, pop_index, strata = [], [], []
    judge: dict[str, list[float]] = {r: [] for r in ROLES}
    person: dict[str, list[float]] = {r: [] for r in ROLES}
    person_label: dict[str, list[Optional[str]]] = {r: [] for r in ROLES}
    for p_i, pop in enumerate(pops):
        for it in population_items(report, pop):
            events = {r: judge_event(it[r], pop) for r in ROLES}
            items.append(it)
            pop_index.append(p_i)
            strata.append(4 * p_i + 2 * events["base"] + events["model"])
            for r in ROLES:
                label = human.get((pop.axis, r, it["item_id"]))
                judge[r].append(float(events[r]))
                person[r].append(np.nan if label is None else float(label == pop.event))
                person_label[r].append(label)
    return Frame(pops=pops, items=items, pop_index=np.array(pop_index, dtype=int),
                 strata=np.array([strata], dtype=int),
                 judge={r: np.array([v]) for r, v in judge.items()},
                 person={r: np.array([v]) for r, v in person.items()}, person_label=person_label)


def _in_slice(item: dict, key: tuple[str, str, str]) -> bool:
    bench, domain, category = key
    return ((bench == ALL or item["benchmark"] == bench) and (domain == ALL or item["domain"] == domain)
            and (category == ALL or item["category"] == category))


def _r(x: float) -> float:
    return round(float(x), 6)


def audited_metrics(report: dict, frame: Frame, confidence: float = 0.95) -> tuple[list[dict], list[dict]]:
    """Audited rates (both models) and paired drifts on every slice the report measured.

    Returns:
        ``(rates, paired)``: rows keyed like the report's ``metrics.rates`` / ``metrics.paired``
        with ``judge_rate`` / ``judge_diff`` (the report's figure), the audited estimate and its
        interval, ``n`` (prompts in the slice) and ``n_labelled`` (prompts whose reply(ies) the
        person labelled).
    """
    by_metric = {p.metric: i for i, p in enumerate(frame.pops)}
    judge_rates = {(f["metric"], f["model_role"], f["benchmark"], f["domain"], f["category"]): f
                   for f in report["metrics"]["rates"]}
    rates, paired = [], []
    for f in report["metrics"]["paired"]:
        if f["metric"] not in by_metric or not f["n"]:
            continue
        key = (f["benchmark"], f["domain"], f["category"])
        mask = (frame.pop_index == by_metric[f["metric"]]) & np.array([_in_slice(it, key) for it in frame.items])
        if not mask.any():
            continue
        est = {}
        for role in ROLES:
            e = ppi_mean(frame.person[role], frame.judge[role], frame.strata, frame.n_strata, frame.labelled(role), mask)
            rate, lo, hi = rate_interval(e, confidence)
            est[role] = rate
            judged = judge_rates[(f["metric"], role, *key)]
            rates.append({"metric": f["metric"], "model_role": role, "benchmark": key[0], "domain": key[1],
                          "category": key[2], "n": int(e.n[0]), "n_labelled": int(e.n_labelled[0]),
                          "judge_rate": judged["rate"], "rate": _r(rate[0]), "ci_low": _r(lo[0]), "ci_high": _r(hi[0])})
        both = frame.labelled("base") & frame.labelled("model")
        y_d = frame.person["model"] - frame.person["base"]
        f_d = frame.judge["model"] - frame.judge["base"]
        diff = ppi_mean(y_d, f_d, frame.strata, frame.n_strata, both, mask, PAIRED_DIFF)
        disc = ppi_mean(np.abs(y_d), np.abs(f_d), frame.strata, frame.n_strata, both, mask, BINARY)
        d, lo, hi = drift_interval(diff, disc, confidence)
        paired.append({"metric": f["metric"], "benchmark": key[0], "domain": key[1], "category": key[2],
                       "n": int(diff.n[0]), "n_labelled": int(diff.n_labelled[0]), "judge_diff": f["diff"],
                       "base_rate": _r(est["base"][0]), "model_rate": _r(est["model"][0]), "diff": _r(d[0]),
                       "ci_low": _r(lo[0]), "ci_high": _r(hi[0])})
    return rates, paired


def _judge_label(item: dict, role: str, judge_id: str, pop: Population) -> Optional[str]:
    side = item[role]
    label = (side.get("labels") or {}).get(judge_id)
    if label is None and judge_id == pop.judge:
        label = side["harm"]["label"] if pop.axis == "harm" else side["label"]
    return label


def agreement_rows(report: dict, frame: Frame, confidence: float = 0.95) -> list[dict]:
    """Each judge's agreement with the person on this run's replies, per axis and model.

    ``sample_agreement`` is the raw share on the labelled replies (strata are sampled unequally,
    so it over-weights rare judge labels); ``agreement`` estimates the share over every reply of
    the axis, with an interval for drawing the sample. The primary judge also gets its
    judge-by-person counts on the sample.
    """
    sensitivity = report.get("sensitivity") or {}
    rows = []
    for axis in sorted({p.axis for p in frame.pops}, key=lambda a: (a != "harm", a)):
        on_axis = np.isin(frame.pop_index, [i for i, p in enumerate(frame.pops) if p.axis == axis])
        primary = next(p.judge for p in frame.pops if p.axis == axis)
        judge_ids = [j["judge"] for j in sensitivity.get("judges", {}).get(axis, [])] or [primary]
        if primary not in judge_ids:
            judge_ids.insert(0, primary)
        for role in ROLES:
            person = frame.person_label[role]
            for judge_id in judge_ids:
                labels = [_judge_label(it, role, judge_id, frame.pops[p]) for it, p in zip(frame.items, frame.pop_index)]
                if any(lab is None for lab, inside in zip(labels, on_axis) if inside):
                    continue  # this judge did not label every reply on the axis
                agree = np.array([[float(h == j) if h is not None else np.nan for h, j in zip(person, labels)]])
                labelled = ~np.isnan(agree)
                e = ppi_mean(agree, np.zeros_like(agree), frame.strata, frame.n_strata, labelled, on_axis)
                share, lo, hi = agreement_interval(e, confidence)
                sample = labelled[0] & on_axis
                row = {"axis": axis, "model_role": role, "judge": judge_id, "primary": judge_id == primary,
                       "n": int(on_axis.sum()), "n_labelled": int(sample.sum()),
                       "n_agree": int(np.nansum(agree[0][sample])),
                       "sample_agreement": _r(np.nanmean(agree[0][sample])) if sample.any() else None,
                       "agreement": _r(share[0]), "ci_low": _r(lo[0]), "ci_high": _r(hi[0])}
                if judge_id == primary:
                    pairs = [(j, h) for j, h, s in zip(labels, person, sample) if s]
                    row["confusion"] = [{"judge": j, "person": h, "n": pairs.count((j, h))}
                                        for j, h in sorted(set(pairs))]
                rows.append(row)
    return rows


def policy_from_report(report: dict) -> Policy:
    """The policy as the report recorded it: its rules rebuilt from the rule verdicts (same digest)."""
    pol = report["policy"]
    rules = [{"id": r["rule_id"], "description": r["description"], "kind": r["kind"], "metric": r["metric"],
              "scope": r["scope"], r["bound"]: r["threshold"], "cites": r["citations"]} for r in pol["rules"]]
    return Policy(data={"name": pol["name"], "version": pol["version"], "rules": rules}, sha256=pol["sha256"],
                  path=f"report {report['report_id']}")


def audited_policy(report: dict, rates: list[dict], paired: list[dict]) -> PolicyVerdict:
    """The report's policy evaluated on the audited intervals.

    The findings handed to :func:`compliance.policy.evaluate` carry the audited rates, drifts
    and intervals; their counts (``k``, ``b``, ``c``) stay the judge's, which the policy does
    not read.
    """
    judged_rates = {(f["metric"], f["model_role"], f["benchmark"], f["domain"], f["category"]): f
                    for f in report["metrics"]["rates"]}
    judged_paired = {(f["metric"], f["benchmark"], f["domain"], f["category"]): f for f in report["metrics"]["paired"]}
    rate_findings = [RateFinding(model_role=r["model_role"], metric=r["metric"], benchmark=r["benchmark"],
                                 domain=r["domain"], category=r["category"],
                                 k=judged_rates[(r["metric"], r["model_role"], r["benchmark"], r["domain"],
                                                 r["category"])]["k"],
                                 n=r["n"], rate=r["rate"], ci_low=r["ci_low"], ci_high=r["ci_high"]) for r in rates]
    paired_findings = []
    for p in paired:
        judged = judged_paired[(p["metric"], p["benchmark"], p["domain"], p["category"])]
        paired_findings.append(PairedFinding(metric=p["metric"], benchmark=p["benchmark"], domain=p["domain"],
                                             category=p["category"], n=p["n"], base_rate=p["base_rate"],
                                             model_rate=p["model_rate"], diff=p["diff"], ci_low=p["ci_low"],
                                             ci_high=p["ci_high"], b=judged["b"], c=judged["c"], mcnemar_p=None))
    return evaluate(Findings(rates=rate_findings, paired=paired_findings), policy_from_report(report))
