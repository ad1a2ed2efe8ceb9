"""Coverage of the audit's intervals, by simulation: many runs with a judge of known, unequal errors.

Each simulated run draws a suite of prompts, the labels a person would give the base model's and
the fine-tune's replies (paired: the two replies to one prompt are correlated), and a judge's
labels that err at known rates, differently on the base and on the fine-tune. The audit sample
is drawn as ``compliance audit`` draws it (strata = the judge's labels of the two replies, a
floor per stratum, the rest in proportion) and the intervals are computed as the report
computes them. An interval covers when it contains the rate a person would find on prompts like
the suite's (the superpopulation rate the run was drawn from).

Three intervals are compared: the prediction-powered one (judge on every reply, person on the
sample), the judge-only one the report gives without an audit (Wilson; Newcombe's paired
interval for the drift), which ignores the judge's errors, and the person-only one from a
simple random sample of the same number of prompts (Wilson; Newcombe), which ignores the judge.

``python -m compliance.audit.simulate`` prints the table the README quotes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from compliance.audit.design import DEFAULT_ERROR_RATE, allocate, planned_prompts, select
from compliance.audit.ppi import BINARY, PAIRED_DIFF, drift_interval, ppi_mean, rate_interval
from compliance.stats.intervals import wilson_interval
from compliance.stats.paired import newcombe_paired_interval

__all__ = ["Scenario", "SCENARIOS", "coverage"]


@dataclass(frozen=True)
class Scenario:
    """One simulated setting.

    Attributes:
        prompts: prompts in the suite (one population).
        base_rate, model_rate: the rate a person finds among the base's and the fine-tune's replies.
        both_rate: the share of prompts where both replies have the event (sets the pairing).
        base_errors, model_errors: the judge's (false-positive, false-negative) rates on each
            model's replies: unequal, so the judge alone gets the drift wrong.
        audited: prompts audited (both replies labelled); None: the default size for
            ``DEFAULT_ERROR_RATE``.
        slice_share: the share of prompts in a slice (a domain, say) also checked.
    """

    name: str
    prompts: int
    base_rate: float
    model_rate: float
    both_rate: float
    base_errors: tuple[float, float]
    model_errors: tuple[float, float]
    audited: Optional[int] = None
    slice_share: float = 0.5

    def n_audited(self) -> int:
        return self.audited if self.audited is not None else planned_prompts(self.prompts, DEFAULT_ERROR_RATE)


SCENARIOS = (
    Scenario("starter-size suite, drift up", prompts=64, base_rate=0.25, model_rate=0.40, both_rate=0.20,
             base_errors=(0.05, 0.10), model_errors=(0.20, 0.10)),
    Scenario("larger suite, rare events", prompts=400, base_rate=0.05, model_rate=0.10, both_rate=0.03,
             base_errors=(0.03, 0.10), model_errors=(0.10, 0.30)),
    Scenario("larger suite, drift down", prompts=400, base_rate=0.40, model_rate=0.30, both_rate=0.25,
             base_errors=(0.10, 0.05), model_errors=(0.02, 0.20)),
)


@dataclass
class Coverage:
    """Coverage (share of runs whose interval holds the truth) and mean width, per interval and quantity."""

    scenario: dict
    runs: int
    audited_prompts: int
    ppi: dict[str, float] = field(default_factory=dict)
    judge_only: dict[str, float] = field(default_factory=dict)
    person_only: dict[str, float] = field(default_factory=dict)
    width: dict[str, dict[str, float]] = field(default_factory=dict)


def _draw(s: Scenario, runs: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    cells = np.array([1 - s.base_rate - s.model_rate + s.both_rate, s.model_rate - s.both_rate,
                      s.base_rate - s.both_rate, s.both_rate])  # (base, model) = 00, 01, 10, 11
    if (cells < 0).any():
        raise ValueError(f"scenario {s.name}: rates {s.base_rate}, {s.model_rate}, {s.both_rate} are not a joint law")
    cell = rng.choice(4, size=(runs, s.prompts), p=cells)
    y_b, y_m = (cell >= 2).astype(float), (cell % 2).astype(float)

    def judge(y: np.ndarray, errors: tuple[float, float]) -> np.ndarray:
        flip = rng.random(y.shape) < np.where(y == 1, errors[1], errors[0])
        return np.where(flip, 1 - y, y)

    return {"y_b": y_b, "y_m": y_m, "f_b": judge(y_b, s.base_errors), "f_m": judge(y_m, s.model_errors),
            "slice": rng.random((runs, s.prompts)) < s.slice_share}


def _audit(s: Scenario, d: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The audit sample of every run, drawn as ``compliance audit`` draws it."""
    strata = (2 * d["f_b"] + d["f_m"]).astype(int)
    sizes = np.stack([(strata == h).sum(axis=1) for h in range(4)], axis=1)
    take = np.array([allocate(list(row), min(s.n_audited(), s.prompts)) for row in sizes.tolist()])
    return select(strata, rng.random(strata.shape), take)


def _ppi(d: dict[str, np.ndarray], chosen: np.ndarray, mask: np.ndarray) -> dict[str, tuple]:
    strata = (2 * d["f_b"] + d["f_m"]).astype(int)
    out = {role: rate_interval(ppi_mean(d[f"y_{role}"], d[f"f_{role}"], strata, 4, chosen, mask))
           for role in ("b", "m")}
    diff = ppi_mean(d["y_m"] - d["y_b"], d["f_m"] - d["f_b"], strata, 4, chosen, mask, PAIRED_DIFF)
    disc = ppi_mean(np.abs(d["y_m"] - d["y_b"]), np.abs(d["f_m"] - d["f_b"]), strata, 4, chosen, mask, BINARY)
    out["drift"] = drift_interval(diff, disc)
    return out


def _classical(b: np.ndarray, m: np.ndarray, mask: np.ndarray) -> dict[str, tuple]:
    """Wilson intervals for each rate and Newcombe's for the drift, per run, on 0/1 labels ``b``, ``m``."""
    lows, highs = {k: [] for k in ("b", "m", "drift")}, {k: [] for k in ("b", "m", "drift")}
    for r in range(b.shape[0]):
        sel = mask[r]
        bb, mm = b[r][sel].astype(bool), m[r][sel].astype(bool)
        n = int(sel.sum())
        for key, v in (("b", bb), ("m", mm)):
            lo, hi = wilson_interval(int(v.sum()), n)
            lows[key].append(lo)
            highs[key].append(hi)
        a, bo, co = int((bb & mm).sum()), int((bb & ~mm).sum()), int((~bb & mm).sum())
        lo, hi = newcombe_paired_interval(a, bo, co, n - a - bo - co)
        lows["drift"].append(lo)
        highs["drift"].append(hi)
    return {k: (None, np.array(lows[k]), np.array(highs[k])) for k in lows}


def coverage(s: Scenario, runs: int = 2000, seed: int = 0, confidence: float = 0.95) -> Coverage:
    """Simulate ``runs`` audits of scenario ``s`` and measure each interval's coverage and width.

    Quantities: ``base`` and ``model`` (the two rates) and ``drift`` on all prompts, and the same
    three on a random slice (``slice_*``), which checks the slice (domain) estimator.
    """
    if confidence != 0.95:
        raise ValueError("the simulation checks 95% intervals")
    rng = np.random.default_rng(seed)
    d = _draw(s, runs, rng)
    chosen = _audit(s, d, rng)
    truth = {"b": s.base_rate, "m": s.model_rate, "drift": s.model_rate - s.base_rate}
    names = {"b": "base", "m": "model", "drift": "drift"}
    srs = np.argsort(rng.random(d["y_b"].shape), axis=1) < s.n_audited()  # the person alone: an SRS
    result = Coverage(scenario=asdict(s), runs=runs, audited_prompts=s.n_audited())
    everything = np.ones(s.prompts, dtype=bool)
    for prefix, mask in (("", everything), ("slice_", d["slice"])):
        full = np.broadcast_to(mask, d["y_b"].shape)
        intervals = {
            "ppi": _ppi(d, chosen, mask),
            "judge_only": _classical(d["f_b"], d["f_m"], full),
            "person_only": _classical(d["y_b"], d["y_m"], full & srs),
        }
        for kind, by_key in intervals.items():
            for key, (_, lo, hi) in by_key.items():
                name = prefix + names[key]
                getattr(result, kind)[name] = round(float(np.mean((lo <= truth[key]) & (truth[key] <= hi))), 4)
                result.width.setdefault(kind, {})[name] = round(float(np.mean(hi - lo)), 4)
    return result


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for s in SCENARIOS:
        print(json.dumps(asdict(coverage(s, runs=args.runs, seed=args.seed))))


if __name__ == "__main__":
    main()
