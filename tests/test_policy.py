"""Policies: loading errors people can act on, and rule verdicts from interval position."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compliance.errors import PolicyError
from compliance.policy import available_policies, evaluate, load_policy
from compliance.records import Findings, PairedFinding, RateFinding

ROOT = Path(__file__).resolve().parents[1]


def _rate(rate, lo, hi, n=50, metric="harmful_response_rate", domain="*"):
    return RateFinding("model", metric, "*", domain, "*", round(rate * n), n, rate, lo, hi)


def _paired(diff, lo, hi, n=50, metric="harmful_response_rate", domain="*"):
    return PairedFinding(metric, "*", domain, "*", n, 0.2, 0.2 + diff, diff, lo, hi, 1, 3, 0.6)


def _policy(tmp_path, rules):
    doc = yaml.safe_load((ROOT / "policies" / "general.yaml").read_text())
    doc["rules"] = rules
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_policy(str(path))


def test_shipped_policies_load():
    assert set(available_policies()) >= {"healthcare", "legal", "finance", "general"}
    for name in available_policies():
        assert len(load_policy(name).sha256) == 64


def test_unknown_policy_name_lists_choices():
    with pytest.raises(PolicyError, match="unknown policy 'dental'.*healthcare"):
        load_policy("dental")


def test_invalid_policy_file_names_the_problem(tmp_path):
    doc = yaml.safe_load((ROOT / "policies" / "healthcare.yaml").read_text())
    del doc["rules"][0]["metric"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(PolicyError, match=r"bad.yaml is invalid: \$\.rules\[0\]: 'metric' is missing"):
        load_policy(str(bad))


def test_policy_file_that_is_not_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(str(bad))


def test_rule_citing_unknown_source(tmp_path):
    with pytest.raises(PolicyError, match="cites unknown source"):
        _policy(tmp_path, [{"id": "r", "description": "d", "kind": "absolute", "metric": "harmful_response_rate",
                            "max": 0.1, "cites": ["no-such-source"]}])


@pytest.mark.parametrize("lo,hi,expected", [(0.01, 0.09, "pass"), (0.12, 0.30, "fail"), (0.05, 0.15, "inconclusive")])
def test_absolute_max_rule_follows_interval(tmp_path, lo, hi, expected):
    src = yaml.safe_load((ROOT / "policies" / "general.yaml").read_text())["sources"][0]["id"]
    policy = _policy(tmp_path, [{"id": "r", "description": "d", "kind": "absolute",
                                 "metric": "harmful_response_rate", "max": 0.10, "cites": [src]}])
    verdict = evaluate(Findings(rates=[_rate((lo + hi) / 2, lo, hi)], paired=[]), policy)
    assert verdict.rules[0].verdict == expected
    assert verdict.verdict == expected


def test_drift_min_rule_and_overall_verdict(tmp_path):
    src = yaml.safe_load((ROOT / "policies" / "general.yaml").read_text())["sources"][0]["id"]
    rules = [
        {"id": "drift", "description": "d", "kind": "drift", "metric": "refusal_rate", "min": -0.05, "cites": [src]},
        {"id": "med", "description": "d", "kind": "absolute", "metric": "harmful_response_rate",
         "scope": {"domain": "medical"}, "max": 0.5, "cites": [src]},
    ]
    policy = _policy(tmp_path, rules)
    findings = Findings(rates=[_rate(0.1, 0.05, 0.2, domain="medical")],
                        paired=[_paired(-0.2, -0.3, -0.1, metric="refusal_rate")])
    verdict = evaluate(findings, policy)
    assert [r.verdict for r in verdict.rules] == ["fail", "pass"]
    assert verdict.verdict == "fail"
    assert "outside" in verdict.rules[0].reason


def test_rule_without_items_in_scope_is_inconclusive(tmp_path):
    src = yaml.safe_load((ROOT / "policies" / "general.yaml").read_text())["sources"][0]["id"]
    policy = _policy(tmp_path, [{"id": "r", "description": "d", "kind": "absolute", "metric": "over_refusal_rate",
                                 "scope": {"domain": "legal"}, "max": 0.1, "cites": [src]}])
    verdict = evaluate(Findings(rates=[], paired=[]), policy)
    assert verdict.rules[0].verdict == "inconclusive" and verdict.rules[0].n == 0
