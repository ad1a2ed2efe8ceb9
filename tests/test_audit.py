"""compliance audit: the seeded sample and its sheets, the checks on a labels file, and the fold-back."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from pathlib import Path
from typing import Callable, Optional

import pytest

from cli_runner import run_cli
from compliance import api
from compliance.audit import AuditError, draw_audit, draw_sample, fold_labels, report_digest
from compliance.audit.design import MIN_PER_STRATUM, planned_prompts
from compliance.audit.sample import populations
from compliance.io import atomic_write_json
from compliance.schemas import report_errors
from compliance.stats.intervals import wilson_interval
from report_example import example_report

FLIP = {"harmful": "not_harmful", "not_harmful": "harmful", "refusal": "compliance", "compliance": "refusal"}


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "report"
    atomic_write_json(folder / "report.json", example_report())
    return folder


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def judge_label(report: dict, card) -> str:
    side = next(it for it in report["items"] if it["item_id"] == card.item_id)[card.role]
    return side["harm"]["label"] if card.axis == "harm" else side["label"]


def write_labels(folder: Path, sheet, path: Path, person: Optional[Callable] = None, keep: Optional[int] = None,
                 auditor: str = "A. Person", **changes) -> Path:
    """A labels file as audit.html saves it; ``person(card, judge_label)`` gives the person's label."""
    report = _report(folder)
    sample = sheet.sample
    cards = sample.cards[:keep] if keep is not None else sample.cards
    labels = [{"unit": c.unit, "item_id": c.item_id, "axis": c.axis,
               "label": (person or (lambda card, j: j))(c, judge_label(report, c))} for c in cards]
    doc = {"format": "compliance-audit-labels", "version": 1, "report_id": sample.report_id,
           "report_sha256": sample.report_sha256, "seed": sample.seed, "size": sample.size,
           "sample_sha256": sample.sha256, "auditor": auditor, "saved_at": "2026-12-02T10:00:00Z", "labels": labels}
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2))
    return path


# --- the sample and the sheets ------------------------------------------------------------


def test_the_sample_is_seeded_stratified_paired_and_planned(report_dir):
    report = _report(report_dir)
    first, again, other = (draw_sample(report, seed=s) for s in (0, 0, 1))
    assert [c.unit for c in first.cards] == [c.unit for c in again.cards] and first.sha256 == again.sha256
    assert first.sha256 != other.sha256
    assert first.report_sha256 == report_digest(report)
    # Every non-empty stratum (model role x axis x judge label) is in the sample.
    assert all(s.take >= min(s.size, MIN_PER_STRATUM) and s.take <= s.size for s in first.strata)
    assert {(s.metric, s.base_event, s.model_event) for s in first.strata} == {
        (s.metric, s.base_event, s.model_event) for s in first.strata if s.take > 0}
    # Both replies of each sampled prompt: the drift is paired.
    prompts = {(c.metric, c.item_id) for c in first.cards}
    assert len(first.cards) == 2 * len(prompts) == first.size
    assert {c.role for c in first.cards} == {"base", "model"}
    # The planned size: the width computation per metric (at least each stratum's floor).
    assert first.planned and first.size == 2 * sum(p["planned"] for p in first.planning["populations"])
    for p in first.planning["populations"]:
        assert p["planned"] >= planned_prompts(p["prompts"], first.planning["error_rate"][p["axis"]])
    assert [p["metric"] for p in first.planning["populations"]] == [p.metric for p in populations(report)]


def test_the_sheets_show_prompt_and_reply_and_hide_judges_and_models(report_dir):
    sheet = draw_audit(report_dir, size=40, seed=3)
    report = _report(report_dir)
    html = sheet.html_path.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', html, re.S).group(1))
    assert len(data["cards"]) == 40 and all(set(c) == {"unit", "item_id", "axis", "prompt", "reply"} for c in data["cards"])
    assert data["sample"]["sample_sha256"] == sheet.sample.sha256
    judge_ids = {j for it in report["items"] for side in ("base", "model") for j in it[side]["labels"]}
    assert not any(j in html for j in judge_ids)  # no judge is named, let alone its label
    assert '"role"' not in html and "fine-tune" not in html.lower()
    assert "http://" not in html and "https://" not in html  # works offline: nothing to fetch
    rows = list(csv.DictReader(io.StringIO(sheet.csv_path.read_text())))
    assert [r["unit"] for r in rows] == [c["unit"] for c in data["cards"]]
    assert all(r["label"] == "" and "role" not in r for r in rows)
    item = next(it for it in report["items"] if it["item_id"] == rows[0]["item_id"])
    assert rows[0]["prompt"] == item["prompt"] and rows[0]["reply"] in (item["base"]["response"], item["model"]["response"])


def test_bad_sample_sizes_are_one_line(report_dir, monkeypatch, capsys):
    for size, words in ((7, "give an even number"), (8, "too small to cover every stratum"),
                        (1000, "is more than")):
        code, out, err = run_cli(["audit", str(report_dir), "--sample", str(size)], monkeypatch, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_report_without_harmful_prompts_audits_over_refusal_only(tmp_path, monkeypatch, capsys):
    report = example_report()
    report["items"] = [it for it in report["items"] if it["expected"] == "comply"]
    folder = tmp_path / "benign"
    atomic_write_json(folder / "report.json", report)
    code, out, err = run_cli(["audit", str(folder), "--sample", "12"], monkeypatch, capsys)
    assert code == 0
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no harmful prompts" in notes[0] and "over-refusal" in notes[0]
    sample = draw_sample(report, size=12)
    assert {c.metric for c in sample.cards} == {"over_refusal_rate"}


# --- the fold-back --------------------------------------------------------------------------


def test_fold_back_adds_the_audit_section_and_renders_it(report_dir, tmp_path):
    sheet = draw_audit(report_dir)
    flipped = {c.unit for c in sheet.sample.cards[::7]}  # the person disagrees with the judge now and then
    labels = write_labels(report_dir, sheet, tmp_path / "audit-labels.json",
                          person=lambda c, j: FLIP[j] if c.unit in flipped else j)
    before = _report(report_dir)
    result = fold_labels(report_dir, labels)
    report = _report(report_dir)
    assert report_errors(report) == [] and report["schema_version"] == "2.1"
    audit = report["audit"]
    assert audit["report_sha256"] == report_digest(before) == report_digest(report)
    assert {k: v for k, v in report.items() if k not in ("audit", "schema_version")} == \
           {k: v for k, v in before.items() if k != "schema_version"}  # nothing else changed
    assert audit["auditor"] == "A. Person" and audit["labels"]["n_labelled"] == sheet.sample.size
    assert (report_dir / "audit-labels.json").read_bytes() == labels.read_bytes()
    from compliance.hashing import sha256_file

    assert audit["labels"]["sha256"] == sha256_file(labels)
    # Every rate and drift the report measured gets an audited interval.
    assert {(p["metric"], p["benchmark"], p["domain"], p["category"]) for p in audit["paired"]} == {
        (p["metric"], p["benchmark"], p["domain"], p["category"]) for p in before["metrics"]["paired"] if p["n"]}
    assert len(audit["rates"]) == 2 * len(audit["paired"])
    assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in audit["rates"])
    assert all(p["ci_low"] <= p["diff"] <= p["ci_high"] for p in audit["paired"])
    # Agreement per axis and model, for every judge of the axis; the flipped labels show.
    primary = [a for a in audit["agreement"] if a["primary"]]
    assert {(a["axis"], a["model_role"]) for a in primary} == {(ax, r) for ax in ("harm", "refusal") for r in ("base", "model")}
    disagreements = sum(a["n_labelled"] - a["n_agree"] for a in primary)
    assert disagreements == len(flipped)
    assert {a["judge"] for a in audit["agreement"]} >= {"harm-embed@1.0", "refusal-embed@1.0"}
    html = result.html_path.read_text()
    assert "Human audit" in html and audit["labels"]["sha256"] in html
    # Folding again (corrected labels, another name) replaces the audit; the sample still matches.
    again = fold_labels(report_dir, write_labels(report_dir, sheet, tmp_path / "second.json", auditor="B. Person"))
    assert again.audit["auditor"] == "B. Person" and any("replaces the audit" in n for n in again.notes)
    assert again.audit["report_sha256"] == audit["report_sha256"]


def test_a_census_that_agrees_with_the_judge_leaves_the_rates_as_judged(report_dir, tmp_path):
    report = _report(report_dir)
    everything = 2 * sum(p["prompts"] for p in draw_sample(report).planning["populations"])
    sheet = draw_audit(report_dir, size=everything)
    audited = fold_labels(report_dir, write_labels(report_dir, sheet, tmp_path / "labels.json")).audit
    judged = {(r["metric"], r["model_role"], r["benchmark"], r["domain"], r["category"]): r
              for r in report["metrics"]["rates"]}
    for r in audited["rates"]:
        j = judged[(r["metric"], r["model_role"], r["benchmark"], r["domain"], r["category"])]
        assert r["rate"] == pytest.approx(j["rate"], abs=1e-6)
        # Every reply audited, no judge error: nothing is uncertain but the prompts, as Wilson says.
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(j["k"], j["n"]), abs=1e-6)
    assert all(a["agreement"] == 1.0 for a in audited["agreement"] if a["primary"])
    assert audited["policy"]["changed"] == []


def test_a_rule_whose_verdict_changes_is_on_page_1(report_dir, tmp_path):
    from pypdf import PdfReader

    (report_dir / "report.pdf").write_bytes(b"%PDF- stand-in: a report folder with a PDF gets it rendered again")
    sheet = draw_audit(report_dir)
    # The person finds every fine-tune reply to a harmful prompt harmful: the judge missed them.
    labels = write_labels(report_dir, sheet, tmp_path / "labels.json",
                          person=lambda c, j: "harmful" if (c.axis, c.role) == ("harm", "model") else j)
    result = fold_labels(report_dir, labels)
    changed = result.audit["policy"]["changed"]
    assert changed, result.audit["policy"]["rules"]
    assert all(c["judge_verdict"] != c["audited_verdict"] for c in changed)
    page1 = " ".join(PdfReader(str(result.pdf_path)).pages[0].extract_text().replace("\x00", "").split())
    assert "Human audit." in page1 and "A. Person labelled" in page1
    for c in changed:
        assert c["rule_id"] in page1
    assert "audited:" in page1


def test_signed_report_is_signed_again_with_the_labels_in_the_statement(report_dir, tmp_path, monkeypatch, capsys):
    import base64

    from compliance.report.render import render_pdf

    keys = tmp_path / "keys"
    api.keygen(keys)
    render_pdf(_report(report_dir), report_dir / "report.pdf")
    api.sign(report_dir, keys)
    sheet = draw_audit(report_dir)
    labels = write_labels(report_dir, sheet, tmp_path / "labels.json", auditor="")
    code, out, err = run_cli(["audit", str(report_dir), "--labels", str(labels), "--auditor", "Dr. Q", "-q"],
                             monkeypatch, capsys)
    assert code == 2 and "is signed" in err and "--keys" in err and len(err.strip().splitlines()) == 1
    assert "audit" not in _report(report_dir)  # nothing written
    code, out, err = run_cli(["audit", str(report_dir), "--labels", str(labels), "--keys", str(keys), "-q"],
                             monkeypatch, capsys)
    assert code == 2 and "--auditor NAME" in err  # the sheet saved no name and none was given
    code, out, err = run_cli(["audit", str(report_dir), "--labels", str(labels), "--auditor", "Dr. Q",
                              "--keys", str(keys), "-q"], monkeypatch, capsys)
    assert code == 0, err
    assert "signed again" in out
    assert api.verify(report_dir, keys_dir=keys).ok
    envelope = json.loads((report_dir / "report.intoto.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    audit = statement["predicate"]["audit"]
    from compliance.hashing import sha256_file

    assert audit["auditor"] == "Dr. Q" and audit["labels"]["sha256"] == sha256_file(labels)
    subject = {s["name"]: s for s in statement["subject"]}["audit/audit-labels.json"]
    assert subject["digest"]["sha256"] == sha256_file(labels) and subject["annotations"]["auditor"] == "Dr. Q"
    # verify checks the copied labels file against that subject: a changed label is caught.
    result = api.verify(report_dir, keys_dir=keys)
    assert any(p.startswith("subject audit/audit-labels.json: sha256 matches") for p in result.passed)
    copied = report_dir / "audit-labels.json"
    copied.write_bytes(copied.read_bytes().replace(b'"', b"'", 1))
    result = api.verify(report_dir, keys_dir=keys)
    assert not result.ok and any("audit-labels.json changed after signing" in f for f in result.failed)


# --- the checks on a labels file: one line each ---------------------------------------------


def _fold_cli(report_dir: Path, labels: Path, monkeypatch, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["audit", str(report_dir), "--labels", str(labels), "-q", *extra], monkeypatch, capsys)


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], lines[0]


def test_a_labels_file_from_another_report_is_refused(report_dir, tmp_path, monkeypatch, capsys):
    other = copy.deepcopy(example_report())
    other["report_id"] = "rpt-other"
    other_dir = tmp_path / "other"
    atomic_write_json(other_dir / "report.json", other)
    labels = write_labels(other_dir, draw_audit(other_dir), tmp_path / "labels.json")
    code, out, err = _fold_cli(report_dir, labels, monkeypatch, capsys)
    _one_line_error(code, err, "drawn from another report (rpt-other)", "sha256")
    assert "audit" not in _report(report_dir)


def test_labels_for_items_not_in_the_report_are_refused(report_dir, tmp_path, monkeypatch, capsys):
    sheet = draw_audit(report_dir)
    labels = write_labels(report_dir, sheet, tmp_path / "labels.json")
    doc = json.loads(labels.read_text())
    doc["labels"].append({"unit": "u000000000000", "item_id": "starter-med-999", "axis": "harm", "label": "harmful"})
    labels.write_text(json.dumps(doc))
    code, out, err = _fold_cli(report_dir, labels, monkeypatch, capsys)
    _one_line_error(code, err, "1 item(s) that are not in", "starter-med-999")


def test_labels_outside_the_seeded_sample_are_refused(report_dir, tmp_path, monkeypatch, capsys):
    report = _report(report_dir)
    small, large = draw_sample(report, size=32), draw_sample(report, size=48)
    extra = next(c for c in large.cards if c.unit not in {s.unit for s in small.cards})
    sheet = draw_audit(report_dir, size=32)
    labels = write_labels(report_dir, sheet, tmp_path / "labels.json")
    doc = json.loads(labels.read_text())
    doc["labels"].append({"unit": extra.unit, "item_id": extra.item_id, "axis": extra.axis, "label": "refusal"})
    labels.write_text(json.dumps(doc))
    code, out, err = _fold_cli(report_dir, labels, monkeypatch, capsys)
    _one_line_error(code, err, "outside the seeded sample")


def test_a_partly_labelled_sheet_needs_partial_and_then_widens(report_dir, tmp_path, monkeypatch, capsys):
    sheet = draw_audit(report_dir)
    labels = write_labels(report_dir, sheet, tmp_path / "labels.json", keep=10)
    code, out, err = _fold_cli(report_dir, labels, monkeypatch, capsys)
    _one_line_error(code, err, f"labels 10 of the {sheet.sample.size} sampled replies", "--partial")
    assert "audit" not in _report(report_dir)
    code, out, err = _fold_cli(report_dir, labels, monkeypatch, capsys, "--partial")
    assert code == 0, err
    audit = _report(report_dir)["audit"]
    assert audit["labels"]["partial"] and audit["labels"]["n_labelled"] == 10 and "Partly labelled" in audit["statement"]
    full = fold_labels(report_dir, write_labels(report_dir, sheet, tmp_path / "full.json")).audit
    width = {(r["metric"], r["model_role"], r["domain"]): r["ci_high"] - r["ci_low"] for r in full["rates"]}
    assert all(r["ci_high"] - r["ci_low"] >= width[(r["metric"], r["model_role"], r["domain"])] - 1e-9
               for r in audit["rates"])


def test_other_bad_labels_files_are_one_line(report_dir, tmp_path, monkeypatch, capsys):
    sheet = draw_audit(report_dir)
    good = write_labels(report_dir, sheet, tmp_path / "labels.json")
    doc = json.loads(good.read_text())
    cases = {
        "not-json.json": ("{not json", "is not valid JSON"),
        "doubled-key.json": ('{"labels": [], "labels": []}', "key 'labels' appears more than once"),
        "deep.json": ("[" * 1000 + "]" * 1000, "nests deeper than 64 levels"),
        "wrong-format.json": (json.dumps({"labels": []}), "is not a compliance-audit-labels file"),
        "bad-label.json": (json.dumps(dict(doc, labels=[dict(doc["labels"][0], label="maybe")] + doc["labels"][1:])),
                           "has label 'maybe', not one of"),
        "twice.json": (json.dumps(dict(doc, labels=doc["labels"] + doc["labels"][:1])), "a second time"),
        "other-seed.json": (json.dumps(dict(doc, seed=5)), "is not the one seed 5 draws"),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        code, out, err = _fold_cli(report_dir, path, monkeypatch, capsys)
        _one_line_error(code, err, words)
    code, out, err = _fold_cli(report_dir, tmp_path / "missing.json", monkeypatch, capsys)
    _one_line_error(code, err, "not found")
    code, out, err = run_cli(["audit", str(report_dir), "--labels", str(good), "--sample", "10"], monkeypatch, capsys)
    _one_line_error(code, err, "give one or the other")
    assert "audit" not in _report(report_dir)


def test_the_filled_csv_folds_back_like_the_page(report_dir, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["audit", str(report_dir), "--sample", "40", "--out", str(tmp_path / "sheet")],
                             monkeypatch, capsys)
    assert code == 0 and "audit.html" in out
    report = _report(report_dir)
    sample = draw_sample(report, size=40)
    by_unit = {c.unit: c for c in sample.cards}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "sheet" / "audit.csv").read_text())))
    keys = {"harmful": "H", "not_harmful": "not harmful", "refusal": "refusal", "compliance": "c"}
    for r in rows:  # keys, words, any case: as people type them
        r["label"] = keys[judge_label(report, by_unit[r["unit"]])]
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = _fold_cli(report_dir, filled, monkeypatch, capsys, "--auditor", "C. Sheet")
    assert code == 0, err
    audit = _report(report_dir)["audit"]
    assert audit["labels"]["format"] == "csv" and audit["labels"]["n_labelled"] == 40
    assert (report_dir / "audit-labels.csv").read_bytes() == filled.read_bytes()
    assert all(a["n_agree"] == a["n_labelled"] for a in audit["agreement"] if a["primary"])


def test_a_schema_1_report_cannot_be_audited(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["audit", str(Path(__file__).parent / "data" / "report-1.0")], monkeypatch, capsys)
    _one_line_error(code, err, "schema 1.0 report", "stores no prompts")
    with pytest.raises(AuditError):
        draw_audit(tmp_path)


def test_a_report_the_pipeline_wrote_folds_back(refusing_model_dir, tmp_path, monkeypatch, capsys):
    """A real report (tiny models, refusal judge only: main ships no harm judge by default yet)."""
    result = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "rep", limit=12, max_new_tokens=6,
                            progress=False, pdf=False)
    code, out, err = run_cli(["audit", str(result.out_dir)], monkeypatch, capsys)
    assert code == 0, err
    if "harm" not in result.report["judges"]:
        assert "ran no harm judge" in err
    sheet = draw_audit(result.out_dir)  # the same sample the command drew
    assert (result.out_dir / "audit" / "audit.html").read_text() == sheet.html_path.read_text()
    labels = write_labels(result.out_dir, sheet, tmp_path / "labels.json",
                          person=lambda c, j: FLIP[j] if c.role == "model" else j)
    audit = fold_labels(result.out_dir, labels).audit
    assert report_errors(_report(result.out_dir)) == []
    model_agreement = [a for a in audit["agreement"] if a["primary"] and a["model_role"] == "model"]
    assert model_agreement and all(a["agreement"] == 0.0 for a in model_agreement)
    assert {a["judge"] for a in audit["agreement"]} == {j["judge"] for js in result.report["sensitivity"]["judges"].values()
                                                         for j in js}
