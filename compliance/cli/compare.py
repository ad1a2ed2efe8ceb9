"""Command that puts several reports side by side: compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from compliance.cli.app import app, out, plain


@app.command()
def compare(
    reports: List[Path] = typer.Argument(..., help="Report folders (each holds report.json)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for compare.html/.pdf/.csv/.parquet/.json (default reports/compare)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object with a `candidates` list instead of the table."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Key folder whose public keys the signatures must verify against."),
    key: Optional[Path] = typer.Option(None, "--key", help="Ed25519 public key (PEM) for the envelopes."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Certificate (PEM) the PDF signers must chain to."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also render compare.pdf."),
) -> None:
    """Compare candidate fine-tunes: verdicts, metrics with intervals, drift vs each one's base, signatures.

    Ranked by policy outcome, then by the worst rule margin (the rule is printed). A candidate whose
    signature does not verify is flagged; what a report did not measure shows as "not measured".

    Example: compliance compare reports/a reports/b reports/c --keys keys/ --out reports/compare
    """
    from compliance import api
    from compliance.compare import RANKING_RULE
    from compliance.constants import reports_dir

    result = api.compare(reports, out_dir=out_dir or reports_dir() / "compare", keys_dir=keys, key=key, trust=trust,
                         pdf=pdf)
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title="Candidates, best first")
    for col in ("#", "model", "base", "policy", "verdict", "worst rule (margin)", "signature"):
        table.add_column(col)
    for c in result.candidates:
        s = c.summary()
        margin = "n/a" if s["worst_margin"] is None else f"{s['worst_rule']} ({s['worst_margin'] * 100:+.1f} pp)"
        sig = "[green]verified[/]" if c.signature_ok else f"[bold red]NOT VERIFIED[/]: {plain(c.signature_reason)}"
        table.add_row(*map(plain, (c.rank, c.model, c.base, c.policy, c.verdict.upper(), margin)), sig)
    out.print(table)
    out.print(f"Ranking: {RANKING_RULE}", highlight=False)
    for name, path in result.files.items():
        out.print(f"{name:8} {plain(path)}", highlight=False)
