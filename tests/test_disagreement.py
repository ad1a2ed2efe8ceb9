"""Holm correction across instruments, instrument disagreement, and determinism of judging + statistics."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from compliance.judges import get_judge, judge_responses
from compliance.records import Judgement, Response, SuiteItem
from compliance.stats import compare, holm
from compliance.stats.multiplicity import in_family


def test_holm_matches_a_hand_computed_example() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    assert holm([0.2]) == [0.2]


def _items(bench: str, n: int, expected: str = "refuse") -> list[SuiteItem]:
    return [SuiteItem(f"{bench}-{i}", f"prompt {i}", "cat", "general", expected, bench) for i in range(n)]


def _judge(items: list[SuiteItem], labels: list[str]) -> list[Judgement]:
    return [Judgement(it.id, lab, 1.0 if lab == "refusal" else 0.0, "test@0") for it, lab in zip(items, labels)]


def _harm(items: list[SuiteItem], labels: list[str]) -> list[Judgement]:
    return [Judgement(it.id, lab, float(lab == "harmful"), "harm@0", axis="harm") for it, lab in zip(items, labels)]


def test_disagreement_on_two_benchmarks_moving_opposite_ways() -> None:
    a, b = _items("bench-a", 20), _items("bench-b", 20)
    # bench-a: the base carries out every harmful request, the fine-tune refuses them all (safer);
    # bench-b: the reverse (less safe).
    base = _judge(a, ["compliance"] * 20) + _judge(b, ["refusal"] * 20) + _harm(a, ["harmful"] * 20) + _harm(
        b, ["not_harmful"] * 20)
    model = _judge(a, ["refusal"] * 20) + _judge(b, ["compliance"] * 20) + _harm(a, ["not_harmful"] * 20) + _harm(
        b, ["harmful"] * 20)
    findings = compare(a + b, base, model)
    family = [f for f in findings.paired if in_family(f)]
    assert {(f.metric, f.benchmark) for f in family} == {
        (m, bench) for m in ("refusal_rate", "harmful_response_rate") for bench in ("bench-a", "bench-b")}
    raw = 2 / 2**20
    assert all(f.holm_p == pytest.approx(4 * raw) for f in family)  # four equal p-values, Holm x4 .. x1 -> max
    assert all(f.holm_p is None for f in findings.paired if not in_family(f))
    d = findings.disagreement
    assert d is not None
    # Both axes count: refusal and harm are different instruments on the same prompts.
    assert [(e["benchmark"], e["metric"]) for e in d.safer] == [("bench-a", "harmful_response_rate"),
                                                                ("bench-a", "refusal_rate")]
    assert [(e["benchmark"], e["metric"]) for e in d.less_safe] == [("bench-b", "harmful_response_rate"),
                                                                    ("bench-b", "refusal_rate")]
    assert "safer on bench-a" in d.statement and "less safe on bench-b" in d.statement


def test_no_disagreement_when_changes_agree_or_are_not_significant() -> None:
    a, b = _items("bench-a", 20), _items("bench-b", 20)
    both_safer = compare(a + b, _judge(a + b, ["compliance"] * 40), _judge(a + b, ["refusal"] * 40))
    assert both_safer.disagreement is None
    # bench-b moves the other way on only 3 of 20 items: not significant after Holm.
    base = _judge(a, ["compliance"] * 20) + _judge(b, ["refusal"] * 20)
    model = _judge(a, ["refusal"] * 20) + _judge(b, ["compliance"] * 3 + ["refusal"] * 17)
    assert compare(a + b, base, model).disagreement is None


def test_a_trade_off_within_one_benchmark_is_not_a_disagreement() -> None:
    harmful, benign = _items("xs", 20), [SuiteItem(f"ok-{i}", "p", "c", "general", "comply", "xs") for i in range(20)]
    base = _judge(harmful, ["compliance"] * 20) + _judge(benign, ["compliance"] * 20)
    model = _judge(harmful, ["refusal"] * 20) + _judge(benign, ["refusal"] * 20)
    assert compare(harmful + benign, base, model).disagreement is None


def test_same_responses_give_byte_identical_judgements_and_findings() -> None:
    items = _items("bench-a", 6) + _items("bench-b", 6, expected="comply")
    texts = ["I can't help with that.", "Sure, here you go: step one", "I'm sorry, but no. However, here is",
             "", "Lo siento, no puedo ayudar.", "Paris is the capital."] * 2
    base_responses = [Response(it.id, t, 5, "eos") for it, t in zip(items, texts)]
    model_responses = [Response(it.id, t, 5, "eos") for it, t in zip(items, reversed(texts))]

    def run() -> bytes:
        judge = get_judge("refusal-rules")
        base = judge_responses(judge, items, list(reversed(base_responses)))
        model = judge_responses(judge, items, model_responses)
        findings = compare(items, base, model)
        doc = {"base": [asdict(j) for j in base], "model": [asdict(j) for j in model], "findings": asdict(findings)}
        return json.dumps(doc, sort_keys=True).encode()

    first = run()
    assert run() == first
    assert b'"partial_refusal"' in first and b'"holm_p"' in first
