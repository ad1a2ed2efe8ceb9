"""Commands that show the benchmarks and suites: ``compliance suites list`` and ``compliance suites show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out, plain

suites_app = typer.Typer(help="List and inspect the benchmarks and suites (pinned sources, licences, sha256).",
                         no_args_is_help=True)
app.add_typer(suites_app, name="suites")


@suites_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """List every benchmark and suite with its licence and sha256 pins (reads no data)."""
    from compliance.suites import catalog

    cat = catalog()
    if as_json:
        out.print_json(json.dumps(cat))
        return
    table = Table("benchmark", "version", "licence", "sha256 pin(s)", "source", title="Benchmarks")
    for b in cat["benchmarks"]:
        pins = b["files"][0]["sha256"][:16] + "…" + (f" (+{len(b['files']) - 1} files)" if len(b["files"]) > 1 else "")
        licence = b["license"] + (" [opt-in: --accept-licence]" if b["opt_in"] else "")
        table.add_row(*map(plain, (b["name"], b["version"], licence, pins, b["source"])))
    out.print(table)
    table = Table("suite", "title", "benchmarks", "opt-in", title="Suites")
    for s in cat["suites"]:
        table.add_row(*map(plain, (s["name"], s["title"], ", ".join(s["expands_to"]), ", ".join(s["opt_in"]) or "-")))
    out.print(table)


@suites_app.command("show")
def show(
    name: str = typer.Argument(..., help="A benchmark (xstest, medsafetybench...) or a suite (general, medical...)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir",
                                            help="Folder laid out like ../shared/benchmarks/ (default $COMPLIANCE_DATA_DIR, "
                                                 "else download from the pinned source)."),
    accept_licence: Optional[list[str]] = typer.Option(None, "--accept-licence",
                                                       help="Include this opt-in benchmark in a suite; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: an object with rows (int) and categories."),
) -> None:
    """Show NAME's sources, licence, sha256 and rows per category (reads and verifies the data)."""
    from compliance.suites import describe

    info = describe(name, data_dir=data_dir, accept_licences=accept_licence or ())
    if as_json:
        out.print_json(json.dumps(info))
        return
    if info["kind"] == "suite":
        out.print(f"[bold]{plain(info['name'])}[/]: {plain(info['title'])} ({info['rows']} rows)")
        if info["description"]:
            out.print(plain(info["description"]))
        table = Table("benchmark", "version", "licence", "rows", "sha256")
        for b in info["benchmarks"]:
            table.add_row(*map(plain, (b["name"], b["version"], b["license"], b["rows"], b["sha256"])))
        out.print(table)
    else:
        out.print(f"[bold]{plain(info['name'])}[/] {plain(info['version'])}: {plain(info['title'])}")
        out.print(plain(f"Licence: {info['license']}{' (opt-in: run with --accept-licence ' + info['name'] + ')' if info['opt_in'] else ''}"
                        f"{' - ' + info['license_note'] if info['license_note'] else ''}"))
        out.print(plain(f"Cite: {info['citation']}"))
        src = info["source"]
        out.print(plain(f"Source: {src['kind']}" + (f" {src.get('repo', '')} @ {src['revision']}" if "revision" in src else "")))
        table = Table("file", "rows", "sha256")
        for f in info["files"]:
            table.add_row(*map(plain, (f["path"], f.get("rows", ""), f["sha256"])))
        out.print(table)
    table = Table("category", "rows", title=f"{info['rows']} rows")
    for cat, n in info["categories"].items():
        table.add_row(plain(cat), str(n))
    out.print(table)
