"""Confidence intervals for a single binomial proportion."""

from __future__ import annotations

from functools import lru_cache
from math import sqrt

from scipy.stats import norm


@lru_cache(maxsize=32)  # scipy's ppf costs tens of microseconds; simulations call this often
def z_for(confidence: float) -> float:
    """Two-sided standard-normal quantile for a confidence level.

    Args:
        confidence: coverage in (0, 1), e.g. 0.95.

    Returns:
        ``z`` such that ``P(|Z| <= z) = confidence``.

    Raises:
        ValueError: if ``confidence`` is not strictly between 0 and 1.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` events in ``n`` trials (no continuity correction).

    Chosen over the Wald interval because it keeps close to nominal coverage for the small
    ``n`` and rates near 0 or 1 that per-category slices of a safety suite produce
    (Newcombe 1998, Stat Med 17:857-872; Brown, Cai & DasGupta 2001).

    Args:
        k: number of events, ``0 <= k <= n``.
        n: number of trials, ``n > 0``.
        confidence: two-sided coverage, e.g. 0.95.

    Returns:
        ``(low, high)``, clipped to ``[0, 1]``.

    Raises:
        ValueError: if ``n == 0``, ``k`` is outside ``[0, n]`` or ``confidence`` is outside (0, 1).
    """
    if n <= 0:
        raise ValueError(f"a Wilson interval needs n > 0 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n], got k={k}, n={n}")
    z = z_for(confidence)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    # At k == 0 or k == n the bound is 0 or 1 analytically; set it exactly so rounding noise
    # (a bound of 1e-17 or 0.9999999999999999) never reaches a report.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high
