"""The decode loop: greedy generation for a batch of prompts, with finished rows leaving the work.

``model.generate`` keeps every row of a batch in every step until the last row ends, and it
re-derives its whole processing chain (logits processors, stopping criteria, the model's own
``generation_config`` defaults) on each call. This loop does only what greedy decoding needs:

- one prefill of the batch (logits for the last position only); a prefix every prompt shares
  (a chat template's system prompt) runs once and its keys and values are copied to every row;
- then one forward step per token, feeding each active row's argmax back;
- a row that emits an end-of-sequence token, matches a stop string, or reaches
  ``max_new_tokens`` is *dropped from the batch* (its rows of the KV cache and attention mask
  are removed), so the remaining steps cost only what the unfinished rows need;
- ``min_new_tokens`` masks the end-of-sequence logits until that length, as transformers'
  ``MinNewTokensLengthLogitsProcessor`` does (``make bench`` uses it to fix lengths).

Position ids come from the attention mask, so a left-padded row sees exactly the positions it
would see alone; with the padding masked out, the greedy tokens match an unbatched run (the
tests and ``make bench`` check this token for token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

#: Bumped whenever a change to this loop could change a generated token; part of the backend
#: version, so responses stored by an older loop are not reused.
ENGINE_VERSION = "1"


@dataclass
class RowResult:
    """What one prompt produced: its new tokens (EOS included when it ended so) and why it stopped."""

    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "eos", "stop" (a stop string) or "length"


class GrowingLayer(DynamicLayer):
    """A KV-cache layer that writes each step into room reserved up front.

    transformers' ``DynamicLayer`` concatenates the whole cache with each new token, so every
    decode step copies every layer's keys and values (19% of a CPU decode step at batch 32 in
    our profile). This layer reserves ``capacity`` positions once and hands attention a view of
    the filled part, so a step writes one position per row and copies nothing.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, dim = key_states.shape
        self.device = key_states.device
        self._keys = key_states.new_zeros((batch, heads, self.capacity, dim))
        self._values = value_states.new_zeros((batch, value_states.shape[1], self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache capacity {self.capacity} exceeded ({end} positions)")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self._expose_filled()
        return self.keys, self.values

    def _expose_filled(self) -> None:
        """Point ``keys``/``values`` (what attention reads) at the filled part of the buffers."""
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._expose_filled()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._expose_filled()

    def reset(self) -> None:
        self.length = 0
        super().reset()


def new_cache(model: PreTrainedModel, capacity: int) -> DynamicCache:
    """The model's usual dynamic cache, with each full-attention layer replaced by a :class:`GrowingLayer`.

    Layers of another kind (sliding-window, linear attention) keep transformers' own class, so any
    architecture still decodes correctly, only without the saving on those layers.
    """
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


#: A common prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own.

    Chat templates put the same system prompt and role markers before every user message
    (SmolLM2: about half of a typical suite prompt), so this part is computed once per batch.
    """
    first, shortest = prompts[0], min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == first[length] for p in prompts):
        length += 1
    return length


def _prefill(model: PreTrainedModel, prompts: Sequence[Sequence[int]], pad_id: int, max_new_tokens: int):
    """Run the prompts through the model and return ``(last logits, mask, positions, cache)``.

    With a shared prefix of :data:`MIN_SHARED_PREFIX` tokens or more, the prefix runs once, alone, its
    keys and values are copied into every row, and only the rest of each prompt runs batched.
    Rows are laid out ``[prefix][padding][own tokens]``: the padding sits between prefix and own
    tokens, masked out, and position ids count real tokens only, so every row sees exactly the
    positions and keys it would see alone. Without a shared prefix rows are plainly left-padded.
    """
    device = model.device
    n = len(prompts)
    shared = shared_prefix_length(prompts) if n > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    tails = [list(p[shared:]) for p in prompts]
    width = max(len(t) for t in tails)
    cache = new_cache(model, shared + width + max_new_tokens)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((n, width), dtype=torch.long)
    for row, ids in enumerate(tails):
        input_ids[row, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
        tail_mask[row, width - len(ids) :] = 1
    input_ids, tail_mask = input_ids.to(device), tail_mask.to(device)
    if shared:
        prefix = torch.as_tensor([list(prompts[0][:shared])], dtype=torch.long, device=device)
        model(input_ids=prefix, cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(n)
    mask = torch.cat([tail_mask.new_ones((n, shared)), tail_mask], dim=1)
    positions = (shared + tail_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
    return logits, mask, positions, cache


def decode_batch(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    eos_ids: Sequence[int],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    stop_check: Optional[Callable[[list[int]], bool]] = None,
) -> list[RowResult]:
    """Greedily continue each prompt; return one :class:`RowResult` per prompt, in order.

    Args:
        model: a causal LM on its device, in eval mode.
        prompts: token ids per prompt (unpadded, at least one token each).
        pad_id: the id used for left padding (never attended to).
        eos_ids: every token that ends an answer.
        max_new_tokens: the most tokens generated per prompt.
        min_new_tokens: end-of-sequence tokens are suppressed before this many new tokens.
        stop_check: called with a row's new tokens after each step; True ends the row
            (finish reason ``"stop"``). Used for stop strings.
    """
    device = model.device
    n = len(prompts)
    results = [RowResult() for _ in range(n)]
    eos = torch.as_tensor(list(eos_ids), dtype=torch.long, device=device)
    active = list(range(n))  # batch row -> prompt index
    with torch.inference_mode():
        logits, mask, positions, cache = _prefill(model, prompts, pad_id, max_new_tokens)
        next_positions = positions[:, -1:] + 1
        for step in range(max_new_tokens):
            if step < min_new_tokens:
                logits[:, eos] = float("-inf")
            chosen = logits.argmax(dim=-1)
            finished = torch.isin(chosen, eos).tolist()
            keep: list[int] = []
            for row, (index, token) in enumerate(zip(active, chosen.tolist())):
                result = results[index]
                result.tokens.append(token)
                if finished[row]:
                    result.finish_reason = "eos"
                elif stop_check is not None and stop_check(result.tokens):
                    result.finish_reason = "stop"
                elif len(result.tokens) < max_new_tokens:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                # Finished rows leave the batch: drop their cache rows, mask and positions.
                rows = torch.as_tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(rows)
                mask, next_positions, chosen = mask[rows], next_positions[rows], chosen[rows]
                active = [active[row] for row in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=next_positions,
                           cache=cache, use_cache=True).logits[:, -1, :]
            next_positions = next_positions + 1
    return results
