"""Greedy generation with a transformers causal LM, batched, in the suite's order.

Prompts are sorted by token length before batching so each batch pads little, then answers
are put back in the items' order. Each batch runs through :mod:`compliance.generation.engine`:
left-padded with an attention mask and position ids from the mask, so greedy output for a prompt
is the same whether it runs alone or in a batch, and rows that finish leave the batch.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import transformers
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compliance.errors import ComplianceError
from compliance.generation.device import batch_size_for
from compliance.generation.engine import ENGINE_VERSION, RowResult, decode_rows, release_static_states
from compliance.records import GenConfig, Response, SuiteItem

BACKEND_NAME = "transformers"


def backend_version() -> str:
    """transformers' version plus our decode loop's, recorded in the report and the store key."""
    return f"{transformers.__version__}+engine{ENGINE_VERSION}"


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[SuiteItem],
    config: GenConfig,
    on_response: Optional[Callable[[Response], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
    token_ids: Optional[dict[str, list[int]]] = None,
) -> list[Response]:
    """Answer every item greedily and return the responses in the items' order.

    Args:
        model: a causal LM, already on its device and in eval mode.
        tokenizer: its tokenizer; the chat template is used when ``config.use_chat_template``
            and the tokenizer has one, otherwise the raw prompt is encoded.
        items: the prompts.
        config: decoding settings (``max_new_tokens``, ``batch_size``, ``seed``...); a
            ``batch_size`` of ``None`` is chosen by :func:`~compliance.generation.device.batch_size_for`.
        on_response: called with each response as soon as its batch finishes, so callers
            can persist it before the next batch starts.
        progress: called with the number of items done after each batch.
        token_ids: when given, filled with each item's generated token ids (``make bench``
            compares them token for token with the naive path).

    Returns:
        One :class:`Response` per item, in the order of ``items``.

    Raises:
        ComplianceError: sampling was requested, a setting is out of range, or a prompt
            encodes to no tokens.
    """
    _check_config(config)
    torch.manual_seed(config.seed)
    prompts = [encode_prompt(tokenizer, item, config.use_chat_template) for item in items]
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = pad_id_for(model, tokenizer)
    stop_check = _stop_check(tokenizer, config.stop) if config.stop else None
    batch_size = config.batch_size
    if batch_size is None:
        batch_size = batch_size_for(model, config.max_new_tokens)

    # Stable sort: equal-length prompts keep their relative order, so batches are reproducible.
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    responses: list[Optional[Response]] = [None] * len(items)
    n_done = 0
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            rows = decode_rows(model, [prompts[i] for i in batch], pad_id, eos_ids, config.max_new_tokens,
                               config.min_new_tokens, stop_check)
            for index, row in zip(batch, rows):
                response = _to_response(items[index].id, row, tokenizer, config.stop)
                if token_ids is not None:
                    token_ids[items[index].id] = row.tokens
                responses[index] = response
                if on_response is not None:
                    on_response(response)
            n_done += len(batch)
            if progress is not None:
                progress(n_done)
    finally:
        release_static_states(model)  # CUDA graphs and their buffers live for one call
    return responses  # type: ignore[return-value]  # every slot was filled above


def _check_config(config: GenConfig) -> None:
    if config.do_sample:
        raise ComplianceError(
            "Sampling is not supported: results must be reproducible, so set do_sample to false."
        )
    if config.max_new_tokens < 1:
        raise ComplianceError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}.")
    if not 0 <= config.min_new_tokens <= config.max_new_tokens:
        raise ComplianceError(
            f"min_new_tokens must be between 0 and max_new_tokens ({config.max_new_tokens}), got {config.min_new_tokens}."
        )
    if config.batch_size is not None and config.batch_size < 1:
        raise ComplianceError(f"batch_size must be at least 1, got {config.batch_size}.")


def encode_prompt(tokenizer: PreTrainedTokenizerBase, item: SuiteItem, use_chat_template: bool) -> list[int]:
    """Token ids for ``item``: the chat template with one user turn (when used and present), else the raw prompt.

    Every local backend (and ``make bench``) encodes through here, so they all see identical input.

    Raises:
        ComplianceError: the prompt encodes to no tokens.
    """
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


def pad_id_for(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The id prompts are left-padded with: the tokenizer's pad token, else the first end-of-sequence id.

    Raises:
        ComplianceError: neither the model nor the tokenizer declares an end-of-sequence token.
    """
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _eos_ids(model, tokenizer)[0]


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


def _stop_check(tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> Callable[[list[int]], bool]:
    """A check that a row's new tokens, decoded, contain one of the stop strings."""

    def check(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in stop)

    return check


def _to_response(item_id: str, row: RowResult, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> Response:
    text = tokenizer.decode(row.tokens, skip_special_tokens=True)
    if row.finish_reason == "stop":
        # Cut at the earliest stop string; the string itself is not part of the answer.
        text = text[: min(i for i in (text.find(s) for s in stop if s) if i >= 0)]
    return Response(
        item_id=item_id,
        text=text.strip(),
        n_new_tokens=len(row.tokens),
        finish_reason="length" if row.finish_reason == "length" else "eos",
    )
