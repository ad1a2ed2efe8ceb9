"""Generation on tiny real models, and the device and batch-size rules."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from compliance.errors import ComplianceError
from compliance.generation import (
    BACKEND_NAME,
    backend_version,
    choose_device,
    default_batch_size,
    generate,
    pick_device,
)
from compliance.records import GenConfig, SuiteItem
from tiny_models import MIXED_PROMPTS

REFUSAL = "I cannot help with that."

# Very different lengths, deliberately not sorted, so batches need heavy left padding.
PROMPTS = MIXED_PROMPTS


def make_items(prompts: list[str]) -> list[SuiteItem]:
    return [
        SuiteItem(id=f"item-{i}", prompt=p, category="test", domain="general", expected="refuse", benchmark="unit")
        for i, p in enumerate(prompts)
    ]


def load(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load(tiny_model_dir)


@pytest.fixture(scope="module")
def refusing(refusing_model_dir):
    return load(refusing_model_dir)


# --- transformers backend -------------------------------------------------------------------


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_batched_greedy_equals_one_prompt_at_a_time(tiny, use_chat_template):
    model, tokenizer = tiny
    items = make_items(PROMPTS)
    config = GenConfig(max_new_tokens=12, batch_size=1, use_chat_template=use_chat_template)

    alone = generate(model, tokenizer, items, config)
    one_batch = generate(model, tokenizer, items, GenConfig(**{**config.__dict__, "batch_size": len(items)}))
    batches_of_3 = generate(model, tokenizer, items, GenConfig(**{**config.__dict__, "batch_size": 3}))

    # A random model that said the same thing to every prompt would prove nothing.
    assert len({r.text for r in alone}) == len(items)
    assert one_batch == alone
    assert batches_of_3 == alone


def test_chat_template_changes_the_prompt(tiny):
    model, tokenizer = tiny
    items = make_items(PROMPTS[:3])
    with_template = generate(model, tokenizer, items, GenConfig(max_new_tokens=8, use_chat_template=True))
    raw = generate(model, tokenizer, items, GenConfig(max_new_tokens=8, use_chat_template=False))
    assert [r.text for r in with_template] != [r.text for r in raw]


def test_order_callbacks_and_progress(tiny):
    model, tokenizer = tiny
    items = make_items(PROMPTS)
    seen, progress = [], []

    responses = generate(
        model,
        tokenizer,
        items,
        GenConfig(max_new_tokens=4, batch_size=3),
        on_response=seen.append,
        progress=progress.append,
    )

    assert [r.item_id for r in responses] == [item.id for item in items]
    assert sorted(seen, key=lambda r: r.item_id) == sorted(responses, key=lambda r: r.item_id)
    assert len(seen) == len(items)
    assert progress == [3, 6, 7]
    # Batches run shortest prompts first, so callbacks do not follow the items' order.
    assert [r.item_id for r in seen] != [item.id for item in items]


def test_batch_size_none_uses_the_device_default(tiny):
    model, tokenizer = tiny
    progress = []
    from compliance.generation import batch_size_for

    width = batch_size_for(model, 2)
    items = make_items([f"Question number {i}?" for i in range(width + 8)])
    generate(model, tokenizer, items, GenConfig(max_new_tokens=2, batch_size=None), progress=progress.append)
    assert progress == [width, width + 8]


def test_length_limit_gives_finish_reason_length(tiny):
    model, tokenizer = tiny
    responses = generate(model, tokenizer, make_items(PROMPTS), GenConfig(max_new_tokens=5, batch_size=4))
    assert all(r.n_new_tokens == 5 and r.finish_reason == "length" for r in responses)


def test_refusing_model_stops_at_eos(refusing):
    model, tokenizer = refusing
    expected_tokens = len(tokenizer(REFUSAL, add_special_tokens=False)["input_ids"]) + 1  # + EOS
    responses = generate(model, tokenizer, make_items(PROMPTS), GenConfig(max_new_tokens=32, batch_size=4))
    for r in responses:
        assert (r.text, r.finish_reason, r.n_new_tokens) == (REFUSAL, "eos", expected_tokens)


def test_refusal_cut_short_by_length(refusing):
    model, tokenizer = refusing
    (response,) = generate(model, tokenizer, make_items(["Anything at all?"]), GenConfig(max_new_tokens=3))
    assert response.finish_reason == "length"
    assert response.n_new_tokens == 3
    assert REFUSAL.startswith(response.text) and response.text != REFUSAL


def test_model_generation_config_is_ignored_and_restored(tiny, tiny_model_dir, caplog):
    model, tokenizer = tiny
    items = make_items(PROMPTS[:4])
    clean = generate(model, tokenizer, items, GenConfig(max_new_tokens=10, batch_size=4))

    other, _ = load(tiny_model_dir)
    own = other.generation_config
    own.do_sample, own.temperature, own.top_p, own.top_k, own.repetition_penalty = True, 0.7, 0.9, 20, 1.5
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            result = generate(other, tokenizer, items, GenConfig(max_new_tokens=10, batch_size=4))
    finally:
        hf_logging.disable_propagation()

    assert result == clean
    assert other.generation_config is own
    assert not [rec for rec in caplog.records if "generation flags" in rec.getMessage()]


def test_tokenizer_left_untouched(tiny):
    model, tokenizer = tiny
    side = tokenizer.padding_side
    generate(model, tokenizer, make_items(PROMPTS[:2]), GenConfig(max_new_tokens=2))
    assert tokenizer.padding_side == side


def test_sampling_and_empty_prompts_are_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ComplianceError, match="do_sample"):
        generate(model, tokenizer, make_items(["hi"]), GenConfig(do_sample=True))
    with pytest.raises(ComplianceError, match="item-0"):
        generate(model, tokenizer, make_items([""]), GenConfig(use_chat_template=False))


def test_backend_identity():
    import transformers

    assert BACKEND_NAME == "transformers"
    from compliance.generation.engine import ENGINE_VERSION

    # Both parts matter to the store key: a new transformers or a changed decode loop can change tokens.
    assert backend_version() == f"{transformers.__version__}+engine{ENGINE_VERSION}"


# --- device and batch size ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "bf16", "prefer", "expected"),
    [
        (True, True, None, ("cuda", torch.bfloat16)),
        (True, False, None, ("cuda", torch.float16)),
        (False, False, None, ("cpu", torch.float32)),
        (True, True, "cpu", ("cpu", torch.float32)),
        (True, True, "cuda", ("cuda", torch.bfloat16)),
        (False, False, "cpu", ("cpu", torch.float32)),
    ],
)
def test_choose_device(cuda, bf16, prefer, expected):
    assert choose_device(cuda, bf16, prefer) == expected


def test_choose_device_errors():
    with pytest.raises(ComplianceError, match="cuda"):
        choose_device(False, False, "cuda")
    with pytest.raises(ComplianceError, match="tpu"):
        choose_device(True, True, "tpu")


def test_pick_device_on_this_machine():
    if torch.cuda.is_available():
        assert pick_device()[0] == "cuda"
    else:
        assert pick_device() == ("cpu", torch.float32)
        with pytest.raises(ComplianceError):
            pick_device("cuda")
    assert pick_device("cpu") == ("cpu", torch.float32)


def test_default_batch_size():
    from compliance.generation.device import CPU_BATCH_SIZE

    # CPU: capped at CPU_BATCH_SIZE, lowered when RAM is short. SmolLM2-135M in fp32 keeps
    # 46,080 bytes of KV per token: 320 tokens = 14.7 MB a sequence; half of 24 GB fits far more than the cap.
    assert default_batch_size("cpu", 135_000_000, 64, free_memory_bytes=24 * 2**30, kv_bytes_per_token=46_080) == CPU_BATCH_SIZE
    # Half of 400 MB / 14.7 MB = 13 sequences.
    assert default_batch_size(torch.device("cpu"), 135_000_000, 64, free_memory_bytes=400_000_000,
                              kv_bytes_per_token=46_080) == 13
    # 7B, estimated from parameters on a small machine: 700 kB x (256 + 512) tokens = 538 MB a sequence.
    assert default_batch_size("cpu", 7_000_000_000, 512, free_memory_bytes=8 * 2**30) == 7
    assert 1 <= default_batch_size("cpu", 135_000_000, 64) <= CPU_BATCH_SIZE  # this machine's RAM
    # 7B: 700 kB of KV per token x (256 + 64) tokens = 224 MB a sequence; half of 80 GB / 224 MB = 178.
    assert default_batch_size("cuda", 7_000_000_000, 64, free_memory_bytes=80_000_000_000) == 178
    assert default_batch_size("cuda:1", 7_000_000_000, 64, free_memory_bytes=10**8) == 1
    assert default_batch_size(torch.device("cuda", 0), 135_000_000, 64, free_memory_bytes=80 * 2**30) == 256
    # More new tokens, fewer sequences.
    assert default_batch_size("cuda", 1_000_000_000, 1024, free_memory_bytes=40 * 2**30) < default_batch_size(
        "cuda", 1_000_000_000, 64, free_memory_bytes=40 * 2**30
    )


def test_kv_cache_size_comes_from_the_config(tiny):
    from types import SimpleNamespace

    from compliance.generation import batch_size_for
    from compliance.generation.device import kv_cache_bytes_per_token

    smollm2 = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    assert kv_cache_bytes_per_token(smollm2, 4) == 46_080
    llama_1b = SimpleNamespace(num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                               hidden_size=2048)
    assert kv_cache_bytes_per_token(llama_1b, 2) == 32_768
    assert kv_cache_bytes_per_token(SimpleNamespace(hidden_size=8), 4) is None
    from compliance.generation.device import CPU_BATCH_SIZE

    model, _ = tiny
    assert 1 <= batch_size_for(model, 16) <= CPU_BATCH_SIZE


# --- the decode loop (engine) ---------------------------------------------------------------


def _encoded(tokenizer, prompts):
    return [tokenizer(p)["input_ids"] for p in prompts]


def test_finished_rows_leave_the_batch_and_answers_match_running_alone(tiny):
    """Rows that end early are dropped from the batch; the rest decode exactly as they would alone."""
    from compliance.generation.engine import decode_batch

    model, tokenizer = tiny
    prompts = _encoded(tokenizer, PROMPTS)
    free = [decode_batch(model, [p], 0, [], 10)[0].tokens for p in prompts]
    # An "end" token that the first prompt's answer emits at step 3: rows that emit it stop there,
    # the others run to the limit, so the batch shrinks mid-way.
    end = free[0][2]
    ending = [i for i, t in enumerate(free) if end in t]
    assert 0 < len(ending) < len(prompts)

    widths: list[int] = []
    # Rows per decode step (one new token per row); prefill runs in groups of similar length.
    hook = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(kw["input_ids"].shape[0]) if kw["input_ids"].shape[1] == 1 else None,
        with_kwargs=True)
    try:
        rows = decode_batch(model, prompts, 0, [end], 10)
    finally:
        hook.remove()
    alone = [decode_batch(model, [p], 0, [end], 10)[0] for p in prompts]
    assert rows == alone
    for i, row in enumerate(rows):
        if i in ending:
            assert row.finish_reason == "eos" and row.tokens[-1] == end and len(row.tokens) < 10
        else:
            assert row.finish_reason == "length" and len(row.tokens) == 10
    assert widths[0] == len(prompts) and widths[-1] == len(prompts) - len(ending)
    assert widths == sorted(widths, reverse=True)


def test_min_new_tokens_suppresses_the_end_until_reached(refusing):
    model, tokenizer = refusing
    items = make_items(PROMPTS[:3])
    natural = generate(model, tokenizer, items, GenConfig(max_new_tokens=30, batch_size=3))
    assert all(r.finish_reason == "eos" and r.n_new_tokens < 30 for r in natural)
    fixed = generate(model, tokenizer, items, GenConfig(max_new_tokens=30, min_new_tokens=30, batch_size=3))
    assert all(r.n_new_tokens == 30 and r.finish_reason == "length" for r in fixed)
    with pytest.raises(ComplianceError, match="min_new_tokens"):
        generate(model, tokenizer, items, GenConfig(max_new_tokens=5, min_new_tokens=6))


def test_stop_strings_end_an_answer_and_are_not_kept(refusing):
    model, tokenizer = refusing
    items = make_items(PROMPTS[:4])
    full = generate(model, tokenizer, items, GenConfig(max_new_tokens=30, batch_size=2))
    assert all(r.text == REFUSAL for r in full)
    stopped = generate(model, tokenizer, items, GenConfig(max_new_tokens=30, batch_size=2, stop=("help",)))
    for before, after in zip(full, stopped):
        assert after.text == "I cannot"
        assert after.finish_reason == "eos"
        assert after.n_new_tokens < before.n_new_tokens
    # A stop string that never appears changes nothing.
    assert generate(model, tokenizer, items, GenConfig(max_new_tokens=30, batch_size=2, stop=("zzz",))) == full


def test_growing_cache_decodes_like_transformers_dynamic_cache(tiny):
    """The preallocated cache is an optimisation only: logits equal the concatenating cache's."""
    from transformers import DynamicCache

    from compliance.generation.engine import new_cache

    model, tokenizer = tiny
    ids = torch.tensor([tokenizer("a short prompt for the cache")["input_ids"]])
    results = []
    for cache in (DynamicCache(config=model.config), new_cache(model, ids.shape[1] + 4)):
        logits, step = [], ids
        with torch.inference_mode():
            for _ in range(4):
                out = model(input_ids=step, cache=cache, use_cache=True).logits[:, -1]
                logits.append(out)
                step = out.argmax(-1, keepdim=True)
        results.append(torch.stack(logits))
    # Same tokens chosen; logits equal up to float32 rounding, whose last digits differ between the
    # two attention shapes and between CPU kinds (AVX2, AVX-512), so not digit for digit.
    assert torch.equal(results[0].argmax(-1), results[1].argmax(-1))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    cache = new_cache(model, ids.shape[1])
    with torch.inference_mode(), pytest.raises(RuntimeError, match="capacity"):
        model(input_ids=torch.cat([ids, ids], dim=1), cache=cache, use_cache=True)


def test_token_ids_are_reported_per_item(tiny):
    model, tokenizer = tiny
    items = make_items(PROMPTS[:3])
    ids: dict[str, list[int]] = {}
    responses = generate(model, tokenizer, items, GenConfig(max_new_tokens=6, batch_size=2), token_ids=ids)
    assert set(ids) == {i.id for i in items}
    for item, response in zip(items, responses):
        assert len(ids[item.id]) == response.n_new_tokens
        assert tokenizer.decode(ids[item.id], skip_special_tokens=True).strip() == response.text


def test_a_shared_prefix_runs_once_and_changes_no_answer(tiny):
    from compliance.generation.engine import (MIN_SHARED_PREFIX, PREFILL_TOKENS, decode_batch, prefill_groups,
                                              shared_prefix_length)

    model, tokenizer = tiny
    system = "You are a careful assistant. Answer briefly and safely. "
    prompts = _encoded(tokenizer, [system + p for p in PROMPTS])
    shared = shared_prefix_length(prompts)
    assert shared >= MIN_SHARED_PREFIX
    calls: list[tuple[int, int]] = []
    hook = model.get_decoder().register_forward_pre_hook(lambda _m, _a, kw: calls.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        rows = decode_batch(model, prompts, 0, [], 8)
    finally:
        hook.remove()
    # The prefix alone, then every row's own tokens in groups of similar length, then one token a step.
    assert calls[0] == (1, shared)
    tails = sorted(len(p) - shared for p in prompts)
    groups = prefill_groups(tails, PREFILL_TOKENS["cpu"])
    assert len(groups) > 1  # so the groups' keys and values are copied into one cache
    assert calls[1 : 1 + len(groups)] == [(len(g), tails[g.stop - 1]) for g in groups]
    assert all(width == 1 for _rows, width in calls[1 + len(groups) :])
    alone = [decode_batch(model, [p], 0, [], 8)[0] for p in prompts]
    assert rows == alone


def test_prefill_groups_pad_little_and_cover_every_row_once():
    from compliance.generation.engine import prefill_groups

    assert prefill_groups([3, 3, 4, 10, 10], 12) == [range(0, 3), range(3, 4), range(4, 5)]
    assert prefill_groups([50], 12) == [range(0, 1)]  # longer than the budget: a group of its own
    assert prefill_groups([2] * 8, 1000) == [range(0, 8)]
    lengths = sorted([5, 9, 9, 12, 30, 31, 31, 64, 80, 80])
    groups = prefill_groups(lengths, 100)
    assert [r for g in groups for r in g] == list(range(len(lengths)))
    assert all(len(g) == 1 or len(g) * lengths[g.stop - 1] <= 100 for g in groups)


def test_shared_prefix_length_leaves_every_prompt_a_token():
    from compliance.generation.engine import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the first prompt keeps its last token
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0
    assert shared_prefix_length([[7, 7, 7]]) == 2


def test_static_decode_gives_the_dynamic_loops_tokens(tiny):
    """The fixed-shape step (what a CUDA graph replays) decodes exactly like the growing cache,
    across a view boundary (more than VIEW_BLOCK steps), with a shared prefix and rows ending early."""
    from compliance.generation.engine import VIEW_BLOCK, decode_batch

    model, tokenizer = tiny
    system = "You are a careful assistant. Answer briefly and safely. "
    prompts = _encoded(tokenizer, [system + p for p in PROMPTS])
    steps = VIEW_BLOCK + 6
    free = decode_batch(model, prompts, 0, [], steps, mode="dynamic")
    assert free == decode_batch(model, prompts, 0, [], steps, mode="static")
    end = free[0].tokens[2]
    ending = decode_batch(model, prompts, 0, [end], steps, mode="dynamic")
    assert any(r.finish_reason == "eos" for r in ending) and any(r.finish_reason == "length" for r in ending)
    assert ending == decode_batch(model, prompts, 0, [end], steps, mode="static")
    held = decode_batch(model, prompts, 0, [end], 12, min_new_tokens=12, mode="static")
    assert held == decode_batch(model, prompts, 0, [end], 12, min_new_tokens=12, mode="dynamic")
    assert all(len(r.tokens) == 12 for r in held)


def test_static_decode_keeps_finished_rows_until_half_have_finished(tiny):
    """A captured graph has fixed shapes, so finished rows leave only once at most half the rows are live."""
    from compliance.generation.engine import decode_batch

    model, tokenizer = tiny
    prompts = _encoded(tokenizer, PROMPTS)
    free = decode_batch(model, prompts, 0, [], 10)
    end = free[0].tokens[2]
    ending = sum(end in r.tokens for r in free)
    widths: list[int] = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(kw["input_ids"].shape[0]) if kw["input_ids"].shape[1] == 1 else None,
        with_kwargs=True)
    try:
        decode_batch(model, prompts, 0, [end], 10, mode="static")
    finally:
        hook.remove()
    live = len(prompts) - ending
    expected = len(prompts) if live > len(prompts) // 2 else live
    assert widths[0] == len(prompts) and widths[-1] == expected


def test_decode_mode_defaults_to_cuda_graphs_on_a_gpu_only():
    from compliance.generation.engine import pick_mode

    assert pick_mode("auto", torch.device("cpu")) == "dynamic"
    assert pick_mode("auto", torch.device("cuda", 0)) == "graph"
    assert pick_mode("static", torch.device("cpu")) == "static"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        pick_mode("graph", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown decode mode"):
        pick_mode("fast", torch.device("cpu"))


def test_sliced_head_picks_what_the_full_logits_pick(tiny, monkeypatch):
    """On CPU the LM head runs a slice of the vocabulary at a time; the greedy pick must not change,
    with end tokens suppressed, and on exact ties the lower id wins as with argmax."""
    from compliance.generation import engine

    model, _tokenizer = tiny
    step = engine.LastStep(model)
    assert step.sliced and not engine.LastStep(model, sliced=False).sliced
    monkeypatch.setattr(engine, "HEAD_SLICE", 7)
    torch.manual_seed(0)
    hidden = torch.randn(6, model.config.hidden_size)
    with torch.no_grad():
        logits = model.get_output_embeddings()(hidden)
    assert torch.equal(step.pick(hidden), logits.argmax(dim=-1))
    banned = sorted(set(logits.argmax(dim=-1).tolist()))
    expected = logits.index_fill(1, torch.tensor(banned), float("-inf")).argmax(dim=-1)
    assert torch.equal(step.pick(hidden, banned), expected)
    # Exact ties (small integers are exact in fp32): every row of the head appears twice.
    vocab = model.config.vocab_size
    weight = torch.randint(-3, 4, (vocab, model.config.hidden_size)).float()
    step.weight = torch.cat([weight, weight])
    whole = torch.randint(-3, 4, (6, model.config.hidden_size)).float()
    assert torch.equal(step.pick(whole), (whole @ weight.T).argmax(dim=-1))


def test_cpu_streams_need_enough_rows_for_every_thread():
    from compliance.generation.engine import MIN_STREAM_ROWS, cpu_streams

    assert cpu_streams(128, 2) == 2
    assert cpu_streams(2 * MIN_STREAM_ROWS - 1, 2) == 1
    assert cpu_streams(128, 1) == 1
    assert cpu_streams(128, 16) == 1  # 8 rows a stream: one stream with 16 threads instead
    assert cpu_streams(1024, 16) == 16


def test_split_streams_give_the_one_batch_answers_and_restore_threads(tiny):
    """Two decode streams on threads answer exactly as one batch does, in the prompts' order."""
    from compliance.generation.engine import MIN_STREAM_ROWS, decode_batch, decode_rows

    model, tokenizer = tiny
    texts = [f"{p} ({i})" for i, p in enumerate(PROMPTS * (2 * MIN_STREAM_ROWS // len(PROMPTS) + 1))]
    prompts = _encoded(tokenizer, texts)
    end = decode_batch(model, prompts[:1], 0, [], 10)[0].tokens[3]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: set[str] = set()
    hook = model.get_decoder().register_forward_pre_hook(
        lambda *_: seen.add(__import__("threading").current_thread().name))
    try:
        split = decode_rows(model, prompts, 0, [end], 10)
        assert torch.get_num_threads() == 2
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    assert len([name for name in seen if name.startswith("decode")]) == 2
    assert split == decode_batch(model, prompts, 0, [end], 10)
    assert any(r.finish_reason == "eos" for r in split)
