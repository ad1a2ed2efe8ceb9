"""Generation throughput: our engine against what a user would run instead, in one run.

``make bench`` (``compliance bench``) generates ``new_tokens`` tokens for each of ``n_prompts``
suite prompts, with every length fixed (``min_new_tokens == max_new_tokens``) so every path does the
same work, through

- **naive**: a transformers ``pipeline("text-generation")`` called one prompt at a time, greedy;
- **generate**: transformers ``model.generate`` on left-padded batches of the prompts, at each
  of ``generate_batches`` (:func:`compliance.bench.peers.generate_peer`); the best counts;
- **engine**: :func:`compliance.generation.generate`, the path every report uses;
- **llama-cpp** (when asked): llama.cpp's server on the model's GGUF file through
  ``--backend openai``'s client (:func:`compliance.bench.peers.llama_cpp_peer`).

The naive path is slow, so by default it runs on an evenly spread sample of the prompts
(``naive_prompts``); its rate (tokens/s) does not depend on how many prompts it is given. The
engine's greedy tokens must be identical to the naive path's and to ``generate``'s on every
prompt both ran: a faster engine that changed a greedy answer would change a report. llama.cpp
decodes its own quantized weights, so only its throughput is compared. ``peers`` maps each
peer to its tokens/s and ``engine_vs_best_peer`` sets the engine against the fastest. The result
ends with one JSON line for scripts.

On a GPU, :func:`gpu_bounds` gives the two ceilings a decoder cannot beat: at batch 1 the
memory-bandwidth bound (HBM bytes/s over weight bytes read per step) and at a large batch the
compute bound (peak bf16 FLOP/s over 2 x parameters FLOPs per token).

On CPU the ratio also depends on the machine's balance: the naive loop follows memory bandwidth,
the engine the speed of matrix products. :func:`cpu_floor` therefore measures, in the same run,
how fast this machine multiplies the model's own weight matrices at the engine's decode shape
(one stream per core, as the engine runs) and sets the engine against the time that work alone
takes.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from compliance.errors import ComplianceError
from compliance.records import GenConfig, SuiteItem

#: Memory bandwidth (bytes/s) and dense bf16 peak (FLOP/s) of GPUs we know, from their makers'
#: data sheets; matched against ``torch.cuda.get_device_name()`` in order.
GPU_SPECS: tuple[tuple[str, float, float], ...] = (
    ("H200", 4.8e12, 989e12),
    ("H100 PCIe", 2.0e12, 756e12),
    ("H100", 3.35e12, 989e12),  # SXM
    ("A100-SXM4-80GB", 2.039e12, 312e12),
    ("A100", 1.555e12, 312e12),
    ("L40S", 0.864e12, 362e12),
    ("A10G", 0.6e12, 70e12),
)

#: Llama-3.2-1B's shape, for measuring a GPU with random weights (nothing can be downloaded there).
LLAMA_3_2_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
    rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
    bos_token_id=128000, eos_token_id=128001,
)


@dataclass
class PathResult:
    """One path's measurement."""

    name: str
    n_prompts: int
    tokens: int
    seconds: float

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BenchResult:
    """What ``compliance bench`` prints; :meth:`summary` is its last line."""

    model: str
    device: str
    dtype: str
    n_prompts: int
    new_tokens: int
    batch_size: int
    naive: Optional[PathResult]
    engine: PathResult
    identical: Optional[bool]
    n_compared: int
    mismatched: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    bounds: Optional[dict] = None
    cpu_floor: Optional["CpuFloor"] = None
    #: ``generate`` at each batch size tried, and the items whose tokens differ from the engine's.
    generate_runs: dict[int, PathResult] = field(default_factory=dict)
    generate_mismatched: dict[int, list[str]] = field(default_factory=dict)
    llama_cpp: Optional[PathResult] = None
    llama_cpp_server: Optional[dict] = None

    @property
    def best_generate(self) -> Optional[tuple[int, PathResult]]:
        """``(batch size, run)`` of the fastest ``generate`` run, if any ran."""
        if not self.generate_runs:
            return None
        return max(self.generate_runs.items(), key=lambda run: run[1].tok_s)

    def peers(self) -> dict[str, float]:
        """Each peer's tokens/s: ``naive``, ``generate`` (its best batch) and ``llama-cpp``, those that ran."""
        best = self.best_generate
        runs = {"naive": self.naive, "generate": best[1] if best else None, "llama-cpp": self.llama_cpp}
        return {name: run.tok_s for name, run in runs.items() if run is not None}

    def summary(self) -> dict:
        """The JSON line: the keys the issue asks for, plus identity and bounds."""
        naive = self.naive.tok_s if self.naive else None
        peers = self.peers()
        best_peer = max(peers, key=peers.get) if peers else None
        best_generate = self.best_generate
        return {
            "naive_tok_s": round(naive, 2) if naive is not None else None,
            "engine_tok_s": round(self.engine.tok_s, 2),
            "ratio": round(self.engine.tok_s / naive, 2) if naive else None,
            "peers": {name: round(tok_s, 2) for name, tok_s in peers.items()},
            "best_peer": best_peer,
            "engine_vs_best_peer": round(self.engine.tok_s / peers[best_peer], 2) if best_peer else None,
            "generate_batches": {str(b): round(run.tok_s, 2) for b, run in self.generate_runs.items()},
            "generate_best_batch": best_generate[0] if best_generate else None,
            "identical_to_generate": (not any(self.generate_mismatched.values())) if self.generate_runs else None,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "device": self.device,
            "model": self.model,
            "n_prompts": self.n_prompts,
            "new_tokens": self.new_tokens,
            "batch_size": self.batch_size,
            "naive_prompts": self.naive.n_prompts if self.naive else 0,
            "identical_outputs": self.identical,
            "bounds": self.bounds,
            "cpu_floor": self.cpu_floor.summary(self.engine.seconds) if self.cpu_floor else None,
        }


@dataclass
class CpuFloor:
    """The engine's matrix-product work and how fast this machine does it (see :func:`cpu_floor`)."""

    matmul_flops: float  # FLOPs of products with the model's weight matrices in the engine's run
    ceiling_flop_s: float  # the model's matrices multiplied at the decode shape, every stream at once
    streams: int
    rows_per_stream: int

    @property
    def floor_seconds(self) -> float:
        """The least time the run's matrix products take at the measured ceiling."""
        return self.matmul_flops / self.ceiling_flop_s

    def summary(self, engine_seconds: float) -> dict:
        return {
            "matmul_tflop": round(self.matmul_flops / 1e12, 3),
            "ceiling_gflop_s": round(self.ceiling_flop_s / 1e9, 1),
            "engine_gflop_s": round(self.matmul_flops / engine_seconds / 1e9, 1) if engine_seconds > 0 else None,
            "floor_seconds": round(self.floor_seconds, 2),
            "of_floor": round(self.floor_seconds / engine_seconds, 3) if engine_seconds > 0 else None,
            "streams": self.streams,
            "rows_per_stream": self.rows_per_stream,
        }


def weight_matrices(model) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The decoder's linear-layer weights (every layer's projections) and the LM head's weight."""
    head = model.get_output_embeddings().weight
    body = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight is not head]
    return body, head


def engine_matmul_flops(model, prompts: Sequence[Sequence[int]], new_tokens: int) -> float:
    """FLOPs of products with weight matrices when the engine answers ``prompts`` with ``new_tokens`` each.

    Prefill runs every prompt token through the decoder once (a prefix all prompts share, once:
    :func:`compliance.generation.engine.prefix_to_share`); each new token but the last runs
    through it again; the LM head runs once per new token (prefill keeps only the last position).
    Attention's products with the KV cache are not counted (no weights; a few percent here).
    """
    from compliance.generation.engine import prefix_to_share

    body, head = weight_matrices(model)
    body_params = sum(w.numel() for w in body)
    shared = prefix_to_share(prompts)
    prompt_tokens = sum(len(p) for p in prompts) - shared * (len(prompts) - 1)
    rows = len(prompts)
    return 2.0 * (body_params * (prompt_tokens + rows * (new_tokens - 1)) + head.numel() * rows * new_tokens)


def matmul_ceiling(model, rows: int, streams: int, seconds: float = 3.0) -> float:
    """FLOP/s of this machine multiplying the model's weight matrices by ``rows`` activations.

    Runs as the engine decodes on CPU: ``streams`` threads at once, one intra-op thread each,
    every layer's weights in turn and the LM head a slice at a time
    (:data:`compliance.generation.engine.HEAD_SLICE`), for about ``seconds`` after one warm-up
    pass. The thread setting is restored after.
    """
    import threading

    from compliance.generation.engine import HEAD_SLICE

    body, head = weight_matrices(model)
    weights = [w.detach() for w in body] + [head.detach()[s : s + HEAD_SLICE] for s in range(0, head.shape[0], HEAD_SLICE)]
    pass_flops = sum(2.0 * rows * w.shape[0] * w.shape[1] for w in weights)
    threads = torch.get_num_threads()
    done = [0] * streams
    start_together = threading.Barrier(streams)

    def run(stream: int, deadline_after: float) -> None:
        inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights}
        start_together.wait()
        stop = time.perf_counter() + deadline_after
        while True:
            for w in weights:
                torch.nn.functional.linear(inputs[w.shape[1]], w)
            done[stream] += 1
            if time.perf_counter() >= stop:
                return

    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for deadline_after in (0.0, seconds):  # one warm-up pass per stream, then the measurement
                done[:] = [0] * streams
                workers = [threading.Thread(target=run, args=(i, deadline_after)) for i in range(streams)]
                began = time.perf_counter()
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                elapsed = time.perf_counter() - began
    finally:
        torch.set_num_threads(threads)
    return sum(done) * pass_flops / elapsed


def cpu_floor(model, prompts: Sequence[Sequence[int]], new_tokens: int, batch_size: int,
              seconds: float = 3.0) -> CpuFloor:
    """The engine's matrix-product work for ``prompts`` and this machine's speed at it, measured now."""
    from compliance.generation.engine import cpu_streams

    batch = min(batch_size, len(prompts))
    streams = cpu_streams(batch, torch.get_num_threads())
    rows = batch // streams
    return CpuFloor(matmul_flops=engine_matmul_flops(model, prompts, new_tokens),
                    ceiling_flop_s=matmul_ceiling(model, rows, streams, seconds), streams=streams,
                    rows_per_stream=rows)


def spread_sample(n_total: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_total)`` (all of them when ``k >= n_total``)."""
    if k >= n_total:
        return list(range(n_total))
    if k <= 0:
        return []
    return sorted({round(i * (n_total - 1) / max(k - 1, 1)) for i in range(k)})


def gpu_bounds(device_name: str, n_params: int, weight_bytes: int) -> Optional[dict]:
    """Throughput ceilings for a known GPU, or None for an unknown one.

    Args:
        device_name: ``torch.cuda.get_device_name()``.
        n_params: parameters (the compute bound counts 2 FLOPs per parameter per token).
        weight_bytes: bytes of weights read per decode step (all of them, at batch 1).

    Returns:
        ``{"gpu", "hbm_bytes_s", "bf16_flops", "batch1_bound_tok_s", "compute_bound_tok_s"}``.
    """
    for name, bandwidth, flops in GPU_SPECS:
        if name.lower() in device_name.lower():
            return {"gpu": name, "hbm_bytes_s": bandwidth, "bf16_flops": flops,
                    "batch1_bound_tok_s": bandwidth / weight_bytes,
                    "compute_bound_tok_s": flops / (2 * n_params)}
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def naive_pipeline(model, tokenizer, prompts: list[str], new_tokens: int,
                   progress: Optional[Callable[[int], None]] = None) -> tuple[list[list[int]], float]:
    """The loop a user would write: one ``pipeline`` call per prompt, greedy, fixed length.

    Returns:
        ``(new token ids per prompt, seconds)``.
    """
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for done, prompt in enumerate(prompts, 1):
        messages = [{"role": "user", "content": prompt}] if tokenizer.chat_template else prompt
        result = pipe(messages, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      return_tensors=True)
        outputs.append(result[0]["generated_token_ids"])
        if progress:
            progress(done)
    seconds = time.perf_counter() - start
    return outputs, seconds


def run_bench(
    model,
    tokenizer,
    model_name: str,
    items: list[SuiteItem],
    new_tokens: int = 64,
    batch_size: Optional[int] = None,
    naive_prompts: int = 16,
    progress: Optional[Callable[[str, int, int], None]] = None,
    floor_seconds: float = 3.0,
    generate_batches: Sequence[int] = (),
    peers: Sequence[str] = (),
    gguf: Optional[Path] = None,
    llama_slots: int = 16,
    llama_threads: Optional[int] = None,
) -> BenchResult:
    """Measure every path on ``items`` and compare the engine's tokens with the others' where both ran.

    Args:
        model, tokenizer: the loaded model (on its device) and tokenizer.
        model_name: recorded in the result.
        items: the prompts.
        new_tokens: tokens generated per prompt, fixed.
        batch_size: the engine's batch size (``None``: the device default).
        naive_prompts: how many prompts (spread over ``items``) the naive path runs; 0 skips it.
        progress: called as ``progress(path, done, total)``.
        floor_seconds: on CPU, how long :func:`cpu_floor` measures the matrix-product ceiling
            (after the engine's run); 0 skips it.
        generate_batches: batch sizes at which transformers' ``generate`` answers every prompt
            (none: that peer is skipped).
        peers: optional peers to run too (:data:`compliance.bench.peers.OPTIONAL_PEERS`).
        gguf: the model's GGUF file, for the ``llama-cpp`` peer.
        llama_slots: the ``llama-cpp`` peer's parallel slots (requests in flight).
        llama_threads: the ``llama-cpp`` peer's CPU threads (None: every core).

    Raises:
        ComplianceError: no prompts, a length or batch size below 1, an unknown peer, or
            ``llama-cpp`` without a GGUF file or a server (:class:`~compliance.generation.llama_server.LlamaServerError`).
    """
    from compliance.bench.peers import OPTIONAL_PEERS, generate_peer, llama_cpp_peer
    from compliance.generation import batch_size_for, generate
    from compliance.generation.transformers_backend import encode_prompt, pad_id_for

    if not items:
        raise ComplianceError("The benchmark needs at least one prompt: raise --prompts.")
    if new_tokens < 1:
        raise ComplianceError(f"--new-tokens {new_tokens} must be at least 1.")
    unknown = [p for p in peers if p not in OPTIONAL_PEERS]
    if unknown:
        raise ComplianceError(f"Unknown peer {unknown[0]!r} (--peer): choose {', '.join(OPTIONAL_PEERS)}.")
    if "llama-cpp" in peers and gguf is None:
        raise ComplianceError("--peer llama-cpp needs the model as a GGUF file: bench the built-in model "
                              "or a folder that holds one .gguf file.")
    if any(b < 1 for b in generate_batches) or llama_slots < 1 or (llama_threads is not None and llama_threads < 1):
        raise ComplianceError("Every --generate-batches size, --llama-slots and --llama-threads must be at least 1.")
    if batch_size is None:
        batch_size = batch_size_for(model, new_tokens)
    batch_size = min(batch_size, len(items))  # what the engine runs: a batch holds at most every prompt
    config = GenConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, batch_size=batch_size)

    naive_result, naive_tokens = None, {}
    sample = spread_sample(len(items), naive_prompts)
    if sample:
        outputs, seconds = naive_pipeline(
            model, tokenizer, [items[i].prompt for i in sample], new_tokens,
            progress=(lambda done: progress("naive", done, len(sample))) if progress else None)
        for index, ids in zip(sample, outputs):
            prompt_len = len(encode_prompt(tokenizer, items[index], True))
            naive_tokens[index] = ids[prompt_len:]
        naive_result = PathResult("naive", len(sample), sum(len(t) for t in naive_tokens.values()), seconds)

    prompts = [encode_prompt(tokenizer, item, config.use_chat_template) for item in items]
    pad_id = pad_id_for(model, tokenizer)
    generate_runs: dict[int, PathResult] = {}
    generate_tokens: dict[int, list[list[int]]] = {}
    for size in generate_batches:
        name = f"generate b{size}"
        outputs, seconds = generate_peer(model, prompts, new_tokens, size, pad_id,
                                         progress=(lambda done, n=name: progress(n, done, len(items))) if progress else None)
        generate_tokens[size] = outputs
        generate_runs[size] = PathResult(name, len(items), sum(len(t) for t in outputs), seconds)

    engine_tokens: dict[str, list[int]] = {}

    def keep(response) -> None:
        if progress:
            progress("engine", len(engine_tokens), len(items))

    start = time.perf_counter()
    responses = generate(model, tokenizer, items, config, on_response=keep, token_ids=engine_tokens)
    seconds = time.perf_counter() - start
    engine_result = PathResult("engine", len(items), sum(r.n_new_tokens for r in responses), seconds)

    mismatched = [items[i].id for i in sample if naive_tokens[i] != engine_tokens[items[i].id]]
    generate_mismatched = {size: [item.id for item, ids in zip(items, outputs) if ids != engine_tokens[item.id]]
                           for size, outputs in generate_tokens.items()}

    llama_cpp, llama_cpp_server = None, None
    if "llama-cpp" in peers:
        tokens, seconds, llama_cpp_server = llama_cpp_peer(
            gguf, items, new_tokens, llama_slots, llama_threads,
            progress=(lambda done: progress("llama-cpp", done, len(items))) if progress else None)
        llama_cpp = PathResult("llama-cpp", len(items), tokens, seconds)

    floor = None
    if model.device.type == "cpu" and floor_seconds > 0:
        floor = cpu_floor(model, prompts, new_tokens, batch_size, floor_seconds)
    bounds = None
    if model.device.type == "cuda":
        n_params = model.num_parameters()
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        bounds = gpu_bounds(torch.cuda.get_device_name(model.device), n_params, weight_bytes)
    return BenchResult(
        model=model_name, device=str(model.device), dtype=str(model.dtype).replace("torch.", ""),
        n_prompts=len(items), new_tokens=new_tokens, batch_size=batch_size, naive=naive_result,
        engine=engine_result, identical=(not mismatched) if sample else None, n_compared=len(sample),
        mismatched=mismatched, peak_rss_mb=peak_rss_mb(), bounds=bounds, cpu_floor=floor,
        generate_runs=generate_runs, generate_mismatched=generate_mismatched, llama_cpp=llama_cpp,
        llama_cpp_server=llama_cpp_server,
    )


def random_llama(shape: dict, dtype: torch.dtype, device: str, seed: int = 0):
    """A Llama of ``shape`` (e.g. :data:`LLAMA_3_2_1B`) with random weights, for throughput only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**shape)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def bench_as_dict(result: BenchResult) -> dict:
    """Everything measured, for ``--json-out``."""
    data = asdict(result)
    data["summary"] = result.summary()
    return data
