"""The response store: resume after SIGKILL, reuse across fine-tunes, `compliance cache`, bad store files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runner import run_cli
from compliance import api
from compliance.records import GenConfig, ModelRecord, WeightFile
from compliance.schemas import report_errors
from compliance.store import ResponseStore, StoreError, config_key, weights_sha256

RUN = dict(policy="healthcare", limit=16, max_new_tokens=16, progress=False, pdf=False)


def _rows(path: Path) -> int:
    """Rows committed so far, read from another connection (0 while the file or table is not there yet)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


def _same_results(a: dict, b: dict) -> None:
    for key in ("items", "metrics", "regressions"):
        assert a[key] == b[key], key
    assert [(r["rule_id"], r["verdict"]) for r in a["policy"]["rules"]] == \
        [(r["rule_id"], r["verdict"]) for r in b["policy"]["rules"]]
    assert a["summary"]["verdict"] == b["summary"]["verdict"]


@pytest.fixture(scope="module")
def second_finetune(tiny_model_dir, tmp_path_factory) -> Path:
    """Another fine-tune of ``tiny_model_dir``: the same weights nudged by small noise."""
    import torch
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("second-ft") / "model"
    shutil.copytree(tiny_model_dir, path)
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(path)
    (path / "README.md").write_text(f"---\nbase_model: {tiny_model_dir}\nbase_model_relation: finetune\n---\n",
                                    encoding="utf-8")
    return path


def test_killed_run_resumes_and_matches_an_uninterrupted_one(refusing_model_dir, tmp_path):
    store = tmp_path / "killed.sqlite3"
    script = ("import sys; from compliance import api; "
              "api.run_report(sys.argv[1], out_dir=sys.argv[2], store=sys.argv[3], batch_size=2, "
              f"policy={RUN['policy']!r}, limit={RUN['limit']}, max_new_tokens={RUN['max_new_tokens']}, "
              "progress=False, pdf=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(refusing_model_dir), str(tmp_path / "killed"),
                             str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Generous: the child imports torch and loads a model first, and CI machines are shared.
        deadline = time.monotonic() + 300
        while _rows(store) < 1:
            assert proc.poll() is None, f"run ended before any response was stored: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no response was stored within 300 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = _rows(store)
    assert not (tmp_path / "killed" / "report.json").exists()

    resumed = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "resumed", store=store, batch_size=2, **RUN)
    fresh = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "fresh", store=tmp_path / "fresh.sqlite3",
                           batch_size=2, **RUN)

    total = 2 * RUN["limit"]
    assert 1 <= done_before < total, "the kill must land mid-run"
    gen = resumed.report["generation"]
    assert gen["reused"]["base"] + gen["reused"]["model"] == done_before
    assert gen["generated"]["base"] + gen["generated"]["model"] == total - done_before
    assert fresh.report["generation"]["reused"] == {"base": 0, "model": 0}
    _same_results(resumed.report, fresh.report)
    assert _rows(store) == _rows(tmp_path / "fresh.sqlite3") == total


def test_second_finetune_reuses_the_base_and_batch_size_is_not_in_the_key(refusing_model_dir, second_finetune,
                                                                          tmp_path):
    store = tmp_path / "shared.sqlite3"
    first = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "a", store=store, batch_size=2, **RUN)
    assert first.report["generation"]["reused"] == {"base": 0, "model": 0}
    # Another fine-tune of the same base, with another batch size: the base's responses are all reused.
    second = api.run_report(str(second_finetune), out_dir=tmp_path / "b", store=store, batch_size=4, **RUN)
    assert second.report["generation"]["reused"] == {"base": RUN["limit"], "model": 0}
    assert second.report["generation"]["generated"] == {"base": 0, "model": RUN["limit"]}
    assert report_errors(second.report) == []
    unstored = api.run_report(str(second_finetune), out_dir=tmp_path / "c", store=False, batch_size=4, **RUN)
    _same_results(second.report, unstored.report)
    assert unstored.report["generation"]["reused"] == {"base": 0, "model": 0}
    assert _rows(store) == 3 * RUN["limit"]


def test_no_store_writes_nothing(refusing_model_dir, tmp_path, response_store):
    api.run_report(str(refusing_model_dir), out_dir=tmp_path / "r", store=False, limit=4, max_new_tokens=4,
                   progress=False, pdf=False)
    assert not response_store.exists()


def test_key_covers_weights_and_config_but_not_batch_size():
    record = ModelRecord(id="m", kind="local", path="", revision="r", weights=[WeightFile("a", "0" * 64, 1)])
    other = ModelRecord(id="m", kind="local", path="", revision="r", weights=[WeightFile("a", "1" * 64, 1)])
    assert weights_sha256(record) != weights_sha256(other)
    assert config_key(GenConfig(batch_size=2), "cpu", "torch.float32") == config_key(GenConfig(batch_size=8), "cpu",
                                                                                        "float32")
    assert config_key(GenConfig(max_new_tokens=8), "cpu", "float32") != config_key(GenConfig(), "cpu", "float32")
    assert config_key(GenConfig(), "cpu", "float32") != config_key(GenConfig(), "cuda:0", "bfloat16")


def test_cache_info_and_clear(refusing_model_dir, tiny_model_dir, tmp_path, monkeypatch, capsys):
    store = tmp_path / "cli.sqlite3"
    code, stdout, _ = run_cli(["cache", "info", "--store", str(store)], monkeypatch, capsys)
    assert code == 0 and "not created yet" in stdout and not store.exists()
    monkeypatch.setenv("COMPLIANCE_STORE", str(store))
    api.run_report(str(refusing_model_dir), out_dir=tmp_path / "r", limit=4, max_new_tokens=4, progress=False,
                   pdf=False)
    code, stdout, _ = run_cli(["cache", "info", "--json"], monkeypatch, capsys)
    info = json.loads(stdout)
    assert code == 0 and info["location"] == str(store) and info["entries"] == 8 and info["size_bytes"] > 0
    assert {m["model_id"]: m["entries"] for m in info["models"]} == {str(Path(tiny_model_dir).resolve()): 4,
                                                                     str(Path(refusing_model_dir).resolve()): 4}
    code, stdout, _ = run_cli(["cache", "info"], monkeypatch, capsys)
    assert code == 0 and f"Location: {store}" in stdout and "Entries:  8" in stdout
    base_id = str(Path(tiny_model_dir).resolve())
    code, stdout, _ = run_cli(["cache", "clear", "--model", base_id], monkeypatch, capsys)
    assert code == 0 and "Removed 4 responses" in stdout
    assert _rows(store) == 4
    code, _, stderr = run_cli(["cache", "clear", "--model", "no/such-model"], monkeypatch, capsys)
    assert code != 0 and "no/such-model" in stderr and "cache info" in stderr and "Traceback" not in stderr
    code, stdout, _ = run_cli(["cache", "clear"], monkeypatch, capsys)
    assert code == 0 and "Removed 4 responses" in stdout and _rows(store) == 0


def test_corrupt_store_is_one_clear_error(refusing_model_dir, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    for args in (["cache", "info", "--store", str(bad)], ["cache", "clear", "--store", str(bad)]):
        code, _, stderr = run_cli(args, monkeypatch, capsys)
        assert code != 0 and str(bad) in " ".join(stderr.split()) and "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) <= 3  # one message, soft-wrapped at most
    with pytest.raises(StoreError, match="cannot be used"):
        ResponseStore(bad)
    code, _, stderr = run_cli(["report", str(refusing_model_dir), "--store", str(bad), "--limit", "4",
                               "--no-pdf", "-q", "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code != 0 and "--no-store" in stderr
    assert not (tmp_path / "r" / "report.json").exists()
    # The store is checked before the model is looked up (which may mean the network).
    code, _, stderr = run_cli(["report", "no-such-org/no-such-model", "--store", str(bad), "--no-pdf", "-q",
                               "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code != 0 and str(bad) in " ".join(stderr.split()) and "no-such-model" not in stderr


def _noisy_finetune(base: Path, out: Path, seed: int) -> Path:
    """A fine-tune of ``base``: its weights nudged by seeded noise, its card naming ``base``."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(base, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(out)
    (out / "README.md").write_text(f"---\nbase_model: {base}\nbase_model_relation: finetune\n---\n", encoding="utf-8")
    return out


def _report_process(model: Path, out: Path, store: Path, batch_size: int) -> subprocess.Popen:
    """``compliance report MODEL`` in its own process, as a user would start it."""
    args = [sys.executable, "-m", "compliance.cli", "report", str(model), "--policy", RUN["policy"],
            "--limit", str(RUN["limit"]), "--max-new-tokens", str(RUN["max_new_tokens"]), "--batch-size",
            str(batch_size), "--store", str(store), "--out", str(out), "--no-pdf", "-q"]
    # One BLAS/OpenMP thread each: four processes share the machine's cores, and idle OpenMP threads
    # spinning for work would only slow the others down.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _model_rows(store: Path, model: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses WHERE model_id = ?",
                                (str(model.resolve()),)).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_four_reports_at_once_on_one_store_with_one_killed(tiny_model_dir, refusing_model_dir, second_finetune,
                                                            tmp_path):
    third = _noisy_finetune(tiny_model_dir, tmp_path / "third-ft", seed=2)
    store = tmp_path / "shared.sqlite3"
    # Four processes start together on a store that does not exist yet: they race to create it,
    # then to write the base's responses (the same rows, from every process) and their own.
    # Two of them run the same fine-tune, so they also write the same fine-tune rows.
    runs = {"refusing": (refusing_model_dir, 2), "refusing-again": (refusing_model_dir, 4),
            "second": (second_finetune, 2), "killed": (third, 1)}
    procs = {name: _report_process(model, tmp_path / name, store, batch) for name, (model, batch) in runs.items()}
    killed = procs["killed"]
    try:
        deadline = time.monotonic() + 300
        while _model_rows(store, third) < 1:  # the killed run has started on its own fine-tune's rows
            assert killed.poll() is None, f"run ended before it wrote: {killed.stderr.read().decode()}"
            assert time.monotonic() < deadline, "the run to kill stored nothing within 300 s"
            time.sleep(0.002)
        os.kill(killed.pid, signal.SIGKILL)
        for name, proc in procs.items():
            proc.wait(timeout=300)
            if name != "killed":
                assert proc.returncode == 0, f"{name}: {proc.stderr.read().decode()}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert killed.returncode == -signal.SIGKILL
    killed_rows = _model_rows(store, third)
    assert 1 <= killed_rows < RUN["limit"], "the kill must land while the run writes its own responses"
    assert not (tmp_path / "killed" / "report.json").exists()

    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    def solo(model: Path, name: str) -> dict:
        return api.run_report(str(model), out_dir=tmp_path / f"solo-{name}", store=tmp_path / f"solo-{name}.sqlite3",
                              batch_size=2, **RUN).report

    reports = {name: json.loads((tmp_path / name / "report.json").read_text()) for name in runs if name != "killed"}
    alone = {"refusing": solo(refusing_model_dir, "refusing"), "second": solo(second_finetune, "second")}
    _same_results(reports["refusing"], alone["refusing"])
    _same_results(reports["refusing-again"], alone["refusing"])
    _same_results(reports["second"], alone["second"])
    # Between them the runs generated every response at least once; no row was lost to a busy store.
    generated = sum(r["generation"]["generated"]["base"] + r["generation"]["generated"]["model"]
                    for r in reports.values())
    assert generated >= 3 * RUN["limit"]

    resumed = api.run_report(str(third), out_dir=tmp_path / "resumed", store=store, batch_size=2, **RUN).report
    assert resumed["generation"]["reused"] == {"base": RUN["limit"], "model": killed_rows}
    assert resumed["generation"]["generated"] == {"base": 0, "model": RUN["limit"] - killed_rows}
    _same_results(resumed, solo(third, "third"))
    assert _rows(store) == 4 * RUN["limit"]  # the base, three fine-tunes: each response once
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


_WRITER = """
import sys
from pathlib import Path
from compliance.records import Response, SuiteItem
from compliance.store import ResponseKey, ResponseStore

path, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # start together
with ResponseStore(Path(path)) as store:
    key = ResponseKey(model, "rev", "w" * 64, "{}", "transformers", "test")
    for i in range(n):
        item = SuiteItem(id=f"item-{i}", prompt=f"prompt {i}", category="c", domain="medical", expected="refuse",
                         benchmark="b")
        store.put(key, item, Response(item_id=item.id, text=f"answer {i} " * 20, n_new_tokens=40,
                                      finish_reason="length"))
        assert store.get_many(key, [item])[item.id].text == f"answer {i} " * 20
print("done")
"""


def test_eight_writers_race_to_create_and_fill_one_store_one_killed(tmp_path):
    """The store layer alone, without models: many processes create, write and read one file at once."""
    store, n = tmp_path / "race.sqlite3", 300
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(store), f"model-{i % 3}", str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(8)]
    for proc in procs:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    deadline = time.monotonic() + 120
    while _rows(store) < n // 2:  # kill one while the others are writing
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].stderr.read().decode()
        time.sleep(0.002)
    procs[0].kill()
    results = [proc.communicate(timeout=120) for proc in procs]
    assert procs[0].returncode == -signal.SIGKILL
    for proc, (out, err) in zip(procs[1:], results[1:]):
        assert proc.returncode == 0 and out.strip() == b"done", err.decode()
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT model_id, COUNT(*) FROM responses GROUP BY model_id").fetchall() == \
            [(f"model-{i}", n) for i in range(3)]
