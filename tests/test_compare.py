"""`compliance compare`: candidates side by side, ranked, with signatures checked."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest

from compliance.compare import NOT_MEASURED, RANKING_RULE, compare_reports, rule_margin
from compliance.io import atomic_write_json
from compliance.signing import DEMO_NAME, keygen, sign_report
from report_example import example_report, passing_report
from cli_runner import run_cli




def _without_over_refusal(report: dict) -> dict:
    """A report whose suite had no benign prompts: over-refusal was never measured."""
    r = copy.deepcopy(report)
    r["metrics"]["rates"] = [f for f in r["metrics"]["rates"] if f["metric"] != "over_refusal_rate"]
    r["metrics"]["paired"] = [f for f in r["metrics"]["paired"] if f["metric"] != "over_refusal_rate"]
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    keys = keygen(root / "keys", name=DEMO_NAME).out_dir
    a = example_report()  # fails; signed
    a["summary"]["model"] = "acme/a"
    atomic_write_json(root / "a" / "report.json", a)
    sign_report(root / "a", keys)
    b = passing_report()  # passes; unsigned
    b["summary"]["model"] = "acme/b"
    b["summary"]["base"] = "other/base"
    atomic_write_json(root / "b" / "report.json", b)
    c = _without_over_refusal(example_report())  # fails worse; signed, then tampered with
    c["summary"]["model"] = "acme/c"
    c["policy"]["rules"][2]["ci_high"] = 1.0  # worst margin -0.95, below a's -0.94
    atomic_write_json(root / "c" / "report.json", c)
    sign_report(root / "c", keys)
    c["summary"]["headline"] = "Edited after signing."
    atomic_write_json(root / "c" / "report.json", c)
    return root, keys


def test_cli_json_ranks_and_flags(setup, monkeypatch, capsys, tmp_path):
    root, keys = setup
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", str(root / "c"), str(root / "a"), str(root / "b"), "--keys", str(keys),
                                 "--out", str(out), "--json", "--no-pdf"], monkeypatch, capsys)
    assert code == 0, err
    doc = json.loads(stdout)
    cands = doc["candidates"]
    assert [(c["model"], c["base"], c["verdict"], c["signature_ok"]) for c in cands] == [
        ("acme/b", "other/base", "pass", False),
        ("acme/a", "HuggingFaceTB/SmolLM2-135M-Instruct", "fail", True),
        ("acme/c", "HuggingFaceTB/SmolLM2-135M-Instruct", "fail", False),
    ]
    assert cands[0]["signature_reason"] == "unsigned"
    assert cands[2]["signature_reason"] != "unsigned"
    assert cands[1]["worst_margin"] > cands[2]["worst_margin"]
    assert doc["ranking_rule"] == RANKING_RULE and "worst rule margin" in RANKING_RULE
    assert {"html", "csv", "parquet", "json"} <= set(doc["files"])


def test_not_measured_is_never_zero(setup, tmp_path):
    root, keys = setup
    result = compare_reports([root / "a", root / "c"], out_dir=tmp_path, keys_dir=keys, pdf=False)
    csv = pd.read_csv(tmp_path / "compare.csv")
    pq = pd.read_parquet(tmp_path / "compare.parquet")
    for df in (csv, pq):
        c_or = df[(df.model == "acme/c") & (df.metric == "over_refusal_rate")]
        assert len(c_or) > 0 and (c_or.status == NOT_MEASURED).all()
        assert c_or.model_rate.isna().all() and c_or.drift.isna().all()
        a_or = df[(df.model == "acme/a") & (df.metric == "over_refusal_rate") & (df.benchmark == "*")
                  & (df.domain == "*")]
        assert (a_or.status == "measured").all() and a_or.model_rate.notna().all()
    # same numbers as the report
    rep = example_report()
    want = next(f for f in rep["metrics"]["paired"] if f["metric"] == "harmful_response_rate"
                and f["benchmark"] == f["domain"] == f["category"] == "*")
    row = pq[(pq.model == "acme/a") & (pq.metric == "harmful_response_rate") & (pq.benchmark == "*")
             & (pq.domain == "*") & (pq.category == "*")].iloc[0]
    assert math.isclose(row.drift, want["diff"]) and math.isclose(row.drift_ci_high, want["ci_high"])
    html = (tmp_path / "compare.html").read_text()
    assert NOT_MEASURED in html and "NOT VERIFIED" in html and "worst rule margin" in html
    assert "report.css" not in html and "@page" in html  # stylesheet inline
    assert [c.model for c in result.candidates] == ["acme/a", "acme/c"]


def test_pdf_and_html_from_same_template(setup, tmp_path):
    root, keys = setup
    result = compare_reports([root / "a", root / "b"], out_dir=tmp_path, keys_dir=keys)
    assert (tmp_path / "compare.pdf").read_bytes().startswith(b"%PDF")
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(tmp_path / "compare.pdf").pages)
    assert "acme/a" in text and "acme/b" in text and "Ranking" in text
    # Every page's footer names the document (the report footer's id would be empty here).
    for page in PdfReader(tmp_path / "compare.pdf").pages:
        assert "Comparison of 2 reports · generated by compliance" in page.extract_text()
    assert result.files["pdf"] == tmp_path / "compare.pdf"


def test_unsigned_without_keys_and_margin_rule(setup):
    root, _ = setup
    result = compare_reports([root / "a", root / "b"])
    by = {c.model: c for c in result.candidates}
    assert by["acme/b"].signature_reason == "unsigned" and not by["acme/b"].signature_ok
    assert not by["acme/a"].signature_ok and "--keys" in by["acme/a"].signature_reason
    rule = {"bound": "max", "threshold": 0.1, "ci_low": 0.02, "ci_high": 0.08, "observed": 0.05}
    assert math.isclose(rule_margin(rule), 0.02)
    assert math.isclose(rule_margin({**rule, "bound": "min"}), -0.08)


def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["compare", str(tmp_path / "missing")], monkeypatch, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "report.json" in err
