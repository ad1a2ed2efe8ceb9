"""Greedy generation with a transformers causal LM, batched, in the suite's order.

Prompts are sorted by token length before batching so each batch pads little, then answers
are put back in the items' order. Batches are left-padded with an attention mask, so greedy
output for a prompt is the same whether it runs alone or in a batch (transformers derives
position ids from the mask).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import transformers
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from compliance.errors import ComplianceError
from compliance.generation.device import default_batch_size
from compliance.records import GenConfig, Response, SuiteItem

BACKEND_NAME = "transformers"


def backend_version() -> str:
    """Version of transformers doing the generation, recorded in the report's provenance."""
    return transformers.__version__


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[SuiteItem],
    config: GenConfig,
    on_response: Optional[Callable[[Response], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> list[Response]:
    """Answer every item greedily and return the responses in the items' order.

    Args:
        model: a causal LM, already on its device and in eval mode.
        tokenizer: its tokenizer; the chat template is used when ``config.use_chat_template``
            and the tokenizer has one, otherwise the raw prompt is encoded.
        items: the prompts.
        config: decoding settings (``max_new_tokens``, ``batch_size``, ``seed``...); a
            ``batch_size`` of ``None`` is chosen by :func:`default_batch_size`.
        on_response: called with each response as soon as its batch finishes, so callers
            can persist it before the next batch starts.
        progress: called with the number of items done after each batch.

    Returns:
        One :class:`Response` per item, in the order of ``items``.

    Raises:
        ComplianceError: sampling was requested, a setting is out of range, or a prompt
            encodes to no tokens.
    """
    _check_config(config)
    torch.manual_seed(config.seed)
    prompts = [_encode(tokenizer, item, config.use_chat_template) for item in items]
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    generation_config = _greedy_config(config.max_new_tokens, eos_ids, pad_id)
    batch_size = config.batch_size
    if batch_size is None:
        batch_size = default_batch_size(model.device, model.num_parameters(), config.max_new_tokens)

    # Stable sort: equal-length prompts keep their relative order, so batches are reproducible.
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    responses: list[Optional[Response]] = [None] * len(items)
    n_done = 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, attention_mask = _left_pad([prompts[i] for i in batch], pad_id, model.device)
        output = _generate_batch(model, input_ids, attention_mask, generation_config)
        new_tokens = output[:, input_ids.shape[1] :].tolist()
        for index, tokens in zip(batch, new_tokens):
            response = _to_response(items[index].id, tokens, eos_ids, tokenizer)
            responses[index] = response
            if on_response is not None:
                on_response(response)
        n_done += len(batch)
        if progress is not None:
            progress(n_done)
    return responses  # type: ignore[return-value]  # every slot was filled above


def _check_config(config: GenConfig) -> None:
    if config.do_sample:
        raise ComplianceError(
            "Sampling is not supported: results must be reproducible, so set do_sample to false."
        )
    if config.max_new_tokens < 1:
        raise ComplianceError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}.")
    if config.batch_size is not None and config.batch_size < 1:
        raise ComplianceError(f"batch_size must be at least 1, got {config.batch_size}.")


def _encode(tokenizer: PreTrainedTokenizerBase, item: SuiteItem, use_chat_template: bool) -> list[int]:
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": item.prompt}], tokenize=False, add_generation_prompt=True
        )
        # The rendered template already holds every special token the model expects.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(item.prompt)["input_ids"]
    if not ids:
        raise ComplianceError(
            f"Prompt of item {item.id!r} encodes to no tokens: give it some text or use the chat template."
        )
    return ids


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every token that ends an answer: the model's generation config (chat models often list
    several) plus the tokenizer's EOS."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = model.config.eos_token_id
    for token_id in [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]:
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    if not ids:
        raise ComplianceError(
            "Neither the model nor its tokenizer declares an end-of-sequence token: "
            "set eos_token_id in the model's generation_config.json."
        )
    return ids


def _greedy_config(max_new_tokens: int, eos_ids: list[int], pad_id: int) -> GenerationConfig:
    """A greedy config built from our settings alone, so base and fine-tune decode identically.

    Sampling fields are cleared explicitly so no warning about unused sampling parameters
    appears, whatever the transformers version's defaults.
    """
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
    )


def _generate_batch(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generation_config: GenerationConfig,
) -> torch.Tensor:
    # transformers fills every field a passed config leaves unset from ``model.generation_config``
    # (a model's repetition_penalty, temperature, ...). Swapping ours in for the call keeps
    # decoding exactly as configured, identical for a base and its fine-tune.
    model_generation_config = model.generation_config
    model.generation_config = generation_config
    try:
        with torch.inference_mode():
            return model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config
            )
    finally:
        model.generation_config = model_generation_config


def _left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the left so every prompt ends where generation starts.

    Padding is done here rather than by the tokenizer so the caller's tokenizer
    (``padding_side``, ``pad_token``) is left untouched.
    """
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _to_response(
    item_id: str, tokens: list[int], eos_ids: list[int], tokenizer: PreTrainedTokenizerBase
) -> Response:
    # Tokens after the first EOS are padding added while the rest of the batch finished.
    stop = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
    kept = tokens if stop is None else tokens[: stop + 1]
    return Response(
        item_id=item_id,
        text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
        n_new_tokens=len(kept),
        finish_reason="length" if stop is None else "eos",
    )
