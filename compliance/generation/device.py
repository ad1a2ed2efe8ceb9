"""Where a model runs and in what precision, and how many prompts to generate at once.

The decisions are pure functions of what the hardware reports (:func:`choose_device`,
:func:`default_batch_size`), so every branch, CUDA included, is testable on a CPU-only machine;
:func:`pick_device` only asks torch and delegates.
"""

from __future__ import annotations

from typing import Optional

import torch

from compliance.errors import ComplianceError

#: Devices a user may ask for; ``None`` means "the best one available".
DEVICE_CHOICES = ("cpu", "cuda")

#: Most prompts per batch on CPU. Wider batches keep the matrix units busier: a batch is split into
#: one decode stream per core, and each stream's matrix products run best at about 128 rows
#: (SmolLM2-135M fp32, 2 cores, 64 new tokens: 256 rows 225-247 tok/s against 198-207 for two
#: batches of 128; 512 rows no faster than two of 256). Memory can lower it (see
#: :func:`default_batch_size`).
CPU_BATCH_SIZE = 256

#: Bounds for the CUDA rule.
MIN_BATCH_SIZE = 1
MAX_BATCH_SIZE = 256

#: Prompt length the CUDA rule budgets for; suite prompts are rarely longer.
ASSUMED_PROMPT_TOKENS = 256

#: KV-cache bytes per token per model parameter (16-bit cache). Llama-2-7B without grouped-query
#: attention needs 2 (K and V) x 32 layers x 4096 x 2 bytes = 512 KiB per token, about
#: 7.5e-5 x its 7e9 parameters; 1e-4 rounds that up, and models with grouped-query attention
#: (SmolLM2, Llama 3) need less, so the estimate errs on the safe side.
KV_BYTES_PER_TOKEN_PER_PARAM = 1e-4

#: Share of free memory given to the KV cache; the rest covers activations, logits and
#: allocator fragmentation.
KV_MEMORY_FRACTION = 0.5


def choose_device(
    cuda_available: bool, bf16_supported: bool, prefer: Optional[str] = None
) -> tuple[str, torch.dtype]:
    """Decide device and dtype from what the hardware offers.

    Args:
        cuda_available: whether a CUDA device can be used.
        bf16_supported: whether that device computes in bfloat16 (ignored without CUDA).
        prefer: ``"cpu"`` or ``"cuda"`` to force a device, ``None`` for the best available.

    Returns:
        ``("cuda", torch.bfloat16)`` or ``("cuda", torch.float16)`` on a GPU (bf16 when
        supported), ``("cpu", torch.float32)`` otherwise.

    Raises:
        ComplianceError: ``prefer`` is not a known device, or is ``"cuda"`` without a GPU.
    """
    if prefer is not None and prefer not in DEVICE_CHOICES:
        raise ComplianceError(
            f"Unknown device {prefer!r}: choose one of {', '.join(DEVICE_CHOICES)} or leave it unset."
        )
    if prefer == "cuda" and not cuda_available:
        raise ComplianceError(
            "Device 'cuda' was requested but torch sees no CUDA GPU: "
            "ask for 'cpu' instead, or install a CUDA build of torch."
        )
    if cuda_available and prefer != "cpu":
        return "cuda", torch.bfloat16 if bf16_supported else torch.float16
    return "cpu", torch.float32


def pick_device(prefer: Optional[str] = None) -> tuple[str, torch.dtype]:
    """Device and dtype for this machine: CUDA in bf16 (fp16 on older GPUs), else CPU in fp32.

    Args:
        prefer: ``"cpu"`` or ``"cuda"`` to force a device, ``None`` for the best available.

    Raises:
        ComplianceError: see :func:`choose_device`.
    """
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return choose_device(cuda, bf16, prefer)


def kv_cache_bytes_per_token(config, dtype_bytes: int) -> Optional[int]:
    """Exact KV-cache bytes per token from a transformers model config, or None when it lacks the fields.

    Keys and values, every layer, every key-value head: ``2 * layers * kv_heads * head_dim * dtype_bytes``
    (SmolLM2-135M in fp32: 2 x 30 x 3 x 64 x 4 = 46,080 bytes).
    """
    try:
        layers = int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def default_batch_size(
    device: str | torch.device,
    n_params: int,
    max_new_tokens: int,
    free_memory_bytes: Optional[int] = None,
    kv_bytes_per_token: Optional[int] = None,
) -> int:
    """How many prompts to generate at once when the user does not say.

    The rule: half the free memory (GPU memory on CUDA, available RAM on CPU, after the model is
    loaded) divided by one sequence's KV cache, ``ASSUMED_PROMPT_TOKENS + max_new_tokens`` tokens
    of ``kv_bytes_per_token`` each (when unknown, ``KV_BYTES_PER_TOKEN_PER_PARAM * n_params``),
    clamped to [1, :data:`MAX_BATCH_SIZE`] on CUDA and [1, :data:`CPU_BATCH_SIZE`] on CPU.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
        n_params: number of model parameters.
        max_new_tokens: tokens generated per prompt.
        free_memory_bytes: free memory; asked from torch (CUDA) or /proc/meminfo (CPU) when ``None``.
            On CPU with nothing known, the memory limit is not applied.
        kv_bytes_per_token: the model's exact KV-cache size per token (see
            :func:`kv_cache_bytes_per_token`).

    Returns:
        A batch size of at least 1.
    """
    device = torch.device(device)
    cap = MAX_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE
    if free_memory_bytes is None:
        if device.type == "cuda":
            free_memory_bytes, _total = torch.cuda.mem_get_info(device)
        else:
            from compliance.models.memory import available_bytes

            free_memory_bytes = available_bytes("cpu")
            if free_memory_bytes is None:
                return cap
    per_token = kv_bytes_per_token or max(KV_BYTES_PER_TOKEN_PER_PARAM * n_params, 1.0)
    per_sequence = per_token * (ASSUMED_PROMPT_TOKENS + max_new_tokens)
    fits = int(KV_MEMORY_FRACTION * free_memory_bytes // per_sequence)
    return max(MIN_BATCH_SIZE, min(cap, fits))


def batch_size_for(model, max_new_tokens: int) -> int:
    """:func:`default_batch_size` for a loaded transformers model, with its exact KV-cache size."""
    dtype_bytes = torch.tensor([], dtype=model.dtype).element_size()
    return default_batch_size(model.device, model.num_parameters(), max_new_tokens,
                              kv_bytes_per_token=kv_cache_bytes_per_token(model.config, dtype_bytes))
