"""Prediction-powered inference (PPI) on a stratified audit sample, vectorised over runs.

The setting: every reply of a report has a judge's label ``f``; a person labels a stratified
random sample of them (``y``). PPI (Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, Science
2023) estimates the mean of ``y`` over all replies as the judge's mean plus the mean of the
person's corrections ``y - f`` on the sample. With a stratified sample each stratum's
corrections are weighted by ``N_h / n_h`` (stratified PPI; Fisch et al. 2024), which for a
slice ``S`` of the replies is::

    theta = ( sum_{i in S} f_i  +  sum_h (N_h / n_h) * sum_{i in sample_h, i in S} (y_i - f_i) ) / N_S

the Horvitz-Thompson domain estimator of Cochran (1977, 5A.14). It is unbiased for the slice's
mean of ``y`` whatever the judge's errors: the judge only decides how small the corrections,
and so the interval, are. Strata are the judge's labels, so the judge's information is used
through the stratification; there is no power-tuning factor to fit (within a stratum the judge's
label is constant, so PPI++'s lambda has nothing to act on).

The interval targets what the report's own intervals target: the rate a person would find on
prompts like the suite's (the suite is a sample of prompts). Its variance has two parts that do
not covary, one for drawing the prompts and one for drawing the audit sample among them::

    Var = sigma^2 / N_S  +  sum_h N_h^2 (1 - n_h / N_h) s_h^2 / n_h / N_S^2

``s_h^2`` is the variance of ``(y - f) * [i in S]`` in stratum ``h``, computed with two
pseudo-observations spread over the target's values (a Laplace-style smoothing, so a stratum
whose few sampled replies all agree with the judge does not claim zero error variance); the
point estimate uses no pseudo-observations. A stratum with no labelled reply (a partly
labelled sheet) adds its whole possible range to the interval: valid whatever the judge did
there, and wide.

Every array has a leading "runs" axis ``R`` (one report is ``R = 1``; the coverage simulation
runs thousands at once) and a "units" axis ``U``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from compliance.stats.intervals import z_for

__all__ = ["BINARY", "PAIRED_DIFF", "MeanEstimate", "Target", "agreement_interval", "drift_interval",
           "ppi_mean", "rate_interval", "stratum_sums"]


@dataclass(frozen=True)
class Target:
    """What one unit's value can be: its range and where the smoothing puts its two pseudo-observations."""

    values: tuple[float, ...]
    weights: tuple[float, ...]  # sum 2: two pseudo-observations per stratum
    low: float
    high: float


#: A 0/1 outcome (a rate, or agreement with the person): one pseudo-observation at 0, one at 1.
BINARY = Target(values=(0.0, 1.0), weights=(0.5, 0.5), low=0.0, high=1.0)
#: A paired difference of 0/1 outcomes (fine-tune minus base): half a pseudo-observation on each
#: of the four (base, fine-tune) cells, so -1 and +1 get a half each and 0 gets one.
PAIRED_DIFF = Target(values=(-1.0, 0.0, 1.0), weights=(0.25, 0.5, 0.25), low=-1.0, high=1.0)


@dataclass
class MeanEstimate:
    """A PPI estimate of a slice's mean, per run (arrays of shape ``(R,)``).

    Attributes:
        point: the estimate.
        label_var: variance from drawing the audit sample (second term above).
        n: units in the slice (``N_S``).
        n_labelled: labelled units in the slice.
        widen_low, widen_high: how far strata without any labelled unit push the interval out.
    """

    point: np.ndarray
    label_var: np.ndarray
    n: np.ndarray
    n_labelled: np.ndarray
    widen_low: np.ndarray
    widen_high: np.ndarray


def stratum_sums(strata: np.ndarray, n_strata: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function from ``(R, U)`` values to their ``(R, H)`` sums over each run's units in each stratum."""
    runs = strata.shape[0]
    index = (np.arange(runs)[:, None] * n_strata + strata).ravel()

    def sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=np.ascontiguousarray(np.broadcast_to(values, strata.shape)).ravel(),
                           minlength=runs * n_strata).reshape(runs, n_strata)

    return sums


def ppi_mean(y: np.ndarray, f: np.ndarray, strata: np.ndarray, n_strata: int, labelled: np.ndarray,
             mask: np.ndarray, target: Target = BINARY, smoothing: bool = True, fpc: bool = True) -> MeanEstimate:
    """Stratified PPI estimate of the mean of ``y`` over the units in ``mask``.

    Args:
        y: the person's values, ``(R, U)``; read only where ``labelled`` (NaN elsewhere is fine).
        f: the judge's values, ``(R, U)``.
        strata: ``(R, U)`` integer stratum of each unit, in ``range(n_strata)``: the stratum it
            was sampled in, over the whole population (not just the slice).
        n_strata: how many strata there are.
        labelled: ``(R, U)`` which units the person labelled (a simple random sample of each
            stratum, as drawn, or what is left of it when a sheet is partly labelled).
        mask: ``(R, U)`` or ``(U,)``: the slice whose mean is estimated.
        target: the range of one unit's value and the smoothing's pseudo-observations.
        smoothing: add the two pseudo-observations to each stratum's variance.
        fpc: apply the finite-population correction ``1 - n_h / N_h``.

    Returns:
        The estimate; :func:`rate_interval`, :func:`drift_interval` and
        :func:`agreement_interval` turn it into an interval.
    """
    y, f = np.atleast_2d(y).astype(float), np.atleast_2d(f).astype(float)
    labelled = np.atleast_2d(labelled).astype(bool)
    inside = np.broadcast_to(np.atleast_2d(mask), f.shape).astype(float)
    lab = labelled.astype(float)
    sums = stratum_sums(np.broadcast_to(np.atleast_2d(strata), f.shape), n_strata)

    size = sums(np.ones_like(f))  # N_h over the population
    size_in = sums(inside)  # N_h within the slice
    n_lab = sums(lab)  # n_h
    judge_in = sums(inside * f)  # the judge's total within the slice, per stratum
    resid = np.where(labelled, np.nan_to_num(y) - f, 0.0) * inside
    r1, r2 = sums(resid), sums(resid * resid)
    n_slice = inside.sum(axis=1)
    has = n_lab > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        expand = np.where(has, size / np.where(has, n_lab, 1.0), 0.0)
        denom = np.where(n_slice > 0, n_slice, 1.0)
        point = (judge_in.sum(axis=1) + (expand * r1).sum(axis=1)) / denom

        values, weights = np.asarray(target.values), np.asarray(target.weights)
        share = np.where(size > 0, size_in / np.where(size > 0, size, 1.0), 0.0)  # a pseudo-unit's chance to be in S
        judge_mean = np.where(size_in > 0, judge_in / np.where(size_in > 0, size_in, 1.0), 0.0)
        pseudo = values[None, None, :] - judge_mean[..., None]
        w_total = weights.sum() if smoothing else 0.0
        a0 = n_lab + w_total
        a1 = r1 + (share * (pseudo * weights).sum(axis=-1) if smoothing else 0.0)
        a2 = r2 + (share * (pseudo * pseudo * weights).sum(axis=-1) if smoothing else 0.0)
        s2 = np.where(a0 > 1, (a2 - a1 * a1 / np.where(a0 > 0, a0, 1.0)) / np.where(a0 > 1, a0 - 1, 1.0), 0.0)
        s2 = np.maximum(s2, 0.0)
        correction = (1.0 - n_lab / np.where(size > 0, size, 1.0)) if fpc else 1.0
        per_stratum = np.where(has, size * size * correction * s2 / np.where(has, n_lab, 1.0), 0.0)
        label_var = per_stratum.sum(axis=1) / (denom * denom)
        missing = (~has) & (size_in > 0)
        widen_low = np.where(missing, judge_in - target.low * size_in, 0.0).sum(axis=1) / denom
        widen_high = np.where(missing, target.high * size_in - judge_in, 0.0).sum(axis=1) / denom
    n_labelled = (lab * inside).sum(axis=1)
    return MeanEstimate(point=point, label_var=label_var, n=n_slice, n_labelled=n_labelled,
                        widen_low=widen_low, widen_high=widen_high)


def rate_interval(est: MeanEstimate, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rate, low, high)`` for a 0/1 outcome's rate: Wilson's score interval with the audit's variance added.

    Solves ``(theta - p)^2 = z^2 (p (1 - p) / N + label_var)`` for ``p``: the prompts' part of
    the variance is taken at the candidate rate, as Wilson's interval does, so the interval
    stays inside [0, 1] and behaves near 0 and 1. With every reply audited (``label_var`` 0)
    it is the Wilson interval of the person's labels.
    """
    z = z_for(confidence)
    theta = np.clip(est.point, 0.0, 1.0)
    n = np.where(est.n > 0, est.n, 1.0)
    a = 1.0 + z * z / n
    b = 2.0 * theta + z * z / n
    c = theta * theta - z * z * est.label_var
    root = np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))
    low = (b - root) / (2.0 * a) - est.widen_low
    high = (b + root) / (2.0 * a) + est.widen_high
    return theta, np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)


def drift_interval(diff: MeanEstimate, discordant: MeanEstimate,
                   confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(diff, low, high)`` for the mean paired difference (fine-tune minus base).

    Args:
        diff: the PPI estimate of the mean of ``y_model - y_base`` (:data:`PAIRED_DIFF`).
        discordant: the PPI estimate of the share of prompts whose two replies differ,
            ``|y_model - y_base|`` (:data:`BINARY`); with it the prompts' part of the
            variance is ``(P(discordant) - diff^2) / N``, the variance of a -1/0/+1 outcome,
            computed on the paired table with half a prompt added to each cell (Agresti and Min,
            Biometrics 2005), so a thin table does not give a zero-width interval.
    """
    z = z_for(confidence)
    d = np.clip(diff.point, -1.0, 1.0)
    disc = np.clip(discordant.point, np.abs(d), 1.0)
    n = np.where(diff.n > 0, diff.n, 1.0)
    # Agresti and Min (2005): half a prompt added to each cell of the paired 2x2 table keeps the
    # prompts' part of the variance away from 0 when the table is thin (all discordant one way, or none).
    disc_s, d_s = (disc * n + 1.0) / (n + 2.0), d * n / (n + 2.0)
    half = z * np.sqrt(np.maximum(disc_s - d_s * d_s, 0.0) / n + diff.label_var)
    return d, np.clip(d - half - diff.widen_low, -1.0, 1.0), np.clip(d + half + diff.widen_high, -1.0, 1.0)


def agreement_interval(est: MeanEstimate, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(share, low, high)`` for a share of *this run's* replies (no prompt-sampling part).

    Used for the judges' agreement with the person: the question is how often the judge was
    right on these replies, so only the audit sample is random.
    """
    z = z_for(confidence)
    share = np.clip(est.point, 0.0, 1.0)
    half = z * np.sqrt(est.label_var)
    return share, np.clip(share - half - est.widen_low, 0.0, 1.0), np.clip(share + half + est.widen_high, 0.0, 1.0)
