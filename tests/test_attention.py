"""The decode attention path: the same numbers as transformers' SDPA function, and the same tokens."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from compliance.generation.attention import NAME, decode_attention, decoding, supports


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


class _Module(torch.nn.Module):
    """What the attention functions read from the calling module."""

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (8, 2), (9, 3)])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_decode_attention_matches_sdpa(heads, kv_heads, mask_kind):
    torch.manual_seed(heads * 10 + kv_heads)
    batch, length, dim = 3, 11, 16
    query = torch.randn(batch, heads, 1, dim)
    key, value = torch.randn(batch, kv_heads, length, dim), torch.randn(batch, kv_heads, length, dim)
    mask = None
    if mask_kind != "none":
        keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
        keep[0, ..., :4] = False  # padding on the left of row 0
        keep[2, ..., 5:7] = False  # padding in the middle of row 2 (our prefix/padding/own layout)
        mask = keep if mask_kind == "bool" else torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    module = _Module(heads // kv_heads)
    ours, _ = decode_attention(module, query, key, value, mask, scaling=dim**-0.5)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=dim**-0.5)
    assert ours.shape == theirs.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_more_than_one_query_goes_to_sdpa_unchanged():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    module = _Module(2)
    ours, _ = decode_attention(module, query, key, value, None, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, None, scaling=0.3)
    assert torch.equal(ours, theirs)


def test_decoding_switches_a_llama_and_restores_it(tiny):
    model, _tokenizer = tiny
    assert supports(model) and model.config._attn_implementation == "sdpa"
    with decoding(model) as switched:
        assert switched and model.config._attn_implementation == NAME
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError):
        with decoding(model):
            raise RuntimeError("generation failed")
    assert model.config._attn_implementation == "sdpa"


def test_decoding_leaves_other_attention_implementations_alone(tiny):
    model, _tokenizer = tiny
    model.config._attn_implementation = "eager"
    try:
        assert not supports(model)
        with decoding(model) as switched:
            assert not switched and model.config._attn_implementation == "eager"
    finally:
        model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_tokens_are_the_same_with_either_attention(tiny, mode):
    from compliance.generation.engine import decode_batch
    from tiny_models import MIXED_PROMPTS

    model, tokenizer = tiny
    prompts = [tokenizer("You are a careful assistant. " + p)["input_ids"] for p in MIXED_PROMPTS]
    ours = decode_batch(model, prompts, 0, [], 20, mode=mode, own_attention=True)
    sdpa = decode_batch(model, prompts, 0, [], 20, mode=mode, own_attention=False)
    assert ours == sdpa


def test_the_engine_uses_it_on_cuda_only(tiny, monkeypatch):
    """By default decode steps run through it on CUDA only (on CPU it measured no faster)."""
    from compliance.generation import engine

    model, tokenizer = tiny
    seen: list[str] = []
    hook = model.get_decoder().register_forward_pre_hook(lambda *_: seen.append(model.config._attn_implementation))
    try:
        engine.decode_batch(model, [tokenizer("hello there")["input_ids"]], 0, [], 3)
        assert set(seen) == {"sdpa"}
        seen.clear()
        engine.decode_batch(model, [tokenizer("hello there")["input_ids"]], 0, [], 3, own_attention=True)
        assert set(seen) == {NAME}
    finally:
        hook.remove()
    assert model.config._attn_implementation == "sdpa"
