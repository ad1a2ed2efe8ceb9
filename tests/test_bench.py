"""``compliance bench``: the throughput measurement, run on the tiny model (timings are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cli_runner import run_cli
from compliance.bench.peers import left_pad, parse_batch_sizes
from compliance.bench.throughput import (
    engine_matmul_flops,
    gpu_bounds,
    matmul_ceiling,
    random_llama,
    run_bench,
    spread_sample,
)
from compliance.errors import ComplianceError
from compliance.records import SuiteItem

SUMMARY_KEYS = {"naive_tok_s", "engine_tok_s", "ratio", "peak_rss_mb", "device", "model", "n_prompts", "new_tokens",
                "peers", "engine_vs_best_peer"}


def items(n: int) -> list[SuiteItem]:
    texts = ["How do I bake bread?", "hi", "Tell me how to pick a lock on a door that is not mine. " * 3,
             "What is the capital of France?", "Which stocks will double next month?", "x"]
    return [SuiteItem(id=f"p{i}", prompt=texts[i % len(texts)] + f" ({i})", category="c", domain="general",
                      expected="refuse", benchmark="unit") for i in range(n)]


def last_token_changed(path, row: int):
    """``path`` (a peer returning ``(token ids per prompt, seconds)``) with one row's last token changed."""

    def changed(*args, **kwargs):
        outputs, seconds = path(*args, **kwargs)
        outputs[row] = outputs[row][:-1] + [outputs[row][-1] + 1]
        return outputs, seconds

    return changed


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_both_paths_run_and_agree_token_for_token(tiny):
    model, tokenizer = tiny
    result = run_bench(model, tokenizer, "tiny", items(9), new_tokens=7, batch_size=4, naive_prompts=4,
                       floor_seconds=0.2)
    assert result.naive.n_prompts == 4 and result.naive.tokens == 4 * 7
    assert result.engine.n_prompts == 9 and result.engine.tokens == 9 * 7  # lengths are fixed
    assert result.identical is True and result.n_compared == 4 and not result.mismatched
    summary = result.summary()
    assert SUMMARY_KEYS <= set(summary)
    assert summary["ratio"] == pytest.approx(result.engine.tok_s / result.naive.tok_s, rel=0.01)
    assert summary["device"] == "cpu" and summary["n_prompts"] == 9 and summary["new_tokens"] == 7
    assert summary["peak_rss_mb"] > 0
    floor = summary["cpu_floor"]
    assert floor["streams"] == 1 and floor["rows_per_stream"] == 4  # 4 rows are too few to split
    assert floor["ceiling_gflop_s"] > 0 and 0 < floor["of_floor"]
    from compliance.generation.transformers_backend import encode_prompt

    prompts = [encode_prompt(tokenizer, item, True) for item in items(9)]
    assert result.cpu_floor.matmul_flops == engine_matmul_flops(model, prompts, 7)


def test_a_different_engine_answer_is_caught(tiny, monkeypatch):
    """If the engine decoded differently from the naive loop, the benchmark must say so."""
    from compliance.bench import throughput

    model, tokenizer = tiny
    monkeypatch.setattr(throughput, "naive_pipeline", last_token_changed(throughput.naive_pipeline, 1))
    result = run_bench(model, tokenizer, "tiny", items(4), new_tokens=3, batch_size=4, naive_prompts=4,
                       floor_seconds=0)
    assert result.identical is False and result.mismatched == ["p1"]
    assert result.summary()["identical_outputs"] is False


def test_generate_peer_runs_each_batch_and_the_best_is_the_peer(tiny):
    model, tokenizer = tiny
    result = run_bench(model, tokenizer, "tiny", items(9), new_tokens=5, batch_size=4, naive_prompts=2,
                       floor_seconds=0, generate_batches=(2, 9))
    assert sorted(result.generate_runs) == [2, 9]
    assert all(run.tokens == 9 * 5 and run.n_prompts == 9 for run in result.generate_runs.values())
    assert result.generate_mismatched == {2: [], 9: []}  # left-padded generate decodes as the engine does
    summary = result.summary()
    best = max(result.generate_runs, key=lambda b: result.generate_runs[b].tok_s)
    assert summary["generate_best_batch"] == best
    assert summary["peers"]["generate"] == round(result.generate_runs[best].tok_s, 2)
    assert set(summary["peers"]) == {"naive", "generate"} and set(summary["generate_batches"]) == {"2", "9"}
    fastest = max(summary["peers"], key=summary["peers"].get)
    assert summary["best_peer"] == fastest
    assert summary["engine_vs_best_peer"] == pytest.approx(result.engine.tok_s / result.peers()[fastest], rel=0.01)
    assert summary["identical_to_generate"] is True


def test_a_generate_answer_unlike_the_engine_is_caught(tiny, monkeypatch):
    from compliance.bench import peers

    model, tokenizer = tiny
    monkeypatch.setattr(peers, "generate_peer", last_token_changed(peers.generate_peer, 2))
    result = run_bench(model, tokenizer, "tiny", items(4), new_tokens=3, batch_size=4, naive_prompts=0,
                       floor_seconds=0, generate_batches=(4,))
    assert result.generate_mismatched == {4: ["p2"]} and result.summary()["identical_to_generate"] is False


def test_left_pad_puts_padding_first_and_masks_it():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_parse_batch_sizes():
    assert parse_batch_sizes("32,64,128", "--x") == (32, 64, 128)
    assert parse_batch_sizes("none", "--x") == () == parse_batch_sizes("", "--x")
    with pytest.raises(ComplianceError, match="--x 'a' is not a comma-separated list"):
        parse_batch_sizes("a", "--x")


def test_naive_path_can_be_skipped(tiny):
    model, tokenizer = tiny
    result = run_bench(model, tokenizer, "tiny", items(3), new_tokens=2, batch_size=2, naive_prompts=0,
                       floor_seconds=0)
    assert result.naive is None and result.identical is None
    assert result.summary()["ratio"] is None and result.summary()["naive_tok_s"] is None
    assert result.summary()["cpu_floor"] is None  # skipped
    assert result.summary()["peers"] == {} and result.summary()["engine_vs_best_peer"] is None


def test_matmul_flops_count_every_weight_product(tiny):
    model, _ = tiny
    c = model.config
    layer = (2 * c.hidden_size * c.num_attention_heads * c.head_dim  # q and o
             + 2 * c.hidden_size * c.num_key_value_heads * c.head_dim  # k and v
             + 3 * c.hidden_size * c.intermediate_size)  # gate, up, down
    body, head = c.num_hidden_layers * layer, c.vocab_size * c.hidden_size
    shared = list(range(1, 11))  # 10 tokens every prompt starts with: run once
    prompts = [shared + [20, 21], shared + [30], shared + [40, 41, 42]]
    prompt_tokens = 10 + 2 + 1 + 3
    # Each new token but the last goes back through the decoder; the head picks every new token.
    expected = 2 * (body * (prompt_tokens + 3 * (5 - 1)) + head * 3 * 5)
    assert engine_matmul_flops(model, prompts, 5) == expected
    # A prefix shorter than the engine's minimum is not shared.
    assert engine_matmul_flops(model, [[1, 2, 3], [1, 2, 4]], 1) == 2 * (body * 6 + head * 2)


def test_matmul_ceiling_runs_streams_and_restores_threads(tiny):
    model, _ = tiny
    threads = torch.get_num_threads()
    assert matmul_ceiling(model, rows=8, streams=2, seconds=0.1) > 0
    assert torch.get_num_threads() == threads


def test_spread_sample():
    assert spread_sample(10, 3) == [0, 4, 9]
    assert spread_sample(5, 10) == [0, 1, 2, 3, 4]
    assert spread_sample(5, 0) == []
    assert spread_sample(128, 16)[0] == 0 and spread_sample(128, 16)[-1] == 127 and len(spread_sample(128, 16)) == 16


def test_gpu_bounds_for_an_h100():
    # Llama-3.2-1B: 1.236e9 parameters, bf16 -> 2.47e9 bytes read per decode step at batch 1.
    bounds = gpu_bounds("NVIDIA H100 80GB HBM3", 1_235_814_400, 2 * 1_235_814_400)
    assert bounds["gpu"] == "H100"
    assert bounds["batch1_bound_tok_s"] == pytest.approx(3.35e12 / 2.4716e9, rel=1e-3)  # ~1355 tok/s
    assert bounds["compute_bound_tok_s"] == pytest.approx(989e12 / 2.4716e9, rel=1e-3)  # ~400k tok/s
    assert gpu_bounds("NVIDIA H100 PCIe", 1, 1)["gpu"] == "H100 PCIe"
    assert gpu_bounds("NVIDIA H200", 1, 1)["gpu"] == "H200"
    assert gpu_bounds("Some Unknown GPU", 1, 1) is None


def test_random_llama_has_the_shape_asked_for():
    shape = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, tie_word_embeddings=True)
    model = random_llama(shape, torch.bfloat16, "cpu")
    assert model.dtype == torch.bfloat16 and model.config.num_key_value_heads == 2
    assert next(model.parameters()).device.type == "cpu"


def test_no_prompts_is_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ComplianceError, match="--prompts"):
        run_bench(model, tokenizer, "tiny", [], new_tokens=2)
    with pytest.raises(ComplianceError, match="--new-tokens"):
        run_bench(model, tokenizer, "tiny", items(2), new_tokens=0)


@pytest.mark.parametrize("args, message", [
    (["--prompts", "0"], "--prompts 0 must be at least 1"),
    (["--prompts", "100000"], "is more than suite 'starter' has"),
    (["--naive-prompts", "-1"], "--naive-prompts -1"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--random-weights", "gpt-9"], "--random-weights 'gpt-9' is not a known shape"),
    (["--floor-seconds", "-1"], "--floor-seconds -1 must be 0"),
    (["--generate-batches", "32,lots"], "--generate-batches '32,lots' is not a comma-separated list"),
    (["--generate-batches", "0"], "every batch size must be at least 1"),
    (["--peer", "vllm"], "--peer 'vllm' is not a known peer: choose llama-cpp"),
    (["--llama-slots", "0"], "--llama-slots 0 must be at least 1"),
    (["--llama-threads", "0"], "--llama-threads 0 must be at least 1"),
    (["--peer", "llama-cpp", "--random-weights", "llama-3.2-1b"], "drop --random-weights or the peer"),
])
def test_bad_bench_options_give_one_line(args, message, monkeypatch, capsys):
    code, out, err = run_cli(["bench", *args], monkeypatch, capsys)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bench_cli_prints_a_table_then_one_json_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    code, out, _ = run_cli(["bench", "--model", str(tiny_model_dir), "--prompts", "5", "--new-tokens", "3",
                            "--naive-prompts", "2", "--batch-size", "4", "--floor-seconds", "0.2",
                            "--generate-batches", "2,4", "--json-out", str(tmp_path / "b.json")],
                           monkeypatch, capsys)
    assert code == 0, out
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert SUMMARY_KEYS <= set(summary)
    assert summary["n_prompts"] == 5 and summary["new_tokens"] == 3 and summary["identical_outputs"] is True
    assert set(summary["peers"]) == {"naive", "generate"} and summary["identical_to_generate"] is True
    assert "naive pipeline" in out and "engine" in out and "transformers generate" in out
    assert "Engine / best peer" in out and "engine vs generate at batch 4, on all 5 prompts: identical" in out
    assert "Matrix products:" in out and summary["cpu_floor"]["ceiling_gflop_s"] > 0
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["summary"] == summary


def test_llama_cpp_peer_needs_a_gguf_file(tiny_model_dir, monkeypatch, capsys):
    code, _, err = run_cli(["bench", "--model", str(tiny_model_dir), "--prompts", "2", "--peer", "llama-cpp"],
                           monkeypatch, capsys)
    assert code != 0 and "needs the model as a GGUF file" in err and len(err.strip().splitlines()) == 1


def test_llama_cpp_peer_without_a_server_is_one_line_before_any_measurement(tmp_path, monkeypatch, capsys):
    """A folder holding a GGUF file names one; a missing server is reported before the model even loads."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.gguf").write_bytes(b"GGUF")  # never read: the server check comes first
    monkeypatch.setenv("COMPLIANCE_LLAMA_SERVER", str(tmp_path / "no-such-binary"))
    code, _, err = run_cli(["bench", "--model", str(tmp_path / "m"), "--prompts", "2", "--peer", "llama-cpp"],
                           monkeypatch, capsys)
    assert code != 0 and "$COMPLIANCE_LLAMA_SERVER" in err and "make llama-server" in err
    assert len(err.strip().splitlines()) == 1


def test_gpu_check_runs_every_step_on_cpu(tiny_model_dir, tmp_path):
    """The device script's plumbing (tokenizer, prompts, every run, the JSON) on CPU with a tiny Llama
    and the static step in place of CUDA graphs; on a GPU it is run with no --cpu-smoke."""
    from compliance.bench import gpu_check

    out = tmp_path / "gpu.json"
    report = gpu_check.main(["--tokenizer", str(tiny_model_dir), "--cpu-smoke", "--batches", "4,8", "--eager-batch",
                             "8", "--new-tokens", "5", "--generate-prompts", "6", "--json-out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    modes = [(run["mode"], run["batch"]) for run in report["runs"]]
    assert modes == [("naive", 1), ("dynamic", 1), ("static", 1), ("static", 4), ("static", 8), ("dynamic", 8)]
    assert all(run["tokens"] == run["prompts"] * run["new_tokens"] and run["tok_s"] > 0 for run in report["runs"])
    assert report["eager_batch_identical"]["of"] == 8
    assert report["generate"]["tokens"] == 6 * 5


def test_gpu_check_refuses_a_machine_without_cuda(tiny_model_dir):
    from compliance.bench import gpu_check

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu_check.main(["--tokenizer", str(tiny_model_dir)])


@pytest.mark.parametrize("args,message", [
    (["--batches", "64,many"], "not a comma-separated list of batch sizes"),
    (["--batches", "64,0"], "every batch size must be at least 1"),
])
def test_gpu_check_bad_batches_give_one_line(tiny_model_dir, args, message, capsys):
    from compliance.bench import gpu_check

    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--tokenizer", str(tiny_model_dir), "--cpu-smoke", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gpu_check_missing_tokenizer_folder_gives_one_line(tmp_path, capsys):
    from compliance.bench import gpu_check

    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--tokenizer", str(tmp_path / "nowhere"), "--cpu-smoke"])
    assert exit_info.value.code == 2
    assert "no such folder" in capsys.readouterr().err
