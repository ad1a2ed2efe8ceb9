"""Commands that inspect and empty the response store: ``compliance cache info`` and ``compliance cache clear``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out

cache_app = typer.Typer(help="Inspect or empty the response store (stored responses, reused and resumed by reports).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")

_STORE_HELP = "Response store file (default: $COMPLIANCE_STORE, else ~/.cache/compliance/responses.sqlite3)."


def _open(store: Optional[Path]):
    from compliance.store import ResponseStore, store_path

    return ResponseStore(store or store_path(), create=False)


@cache_app.command("info")
def info(
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: location, exists, entries, size_bytes, models."),
) -> None:
    """Show where the store is, how many responses it holds, its size, and the models they belong to."""
    with _open(store) as s:
        data = s.info()
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(f"Location: {data['location']}" + ("" if data["exists"] else " (not created yet)"))
    out.print(f"Entries:  {data['entries']}")
    out.print(f"Size:     {data['size_bytes'] / 1e6:.2f} MB")
    if data["models"]:
        table = Table("model", "revision", "entries", title="Models")
        for m in data["models"]:
            table.add_row(m["model_id"], m["revision"][:12], str(m["entries"]))
        out.print(table)


@cache_app.command("clear")
def clear(
    model: Optional[str] = typer.Option(None, "--model", help="Remove only this model's responses (its id as `cache info` shows it)."),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Remove every stored response, or only --model's."""
    from compliance.store import StoreError

    with _open(store) as s:
        n = s.clear(model)
        where = s.path
    if model and n == 0:
        raise StoreError(f"No stored responses of model {model!r} in {where}: "
                         "`compliance cache info` lists the model ids it holds.")
    scope = f" of {model}" if model else ""
    out.print(f"Removed {n} response{'s' if n != 1 else ''}{scope} from {where}")
