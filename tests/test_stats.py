"""Tests for compliance.stats against published reference values and hand-counted tables."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from math import comb

import pytest
from scipy.stats import binomtest

from compliance.records import Judgement, SuiteItem
from compliance.stats import compare, mcnemar_exact, newcombe_paired_interval, wilson_interval

Z95 = 1.959963984540054


# --- Wilson -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        # k=0: the upper bound has the closed form z^2 / (n + z^2) = 3.8415 / 13.8415.
        (0, 10, (0.0, 0.2775)),
        # k=n/2: centre 0.5, half-width z*sqrt(0.025 + z^2/400) / (1 + z^2/10) = 0.2634.
        (5, 10, (0.2366, 0.7634)),
        # Newcombe (1998) Stat Med 17:857-872, Table I example 81/263: 0.2553 to 0.3662.
        (81, 263, (0.2553, 0.3662)),
        # Mirror of the first case.
        (10, 10, (0.7225, 1.0)),
    ],
)
def test_wilson_reference_values(k, n, expected):
    low, high = wilson_interval(k, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_zero_events_upper_bound_is_closed_form():
    _, high = wilson_interval(0, 37)
    assert high == pytest.approx(Z95**2 / (37 + Z95**2), abs=1e-12)


def test_wilson_is_exact_at_the_ends_and_widens_with_confidence():
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0
    lo90, hi90 = wilson_interval(30, 100, confidence=0.90)
    lo99, hi99 = wilson_interval(30, 100, confidence=0.99)
    assert lo99 < lo90 < 0.30 < hi90 < hi99


@pytest.mark.parametrize(
    ("k", "n", "confidence"), [(0, 0, 0.95), (3, 2, 0.95), (-1, 5, 0.95), (1, 5, 1.0)]
)
def test_wilson_rejects_bad_input(k, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(k, n, confidence)


# --- McNemar ------------------------------------------------------------------------------


def test_mcnemar_exact_small_table():
    # min(b, c) = 1 of n = 10: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024.
    assert mcnemar_exact(1, 9) == 0.021484375
    assert mcnemar_exact(9, 1) == 0.021484375
    # 0 of 5: 2 / 32.
    assert mcnemar_exact(0, 5) == 0.0625


def test_mcnemar_exact_degenerate_cases():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 4) == 1.0  # doubled tail exceeds 1
    assert mcnemar_exact(0, 1) == 1.0


@pytest.mark.parametrize(("b", "c"), [(3, 12), (20, 35), (0, 17), (150, 86), (3000, 3100)])
def test_mcnemar_exact_matches_scipy_binomial_test(b, c):
    expected = binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_exact_matches_direct_sum():
    b, c = 7, 19
    tail = sum(comb(26, i) for i in range(8))
    assert mcnemar_exact(b, c) == 2 * tail / 2**26


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --- Newcombe paired interval -------------------------------------------------------------


def test_newcombe_method_10_published_example():
    # Newcombe (1998) Stat Med 17:2635-2650 example: a=20, b=12, c=2, d=16, his difference
    # (b - c)/n = 0.20 with method 10 interval 0.0562 to 0.3292 (as also asserted by the
    # ratesci package's tests). Our difference is (c - b)/n, so swapping b and c gives his
    # orientation and the unswapped table gives the mirror image.
    low, high = newcombe_paired_interval(20, 2, 12, 16)
    assert (round(low, 4), round(high, 4)) == (0.0562, 0.3292)
    low, high = newcombe_paired_interval(20, 12, 2, 16)
    assert (round(low, 4), round(high, 4)) == (-0.3292, -0.0562)


def test_newcombe_uncorrected_phi_matches_method_8():
    # Same table with the plain phi coefficient: Newcombe's method 8, 0.0618 to 0.3242.
    low, high = newcombe_paired_interval(20, 2, 12, 16, correct_phi=False)
    assert (round(low, 4), round(high, 4)) == (0.0618, 0.3242)


def test_newcombe_second_published_example():
    # Cavo et al. (2012) via Fagerland, Lydersen & Laake (2014): table [[59, 6], [16, 80]],
    # difference (6 - 16)/161 = -0.0621 with Newcombe interval -0.1186 to -0.0046. Passing
    # b=16, c=6 puts our (c - b)/n in their orientation.
    low, high = newcombe_paired_interval(59, 16, 6, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def test_newcombe_correction_has_no_effect_when_ad_below_bc():
    # ad - bc = 0 - 24 < 0: the correction leaves phi alone.
    corrected = newcombe_paired_interval(36, 12, 2, 0)
    assert corrected == newcombe_paired_interval(36, 12, 2, 0, correct_phi=False)


def test_newcombe_no_discordance_and_empty_margin():
    # Nobody has the event: both rates are 0 with Wilson bounds (0, u), phi is taken as 0, and
    # each gap is sqrt(0^2 + u^2) = u, so the interval is (-u, u).
    low, high = newcombe_paired_interval(0, 0, 0, 10)
    u = Z95**2 / (10 + Z95**2)
    assert low == pytest.approx(-u, abs=1e-12)
    assert high == pytest.approx(u, abs=1e-12)


def test_newcombe_contains_estimate_and_stays_in_range():
    for a, b, c, d in [(0, 10, 0, 0), (0, 0, 10, 0), (5, 1, 0, 0), (1, 1, 7, 12), (0, 3, 3, 0)]:
        low, high = newcombe_paired_interval(a, b, c, d)
        diff = (c - b) / (a + b + c + d)
        assert -1.0 <= low <= diff <= high <= 1.0


def test_newcombe_rejects_empty_table():
    with pytest.raises(ValueError):
        newcombe_paired_interval(0, 0, 0, 0)


# --- compare ------------------------------------------------------------------------------

# id, benchmark, domain, category, expected, base label, model label
TABLE = [
    ("a1", "alpha", "medical", "drugs", "refuse", "refusal", "compliance"),
    ("a2", "alpha", "medical", "drugs", "refuse", "refusal", "refusal"),
    ("a3", "alpha", "medical", "drugs", "refuse", "refusal", "compliance"),
    ("a4", "alpha", "legal", "fraud", "refuse", "compliance", "compliance"),
    ("a5", "alpha", "legal", "fraud", "comply", "compliance", "refusal"),
    ("a6", "alpha", "medical", "drugs", "comply", "compliance", "compliance"),
    ("b1", "beta", "general", "weapons", "refuse", "refusal", "refusal"),
    ("b2", "beta", "general", "weapons", "refuse", "compliance", "refusal"),
    ("b3", "beta", "finance", "weapons", "refuse", "refusal", "compliance"),
    ("b4", "beta", "general", "cooking", "comply", "refusal", "refusal"),
]


def _suite():
    items = [
        SuiteItem(i, f"prompt {i}", cat, dom, exp, bench) for i, bench, dom, cat, exp, _, _ in TABLE
    ]
    base = [Judgement(i, lb, 1.0 if lb == "refusal" else 0.0, "test") for i, *_, lb, _ in TABLE]
    model = [Judgement(i, lm, 1.0 if lm == "refusal" else 0.0, "test") for i, *_, lm in TABLE]
    return items, base, model


def _index(findings):
    rates = {(f.metric, f.benchmark, f.domain, f.category, f.model_role): f for f in findings.rates}
    paired = {(f.metric, f.benchmark, f.domain, f.category): f for f in findings.paired}
    return rates, paired


def test_compare_hand_counted_overall():
    findings = compare(*_suite())
    rates, paired = _index(findings)
    # Refuse items a1-a4, b1-b3 (n=7). Base refuses a1 a2 a3 b1 b3; model refuses a2 b1 b2.
    base_refusals = rates["refusal_rate", "*", "*", "*", "base"]
    assert (base_refusals.k, base_refusals.n) == (5, 7)
    assert rates["refusal_rate", "*", "*", "*", "model"].k == 3
    p = paired["refusal_rate", "*", "*", "*"]
    assert (p.n, p.b, p.c) == (7, 3, 1)  # base only: a1 a3 b3; model only: b2
    assert p.diff == pytest.approx(-2 / 7)
    assert p.mcnemar_p == 0.625  # 2 * (1 + 4) / 16
    # Both refuse: a2 b1 (a=2); neither: a4 (d=1).
    assert (p.ci_low, p.ci_high) == newcombe_paired_interval(2, 3, 1, 1)
    # Without harm judgements the harm axis is not measured (not-refused is not harm).
    assert ("harmful_response_rate", "*", "*", "*") not in paired
    # Comply items a5 a6 b4 (n=3): base refuses b4; model refuses a5 b4.
    o = paired["over_refusal_rate", "*", "*", "*"]
    assert (o.n, o.b, o.c, o.mcnemar_p) == (3, 0, 1, 1.0)
    m = rates["over_refusal_rate", "*", "*", "*", "model"]
    assert (m.k, m.n, m.rate) == (2, 3, 2 / 3)
    assert (m.ci_low, m.ci_high) == wilson_interval(2, 3)


def test_compare_hand_counted_slices():
    rates, paired = _index(compare(*_suite()))
    alpha = paired["refusal_rate", "alpha", "*", "*"]
    assert (alpha.n, alpha.b, alpha.c, alpha.mcnemar_p) == (4, 2, 0, 0.5)
    medical = paired["refusal_rate", "*", "medical", "*"]
    assert (medical.n, medical.base_rate, medical.model_rate) == (3, 1.0, 1 / 3)
    # Category slices name the domain when it is unique, else "*".
    assert paired["refusal_rate", "alpha", "medical", "drugs"].n == 3
    assert paired["over_refusal_rate", "alpha", "medical", "drugs"].n == 1
    assert paired["refusal_rate", "alpha", "legal", "fraud"].n == 1
    weapons = paired["refusal_rate", "beta", "*", "weapons"]
    assert (weapons.n, weapons.b, weapons.c) == (3, 1, 1)
    assert rates["over_refusal_rate", "beta", "general", "cooking", "base"].k == 1
    # No findings for a metric with no eligible items in a slice.
    assert ("refusal_rate", "beta", "general", "cooking") not in paired
    assert ("over_refusal_rate", "*", "finance", "*") not in paired
    assert ("over_refusal_rate", "beta", "*", "weapons") not in paired


def test_compare_counts_and_order():
    findings = compare(*_suite())
    # 11 slices (overall, 2 benchmarks, 4 domains, 4 categories); refusal has items in 10 of
    # them (not cooking), over-refusal in 9 (not finance, not weapons); no harm judgements.
    assert len(findings.paired) == 10 + 9
    assert len(findings.rates) == 2 * len(findings.paired)
    keys = [(f.metric, f.benchmark, f.domain, f.category, f.model_role) for f in findings.rates]
    assert keys == sorted(keys)
    assert findings.paired[0].metric == "over_refusal_rate"
    assert (findings.paired[0].benchmark, findings.paired[0].domain) == ("*", "*")
    for rate in findings.rates:
        assert rate.ci_low <= rate.rate <= rate.ci_high
    for p in findings.paired:
        assert p.ci_low <= p.diff <= p.ci_high


def test_compare_is_deterministic_under_input_order():
    items, base, model = _suite()
    first = json.dumps(asdict(compare(items, base, model)), sort_keys=False)
    rng = random.Random(7)
    for _ in range(3):
        shuffled = [list(x) for x in (items, base, model)]
        for x in shuffled:
            rng.shuffle(x)
        assert json.dumps(asdict(compare(*shuffled)), sort_keys=False) == first


def test_compare_missing_judgement_names_the_item():
    items, base, model = _suite()
    with pytest.raises(ValueError, match="a3"):
        compare(items, base, [j for j in model if j.item_id != "a3"])
    with pytest.raises(ValueError, match="b4"):
        compare(items, [j for j in base if j.item_id != "b4"], model)


def test_compare_rejects_duplicate_and_unknown_judgements():
    items, base, model = _suite()
    with pytest.raises(ValueError, match="a1"):
        compare(items, base + [base[0]], model)
    with pytest.raises(ValueError, match="zz"):
        compare(items, base, model + [Judgement("zz", "refusal", 1.0, "test")])
    with pytest.raises(ValueError, match="a1"):
        compare(items + [items[0]], base, model)
