"""The OpenAI-compatible server backend against a real local server running the tiny models.

The server (``openai_server.py``) decodes with transformers on its own, one request at a time,
so "the same responses as the in-process backend" is checked end to end: encoding, the request,
the server's greedy decoding, and the mapping of the answer back to a :class:`Response`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cli_runner import run_cli
from compliance import api
from compliance.errors import ComplianceError
from compliance.generation import generate as transformers_generate
from compliance.generation.openai_backend import (
    OpenAIClient,
    OpenAIServerError,
    ServedModel,
    ServerUnreachableError,
    UnknownServedModelError,
    build_request,
    generate,
    parse_base_url,
    parse_completion,
    store_version,
)
from compliance.records import GenConfig, SuiteItem
from tiny_models import MIXED_PROMPTS
from compliance.schemas import report_errors
from openai_server import OpenAITestServer

# Very different lengths, so the in-process backend pads heavily while the server never pads.
PROMPTS = MIXED_PROMPTS
RUN = dict(policy="healthcare", limit=8, max_new_tokens=8, progress=False, pdf=False)


def make_items(prompts: list[str]) -> list[SuiteItem]:
    return [SuiteItem(id=f"item-{i}", prompt=p, category="test", domain="general", expected="refuse",
                      benchmark="unit") for i, p in enumerate(prompts)]


def fast_client(url: str, **kwargs) -> OpenAIClient:
    """A client that gives up on a silent server within a minute (the openai client sets the backoff)."""
    return OpenAIClient(url, **{"connect_timeout": 2.0, "timeout": 60.0, **kwargs})


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, refusing_model_dir):
    """Both tiny models, served under short names and, as ``vllm serve PATH`` would, under their paths."""
    models = {"tiny": tiny_model_dir, "refusing": refusing_model_dir,
              str(Path(tiny_model_dir).resolve()): tiny_model_dir,
              str(Path(refusing_model_dir).resolve()): refusing_model_dir}
    with OpenAITestServer(models) as s:
        yield s


@pytest.fixture
def clean_server(server):
    """The shared server with no pending failures, no delay, no key and an empty request log."""
    server.reset()
    yield server
    server.reset()


def in_process(model_dir: Path, items: list[SuiteItem], config: GenConfig):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return transformers_generate(model, AutoTokenizer.from_pretrained(model_dir), items, config)


# --- the same responses as in process ----------------------------------------------------


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_responses_equal_the_transformers_backend(clean_server, tiny_model_dir, refusing_model_dir,
                                                  use_chat_template):
    items = make_items(PROMPTS)
    config = GenConfig(max_new_tokens=12, batch_size=3, use_chat_template=use_chat_template)
    client = fast_client(clean_server.url, concurrency=3)
    reasons = set()
    for name, folder in (("tiny", tiny_model_dir), ("refusing", refusing_model_dir)):
        expected = in_process(folder, items, config)
        got = generate(client, name, items, config)
        assert got == expected, name  # text, token count and finish reason, item by item
        reasons |= {r.finish_reason for r in got}
    if use_chat_template:
        assert reasons == {"eos", "length"}  # the refusing model stops itself, the random one runs out
        assert len({r.text for r in in_process(tiny_model_dir, items, config)}) == len(items)
    paths = {r.path for r in clean_server.generation_requests()}
    assert paths == {"/chat/completions" if use_chat_template else "/completions"}


def test_request_pins_greedy_decoding():
    path, body = build_request("m", "Hello?", GenConfig(max_new_tokens=5, seed=7))
    assert path == "/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert (body["max_tokens"], body["temperature"], body["seed"], body["n"]) == (5, 0, 7, 1)
    assert body["repetition_penalty"] == 1 and body["top_p"] == 1 and "stop" not in body
    path, body = build_request("m", "Hello?", GenConfig(use_chat_template=False))
    assert path == "/completions" and body["prompt"] == "Hello?"


def test_stop_strings_are_sent_and_honoured(clean_server, refusing_model_dir):
    """A config with stop strings (``GenConfig.stop`` when the config has the field) cuts the answer."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class StopConfig(GenConfig):
        stop: tuple = ("help",)

    config = StopConfig(max_new_tokens=32)
    _, body = build_request("refusing", "hi", config)
    assert body["stop"] == ["help"]
    (response,) = generate(fast_client(clean_server.url), "refusing", make_items(["Anything?"]), config)
    assert response.text == "I cannot" and response.finish_reason == "eos"


def test_min_new_tokens_are_sent_and_honoured(clean_server):
    """A fixed length (``make bench``'s min == max) reaches the server as ``ignore_eos``, which
    vLLM and llama.cpp both read: the refusing model, which stops after a few tokens, runs on."""
    _, body = build_request("m", "hi", GenConfig(max_new_tokens=9, min_new_tokens=4))
    assert body["min_tokens"] == 4 and "ignore_eos" not in body
    assert "min_tokens" not in build_request("m", "hi", GenConfig())[1]
    client = fast_client(clean_server.url)
    (free,) = generate(client, "refusing", make_items(["Anything?"]), GenConfig(max_new_tokens=20))
    assert free.finish_reason == "eos" and free.n_new_tokens < 20
    fixed = GenConfig(max_new_tokens=20, min_new_tokens=20)
    assert build_request("m", "hi", fixed)[1]["ignore_eos"] is True
    (response,) = generate(client, "refusing", make_items(["Anything?"]), fixed)
    assert response.n_new_tokens == 20 and response.finish_reason == "length"
    assert clean_server.generation_requests()[-1].body["ignore_eos"] is True


def test_finish_reasons_and_usage_are_mapped():
    def answer(reason, tokens=3, content="  Hi there \n"):
        return {"choices": [{"message": {"content": content}, "finish_reason": reason}],
                "usage": {"completion_tokens": tokens}}

    assert parse_completion(answer("stop"), "a").finish_reason == "eos"
    assert parse_completion(answer("length"), "a").finish_reason == "length"
    assert parse_completion(answer("stop"), "a").text == "Hi there"
    assert parse_completion(answer("stop", content=None), "a").text == ""
    with pytest.raises(OpenAIServerError, match="finish_reason 'tool_calls'"):
        parse_completion(answer("tool_calls"), "a")
    with pytest.raises(OpenAIServerError, match="usage.completion_tokens"):
        parse_completion({"choices": answer("stop")["choices"]}, "a")
    with pytest.raises(OpenAIServerError, match="no choices"):
        parse_completion({"choices": []}, "a")


# --- retries and errors ----------------------------------------------------------------------


def test_retries_after_429_503_and_a_dropped_connection(clean_server):
    items = make_items(PROMPTS[:3])
    config = GenConfig(max_new_tokens=6)
    clean = generate(fast_client(clean_server.url), "tiny", items, config)
    clean_server.reset_log()

    clean_server.fail_next(429, 503, "reset")
    client = fast_client(clean_server.url, concurrency=1)
    assert generate(client, "tiny", items, config) == clean
    statuses = [r.status for r in clean_server.generation_requests()]
    assert statuses == [429, 503, 0, 200, 200, 200]  # 0: closed without an answer
    assert client.retries == 3 and client.attempts == 6


def test_retry_after_is_honoured(clean_server):
    clean_server.fail_next(429, retry_after="1")
    client = fast_client(clean_server.url)
    start = time.monotonic()
    client.complete("tiny", make_items(["hi"])[0], GenConfig(max_new_tokens=2))
    assert time.monotonic() - start >= 0.95  # the server's 1 s, not the client's 0.5 s backoff
    assert client.retries == 1


def test_retries_run_out_with_one_clear_line(clean_server):
    clean_server.fail_next(*[503] * 3)
    client = fast_client(clean_server.url, max_retries=2)
    with pytest.raises(OpenAIServerError) as err:
        generate(client, "tiny", make_items(["hi"]), GenConfig(max_new_tokens=2))
    line = one_line(str(err.value))
    assert clean_server.url in line and "after 3 attempts" in line and "HTTP 503" in line
    assert len(clean_server.generation_requests()) == 3


def test_a_failed_request_stops_the_run_and_keeps_what_arrived(clean_server):
    clean_server.fail_next(400)  # not retryable: the first request fails for good
    with pytest.raises(OpenAIServerError, match="400 Bad Request"):
        generate(fast_client(clean_server.url, concurrency=1), "tiny", make_items(PROMPTS), GenConfig(max_new_tokens=2))
    # Requests not yet sent are cancelled instead of being made after the failure.
    assert len(clean_server.generation_requests()) < len(PROMPTS)


def test_unreachable_server_fails_fast_with_one_line():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    client = fast_client(url, connect_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ServerUnreachableError) as err:
        client.served_model("tiny")
    assert time.monotonic() - start < 5
    line = one_line(str(err.value))
    assert url in line and "connection refused" in line and "--base-url" in line


def test_unknown_served_model_names_what_is_served(clean_server):
    with pytest.raises(UnknownServedModelError) as err:
        fast_client(clean_server.url).served_model("no-such-model", "--base-model")
    line = one_line(str(err.value))
    assert "'no-such-model'" in line and "'tiny'" in line and "--base-model" in line


def test_api_key_is_sent_and_its_absence_explained(clean_server):
    clean_server.api_key = "sekrit"
    with pytest.raises(OpenAIServerError) as err:
        fast_client(clean_server.url).list_models()
    assert "401" in str(err.value) and "$OPENAI_API_KEY" in one_line(str(err.value))
    assert "tiny" in fast_client(clean_server.url, api_key="sekrit").list_models()


def test_no_key_sends_none_even_with_openai_api_key_set(clean_server, monkeypatch):
    """The openai client would read $OPENAI_API_KEY by itself; ours sends only the key it is given."""
    clean_server.api_key = "sekrit"
    monkeypatch.setenv("OPENAI_API_KEY", "sekrit")
    with pytest.raises(OpenAIServerError, match="401"):
        fast_client(clean_server.url, api_key_env="COMPLIANCE_TEST_KEY").list_models()


def test_a_timeout_is_one_line(clean_server):
    clean_server.delay = 2.0
    client = fast_client(clean_server.url, timeout=0.3, max_retries=1)
    with pytest.raises(OpenAIServerError) as err:
        client.complete("tiny", make_items(["hi"])[0], GenConfig(max_new_tokens=2))
    line = one_line(str(err.value))
    assert "after 2 attempts" in line and "timed out" in line and clean_server.url in line
    assert client.attempts == 2 and client.retries == 1
    clean_server.wait_idle()  # the server still answers the requests the client gave up on


class _NotAnAPI(BaseHTTPRequestHandler):
    """Answers every request with 200 and a body that is no OpenAI answer (HTML, or JSON of another shape)."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        html = "/html/" in self.path
        data = b"<html>a web page</html>" if html else b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


@pytest.mark.parametrize("kind", ["html", "json"])
def test_a_server_that_is_not_openai_compatible_is_one_line(kind):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotAnAPI)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = fast_client(f"http://127.0.0.1:{httpd.server_address[1]}/{kind}/v1")
        with pytest.raises(OpenAIServerError) as err:
            client.list_models()
        assert "OpenAI-compatible" in one_line(str(err.value)) and "/models" in str(err.value)
        with pytest.raises(OpenAIServerError) as err:
            client.complete("m", make_items(["hi"])[0], GenConfig(max_new_tokens=2))
        assert "OpenAI-compatible" in one_line(str(err.value))
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://localhost:8000", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
    ("https://example.org/openai/v1", "https://example.org/openai/v1"),
])
def test_base_url_is_normalised(url, expected):
    assert parse_base_url(url) == expected


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host/v1", "http://", "http://host:99999/v1",
                                 "http://user:pw@host/v1", "http://host/v1?key=1"])
def test_malformed_base_url_is_refused(url):
    with pytest.raises(OpenAIServerError) as err:
        parse_base_url(url)
    assert "--base-url" in one_line(str(err.value))
    assert "pw@" not in str(err.value)  # credentials are not echoed


# --- concurrency ------------------------------------------------------------------------------


def test_requests_overlap_and_come_back_in_item_order(clean_server):
    clean_server.delay = 0.2  # each request waits before decoding, so overlapping ones are seen
    items = make_items([f"Question {i}?" for i in range(8)])
    seen, threads, progress = [], set(), []

    def on_response(response):
        seen.append(response.item_id)
        threads.add(threading.get_ident())

    start = time.monotonic()
    responses = generate(fast_client(clean_server.url, concurrency=4), "tiny", items, GenConfig(max_new_tokens=2),
                         on_response=on_response, progress=progress.append)
    elapsed = time.monotonic() - start
    assert [r.item_id for r in responses] == [i.id for i in items]
    assert sorted(seen) == sorted(i.id for i in items) and progress == list(range(1, 9))
    assert threads == {threading.get_ident()}  # callbacks run on the caller's thread (the store's)
    assert clean_server.max_in_flight > 1
    assert elapsed < 8 * 0.2  # one at a time would take at least 1.6 s


# --- the store key ----------------------------------------------------------------------------


def test_store_version_ignores_volatile_fields_and_the_url():
    a = ServedModel("m", {"id": "m", "created": 1, "owned_by": "vllm", "root": "/w/m", "permission": [{"id": "x"}]})
    b = ServedModel("m", {"id": "m", "created": 2, "owned_by": "vllm", "root": "/w/m", "permission": [{"id": "y"}]})
    c = ServedModel("m", {"id": "m", "created": 2, "owned_by": "vllm", "root": "/w/other"})
    assert store_version(a) == store_version(b) != store_version(c)


# --- reports ----------------------------------------------------------------------------------


def test_report_through_the_server_validates_and_matches_in_process(clean_server, refusing_model_dir,
                                                                    tiny_model_dir, tmp_path, monkeypatch):
    store = tmp_path / "store.sqlite3"
    result = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "served", store=store, backend="openai",
                            base_url=clean_server.url, concurrency=4, **RUN)
    report = json.loads(result.json_path.read_text())
    assert report_errors(report) == []
    gen = report["generation"]
    assert (gen["backend"], gen["device"]) == ("openai", "remote")
    assert gen["server"]["base_url"] == clean_server.url and gen["server"]["concurrency"] == 4
    assert gen["server"]["models"]["model"]["name"] == str(Path(refusing_model_dir).resolve())
    assert gen["server"]["models"]["base"]["name"] == str(Path(tiny_model_dir).resolve())
    assert "created" not in gen["server"]["models"]["base"]["entry"]
    assert gen["reused"] == {"base": 0, "model": 0} and gen["generated"] == {"base": 8, "model": 8}
    assert report["models"]["model"]["weights"] and report["lineage"]["links"][0]["relation"] == "finetune"
    assert len(clean_server.generation_requests()) == 16

    local = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "local", store=store, **RUN)
    assert local.report["items"] == report["items"]  # same responses, labels and token counts
    assert local.report["generation"]["reused"] == {"base": 0, "model": 0}  # other backend, other rows

    # Second run: every response comes from the store, even through another address of the same
    # server (the base URL is not part of the key) and with an API key now required.
    clean_server.reset_log()
    clean_server.api_key = "sekrit"
    monkeypatch.setenv("COMPLIANCE_TEST_KEY", "sekrit")
    again = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "again", store=store, backend="openai",
                           base_url=clean_server.url.replace("127.0.0.1", "localhost"), served_model="refusing",
                           api_key_env="COMPLIANCE_TEST_KEY", **RUN)
    assert again.report["generation"]["reused"] == {"base": 8, "model": 0}  # another served name: regenerated
    assert again.report["items"] == report["items"]
    assert [r.path for r in clean_server.requests].count("/chat/completions") == 8
    assert "sekrit" not in again.json_path.read_text()


def test_base_served_by_another_server(clean_server, refusing_model_dir, tiny_model_dir, tmp_path):
    # The fine-tune on the shared server, the base on a server of its own (two `vllm serve` processes).
    with OpenAITestServer({"tinybase": tiny_model_dir}) as base_server:
        result = api.run_report(str(refusing_model_dir), out_dir=tmp_path / "two", store=False, backend="openai",
                                base_url=clean_server.url, served_model="refusing", served_base_model="tinybase",
                                base_model_url=base_server.url, **{**RUN, "pdf": True})
        base_requests, base_url = base_server.generation_requests(), base_server.url
    assert {r.body["model"] for r in base_requests} == {"tinybase"} and len(base_requests) == RUN["limit"]
    assert {r.body["model"] for r in clean_server.generation_requests()} == {"refusing"}
    server = result.report["generation"]["server"]
    assert server["base_url"] == clean_server.url
    assert {role: m["base_url"] for role, m in server["models"].items()} == \
        {"model": clean_server.url, "base": base_url}
    assert report_errors(result.report) == []
    from pypdf import PdfReader

    text = " ".join(" ".join(page.extract_text() for page in PdfReader(result.pdf_path).pages).split())
    assert f"Server (fine-tune) {clean_server.url} · refusing" in text
    assert f"Server (base) {base_url} · tinybase" in text


def test_unreachable_base_server_names_its_option(clean_server, refusing_model_dir, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(ServerUnreachableError, match="--base-model-url"):
        api.run_report(str(refusing_model_dir), out_dir=tmp_path / "r", backend="openai", base_url=clean_server.url,
                       base_model_url=url, **RUN)
    assert not clean_server.generation_requests()
    assert not (tmp_path / "r").exists()


def test_report_names_the_unknown_served_base(clean_server, refusing_model_dir, tmp_path):
    with pytest.raises(UnknownServedModelError, match="--base-model"):
        api.run_report(str(refusing_model_dir), out_dir=tmp_path / "r", backend="openai", base_url=clean_server.url,
                       served_base_model="nope", **RUN)
    assert not clean_server.generation_requests()  # checked before any generation


# --- the CLI: bad input is one line --------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["--backend", "tensorrt"], ["'tensorrt'", "transformers, openai, vllm", "--backend"]),
    (["--backend", "openai"], ["--base-url", "http://localhost:8000/v1"]),
    (["--backend", "openai", "--base-url", "localhost:8000"], ["'localhost:8000'", "http://localhost:8000/v1"]),
    (["--backend", "openai", "--base-url", "ftp://host/v1"], ["'ftp://host/v1'", "http(s)"]),
    (["--base-url", "http://localhost:8000/v1"], ["--base-url", "--backend openai"]),
    (["--model", "served-name"], ["--model", "--backend openai"]),
    (["--base-model-url", "http://localhost:8001/v1"], ["--base-model-url", "--backend openai"]),
    (["--backend", "openai", "--base-url", "http://localhost:8000/v1", "--base-model-url", "localhost:8001"],
     ["--base-model-url 'localhost:8001'", "http://localhost:8000/v1"]),
    (["--backend", "openai", "--base-url", "http://localhost:8000/v1", "--concurrency", "0"], ["--concurrency 0"]),
])
def test_cli_bad_backend_input(args, expected, refusing_model_dir, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["report", str(refusing_model_dir), "-q", "--no-pdf", "--out", str(tmp_path / "r"), *args],
                           monkeypatch, capsys)
    assert code != 0
    line = one_line(err)
    for text in expected:
        assert text in line, (text, line)
    assert not (tmp_path / "r").exists()


def test_cli_unreachable_server(refusing_model_dir, tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = run_cli(["report", str(refusing_model_dir), "-q", "--no-pdf", "--backend", "openai",
                            "--base-url", url, "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code != 0
    line = one_line(err)
    assert url in line and "--base-url" in line


def test_cli_report_through_the_server(clean_server, refusing_model_dir, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["report", str(refusing_model_dir), "-q", "--no-pdf", "--limit", "4",
                              "--max-new-tokens", "4", "--backend", "openai", "--base-url", clean_server.url,
                              "--model", "refusing", "--base-model", "tiny", "--out", str(tmp_path / "r")],
                             monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {role: m["name"] for role, m in report["generation"]["server"]["models"].items()} == \
        {"model": "refusing", "base": "tiny"}
    assert {r.body["model"] for r in clean_server.generation_requests()} == {"refusing", "tiny"}


def test_sampling_is_refused_before_any_request(clean_server):
    with pytest.raises(ComplianceError, match="do_sample"):
        generate(fast_client(clean_server.url), "tiny", make_items(["hi"]), GenConfig(do_sample=True))
    assert not clean_server.generation_requests()
