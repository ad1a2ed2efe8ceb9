"""What a user would run instead of our engine, measured by ``make bench`` on the same prompts.

- :func:`generate_peer`: transformers ``model.generate`` on batches of prompts in the suite's
  order, left-padded, greedy, every length fixed: how lm-evaluation-harness's and inspect_ai's
  ``hf`` providers run a model. ``make bench`` tries several batch sizes and keeps the best.
- :func:`llama_cpp_peer`: llama.cpp's ``llama-server`` on the model's GGUF file, through
  ``--backend openai``'s client with one request per slot in flight. Its weights stay quantized
  and its kernels are its own, so its tokens are not compared: only its throughput counts.

The naive one-prompt ``pipeline`` loop lives with the benchmark itself
(:func:`compliance.bench.throughput.naive_pipeline`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from compliance.errors import ComplianceError
from compliance.records import GenConfig, SuiteItem

if TYPE_CHECKING:  # torch loads only when a peer runs, not with the CLI
    import torch

#: Batch sizes ``make bench`` tries for ``generate`` (the issue's 32, 64 and 128).
GENERATE_BATCHES = (32, 64, 128)

#: Peers that run only when asked (``compliance bench --peer NAME``).
OPTIONAL_PEERS = ("llama-cpp",)


def parse_batch_sizes(text: str, option: str) -> tuple[int, ...]:
    """Batch sizes given as ``32,64,128``; ``none`` or nothing gives none.

    Args:
        text: what the user gave.
        option: the option that gave it, for the error message.

    Raises:
        ComplianceError: not a comma-separated list of whole numbers of at least 1.
    """
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ComplianceError(f"{option} {text!r} is not a comma-separated list of batch sizes "
                              "(for example 32,64,128), or 'none'.") from None
    if any(size < 1 for size in sizes):
        raise ComplianceError(f"{option} {text!r}: every batch size must be at least 1.")
    return sizes


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(input_ids, attention_mask)`` with every prompt padded on the left to the longest, as
    ``tokenizer(..., padding=True)`` does with ``padding_side="left"``."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def generate_peer(
    model,
    prompts: Sequence[Sequence[int]],
    new_tokens: int,
    batch_size: int,
    pad_id: int,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[list[list[int]], float]:
    """``model.generate`` on ``prompts`` (token ids), ``batch_size`` at a time in the given order.

    Greedy, ``min_new_tokens == max_new_tokens == new_tokens``, the model's own cache and
    generation config otherwise.

    Args:
        model: the loaded causal LM, on its device.
        prompts: token ids per prompt (what :func:`~compliance.generation.transformers_backend.encode_prompt` gives).
        new_tokens: tokens generated per prompt.
        batch_size: prompts per ``generate`` call.
        pad_id: the id padding is filled with (masked out).
        progress: called with the number of prompts done after each batch.

    Returns:
        ``(new token ids per prompt, seconds)``.
    """
    import torch

    if batch_size < 1:
        raise ComplianceError(f"generate's batch size {batch_size} must be at least 1.")
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for first in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[first : first + batch_size], pad_id)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=pad_id)
        outputs.extend(out[:, ids.shape[1]:].tolist())
        if progress:
            progress(len(outputs))
    return outputs, time.perf_counter() - start


def llama_cpp_peer(
    gguf: Path,
    items: Sequence[SuiteItem],
    new_tokens: int,
    slots: int,
    threads: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[int, float, dict]:
    """llama.cpp's server on ``gguf`` answering ``items`` through our OpenAI client, ``slots`` at once.

    The server is started first (its model load is not timed) and stopped after.

    Args:
        gguf: the model's GGUF file.
        items: the prompts (sent as chat messages; the server applies the GGUF's chat template).
        new_tokens: tokens per answer, fixed (``ignore_eos``).
        slots: the server's parallel slots and the client's requests in flight.
        threads: the server's CPU threads (default: every core).
        progress: called with the number of answers done.

    Returns:
        ``(tokens generated, seconds, server details)``: its version, command line, slots, threads
        and the slots busy per decode step on average (from its ``/metrics``).

    Raises:
        LlamaServerError: the server is not built or does not start.
    """
    from compliance.generation import openai_backend
    from compliance.generation.llama_server import LlamaServer, server_version

    config = GenConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    with LlamaServer(Path(gguf), alias="bench", slots=slots, threads=threads) as server:
        client = openai_backend.OpenAIClient(server.url, concurrency=slots)
        client.served_model("bench")
        start = time.perf_counter()
        responses = openai_backend.generate(client, "bench", items, config, progress=progress)
        seconds = time.perf_counter() - start
        details = {"version": server_version(server.binary), "command": server.command()[1:],
                   "slots": slots, "threads": server.threads_used,
                   "busy_slots_per_decode": server.metrics().get("n_busy_slots_per_decode")}
    return sum(r.n_new_tokens for r in responses), seconds, details
