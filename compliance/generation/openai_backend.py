"""Greedy generation through an OpenAI-compatible server (vLLM ``serve``, TGI, llama.cpp ``server``).

No model is loaded here: each prompt is one request to ``/v1/chat/completions`` (the prompt as
a single user message; ``/v1/completions`` with the raw prompt when the config turns the chat
template off), several at once from a thread pool. Decoding is pinned per request (temperature
0, ``top_p`` 1, no penalties, ``max_tokens``, ``seed``, ``stop``) so the server's own defaults
cannot change a response.

Transient failures (429, 5xx, a dropped connection, a timeout) are retried with exponential
backoff, honouring ``Retry-After``; everything else becomes one :class:`OpenAIServerError` line
naming the server and the fix. Only the standard library is used (``http.client``), so no proxy
settings apply: the server is expected to be reachable directly.

What identifies a served model for the response store is :meth:`ServedModel.fingerprint`: the
``/v1/models`` entry without its volatile fields. The base URL is deliberately not part of it,
so the same server moved to another host still reuses its stored responses.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, Optional, Sequence
from urllib.parse import urlsplit

from compliance.constants import ENV_OPENAI_API_KEY
from compliance.errors import ComplianceError
from compliance.records import GenConfig, Response, SuiteItem

BACKEND_NAME = "openai"

#: Version of what this client sends and how it reads the answer; bump it whenever a request
#: field or the response mapping changes, so stored responses made the old way are not reused.
PROTOCOL_VERSION = "1"

#: Environment variable read for the bearer token unless another is named (``--api-key-env``).
DEFAULT_API_KEY_ENV = ENV_OPENAI_API_KEY

DEFAULT_CONCURRENCY = 8

#: HTTP statuses worth retrying: rate limits, timeouts and server-side failures that pass.
#: 501 (not implemented) and 505 (HTTP version) never pass, so they are not retried.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504} | set(range(506, 600)))

#: ``/v1/models`` fields that change without the served weights changing: vLLM and llama.cpp
#: stamp ``created`` with the time of each call, and vLLM's ``permission`` entries carry fresh ids.
VOLATILE_MODEL_FIELDS = frozenset({"created", "object", "permission"})

#: OpenAI ``finish_reason`` values (and TGI's older spellings) mapped to ours.
FINISH_REASONS = {"stop": "eos", "eos_token": "eos", "stop_sequence": "eos", "length": "length"}


def backend_version() -> str:
    """The client's protocol version, recorded in the report (the server's identity is separate)."""
    return PROTOCOL_VERSION


class OpenAIServerError(ComplianceError):
    """The server cannot be used: unreachable, rejecting requests, or answering nonsense."""


class ServerUnreachableError(OpenAIServerError):
    """Nothing answers at the base URL (refused, unknown host, timed out)."""


class UnknownServedModelError(OpenAIServerError):
    """The server does not serve a model under the requested name."""


@dataclass(frozen=True)
class ServedModel:
    """A model as the server lists it under ``/v1/models``.

    Attributes:
        name: the name requests use (``model`` in the request body).
        entry: the server's ``/v1/models`` entry for it, as returned.
    """

    name: str
    entry: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def identity(self) -> dict:
        """The entry without volatile fields (``created``...): what identifies the served weights."""
        return {k: v for k, v in sorted(self.entry.items()) if k not in VOLATILE_MODEL_FIELDS}

    @property
    def fingerprint(self) -> str:
        """Canonical JSON of :attr:`identity`, part of the response store key."""
        return json.dumps(self.identity, sort_keys=True, separators=(",", ":"), default=str)


def store_version(served: ServedModel) -> str:
    """The response store's ``backend_version`` for responses from ``served``.

    It joins the protocol version with the served model's fingerprint, so a server that swaps
    the weights behind a name (another ``root`` or ``owned_by``) never hits old rows, while the
    base URL, which only says where the server runs, stays out of the key.
    """
    return f"{PROTOCOL_VERSION} {served.fingerprint}"


def parse_base_url(url: str, option: str = "--base-url") -> str:
    """Check and normalise a server's base URL.

    ``http://host:8000`` becomes ``http://host:8000/v1`` (the path every OpenAI-compatible server
    uses); a URL with a path is kept as given, less a trailing slash.

    Args:
        url: what the user gave.
        option: how the user gave it, for the error message.

    Returns:
        The base URL that endpoint paths (``/chat/completions``) are appended to.

    Raises:
        OpenAIServerError: not an http(s) URL with a host, a bad port, credentials, a query or a fragment.
    """
    example = "give one like http://localhost:8000/v1"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise OpenAIServerError(f"{option} {url!r} is not a valid URL ({exc}): {example}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OpenAIServerError(f"{option} {url!r} is not an http(s) URL with a host: {example}.")
    if parts.username or parts.password:
        raise OpenAIServerError(f"{option} must not hold credentials: put the API key in ${DEFAULT_API_KEY_ENV} "
                                "(or the variable named by --api-key-env) instead.")
    if parts.query or parts.fragment:
        raise OpenAIServerError(f"{option} {url!r} has a query or fragment: {example}.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{netloc}{path}"


@dataclass
class _Answer:
    status: int
    retry_after: Optional[float]
    body: bytes


class _Transient(Exception):
    """One attempt failed in a way worth retrying; ``what`` says how, for the final message."""

    def __init__(self, what: str, retry_after: Optional[float] = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


class OpenAIClient:
    """A small client for the parts of the OpenAI API that generation needs.

    Args:
        base_url: the server's base URL (``http://localhost:8000/v1``); see :func:`parse_base_url`.
        api_key: sent as ``Authorization: Bearer``; None sends no header.
        concurrency: requests in flight at once during :func:`generate`.
        timeout: seconds to wait for an answer once connected (a long generation is slow).
        connect_timeout: seconds to wait for the connection itself.
        max_retries: retries of one request after a transient failure (so ``max_retries + 1`` attempts).
        backoff: seconds before the first retry; doubled for each further one, with jitter.
        max_backoff: the longest wait between attempts, ``Retry-After`` included.
        api_key_env: the variable the key came from, named in the hint of a 401/403 error.
        url_option: the option that gave ``base_url``, named in errors about the address.

    Raises:
        OpenAIServerError: ``base_url`` is malformed or a setting is out of range.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        url_option: str = "--base-url",
    ) -> None:
        self.url_option = url_option
        self.base_url = parse_base_url(base_url, url_option)
        if concurrency < 1:
            raise OpenAIServerError(f"--concurrency {concurrency} must be at least 1.")
        if max_retries < 0:
            raise OpenAIServerError(f"max_retries {max_retries} must be 0 or more.")
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path
        self._models: Optional[dict[str, dict]] = None
        self._lock = threading.Lock()
        self._random = random.Random(0)
        #: Attempts made and retries among them, over the client's life (for logs and tests).
        self.attempts = 0
        self.retries = 0

    # --- the endpoints ----------------------------------------------------------------------

    def list_models(self) -> dict[str, dict]:
        """``/v1/models`` as ``{name: entry}``, asked once per client.

        Raises:
            ServerUnreachableError: nothing answers at the base URL.
            OpenAIServerError: the server refuses the request or answers something else than a model list.
        """
        with self._lock:
            cached = self._models
        if cached is not None:
            return cached
        # No retries: a server that is not there yet should fail fast, not after minutes of backoff.
        answer = self._attempt_or_fail("GET", "/models", None)
        data = self._json(answer, "/models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                                    for e in entries):
            raise self._nonsense("/models", "no list of models with ids")
        models = {e["id"]: e for e in entries}
        with self._lock:
            self._models = models
        return models

    def served_model(self, name: str, option: str = "--model") -> ServedModel:
        """The server's entry for ``name``.

        Args:
            name: the served model name (what ``vllm serve`` calls ``--served-model-name``).
            option: the option that gave the name, for the error message.

        Raises:
            UnknownServedModelError: the server lists no model of that name.
            ServerUnreachableError, OpenAIServerError: see :meth:`list_models`.
        """
        models = self.list_models()
        if name not in models:
            listed = ", ".join(repr(m) for m in sorted(models)) or "none"
            raise UnknownServedModelError(
                f"The server at {self.base_url} serves no model named {name!r} (it serves {listed}): "
                f"pass the served name with {option}.")
        return ServedModel(name, models[name])

    def complete(self, model: str, item: SuiteItem, config: GenConfig) -> Response:
        """Answer one item greedily (retrying transient failures) and map the answer to a :class:`Response`.

        Raises:
            OpenAIServerError: a non-retryable answer, retries exhausted, or an answer that is not a completion.
        """
        return self._complete(model, item, config, None)

    def _complete(self, model: str, item: SuiteItem, config: GenConfig, stop: Optional[threading.Event]) -> Response:
        if stop is not None and stop.is_set():
            raise _Cancelled()
        path, body = build_request(model, item.prompt, config)
        answer = self._with_retries("POST", path, body, stop)
        return parse_completion(self._json(answer, path), item.id, chat=path == "/chat/completions",
                                where=f"The server at {self.base_url}")

    # --- HTTP -------------------------------------------------------------------------------

    def _with_retries(self, method: str, path: str, body: Optional[dict],
                      stop: Optional[threading.Event] = None) -> _Answer:
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(method, path, body)
            except _Transient as exc:
                if attempt == self.max_retries:
                    raise OpenAIServerError(
                        f"The server at {self.base_url} still failed {method} {path} after {attempt + 1} attempts "
                        f"(last: {exc.what}): check the server's logs and load, or lower --concurrency.") from None
                with self._lock:
                    self.retries += 1
                delay = self._delay(attempt, exc.retry_after)
                if stop is not None and stop.wait(delay):
                    raise _Cancelled() from None
                if stop is None:
                    time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _attempt_or_fail(self, method: str, path: str, body: Optional[dict]) -> _Answer:
        try:
            return self._attempt(method, path, body)
        except _Transient as exc:
            raise ServerUnreachableError(
                f"Cannot use the OpenAI-compatible server at {self.base_url} ({exc.what}): start it "
                f"(for example `vllm serve MODEL`) or correct {self.url_option}.") from None

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        with self._lock:
            jitter = 0.5 + self._random.random() / 2  # threads retrying together spread out
        return min(self.backoff * (2 ** attempt) * jitter, self.max_backoff)

    def _attempt(self, method: str, path: str, body: Optional[dict]) -> _Answer:
        """One request on a fresh connection; transient failures raise :class:`_Transient`."""
        with self._lock:
            self.attempts += 1
        headers = {"Accept": "application/json", "User-Agent": "compliance-openai-client"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(self.timeout)
            conn.request(method, self._prefix + path, body=data, headers=headers)
            response = conn.getresponse()
            answer = _Answer(response.status, _retry_after(response.getheader("Retry-After")), response.read())
        except ssl.SSLCertVerificationError as exc:
            raise OpenAIServerError(f"The server at {self.base_url} has a TLS certificate this machine does not trust "
                                    f"({exc.verify_message}): fix the certificate or use its http:// address.") from None
        except socket.gaierror as exc:
            raise ServerUnreachableError(f"Cannot resolve the host of {self.url_option} {self.base_url} ({exc.strerror}): "
                                         "correct the address.") from None
        except (socket.timeout, TimeoutError):
            raise _Transient("timed out") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Transient(_describe(exc)) from None
        finally:
            conn.close()
        if answer.status in RETRY_STATUSES:
            raise _Transient(f"HTTP {answer.status}", answer.retry_after)
        if answer.status >= 300:
            raise self._refused(method, path, answer)
        return answer

    # --- answers ----------------------------------------------------------------------------

    def _json(self, answer: _Answer, path: str) -> dict:
        try:
            data = json.loads(answer.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._nonsense(path, "a body that is not JSON") from None
        if not isinstance(data, dict):
            raise self._nonsense(path, "JSON that is not an object")
        return data

    def _nonsense(self, path: str, what: str) -> OpenAIServerError:
        return OpenAIServerError(f"The server at {self.base_url} answered {path} with {what}: is it an "
                                 f"OpenAI-compatible server (vLLM, TGI, llama.cpp) and does {self.url_option} end in /v1?")

    def _refused(self, method: str, path: str, answer: _Answer) -> OpenAIServerError:
        detail = _error_detail(answer.body)
        if answer.status in (401, 403):
            hint = (f"set the server's API key in ${self.api_key_env}" if not self.api_key else
                    f"check the API key in ${self.api_key_env}")
        elif answer.status == 404:
            hint = f"check {self.url_option} (it usually ends in /v1)"
        else:
            hint = "check the generation settings (--max-new-tokens) against what the server accepts"
        reason = http.client.responses.get(answer.status, "")
        return OpenAIServerError(f"The server at {self.base_url} answered {answer.status} {reason} to {method} "
                                 f"{path}{': ' + detail if detail else ''}; {hint}.")


class _Cancelled(Exception):
    """A retry wait was cut short because another request already failed the run."""


def build_request(model: str, prompt: str, config: GenConfig) -> tuple[str, dict]:
    """The endpoint path and JSON body that answer ``prompt`` greedily.

    Sampling is pinned explicitly (``temperature`` 0, ``top_p`` 1, no penalties, and vLLM's
    ``repetition_penalty`` 1) because vLLM otherwise fills unset fields from the model's
    ``generation_config.json``; other servers ignore fields they do not know.

    Args:
        model: the served model name.
        prompt: the item's prompt.
        config: ``max_new_tokens``, ``seed``, ``use_chat_template`` and, when the config has them,
            ``stop`` strings.

    Returns:
        ``("/chat/completions", body)``, or ``("/completions", body)`` without the chat template.
    """
    body: dict = {"model": model}
    if config.use_chat_template:
        path = "/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        path = "/completions"
        body["prompt"] = prompt
    body.update(max_tokens=config.max_new_tokens, temperature=0, top_p=1, frequency_penalty=0, presence_penalty=0,
                repetition_penalty=1, n=1, stream=False, seed=config.seed)
    stop = stop_strings(config)
    if stop:
        body["stop"] = stop
    return path, body


def stop_strings(config: GenConfig) -> list[str]:
    """The config's stop strings (``GenConfig.stop`` when the config has such a field), else none."""
    return [s for s in (getattr(config, "stop", None) or ()) if s]


def parse_completion(data: dict, item_id: str, chat: bool = True, where: str = "The server") -> Response:
    """Map an OpenAI (chat) completion to a :class:`Response`.

    ``finish_reason`` ``stop`` (an end-of-sequence token or a stop string) becomes ``eos`` and
    ``length`` stays ``length``; ``n_new_tokens`` is ``usage.completion_tokens``. The text is
    stripped of surrounding whitespace, as the transformers backend does.

    Args:
        data: the decoded JSON answer.
        item_id: the item answered.
        chat: a chat completion (``message.content``) rather than a text completion (``text``).
        where: how error messages name the server.

    Raises:
        OpenAIServerError: the answer lacks a choice, its text, a known finish reason or the token count.
    """
    def bad(what: str) -> OpenAIServerError:
        return OpenAIServerError(f"{where} answered item {item_id!r} with {what}: is it an OpenAI-compatible server?")

    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise bad("no choices")
    choice = choices[0]
    if chat:
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if text is None:
        text = ""  # some servers send null content for an immediate end of sequence
    if not isinstance(text, str):
        raise bad("a reply that is not text")
    reason = FINISH_REASONS.get(choice.get("finish_reason"))
    if reason is None:
        raise bad(f"finish_reason {choice.get('finish_reason')!r} (expected 'stop' or 'length')")
    usage = data.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise bad("no usage.completion_tokens")
    return Response(item_id=item_id, text=text.strip(), n_new_tokens=tokens, finish_reason=reason)  # type: ignore[arg-type]


def generate(
    client: OpenAIClient,
    model: str,
    items: Sequence[SuiteItem],
    config: GenConfig,
    on_response: Optional[Callable[[Response], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> list[Response]:
    """Answer every item through the server, ``client.concurrency`` requests at a time.

    The counterpart of the transformers backend's ``generate``: the client and served model name
    stand in for the model and tokenizer.

    Args:
        client: the server's client.
        model: the served model name (check it first with :meth:`OpenAIClient.served_model`).
        items: the prompts.
        config: decoding settings; ``batch_size`` is ignored (``client.concurrency`` sets the width).
        on_response: called with each response as soon as it arrives, in completion order, from
            the calling thread (so it may write to a store opened there).
        progress: called with the number of items done after each response.

    Returns:
        One :class:`Response` per item, in the order of ``items``.

    Raises:
        ComplianceError: sampling was requested or ``max_new_tokens`` is below 1.
        OpenAIServerError: a request failed for good; responses already passed to ``on_response``
            are kept, requests not yet sent are cancelled.
    """
    if config.do_sample:
        raise ComplianceError("Sampling is not supported: results must be reproducible, so set do_sample to false.")
    if config.max_new_tokens < 1:
        raise ComplianceError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}.")
    responses: list[Optional[Response]] = [None] * len(items)
    if not items:
        return []
    stop = threading.Event()  # set once the run fails: queued requests and retry waits end early
    pool = ThreadPoolExecutor(max_workers=min(client.concurrency, len(items)), thread_name_prefix="openai")
    try:
        pending: dict[Future, int] = {pool.submit(client._complete, model, item, config, stop): index
                                      for index, item in enumerate(items)}
        n_done = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                response = future.result()  # raises the request's error; the finally cancels the rest
                responses[index] = response
                n_done += 1
                if on_response is not None:
                    on_response(response)
                if progress is not None:
                    progress(n_done)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return responses  # type: ignore[return-value]  # every slot was filled above


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        return "connection reset"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]


def _error_detail(body: bytes) -> str:
    """The server's own error message, on one short line (OpenAI: ``{"error": {"message": ...}}``)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        text = body.decode("utf-8", "replace")
    else:
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or error
        text = error if isinstance(error, str) else json.dumps(error)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"
