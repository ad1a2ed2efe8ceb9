"""The audit's estimator: against the authors' library (ppi-python), and its coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compliance.audit.design import allocate, planned_prompts, select
from compliance.audit.ppi import BINARY, PAIRED_DIFF, drift_interval, ppi_mean, rate_interval
from compliance.audit.simulate import SCENARIOS, coverage
from compliance.stats.intervals import wilson_interval, z_for


def _population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 truth and a continuous judge score that tracks it (so the predictions vary within any stratum)."""
    y = (rng.random(n) < 0.3).astype(float)
    f = np.clip(0.7 * y + 0.15 + rng.normal(0, 0.2, n), 0, 1)
    return y, f


def test_point_estimate_and_rectifier_variance_match_ppi_python():
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    rng = np.random.default_rng(7)
    y, f = _population(rng, 500)
    # A simple random sample: one stratum.
    chosen = np.zeros(500, dtype=bool)
    chosen[rng.choice(500, 80, replace=False)] = True
    ours = ppi_mean(y[None], f[None], np.zeros((1, 500), dtype=int), 1, chosen[None], np.ones(500, dtype=bool),
                    smoothing=False, fpc=False)
    theirs = ppi_mean_pointestimate(y[chosen], f[chosen], f, lam=1)
    assert ours.point[0] == pytest.approx(float(np.squeeze(theirs)), abs=1e-12)
    # ppi-python's interval is estimate +- z sqrt(var(f)/N + var(y - f)/n) (population variances):
    # our audit-sample variance without the finite-population correction is its second term (with n - 1).
    lo, hi = ppi_mean_ci(y[chosen], f[chosen], f, alpha=0.05, lam=1)
    z = z_for(0.95)
    rectifier = ((float(np.squeeze(hi)) - float(np.squeeze(lo))) / (2 * z)) ** 2 - np.var(f) / 500
    n = chosen.sum()
    assert ours.label_var[0] * (n - 1) / n == pytest.approx(rectifier, rel=1e-9)

    # Stratified: our estimate is the size-weighted sum of ppi-python's estimate in each stratum.
    strata = (f > 0.5).astype(int) + 2 * (rng.random(500) < 0.5)
    take = np.array([[allocate([int((strata == h).sum()) for h in range(4)], 90)[h] for h in range(4)]])
    chosen = select(strata[None], rng.random((1, 500)), take)[0]
    ours = ppi_mean(y[None], f[None], strata[None], 4, chosen[None], np.ones(500, dtype=bool), smoothing=False)
    weighted = sum((strata == h).sum() / 500 * float(np.squeeze(ppi_mean_pointestimate(
        y[chosen & (strata == h)], f[chosen & (strata == h)], f[strata == h], lam=1))) for h in range(4))
    assert ours.point[0] == pytest.approx(weighted, abs=1e-12)


def test_every_reply_labelled_and_no_judge_error_gives_wilson():
    rng = np.random.default_rng(1)
    y = (rng.random(64) < 0.2).astype(float)
    strata = y.astype(int)[None]
    est = ppi_mean(y[None], y[None], strata, 2, np.ones((1, 64), dtype=bool), np.ones(64, dtype=bool))
    rate, lo, hi = rate_interval(est)
    assert est.label_var[0] == 0  # a census: nothing left to sample
    assert (lo[0], hi[0]) == pytest.approx(wilson_interval(int(y.sum()), 64), abs=1e-12)
    assert rate[0] == pytest.approx(y.mean())


def test_a_stratum_without_labels_counts_at_its_widest():
    y = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    f = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    strata = f.astype(int)
    everything = np.ones(6, dtype=bool)
    full = ppi_mean(y, f, strata, 2, np.array([[True, True, True, False, True, False]]), everything)
    no_zeros = ppi_mean(y, f, strata, 2, np.array([[True, False, True, False, True, True]]), everything)
    assert full.widen_low[0] == full.widen_high[0] == 0
    # The judge said 0 for both units of stratum 0, and no one checked: they may all be 1.
    assert (no_zeros.widen_low[0], no_zeros.widen_high[0]) == (0.0, pytest.approx(2 / 6))
    _, lo, hi = rate_interval(no_zeros)
    assert hi[0] - lo[0] > 2 / 6


def test_the_drift_interval_is_never_empty_on_a_thin_table():
    # One prompt, fully labelled, both replies differ: the prompts' part of the variance is not 0.
    y_d = np.array([[-1.0]])
    est = ppi_mean(y_d, y_d, np.zeros((1, 1), dtype=int), 1, np.ones((1, 1), dtype=bool), np.ones(1, dtype=bool),
                   PAIRED_DIFF)
    disc = ppi_mean(np.abs(y_d), np.abs(y_d), np.zeros((1, 1), dtype=int), 1, np.ones((1, 1), dtype=bool),
                    np.ones(1, dtype=bool), BINARY)
    d, lo, hi = drift_interval(est, disc)
    assert d[0] == -1 and lo[0] == -1 and hi[0] > 0


def test_the_default_size_is_the_smallest_that_meets_the_width():
    e, z = 0.10, z_for(0.95)

    def half_width(n: int, big_n: int) -> float:  # the audit sample's part of the drift's half-width
        return z * math.sqrt(2 * e * (1 - e) * (1 - n / big_n) / n)

    for population in (10, 64, 400, 5000):
        n = planned_prompts(population, e)
        assert n < population and half_width(n, population) <= 0.10 < half_width(n - 1, population)
    assert planned_prompts(64, e) == 34  # the figure the design module's docstring quotes
    assert planned_prompts(1, e) == 1 and planned_prompts(0, e) == 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_prediction_powered_intervals_cover_and_judge_only_ones_do_not(scenario):
    result = coverage(scenario, runs=2000, seed=0)
    for name, value in result.ppi.items():
        assert value >= 0.94, f"{name}: PPI coverage {value}"
    # The judge errs differently on the base and the fine-tune: the judge-only intervals miss the
    # drift (or a rate) far more often than 5% of the time.
    assert min(result.judge_only.values()) < 0.90, result.judge_only
    # With the judge's help the intervals are narrower than the person's labels alone would give.
    assert result.width["ppi"]["drift"] < result.width["person_only"]["drift"]
