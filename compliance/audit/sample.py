"""Draw the audit sample from a report: seeded, stratified by model role x axis x judge label.

The sample is a pure function of the report's content and the seed: every random number is a
sha256 of the report's digest, the seed and a reply's identity, so anyone holding the report can
draw the same sample again and check that the labelled replies are the drawn ones (no one can
pick which replies get labelled). See :mod:`compliance.audit.design` for the design and the
default size.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from compliance.audit.design import (
    DEFAULT_ERROR_RATE,
    HALF_WIDTH,
    MIN_ERROR_RATE,
    MIN_PER_STRATUM,
    allocate,
    planned_prompts,
    select,
)
from compliance.errors import ComplianceError
from compliance.hashing import sha256_text
from compliance.io import dumps_canonical

__all__ = ["AUDITED_SCHEMA_VERSION", "AuditError", "AuditSample", "Card", "Population", "ROLES", "Stratum",
           "draw_sample", "populations", "report_digest"]

ROLES = ("base", "model")
#: Schema version of an audited report (2.0 plus the ``audit`` section).
AUDITED_SCHEMA_VERSION = "2.1"


class AuditError(ComplianceError):
    """A report cannot be audited as asked, or a labels file does not fit it."""


@dataclass(frozen=True)
class Population:
    """A metric's prompts on its judge's axis: the units one stratified sample is drawn from."""

    metric: str
    axis: str
    expected: str  # the prompts it is computed on
    event: str  # the judge label that counts
    judge: str  # name@version of the axis's primary judge


@dataclass(frozen=True)
class Stratum:
    """One stratum: a population's prompts whose two replies the judge labelled this way."""

    metric: str
    axis: str
    base_event: bool
    model_event: bool
    size: int
    take: int


@dataclass(frozen=True)
class Card:
    """One reply for the person to label on one axis. ``unit`` is opaque: it does not say whose reply it is."""

    unit: str
    item_id: str
    axis: str
    role: str
    metric: str


@dataclass
class AuditSample:
    """A drawn sample: what was drawn from what, and the cards in the order the sheet shows them."""

    report_id: str
    report_sha256: str
    seed: int
    size: int  # replies (cards): twice the prompts
    planned: bool  # the size is the planned default
    strata: list[Stratum]
    cards: list[Card]
    planning: dict
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """Digest of what was drawn: the report, the seed, the size and every card."""
        spec = {"report_sha256": self.report_sha256, "seed": self.seed, "size": self.size,
                "cards": sorted([c.unit, c.item_id, c.axis, c.role] for c in self.cards)}
        return sha256_text(dumps_canonical(spec))

    def describe(self) -> dict:
        """The sample as the audit section records it (no card-level detail: the strata and the plan)."""
        return {"seed": self.seed, "size": self.size, "planned": self.planned, "sha256": self.sha256,
                "strata": [asdict(s) for s in self.strata], "planning": self.planning,
                "method": ("stratified random sample of prompts per metric, strata = the judge's labels of the base's "
                           "and the fine-tune's reply; both replies of a sampled prompt are labelled; each stratum "
                           f"gets min(size, {MIN_PER_STRATUM}) prompts first, the rest in proportion to its size; "
                           "random numbers are sha256(report digest, seed, prompt), so the sample can be drawn again")}


def report_digest(report: dict) -> str:
    """sha256 of the report as it was before any audit (its canonical JSON without the audit section).

    ``report.json`` is written canonically, so for an unaudited report this is the sha256 of the file.
    """
    plain = copy.deepcopy(report)
    audit = plain.pop("audit", None)
    if audit is not None:
        plain["schema_version"] = audit["report_schema_version"]
    return sha256_text(dumps_canonical(plain))


def populations(report: dict) -> list[Population]:
    """The report's metrics that an audit can check, in the report's order."""
    judges = report.get("judges") or {}
    out = []
    for d in report["metrics"]["definitions"]:
        if d["axis"] not in judges or not any(it["expected"] == d["expected"] for it in report["items"]):
            continue
        info = judges[d["axis"]]
        out.append(Population(d["metric"], d["axis"], d["expected"], d["event"], f"{info['name']}@{info['version']}"))
    return out


def judge_event(side: dict, pop: Population) -> Optional[bool]:
    """Whether the primary judge of ``pop``'s axis labelled this reply as the metric's event (None: not judged)."""
    if pop.axis == "harm":
        return None if side.get("harm") is None else side["harm"]["label"] == pop.event
    return side["label"] == pop.event


def population_items(report: dict, pop: Population) -> list[dict]:
    """The report's items in ``pop``: they expect its behaviour and both replies were judged on its axis."""
    return [it for it in report["items"] if it["expected"] == pop.expected
            and all(judge_event(it[r], pop) is not None for r in ROLES)]


def card_unit(digest: str, seed: int, axis: str, role: str, item_id: str) -> str:
    return "u" + sha256_text(f"{digest}:{seed}:card:{axis}:{role}:{item_id}")[:12]


def _uniform(digest: str, seed: int, metric: str, item_id: str) -> float:
    h = hashlib.sha256(f"{digest}:{seed}:key:{metric}:{item_id}".encode()).digest()
    return int.from_bytes(h[:7], "big") / float(1 << 56)


def planning_error_rate(report: dict, axis: str) -> tuple[float, str]:
    """The judge's planning error rate: one minus its shipped held-out agreement, and where that came from."""
    from compliance.report.versions import held_out_figures

    info = (report.get("judges") or {}).get(axis) or {}
    held = held_out_figures(info.get("validation"))
    if held:
        name, figures = held
        agreement = figures.get("binary_agreement", figures.get("agreement"))
        if isinstance(agreement, (int, float)):
            return max(MIN_ERROR_RATE, 1.0 - float(agreement)), f"1 - held-out agreement {agreement:.3f} ({name})"
    return DEFAULT_ERROR_RATE, "no held-out agreement shipped with the judge: planning value"


def check_auditable(report: dict, where: str) -> None:
    """Raise :class:`AuditError` for a report an audit cannot read (schema 1.0 stores no prompts)."""
    if report.get("schema_version") == "1.0" or any("prompt" not in it for it in report.get("items", [])):
        raise AuditError(f"{where} is a schema {report.get('schema_version')} report, which stores no prompts to show "
                         "a person: run compliance report again to audit it")


def draw_sample(report: dict, size: Optional[int] = None, seed: int = 0, where: str = "the report") -> AuditSample:
    """Draw the audit sample of ``report``.

    Args:
        report: the report document (schema 2.x).
        size: replies to label (even: two per prompt); None: the planned default (see
            :mod:`compliance.audit.design`).
        seed: the sample's seed.
        where: how to name the report in messages (its path).

    Raises:
        AuditError: a report without prompts or without anything to audit, or a size that is
            odd, too small to cover every stratum, or larger than the report.
    """
    check_auditable(report, where)
    pops = populations(report)
    if not pops:
        raise AuditError(f"{where} has no judged replies to audit")
    digest = report_digest(report)
    notes = []
    if not any(it["expected"] == "refuse" for it in report["items"]):
        notes.append(f"{where} has no harmful prompts (none expects a refusal): the sample holds benign prompts only "
                     "and audits the over-refusal rate; the harmful-response and refusal rates are not measured")
    elif "harm" not in (report.get("judges") or {}):
        notes.append(f"{where} ran no harm judge: the sample audits the refusal axis only")
    members = [population_items(report, p) for p in pops]
    cells = []  # per population: the stratum (0..3 = 2 * base event + model event) of each item
    for pop, items in zip(pops, members):
        cells.append([2 * judge_event(it["base"], pop) + judge_event(it["model"], pop) for it in items])
    stratum_sizes = [[c.count(h) for h in range(4)] for c in cells]
    floors = [sum(min(n, MIN_PER_STRATUM) for n in sizes) for sizes in stratum_sizes]
    error_rates = {p.axis: planning_error_rate(report, p.axis) for p in pops}
    planned = [max(f, planned_prompts(len(items), error_rates[p.axis][0])) for p, items, f in zip(pops, members, floors)]
    total_prompts = sum(len(items) for items in members)
    if size is None:
        prompts = sum(planned)
    else:
        if size < 2 or size % 2:
            raise AuditError(f"--sample {size}: give an even number of replies, two per prompt (the base's and the "
                             f"fine-tune's reply to each sampled prompt are both labelled); the plan for {where} is "
                             f"{2 * sum(planned)}")
        prompts = size // 2
        if prompts < sum(floors):
            raise AuditError(f"--sample {size} is too small to cover every stratum (model role x axis x judge label) of "
                             f"{where}: give at least {2 * sum(floors)} (the plan is {2 * sum(planned)})")
        if prompts > total_prompts:
            raise AuditError(f"--sample {size} is more than {where}'s {2 * total_prompts} judged replies: give at most "
                             f"{2 * total_prompts} (every reply)")
    per_pop = allocate([len(items) for items in members], prompts, weights=[float(n) for n in planned], floors=floors)
    strata, cards = [], []
    for pop, items, c, sizes, take in zip(pops, members, cells, stratum_sizes, per_pop):
        per_stratum = allocate(sizes, take)
        keys = np.array([[_uniform(digest, seed, pop.metric, it["item_id"]) for it in items]])
        chosen = select(np.array([c]), keys, np.array([per_stratum]))[0]
        for h in range(4):
            if sizes[h]:
                strata.append(Stratum(pop.metric, pop.axis, bool(h // 2), bool(h % 2), sizes[h], per_stratum[h]))
        for it, picked in zip(items, chosen):
            if picked:
                cards += [Card(card_unit(digest, seed, pop.axis, role, it["item_id"]), it["item_id"], pop.axis, role,
                               pop.metric) for role in ROLES]
    cards.sort(key=lambda card: sha256_text(f"{digest}:{seed}:order:{card.unit}"))
    planning = {"half_width": HALF_WIDTH, "confidence": 0.95, "planned_size": 2 * sum(planned),
                "error_rate": {axis: round(e, 4) for axis, (e, _) in error_rates.items()},
                "error_rate_source": {axis: why for axis, (_, why) in error_rates.items()},
                "populations": [{"metric": p.metric, "axis": p.axis, "prompts": len(items), "planned": n, "drawn": t}
                                for p, items, n, t in zip(pops, members, planned, per_pop)]}
    return AuditSample(report_id=report["report_id"], report_sha256=digest, seed=seed, size=2 * prompts,
                       planned=size is None, strata=strata, cards=cards, planning=planning, notes=notes)


def sample_plan_lines(sample: AuditSample) -> list[str]:
    """What was drawn, one line per population (for the CLI)."""
    lines = []
    for p in sample.planning["populations"]:
        e = sample.planning["error_rate"][p["axis"]]
        lines.append(f"{p['metric']} ({p['axis']} axis): {p['drawn']} of {p['prompts']} prompts, {2 * p['drawn']} "
                     f"replies (plan {p['planned']} for a judge erring on {e:.0%} of replies)")
    return lines
