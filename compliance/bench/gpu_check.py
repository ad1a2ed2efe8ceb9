"""The GPU throughput check: the engine on a random-weight Llama-3.2-1B against the two ceilings.

Run on a CUDA machine (nothing is downloaded; the tokenizer is any local tokenizer folder)::

    python -m compliance.bench.gpu_check --tokenizer DIR [--json-out FILE]

It measures, in one process:

1. the machine's own ceilings: device-to-device copy bandwidth (bytes read + written) and a large
   bf16 matrix product, next to the datasheet figures of :data:`~compliance.bench.throughput.GPU_SPECS`;
2. batch 1: the naive ``pipeline`` loop, the engine's eager loop (``dynamic``) and the engine with
   CUDA graphs (``graph``, the default on CUDA), against the memory-bandwidth bound (bandwidth over
   the weight bytes read per step);
3. large batches, eager and with graphs, against the compute bound (bf16 peak over
   2 x parameters FLOPs per token).

Every rate counts generated tokens over wall time, prefill included, as ``make bench`` does. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from compliance.bench.peers import parse_batch_sizes
from compliance.bench.throughput import LLAMA_3_2_1B, gpu_bounds, naive_pipeline, random_llama
from compliance.errors import ComplianceError
from compliance.records import SuiteItem

#: A tiny Llama for ``--cpu-smoke``: checks this script's plumbing on a machine without a GPU.
SMOKE_SHAPE = dict(LLAMA_3_2_1B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=49152)


def gpu_seconds(fn, repeats: int = 10, warmup: int = 3, before=None) -> float:
    """Median GPU time of ``fn()`` in seconds over ``repeats`` runs (CUDA events) after ``warmup``
    untimed ones; ``before()``, if given, runs ahead of every call, outside the timed region."""
    times = []
    for run in range(warmup + repeats):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        if run >= warmup:
            times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def measure_ceilings(device: torch.device) -> dict:
    """Copy bandwidth (bytes read + written per second) and bf16 matmul FLOP/s, each the median of 10 timed runs."""
    source = torch.randn(2**30, device=device, dtype=torch.bfloat16)  # 2 GiB
    target = torch.empty_like(source)
    copy_s = gpu_seconds(lambda: target.copy_(source))
    del source, target
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    mm_s = gpu_seconds(lambda: a @ b)
    return {"copy_bytes_s": 2 * 2**30 * 2 / copy_s, "bf16_matmul_flops": 2 * n**3 / mm_s}


def cycled_items(n: int) -> list[SuiteItem]:
    """``n`` prompts: the starter suite's, repeated as needed (distinct ids)."""
    from compliance.suites import load_suite

    base = list(load_suite(["starter"]).items)
    return [dataclasses.replace(base[i % len(base)], id=f"{base[i % len(base)].id}#{i // len(base)}") for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: ``--sdpa``: decode steps keep SDPA's kernels instead of the engine's decode attention.
OWN_ATTENTION: list[Optional[bool]] = [None]


def engine_run(model, prompts: list[list[int]], batch: int, new_tokens: int, mode: str, pad_id: int,
               compiled: bool = False) -> dict:
    """Generate ``new_tokens`` for every prompt, ``batch`` at a time; tokens, seconds and tok/s."""
    from compliance.generation.engine import decode_batch

    _sync(model.device)
    start = time.perf_counter()
    rows = []
    for first in range(0, len(prompts), batch):
        rows += decode_batch(model, prompts[first : first + batch], pad_id, [], new_tokens,
                             min_new_tokens=new_tokens, mode=mode, compiled=compiled, own_attention=OWN_ATTENTION[0])
    _sync(model.device)
    seconds = time.perf_counter() - start
    tokens = sum(len(r.tokens) for r in rows)
    return {"mode": mode + ("+compile" if compiled else ""), "batch": batch, "prompts": len(prompts), "new_tokens": new_tokens, "tokens": tokens,
            "seconds": seconds, "tok_s": tokens / seconds, "token_ids": [r.tokens for r in rows]}


def generate_run(model, tokenizer, items: list[SuiteItem], new_tokens: int) -> dict:
    """The path a report takes: :func:`compliance.generation.generate` with its default batch size."""
    from compliance.generation import batch_size_for, generate
    from compliance.records import GenConfig

    config = GenConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    _sync(model.device)
    start = time.perf_counter()
    responses = generate(model, tokenizer, items, config)
    _sync(model.device)
    seconds = time.perf_counter() - start
    tokens = sum(r.n_new_tokens for r in responses)
    return {"prompts": len(items), "batch_size": batch_size_for(model, new_tokens), "tokens": tokens,
            "seconds": seconds, "tok_s": tokens / seconds}


def _rewind(state, view: int) -> None:
    """Point a kept state's counters back inside its buffers, so its graph can be replayed again and again."""
    state.write_at.fill_(view - 1)
    state.step.fill_(0)


def replay_times(model) -> list[dict]:
    """GPU time of one captured decode step (median of 20 replays) for every kept static state:
    what a step costs once the host is out of the way."""
    from compliance.generation.engine import _STATES

    found = []
    for state in list(_STATES.get(model, {}).values()):
        if not state.graphs:
            continue
        view = max(state.graphs)
        ms = 1e3 * gpu_seconds(state.graphs[view].replay, repeats=20, warmup=2,
                               before=lambda: _rewind(state, view))
        found.append({"rows": state.rows, "view": view, "captures": state.captures, "step_ms": ms,
                      "tok_s": state.rows / ms * 1e3})
        print(f"captured step, {state.rows:>5} rows, view {view}: {ms:.3f} ms = {state.rows / ms * 1e3:.0f} tok/s "
              f"({state.captures} captures)", flush=True)
    return found


def profile_replays(model, out_dir: Path) -> None:
    """Profile 5 replays of each kept state's widest graph; write the kernel table per state and
    print the heaviest kernels and the kernel count of one step."""
    from torch.profiler import ProfilerActivity, profile

    from compliance.generation.engine import _STATES

    states = [state for state in _STATES.get(model, {}).values() if state.graphs]
    widest = max((state.rows for state in states), default=0)
    for state in states:
        if state.rows not in (1, widest):
            continue
        view = max(state.graphs)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                _rewind(state, view)
                state.graphs[view].replay()
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0 and e.key != "cudaGraphLaunch"]
        events.sort(key=lambda e: -e.device_time_total)
        kernels = sum(e.count for e in events) / 5
        total = sum(e.device_time_total for e in events) / 5 / 1e3
        table = prof.key_averages().table(sort_by="device_time_total", row_limit=60)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"profile_rows{state.rows}_compiled{int(state._compiled is not None)}.txt").write_text(table)
        print(f"profile {state.rows} rows (compiled={state._compiled is not None}): ~{kernels:.0f} kernel entries "
              f"per step, {total:.3f} ms device time per step", flush=True)
        for e in events[:8]:
            print(f"   {e.device_time_total / 5 / 1e3:7.3f} ms  x{e.count / 5:5.0f}  {e.key[:90]}", flush=True)


def batch_sizes(text: str) -> list[int]:
    """``--batches``: comma-separated positive integers (empty: none)."""
    try:
        return list(parse_batch_sizes(text, "--batches"))
    except ComplianceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a local tokenizer folder (with a chat template)")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--batches", type=batch_sizes, default="64,256,512,1024", help="large batch sizes to measure")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--eager-batch", type=int, default=256, help="the large batch also run without graphs")
    parser.add_argument("--compile", action="store_true", help="graph runs put the step through torch.compile")
    parser.add_argument("--view-block", type=int, default=None,
                        help="override the engine's VIEW_BLOCK (fewer shapes, so fewer compiles)")
    parser.add_argument("--profile-dir", type=Path, default=None, help="profile the captured steps into this folder")
    parser.add_argument("--sdpa", action="store_true", help="decode steps use SDPA, not the engine's decode attention")
    parser.add_argument("--generate-prompts", type=int, default=0,
                        help="also time compliance.generation.generate (what reports call) on this many prompts")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="skip the naive and eager runs (measured before; they are slow)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run every step on CPU with a tiny model and the static step in place of graphs")
    args = parser.parse_args(argv)
    if not Path(args.tokenizer).is_dir():
        parser.error(f"--tokenizer {args.tokenizer}: no such folder; pass a folder with a saved tokenizer "
                     "(tokenizer.json and its config)")

    from transformers import AutoTokenizer

    from compliance.generation.transformers_backend import encode_prompt

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU: run it on a GPU machine (or pass --cpu-smoke).")
    device = torch.device("cpu") if smoke else torch.device("cuda", 0)
    name = "cpu smoke" if smoke else torch.cuda.get_device_name(device)
    graph = "static" if smoke else "graph"
    report: dict = {"gpu": name, "torch": torch.__version__}
    import transformers

    report["transformers"] = transformers.__version__
    report["measured"] = {"copy_bytes_s": 1e9, "bf16_matmul_flops": 1e9} if smoke else measure_ceilings(device)
    print(f"{name}: copy {report['measured']['copy_bytes_s'] / 1e12:.2f} TB/s, "
          f"bf16 matmul {report['measured']['bf16_matmul_flops'] / 1e12:.0f} TFLOP/s", flush=True)

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = random_llama(SMOKE_SHAPE if smoke else LLAMA_3_2_1B, torch.bfloat16, device.type)
    n_params = model.num_parameters()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bounds = gpu_bounds(name, n_params, weight_bytes) or {}
    measured_bounds = {"batch1_bound_tok_s": report["measured"]["copy_bytes_s"] / weight_bytes,
                       "compute_bound_tok_s": report["measured"]["bf16_matmul_flops"] / (2 * n_params)}
    report.update(n_params=n_params, weight_bytes=weight_bytes, datasheet_bounds=bounds,
                  measured_bounds=measured_bounds)
    largest = max(args.batches + [16])
    items = cycled_items(largest)
    prompts = [encode_prompt(tokenizer, item, True) for item in items]
    runs: list[dict] = []

    def record(run: dict, against: str) -> None:
        run = {k: v for k, v in run.items() if k != "token_ids"}
        run["of_datasheet_bound"] = run["tok_s"] / bounds[against] if against in bounds else None
        run["of_measured_bound"] = run["tok_s"] / measured_bounds[against]
        run["bound"] = against
        runs.append(run)
        print(f"{run['mode']:>8} batch {run['batch']:>5}: {run['tok_s']:>10.1f} tok/s "
              f"({run['tokens']} tokens, {run['seconds']:.2f} s) = {100 * (run['of_datasheet_bound'] or 0):.0f}% "
              f"of the datasheet {against.split('_')[0]} bound, {100 * run['of_measured_bound']:.0f}% of the measured",
              flush=True)

    compiled = args.compile
    OWN_ATTENTION[0] = False if args.sdpa else None
    report["attention"] = "sdpa" if args.sdpa else "engine default"
    if args.view_block:
        from compliance.generation import engine

        engine.VIEW_BLOCK = args.view_block
        report["view_block"] = args.view_block
    with torch.inference_mode():
        engine_run(model, prompts[:4], 4, 8, graph, pad_id)  # warm-up: cuBLAS handles, kernels
        engine_run(model, prompts[:4], 4, 8, "dynamic", pad_id)
        # Batch 1.
        if not args.skip_baselines:
            naive_items = items[:4]
            naive_ids, naive_s = naive_pipeline(model, tokenizer, [i.prompt for i in naive_items], 64)
            naive_new = [ids[len(p):] for ids, p in zip(naive_ids, prompts[:4])]
            naive_tokens = sum(len(t) for t in naive_new)
            record({"mode": "naive", "batch": 1, "prompts": 4, "new_tokens": 64, "tokens": naive_tokens,
                    "seconds": naive_s, "tok_s": naive_tokens / naive_s}, "batch1_bound_tok_s")
            eager1 = engine_run(model, prompts[:4], 1, 64, "dynamic", pad_id)
            record(eager1, "batch1_bound_tok_s")
        if compiled:  # compiling happens on the first call of each shape: keep it out of the timing
            engine_run(model, prompts[:16], 1, args.new_tokens, graph, pad_id, compiled)
        graph1 = engine_run(model, prompts[:16], 1, args.new_tokens, graph, pad_id, compiled)
        record(graph1, "batch1_bound_tok_s")
        if not args.skip_baselines:
            report["batch1_identical"] = {
                "naive_vs_eager": sum(a == b for a, b in zip(naive_new, eager1["token_ids"])),
                "eager_vs_graph": sum(a[: len(b)] == b[: len(a)] for a, b in zip(eager1["token_ids"], graph1["token_ids"])),
                "of": 4}
        # Large batches.
        for batch in args.batches:
            if compiled:
                engine_run(model, prompts[:batch], batch, args.new_tokens, graph, pad_id, compiled)
            graphed = engine_run(model, prompts[:batch], batch, args.new_tokens, graph, pad_id, compiled)
            record(graphed, "compute_bound_tok_s")
            if batch == args.eager_batch and not args.skip_baselines:
                eager = engine_run(model, prompts[:batch], batch, args.new_tokens, "dynamic", pad_id)
                record(eager, "compute_bound_tok_s")
                report["eager_batch_identical"] = {
                    "eager_vs_graph": sum(a == b for a, b in zip(eager["token_ids"], graphed["token_ids"])),
                    "of": batch}
        if args.generate_prompts:
            report["generate"] = generate_run(model, tokenizer, cycled_items(args.generate_prompts), args.new_tokens)
            print(f"generate(), {args.generate_prompts} prompts, batch {report['generate']['batch_size']}: "
                  f"{report['generate']['tok_s']:.1f} tok/s", flush=True)
        prefill = engine_run(model, prompts[:largest], largest, 1, graph, pad_id)
        report["prefill_only_seconds"] = {"batch": largest, "seconds": prefill["seconds"]}
        if not smoke:
            report["replays"] = replay_times(model)
            if args.profile_dir is not None:
                profile_replays(model, args.profile_dir)
    report["runs"] = runs
    report["peak_gpu_memory_gb"] = 0.0 if smoke else torch.cuda.max_memory_allocated(device) / 1e9
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, sort_keys=True))
    return report


if __name__ == "__main__":
    main()
