"""What a fleet writes to ``--out``: ``fleet.json`` (schema ``fleet.schema.json``), ``fleet.csv``,
``fleet.parquet``, ``fleet.html``, ``fleet.pdf`` and ``drift-map.png``.

``fleet.json`` is rewritten (atomically) after every model that finishes; the tables and pages
are written once every model is done.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compliance.errors import ReportError
from compliance.fleet.build import (ALPHA, COLUMNS, cells_of, fleet_counts, instruments, long_rows, request_summary,
                                    with_fleet_holm)
from compliance.io import atomic_write_json

if TYPE_CHECKING:
    from compliance.fleet.run import FleetRequest, _Run

SCHEMA_VERSION = "1.0"
#: The fleet's files, by kind.
FILES = {"json": "fleet.json", "csv": "fleet.csv", "parquet": "fleet.parquet", "html": "fleet.html",
         "pdf": "fleet.pdf", "png": "drift-map.png"}

HOLM_FAMILY = ("every model's change on each metric and benchmark (McNemar p), Holm-adjusted together; domain "
               "slices are subsets of the benchmarks' prompts and are shown without a test, as in each report")


def fleet_document(request: "FleetRequest", executor: dict[str, Any], run: "_Run", fleet_id: str) -> dict[str, Any]:
    """The ``fleet.json`` document for the run as it stands."""
    import compliance

    entries = list(run.entries.values())
    for entry in entries:
        report = run.reports.get(entry.model)
        entry.cells = cells_of(report) if report is not None and entry.status == "ok" else []
    family = with_fleet_holm(entries)
    return {
        "schema_version": SCHEMA_VERSION,
        "fleet_id": fleet_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "compliance", "version": compliance.__version__},
        "executor": executor,
        "request": request_summary(request.report),
        "discovery": request.discovery.to_json() if request.discovery is not None else None,
        "bases": [dict(info) for info in run.bases.values()],
        "models": [e.to_json() for e in entries],
        "instruments": instruments(entries),
        "significance": {"alpha": ALPHA, "method": "holm", "family": HOLM_FAMILY, "n_tests": family},
        "counts": fleet_counts(entries),
    }


def new_fleet_id() -> str:
    return str(uuid.uuid4())


def write_state(out_dir: Path, document: dict[str, Any]) -> Path:
    """``fleet.json``, validated against its schema (a document that does not match is a bug: never written)."""
    from compliance.schemas import schema_errors

    errors = schema_errors(document, "fleet")
    if errors:
        raise ReportError(f"fleet.json does not match fleet.schema.json ({errors[0]}): this is a bug in compliance")
    return atomic_write_json(Path(out_dir) / FILES["json"], document)


def write_outputs(out_dir: Path, document: dict[str, Any], pdf: bool = True) -> dict[str, Path]:
    """Every file of a finished fleet; returns them by kind."""
    from compliance.compare.build import write_tables
    from compliance.fleet.chart import drift_map_png
    from compliance.fleet.render import render_fleet_html, render_fleet_pdf
    from compliance.io import atomic_write_text

    out = Path(out_dir)
    document["files"] = {kind: name for kind, name in FILES.items() if pdf or kind != "pdf"}
    files = {"json": write_state(out, document)}
    rows = long_rows_of(document)
    files.update(write_tables(rows, out, columns=COLUMNS, stem="fleet",
                              floats=("base_rate", "model_rate", "drift", "drift_ci_low", "drift_ci_high",
                                      "mcnemar_p", "report_holm_p", "fleet_holm_p"), booleans=("significant",)))
    html = render_fleet_html(document)
    files["html"] = atomic_write_text(out / FILES["html"], html)
    if pdf:
        files["pdf"] = render_fleet_pdf(html, out / FILES["pdf"])
    files["png"] = drift_map_png(document, out / FILES["png"])
    return files


def long_rows_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """``fleet.csv``'s rows from a fleet document."""
    from compliance.fleet.build import FleetEntry

    entries = []
    for m in document["models"]:
        entry = FleetEntry(**{k: v for k, v in m.items() if k in FleetEntry.__dataclass_fields__})
        entries.append(entry)
    return long_rows(entries, document["instruments"])
