"""`compliance card`: report results in a model card, locally and as a Hub pull request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from compliance import api
from compliance.card import SOURCE_NAME, eval_results_for
from compliance.io import atomic_write_json
from hub_server import hub  # noqa: F401  (fixture)
from report_example import example_report
from cli_runner import run_cli

CARD = """---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
tags:
- medical
model-index:
- name: clinic-assistant
  results:
  - task:
      type: text-generation
    dataset:
      type: medqa
      name: MedQA
    metrics:
    - type: accuracy
      value: 0.61
---

# Clinic assistant

Fine-tuned for patient questions. Keep this paragraph.
"""




@pytest.fixture
def report_dir(tmp_path) -> Path:
    d = tmp_path / "report"
    atomic_write_json(d / "report.json", example_report())
    return d


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "clinic-assistant"
    d.mkdir()
    (d / "README.md").write_text(CARD, encoding="utf-8")
    (d / "config.json").write_text("{}")
    return d


def _expected(report: dict) -> dict:
    """(dataset type, metric type) -> value, straight from the report."""
    out = {}
    names = {b["name"]: b["name"] for b in report["suite"]["benchmarks"]}
    names["*"] = f"compliance-suite/{report['suite']['name']}"
    for r in report["metrics"]["rates"]:
        if r["model_role"] == "model" and r["domain"] == "*" and r["category"] == "*" and r["rate"] is not None:
            out[(names[r["benchmark"]], r["metric"])] = r["rate"]
    for p in report["metrics"]["paired"]:
        if p["domain"] == "*" and p["category"] == "*" and p["diff"] is not None:
            out[(names[p["benchmark"]], p["metric"] + "_drift")] = p["diff"]
    return out


def test_local_round_trip_and_idempotent(report_dir, model_dir, monkeypatch, capsys):
    code, out, err = run_cli(["card", str(report_dir), "--model-dir", str(model_dir)], monkeypatch, capsys)
    assert code == 0, err
    assert "Updated" in out
    report = example_report()
    card = ModelCard.load(model_dir / "README.md")
    meta = yaml.safe_load(card.content.split("---")[1])
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "clinic-assistant"
    ours = [r for r in results if r.source_name == SOURCE_NAME]
    assert {(r.dataset_type, r.metric_type): r.metric_value for r in ours} == _expected(report)
    for r in ours:
        assert r.verified is None
        assert r.source_url == "../report/report.json"
        assert r.dataset_revision is not None
    bench = {b["name"]: b["sha256"] for b in report["suite"]["benchmarks"]}
    assert {r.dataset_revision for r in ours if r.dataset_type in bench} == set(bench.values())
    assert "verified" not in card.content.split("---")[1]  # never in the metadata
    # everything the card had is still there
    other = [r for r in results if r.source_name is None]
    assert [(o.dataset_type, o.metric_type, o.metric_value) for o in other] == [("medqa", "accuracy", 0.61)]
    assert card.data.license == "apache-2.0" and card.data.tags == ["medical"]
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Fine-tuned for patient questions. Keep this paragraph." in card.text
    assert (model_dir / "config.json").read_text() == "{}"
    # the section
    sha = hashlib.sha256((report_dir / "report.json").read_bytes()).hexdigest()
    assert "## Safety re-evaluation" in card.text and sha in card.text
    assert "**FAIL**" in card.text and report["policy"]["title"] in card.text
    assert report["summary"]["base"] in card.text and report["created_at"] in card.text
    assert "compliance verify" in card.text
    # second run: nothing changes, the file is not even rewritten
    before = (model_dir / "README.md").read_bytes()
    mtime = (model_dir / "README.md").stat().st_mtime_ns
    result = api.card(report_dir, model_dir=model_dir)
    assert not result.changed
    assert (model_dir / "README.md").read_bytes() == before
    assert (model_dir / "README.md").stat().st_mtime_ns == mtime
    assert card.text.count("## Safety re-evaluation") == 1


def test_new_report_replaces_old_results(report_dir, model_dir, tmp_path):
    api.card(report_dir, model_dir=model_dir)
    report = example_report()
    report["report_id"] = "rpt-second"
    for r in report["metrics"]["rates"]:
        if r["model_role"] == "model" and r["rate"] is not None:
            r["rate"] = round(r["rate"] / 2, 6)
    second = tmp_path / "second"
    atomic_write_json(second / "report.json", report)
    assert api.card(second, model_dir=model_dir).changed
    card = ModelCard.load(model_dir / "README.md")
    ours = [r for r in card.data.eval_results if r.source_name == SOURCE_NAME]
    assert len(ours) == len(eval_results_for(report, "x"))
    assert {(r.dataset_type, r.metric_type): r.metric_value for r in ours} == _expected(report)
    assert card.text.count("## Safety re-evaluation") == 1 and "rpt-second" in card.text


def test_card_without_readme_is_created(report_dir, tmp_path):
    d = tmp_path / "bare"
    d.mkdir()
    assert api.card(report_dir, model_dir=d).changed
    card = ModelCard.load(d / "README.md")
    assert card.data.model_name == "bare" and card.data.eval_results


@pytest.mark.parametrize("bad", [
    "---\nlicense: [apache-2.0\ntags: x\n---\n# Model\n",
    "---\n- just\n- a list\n---\n# Model\n",
    "---\nlicense: mit\n# never closed\n",
])
def test_malformed_front_matter_is_one_line_and_untouched(report_dir, model_dir, bad, monkeypatch, capsys):
    (model_dir / "README.md").write_text(bad, encoding="utf-8")
    code, out, err = run_cli(["card", str(report_dir), "--model-dir", str(model_dir)], monkeypatch, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "README.md" in lines[0] and "front matter" in lines[0], err
    assert "Traceback" not in err
    assert (model_dir / "README.md").read_text(encoding="utf-8") == bad


def test_hub_pull_request(report_dir, hub, monkeypatch, capsys):  # noqa: F811
    (report_dir / "report.intoto.json").write_text("{}")  # marks the report as signed; content not read here
    hub.add_repo("acme/clinic", {"config.json": "{}"}, card=CARD)
    code, out, err = run_cli(["card", str(report_dir), "--repo", "acme/clinic"], monkeypatch, capsys)
    assert code == 0, err
    assert "Opened pull request" in out and "/acme/clinic/discussions/1" in out
    [commit] = hub.commits
    assert commit["create_pr"] and commit["revision"] == "refs/pr/1"
    assert commit["files"] == ["README.md", "safety/report.intoto.json", "safety/report.json"]
    repo = hub.repos["acme/clinic"]
    assert repo.revisions["main"]["README.md"].decode() == CARD  # main untouched: it is a PR
    pr_readme = repo.revisions["refs/pr/1"]["README.md"].decode()
    card = ModelCard(pr_readme)
    ours = [r for r in card.data.eval_results if r.source_name == SOURCE_NAME]
    assert {(r.dataset_type, r.metric_type): r.metric_value for r in ours} == _expected(example_report())
    assert ours[0].source_url == f"{hub.endpoint}/acme/clinic/blob/main/safety/report.json"
    assert "signed" in card.text and "verified" not in pr_readme.split("---")[1]
    assert repo.revisions["refs/pr/1"]["safety/report.json"] == (report_dir / "report.json").read_bytes()

    # Again, before anyone merges it: the open pull request is named, no second one is opened.
    code, out, err = run_cli(["card", str(report_dir), "--repo", "acme/clinic"], monkeypatch, capsys)
    assert code == 0, err
    assert "already open" in out and "/acme/clinic/discussions/1" in out and len(hub.commits) == 1
    # A changed report file is new content: a new pull request.
    (report_dir / "report.intoto.json").write_text('{"payload": "re-signed"}')
    assert api.card(report_dir, repo="acme/clinic").pr_url.endswith("/acme/clinic/discussions/2")
    # A closed pull request does not count: the same content is proposed again.
    repo.pull_requests[1]["status"] = repo.pull_requests[2]["status"] = "closed"
    assert api.card(report_dir, repo="acme/clinic").pr_url.endswith("/acme/clinic/discussions/3")
    assert len(hub.commits) == 3


def test_hub_direct_commit_then_idempotent(report_dir, hub, monkeypatch, capsys):  # noqa: F811
    hub.add_repo("acme/clinic", {"config.json": "{}"}, card=CARD)
    code, out, err = run_cli(["card", str(report_dir), "--repo", "acme/clinic", "--no-pr"], monkeypatch, capsys)
    assert code == 0, err
    assert "Committed" in out
    [commit] = hub.commits
    assert not commit["create_pr"] and commit["revision"] == "main"
    assert "## Safety re-evaluation" in hub.repos["acme/clinic"].revisions["main"]["README.md"].decode()
    result = api.card(report_dir, repo="acme/clinic", create_pr=False)
    assert not result.changed and len(hub.commits) == 1


def test_hub_missing_repo_is_one_line(report_dir, hub, monkeypatch, capsys):  # noqa: F811
    code, out, err = run_cli(["card", str(report_dir), "--repo", "acme/nothing"], monkeypatch, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "acme/nothing" in err


def test_needs_exactly_one_target(report_dir, monkeypatch, capsys):
    code, out, err = run_cli(["card", str(report_dir)], monkeypatch, capsys)
    assert code != 0 and "--model-dir" in err

