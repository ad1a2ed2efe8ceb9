"""A small OpenAI-compatible server for tests: real transformers models behind ``/v1``.

Standard library only (``http.server``), like ``hub_server.py``. It serves ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` with greedy decoding, honouring
``max_tokens``, ``stop`` and vLLM's ``min_tokens`` and ``ignore_eos``, and answers the way vLLM does: ``finish_reason`` ``stop`` or
``length``, ``usage.completion_tokens`` counting the end-of-sequence token, and a ``created``
stamp in ``/v1/models`` that changes on every call.

For the client's failure handling it can be told to fail the next requests
(:meth:`OpenAITestServer.fail_next`: an HTTP status, optionally with ``Retry-After``, or a
dropped connection), to hold each request a while so concurrent requests overlap (``delay``),
and to require an API key. It records every request and the most requests in flight at once.

Example:
    >>> with OpenAITestServer({"tiny": tiny_model_dir}) as server:
    ...     client = OpenAIClient(server.url)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Union

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

#: A failure to inject: an HTTP status, or ``"reset"`` to close the connection without an answer.
Failure = Union[int, str]


@dataclass
class _Model:
    model: object
    tokenizer: object
    eos_ids: list[int]
    path: Path


@dataclass
class RequestLog:
    """One request the server received: method, path (without ``/v1``), status answered, body."""

    method: str
    path: str
    status: int
    body: Optional[dict] = None


@dataclass
class _State:
    failures: list[tuple[Failure, Optional[str]]] = field(default_factory=list)
    requests: list[RequestLog] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    models_calls: int = 0


class OpenAITestServer:
    """Serve local model folders under the given names on ``127.0.0.1`` (a free port).

    Args:
        models: served name -> model folder (loaded with transformers, fp32, CPU).
        delay: seconds each generation request waits before generating (outside the model
            lock), so concurrent requests overlap.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get 401.
    """

    def __init__(self, models: dict[str, Path | str], delay: float = 0.0, api_key: Optional[str] = None) -> None:
        self.delay = delay
        self.api_key = api_key
        self._models = {name: _load(Path(path)) for name, path in models.items()}
        self._state = _State()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one generation at a time: the CPU is small
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> "OpenAITestServer":
        """Start serving in a daemon thread."""
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAITestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use: ``http://127.0.0.1:PORT/v1``."""
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # --- test controls ----------------------------------------------------------------------

    def fail_next(self, *failures: Failure, retry_after: Optional[str] = None) -> None:
        """Fail the next generation requests, one failure each, in order.

        Args:
            failures: HTTP statuses (429, 503...) or ``"reset"`` (close the connection unanswered).
            retry_after: a ``Retry-After`` header value sent with each failing status.
        """
        with self._lock:
            self._state.failures.extend((f, retry_after) for f in failures)

    def reset_log(self) -> None:
        """Forget the requests received so far and the in-flight maximum."""
        with self._lock:
            self._state.requests.clear()
            self._state.max_in_flight = 0

    def reset(self) -> None:
        """Back to a plain server: no pending failures, no delay, no API key, an empty log."""
        with self._lock:
            self._state.failures.clear()
        self.delay = 0.0
        self.api_key = None
        self.reset_log()

    @property
    def requests(self) -> list[RequestLog]:
        """Every request received so far, in arrival order of their answers."""
        with self._lock:
            return list(self._state.requests)

    def generation_requests(self) -> list[RequestLog]:
        """The ``/chat/completions`` and ``/completions`` requests received so far."""
        return [r for r in self.requests if r.path in ("/chat/completions", "/completions")]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no generation request is being handled (one a client gave up on still runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._state.in_flight:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"requests still in flight after {timeout} s")

    @property
    def max_in_flight(self) -> int:
        """The most generation requests being handled at the same moment."""
        with self._lock:
            return self._state.max_in_flight

    # --- the work ---------------------------------------------------------------------------

    def _next_failure(self) -> Optional[tuple[Failure, Optional[str]]]:
        with self._lock:
            return self._state.failures.pop(0) if self._state.failures else None

    def _log(self, entry: RequestLog) -> None:
        with self._lock:
            self._state.requests.append(entry)

    def _enter(self) -> None:
        with self._lock:
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._state.in_flight -= 1

    def _model_list(self) -> dict:
        with self._lock:
            self._state.models_calls += 1
            created = 1_700_000_000 + self._state.models_calls  # a new stamp on every call, as vLLM's
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "compliance-tests", "root": str(m.path)}
            for name, m in self._models.items()]}

    def _complete(self, body: dict, chat: bool) -> tuple[int, dict]:
        served = self._models.get(body.get("model"))
        if served is None:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "type": "NotFoundError", "code": 404}}
        if body.get("temperature", 1) != 0:
            return 400, {"error": {"message": "this test server decodes greedily only: send temperature 0"}}
        max_tokens = int(body.get("max_tokens") or 16)
        # vLLM's extensions: no end of sequence before min_tokens, or none at all with ignore_eos.
        min_tokens = max_tokens if body.get("ignore_eos") else int(body.get("min_tokens") or 0)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        tok = served.tokenizer
        if chat:
            text = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(body["prompt"])["input_ids"]
        with self._model_lock, torch.inference_mode():
            output = served.model.generate(
                input_ids=torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=max_tokens, min_new_tokens=min_tokens, do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None,
                eos_token_id=served.eos_ids, pad_token_id=tok.pad_token_id if tok.pad_token_id is not None
                else served.eos_ids[0])
        new = output[0, len(ids):].tolist()
        text, n_tokens, reason = _finish(new, served.eos_ids, stop, tok)
        choice: dict = {"index": 0, "finish_reason": reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return 200, {"id": f"cmpl-{time.monotonic_ns()}", "object": "chat.completion" if chat else "text_completion",
                     "created": int(time.time()), "model": body["model"], "choices": [choice],
                     "usage": {"prompt_tokens": len(ids), "completion_tokens": n_tokens,
                               "total_tokens": len(ids) + n_tokens}}


def _load(path: Path) -> _Model:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = model.config.eos_token_id
    eos = [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]
    return _Model(model, tokenizer, [t for i, t in enumerate(eos) if t is not None and t not in eos[:i]], path)


def _finish(tokens: list[int], eos_ids: list[int], stop: list[str], tokenizer) -> tuple[str, int, str]:
    """Text, tokens counted and finish reason of a greedy continuation, as vLLM reports them.

    Generation ends at the first end-of-sequence token (counted, not shown), at the first stop
    string (the text is cut before it; the tokens up to the one completing it are counted) or
    at the length limit.
    """
    end = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
    kept = tokens if end is None else tokens[:end]
    for n in range(1, len(kept) + 1):
        text = tokenizer.decode(kept[:n], skip_special_tokens=True)
        hits = [text.find(s) for s in stop if s in text]
        if hits:
            return text[: min(hits)], n, "stop"
    text = tokenizer.decode(kept, skip_special_tokens=True)
    if end is not None:
        return text, end + 1, "stop"
    return text, len(tokens), "length"


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAITestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output clean

    def _send(self, status: int, payload: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.owner.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def _path(self) -> str:
        return self.path.split("?", 1)[0].removeprefix("/v1")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self._path()
        if not self._authorized():
            status, payload = 401, {"error": {"message": "Unauthorized: missing or wrong API key"}}
        elif path == "/models":
            status, payload = 200, self.owner._model_list()
        else:
            status, payload = 404, {"error": {"message": f"no route {self.path}"}}
        self.owner._log(RequestLog("GET", path, status))
        self._send(status, payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        path = self._path()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        if path not in ("/chat/completions", "/completions"):
            self.owner._log(RequestLog("POST", path, 404, body))
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        self.owner._enter()
        try:
            if not self._authorized():
                status, payload = 401, {"error": {"message": "Unauthorized: missing or wrong API key"}}
            elif not isinstance(body, dict):
                status, payload = 400, {"error": {"message": "the body is not a JSON object"}}
            else:
                failure = self.owner._next_failure()
                if failure is not None:
                    kind, retry_after = failure
                    if kind == "reset":
                        self.owner._log(RequestLog("POST", path, 0, body))
                        self.close_connection = True
                        return  # no answer at all: the client sees the connection dropped
                    self.owner._log(RequestLog("POST", path, int(kind), body))
                    self._send(int(kind), {"error": {"message": f"injected failure {kind}"}},
                               {"Retry-After": retry_after} if retry_after is not None else None)
                    return
                if self.owner.delay:
                    time.sleep(self.owner.delay)
                status, payload = self.owner._complete(body, chat=path == "/chat/completions")
            self.owner._log(RequestLog("POST", path, status, body))
            self._send(status, payload)
        finally:
            self.owner._leave()
