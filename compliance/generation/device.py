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

#: Prompts per batch on CPU: throughput keeps rising to about 32 (measured on 2 cores,
#: SmolLM2-135M, 128 prompts x 64 tokens: 67 tok/s at 16, 91 tok/s at 32).
CPU_BATCH_SIZE = 32

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


def default_batch_size(
    device: str | torch.device,
    n_params: int,
    max_new_tokens: int,
    free_memory_bytes: Optional[int] = None,
) -> int:
    """How many prompts to generate at once when the user does not say.

    The rule:

    - CPU (any non-CUDA device): :data:`CPU_BATCH_SIZE` (32).
    - CUDA: half the free GPU memory (after the model is loaded) divided by one sequence's
      estimated KV cache, ``KV_BYTES_PER_TOKEN_PER_PARAM * n_params`` bytes per token times
      ``ASSUMED_PROMPT_TOKENS + max_new_tokens`` tokens, clamped to [1, 256].

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
        n_params: number of model parameters.
        max_new_tokens: tokens generated per prompt.
        free_memory_bytes: free GPU memory; asked from torch when ``None`` on CUDA.

    Returns:
        A batch size of at least 1.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    if free_memory_bytes is None:
        free_memory_bytes, _total = torch.cuda.mem_get_info(device)
    kv_bytes_per_token = max(KV_BYTES_PER_TOKEN_PER_PARAM * n_params, 1.0)
    per_sequence = kv_bytes_per_token * (ASSUMED_PROMPT_TOKENS + max_new_tokens)
    fits = int(KV_MEMORY_FRACTION * free_memory_bytes // per_sequence)
    return max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, fits))
