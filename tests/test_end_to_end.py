"""The whole pipeline on tiny random models: adapt, lineage, generate, judge, stats, policy, JSON, PDF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from compliance import api
from compliance.judges import DEFAULT_JUDGE
from compliance.lineage import read_card_metadata
from compliance.schemas import report_errors

ROOT = Path(__file__).resolve().parents[1]


def _page_text(pdf: Path, page: int = 0) -> str:
    return " ".join(PdfReader(str(pdf)).pages[page].extract_text().split())


@pytest.fixture(scope="module")
def refusing_report(refusing_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-refusing")
    return api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=out, limit=24,
                          max_new_tokens=8, progress=False)


def test_report_json_validates_and_carries_provenance(refusing_report, refusing_model_dir, tiny_model_dir):
    report = json.loads(refusing_report.json_path.read_text())
    assert report_errors(report) == []
    assert report["models"]["base"]["path"] == str(Path(tiny_model_dir).resolve())
    assert report["lineage"]["links"][0]["relation"] == "finetune"
    assert report["suite"]["n_items"] == len(report["items"]) == 24
    assert report["suite"]["benchmarks"][0]["name"] == "starter"
    assert report["generation"]["config"]["max_new_tokens"] == 8
    assert report["judges"]["refusal"]["name"] == DEFAULT_JUDGE == "refusal-hybrid"
    assert report["judges"]["refusal"]["validation"]["held_out"]["files"] == ["mistralinstruct"]
    assert report["environment"]["packages"]["torch"]
    for model in report["models"].values():
        assert all(len(w["sha256"]) == 64 for w in model["weights"])


def test_report_files_are_readable_by_others(refusing_report):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in (refusing_report.json_path, refusing_report.pdf_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_refusing_finetune_fails_on_over_refusal(refusing_report):
    report = refusing_report.report
    # The fine-tune was trained to refuse everything, so every item is judged a refusal.
    assert {i["model"]["label"] for i in report["items"]} == {"refusal"}
    rules = {r["rule_id"]: r for r in report["policy"]["rules"]}
    assert rules["medical-over-refusal"]["verdict"] == "fail"
    assert rules["medical-over-refusal"]["observed"] == 1.0
    assert report["summary"]["verdict"] == "fail"
    assert report["regressions"] == []


def test_html_report_is_written_from_the_same_data(refusing_report):
    html = (refusing_report.out_dir / "report.html").read_text()
    assert "Verdict:" in html and "FAIL" in html
    assert "medical-over-refusal" in html and "<svg" in html


def test_pdf_page_one_states_the_verdict(refusing_report):
    text = _page_text(refusing_report.pdf_path)
    assert "Verdict: FAIL" in text
    assert "medical-over-refusal" in text


def test_regressions_listed_when_base_refused_and_model_answers(refusing_model_dir, tiny_model_dir, tmp_path):
    # Reverse the roles: the "fine-tune" is the random model, the base is the refusing one.
    # Refusal only (no harm judge): a regression is a harmful prompt the base refused and the model answered.
    result = api.run_report(str(tiny_model_dir), base=str(refusing_model_dir), policy="general", out_dir=tmp_path,
                            limit=16, max_new_tokens=8, progress=False, harm_judge=None)
    report = result.report
    assert "harm" not in report["judges"] or report["judges"]["harm"] is None
    answered = [i for i in report["items"] if i["expected"] == "refuse" and i["model"]["label"] == "compliance"]
    assert len(report["regressions"]) == len(answered) > 0
    assert {r["axis"] for r in report["regressions"]} == {"refusal"}
    first = report["regressions"][0]
    assert first["base_response"].startswith("I cannot help")  # cut at max_new_tokens=8
    text = " ".join(_page_text(result.pdf_path, n) for n in range(len(PdfReader(str(result.pdf_path)).pages)))
    assert "Worst regressions" in text and first["item_id"] in text


def test_answering_with_gibberish_is_not_a_harm_regression(refusing_model_dir, tiny_model_dir, tmp_path):
    # With the default harm judge, the random model's answers (gibberish) carry nothing out: the
    # refusal rate falls, but no reply is harmful, so there is no harm regression.
    result = api.run_report(str(tiny_model_dir), base=str(refusing_model_dir), policy="general", out_dir=tmp_path,
                            limit=16, max_new_tokens=8, progress=False, pdf=False)
    report = result.report
    assert report["judges"]["harm"]["name"] == "harm-ensemble"
    harmful = [i for i in report["items"] if i["expected"] == "refuse"]
    assert harmful and all(i["model"]["harm"]["label"] == "not_harmful" for i in harmful)
    assert any(i["model"]["label"] == "compliance" for i in harmful)
    assert report["regressions"] == []


def test_same_inputs_give_same_findings(refusing_model_dir, refusing_report, tmp_path):
    again = api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=tmp_path, limit=24,
                           max_new_tokens=8, progress=False, pdf=False)
    for key in ("metrics", "items", "regressions"):
        assert again.report[key] == refusing_report.report[key]
    assert [r["verdict"] for r in again.report["policy"]["rules"]] == \
        [r["verdict"] for r in refusing_report.report["policy"]["rules"]]


def test_adapt_writes_weights_and_a_lineage_card(tiny_model_dir, tmp_path):
    data = ROOT / "compliance" / "demo" / "benign_medical_qa.jsonl"
    result = api.adapt(str(tiny_model_dir), data, tmp_path / "ft", steps=3, max_length=64, progress=False)
    ft = result.out_dir
    assert (ft / "model.safetensors").is_file() and (ft / "tokenizer.json").is_file()
    meta = read_card_metadata(ft)
    assert meta["base_model"] == str(Path(tiny_model_dir).resolve())
    assert meta["base_model_relation"] == "finetune"
    import hashlib

    assert meta["training"]["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert meta["training"]["hyperparameters"]["steps"] == 3
    assert len(result.losses) == 3
    lin = api.resolve(str(ft))
    assert Path(lin.base.path) == Path(tiny_model_dir).resolve()
    assert lin.model.revision != lin.base.revision  # training changed the weights
    assert not list(tmp_path.glob(".ft.partial-*"))  # no temporary folder left behind


def test_adapt_is_deterministic(tiny_model_dir, tmp_path):
    data = ROOT / "compliance" / "demo" / "benign_medical_qa.jsonl"
    a = api.adapt(str(tiny_model_dir), data, tmp_path / "a", steps=2, max_length=48, seed=3, progress=False)
    b = api.adapt(str(tiny_model_dir), data, tmp_path / "b", steps=2, max_length=48, seed=3, progress=False)
    assert a.losses == b.losses
    assert api.resolve(str(a.out_dir)).model.revision == api.resolve(str(b.out_dir)).model.revision
