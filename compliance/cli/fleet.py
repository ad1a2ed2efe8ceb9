"""Command that evaluates many models on Ray: fleet.

It takes every option of ``compliance report`` (policy, suite, judges, backend, keys, store,
limit, ...): its signature is built from the report command's own parameters, so the two
cannot drift apart. Only ``--out`` (the fleet's folder) and ``--model`` (each model is served
under its own id) are the fleet's own.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out
from compliance.cli.evaluate import report, report_request

#: ``compliance report`` parameters a fleet does not take: MODEL (a fleet has many), --out (the
#: fleet has its own folder) and --model (a server serves each fine-tune under its own id).
_NOT_FROM_REPORT = ("model", "out_dir", "served_model")

_VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def fleet(
    models: Optional[List[str]] = typer.Argument(None, help="Models to evaluate: Hub ids, folders, or the built-in id."),
    models_file: Optional[Path] = typer.Option(None, "--models", help="A file with one model id or folder a line."),
    finetunes_of: Optional[str] = typer.Option(None, "--finetunes-of",
                                               help="Discover the Hub's descendants of this base (org/name)."),
    relation: str = typer.Option("finetune", "--relation",
                                 help="With --finetunes-of: finetune, adapter, quantized or merge."),
    search: Optional[str] = typer.Option(None, "--search", help="With --finetunes-of: only ids containing this text."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", help="With --finetunes-of: only models with this tag; repeatable."),
    top: Optional[int] = typer.Option(None, "--top", help="With --finetunes-of: the N most downloaded."),
    fleet_out: Optional[Path] = typer.Option(None, "--out", "-o",
                                             help="Fleet folder: fleet.json/.html/.pdf/.csv/.parquet, drift-map.png, "
                                                  "models/<name>/ reports (default reports/fleet)."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="Ray cluster address (default $RAY_ADDRESS; unset: Ray embedded here)."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs of the embedded Ray (default: all)."),
    cpus_per_model: float = typer.Option(1.0, "--cpus-per-model", help="CPUs each model task asks for."),
    gpus_per_model: Optional[float] = typer.Option(None, "--gpus-per-model",
                                                   help="GPUs each model task asks for (default 1 on a cluster with GPUs "
                                                        "for a model that runs there; 0 with --backend openai)."),
    retries: int = typer.Option(2, "--retries", help="Retries of a transient failure or a dead worker."),
    **report_options: Any,
) -> None:
    """Evaluate many models against their bases on Ray; write the drift map, the counts and every report.

    Each model gets the signed report folder `compliance report` writes (under OUT/models/); each base answers the suite once for all its fine-tunes. A model that fails is recorded with its one-line error and the rest go on; the exit status is 1 when any failed. Run again with the same settings, a killed fleet skips the models it finished.

    Example: compliance fleet ./ft-a ./ft-b ./ft-c --policy healthcare --out reports/fleet

    From the Hub: compliance fleet --finetunes-of meta-llama/Llama-3.1-8B-Instruct --tag medical --top 100 --address auto
    """
    from compliance.constants import reports_dir
    from compliance.fleet import FleetRequest, discover_finetunes, read_models_file, run_fleet

    listed = list(models or []) + (read_models_file(models_file) if models_file else [])
    discovery = None
    if finetunes_of:
        discovery = discover_finetunes(finetunes_of, relation=relation, search=search, tags=tuple(tag or ()), top=top)
        out.print(f"Discovered {len(discovery.models)} {relation}s of {discovery.base} on {discovery.endpoint}",
                  highlight=False)
    elif search or tag or top is not None or relation != "finetune":
        from compliance.errors import ComplianceError

        raise ComplianceError("--relation, --search, --tag and --top refine --finetunes-of BASE: add it, or drop them")
    template = report_request("(each fleet model)", out_dir=None, served_model=None, **report_options)
    result = run_fleet(FleetRequest(
        models=tuple(listed), report=template, out_dir=fleet_out or reports_dir() / "fleet", discovery=discovery,
        address=address, retries=retries, cpus_per_model=cpus_per_model, gpus_per_model=gpus_per_model,
        num_cpus=num_cpus, progress=not report_options["quiet"]))
    _print_summary(result.document)
    for kind, path in result.files.items():
        out.print(f"{kind:8} {path}", highlight=False)
    if result.failed:
        sys.exit(1)  # main() runs click with standalone_mode=False, which would swallow typer.Exit


def _print_summary(doc: dict) -> None:
    table = Table("model", "status", "verdict", "significant changes", title="Fleet")
    for m in doc["models"]:
        sig = [f"{c['metric'].removesuffix('_rate')} · {c['instrument']} {100 * c['diff']:+.1f} pp"
               for c in m["cells"] if c["significant"]]
        verdict = f"[{_VERDICT_STYLE[m['verdict']]}]{m['verdict']}[/]" if m["verdict"] else "-"
        table.add_row(m["model"], m["status"] + (" (kept)" if m["resumed"] else ""), verdict,
                      "; ".join(sig) if m["status"] == "ok" else (m["error"] or ""))
    out.print(table)
    c = doc["counts"]
    out.print(f"{c['ok']} of {c['models']} reported, {c['failed']} failed; verdicts: pass {c['verdicts']['pass']}, "
              f"fail {c['verdicts']['fail']}, inconclusive {c['verdicts']['inconclusive']}; degraded on at least one "
              f"instrument: {c['degraded']}, improved: {c['improved']}, improved on one and degraded on another: "
              f"{c['mixed']}", highlight=False)


def _signature() -> inspect.Signature:
    """``fleet``'s own parameters followed by every ``compliance report`` parameter a fleet takes."""
    own = [p for p in inspect.signature(fleet, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    shared = [p for name, p in inspect.signature(report, eval_str=True).parameters.items()
              if name not in _NOT_FROM_REPORT]
    clash = names & {p.name for p in shared}
    assert not clash, f"fleet and report both define {clash}"
    return inspect.Signature([*own, *shared])


fleet.__signature__ = _signature()  # type: ignore[attr-defined]
app.command(name="fleet")(fleet)
