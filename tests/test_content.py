"""Checks on the project's own content: policies, the starter suite and the demo data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "compliance" / "schemas"
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml"))
STARTER_MANIFEST = ROOT / "benchmarks" / "starter.yaml"
DEMO_QA = ROOT / "compliance" / "demo" / "benign_medical_qa.jsonl"
DOMAINS = {"general", "medical", "legal", "finance"}


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def _validate(document: dict, schema_name: str) -> None:
    schema = _schema(schema_name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def _load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _starter_file() -> Path:
    manifest = _load_yaml(STARTER_MANIFEST)
    return STARTER_MANIFEST.parent / manifest["files"][0]["path"]


def _starter_items() -> list[dict]:
    lines = _starter_file().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_expected_policies_exist():
    names = {p.stem for p in POLICY_FILES}
    assert {"healthcare", "legal", "finance", "general"} <= names


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_validates_against_schema(path: Path):
    policy = _load_yaml(path)
    _validate(policy, "policy.schema.json")
    assert policy["name"] == path.stem


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_rules_cite_known_sources(path: Path):
    policy = _load_yaml(path)
    source_ids = [s["id"] for s in policy["sources"]]
    assert len(source_ids) == len(set(source_ids)), "duplicate source ids"
    rule_ids = [r["id"] for r in policy["rules"]]
    assert len(rule_ids) == len(set(rule_ids)), "duplicate rule ids"
    for rule in policy["rules"]:
        unknown = set(rule["cites"]) - set(source_ids)
        assert not unknown, f"rule {rule['id']} cites unknown sources {sorted(unknown)}"


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_suites_exist(path: Path):
    for name in _load_yaml(path)["suite"]:
        assert (ROOT / "benchmarks" / f"{name}.yaml").is_file(), f"unknown benchmark {name}"


def test_starter_manifest_validates_against_schema():
    _validate(_load_yaml(STARTER_MANIFEST), "benchmark.schema.json")


def test_starter_manifest_pins_the_file():
    entry = _load_yaml(STARTER_MANIFEST)["files"][0]
    data = _starter_file().read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    rows = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    assert len(rows) == entry["rows"]


def test_starter_items_are_well_formed():
    items = _starter_items()
    assert len(items) >= 120
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for item in items:
        assert set(item) == {"id", "prompt", "category", "domain", "expected"}, item["id"]
        assert item["prompt"].strip(), item["id"]
        assert item["domain"] in DOMAINS, item["id"]
        assert item["expected"] in {"refuse", "comply"}, item["id"]
        assert item["id"].startswith(f"starter-{item['domain']}-"), item["id"]
    assert {item["domain"] for item in items} == DOMAINS


def test_starter_is_balanced():
    items = _starter_items()
    for label in ("refuse", "comply"):
        share = sum(item["expected"] == label for item in items) / len(items)
        assert 0.40 <= share <= 0.60, f"{label} share {share:.2f}"


def test_every_category_has_refuse_and_comply():
    labels: dict[str, set[str]] = {}
    for item in _starter_items():
        labels.setdefault(item["category"], set()).add(item["expected"])
    missing = {c: sorted(v) for c, v in labels.items() if v != {"refuse", "comply"}}
    assert not missing, f"categories lacking a refuse or comply item: {missing}"


def test_demo_qa_parses():
    lines = [line for line in DEMO_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines
    for number, line in enumerate(lines, 1):
        pair = json.loads(line)
        assert isinstance(pair.get("prompt"), str) and pair["prompt"].strip(), f"line {number}"
        assert isinstance(pair.get("response"), str) and pair["response"].strip(), f"line {number}"
