"""Rendering the report to HTML, SVG and a real PDF (read back with pypdf)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
from pypdf import PdfReader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_example import BASE_ID, MODEL_ID, example_report, passing_report  # noqa: E402

from compliance.report.chart import chart_rows, drift_chart_svg  # noqa: E402
from compliance.report.render import fmt_pct, fmt_pp, render_html, render_pdf  # noqa: E402
from compliance.resources import schema_path  # noqa: E402


def _validate(report: dict) -> None:
    schema = json.loads(schema_path("report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(report)


def _page_text(pdf: Path, page: int = 0) -> str:
    return PdfReader(str(pdf)).pages[page].extract_text()


@pytest.fixture(scope="module")
def failing_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_pdf(example_report(), tmp_path_factory.mktemp("pdf") / "report.pdf")


def test_example_reports_are_schema_valid() -> None:
    _validate(example_report())
    _validate(passing_report())


def test_pdf_page_one_shows_verdict_model_and_rules(failing_pdf: Path) -> None:
    assert failing_pdf.read_bytes().startswith(b"%PDF-")
    text = _page_text(failing_pdf)
    assert "Verdict: FAIL" in text
    assert MODEL_ID in text
    assert BASE_ID in text
    assert "medical-harmful-compliance" in text
    assert "Worst regressions" in text
    assert "harmful compliance · medical" in text  # chart labels are real text
    # The footer carries the report id and page numbers.
    assert "rpt-20261128-7f3a9c2e" in text
    assert re.search(r"Page 1 of \d+", text)


def test_pdf_page_one_holds_every_rule_under_the_chart(failing_pdf: Path) -> None:
    # A real policy has six rules; all of them must be on page 1 with the verdict and chart.
    rules = example_report()["policy"]["rules"]
    assert len(rules) == 6
    text = _page_text(failing_pdf)
    assert "Verdict:" in text
    assert "Change from the base model" in text
    for rule in rules:
        assert rule["rule_id"] in text, rule["rule_id"]
    assert "≥ 50.0%" in text and "≤ 10.0%" in text  # thresholds follow the rule's bound
    assert text.index("Verdict:") < text.index("Change from the base model") < text.index(
        rules[-1]["rule_id"]) < text.index("Worst regressions")


def test_pdf_is_written_atomically_without_leftovers(failing_pdf: Path) -> None:
    assert [p.name for p in failing_pdf.parent.iterdir()] == ["report.pdf"]


def test_pdf_later_pages_hold_the_details(failing_pdf: Path) -> None:
    reader = PdfReader(str(failing_pdf))
    rest = "\n".join(p.extract_text() for p in reader.pages[1:])
    for needle in ("Metrics by slice", "McNemar", "Disclaimer", "refusal-patterns",
                   "Models and provenance", "How to reproduce and verify",
                   example_report()["models"]["model"]["weights"][0]["sha256"][:16]):
        assert needle in rest, needle


def test_pass_report_says_pass(tmp_path: Path) -> None:
    pdf = render_pdf(passing_report(), tmp_path / "nested" / "pass.pdf")
    text = _page_text(pdf)
    assert "Verdict: PASS" in text
    assert "Verdict: FAIL" not in text


def test_pdf_is_deterministic_and_replaces_an_existing_file(tmp_path: Path, failing_pdf: Path) -> None:
    out = tmp_path / "again.pdf"
    out.write_bytes(b"old")
    assert render_pdf(example_report(), out) == out
    assert out.read_bytes() == failing_pdf.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again.pdf"]


def test_hostile_text_is_escaped() -> None:
    report = example_report()
    report["regressions"][0]["prompt"] = '<script>alert("x")</script> & <b>bold</b>'
    report["summary"]["headline"] = "<img src=x onerror=alert(1)>"
    report["models"]["model"]["provenance"]["note"] = "<iframe>"
    for finding in report["metrics"]["paired"]:
        if finding["domain"] == "medical":
            finding["domain"] = "--><script>alert(1)</script><!--"
    html = render_html(report)
    assert "<script>" not in html
    assert "<script" not in drift_chart_svg(report)
    assert "&lt;script&gt;" in html
    assert "<img src=x" not in html
    assert "<iframe>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_html_numbers_are_formatted() -> None:
    html = render_html(example_report())
    assert "50.0%" in html  # observed harmful compliance on medical prompts
    assert "+16.7 pp" in html  # drift of harmful compliance overall
    assert fmt_pct(0.125) == "12.5%"
    assert fmt_pct(None) == "n/a"
    assert fmt_pp(-0.0) == "0.0 pp"


def test_regressions_are_truncated_and_limited() -> None:
    report = example_report()
    template = report["regressions"][0]
    report["regressions"] = [dict(template, item_id=f"long-{i}", model_response="word " * 400)
                             for i in range(8)]
    html = render_html(report)
    assert html.count('class="quote model-resp"') == 5
    assert "long-4" in html and "long-5" not in html
    assert "word " * 70 not in html


def test_no_regressions_and_no_findings_render(tmp_path: Path) -> None:
    report = example_report()
    report["regressions"] = []
    report["metrics"] = {"rates": [], "paired": []}
    _validate(report)
    html = render_html(report)
    assert 'id="no-findings"' in html
    assert "No paired findings" in html
    text = _page_text(render_pdf(report, tmp_path / "empty.pdf"))
    assert "Verdict: FAIL" in text


def test_chart_is_deterministic_with_one_element_per_finding_row() -> None:
    report = example_report()
    svg = drift_chart_svg(report)
    assert svg == drift_chart_svg(copy.deepcopy(report))
    assert svg.startswith("<svg")
    rows = chart_rows(report)
    # Overall and four domains, for harmful compliance and over-refusal; refusal rate is left
    # out because it is 1 - harmful compliance.
    assert len(rows) == 10
    assert all(r["benchmark"] == "*" and r["category"] == "*" for r in rows)
    assert {r["metric"] for r in rows} == {"harmful_compliance_rate", "over_refusal_rate"}
    assert ">refusal · " not in svg
    ids = re.findall(r'id="finding-row-(\d+)"', svg)
    assert sorted(map(int, ids)) == list(range(len(rows)))
    assert "<dc:date>" not in svg


def test_chart_colours_follow_metric_direction() -> None:
    from compliance.report.chart import BETTER, WORSE, change_direction

    assert change_direction("harmful_compliance_rate", 0.1) == "worse"
    assert change_direction("over_refusal_rate", -0.1) == "better"
    assert change_direction("refusal_rate", -0.1) == "worse"
    assert change_direction("refusal_rate", 0.1) == "better"
    assert change_direction("refusal_rate", 0.0) == "same"
    svg = drift_chart_svg(example_report())
    assert WORSE in svg and BETTER in svg


def test_chart_marks_rows_without_data() -> None:
    report = example_report()
    finding = chart_rows(report)[0]  # the report's own dict: updating it changes the report
    finding.update(n=0, diff=None, ci_low=None, ci_high=None, base_rate=None, model_rate=None)
    svg = drift_chart_svg(report)
    assert len(re.findall(r'id="finding-row-\d+"', svg)) == len(chart_rows(report))
    assert "no data" in svg


def test_chart_caption_explains_the_missing_refusal_rows() -> None:
    html = render_html(example_report())
    assert "complement of harmful compliance" in html


def test_short_reason_explains_the_verdict_or_falls_back() -> None:
    from compliance.report.render import short_reason

    rules = {r["rule_id"]: r for r in example_report()["policy"]["rules"]}
    assert short_reason(rules["medical-harmful-compliance"]) == "Whole interval above the limit."
    assert short_reason(rules["general-refusal-floor"]) == "Whole interval within the limit."
    assert short_reason(rules["overall-harmful-drift"]).startswith("Interval straddles")
    odd = dict(rules["general-refusal-floor"], verdict="fail", reason="decided otherwise")
    assert short_reason(odd) == "decided otherwise"
    empty = dict(odd, ci_low=None, ci_high=None, reason="no items of the suite fall in scope")
    assert short_reason(empty) == "no items of the suite fall in scope"


def test_control_characters_from_model_output_are_made_visible() -> None:
    report = example_report()
    report["regressions"][0]["model_response"] = "ok\x17\x05 then\x1b text"
    html = render_html(report)
    assert "\x17" not in html and "\x1b" not in html
    assert "ok\ufffd\ufffd then\ufffd text" in html


def test_page_one_marks_the_held_out_validation_file() -> None:
    import json as _json

    from compliance.judges import shipped_validation

    report = example_report()
    report["judge"]["validation"] = _json.loads(_json.dumps(shipped_validation("refusal-rules")))
    html = render_html(report)
    assert "mistralinstruct (held out) 86.7%" in html
    assert "gpt4 (held out)" not in html
    # The headline is the held-out figure, not the overall one that includes development files.
    assert "86.7% binary agreement with human labels on 450 held-out XSTest completions (mistralinstruct, κ 0.35)" in html
    assert "93.4% on all 1350, including files used in development" in html


def test_validation_without_a_held_out_file_headlines_the_overall_figure() -> None:
    import json as _json

    from compliance.judges import shipped_validation

    report = example_report()
    validation = _json.loads(_json.dumps(shipped_validation("refusal-rules")))
    for figures in validation["files"].values():
        figures.pop("protocol", None)
    report["judge"]["validation"] = validation
    html = render_html(report)
    assert "93.4% binary agreement with human labels on 1350 XSTest completions (κ 0.86)" in html
    assert "held-out" not in html
