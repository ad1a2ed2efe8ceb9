"""Attention for decode steps: one new query per row, computed as two batched matrix products.

A decode step asks attention for one query position per row. PyTorch's fused attention kernels
are built for many query positions: with grouped-query attention transformers packs a key-value
head's query heads into a short "sequence" (Llama-3.2-1B: 4 rows) and the kernel pads that to
its tile. In our profile of a captured decode step on an H200 at 1,024 rows
(``compliance.bench.gpu_check``), cuDNN's attention took 5.3 of the step's 11.6 ms, about three
times what reading the keys and values once costs. With this function the step took 10.5 ms
(2,048 rows: 21.5 -> 19.2 ms). On CPU it measured no faster than SDPA end to end, so the engine
uses it on CUDA only.

:func:`decode_attention` does ``softmax(q k^T * scale + mask) v`` per key-value head with every
query head of the group at once, softmax in float32. Any call with more than one query
position (prefill), or with options it does not implement (soft-capping, attention sinks,
position bias, dropout), goes to transformers' own SDPA function unchanged. :func:`decoding`
switches a model to it for the span of a generation call and back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

#: The name the function is registered under with transformers.
NAME = "compliance_decode"

#: Architectures whose attention is plain scaled dot-product attention with a mask (no soft cap,
#: sinks or bias), so the decode path computes exactly what SDPA does.
SUPPORTED_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

_UNSUPPORTED_KWARGS = ("softcap", "s_aux", "sinks", "position_bias")


def decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                     is_causal: Optional[bool] = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``query`` ``(batch, heads, q_len, dim)``, ``key``/``value``
    ``(batch, kv_heads, kv_len, dim)``; returns ``((batch, q_len, heads, dim), None)``."""
    if query.shape[2] != 1 or dropout or any(kwargs.get(name) is not None for name in _UNSUPPORTED_KWARGS):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # Query head h reads key-value head h // group (transformers' repeat_kv order).
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)) * (scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(weights, value).reshape(batch, 1, heads, dim), None


def register() -> None:
    """Make :data:`NAME` known to transformers (idempotent); its masks are SDPA's."""
    AttentionInterface.register(NAME, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def supports(model: PreTrainedModel) -> bool:
    """Whether :func:`decoding` switches this model (plain attention, currently on SDPA)."""
    config = model.config
    return config.model_type in SUPPORTED_TYPES and getattr(config, "_attn_implementation", None) == "sdpa"


@contextmanager
def decoding(model: PreTrainedModel) -> Iterator[bool]:
    """Within the block the model's attention is :func:`decode_attention` (when :func:`supports`);
    yields whether it switched. The previous implementation is restored on exit."""
    if not supports(model):
        yield False
        return
    register()
    previous = model.config._attn_implementation
    model.config._attn_implementation = NAME
    try:
        yield True
    finally:
        model.config._attn_implementation = previous
