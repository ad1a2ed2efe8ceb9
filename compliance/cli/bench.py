"""``compliance bench``: generation throughput, our engine against the naive loop, ``generate`` and llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from compliance.cli.app import app, err, out
from compliance.bench.peers import GENERATE_BATCHES, OPTIONAL_PEERS, parse_batch_sizes
from compliance.constants import BUILTIN_MODEL_ID

RANDOM_SHAPES = ("llama-3.2-1b",)


@app.command()
def bench(
    model: str = typer.Option(BUILTIN_MODEL_ID, "--model", help="Model to measure: the built-in id, a local folder or a Hub id."),
    prompts: int = typer.Option(128, "--prompts", help="Prompts the engine answers (from the suite, in order)."),
    new_tokens: int = typer.Option(64, "--new-tokens", help="Tokens generated per prompt; every length is fixed."),
    naive_prompts: int = typer.Option(16, "--naive-prompts",
                                      help="Prompts, spread over the set, that the naive loop answers "
                                           "(it is slow; its tok/s does not depend on the count). 0 skips it."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Engine batch size (default: chosen from the device)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    suite: str = typer.Option("starter", "--suite", help="Suite whose prompts are used."),
    random_weights: Optional[str] = typer.Option(None, "--random-weights",
                                                 help="Measure a random-weight model of this shape instead "
                                                      f"({', '.join(RANDOM_SHAPES)}), with --model's tokenizer."),
    floor_seconds: float = typer.Option(3.0, "--floor-seconds",
                                        help="On CPU, seconds spent measuring how fast this machine multiplies the "
                                             "model's matrices, to set the engine against (0 skips it)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write every measurement to this JSON file."),
    generate_batches: str = typer.Option(",".join(map(str, GENERATE_BATCHES)), "--generate-batches",
                                         help="Batch sizes at which transformers' generate answers every prompt "
                                              "(comma-separated; the best counts as the peer). 'none' skips it."),
    peer: list[str] = typer.Option([], "--peer", help="Also measure an optional peer: llama-cpp (llama.cpp's server "
                                                      "on the model's GGUF, built by `make llama-server`). Repeatable."),
    llama_slots: int = typer.Option(16, "--llama-slots", help="Parallel slots of the llama-cpp peer (requests in flight)."),
    llama_threads: Optional[int] = typer.Option(None, "--llama-threads",
                                                help="CPU threads of the llama-cpp peer (default: every core)."),
) -> None:
    """Measure generation throughput: the engine reports use against what a user would run instead, on the same prompts.

    Every path generates exactly --new-tokens per prompt (min_new_tokens = max_new_tokens) with greedy decoding: the naive transformers pipeline one prompt at a time, transformers' generate at each --generate-batches size, the engine, and with --peer llama-cpp llama.cpp's server through the openai backend. The engine's tokens must be identical to the naive path's and to generate's (llama.cpp's quantized decoding is compared on speed only). Prints a table, then one JSON line with naive_tok_s, engine_tok_s, ratio, peers (name -> tok/s), engine_vs_best_peer, peak_rss_mb, device, model, n_prompts and new_tokens. On CPU it also measures how fast this machine multiplies the model's matrices and sets the engine against the least time its matrix products take (cpu_floor).

    Example: compliance bench --prompts 128 --new-tokens 64 --peer llama-cpp
    """
    import torch

    from compliance.bench.throughput import LLAMA_3_2_1B, bench_as_dict, random_llama, run_bench
    from compliance.errors import ComplianceError
    from compliance.generation import pick_device
    from compliance.io import atomic_write_json
    from compliance.models import load_model, resolve_model_ref
    from compliance.suites import load_suite

    if prompts < 1:
        raise ComplianceError(f"--prompts {prompts} must be at least 1.")
    if floor_seconds < 0:
        raise ComplianceError(f"--floor-seconds {floor_seconds:g} must be 0 (skip) or more.")
    if naive_prompts < 0:
        raise ComplianceError(f"--naive-prompts {naive_prompts} must be 0 or more.")
    if batch_size is not None and batch_size < 1:
        raise ComplianceError(f"--batch-size {batch_size} must be at least 1.")
    if random_weights is not None and random_weights not in RANDOM_SHAPES:
        raise ComplianceError(f"--random-weights {random_weights!r} is not a known shape: choose {', '.join(RANDOM_SHAPES)}.")
    batches = parse_batch_sizes(generate_batches, "--generate-batches")
    unknown = [p for p in peer if p not in OPTIONAL_PEERS]
    if unknown:
        raise ComplianceError(f"--peer {unknown[0]!r} is not a known peer: choose {', '.join(OPTIONAL_PEERS)}.")
    if llama_slots < 1:
        raise ComplianceError(f"--llama-slots {llama_slots} must be at least 1.")
    if llama_threads is not None and llama_threads < 1:
        raise ComplianceError(f"--llama-threads {llama_threads} must be at least 1.")
    if "llama-cpp" in peer and random_weights is not None:
        raise ComplianceError("--peer llama-cpp serves the model's own GGUF file: drop --random-weights or the peer.")
    items = list(load_suite([suite]).items)
    if prompts > len(items):
        raise ComplianceError(f"--prompts {prompts} is more than suite {suite!r} has ({len(items)}): "
                              "lower --prompts or pick a larger --suite.")
    items = items[:prompts]
    dev, dtype = pick_device(device)
    record = resolve_model_ref(model)
    gguf = gguf_file(record)
    if "llama-cpp" in peer:
        if gguf is None:
            raise ComplianceError(f"--peer llama-cpp needs the model as a GGUF file, and {record.id} has none: "
                                  "bench the built-in model or a folder that holds one .gguf file.")
        from compliance.generation.llama_server import find_llama_server

        find_llama_server()  # before minutes of other measurements, not after
    err.print(f"Loading {record.id} on {dev} ({str(dtype).replace('torch.', '')})...")
    loaded, tokenizer = load_model(record, device=dev, dtype=dtype)
    name = record.id
    if random_weights is not None:
        del loaded
        loaded = random_llama(LLAMA_3_2_1B, dtype, dev)
        name = f"random {random_weights} ({loaded.num_parameters() / 1e9:.2f}B params, {record.id} tokenizer)"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(f"{path} path", total=total)
            bar.update(tasks[path], completed=done)

        with torch.inference_mode():
            result = run_bench(loaded, tokenizer, name, items, new_tokens=new_tokens, batch_size=batch_size,
                               naive_prompts=naive_prompts, progress=progress, floor_seconds=floor_seconds,
                               generate_batches=batches, peers=peer, gguf=gguf, llama_slots=llama_slots,
                               llama_threads=llama_threads)
    summary = result.summary()
    table = Table(title=f"Throughput: {name} on {result.device} ({result.dtype}), {new_tokens} new tokens per prompt")
    for column in ("path", "prompts", "batch", "tokens", "seconds", "tok/s"):
        table.add_column(column, justify="left" if column == "path" else "right")
    if result.naive:
        table.add_row("naive pipeline, one prompt at a time", str(result.naive.n_prompts), "1",
                      str(result.naive.tokens), f"{result.naive.seconds:.1f}", f"{result.naive.tok_s:.1f}")
    for size, run in result.generate_runs.items():
        table.add_row("transformers generate, left-padded", str(run.n_prompts), str(size), str(run.tokens),
                      f"{run.seconds:.1f}", f"{run.tok_s:.1f}")
    table.add_row("engine", str(result.engine.n_prompts), str(result.batch_size), str(result.engine.tokens),
                  f"{result.engine.seconds:.1f}", f"{result.engine.tok_s:.1f}")
    if result.llama_cpp:
        threads = result.llama_cpp_server["threads"]
        table.add_row(f"llama.cpp server ({llama_slots} slots, {threads} threads) via --backend openai", str(result.llama_cpp.n_prompts),
                      str(llama_slots), str(result.llama_cpp.tokens), f"{result.llama_cpp.seconds:.1f}",
                      f"{result.llama_cpp.tok_s:.1f}")
    out.print(table)
    if summary["ratio"] is not None:
        out.print(f"Engine / naive: {summary['ratio']:.1f}x")
    if summary["best_peer"] is not None:
        best = summary["best_peer"]
        which = f"generate at batch {summary['generate_best_batch']}" if best == "generate" else best
        out.print(f"Engine / best peer ({which}): {summary['engine_vs_best_peer']:.2f}x")
    if result.identical is not None:
        verdict = "identical" if result.identical else f"DIFFERENT for {', '.join(result.mismatched)}"
        out.print(f"Greedy tokens, engine vs naive, on the {result.n_compared} prompts both ran: {verdict}")
    for size, different in result.generate_mismatched.items():
        verdict = "identical" if not different else f"DIFFERENT for {len(different)}: {', '.join(different[:8])}"
        out.print(f"Greedy tokens, engine vs generate at batch {size}, on all {result.n_prompts} prompts: {verdict}")
    if result.llama_cpp_server:
        busy = result.llama_cpp_server.get("busy_slots_per_decode")
        out.print(f"llama.cpp {result.llama_cpp_server['version']}"
                  + (f", {busy:.1f} slots busy per decode step on average" if busy else "")
                  + " (its quantized tokens are not compared)")
    if result.bounds:
        b = result.bounds
        out.print(f"{b['gpu']} bounds: batch-1 memory bound {b['batch1_bound_tok_s']:.0f} tok/s, "
                  f"compute bound {b['compute_bound_tok_s']:.0f} tok/s")
    if summary["cpu_floor"]:
        f = summary["cpu_floor"]
        out.print(f"Matrix products: {f['matmul_tflop']:.2f} TFLOP in this run. This machine multiplies the model's "
                  f"matrices at {f['ceiling_gflop_s']:.0f} GFLOP/s ({f['streams']} x {f['rows_per_stream']} rows, "
                  f"measured now): at that speed they alone take {f['floor_seconds']:.1f} s. The engine ran "
                  f"them at {f['engine_gflop_s']:.0f} GFLOP/s, {f['of_floor']:.0%} of it.")
    out.print(f"Peak RSS: {result.peak_rss_mb:.0f} MB")
    if json_out is not None:
        atomic_write_json(json_out, bench_as_dict(result))
    print(json.dumps(summary, sort_keys=True))
    if result.identical is False or summary["identical_to_generate"] is False:
        raise typer.Exit(1)


def gguf_file(record) -> Optional[Path]:
    """The GGUF file a model record stands for: the built-in model's, or a folder's single ``.gguf``; else None."""
    if record.kind == "builtin":
        from compliance.models.builtin import builtin_gguf_path

        return builtin_gguf_path()
    if record.gguf_file and record.path:
        return Path(record.path) / record.gguf_file
    return None
