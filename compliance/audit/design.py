"""The audit sample's design: how many prompts to audit, how to spread them over strata, which ones.

The unit of sampling is a prompt of one *population* (a metric's prompts on its judge's axis:
harmful prompts on the harm axis, harmful prompts on the refusal axis, benign prompts on the
refusal axis). Both replies of a sampled prompt, the base model's and the fine-tune's, are
labelled, because the drift is a paired quantity: its estimator needs the person's label of
both replies to the same prompt. Strata are the judges' labels of the two replies (base
event, fine-tune event), so each population has up to four: model role x judge label.

Default size (a width computation). With a judge that errs on a share ``e`` of replies,
independently on the two replies of a prompt, the correction ``(y_m - y_b) - (f_m - f_b)`` of a
prompt's drift has variance about ``2 e (1 - e)``. The audit sample's part of the drift's 95%
half-width is ``z sqrt(2 e (1 - e) (1 - n/N) / n)``; the sample-size formula with the
finite-population correction (Cochran 1977, 4.2) gives the smallest ``n`` that keeps it within
``HALF_WIDTH``::

    n0 = z^2 * 2 e (1 - e) / HALF_WIDTH^2        n = ceil(n0 / (1 + n0 / N))

``e`` is one minus the judge's shipped held-out agreement with people (at least
``MIN_ERROR_RATE``; ``DEFAULT_ERROR_RATE`` for a judge without one). For the starter suite (64
prompts per population) and ``e = 0.1`` that is 34 prompts, 68 replies, per population.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from compliance.stats.intervals import z_for

__all__ = ["DEFAULT_ERROR_RATE", "HALF_WIDTH", "MIN_PER_STRATUM", "allocate", "planned_prompts", "select"]

#: The audit sample's largest part of the drift's 95% half-width that the default size aims for.
HALF_WIDTH = 0.10
#: Planning error rate of a judge that ships no held-out agreement figure.
DEFAULT_ERROR_RATE = 0.10
#: No judge is planned as better than this: held-out figures come from other models' replies.
MIN_ERROR_RATE = 0.05
#: Prompts every non-empty stratum gets first (all of it when smaller), so each stratum's
#: variance can be estimated.
MIN_PER_STRATUM = 2


def planned_prompts(population: int, error_rate: float, half_width: float = HALF_WIDTH,
                    confidence: float = 0.95) -> int:
    """Prompts to audit in a population of ``population`` prompts (the width computation above)."""
    if population <= 0:
        return 0
    e = min(max(error_rate, MIN_ERROR_RATE), 0.5)
    n0 = z_for(confidence) ** 2 * 2 * e * (1 - e) / half_width ** 2
    return min(population, math.ceil(n0 / (1 + n0 / population)))


def allocate(sizes: list[int], n: int, floor: int = MIN_PER_STRATUM,
             weights: Optional[list[float]] = None, floors: Optional[list[int]] = None) -> list[int]:
    """Spread ``n`` sampled units over strata of ``sizes``: a floor each, the rest in proportion.

    Every non-empty stratum first gets ``min(size, floor)`` (or its entry of ``floors``); the
    remainder goes in proportion to ``weights`` (default: the sizes), largest remainders first and
    ties to the earlier stratum, never more than a stratum holds. Proportional allocation is
    Neyman's when the judge errs equally often in every stratum, which is all a plan can assume
    before anyone has labelled anything.

    Raises:
        ValueError: ``n`` is smaller than the floors or larger than all strata together.
    """
    floors = list(floors) if floors is not None else [min(s, floor) for s in sizes]
    weights = list(weights) if weights is not None else [float(s) for s in sizes]
    if n < sum(floors) or n > sum(sizes):
        raise ValueError(f"cannot place {n} units in strata of sizes {sizes} (floors {sum(floors)})")
    alloc = list(floors)
    left = n - sum(floors)
    while left > 0:
        room = [s - a for s, a in zip(sizes, alloc)]
        open_weight = sum(w for w, r in zip(weights, room) if r > 0)
        quotas = [(left * w / open_weight if open_weight > 0 else left / sum(r > 0 for r in room)) if r > 0 else 0.0
                  for w, r in zip(weights, room)]
        given = [min(r, math.floor(q)) for q, r in zip(quotas, room)]
        if sum(given) == 0:  # hand out one at a time by largest remainder
            best = max((i for i, r in enumerate(room) if r > 0), key=lambda i: (quotas[i] - given[i], -i))
            given[best] = 1
        alloc = [a + g for a, g in zip(alloc, given)]
        left -= sum(given)
    return alloc


def select(strata: np.ndarray, keys: np.ndarray, take: np.ndarray) -> np.ndarray:
    """The units with the smallest keys in each stratum: a simple random sample of each, when keys are uniform.

    Args:
        strata: ``(R, U)`` stratum id of each unit.
        keys: ``(R, U)`` a uniform random number in [0, 1) per unit (a hash of the seed and the
            unit for a report, so anyone can draw the same sample again).
        take: ``(R, H)`` how many units to take from each stratum.

    Returns:
        ``(R, U)`` boolean: the selected units.
    """
    strata = np.atleast_2d(strata)
    keys = np.atleast_2d(keys)
    take = np.atleast_2d(take)
    order = np.argsort(strata + keys, axis=1, kind="stable")  # by stratum, then key
    sorted_strata = np.take_along_axis(strata, order, axis=1)
    counts = np.stack([(strata == h).sum(axis=1) for h in range(take.shape[1])], axis=1)
    starts = np.cumsum(counts, axis=1) - counts
    rank = np.arange(strata.shape[1])[None, :] - np.take_along_axis(starts, sorted_strata, axis=1)
    chosen_sorted = rank < np.take_along_axis(take, sorted_strata, axis=1)
    chosen = np.zeros_like(chosen_sorted)
    np.put_along_axis(chosen, order, chosen_sorted, axis=1)
    return chosen
