"""The Python API: everything the CLI does, callable from Python.

Example:
    >>> from compliance import api
    >>> result = api.run_report("path/to/fine-tune", policy="healthcare")
    >>> result.report["summary"]["verdict"]
    'fail'
"""

from __future__ import annotations

import gc
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from compliance.constants import reports_dir, signing_keys_dir, tsa_url
from compliance.errors import ComplianceError
from compliance.io import atomic_write_json
from compliance.progress import Reporter
from compliance.records import GenConfig, Judgement, Lineage, ModelRecord, Response, Suite
from compliance.request import ReportRequest

if TYPE_CHECKING:
    from compliance.generation.openai_backend import OpenAIClient
    from compliance.judges import Judge
    from compliance.request import BackendSpec, JudgeSpec, ReportRequest
    from compliance.sensitivity import JudgeLabels
    from compliance.store import ResponseKey, ResponseStore

__all__ = ["ReportRequest", "ReportResult", "adapt", "audit", "card", "compare", "evaluate_model", "fold_audit",
           "generate_responses", "keygen", "resolve", "run_report", "sign", "verify"]


@dataclass
class ReportResult:
    """Where the report went, and the report itself."""

    out_dir: Path
    json_path: Path
    pdf_path: Optional[Path]
    report: dict


def _require_evaluable(lineage: Lineage) -> None:
    """Both models of a report need weight files; a metadata-only base names the nearest ancestor that has them."""
    from compliance.models import require_weights

    require_weights(lineage.model)
    ids = [n.id for n in lineage.chain]
    after = ids.index(lineage.base.id) + 1 if lineage.base.id in ids else len(ids)
    with_weights = next((n.id for n in lineage.chain[after:] if n.has_weights), None)
    hint = f" (the nearest ancestor with weights is '{with_weights}')" if with_weights else ""
    require_weights(lineage.base, "comparison base", hint)


def resolve(model: str, base: Optional[str] = None) -> Lineage:
    """Resolve ``model`` (a folder, the built-in id, or a Hub id ``org/name[@revision]``) and its base.

    Args:
        model: the model to evaluate.
        base: ``None`` for the declared base (nearest adaptation, quantization skipped; a merge's
            nearest common ancestor), ``"root"`` for the root of the lineage, or a model reference.
    """
    from compliance.lineage import resolve_lineage
    from compliance.models import resolve_model_ref

    return resolve_lineage(resolve_model_ref(model), base=base)


#: Generation backends (``--backend``): transformers in this process (the default), an
#: OpenAI-compatible server (vLLM ``serve``, TGI, llama.cpp), or vLLM in this process.
BACKENDS = ("transformers", "openai", "vllm")

#: Device and dtype recorded (report and store key) when a server generates: both are the server's.
REMOTE_DEVICE = "remote"
REMOTE_DTYPE = "as served"


@dataclass
class _Generator:
    """How one model's missing responses get made: by which backend, keyed how, loaded and run how.

    ``load`` runs only when some response is missing (nothing loads on a full store hit);
    ``run`` generates with what ``load`` returned; ``release`` frees it.
    """

    backend: str
    version: str  # the response store key's backend_version
    device: str
    dtype: str
    load: Callable[[], Any]
    run: Callable[[Any, list, GenConfig, Callable[[Response], None]], list]
    release: Callable[[Any], None] = lambda handle: None


def _generator(backend: str, record: ModelRecord, config: GenConfig, device: Optional[str], allow_pickle: bool,
               trust_remote_code: bool, server: Optional["OpenAIClient"], served_model: Optional[str]) -> _Generator:
    if backend not in BACKENDS:
        raise ComplianceError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)} (--backend).")
    if backend == "openai":
        from compliance.generation import openai_backend

        if server is None:
            raise ComplianceError("The openai backend needs a server: give --base-url (api: server=OpenAIClient(...)).")
        served = server.served_model(served_model or record.id)
        return _Generator(
            backend=openai_backend.BACKEND_NAME, version=openai_backend.store_version(served), device=REMOTE_DEVICE,
            dtype=REMOTE_DTYPE, load=lambda: None,
            run=lambda _, items, cfg, keep: openai_backend.generate(server, served.name, items, cfg, on_response=keep))
    from compliance.generation import pick_device

    dev, dtype = pick_device(device)
    if backend == "vllm":
        from compliance.generation import vllm_backend

        if not dev.startswith("cuda"):
            raise ComplianceError("The vllm backend runs on a CUDA GPU and this run is on the CPU: "
                                  "use --backend transformers, or run on a machine with a GPU.")
        return _Generator(
            backend=vllm_backend.BACKEND_NAME, version=vllm_backend.backend_version(), device=dev, dtype=str(dtype),
            load=lambda: vllm_backend.load_llm(record, str(dtype), seed=config.seed,
                                               trust_remote_code=trust_remote_code),
            run=lambda llm, items, cfg, keep: vllm_backend.generate(llm, items, cfg, on_response=keep),
            release=vllm_backend.release)
    from compliance.generation import BACKEND_NAME, backend_version, batch_size_for, generate
    from compliance.models import load_model

    def run(handle, items, cfg, keep):
        model, tokenizer = handle
        if cfg.batch_size is None:
            cfg = replace(cfg, batch_size=batch_size_for(model, cfg.max_new_tokens))
        return generate(model, tokenizer, items, cfg, on_response=keep)

    return _Generator(
        backend=BACKEND_NAME, version=backend_version(), device=dev, dtype=str(dtype),
        load=lambda: load_model(record, device=dev, dtype=dtype, allow_pickle=allow_pickle,
                                trust_remote_code=trust_remote_code),
        run=run)


def generate_responses(
    record: ModelRecord,
    suite: Suite,
    config: GenConfig,
    device: Optional[str] = None,
    reporter: Optional[Reporter] = None,
    label: str = "model",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    store: Optional["ResponseStore"] = None,
    counts: Optional[dict[str, int]] = None,
    backend: str = "transformers",
    server: Optional["OpenAIClient"] = None,
    served_model: Optional[str] = None,
) -> dict[str, Response]:
    """A response to every suite item from ``record``.

    With a ``store``, responses already stored for this model and config are reused, only the
    missing items are generated (the model is not even loaded when none is missing), and each new
    response is committed as soon as it is produced, so a killed run resumes where it stopped.
    ``counts``, when given, is filled with ``{"reused": n, "generated": m}``.

    Args:
        backend: ``transformers`` (load ``record`` here), ``openai`` (ask ``server`` for the model
            served as ``served_model``; nothing is loaded here) or ``vllm`` (load ``record`` into vLLM).
        server: the OpenAI-compatible server's client (``openai`` backend only).
        served_model: the name the server serves ``record`` under; ``record.id`` when None.

    Returns:
        ``item_id -> response``, in suite order.

    Raises:
        ComplianceError: an unknown backend, or a backend that cannot run (see its module).
    """
    reporter = reporter or Reporter(enabled=False)
    gen = _generator(backend, record, config, device, allow_pickle, trust_remote_code, server, served_model)
    key = None
    by_id: dict[str, Response] = {}
    if store is not None:
        from compliance.store import ResponseKey

        key = ResponseKey.for_run(record, config, gen.device, gen.dtype, gen.backend, gen.version)
        by_id = store.get_many(key, suite.items)
    n_reused = len(by_id)
    missing = [item for item in suite.items if item.id not in by_id]
    if counts is not None:
        counts.update(reused=n_reused, generated=len(missing))
    if missing:
        if gen.device == REMOTE_DEVICE:
            handle = gen.load()  # a server: nothing to load here
        else:
            with reporter.stage(f"Load {label}: {_short(record.id)}"):
                handle = gen.load()
        missing_by_id = {item.id: item for item in missing}
        try:
            with reporter.stage(f"Generate with {label}", total=len(suite.items)) as stage:
                stage.advance(n_reused)

                def keep(response: Response) -> None:
                    if store is not None:
                        store.put(key, missing_by_id[response.item_id], response)  # committed before the next
                    stage.advance()

                for response in gen.run(handle, missing, config, keep):
                    by_id[response.item_id] = response
        finally:
            gen.release(handle)
            del handle
            gc.collect()
            if gen.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
    return {item.id: by_id[item.id] for item in suite.items}


def evaluate_model(record: ModelRecord, suite: Suite, config: GenConfig, judge_name: Optional[str] = None,
                   judge: Optional["Judge"] = None, judge_options: Optional[dict[str, str]] = None,
                   **generation: Any) -> dict[str, tuple[Judgement, Response]]:
    """Generate a response to every suite item with ``record`` and label it with one refusal judge.

    A convenience for one model and one judge; reports use :func:`generate_responses` and label
    both axes. ``generation`` takes :func:`generate_responses`'s keyword arguments.

    Returns:
        ``item_id -> (judgement, response)``.
    """
    from compliance.judges import DEFAULT_JUDGE, get_judge, judge_responses

    responses = generate_responses(record, suite, config, **generation)
    judge = judge or get_judge(judge_name or DEFAULT_JUDGE, judge_options)
    judgements = judge_responses(judge, suite.items, list(responses.values()))
    return {j.item_id: (j, responses[j.item_id]) for j in judgements}


@dataclass
class _JudgeSet:
    """The judges a report runs: the primary judge of each axis and the cheap alternatives."""

    primary: dict[str, "Judge"]
    alternatives: list["Judge"]

    @classmethod
    def from_spec(cls, spec: "JudgeSpec") -> "_JudgeSet":
        from compliance.judges import cheap_judges, get_judge

        primary = {"refusal": get_judge(spec.refusal, spec.refusal_options)}
        if spec.harm:
            primary["harm"] = get_judge(spec.harm, spec.harm_options)
        for axis, judge in primary.items():
            if judge.axis != axis:
                option = "--judge" if axis == "refusal" else "--harm-judge"
                raise ComplianceError(f"{option} {judge.name}: it is a {judge.axis} judge, not a {axis} judge; "
                                      f"see compliance judges for the {axis} judges")
        alternatives = []
        if spec.sensitivity:
            for axis, judge in primary.items():
                # A primary made of member judges (harm-ensemble) lends them to the sensitivity
                # labelling when they are the judges it would make anyway, so their models read each
                # reply once.
                members = {m.name: m for m in getattr(judge, "members", ())}
                for name in cheap_judges(axis):
                    if name != judge.name:
                        fresh = get_judge(name)
                        lent = members.get(name)
                        alternatives.append(lent if lent is not None and lent.settings() == fresh.settings()
                                            else fresh)
        return cls(primary=primary, alternatives=alternatives)


def _label_all(judges: _JudgeSet, items: list, base: dict[str, Response], model: dict[str, Response],
               reporter: Reporter) -> tuple[dict[str, "JudgeLabels"], list["JudgeLabels"], list[dict]]:
    """Every judge's labels of both models' replies: primaries, alternatives, and alternatives that could not run."""
    from compliance.judges import judge_responses
    from compliance.sensitivity import JudgeLabels

    def run(judge: "Judge") -> "JudgeLabels":
        return JudgeLabels(judge.judge_id, judge.axis, judge_responses(judge, items, list(base.values())),
                           judge_responses(judge, items, list(model.values())))

    primary, alternatives, unavailable = {}, [], []
    with reporter.stage("Judge", total=len(judges.primary) + len(judges.alternatives)) as stage:
        for axis, judge in judges.primary.items():
            stage.describe(f"Judge ({axis}: {judge.name})")
            primary[axis] = run(judge)
            stage.advance()
        for judge in judges.alternatives:
            stage.describe(f"Judge ({judge.axis}: {judge.name}, for sensitivity)")
            try:
                alternatives.append(run(judge))
            except ComplianceError as exc:  # e.g. an optional package missing: the report says so
                unavailable.append({"judge": judge.judge_id, "axis": judge.axis, "reason": str(exc)})
            stage.advance()
    return primary, alternatives, unavailable


def run_report(model: "str | ReportRequest", policy: str = "healthcare",
               store: "Path | str | bool | None" = None, **settings: Any) -> ReportResult:
    """Evaluate a model and its base on the policy's suite and write ``report.json`` (+ ``report.pdf``).

    Give a :class:`~compliance.request.ReportRequest`, or a model reference with settings as
    keywords (a convenience that builds the request):

    >>> api.run_report("path/to/fine-tune", policy="legal", limit=64)  # doctest: +SKIP

    Keyword settings (each sets one field of the request; see :mod:`compliance.request`):
    ``base``, ``allow_pickle``, ``trust_remote_code``; ``suite``, ``limit``, ``data_dir``,
    ``accept_licence``; ``max_new_tokens``, ``batch_size``, ``seed``, ``device``, ``stop``;
    ``judge``, ``judge_options``, ``harm_judge``, ``harm_judge_options``, ``sensitivity``;
    ``backend``, ``base_url``, ``served_model``, ``served_base_model``, ``base_model_url``,
    ``concurrency``, ``api_key_env``; ``out_dir``, ``pdf``, ``keys``, ``tsa``, ``progress``.

    Args:
        model: a local model folder, the built-in model's id, a Hub id ``org/name[@revision]``,
            or a whole :class:`~compliance.request.ReportRequest`.
        policy: a shipped policy name or a policy YAML path.
        store: the response store file; False runs without one.

    Raises:
        ComplianceError: bad input (each names the input and the fix), before any model work
            where it can be checked up front.
    """
    from compliance.request import ReportRequest, request_from_kwargs

    if isinstance(model, ReportRequest):
        if settings:
            raise ComplianceError("run_report: give a ReportRequest or keyword settings, not both")
        return _run(model)
    return _run(request_from_kwargs(model, policy=policy, store=store, **settings))


@dataclass
class _Checked:
    """What a request's up-front checks produced: the server clients, the policy, the signing keys, the judges."""

    servers: Optional[dict[str, "OpenAIClient"]]
    policy: Any
    keys_dir: Optional[Path]
    judges: _JudgeSet
    tsa: Optional[str] = None  # the timestamp authority's URL, when signatures are timestamped


def check_request(request: "ReportRequest") -> _Checked:
    """Check every setting of ``request`` that can be checked before any model work.

    ``compliance fleet`` runs this once for the whole fleet, so a bad policy, key folder, judge,
    store or backend option is one line before any model is touched.

    Raises:
        ComplianceError: the first bad setting, naming it and the fix.
    """
    from compliance.policy import load_policy

    gen = request.generation
    if gen.max_new_tokens < 1:
        raise ComplianceError(f"--max-new-tokens {gen.max_new_tokens} must be at least 1")
    if gen.batch_size is not None and gen.batch_size < 1:
        raise ComplianceError(f"--batch-size {gen.batch_size} must be at least 1")
    if any(not s for s in gen.stop):
        raise ComplianceError("--stop '' is empty: give the text that ends an answer, or drop the option")
    servers = _backend_servers(request.backend)
    policy_obj = load_policy(request.policy)  # fail fast on a bad policy, before any model work
    keys_dir = Path(request.output.keys) if request.output.keys else signing_keys_dir()
    if keys_dir is not None:
        from compliance.signing.sign import load_keys_for_signing

        load_keys_for_signing(keys_dir)  # fail fast on missing or unusable keys, before any model work
    tsa = request.output.tsa
    if tsa is not None and keys_dir is None:
        from compliance.signing.errors import SigningError

        raise SigningError("--tsa timestamps signatures, and this report is not signed: add --keys DIR "
                           "(or set $COMPLIANCE_SIGNING_KEYS), or drop --tsa")
    tsa = (tsa or tsa_url()) if keys_dir is not None else None
    if tsa is not None:
        from compliance.signing.timestamp import check_tsa

        check_tsa(tsa)  # fail fast on an unreachable TSA, before any model work
    return _Checked(servers=servers, policy=policy_obj, keys_dir=keys_dir, judges=_JudgeSet.from_spec(request.judges),
                    tsa=tsa)


@dataclass
class _Plan:
    """A request made concrete: the pinned models, the servers' names for them, the suite and the decoding."""

    lineage: Lineage
    served: Optional[dict]  # role -> the server's entry for it (``openai`` backend), else None
    suite: Suite
    config: GenConfig

    def record(self, role: str) -> ModelRecord:
        return self.lineage.base if role == "base" else self.lineage.model


def _plan(request: "ReportRequest", checked: _Checked, reporter: Reporter,
          store: Optional["ResponseStore"] = None, roles: tuple[str, ...] = ("base", "model")) -> _Plan:
    """Resolve the models, check the servers, load the suite, and download from the Hub the weights of
    each of ``roles`` that will run here: not when a server generates, nor when ``store`` already
    holds that model's every response (a fleet's fine-tunes find their base's there)."""
    from compliance.suites import load_suite

    models, backend, gen, servers = request.models, request.backend, request.generation, checked.servers
    with reporter.stage("Resolve model and base"):
        lineage = resolve(models.model, models.base)
        _require_evaluable(lineage)
    served = None
    if servers is not None:
        with reporter.stage("Check the server's models"):  # fail fast, before any generation
            served = {"model": servers["model"].served_model(backend.served_model or lineage.model.id, "--model"),
                      "base": servers["base"].served_model(backend.served_base_model or lineage.base.id,
                                                           "--base-model")}
    with reporter.stage("Load suite"):
        suite = load_suite(list(request.suite.names or checked.policy.data["suite"]), limit=request.suite.limit,
                           seed=gen.seed, data_dir=request.suite.data_dir,
                           accept_licences=request.suite.accept_licence)
    config = GenConfig(max_new_tokens=gen.max_new_tokens, batch_size=gen.batch_size, seed=gen.seed,
                       stop=tuple(gen.stop))
    plan = _Plan(lineage=lineage, served=served, suite=suite, config=config)
    if servers is None:  # a server needs no local weights
        wanted = [role for role in roles if plan.record(role).kind == "hub"
                  and not _all_stored(request, plan, checked, role, store)]
        if wanted:
            from compliance.hub import download_model

            with reporter.stage("Download from the Hub"):
                for role in wanted:
                    record = download_model(plan.record(role), models.allow_pickle, models.trust_remote_code)
                    if role == "base":
                        lineage.base = record
                    else:
                        lineage.model = record
    return plan


def _response_key(request: "ReportRequest", plan: _Plan, checked: _Checked, role: str) -> "ResponseKey":
    """The store key ``role``'s responses are kept under (nothing is loaded to compute it)."""
    from compliance.store import ResponseKey

    models = request.models
    gen = _generator(request.backend.name, plan.record(role), plan.config, request.generation.device,
                     models.allow_pickle, models.trust_remote_code, (checked.servers or {}).get(role),
                     plan.served[role].name if plan.served is not None else None)
    return ResponseKey.for_run(plan.record(role), plan.config, gen.device, gen.dtype, gen.backend, gen.version)


def _all_stored(request: "ReportRequest", plan: _Plan, checked: _Checked, role: str,
                store: Optional["ResponseStore"]) -> bool:
    if store is None:
        return False
    key = _response_key(request, plan, checked, role)
    return len(store.get_many(key, plan.suite.items)) == len(plan.suite.items)


def _respond(request: "ReportRequest", plan: _Plan, checked: _Checked, role: str,
             store: Optional["ResponseStore"], reporter: Reporter, counts: dict[str, int]) -> dict[str, Response]:
    """``role``'s (``base`` or ``model``) response to every suite item, reusing and filling ``store``."""
    models, backend = request.models, request.backend
    return generate_responses(
        plan.record(role), plan.suite, plan.config, request.generation.device, reporter,
        "base" if role == "base" else "fine-tune", models.allow_pickle, models.trust_remote_code, store=store,
        counts=counts, backend=backend.name, server=(checked.servers or {}).get(role),
        served_model=plan.served[role].name if plan.served is not None else None)


@dataclass
class RoleResponses:
    """One model's responses to a request's suite, with the store key they are kept under.

    What ``compliance fleet`` hands from the task that generated a base's responses to the tasks
    that report on its fine-tunes (through Ray's object store when they share no disk).
    """

    role: str
    record: ModelRecord
    key: "ResponseKey"
    items: list
    responses: dict[str, Response]
    counts: dict[str, int]


def generate_for(request: "ReportRequest", role: str = "base") -> RoleResponses:
    """Generate (or reuse from the store) ``role``'s responses exactly as :func:`run_report` would.

    Args:
        request: the report request; ``role`` ``base`` answers with its base, ``model`` with its model.
        role: ``base`` or ``model``.

    Raises:
        ComplianceError: bad input, as for :func:`run_report`.
    """
    from compliance.store import open_store

    if role not in ("base", "model"):
        raise ComplianceError(f"role {role!r}: choose base or model")
    checked = check_request(request)
    response_store = open_store(request.store)
    with ExitStack() as cleanup, Reporter(enabled=request.output.progress) as reporter:
        if response_store is not None:
            cleanup.callback(response_store.close)
        plan = _plan(request, checked, reporter, response_store, roles=(role,))
        counts: dict[str, int] = {}
        responses = _respond(request, plan, checked, role, response_store, reporter, counts)
        key = _response_key(request, plan, checked, role)
    return RoleResponses(role=role, record=plan.record(role), key=key, items=list(plan.suite.items),
                         responses=responses, counts=counts)


def _run(request: "ReportRequest") -> ReportResult:
    """Run one report request end to end (see :func:`run_report`)."""
    from compliance.policy import evaluate
    from compliance.report.build import build_report, environment
    from compliance.sensitivity import judge_sensitivity
    from compliance.stats import compare

    gen, backend = request.generation, request.backend
    started = datetime.now(timezone.utc)
    checked = check_request(request)
    servers, policy_obj, keys_dir, judges = checked.servers, checked.policy, checked.keys_dir, checked.judges
    tsa = checked.tsa
    from compliance.store import open_store

    response_store = open_store(request.store)  # fail fast on an unusable store file, before any model work
    with ExitStack() as cleanup, Reporter(enabled=request.output.progress) as reporter:
        if response_store is not None:
            cleanup.callback(response_store.close)
        plan = _plan(request, checked, reporter, response_store)
        lineage, suite, config, served = plan.lineage, plan.suite, plan.config, plan.served
        counts: dict[str, dict[str, int]] = {"base": {}, "model": {}}
        responses = {role: _respond(request, plan, checked, role, response_store, reporter, counts[role])
                     for role in ("base", "model")}
        primary, alternatives, unavailable = _label_all(judges, suite.items, responses["base"], responses["model"],
                                                        reporter)
        generation = _generation_section(backend.name, gen.device, servers, served)
        dev = generation["device"]
        generation.update(config=asdict(config),
                          reused={role: c["reused"] for role, c in counts.items()},
                          generated={role: c["generated"] for role, c in counts.items()})
        with reporter.stage("Statistics, policy and judge sensitivity"):
            findings = compare(suite.items, {a: labels.base for a, labels in primary.items()},
                               {a: labels.model for a, labels in primary.items()})
            verdict = evaluate(findings, policy_obj)
            sensitivity = judge_sensitivity(suite.items, primary, alternatives, policy_obj, findings, verdict,
                                            unavailable)
        finished = datetime.now(timezone.utc)
        report = build_report(
            lineage=lineage,
            suite=suite,
            generation=generation,
            judges={axis: judge_report(judge) for axis, judge in judges.primary.items()},
            responses=responses,
            labels=[*primary.values(), *alternatives],
            primary={axis: labels.judge_id for axis, labels in primary.items()},
            findings=findings,
            verdict=verdict,
            sensitivity=sensitivity,
            policy_doc=policy_obj.data,
            env=environment(dev, gen.seed, started, finished),
            created_at=finished,
        )
        out = Path(request.output.out_dir) if request.output.out_dir else reports_dir() / _slug(lineage.model.id)
        json_path = atomic_write_json(out / "report.json", report)
        pdf_path = None
        if request.output.pdf:
            from compliance.report.render import render_pdf

            with reporter.stage("Render PDF"):
                pdf_path = render_pdf(report, out / "report.pdf")
        from compliance.io import atomic_write_text
        from compliance.report.render import render_html

        atomic_write_text(out / "report.html", render_html(report))  # same data as the PDF, for browsers
        if keys_dir is not None:
            with reporter.stage("Sign report"):
                sign(out, keys_dir, tsa=tsa)
    return ReportResult(out_dir=out, json_path=json_path, pdf_path=pdf_path, report=report)


def _backend_servers(spec: "BackendSpec") -> Optional[dict[str, "OpenAIClient"]]:
    """Check the backend options together; for ``openai`` the server clients by role (``model``,
    ``base``: one client when both are served at one address), else None.

    Raises:
        ComplianceError: an unknown backend, server options without ``--backend openai``, ``openai``
            without a base URL, a malformed URL or concurrency, or ``vllm`` without vLLM installed.
    """
    import os

    backend, base_url, served_model, served_base_model = spec.name, spec.base_url, spec.served_model, \
        spec.served_base_model
    base_model_url, concurrency, api_key_env = spec.base_model_url, spec.concurrency, spec.api_key_env
    if backend not in BACKENDS:
        raise ComplianceError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)} (--backend).")
    if backend != "openai":
        given = [opt for opt, value in (("--base-url", base_url), ("--model", served_model),
                                         ("--base-model", served_base_model), ("--base-model-url", base_model_url))
                 if value]
        if given:
            raise ComplianceError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to an "
                                  f"OpenAI-compatible server: add --backend openai, or drop {', '.join(given)} to "
                                  f"run with --backend {backend}.")
        if backend == "vllm":
            from compliance.generation.vllm_backend import require_vllm

            require_vllm()
        return None
    if not base_url:
        raise ComplianceError("--backend openai needs --base-url, the server's address "
                              "(for example http://localhost:8000/v1 for `vllm serve`).")
    from compliance.generation.openai_backend import OpenAIClient

    def client(url: str, option: str) -> OpenAIClient:
        return OpenAIClient(url, api_key=os.environ.get(api_key_env) or None, concurrency=concurrency,
                            api_key_env=api_key_env, url_option=option)

    model = client(base_url, "--base-url")
    base = client(base_model_url, "--base-model-url") if base_model_url else model
    return {"model": model, "base": model if base.base_url == model.base_url else base}


def _generation_section(backend: str, device: Optional[str], servers: Optional[dict[str, "OpenAIClient"]],
                        served: Optional[dict]) -> dict:
    """The report's ``generation`` section, less config and counts: backend, version, device, dtype, server.

    For a server, ``server`` records the fine-tune's server URL (without credentials), the
    concurrency and each served model's name, ``/v1/models`` entry (less its volatile fields) and
    the URL of the server that answered for it; no API key.
    """
    if servers is not None and served is not None:
        from compliance.generation import openai_backend

        return {"backend": openai_backend.BACKEND_NAME, "backend_version": openai_backend.backend_version(),
                "device": REMOTE_DEVICE, "dtype": REMOTE_DTYPE,
                "server": {"base_url": servers["model"].base_url, "concurrency": servers["model"].concurrency,
                           "models": {role: {"name": s.name, "entry": s.identity, "base_url": servers[role].base_url}
                                      for role, s in served.items()}}}
    from compliance.generation import pick_device

    dev, dtype = pick_device(device)
    if backend == "vllm":
        from compliance.generation import vllm_backend

        name, version = vllm_backend.BACKEND_NAME, vllm_backend.backend_version()
    else:
        from compliance.generation import BACKEND_NAME, backend_version

        name, version = BACKEND_NAME, backend_version()
    return {"backend": name, "backend_version": version, "device": dev, "dtype": str(dtype).replace("torch.", "")}


def judge_report(judge_obj: "Judge") -> dict:
    """The report's ``judge`` section: identity, rules, options, and the shipped validation figures.

    Validation figures come from the package (measured once against human labels and checked by
    a test), never from data present at build time, so every report of a judge version carries the
    same figures; ``validation`` is None for a judge without shipped figures (a model judge).
    """
    from compliance.judges import shipped_validation

    info = judge_obj.describe()
    validation = shipped_validation(judge_obj.name)
    info["validation"] = validation if validation and validation.get("judge_version") == judge_obj.version else None
    return info


def adapt(base: str, data: Path, out: Path, steps: int = 30, lr: float = 2e-5, seed: int = 0,
          max_length: int = 256, batch_size: int = 4, device: Optional[str] = None, overwrite: bool = False,
          progress: bool = True):
    """Fine-tune ``base`` on ``data`` (JSONL) into ``out``; see :func:`compliance.adapt.finetune`."""
    from compliance.adapt import TrainConfig, finetune
    from compliance.models import resolve_model_ref

    config = TrainConfig(steps=steps, lr=lr, seed=seed, max_length=max_length, batch_size=batch_size)
    with Reporter(enabled=progress) as reporter:
        with reporter.stage(f"Resolve base: {_short(base)}"):
            record = resolve_model_ref(base)
        with reporter.stage("Fine-tune", total=steps) as stage:
            result = finetune(record, Path(data), Path(out), config, device=device, overwrite=overwrite,
                              on_step=lambda step, loss: stage.set(step, f"Fine-tune (loss {loss:.3f})"))
    return result


def keygen(out_dir: Path, name: Optional[str] = None, **kwargs):
    """Create a signing key folder; see :func:`compliance.signing.keygen`."""
    from compliance.signing import DEMO_NAME, keygen as _keygen

    return _keygen(out_dir, name=name or DEMO_NAME, **kwargs)


def sign(report_dir: Path, keys: Path, tsa: Optional[str] = None):
    """Sign the report in ``report_dir``; see :func:`compliance.signing.sign_report`."""
    from compliance.signing import sign_report

    return sign_report(report_dir, keys, tsa=tsa)


def verify(path: Path, keys_dir: Optional[Path] = None, key: Optional[Path] = None, trust: Optional[Path] = None,
           models=(), tsa_trust: Optional[Path] = None, at: Optional[datetime] = None,
           revoked_at: Optional[datetime] = None):
    """Verify a signed report; see :func:`compliance.signing.verify_report`."""
    from compliance.signing import verify_report

    return verify_report(path, keys_dir=keys_dir, key=key, trust=trust, models=models, tsa_trust=tsa_trust, at=at,
                         revoked_at=revoked_at)


def card(report_dir: Path, model_dir: Optional[Path] = None, repo: Optional[str] = None, create_pr: bool = True,
         revision: Optional[str] = None, report_url: Optional[str] = None, token: Optional[str] = None):
    """Write a report's results into a model card; see :mod:`compliance.card`.

    Args:
        report_dir: the report folder.
        model_dir: a local model folder (its README.md is rewritten in place) ...
        repo: ... or a Hub repository ``org/name`` (a pull request unless ``create_pr`` is False).
    """
    from compliance.card import update_hub_card, update_local_card

    if (model_dir is None) == (repo is None):
        raise ComplianceError("give exactly one of model_dir or repo")
    if model_dir is not None:
        return update_local_card(report_dir, model_dir, report_url=report_url)
    return update_hub_card(report_dir, repo, create_pr=create_pr, revision=revision, token=token,
                           report_url=report_url)


def compare(reports: list[Path], out_dir: Optional[Path] = None, keys_dir: Optional[Path] = None,
            key: Optional[Path] = None, trust: Optional[Path] = None, pdf: bool = True):
    """Compare several reports side by side; see :func:`compliance.compare.compare_reports`."""
    from compliance.compare import compare_reports

    return compare_reports(reports, out_dir=out_dir, keys_dir=keys_dir, key=key, trust=trust, pdf=pdf)


def audit(report_dir: Path, size: Optional[int] = None, seed: int = 0, out_dir: Optional[Path] = None):
    """Draw a report's audit sample and write its labelling sheet; see :func:`compliance.audit.draw_audit`."""
    from compliance.audit import draw_audit

    return draw_audit(report_dir, size=size, seed=seed, out_dir=out_dir)


def fold_audit(report_dir: Path, labels: Path, auditor: Optional[str] = None, keys: Optional[Path] = None,
               partial: bool = False, progress: bool = False):
    """Fold a person's labels back into the report; see :func:`compliance.audit.fold_labels`."""
    from compliance.audit import fold_labels

    return fold_labels(report_dir, labels, auditor=auditor, keys=keys, partial=partial, progress=progress)


def _short(ref: str) -> str:
    """A model reference short enough for a progress line: the last path component."""
    name = Path(ref.rstrip("/")).name if ("/" in ref and Path(ref).exists()) else ref
    return name if len(name) <= 40 else name[:39] + "…"


def _slug(model_id: str) -> str:
    name = Path(model_id.rstrip("/")).name or "model"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
