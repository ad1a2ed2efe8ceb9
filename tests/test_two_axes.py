"""Two axes per reply: refusal and harm, measured apart; judge sensitivity; older reports still read.

The harm judges here are small keyword judges registered for the test only (in a private copy of
the registry): they stand in for a real harm judge so that the pipeline's handling of two axes
is tested on its own; the shipped harm judges are tested against human labels elsewhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from compliance import api
from compliance.errors import ComplianceError, PolicyError
from compliance.judges import base as judges_base
from compliance.judges.base import Judge, register_judge
from compliance.policy import evaluate, load_policy
from compliance.records import Judgement, SuiteItem
from compliance.request import ModelSpec, ReportRequest, request_from_kwargs
from compliance.schemas import report_errors
from compliance.sensitivity import JudgeLabels, judge_sensitivity
from compliance.stats import compare

ROOT = Path(__file__).resolve().parents[1]
OLD_REPORT = ROOT / "tests" / "data" / "report-1.0"


def _items(n_harmful: int, n_benign: int, domain: str = "medical") -> list[SuiteItem]:
    return ([SuiteItem(f"h{i}", f"harmful {i}", "c", domain, "refuse", "starter") for i in range(n_harmful)]
            + [SuiteItem(f"b{i}", f"benign {i}", "c", domain, "comply", "starter") for i in range(n_benign)])


def _judged(items: list[SuiteItem], axis: str, events: set[str], judge: str = "j@1") -> list[Judgement]:
    """Judgements on ``axis`` for the items that axis judges; ``events`` get the event label."""
    if axis == "harm":
        return [Judgement(it.id, "harmful" if it.id in events else "not_harmful", float(it.id in events), judge,
                          axis="harm") for it in items if it.expected == "refuse"]
    return [Judgement(it.id, "refusal" if it.id in events else "compliance", float(it.id in events), judge,
                      kind="full_refusal" if it.id in events else "compliance") for it in items]


# --- statistics on two axes ---------------------------------------------------------------


def test_refusal_is_not_harm_the_two_rates_are_counted_apart():
    items = _items(10, 4)
    # The fine-tune refuses all ten harmful prompts, yet four replies give the content anyway
    # ("I can't ... but here is how"); the base complies with six, only two of them harmfully.
    base = _judged(items, "refusal", {f"h{i}" for i in range(4)}) + _judged(items, "harm", {"h4", "h5"})
    model = _judged(items, "refusal", {f"h{i}" for i in range(10)}) + _judged(items, "harm", {"h0", "h1", "h2", "h3"})
    findings = compare(items, base, model)
    overall = {f.metric: f for f in findings.paired if (f.benchmark, f.domain, f.category) == ("*", "*", "*")}
    assert (overall["refusal_rate"].base_rate, overall["refusal_rate"].model_rate) == (0.4, 1.0)
    assert (overall["harmful_response_rate"].base_rate, overall["harmful_response_rate"].model_rate) == (0.2, 0.4)
    assert overall["harmful_response_rate"].n == 10  # harm is judged on harmful prompts only
    assert "harmful_compliance_rate" not in overall
    # The same judgements as an axis -> list mapping give the same findings.
    by_axis = compare(items, {"refusal": base[:14], "harm": base[14:]}, {"refusal": model[:14], "harm": model[14:]})
    assert by_axis == findings


def test_without_a_harm_judge_the_harm_metric_is_not_measured():
    items = _items(4, 4)
    findings = compare(items, _judged(items, "refusal", {"h0"}), _judged(items, "refusal", set()))
    assert {f.metric for f in findings.paired} == {"refusal_rate", "over_refusal_rate"}
    verdict = evaluate(findings, load_policy("healthcare"))
    rule = next(r for r in verdict.rules if r.metric == "harmful_response_rate")
    assert rule.verdict == "inconclusive" and "needs a harm judge" in rule.reason


def test_harm_judgements_must_cover_the_harmful_prompts_only():
    items = _items(3, 2)
    refusal = _judged(items, "refusal", set())
    harm = _judged(items, "harm", set())
    with pytest.raises(ValueError, match="no model harm judgement for item 'h2'"):
        compare(items, refusal + harm, refusal + harm[:2])
    benign = [Judgement("b0", "not_harmful", 0.0, "j@1", axis="harm")]
    with pytest.raises(ValueError, match="not judged on this axis"):
        compare(items, refusal + harm, refusal + harm + benign)
    with pytest.raises(ValueError, match="judge both alike"):
        compare(items, refusal + harm, refusal)


# --- judge sensitivity --------------------------------------------------------------------


def _labels(judge: str, axis: str, items, base_events, model_events) -> JudgeLabels:
    return JudgeLabels(judge, axis, _judged(items, axis, base_events, judge), _judged(items, axis, model_events, judge))


def _sensitivity(items, primary, alternatives, policy="healthcare"):
    policy_obj = load_policy(policy)
    findings = compare(items, {a: l.base for a, l in primary.items()}, {a: l.model for a, l in primary.items()})
    verdict = evaluate(findings, policy_obj)
    return judge_sensitivity(items, primary, alternatives, policy_obj, findings, verdict), verdict


def test_a_judge_that_flips_the_verdict_is_named_and_its_disagreement_is_a_finding():
    items = _items(120, 120)
    harmful = {f"h{i}" for i in range(120)}
    primary = {"refusal": _labels("r@1", "refusal", items, harmful, harmful),
               "harm": _labels("h@1", "harm", items, set(), set())}
    # Another harm judge reads the fine-tune's replies as harmful 30 times in 120 (the base's never).
    lenient = _labels("h2@1", "harm", items, set(), {f"h{i}" for i in range(30)})
    same = _labels("r2@1", "refusal", items, harmful, harmful)
    sensitivity, verdict = _sensitivity(items, primary, [lenient, same])
    assert verdict.verdict == "pass"
    assert sensitivity["verdict"] == {"primary": "pass", "by_judge": {"h2@1": "fail", "r2@1": "pass"},
                                      "holds": False, "flipped_by": ["h2@1"]}
    flipped = {r["rule_id"] for r in sensitivity["rules"] if not r["holds"]}
    assert flipped == {"medical-harmful-responses", "overall-harmful-responses", "medical-harmful-drift",
                       "overall-harmful-drift"}
    assert all(r["flipped_by"] == ["h2@1"] for r in sensitivity["rules"] if not r["holds"])
    # The harm drift is Holm-significant under h2 only: a judge disagreement, reported as its own finding.
    [disagreement] = sensitivity["judge_disagreements"]
    assert (disagreement["metric"], disagreement["benchmark"], disagreement["axis"]) == (
        "harmful_response_rate", "starter", "harm")
    assert disagreement["by_judge"]["h@1"]["direction"] is None
    assert disagreement["by_judge"]["h2@1"]["direction"] == "less_safe"
    assert "r2@1" not in disagreement["by_judge"]  # a refusal judge does not change a harm finding
    assert sensitivity["holds"] is False
    assert sensitivity["statement"].startswith("Not robust to the choice of judge: under h2 1 the verdict is fail")
    agreement = {j["judge"]: j.get("agreement_with_primary") for js in sensitivity["judges"].values() for j in js}
    assert agreement == {"r@1": None, "h@1": None, "h2@1": 0.875, "r2@1": 1.0}  # 30 of 240 replies differ


def test_identical_judges_hold_and_no_alternative_means_unknown():
    items = _items(10, 10)
    primary = {"refusal": _labels("r@1", "refusal", items, {"h1"}, {"h1", "h2"})}
    sensitivity, _ = _sensitivity(items, primary, [_labels("r2@1", "refusal", items, {"h1"}, {"h1", "h2"})])
    assert sensitivity["holds"] is True
    assert sensitivity["statement"].startswith("The verdict and every rule hold under every judge (r2 1")
    alone, _ = _sensitivity(items, primary, [])
    assert alone["statement"].startswith("No other judge was run")


# --- the pipeline with a harm judge -------------------------------------------------------


@pytest.fixture
def keyword_harm_judges(monkeypatch: pytest.MonkeyPatch):
    """Two cheap harm judges for this test only: "say" finds 'cannot' harmful, "never" finds nothing harmful."""
    monkeypatch.setattr(judges_base, "_REGISTRY", dict(judges_base._REGISTRY))

    @register_judge("test-harm-say")
    class Say(Judge):
        version, axis, cheap = "1", "harm", True
        description = "Harmful when the reply contains 'cannot' (a test stand-in)."

        def judge_one(self, prompt, response):
            hit = "cannot" in response
            return ("harmful" if hit else "not_harmful"), float(hit), "keyword"

    @register_judge("test-harm-never")
    class Never(Judge):
        version, axis, cheap = "1", "harm", True
        description = "Never harmful (a test stand-in)."

        def judge_one(self, prompt, response):
            return "not_harmful", 0.0, None

    return Say, Never


def test_report_carries_both_axes_and_the_sensitivity(keyword_harm_judges, refusing_model_dir, tmp_path):
    result = api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=tmp_path, limit=16,
                            max_new_tokens=6, progress=False, harm_judge="test-harm-say")
    report = result.report
    assert report_errors(report) == [] and report["schema_version"] == "2.0"
    assert set(report["judges"]) == {"refusal", "harm"}
    assert report["judges"]["harm"]["name"] == "test-harm-say" and report["judges"]["harm"]["axis"] == "harm"
    harmful = [i for i in report["items"] if i["expected"] == "refuse"]
    benign = [i for i in report["items"] if i["expected"] == "comply"]
    assert harmful and benign
    # The fine-tune says "I cannot": refused, and (by this stand-in) harmful; benign prompts get no harm label.
    assert all(i["model"]["label"] == "refusal" and i["model"]["harm"]["label"] == "harmful" for i in harmful)
    assert all(i["model"]["harm"] is None and i["base"]["harm"] is None for i in benign)
    assert all(i["prompt"] and set(i["model"]["labels"]) >= {"test-harm-say@1", "test-harm-never@1"}
               for i in harmful)
    defs = {d["metric"]: d for d in report["metrics"]["definitions"]}
    assert defs["harmful_response_rate"]["judge"] == "test-harm-say@1"
    assert defs["refusal_rate"]["axis"] == "refusal"
    # The other cheap harm judge sees nothing harmful: the harm rules flip under it.
    sens = report["sensitivity"]
    names = [j["judge"] for j in sens["judges"]["harm"]]
    assert names[0] == "test-harm-say@1" and "test-harm-never@1" in names  # the shipped CPU harm judges run too
    assert not sens["holds"] and "test-harm-never 1" in sens["statement"]
    assert report["summary"]["judge_sensitivity"] == sens["statement"]
    assert all(r["axis"] == "harm" for r in report["regressions"])
    # Page 1 names both judges and states the sensitivity.
    from pypdf import PdfReader

    # pypdf interleaves NULs when the font subset is large (the tiny models' replies use many glyphs).
    page1 = " ".join(PdfReader(str(result.pdf_path)).pages[0].extract_text().replace("\x00", "").split())
    assert "Refusal judge" in page1 and "Harm judge test-harm-say 1" in page1
    assert "Judge sensitivity. Not robust to the choice of judge" in page1


def test_identical_responses_give_byte_identical_findings(keyword_harm_judges, refusing_model_dir, tmp_path):
    runs = [api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=tmp_path / name, limit=12,
                           max_new_tokens=6, progress=False, pdf=False, harm_judge="test-harm-say")
            for name in ("a", "b")]
    keys = ("metrics", "policy", "sensitivity", "disagreement", "regressions", "items")
    first, second = ({k: r.report[k] for k in keys} for r in runs)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert runs[1].report["generation"]["reused"] == {"base": 12, "model": 12}


def test_a_refusal_judge_as_harm_judge_is_one_line(refusing_model_dir, tmp_path):
    with pytest.raises(ComplianceError, match="--harm-judge refusal-rules: it is a refusal judge, not a harm judge"):
        api.run_report(str(refusing_model_dir), out_dir=tmp_path, progress=False, harm_judge="refusal-rules")
    with pytest.raises(ComplianceError, match="--judge guard: it is a harm judge"):
        api.run_report(str(refusing_model_dir), out_dir=tmp_path, progress=False, judge="guard",
                       judge_options={"model": "x"})
    assert not any(tmp_path.iterdir())


# --- the request ----------------------------------------------------------------------------


def test_run_report_keywords_build_one_request():
    request = request_from_kwargs("m", policy="legal", limit=8, judge="refusal-embed", harm_judge=None,
                                  stop=["END"], backend="openai", base_url="http://x/v1", keys=Path("k"))
    assert request.models == ModelSpec("m")
    assert (request.policy, request.suite.limit, request.generation.stop) == ("legal", 8, ("END",))
    assert (request.judges.refusal, request.judges.harm, request.judges.sensitivity) == ("refusal-embed", None, True)
    assert (request.backend.name, request.output.keys) == ("openai", Path("k"))
    other = request.with_model("n", out_dir=Path("o"))
    assert (other.models.model, other.output.out_dir, other.suite) == ("n", Path("o"), request.suite)
    with pytest.raises(ComplianceError, match="unknown setting\\(s\\) limt"):
        request_from_kwargs("m", limt=3)
    with pytest.raises(ComplianceError, match="not both"):
        api.run_report(ReportRequest(models=ModelSpec("m")), limit=3)


# --- policies -------------------------------------------------------------------------------


def _policy_with(tmp_path: Path, **changes) -> Path:
    doc = yaml.safe_load((ROOT / "policies" / "healthcare.yaml").read_text())
    doc["rules"][0].update(changes)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_policy_on_the_replaced_metric_is_one_line_naming_the_new_one(tmp_path):
    with pytest.raises(PolicyError, match="uses harmful_compliance_rate .* use harmful_response_rate"):
        load_policy(str(_policy_with(tmp_path, metric="harmful_compliance_rate")))


def test_a_nan_threshold_is_refused(tmp_path):
    path = _policy_with(tmp_path)
    path.write_text(path.read_text().replace("max: 0.1\n", "max: .nan\n", 1))
    with pytest.raises(PolicyError, match="has max: nan; give a number between -1 and 1"):
        load_policy(str(path))


def test_every_shipped_policy_uses_both_axes():
    for name in ("healthcare", "legal", "finance", "general"):
        metrics = {r["metric"] for r in load_policy(name).data["rules"]}
        assert {"harmful_response_rate", "refusal_rate", "over_refusal_rate"} <= metrics, name


# --- reports written before the two axes still read ---------------------------------------


def test_a_schema_1_report_still_verifies_compares_and_goes_on_a_card(tmp_path):
    from compliance.card import update_local_card
    from compliance.compare import compare_reports
    from compliance.signing import verify_report

    old = json.loads((OLD_REPORT / "report.json").read_text())
    assert old["schema_version"] == "1.0" and report_errors(old) == []
    result = verify_report(OLD_REPORT, key=OLD_REPORT / "report-signing.pub", trust=OLD_REPORT / "pdf-signing.crt")
    assert result.ok, result.failed
    compared = compare_reports([OLD_REPORT], out_dir=tmp_path / "cmp", key=OLD_REPORT / "report-signing.pub",
                               trust=OLD_REPORT / "pdf-signing.crt", pdf=False)
    [candidate] = compared.to_json()["candidates"]
    assert candidate["signature_ok"] and candidate["schema_version"] == "1.0"
    assert candidate["judges"] == f"refusal: refusal-rules {old['judge']['version']}"
    assert {r["metric"] for r in compared.rows} == {"harmful_compliance_rate", "refusal_rate", "over_refusal_rate"}
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    update = update_local_card(OLD_REPORT, model_dir)
    assert update.n_results > 0 and "harmful_compliance_rate" in (model_dir / "README.md").read_text()


def test_an_unknown_schema_version_is_one_error():
    old = json.loads((OLD_REPORT / "report.json").read_text())
    old["schema_version"] = "9.9"
    [error] = report_errors(old)
    assert "'9.9' is not a report schema version this tool reads (1.0, 2.0, 2.1)" in error


def test_old_and_new_reports_side_by_side_show_unmeasured_metrics_as_not_measured(
        keyword_harm_judges, refusing_model_dir, tmp_path):
    from compliance.compare import NOT_MEASURED, compare_reports

    new = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "new", limit=8, max_new_tokens=4,
                         progress=False, pdf=False, harm_judge="test-harm-say")
    shutil.copytree(OLD_REPORT, tmp_path / "old")
    compared = compare_reports([new.out_dir, tmp_path / "old"], pdf=False)
    cells = {(r["model"], r["metric"]): r["status"] for r in compared.rows
             if (r["benchmark"], r["domain"], r["category"]) == ("*", "*", "*")}
    old_model = json.loads((OLD_REPORT / "report.json").read_text())["summary"]["model"]
    assert cells[(old_model, "harmful_response_rate")] == NOT_MEASURED
    assert cells[(new.report["summary"]["model"], "harmful_compliance_rate")] == NOT_MEASURED
