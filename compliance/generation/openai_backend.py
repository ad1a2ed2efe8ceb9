"""Greedy generation through an OpenAI-compatible server (vLLM ``serve``, TGI, llama.cpp ``server``).

No model is loaded here: each prompt is one request to ``/v1/chat/completions`` (the prompt as
a single user message; ``/v1/completions`` with the raw prompt when the config turns the chat
template off), several at once from a thread pool. Decoding is pinned per request (temperature
0, ``top_p`` 1, no penalties, ``max_tokens``, ``seed``, ``stop``) so the server's own defaults
cannot change a response.

The requests go through the official ``openai`` client, which owns the transport: connection
pooling, timeouts, and retries of transient failures (408, 409, 429, 5xx, a dropped connection, a
timeout) with exponential backoff that honours ``Retry-After``. What it finally raises becomes one
:class:`OpenAIServerError` line naming the server and the fix. Like any ``openai`` client it
follows the usual proxy variables (``HTTPS_PROXY``, ``NO_PROXY``).

What identifies a served model for the response store is :meth:`ServedModel.fingerprint`: the
``/v1/models`` entry without its volatile fields. The base URL is deliberately not part of it,
so the same server moved to another host still reuses its stored responses.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Optional, Sequence
from urllib.parse import urlsplit

import openai

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

#: Request fields that are not part of OpenAI's API, sent as ``extra_body``: vLLM reads
#: ``repetition_penalty`` (and otherwise fills it from the model's ``generation_config.json``) and
#: ``min_tokens``; vLLM and llama.cpp read ``ignore_eos``.
EXTRA_BODY_FIELDS = ("repetition_penalty", "min_tokens", "ignore_eos")

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


class OpenAIClient:
    """The parts of the OpenAI API that generation needs, on the official ``openai`` client.

    Args:
        base_url: the server's base URL (``http://localhost:8000/v1``); see :func:`parse_base_url`.
        api_key: sent as ``Authorization: Bearer``; None sends no header (and never falls back
            to ``$OPENAI_API_KEY``: the caller reads the variable it was told to).
        concurrency: requests in flight at once during :func:`generate`.
        timeout: seconds to wait for an answer once connected (a long generation is slow).
        connect_timeout: seconds to wait for the connection itself.
        max_retries: retries of one request after a transient failure (so ``max_retries + 1``
            attempts); the ``openai`` client waits between them (0.5 s doubling up to 8 s, or what
            ``Retry-After`` asks, up to 2 minutes).
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
        self.max_retries = max_retries
        self._lock = threading.Lock()
        self._models: Optional[dict[str, dict]] = None
        #: Attempts made and retries among them, over the client's life (for logs and tests).
        self.attempts = 0
        self.retries = 0
        # The openai client insists on a key; without one, a placeholder satisfies it and every
        # request drops the Authorization header, so no key (not even $OPENAI_API_KEY) is sent.
        self._headers: dict = {} if api_key else {"Authorization": openai.Omit()}
        self._openai = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "no-key", max_retries=max_retries,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]}))

    def _count_attempt(self, request) -> None:
        """Called by the HTTP client before each attempt; the openai client numbers its retries."""
        retry = int(request.headers.get("x-stainless-retry-count", "0") or 0)
        with self._lock:
            self.attempts += 1
            self.retries += retry > 0

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
        # No retries: a server that is not there yet should fail fast, not after seconds of backoff.
        try:
            page = self._openai.with_options(max_retries=0).models.list(extra_headers=self._headers)
            entries = [entry.to_dict() for entry in page.data]
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc) from None
        except openai.APIError as exc:
            raise self._failed("GET", "/models", exc) from None
        except (ValueError, TypeError, AttributeError):  # not JSON, or JSON of another shape
            raise self._nonsense("/models", "no list of models with ids") from None
        if not all(isinstance(e.get("id"), str) for e in entries):
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
        """Answer one item greedily (the openai client retries transient failures) as a :class:`Response`.

        Raises:
            OpenAIServerError: a non-retryable answer, retries exhausted, or an answer that is not a completion.
        """
        path, body = build_request(model, item.prompt, config)
        extra = {name: body.pop(name) for name in EXTRA_BODY_FIELDS if name in body}
        endpoint = self._openai.chat.completions if path == "/chat/completions" else self._openai.completions
        try:
            answer = endpoint.create(**body, extra_body=extra, extra_headers=self._headers)
            data = answer.to_dict()
        except openai.APIError as exc:
            raise self._failed("POST", path, exc) from None
        except (ValueError, TypeError, AttributeError):  # not JSON, or JSON of another shape
            raise self._nonsense(path, "a body that is not a completion") from None
        return parse_completion(data, item.id, chat=path == "/chat/completions",
                                where=f"The server at {self.base_url}")

    # --- errors: what the openai client raised, as one line ---------------------------------

    def _unreachable(self, exc: openai.APIConnectionError) -> OpenAIServerError:
        """Nothing usable answers at the base URL (the first request, made without retries)."""
        return self._misaddressed(exc) or ServerUnreachableError(
            f"Cannot use the OpenAI-compatible server at {self.base_url} ({_describe(exc)}): start it "
            f"(for example `vllm serve MODEL`) or correct {self.url_option}.")

    def _misaddressed(self, exc: openai.APIConnectionError) -> Optional[OpenAIServerError]:
        """The error for a failure that no retry fixes (an unknown host, an untrusted certificate), else None."""
        cause = _root_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return OpenAIServerError(f"The server at {self.base_url} has a TLS certificate this machine does not "
                                     f"trust ({cause.verify_message}): fix the certificate or use its http:// address.")
        if isinstance(cause, socket.gaierror):
            return ServerUnreachableError(f"Cannot resolve the host of {self.url_option} {self.base_url} "
                                          f"({cause.strerror}): correct the address.")
        return None

    def _failed(self, method: str, path: str, exc: openai.APIError) -> OpenAIServerError:
        """One line for what the openai client raised once its retries, if any, were spent."""
        if isinstance(exc, openai.APIConnectionError):
            misaddressed = self._misaddressed(exc)
            if misaddressed is not None:
                return misaddressed
            what = _describe(exc)
        elif isinstance(exc, openai.APIStatusError) and _transient(exc.status_code):
            what = f"HTTP {exc.status_code}"
        elif isinstance(exc, openai.APIStatusError):
            return self._refused(method, path, exc)
        else:  # openai.APIResponseValidationError and kin: an answer it could not read
            return self._nonsense(path, "a body that is not JSON")
        attempts = _attempts(exc)
        return OpenAIServerError(
            f"The server at {self.base_url} still failed {method} {path} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''} (last: {what}): check the server's logs and load, "
            "or lower --concurrency.")

    def _nonsense(self, path: str, what: str) -> OpenAIServerError:
        return OpenAIServerError(f"The server at {self.base_url} answered {path} with {what}: is it an "
                                 f"OpenAI-compatible server (vLLM, TGI, llama.cpp) and does {self.url_option} end in /v1?")

    def _refused(self, method: str, path: str, exc: openai.APIStatusError) -> OpenAIServerError:
        status = exc.status_code
        detail = _error_detail(exc.response.content)
        if status in (401, 403):
            hint = (f"set the server's API key in ${self.api_key_env}" if not self.api_key else
                    f"check the API key in ${self.api_key_env}")
        elif status == 404:
            hint = f"check {self.url_option} (it usually ends in /v1)"
        else:
            hint = "check the generation settings (--max-new-tokens) against what the server accepts"
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:  # a status outside the standard's list
            reason = ""
        return OpenAIServerError(f"The server at {self.base_url} answered {status} {reason} to {method} "
                                 f"{path}{': ' + detail if detail else ''}; {hint}.")


def build_request(model: str, prompt: str, config: GenConfig) -> tuple[str, dict]:
    """The endpoint path and JSON body that answer ``prompt`` greedily.

    Sampling is pinned explicitly (``temperature`` 0, ``top_p`` 1, no penalties, and vLLM's
    ``repetition_penalty`` 1) because vLLM otherwise fills unset fields from the model's
    ``generation_config.json``; other servers ignore fields they do not know.

    Args:
        model: the served model name.
        prompt: the item's prompt.
        config: ``max_new_tokens``, ``seed``, ``use_chat_template``, ``stop`` strings and
            ``min_new_tokens`` (as ``min_tokens``, and ``ignore_eos`` when it equals ``max_new_tokens``).

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
    if config.min_new_tokens:
        # vLLM's min_tokens; llama.cpp knows only ignore_eos, which fixes the length when min == max.
        body["min_tokens"] = config.min_new_tokens
        if config.min_new_tokens >= config.max_new_tokens:
            body["ignore_eos"] = True
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
    pool = ThreadPoolExecutor(max_workers=min(client.concurrency, len(items)), thread_name_prefix="openai")
    try:
        pending: dict[Future, int] = {pool.submit(client.complete, model, item, config): index
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
        # Requests not yet sent are dropped; those in flight (perhaps waiting to retry) finish first.
        pool.shutdown(wait=True, cancel_futures=True)
    return responses  # type: ignore[return-value]  # every slot was filled above


def _transient(status: int) -> bool:
    """Whether the openai client retries an answer with this status (rate limits, timeouts, server failures)."""
    return status in (408, 409, 429) or status >= 500


def _attempts(exc: openai.APIError) -> int:
    """Attempts the openai client made before raising ``exc``: it numbers each retry in a request header."""
    request = getattr(exc, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1 if request is not None else 1
    except ValueError:
        return 1


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception under ``exc`` (the openai client wraps the transport's, which wraps the socket's)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _describe(exc: BaseException) -> str:
    """A few words for a failed connection: its innermost cause, as a person would say it."""
    cause = _root_cause(exc)
    if isinstance(exc, openai.APITimeoutError) or isinstance(cause, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)) or "disconnected" in str(cause).lower():
        return "connection reset"
    text = str(cause).strip() or type(cause).__name__
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
