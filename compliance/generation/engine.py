"""The decode loop: greedy generation for a batch of prompts, with finished rows leaving the work.

``model.generate`` keeps every row of a batch in every step until the last row ends, and it
re-derives its whole processing chain (logits processors, stopping criteria, the model's own
``generation_config`` defaults) on each call. This loop does only what greedy decoding needs:

- **prefill** (:func:`prefill`): rows sorted by length run in groups of similar length, so
  padding costs almost nothing; a prefix every prompt shares (a chat template's system prompt)
  runs once and its keys and values are copied to every row;
- then one forward step per token, feeding each row's greedy token back. On CPU the LM head runs
  a slice of the vocabulary at a time (:class:`LastStep`), so the full logits never go through
  memory;
- a row that emits an end-of-sequence token, matches a stop string, or reaches
  ``max_new_tokens`` leaves the batch, so the remaining steps cost only what unfinished rows need;
- ``min_new_tokens`` masks the end-of-sequence logits until that length, as transformers'
  ``MinNewTokensLengthLogitsProcessor`` does (``make bench`` uses it to fix lengths).

Two decode loops share this. The **dynamic** loop (CPU default) grows the mask by a column a step
and drops a finished row at once. The **static** loop keeps every tensor's shape and address
fixed (:class:`StaticState`), so on CUDA each step is captured once as a CUDA graph and replayed
(**graph**, the CUDA default): a small batch is bound by launching hundreds of kernels a step,
which a graph does in one launch. On CUDA, decode attention also runs through
:mod:`compliance.generation.attention`.

Position ids count real tokens only, so a padded row sees exactly the positions it would see
alone; with the padding masked out, the greedy tokens match an unbatched run (the tests and
``make bench`` check this token for token).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from compliance.generation.attention import decoding

#: Bumped whenever a change to this loop could change a generated token; part of the backend
#: version, so responses stored by an older loop are not reused.
ENGINE_VERSION = "2"


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
        #: Static mode (see :class:`StaticState`): a one-element device tensor holding the column
        #: the next token is written to, and how many columns attention reads. Everything a step
        #: does is then a tensor operation on fixed buffers, which a CUDA graph can replay.
        self.write_at: Optional[torch.Tensor] = None
        self.view_length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, dim = key_states.shape
        self.device = key_states.device
        self._keys = key_states.new_zeros((batch, heads, self.capacity, dim))
        self._values = value_states.new_zeros((batch, value_states.shape[1], self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.write_at is not None:
            self._keys.index_copy_(2, self.write_at, key_states)
            self._values.index_copy_(2, self.write_at, value_states)
            return self._keys[:, :, : self.view_length], self._values[:, :, : self.view_length]
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

#: Prompt tokens (padding included) per prefill forward pass. Prompts are prefilled in groups of
#: similar length, so padding costs almost nothing; on CPU a group of about 512 tokens already
#: keeps the matrix units busy, a GPU wants far more per launch.
PREFILL_TOKENS = {"cpu": 512, "cuda": 16384}

#: In static mode attention reads the KV cache in whole blocks of this many columns, so one
#: captured CUDA graph serves this many steps before a wider one is captured.
VIEW_BLOCK = 64

#: Decode modes: ``dynamic`` (the cache grows and finished rows leave at once; CPU default),
#: ``static`` (every step has the same shapes: a 4D mask and fixed cache buffers), ``graph``
#: (the static step captured once as a CUDA graph and replayed; CUDA default).
DECODE_MODES = ("auto", "dynamic", "static", "graph")


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


def prefix_to_share(prompts: Sequence[Sequence[int]]) -> int:
    """The prefix :func:`prefill` runs once for all ``prompts``: :func:`shared_prefix_length`, or 0
    when there is one prompt or the prefix is shorter than :data:`MIN_SHARED_PREFIX`."""
    shared = shared_prefix_length(prompts) if len(prompts) > 1 else 0
    return shared if shared >= MIN_SHARED_PREFIX else 0


def prefill_groups(lengths: Sequence[int], budget: int) -> list[range]:
    """Split rows sorted by ascending length into consecutive groups of at most ``budget`` padded tokens.

    A group pads to its longest row, so grouping similar lengths wastes little work on padding
    (a suite's 128 SmolLM2 prompts: 2,931 real tokens; one group padded to the longest is 4,352).
    A row longer than the budget gets a group of its own.
    """
    groups, start = [], 0
    for end in range(1, len(lengths) + 1):
        if end < len(lengths) and (end + 1 - start) * lengths[end] <= budget:
            continue
        groups.append(range(start, end))
        start = end
    return groups


#: Architectures whose logits are exactly ``hidden @ lm_head.weight.T`` (no bias, scale or soft
#: cap), so the greedy token can be found one slice of the vocabulary at a time.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

#: Vocabulary columns per slice on CPU: a (rows x slice) block of logits stays in cache instead
#: of the whole (rows x vocab) matrix going through memory (SmolLM2-135M, 128 rows, 2 threads:
#: LM head plus argmax 149 ms -> 93 ms a step, the same tokens).
HEAD_SLICE = 2048


class LastStep:
    """Runs the model on a batch and picks each row's greedy next token from its last position.

    With a plain LM head on CPU (``sliced``), the model's body returns hidden states and
    :meth:`pick` applies the head a :data:`HEAD_SLICE` of the vocabulary at a time, keeping a
    running argmax (ties keep the lower id, as ``argmax`` does); otherwise the model returns
    logits and :meth:`pick` takes their argmax.
    """

    def __init__(self, model: PreTrainedModel, sliced: Optional[bool] = None):
        head = model.get_output_embeddings()
        plain = (model.config.model_type in PLAIN_HEAD_TYPES and isinstance(head, torch.nn.Linear)
                 and head.bias is None and isinstance(getattr(model, "model", None), PreTrainedModel))
        self.model = model
        self.sliced = plain and (model.device.type == "cpu" if sliced is None else sliced)
        self.weight = head.weight if self.sliced else None

    def __call__(self, **inputs) -> torch.Tensor:
        """The last position's hidden state (sliced) or logits, ``(rows, hidden or vocab)``."""
        if self.sliced:
            return self.model.model(**inputs).last_hidden_state[:, -1, :]
        return self.model(**inputs, logits_to_keep=1).logits[:, -1, :]

    def pick(self, last: torch.Tensor, suppress: Sequence[int] = ()) -> torch.Tensor:
        """Each row's greedy token, never one of ``suppress``."""
        if not self.sliced:
            if suppress:
                last[:, list(suppress)] = float("-inf")
            return last.argmax(dim=-1)
        best = chosen = None
        for start in range(0, self.weight.shape[0], HEAD_SLICE):
            logits = torch.nn.functional.linear(last, self.weight[start : start + HEAD_SLICE])
            columns = [t - start for t in suppress if start <= t < start + logits.shape[-1]]
            if columns:
                logits[:, columns] = float("-inf")
            index = logits.argmax(dim=-1)
            value = logits.gather(1, index[:, None])[:, 0]
            if best is None:
                best, chosen = value, index
            else:
                better = value > best
                best, chosen = torch.where(better, value, best), torch.where(better, index + start, chosen)
        return chosen


@dataclass
class Prefilled:
    """The state after prefill, rows in batch order (see :func:`prefill`)."""

    last: torch.Tensor  # (rows, hidden or vocab): what ``step.pick`` chooses each row's next token from
    mask: torch.Tensor  # (rows, filled) 1 where a cache column holds a real token
    next_positions: torch.Tensor  # (rows, 1) the position id of each row's next token
    cache: DynamicCache
    order: list[int]  # batch row -> index into the prompts given


def prefill(model: PreTrainedModel, prompts: Sequence[Sequence[int]], pad_id: int, max_new_tokens: int,
            budget: Optional[int] = None, round_to: int = 1, step: Optional[LastStep] = None) -> Prefilled:
    """Run the prompts through the model, leaving room in the cache for ``max_new_tokens`` more.

    Rows are sorted by length (``order``) and prefilled in groups of at most ``budget`` padded
    tokens (:data:`PREFILL_TOKENS` by device). A prefix every prompt shares (at least
    :data:`MIN_SHARED_PREFIX` tokens) runs once, alone, and its keys and values are copied into
    every row. ``round_to`` rounds the cache's capacity up (static decoding reuses buffers and
    graphs between batches whose rounded capacity matches). Every row's cache is laid out
    ``[prefix][padding][own tokens]`` and ends at the same column, with the padding masked out and
    position ids counting real tokens only, so each row sees exactly the positions and keys it
    would see alone.
    """
    device = model.device
    n = len(prompts)
    step = step or LastStep(model)
    if budget is None:
        budget = PREFILL_TOKENS.get(device.type, PREFILL_TOKENS["cuda"])
    shared = prefix_to_share(prompts)
    order = sorted(range(n), key=lambda i: len(prompts[i]))
    tails = [list(prompts[i][shared:]) for i in order]
    width = max(len(t) for t in tails)
    capacity = -(-(shared + width + max_new_tokens) // round_to) * round_to
    prefix_cache = None
    if shared:
        prefix_cache = new_cache(model, shared)
        prefix = torch.as_tensor([list(prompts[0][:shared])], dtype=torch.long, device=device)
        step(input_ids=prefix, cache=prefix_cache, use_cache=True)
    cache = new_cache(model, capacity)
    groups = prefill_groups([len(t) for t in tails], budget)
    if len(groups) > 1 and not all(isinstance(layer, GrowingLayer) for layer in cache.layers):
        groups = [range(n)]  # copying groups into place needs our own cache layers
    last = []
    for group in groups:
        rows = [tails[r] for r in group]
        group_width = max(len(t) for t in rows)
        own = _right_aligned([len(t) for t in rows], group_width, device)
        ids = torch.full((len(rows), group_width), pad_id, dtype=torch.long, device=device)
        ids[own.bool()] = torch.as_tensor([token for tail in rows for token in tail], dtype=torch.long, device=device)
        # One group runs straight into the batch cache; several run apart and are copied in.
        group_cache = cache if len(groups) == 1 else new_cache(model, shared + group_width)
        if prefix_cache is not None:
            for layer, done in zip(group_cache.layers, prefix_cache.layers):
                layer.update(done.keys.expand(len(rows), -1, -1, -1), done.values.expand(len(rows), -1, -1, -1))
        positions = (shared + own.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([own.new_ones((len(rows), shared)), own], dim=1)
        last.append(step(input_ids=ids, attention_mask=mask, position_ids=positions, cache=group_cache,
                         use_cache=True))
        if group_cache is not cache:
            _place_group(cache, group_cache, slice(group.start, group.stop), n, shared, width, group_width)
    if len(groups) > 1:
        for layer in cache.layers:
            layer.length = shared + width
            layer._expose_filled()
    lengths = [len(t) for t in tails]
    own = _right_aligned(lengths, width, device)
    mask = torch.cat([own.new_ones((n, shared)), own], dim=1)
    next_positions = (shared + torch.as_tensor(lengths, device=device))[:, None]
    return Prefilled(torch.cat(last), mask, next_positions, cache, order)


def _right_aligned(lengths: Sequence[int], width: int, device: torch.device) -> torch.Tensor:
    """``(rows, width)`` long mask, 1 on the last ``lengths[row]`` columns of each row (left padding)."""
    columns = torch.arange(width, device=device)
    return (columns[None, :] >= width - torch.as_tensor(lengths, device=device)[:, None]).long()


def _place_group(cache: DynamicCache, group_cache: DynamicCache, rows: slice, n: int, shared: int, width: int,
                 group_width: int) -> None:
    """Copy a prefill group's keys and values into the batch cache: its prefix columns as they are,
    its own tokens (with the group's padding) so that they end at column ``shared + width``."""
    own = slice(shared + width - group_width, shared + width)
    for target, source in zip(cache.layers, group_cache.layers):
        if not target.is_initialized:
            target.lazy_initialization(source.keys[:1].expand(n, -1, -1, -1), source.values[:1].expand(n, -1, -1, -1))
        for buffer, part in ((target._keys, source.keys), (target._values, source.values)):
            buffer[rows, :, :shared] = part[:, :, :shared]
            buffer[rows, :, own] = part[:, :, shared:]


class DynamicStep:
    """One decode step that grows the mask by a column; finished rows leave the batch at once."""

    def __init__(self, step: LastStep, state: Prefilled):
        self.step, self.cache = step, state.cache
        self.mask, self.positions = state.mask, state.next_positions

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask, self.positions = self.mask[rows], self.positions[rows]

    def __call__(self, chosen: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        last = self.step(input_ids=chosen[:, None], attention_mask=self.mask, position_ids=self.positions,
                         cache=self.cache, use_cache=True)
        self.positions = self.positions + 1
        return last


#: Static decoding reads the generated tokens back every this many steps (the GPU runs ahead of
#: Python in between); a row that ends inside a window decodes a few tokens that are dropped.
CHECK_EVERY = 8

#: Static states (buffers and graphs) kept per model for reuse by later batches of the same shape.
MAX_STATES = 8


class StaticState:
    """Fixed buffers for ``rows`` sequences of up to ``capacity`` tokens, and the CUDA graphs over them.

    A decode step here is tensor operations only: each cache layer writes at a device-side column
    (:attr:`GrowingLayer.write_at`), the mask is a fixed ``(rows, 1, 1, capacity)`` boolean buffer,
    and the step itself picks the greedy token (suppressing end-of-sequence tokens before
    ``min_new_tokens``), stores it and advances every counter. So on CUDA the whole step is
    captured once as a graph and replayed: one launch per token instead of hundreds, which is what
    small batches are bound by. Attention reads the cache in blocks of
    :data:`VIEW_BLOCK` columns, one graph per block; states (and their graphs) are kept per model
    and reused by every later batch with the same rows, capacity and end tokens.
    """

    def __init__(self, model: PreTrainedModel, rows: int, capacity: int, eos_ids: Sequence[int], like: DynamicCache,
                 graph: bool, compiled: bool = False):
        device = model.device
        # A weak reference: the kept states must not keep a model (and its GPU memory) alive.
        self._model = weakref.ref(model)
        self.rows, self.capacity, self.graph = rows, capacity, graph
        # Optionally the model's forward through torch.compile (fuses the many small kernels of a
        # step; the graph then replays the fused ones). Measured in compliance.bench.gpu_check.
        self._compiled = torch.compile(model.forward, dynamic=False) if compiled else None
        self.cache = new_cache(model, capacity)
        for layer, source in zip(self.cache.layers, like.layers):
            layer.lazy_initialization(source._keys[:1].expand(rows, -1, -1, -1),
                                      source._values[:1].expand(rows, -1, -1, -1))
        self.write_at = torch.zeros(1, dtype=torch.long, device=device)
        for layer in self.cache.layers:
            layer.write_at = self.write_at
        self.mask = torch.zeros((rows, 1, 1, capacity), dtype=torch.bool, device=device)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.tokens = torch.zeros((rows, capacity), dtype=torch.long, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.min_new = torch.zeros(1, dtype=torch.long, device=device)
        self.eos = torch.as_tensor(list(eos_ids), dtype=torch.long, device=device)
        self.filled = 0  # host copy of write_at
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.captures = 0

    def load(self, state: Prefilled, min_new: int) -> None:
        """Start a batch: copy its prefilled cache, 2D mask and next positions into the buffers."""
        filled = state.mask.shape[1]
        for layer, source in zip(self.cache.layers, state.cache.layers):
            layer._keys[:, :, :filled].copy_(source._keys[:, :, :filled])
            layer._values[:, :, :filled].copy_(source._values[:, :, :filled])
        self.mask.zero_()
        self.mask[:, 0, 0, :filled] = state.mask.bool()
        self.positions.copy_(state.next_positions)
        self.write_at.fill_(filled)
        self.filled = filled
        self.tokens.zero_()
        self.step.zero_()
        self.min_new.fill_(min_new)

    def take_rows(self, source: "StaticState", rows: torch.Tensor) -> None:
        """Continue ``source``'s batch with only ``rows`` of it (finished rows leave)."""
        for layer, old in zip(self.cache.layers, source.cache.layers):
            layer._keys.copy_(old._keys[rows])
            layer._values.copy_(old._values[rows])
        for name in ("mask", "positions", "ids", "tokens"):
            getattr(self, name).copy_(getattr(source, name)[rows])
        for name in ("write_at", "step", "min_new"):
            getattr(self, name).copy_(getattr(source, name))
        self.filled = source.filled

    def choose(self, logits: torch.Tensor) -> None:
        """Greedy pick for every row from ``logits``; record it and advance ``step`` (graph-safe)."""
        if self.eos.numel():
            suppress = self.step < self.min_new
            logits[:, self.eos] = logits[:, self.eos].masked_fill(suppress, float("-inf"))
        chosen = logits.argmax(dim=-1)
        self.tokens.index_copy_(1, self.step, chosen[:, None])
        self.ids.copy_(chosen[:, None])
        self.step.add_(1)

    def _body(self, view: int) -> None:
        """One decode step on the buffers: only tensor operations (what a graph records)."""
        self.mask.index_fill_(3, self.write_at, True)
        forward = self._compiled or self._model()
        logits = forward(input_ids=self.ids, attention_mask=self.mask[..., :view], position_ids=self.positions,
                         cache=self.cache, use_cache=True).logits[:, -1, :]
        self.choose(logits)
        self.write_at.add_(1)
        self.positions.add_(1)

    def _capture(self, view: int) -> torch.cuda.CUDAGraph:
        if not self.graphs:
            # Warm up once on a side stream (kernels load, workspaces are allocated), then undo its writes.
            buffers = (self.mask, self.write_at, self.positions, self.ids, self.step)
            saved = [t.clone() for t in buffers]
            stream = torch.cuda.Stream(device=self.ids.device)
            stream.wait_stream(torch.cuda.current_stream(self.ids.device))
            with torch.cuda.stream(stream):
                self._body(view)
            torch.cuda.current_stream(self.ids.device).wait_stream(stream)
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # The graphs of one state share a memory pool: they never run at once, and what one step
        # leaves for the next lives in the state's own buffers, outside the pool.
        with torch.cuda.graph(graph, pool=self.pool):
            self._body(view)
        self.captures += 1
        return graph

    def advance(self) -> None:
        """Decode one token for every row."""
        view = min(self.capacity, -(-(self.filled + 1) // VIEW_BLOCK) * VIEW_BLOCK)
        for layer in self.cache.layers:
            layer.view_length = view
        self.filled += 1
        if not self.graph:
            self._body(view)
            return
        if view not in self.graphs:
            self.graphs[view] = self._capture(view)
        self.graphs[view].replay()


_STATES: "weakref.WeakKeyDictionary[PreTrainedModel, OrderedDict]" = weakref.WeakKeyDictionary()


def static_state(model: PreTrainedModel, rows: int, capacity: int, eos_ids: Sequence[int], like: DynamicCache,
                 graph: bool, compiled: bool = False) -> StaticState:
    """The model's kept :class:`StaticState` for this shape, or a new one (dropping the least recently
    used when more than :data:`MAX_STATES` are kept, or when a GPU would run short of memory)."""
    states = _STATES.setdefault(model, OrderedDict())
    # The attention function is recorded in a graph, so it is part of the key.
    key = (rows, capacity, tuple(eos_ids), graph, compiled, model.config._attn_implementation)
    if key in states:
        states.move_to_end(key)
        return states[key]
    while len(states) >= MAX_STATES:
        states.popitem(last=False)
    if model.device.type == "cuda" and states:
        need = sum(layer._keys.nbytes * 2 for layer in like.layers) * rows // max(like.layers[0]._keys.shape[0], 1)
        while states and torch.cuda.mem_get_info(model.device)[0] < 2 * need:
            states.popitem(last=False)
            torch.cuda.empty_cache()
    states[key] = StaticState(model, rows, capacity, eos_ids, like, graph, compiled)
    return states[key]


def _extend(result: RowResult, tokens: Sequence[int], eos: set[int], stop_check, max_new_tokens: int) -> bool:
    """Append a row's newly decoded ``tokens`` up to where it ends (an end token, a stop string, the
    length limit), recording why; True while the row goes on."""
    if stop_check is None and eos.isdisjoint(tokens):  # the common case, without a per-token loop
        result.tokens.extend(tokens)
        return len(result.tokens) < max_new_tokens
    for token in tokens:
        result.tokens.append(token)
        if token in eos:
            result.finish_reason = "eos"
        elif stop_check is not None and stop_check(result.tokens):
            result.finish_reason = "stop"
        elif len(result.tokens) < max_new_tokens:
            continue
        return False
    return True


def release_static_states(model: PreTrainedModel) -> None:
    """Drop the model's kept static states and graphs (their GPU memory returns to the allocator)."""
    if _STATES.pop(model, None) is not None and model.device.type == "cuda":
        torch.cuda.empty_cache()


def _decode_static(model: PreTrainedModel, state: Prefilled, results: list[RowResult], eos_ids: Sequence[int],
                   max_new_tokens: int, min_new_tokens: int, stop_check, graph: bool, compiled: bool = False) -> None:
    """The static loop: steps run in windows of :data:`CHECK_EVERY` without waiting for the host;
    after each window the new tokens are read back, rows are finished, and once at most half the
    rows are live the rest move to a smaller state."""
    eos_set = set(eos_ids)
    rows = state.mask.shape[0]
    capacity = state.cache.layers[0].capacity
    static = static_state(model, rows, capacity, eos_ids, state.cache, graph, compiled)
    static.load(state, min_new_tokens)
    del state.cache
    static.choose(state.last)
    owner: list[Optional[int]] = list(state.order)
    produced, read = 1, 0
    while True:
        window = static.tokens[:, read:produced].tolist()
        live: list[int] = []
        for row, index in enumerate(owner):
            if index is None:
                continue
            if _extend(results[index], window[row], eos_set, stop_check, max_new_tokens):
                live.append(row)
            else:
                owner[row] = None
        read = produced
        if not live:
            return
        if len(live) <= len(owner) // 2:
            smaller = static_state(model, len(live), capacity, eos_ids, static.cache, graph, compiled)
            smaller.take_rows(static, torch.as_tensor(live, dtype=torch.long, device=model.device))
            static, owner = smaller, [owner[row] for row in live]
        for _ in range(min(CHECK_EVERY, max_new_tokens - produced)):
            static.advance()
            produced += 1


#: Fewest rows a CPU decode stream gets; with fewer, one stream using every thread is the better use.
MIN_STREAM_ROWS = 32


def cpu_streams(rows: int, threads: int) -> int:
    """How many decode streams a CPU batch of ``rows`` runs as: one per intra-op thread, when each
    gets at least :data:`MIN_STREAM_ROWS` rows; else one.

    Small matrix products scale poorly across threads (SmolLM2's decode shapes on 2 cores: 1.5x
    for 2 threads), so two streams of half the batch, one thread each, beat one stream with two
    threads (measured +20%, same tokens).
    """
    return threads if threads >= 2 and rows // threads >= MIN_STREAM_ROWS else 1


def decode_rows(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    eos_ids: Sequence[int],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    stop_check: Optional[Callable[[list[int]], bool]] = None,
) -> list[RowResult]:
    """:func:`decode_batch`, on CPU split across :func:`cpu_streams` threads where that pays.

    The rows are dealt out in length order, so every stream gets a similar mix of lengths. Each
    stream is a Python thread running its own :func:`decode_batch` with one intra-op thread
    (PyTorch releases the interpreter lock inside its kernels); the thread setting is restored
    after.
    """
    threads = torch.get_num_threads()
    streams = cpu_streams(len(prompts), threads) if model.device.type == "cpu" else 1
    if streams == 1:
        return decode_batch(model, prompts, pad_id, eos_ids, max_new_tokens, min_new_tokens, stop_check)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    parts = [order[stream::streams] for stream in range(streams)]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="decode") as pool:
            futures = [pool.submit(decode_batch, model, [prompts[i] for i in part], pad_id, eos_ids, max_new_tokens,
                                   min_new_tokens, stop_check) for part in parts]
            outputs = [future.result() for future in futures]
    finally:
        torch.set_num_threads(threads)
    results: list[Optional[RowResult]] = [None] * len(prompts)
    for part, rows in zip(parts, outputs):
        for index, row in zip(part, rows):
            results[index] = row
    return results  # type: ignore[return-value]  # every index is in exactly one part


def pick_mode(mode: str, device: torch.device) -> str:
    """Resolve ``auto``: CUDA graphs on a CUDA device, the dynamic loop elsewhere."""
    if mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {mode!r}: choose one of {', '.join(DECODE_MODES)}")
    if mode == "auto":
        return "graph" if device.type == "cuda" else "dynamic"
    if mode == "graph" and device.type != "cuda":
        raise ValueError("decode mode 'graph' needs a CUDA device")
    return mode


def decode_batch(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    eos_ids: Sequence[int],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    stop_check: Optional[Callable[[list[int]], bool]] = None,
    mode: str = "auto",
    compiled: bool = False,
    own_attention: Optional[bool] = None,
) -> list[RowResult]:
    """Greedily continue each prompt; return one :class:`RowResult` per prompt, in order.

    Args:
        model: a causal LM on its device, in eval mode.
        prompts: token ids per prompt (unpadded, at least one token each).
        pad_id: the id used for padding (never attended to).
        eos_ids: every token that ends an answer.
        max_new_tokens: the most tokens generated per prompt.
        min_new_tokens: end-of-sequence tokens are suppressed before this many new tokens.
        stop_check: called with a row's new tokens after each step; True ends the row
            (finish reason ``"stop"``). Used for stop strings.
        mode: one of :data:`DECODE_MODES`; ``auto`` uses CUDA graphs on a GPU.
        compiled: static modes only: run the step's forward through ``torch.compile``.
        own_attention: decode steps use :func:`compliance.generation.attention.decode_attention`
            (where the architecture allows) instead of SDPA's kernels; ``None``: on CUDA only
            (it pays there; on CPU it measured no faster).
    """
    device = model.device
    requested, mode = mode, pick_mode(mode, device)
    if mode != "dynamic" and not all(isinstance(layer, GrowingLayer) for layer in new_cache(model, 1).layers):
        if requested != "auto":
            raise ValueError(f"decode mode {requested!r} needs full attention in every layer; use 'dynamic'")
        mode = "dynamic"  # sliding-window or linear-attention layers keep transformers' own cache
    if own_attention is None:
        own_attention = device.type == "cuda"
    results = [RowResult() for _ in prompts]
    with torch.inference_mode(), (decoding(model) if own_attention else nullcontext()):
        # The static step needs logits from the model itself (its graph includes the head).
        step = LastStep(model, sliced=None if mode == "dynamic" else False)
        state = prefill(model, prompts, pad_id, max_new_tokens, round_to=1 if mode == "dynamic" else VIEW_BLOCK,
                        step=step)
        if mode == "dynamic":
            _decode_dynamic(step, state, results, eos_ids, max_new_tokens, min_new_tokens, stop_check)
        else:
            _decode_static(model, state, results, eos_ids, max_new_tokens, min_new_tokens, stop_check,
                           graph=mode == "graph", compiled=compiled)
    return results


def _decode_dynamic(step: LastStep, state: Prefilled, results: list[RowResult], eos_ids: Sequence[int],
                    max_new_tokens: int, min_new_tokens: int, stop_check) -> None:
    """The dynamic loop: read every token back at once and drop finished rows from the batch at once."""
    device = step.model.device
    eos_set = set(eos_ids)
    owner: list[int] = list(state.order)  # batch row -> prompt index
    step_fn = DynamicStep(step, state)
    last = state.last
    for produced in range(max_new_tokens):
        chosen = step.pick(last, list(eos_ids) if produced < min_new_tokens else ())
        live = [row for row, (index, token) in enumerate(zip(owner, chosen.tolist()))
                if _extend(results[index], [token], eos_set, stop_check, max_new_tokens)]
        if not live:
            return
        if len(live) < len(owner):
            # Finished rows leave the batch: drop their cache rows, mask and positions.
            rows = torch.as_tensor(live, dtype=torch.long, device=device)
            step_fn.select(rows)
            chosen = chosen[rows]
            owner = [owner[row] for row in live]
        last = step_fn(chosen)
