"""Command that writes a report's results into a model card: card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compliance.cli.app import app, out, plain
from compliance.errors import ComplianceError


@app.command()
def card(
    report_dir: Path = typer.Argument(..., help="Report folder (holds report.json)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Local model folder: rewrite its README.md in place."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub repository ORG/NAME: update its card."),
    create_pr: bool = typer.Option(True, "--create-pr/--no-pr", help="On the Hub, open a pull request (default) or commit directly."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub branch to update (default main)."),
    report_url: Optional[str] = typer.Option(None, "--report-url", help="Where readers find the report (default: next to the card)."),
) -> None:
    """Write the report's results (model-index) and a "Safety re-evaluation" section into a model card.

    Results are never marked verified. Running it again with the same report changes nothing.

    Example: compliance card reports/my-model --repo acme/my-model
    """
    from compliance import api

    if (model_dir is None) == (repo is None):
        raise ComplianceError("give exactly one of --model-dir DIR or --repo ORG/NAME")
    result = api.card(report_dir, model_dir=model_dir, repo=repo, create_pr=create_pr, revision=revision,
                      report_url=report_url)
    if not result.changed and result.pr_url:
        out.print(f"A pull request with these results is already open: {plain(result.pr_url)}", highlight=False)
    elif not result.changed:
        out.print(f"Card already up to date: {plain(result.target)} ({result.n_results} results)", highlight=False)
    elif result.pr_url:
        out.print(f"Opened pull request: {plain(result.pr_url)} ({result.n_results} results)", highlight=False)
    elif result.commit_url:
        out.print(f"Committed: {plain(result.commit_url)} ({result.n_results} results)", highlight=False)
    else:
        out.print(f"Updated {plain(result.target)} ({result.n_results} results)", highlight=False)
