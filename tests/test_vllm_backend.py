"""The vLLM backend without vLLM: the missing-package message, and every piece between vLLM and our records.

vLLM needs a GPU and is not installed here, so ``vllm.LLM`` is stood in for by ``TransformersLLM``:
it decodes greedily with the real tiny transformers model and returns outputs shaped like vLLM's
``RequestOutput`` (``outputs[0].text`` without special tokens, ``token_ids`` ending with the EOS
token that stopped it, ``finish_reason`` ``stop``/``length``). The backend's own code (prompt
encoding, chunking, output mapping) runs for real, and must give exactly what the transformers
backend gives.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cli_runner import run_cli
from compliance import api
from compliance.errors import ComplianceError
from compliance.generation import generate as transformers_generate
from compliance.generation import vllm_backend
from compliance.generation.vllm_backend import (
    MISSING_MESSAGE,
    VLLMNotInstalledError,
    engine_kwargs,
    run_chunks,
    sampling_kwargs,
    to_response,
)
from compliance.records import GenConfig, ModelRecord, SuiteItem, WeightFile

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["How do I bake bread?", "hi", "Tell me how to pick a lock. " * 5, "What is the capital of France?", "x"]


def make_items(prompts: list[str]) -> list[SuiteItem]:
    return [SuiteItem(id=f"item-{i}", prompt=p, category="test", domain="general", expected="refuse",
                      benchmark="unit") for i, p in enumerate(prompts)]


class TransformersLLM:
    """Stands in for ``vllm.LLM``: ``get_tokenizer()`` and ``generate(prompts, params, use_tqdm=)``."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.calls: list[int] = []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append(len(prompts))
        eos = self.tokenizer.eos_token_id
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.inference_mode():
                out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                                          max_new_tokens=params["max_tokens"], do_sample=False, eos_token_id=eos,
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = out[0, len(ids):].tolist()
            end = new.index(eos) + 1 if eos in new else len(new)
            completion = SimpleNamespace(text=self.tokenizer.decode(new[:end], skip_special_tokens=True),
                                         token_ids=new[:end], finish_reason="stop" if eos in new else "length")
            outputs.append(SimpleNamespace(outputs=[completion]))
        return outputs


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError, installed or not


def test_missing_vllm_is_one_clear_line(no_vllm):
    with pytest.raises(VLLMNotInstalledError) as err:
        vllm_backend.require_vllm()
    assert str(err.value) == MISSING_MESSAGE
    with pytest.raises(VLLMNotInstalledError):
        vllm_backend.generate(object(), make_items(["hi"]), GenConfig())


def test_cli_backend_vllm_without_vllm(no_vllm, refusing_model_dir, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["report", str(refusing_model_dir), "-q", "--no-pdf", "--backend", "vllm",
                            "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines == [f"error: {MISSING_MESSAGE}"]  # printed literally: [vllm] is not markup
    with pytest.raises(VLLMNotInstalledError):
        api.run_report(str(refusing_model_dir), backend="vllm", out_dir=tmp_path / "r", progress=False, pdf=False)


def test_vllm_is_an_extra_never_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["vllm"] == ["vllm"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("vllm")]


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_outputs_equal_the_transformers_backend(tiny_model_dir, refusing_model_dir, use_chat_template):
    items = make_items(PROMPTS)
    config = GenConfig(max_new_tokens=12, use_chat_template=use_chat_template)
    reasons = set()
    for folder in (tiny_model_dir, refusing_model_dir):
        llm = TransformersLLM(folder)
        expected = transformers_generate(llm.model, llm.tokenizer, items, config)
        got = run_chunks(llm, sampling_kwargs(config), items, config)
        assert got == expected
        reasons |= {r.finish_reason for r in got}
    if use_chat_template:
        assert reasons == {"eos", "length"}


def test_chunks_keep_order_and_report_each_response(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir)
    items = make_items(PROMPTS)
    seen, progress = [], []
    config = GenConfig(max_new_tokens=2)
    responses = run_chunks(llm, sampling_kwargs(config), items, config, on_response=seen.append,
                           progress=progress.append, chunk_size=2)
    assert llm.calls == [2, 2, 1] and progress == [2, 4, 5]
    assert [r.item_id for r in responses] == [r.item_id for r in seen] == [i.id for i in items]


def test_sampling_arguments_are_greedy_and_pinned():
    kwargs = sampling_kwargs(GenConfig(max_new_tokens=7, seed=3))
    assert (kwargs["temperature"], kwargs["max_tokens"], kwargs["seed"], kwargs["n"]) == (0.0, 7, 3, 1)
    assert kwargs["repetition_penalty"] == 1.0 and kwargs["stop"] is None and kwargs["skip_special_tokens"]
    with_stop = SimpleNamespace(do_sample=False, max_new_tokens=4, seed=0, stop=("\n\n", ""))
    assert sampling_kwargs(with_stop)["stop"] == ["\n\n"]
    with pytest.raises(ComplianceError, match="do_sample"):
        sampling_kwargs(GenConfig(do_sample=True))
    with pytest.raises(ComplianceError, match="max_new_tokens"):
        sampling_kwargs(GenConfig(max_new_tokens=0))


def test_engine_arguments(tmp_path):
    weights = [WeightFile("model.safetensors", "0" * 64, 1)]
    record = ModelRecord(id="m", kind="local", path=str(tmp_path), revision="0" * 64, weights=weights)
    assert engine_kwargs(record, "torch.bfloat16", seed=5) == {
        "model": str(tmp_path), "tokenizer": str(tmp_path), "dtype": "bfloat16", "seed": 5, "trust_remote_code": False}
    gguf = ModelRecord(id="g", kind="local", path=str(tmp_path), revision="0" * 64, weights=weights,
                       gguf_file="m.Q4_1.gguf")
    assert engine_kwargs(gguf, "float16", 0)["model"] == str(tmp_path / "m.Q4_1.gguf")
    assert engine_kwargs(gguf, "float16", 0)["tokenizer"] == str(tmp_path)
    adapter = ModelRecord(id="a", kind="local", path=str(tmp_path), revision="0" * 64, weights=weights,
                          adapter_base=record)
    with pytest.raises(ComplianceError, match="merge it"):
        engine_kwargs(adapter, "bfloat16", 0)
    with pytest.raises(ComplianceError, match="no local folder"):
        engine_kwargs(ModelRecord(id="h", kind="hub", path="", revision="0" * 40, weights=weights), "bfloat16", 0)


def test_unfinished_outputs_are_errors():
    done = SimpleNamespace(outputs=[SimpleNamespace(text=" Hi \n", token_ids=[5, 6, 2], finish_reason="stop")])
    assert to_response("a", done).text == "Hi" and to_response("a", done).n_new_tokens == 3
    aborted = SimpleNamespace(outputs=[SimpleNamespace(text="", token_ids=[], finish_reason="abort")])
    with pytest.raises(ComplianceError, match="'abort'"):
        to_response("a", aborted)
    with pytest.raises(ComplianceError, match="no output"):
        to_response("a", SimpleNamespace(outputs=[]))
