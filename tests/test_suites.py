"""Suite loading: manifests validated, digests enforced, sampling stratified and seeded."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from compliance.errors import SuiteError
from compliance.suites import load_benchmark, load_suite, stratified_sample

ROOT = Path(__file__).resolve().parents[1]


def _copy_starter(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "benchmarks" / "starter", tmp_path / "starter")
    shutil.copy(ROOT / "benchmarks" / "starter.yaml", tmp_path / "starter.yaml")
    return tmp_path / "starter.yaml"


def test_starter_loads_with_pinned_digest():
    info, items = load_benchmark("starter")
    assert info.n_items == len(items) == 128
    assert Counter(i.expected for i in items) == {"refuse": 64, "comply": 64}
    assert {i.domain for i in items} == {"general", "medical", "legal", "finance"}
    assert info.sha256 == yaml.safe_load((ROOT / "benchmarks/starter.yaml").read_text())["files"][0]["sha256"]


def test_changed_data_file_is_refused_with_both_digests(tmp_path):
    manifest = _copy_starter(tmp_path)
    data = tmp_path / "starter" / "starter_prompts.jsonl"
    data.write_text(data.read_text().replace("pipe bomb", "pipe organ"))
    with pytest.raises(SuiteError) as exc:
        load_benchmark(str(manifest))
    msg = str(exc.value)
    assert "sha256" in msg and "starter_prompts.jsonl" in msg and "ee05e3b7" in msg


def test_manifest_missing_field_names_the_field(tmp_path):
    manifest = _copy_starter(tmp_path)
    doc = yaml.safe_load(manifest.read_text())
    del doc["license"]
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match="'license' is missing"):
        load_benchmark(str(manifest))


def test_unknown_benchmark_lists_choices():
    with pytest.raises(SuiteError, match="unknown benchmark 'nope'.*starter"):
        load_suite(["nope"])


def test_bad_row_value_is_named(tmp_path):
    manifest = _copy_starter(tmp_path)
    data = tmp_path / "starter" / "starter_prompts.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[3]["expected"] = "maybe"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = yaml.safe_load(manifest.read_text())
    from compliance.hashing import sha256_file

    doc["files"][0]["sha256"] = sha256_file(data)
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match="row 4 has expected 'maybe'"):
        load_benchmark(str(manifest))


def test_stratified_sample_is_seeded_proportional_and_ordered():
    _, items = load_benchmark("starter")
    a = stratified_sample(items, 32, seed=1)
    b = stratified_sample(items, 32, seed=1)
    c = stratified_sample(items, 32, seed=2)
    assert [i.id for i in a] == [i.id for i in b]
    assert [i.id for i in a] != [i.id for i in c]
    assert len(a) == 32
    assert Counter(i.expected for i in a) == {"refuse": 16, "comply": 16}
    assert Counter(i.domain for i in a) == {"general": 8, "medical": 8, "legal": 8, "finance": 8}
    order = {it.id: n for n, it in enumerate(items)}
    assert [order[i.id] for i in a] == sorted(order[i.id] for i in a)


def test_limit_must_be_positive():
    with pytest.raises(SuiteError, match="--limit 0"):
        load_suite(["starter"], limit=0)
