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

from compliance.constants import DEFAULT_JUDGE, ENV_OPENAI_API_KEY, reports_dir, signing_keys_dir
from compliance.errors import ComplianceError
from compliance.io import atomic_write_json
from compliance.progress import Reporter
from compliance.records import GenConfig, Judgement, Lineage, ModelRecord, Response, Suite

if TYPE_CHECKING:
    from compliance.generation.openai_backend import OpenAIClient
    from compliance.judges import Judge
    from compliance.store import ResponseStore

__all__ = ["ReportResult", "adapt", "card", "compare", "evaluate_model", "keygen", "resolve", "run_report", "sign",
           "verify"]


@dataclass
class ReportResult:
    """Where the report went, and the report itself."""

    out_dir: Path
    json_path: Path
    pdf_path: Optional[Path]
    report: dict


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


def evaluate_model(
    record: ModelRecord,
    suite: Suite,
    config: GenConfig,
    judge_name: str = DEFAULT_JUDGE,
    device: Optional[str] = None,
    reporter: Optional[Reporter] = None,
    label: str = "model",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    judge_options: Optional[dict[str, str]] = None,
    judge: Optional["Judge"] = None,
    store: Optional["ResponseStore"] = None,
    counts: Optional[dict[str, int]] = None,
    backend: str = "transformers",
    server: Optional["OpenAIClient"] = None,
    served_model: Optional[str] = None,
) -> dict[str, tuple[Judgement, Response]]:
    """Generate a response to every suite item with ``record`` and judge it.

    ``judge`` (an instance) takes precedence over ``judge_name``/``judge_options``, so a model-based
    judge is loaded once for both models.

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
        ``item_id -> (judgement, response)``.

    Raises:
        ComplianceError: an unknown backend, or a backend that cannot run (see its module).
    """
    from compliance.judges import get_judge, judge_responses

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
    responses = [by_id[item.id] for item in suite.items]
    judge = judge or get_judge(judge_name, judge_options)
    judgements = judge_responses(judge, suite.items, responses)
    return {j.item_id: (j, by_id[j.item_id]) for j in judgements}


def run_report(
    model: str,
    policy: str = "healthcare",
    base: Optional[str] = None,
    out_dir: Optional[Path] = None,
    max_new_tokens: int = 64,
    batch_size: Optional[int] = None,
    limit: Optional[int] = None,
    seed: int = 0,
    device: Optional[str] = None,
    judge: str = DEFAULT_JUDGE,
    judge_options: Optional[dict[str, str]] = None,
    pdf: bool = True,
    allow_pickle: bool = False,
    progress: bool = True,
    suite: Optional[list[str]] = None,
    data_dir: Optional[Path] = None,
    accept_licence: Optional[list[str]] = None,
    keys: Optional[Path] = None,
    trust_remote_code: bool = False,
    store: "Path | str | bool | None" = None,
    backend: str = "transformers",
    base_url: Optional[str] = None,
    served_model: Optional[str] = None,
    served_base_model: Optional[str] = None,
    base_model_url: Optional[str] = None,
    concurrency: int = 8,
    api_key_env: str = ENV_OPENAI_API_KEY,
    stop: Optional[list[str]] = None,
) -> ReportResult:
    """Evaluate ``model`` and its base on the policy's suite and write ``report.json`` (+ ``report.pdf``).

    Args:
        model: a local model folder, the built-in model's id, or a Hub id ``org/name[@revision]``.
        policy: a shipped policy name or a policy YAML path.
        base: compare with this model instead of the declared base (``"root"``: the lineage's root).
        out_dir: output folder; defaults to ``reports/<model name>``.
        max_new_tokens: generation length per prompt.
        batch_size: prompts per batch; chosen from the device when None.
        limit: run a stratified sample of this many suite items.
        seed: seed for sampling and generation.
        device: ``cpu``/``cuda``; automatic when None.
        judge: registered judge name.
        judge_options: the judge's construction options (``{"model": PATH, "labels": "A=refusal,B=compliance"}``).
        pdf: also render ``report.pdf``.
        allow_pickle: allow loading pickle weight files.
        progress: show progress on stderr.
        suite: benchmark or suite names to run instead of the policy's ``suite`` (e.g. ``["medical"]``).
        data_dir: folder laid out like ``../shared/benchmarks/`` for offline runs
            (default ``$COMPLIANCE_DATA_DIR``, else download from the pinned sources into the cache).
        accept_licence: opt-in benchmarks (unconfirmed licence) to run; the report records the acceptance.
        keys: key folder to sign the report with (``$COMPLIANCE_SIGNING_KEYS`` when None);
            unsigned when neither is set.
        trust_remote_code: allow a Hub model's own Python code to run (never by default).
        store: the response store file (``$COMPLIANCE_STORE`` or ``cache_dir()/responses.sqlite3``
            when None); False runs without one. Stored responses are reused, new ones committed as
            they are produced, so a killed run resumes where it stopped.
        backend: ``transformers`` (default: both models run here), ``openai`` (an OpenAI-compatible
            server at ``base_url`` answers; nothing is loaded here, lineage still comes from ``model``)
            or ``vllm`` (both models run here in vLLM; needs ``pip install 'compliance[vllm]'``).
        base_url: the server's base URL, e.g. ``http://localhost:8000/v1`` (``openai`` only).
        served_model: the name the server serves ``model`` under (default: the model's id).
        served_base_model: the name the server serves the base under (default: the base's id).
        base_model_url: the base URL of the server that serves the base, when it is not ``base_url``
            (``openai`` only; the same API key and concurrency apply).
        concurrency: requests in flight at once (``openai`` only).
        api_key_env: environment variable holding the server's API key, sent as a bearer token
            when set; never recorded.
        stop: strings that end an answer where they appear (not kept in the answer), as OpenAI's ``stop``.

    Raises:
        ComplianceError: bad input (each names the input and the fix), before any model work
            where it can be checked up front.
    """
    from compliance.judges import get_judge
    from compliance.policy import evaluate, load_policy
    from compliance.report.build import build_report, environment
    from compliance.stats import compare
    from compliance.suites import load_suite

    started = datetime.now(timezone.utc)
    if max_new_tokens < 1:
        raise ComplianceError(f"--max-new-tokens {max_new_tokens} must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise ComplianceError(f"--batch-size {batch_size} must be at least 1")
    if stop is not None and any(not s for s in stop):
        raise ComplianceError("--stop '' is empty: give the text that ends an answer, or drop the option")
    servers = _backend_servers(backend, base_url, served_model, served_base_model, base_model_url, concurrency,
                               api_key_env)
    policy_obj = load_policy(policy)  # fail fast on a bad policy, before any model work
    keys_dir = Path(keys) if keys else signing_keys_dir()
    if keys_dir is not None:
        from compliance.signing import load_signing_keys

        load_signing_keys(keys_dir)  # fail fast on missing keys, before any model work
    judge_obj = get_judge(judge, judge_options)
    from compliance.store import open_store

    response_store = open_store(store)  # fail fast on an unusable store file, before any model work
    with ExitStack() as cleanup, Reporter(enabled=progress) as reporter:
        if response_store is not None:
            cleanup.callback(response_store.close)
        with reporter.stage("Resolve model and base"):
            lineage = resolve(model, base)
        if servers is not None:
            with reporter.stage("Check the server's models"):  # fail fast, before any generation
                served = {"model": servers["model"].served_model(served_model or lineage.model.id, "--model"),
                          "base": servers["base"].served_model(served_base_model or lineage.base.id, "--base-model")}
        elif "hub" in (lineage.model.kind, lineage.base.kind):  # a server needs no local weights
            from compliance.hub import download_model

            with reporter.stage("Download from the Hub"):
                lineage.model = download_model(lineage.model, allow_pickle, trust_remote_code)
                lineage.base = download_model(lineage.base, allow_pickle, trust_remote_code)
        with reporter.stage("Load suite"):
            suite = load_suite(suite or policy_obj.data["suite"], limit=limit, seed=seed, data_dir=data_dir,
                               accept_licences=accept_licence or ())
        config = GenConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                           stop=tuple(s for s in (stop or ()) if s))
        base_counts: dict[str, int] = {}
        model_counts: dict[str, int] = {}
        names = {"base": served["base"].name, "model": served["model"].name} if servers is not None else {}
        server_of = servers or {}
        base_results = evaluate_model(lineage.base, suite, config, judge, device, reporter, "base", allow_pickle,
                                      trust_remote_code, judge=judge_obj, store=response_store,
                                      counts=base_counts, backend=backend, server=server_of.get("base"),
                                      served_model=names.get("base"))
        model_results = evaluate_model(lineage.model, suite, config, judge, device, reporter, "fine-tune",
                                       allow_pickle, trust_remote_code, judge=judge_obj, store=response_store,
                                       counts=model_counts, backend=backend, server=server_of.get("model"),
                                       served_model=names.get("model"))
        generation = _generation_section(backend, device, servers, served if servers is not None else None)
        dev = generation["device"]
        generation.update(config=asdict(config),
                          reused={"base": base_counts["reused"], "model": model_counts["reused"]},
                          generated={"base": base_counts["generated"], "model": model_counts["generated"]})
        with reporter.stage("Statistics and policy"):
            findings = compare(suite.items, [j for j, _ in base_results.values()],
                               [j for j, _ in model_results.values()])
            verdict = evaluate(findings, policy_obj)
        finished = datetime.now(timezone.utc)
        report = build_report(
            lineage=lineage,
            suite=suite,
            generation=generation,
            judge=judge_report(judge_obj),
            base_results=base_results,
            model_results=model_results,
            findings=findings,
            verdict=verdict,
            policy_doc=policy_obj.data,
            env=environment(dev, seed, started, finished),
            created_at=finished,
        )
        out = Path(out_dir) if out_dir else reports_dir() / _slug(lineage.model.id)
        json_path = atomic_write_json(out / "report.json", report)
        pdf_path = None
        if pdf:
            from compliance.report.render import render_pdf

            with reporter.stage("Render PDF"):
                pdf_path = render_pdf(report, out / "report.pdf")
        from compliance.io import atomic_write_text
        from compliance.report.render import render_html

        atomic_write_text(out / "report.html", render_html(report))  # same data as the PDF, for browsers
        if keys_dir is not None:
            with reporter.stage("Sign report"):
                sign(out, keys_dir)
    return ReportResult(out_dir=out, json_path=json_path, pdf_path=pdf_path, report=report)


def _backend_servers(backend: str, base_url: Optional[str], served_model: Optional[str],
                     served_base_model: Optional[str], base_model_url: Optional[str], concurrency: int,
                     api_key_env: str) -> Optional[dict[str, "OpenAIClient"]]:
    """Check the backend options together; for ``openai`` the server clients by role (``model``,
    ``base``: one client when both are served at one address), else None.

    Raises:
        ComplianceError: an unknown backend, server options without ``--backend openai``, ``openai``
            without a base URL, a malformed URL or concurrency, or ``vllm`` without vLLM installed.
    """
    import os

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


def sign(report_dir: Path, keys: Path):
    """Sign the report in ``report_dir``; see :func:`compliance.signing.sign_report`."""
    from compliance.signing import sign_report

    return sign_report(report_dir, keys)


def verify(path: Path, keys_dir: Optional[Path] = None, key: Optional[Path] = None, trust: Optional[Path] = None,
           models=()):
    """Verify a signed report; see :func:`compliance.signing.verify_report`."""
    from compliance.signing import verify_report

    return verify_report(path, keys_dir=keys_dir, key=key, trust=trust, models=models)


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


def _short(ref: str) -> str:
    """A model reference short enough for a progress line: the last path component."""
    name = Path(ref.rstrip("/")).name if ("/" in ref and Path(ref).exists()) else ref
    return name if len(name) <= 40 else name[:39] + "…"


def _slug(model_id: str) -> str:
    name = Path(model_id.rstrip("/")).name or "model"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
