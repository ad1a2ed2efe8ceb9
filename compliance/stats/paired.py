"""Tests and intervals for two proportions measured on the same items (paired data).

The 2x2 table follows Newcombe's layout with the base model as the first measurement::

                    model: event   model: no event
    base: event          a               b
    base: no event       c               d

so ``b`` counts items where only the base has the event and ``c`` those where only the
model has it. Differences are always reported as model minus base, ``(c - b) / n``.
"""

from __future__ import annotations

from math import sqrt

from compliance.stats.intervals import wilson_interval


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar test of "base and model have the same event rate".

    Under the null hypothesis each discordant item is equally likely to fall either way, so
    ``min(b, c)`` is Binomial(b + c, 1/2); the two-sided p-value doubles its lower tail.
    Computed with exact integer arithmetic so the same counts give the same float on every
    platform (reports must be byte-identical across reruns).

    Args:
        b: items with the event under the base model only.
        c: items with the event under the fine-tuned model only.

    Returns:
        ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 0.5)``; 1.0 when
        there are no discordant items.

    Raises:
        ValueError: if ``b`` or ``c`` is negative.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Sum C(n, i) for i = 0..k with the ratio C(n, i+1) = C(n, i) * (n - i) / (i + 1).
    term = 1
    tail = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    # int / int is correctly rounded even when both exceed the float range.
    return min(1.0, 2 * tail / (1 << n))


def newcombe_paired_interval(
    a: int,
    b: int,
    c: int,
    d: int,
    confidence: float = 0.95,
    correct_phi: bool = True,
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for a difference of paired proportions.

    This is method 10 of Newcombe (1998), "Improved confidence intervals for the difference
    between binomial proportions based on paired data", Stat Med 17:2635-2650: Wilson
    intervals ``(l1, u1)`` for the base rate ``p1 = (a + b) / n`` and ``(l2, u2)`` for the
    model rate ``p2 = (a + c) / n`` are combined by "square and add", with a correlation
    term because the two rates are measured on the same items. For ``D = p2 - p1``::

        L = D - sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)
        U = D + sqrt((u2 - p2)^2 - 2 phi (u2 - p2)(p1 - l1) + (p1 - l1)^2)

    ``phi`` is the phi coefficient ``(ad - bc) / sqrt((a+b)(c+d)(a+c)(b+d))``, taken as 0
    when a margin is empty. With ``correct_phi=True`` (the default, and method 10 as
    published) a positive ``ad - bc`` is first reduced by ``n / 2``, floored at 0, before
    dividing; a negative one is used as is. The reduction is Newcombe's: it stops a strong
    positive correlation from making the interval too narrow. ``correct_phi=False`` uses the
    plain phi coefficient (what Newcombe numbers method 8).

    Published check, Newcombe's example a=20, b=12, c=2, d=16 (his difference is
    ``(b - c) / n = 0.20``): method 10 gives 0.0562 to 0.3292, method 8 0.0618 to 0.3242.

    Args:
        a: items with the event under both models.
        b: items with the event under the base model only.
        c: items with the event under the fine-tuned model only.
        d: items with the event under neither.
        confidence: two-sided coverage, e.g. 0.95.
        correct_phi: apply Newcombe's ``n / 2`` reduction to a positive ``ad - bc``.

    Returns:
        ``(low, high)`` for the model rate minus the base rate, within ``[-1, 1]``.

    Raises:
        ValueError: if any count is negative or the table is empty.
    """
    if min(a, b, c, d) < 0:
        raise ValueError(f"counts must be non-negative, got a={a}, b={b}, c={c}, d={d}")
    n = a + b + c + d
    if n == 0:
        raise ValueError("a paired interval needs at least one item (a + b + c + d > 0)")
    p1 = (a + b) / n
    p2 = (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence)
    l2, u2 = wilson_interval(a + c, n, confidence)
    phi = _phi(a, b, c, d, correct_phi)
    diff = (c - b) / n
    # With |phi| <= 1 both radicands are >= (x - y)^2 >= 0; max() only absorbs rounding.
    lower_gap = sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    upper_gap = sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, diff - lower_gap), min(1.0, diff + upper_gap)


def _phi(a: int, b: int, c: int, d: int, correct: bool) -> float:
    """Phi coefficient of the paired table, optionally with Newcombe's correction."""
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        # An empty margin means one model's rate is 0 or 1: no covariance to estimate.
        return 0.0
    cross = a * d - b * c
    if correct and cross > 0:
        return max(cross - (a + b + c + d) / 2, 0.0) / sqrt(margins)
    return cross / sqrt(margins)
