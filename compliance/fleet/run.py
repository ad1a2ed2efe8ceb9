"""Run a fleet on Ray: one task per model, each base's responses generated once.

Ray, not a scheduler of our own, places the work:

1. a *resolve* task per model finds its base (lineage only: Hub metadata, or the digests of a folder);
2. a *base* task per distinct base generates its responses once (into the response store) and
   hands them on through Ray's object store;
3. a *model* task per model (depending on its base's task) seeds its store with the base's
   responses, then runs :func:`compliance.api.run_report` on its own
   :class:`~compliance.request.ReportRequest` in a scratch folder and returns the folder's files,
   which the driver writes under ``OUT/models/``. Workers need share no disk with the driver, or
   with each other.

Resources come from the backend: a model task asks for ``num_gpus`` (1 by default) when the
cluster has GPUs and the model runs locally (``transformers``, ``vllm``), and for CPUs only
with ``--backend openai``. Transient failures (the Hub unreachable, a dropped connection, a
busy store) are retried by Ray, and so are workers that die; every other failure is recorded
with its one-line reason and the fleet goes on. ``fleet.json`` is rewritten after every
finished model, so a killed fleet run again with the same settings skips the models it finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from compliance.errors import ComplianceError, HubUnreachableError
from compliance.fleet.build import FleetEntry, request_summary
from compliance.progress import Reporter

if TYPE_CHECKING:
    from compliance.api import RoleResponses
    from compliance.fleet.discovery import Discovery
    from compliance.request import ReportRequest
    from compliance.store import ResponseStore

__all__ = ["FleetError", "FleetRequest", "TransientError", "run_models"]


class FleetError(ComplianceError):
    """A fleet cannot start: no models, no Ray, a cluster that cannot be reached or cannot fit a task."""


class TransientError(ComplianceError):
    """A failure worth retrying (the Hub unreachable, a dropped connection, a busy store): Ray retries it."""


@dataclass(frozen=True)
class FleetRequest:
    """A fleet: the models, the report request each of them gets, and where it runs.

    Attributes:
        models: model references (Hub ids, folders, the built-in id), in the order given.
        report: the request every model gets (its ``models.model`` and ``output.out_dir`` are
            replaced per model; see :meth:`~compliance.request.ReportRequest.with_model`).
        out_dir: the fleet's folder: ``fleet.json`` and the rest, and ``models/<name>/`` per report.
        discovery: the Hub query the models came from, if they came from one.
        address: a Ray cluster's address; None for ``$RAY_ADDRESS`` or, unset, an embedded local Ray.
        retries: how many times a transient failure or a dead worker is retried.
        cpus_per_model: CPUs each task asks for.
        gpus_per_model: GPUs each model task asks for; None for 1 on a cluster with GPUs when the
            model runs here (not ``--backend openai``), else 0.
        num_cpus: CPUs of an embedded local Ray (default: the machine's).
        progress: show models done, running and failed, with an ETA.
    """

    models: tuple[str, ...]
    report: "ReportRequest"
    out_dir: Path
    discovery: Optional["Discovery"] = None
    address: Optional[str] = None
    retries: int = 2
    cpus_per_model: float = 1.0
    gpus_per_model: Optional[float] = None
    num_cpus: Optional[int] = None
    progress: bool = True


# --- what runs in the workers ----------------------------------------------------------------


class _Status:
    """A Ray actor the tasks tell when they start and stop, so the driver can show what is running."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.attempts: dict[str, int] = {}

    def started(self, key: str) -> None:
        self.running[key] = time.time()
        self.attempts[key] = self.attempts.get(key, 0) + 1

    def finished(self, key: str) -> None:
        self.running.pop(key, None)

    def snapshot(self) -> tuple[list[str], dict[str, int]]:
        return sorted(self.running), dict(self.attempts)


@contextmanager
def _tracked(status: Any, key: str) -> Iterator[None]:
    """Tell ``status`` a task started and stopped; turn transient failures into :class:`TransientError`."""
    status.started.remote(key)
    try:
        yield
    except TransientError:
        raise
    except Exception as exc:
        reason = _transient_reason(exc)
        if reason is None:
            raise
        raise TransientError(reason) from exc
    finally:
        status.finished.remote(key)


def _transient_reason(exc: BaseException) -> Optional[str]:
    """Why ``exc`` may pass if tried again, or None when it will not."""
    import sqlite3

    from huggingface_hub import constants as hf_constants

    if isinstance(exc, HubUnreachableError) and not hf_constants.HF_HUB_OFFLINE:
        return str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause):
        return f"the response store is busy ({cause})"
    return None


def _resolve_task(model: str, base: Optional[str], status: Any) -> dict[str, str]:
    from compliance import api

    with _tracked(status, f"resolve:{model}"):
        lineage = api.resolve(model, base)
        return {"base": lineage.base.id, "base_revision": lineage.base.revision}


def _base_task(request: "ReportRequest", status: Any) -> "RoleResponses":
    from compliance import api

    with _tracked(status, f"base:{request.models.model}"):
        return api.generate_for(request, "base")


def _model_task(request: "ReportRequest", base: "RoleResponses", status: Any) -> dict[str, Any]:
    """Report on one model; returns the report, its folder's files, and the time it took."""
    from compliance import api

    with _tracked(status, f"model:{request.models.model}"):
        started = time.perf_counter()
        scratch = Path(tempfile.mkdtemp(prefix="compliance-fleet-"))
        try:
            with _seeded(request, base) as seeded:
                result = api.run_report(replace(seeded, output=replace(seeded.output, out_dir=scratch / "report")))
            files = {p.name: p.read_bytes() for p in sorted(result.out_dir.iterdir()) if p.is_file()}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"report": result.report, "files": files, "seconds": round(time.perf_counter() - started, 3)}


def seed_store(store: "ResponseStore", given: "RoleResponses") -> int:
    """Put ``given``'s responses that ``store`` lacks into it; returns how many were added."""
    have = store.get_many(given.key, given.items)
    added = 0
    for item in given.items:
        if item.id not in have and item.id in given.responses:
            store.put(given.key, item, given.responses[item.id])
            added += 1
    return added


@contextmanager
def _seeded(request: "ReportRequest", base: "RoleResponses") -> Iterator["ReportRequest"]:
    """``request`` with a store that holds ``base``'s responses: its own store, or (``--no-store``) a
    scratch one that goes when the report is written, so the base is still generated only once."""
    from compliance.store import open_store

    scratch = None
    if request.store is False:
        scratch = Path(tempfile.mkdtemp(prefix="compliance-fleet-store-"))
        request = replace(request, store=scratch / "responses.sqlite3")
    try:
        store = open_store(request.store)  # a file here: None, True or a path, never False
        assert store is not None
        with store:
            seed_store(store, base)
        yield request
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# --- the driver ------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise FleetError("compliance fleet runs on Ray, which is not installed: pip install 'compliance[fleet]' "
                         "(make install does)") from None
    return ray


def one_line(exc: BaseException) -> str:
    """The one-line reason a task failed, from what Ray raised in the driver."""
    ray = _import_ray()
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "out of memory: Ray's memory monitor stopped the task; give the model a node with more memory"
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "the worker process died (killed, or out of memory) on every attempt"
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return "cancelled"
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, ComplianceError):
        text = str(cause)
    elif isinstance(cause, MemoryError) or type(cause).__name__ == "OutOfMemoryError":  # torch.cuda's
        text = f"out of memory: {cause}"
    else:
        text = f"{type(cause).__name__}: {cause}"
    return " ".join(text.split()) or type(cause).__name__


def _slug(model: str, taken: set[str]) -> str:
    path = Path(model.rstrip("/"))
    name = path.name if path.exists() else model.replace("/", "--").replace("@", "--")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".") or "model"
    slug, n = name, 1
    while slug in taken:
        n += 1
        slug = f"{name}-{n}"
    taken.add(slug)
    return slug


def _previous_entries(out_dir: Path, summary_sha: str) -> dict[str, FleetEntry]:
    """The models an earlier run of this fleet (same settings) finished, with their reports on disk."""
    path = out_dir / "fleet.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        models, sha = doc["models"], doc["request"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise FleetError(f"{path} is not a fleet.json that compliance fleet wrote: choose another --out, "
                         "or move the file away") from None
    if sha != summary_sha:
        return {}  # other settings: every report is made again
    kept = {}
    for m in models:
        if m.get("status") == "ok" and m.get("report_dir") and (out_dir / m["report_dir"] / "report.json").is_file():
            known = {k: v for k, v in m.items() if k in FleetEntry.__dataclass_fields__}
            kept[m["model"]] = replace(FleetEntry(**known), resumed=True)
    return kept


def _cluster_info(ray: Any, address: Optional[str]) -> dict[str, Any]:
    resources = ray.cluster_resources()
    kept = {k: v for k, v in sorted(resources.items()) if not k.startswith("node:") and "bundle_group" not in k}
    return {"name": "ray", "version": ray.__version__, "address": address or "embedded local Ray",
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "resources": kept}


def task_resources(request: FleetRequest, cluster: dict[str, float]) -> dict[str, float]:
    """What each model task asks Ray for: GPUs for a model that runs here on a GPU cluster, else CPUs.

    Raises:
        FleetError: a task that asks for more than the cluster has (it would wait for ever).
    """
    backend = request.report.backend.name
    if request.cpus_per_model <= 0:
        raise FleetError(f"--cpus-per-model {request.cpus_per_model:g} must be above 0")
    if backend == "openai":
        gpus = 0.0
    elif request.gpus_per_model is not None:
        gpus = float(request.gpus_per_model)
    else:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 and request.report.generation.device != "cpu" else 0.0
    if gpus > cluster.get("GPU", 0):
        raise FleetError(f"each model task asks for {gpus:g} GPU(s) and the Ray cluster has "
                         f"{cluster.get('GPU', 0):g}: lower --gpus-per-model, or connect to a cluster with GPUs "
                         "(--address)")
    if request.cpus_per_model > cluster.get("CPU", 0):
        raise FleetError(f"each model task asks for {request.cpus_per_model:g} CPU(s) and the Ray cluster has "
                         f"{cluster.get('CPU', 0):g}: lower --cpus-per-model")
    return {"num_cpus": request.cpus_per_model, "num_gpus": gpus}


@contextmanager
def _ray_session(request: FleetRequest) -> Iterator[Any]:
    """Ray, connected: to ``address``/``$RAY_ADDRESS``, else an embedded local instance (shut down after)."""
    import logging

    ray = _import_ray()
    if ray.is_initialized():  # the caller's own Ray session
        yield ray
        return
    address = request.address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from an embedded run
    # Quiet: the progress display is the fleet's own, and task failures are recorded, not logged.
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    try:
        if address:
            if request.num_cpus is not None:
                raise FleetError("--num-cpus sets up an embedded local Ray and cannot apply to the cluster at "
                                 f"{address}: drop it (the cluster's nodes say what they have)")
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=request.num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "an embedded local Ray"
        raise FleetError(f"could not start {where} ({' '.join(str(exc).split())}): check --address / "
                         "$RAY_ADDRESS, or unset both to run on this machine") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class _Run:
    """The driver's state while a fleet runs."""

    entries: dict[str, FleetEntry]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> its report (ok models)
    bases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (id, revision) -> base info
    base_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # model -> its base's (id, revision)


def run_models(request: FleetRequest, on_update: Any) -> tuple[dict[str, Any], _Run]:
    """Evaluate every model of ``request`` on Ray; returns the executor's description and the run.

    ``on_update(run, executor)`` is called after every model that finishes (and at the start), so
    the caller can keep ``fleet.json`` current.

    Raises:
        FleetError: Ray is missing or the cluster cannot be reached or cannot fit a task.
        ComplianceError: a setting that is bad for every model (checked before any task starts).
    """
    from compliance import api

    api.check_request(request.report)  # a bad policy, keys, judge or backend: one line, before Ray starts
    summary = request_summary(request.report)
    out_dir = Path(request.out_dir)
    previous = _previous_entries(out_dir, summary["sha256"])
    taken = {Path(e.report_dir).name for e in previous.values() if e.report_dir}
    run = _Run(entries={})
    for model in request.models:
        run.entries[model] = previous.get(model) or FleetEntry(model=model, report_dir=f"models/{_slug(model, taken)}")
    downloads = {m.id: m.downloads for m in request.discovery.models} if request.discovery else {}
    for model, entry in run.entries.items():
        entry.downloads = downloads.get(model, entry.downloads)
    for model, entry in run.entries.items():
        if entry.resumed:
            run.reports[model] = json.loads((out_dir / entry.report_dir / "report.json").read_text())  # type: ignore[operator]
    todo = [m for m, e in run.entries.items() if not e.resumed]
    worker_request = replace(request.report, output=replace(request.report.output, progress=False))

    with _ray_session(request) as ray:
        executor = _cluster_info(ray, request.address or os.environ.get("RAY_ADDRESS"))
        resources = task_resources(request, executor["resources"])
        executor.update(task_resources=resources, retries=request.retries)
        on_update(run, executor)
        status = ray.remote(num_cpus=0)(_Status).remote()
        retry = {"max_retries": request.retries, "retry_exceptions": [TransientError]}
        resolve = ray.remote(_resolve_task).options(num_cpus=min(1.0, request.cpus_per_model), num_gpus=0, **retry)
        base_task = ray.remote(_base_task).options(**resources, **retry)
        model_task = ray.remote(_model_task).options(**resources, **retry)
        pending: dict[Any, tuple[str, Any]] = {}
        base_refs: dict[tuple[str, str], Any] = {}
        for model in todo:
            ref = resolve.remote(model, request.report.models.base, status)
            pending[ref] = ("resolve", model)
        with Reporter(enabled=request.progress, eta=True) as reporter, \
                reporter.stage("Models", total=len(run.entries)) as stage:
            stage.advance(len(run.entries) - len(todo))

            def show() -> None:
                running, _ = ray.get(status.snapshot.remote())
                n_running = sum(1 for key in running if key.startswith("model:"))
                n_base = sum(1 for key in running if key.startswith("base:"))
                counts = {s: sum(1 for e in run.entries.values() if e.status == s) for s in ("ok", "failed")}
                stage.describe(f"Models: {counts['ok']} done · {n_running} running"
                               + (f" · {n_base} base{'s' if n_base != 1 else ''} generating" if n_base else "")
                               + f" · {counts['failed']} failed")

            while pending:
                show()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    kind, model = pending.pop(ref)
                    entry = run.entries.get(model)
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001  (every failure is recorded; the fleet goes on)
                        if kind == "base":
                            run.bases[model]["status"], run.bases[model]["error"] = "failed", one_line(exc)
                            continue
                        assert entry is not None
                        entry.status, entry.error = "failed", one_line(exc)
                        stage.advance()
                        on_update(run, executor)
                        continue
                    if kind == "resolve":
                        assert entry is not None
                        entry.base = value["base"]
                        key = run.base_of[model] = (value["base"], value["base_revision"])
                        if key not in base_refs:
                            model_request = worker_request.with_model(model)
                            base_refs[key] = base_task.remote(model_request, status)
                            run.bases[key] = {"model": key[0], "revision": key[1], "status": "pending",
                                              "error": None, "for": model}
                            pending[base_refs[key]] = ("base", key)
                        ref2 = model_task.remote(worker_request.with_model(model), base_refs[key], status)
                        pending[ref2] = ("model", model)
                    elif kind == "base":
                        run.bases[model].update(status="ok", generated=value.counts.get("generated"),
                                                reused=value.counts.get("reused"), n_items=len(value.items))
                    else:
                        assert entry is not None
                        _keep_report(out_dir, entry, value)
                        run.reports[model] = value["report"]
                        stage.advance()
                        on_update(run, executor)
            _, attempts = ray.get(status.snapshot.remote())
            for model, entry in run.entries.items():
                if entry.resumed:
                    continue
                entry.attempts = {"resolve": attempts.get(f"resolve:{model}", 0),
                                  "report": attempts.get(f"model:{model}", 0)}
                base = run.bases.get(run.base_of.get(model))  # type: ignore[arg-type]
                if entry.status == "failed" and base is not None and base["status"] == "failed":
                    entry.error = f"its base {base['model']} failed: {base['error']}"
            show()
    on_update(run, executor)
    return executor, run


def _keep_report(out_dir: Path, entry: FleetEntry, value: dict[str, Any]) -> None:
    """Write a finished model's report folder under the fleet's folder and fill in its entry."""
    from compliance.io import atomic_write_bytes

    folder = out_dir / str(entry.report_dir)
    if folder.exists():
        shutil.rmtree(folder)  # an earlier run's report of other settings
    for name, data in value["files"].items():
        atomic_write_bytes(folder / name, data)
    report = value["report"]
    entry.status, entry.error = "ok", None
    entry.verdict = report["summary"]["verdict"]
    entry.base = report["summary"]["base"]
    entry.seconds = value["seconds"]
    gen = report["generation"]
    entry.generation = {"reused": gen.get("reused"), "generated": gen.get("generated"),
                        "device": gen.get("device"), "backend": gen.get("backend")}
