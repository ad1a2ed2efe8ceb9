"""Population studies: many fine-tunes, each evaluated against its base, on Ray.

``compliance fleet`` takes models by name, from a file, or from the Hub (the descendants of a
base, :mod:`compliance.fleet.discovery`), builds one :class:`~compliance.request.ReportRequest`
per model, runs them as Ray tasks (:mod:`compliance.fleet.run`), and writes what a study
reports: the drift map, the counts, a table of every model (:mod:`compliance.fleet.outputs`).

Example:
    >>> from compliance.fleet import FleetRequest, run_fleet
    >>> from compliance.request import ModelSpec, ReportRequest
    >>> template = ReportRequest(models=ModelSpec("unused"), policy="general")
    >>> result = run_fleet(FleetRequest(models=("org/a", "org/b"), report=template, out_dir=Path("reports/fleet")))
    >>> result.document["counts"]["degraded"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from compliance.fleet.discovery import RELATIONS, DiscoveredModel, Discovery, discover_finetunes
from compliance.fleet.run import FleetError, FleetRequest, TransientError

__all__ = ["RELATIONS", "DiscoveredModel", "Discovery", "FleetError", "FleetRequest", "FleetResult",
           "TransientError", "discover_finetunes", "read_models_file", "run_fleet"]


@dataclass
class FleetResult:
    """Where the fleet's files went, and the fleet document (``fleet.json``)."""

    out_dir: Path
    document: dict[str, Any]
    files: dict[str, Path]

    @property
    def failed(self) -> int:
        """How many models failed (the CLI exits non-zero when any did)."""
        return int(self.document["counts"]["failed"])


def read_models_file(path: Path) -> list[str]:
    """The models listed in ``path``: one Hub id or folder a line; blank lines and ``#`` comments skipped.

    A relative folder is read relative to the file's own folder when it exists there.

    Raises:
        FleetError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"--models {path} cannot be read ({type(exc).__name__}): give a text file with one model "
                         "id or folder a line") from None
    models = []
    for line in text.splitlines():
        ref = line.split("#", 1)[0].strip()
        if not ref:
            continue
        beside = path.parent / ref
        models.append(str(beside.resolve()) if not Path(ref).is_absolute() and beside.is_dir() else ref)
    return models


def fleet_models(models: Iterable[str], discovery: Optional[Discovery] = None) -> tuple[str, ...]:
    """The fleet's models in order, each once: the given ones, then the discovered ones.

    Raises:
        FleetError: no model at all.
    """
    ordered = list(dict.fromkeys([*models, *(m.id for m in (discovery.models if discovery else []))]))
    if not ordered:
        if discovery is not None:
            raise FleetError(f"the Hub lists no {discovery.relation}s of {discovery.base} "
                             f"(filter {', '.join(discovery.filter)}{', search ' + discovery.search if discovery.search else ''}): "
                             "check the id, --relation, --search and --tag")
        raise FleetError("no models to evaluate: give MODEL..., --models FILE, or --finetunes-of BASE")
    return tuple(ordered)


def run_fleet(request: FleetRequest) -> FleetResult:
    """Evaluate every model of ``request`` on Ray and write the fleet's files to ``request.out_dir``.

    A model that fails is recorded with its one-line error and the others go on; run again
    with the same settings, a fleet skips the models whose reports it already wrote.

    Raises:
        FleetError: no models, Ray missing, a cluster that cannot be reached or cannot fit a task.
        ComplianceError: a setting that is bad for every model, before any model work.
    """
    from compliance.fleet.outputs import fleet_document, new_fleet_id, write_outputs, write_state
    from compliance.fleet.run import run_models

    request = _checked(request)
    fleet_id = new_fleet_id()
    out_dir = Path(request.out_dir)

    def on_update(run, executor) -> None:
        write_state(out_dir, fleet_document(request, executor, run, fleet_id))

    executor, run = run_models(request, on_update)
    document = fleet_document(request, executor, run, fleet_id)
    files = write_outputs(out_dir, document, pdf=request.report.output.pdf)
    return FleetResult(out_dir=out_dir, document=document, files=files)


def _checked(request: FleetRequest) -> FleetRequest:
    from dataclasses import replace

    if request.retries < 0:
        raise FleetError(f"--retries {request.retries} must be 0 or more")
    if request.num_cpus is not None and request.num_cpus < 1:
        raise FleetError(f"--num-cpus {request.num_cpus} must be at least 1")
    out_dir = Path(request.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FleetError(f"--out {out_dir} is a file: give a folder for the fleet's files")
    return replace(request, models=fleet_models(request.models, request.discovery))
