"""Commands about judges: measure a judge against human labels, list the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out
from compliance.constants import DEFAULT_JUDGE


@app.command("judge-eval")
def judge_eval(
    file: Path = typer.Argument(..., help="XSTest-style CSV with columns prompt, completion, final_label "
                                          "(1_full_compliance, 2_full_refusal, 3_partial_refusal)."),
    judge: str = typer.Option(DEFAULT_JUDGE, "--judge", help="Judge to measure."),
    judge_option: Optional[list[str]] = typer.Option(None, "--judge-option",
                                                     help="Judge construction option KEY=VALUE (e.g. model=PATH, "
                                                          "labels=REJECTION=refusal,NORMAL=compliance); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print n, binary_agreement, three_way_agreement, kappa "
                                                       "and confusion as JSON."),
) -> None:
    """Measure a judge's agreement with human labels in FILE.

    Partial refusals count as refusals in the binary view. kappa is Cohen's kappa on the binary view; the confusion matrix is three-way, rows are the human labels and columns the judge's.

    Example: compliance judge-eval ../shared/judge-validation/xstest_v2_completions_gpt4.csv --json
    """
    from compliance.judges import get_judge, parse_judge_options
    from compliance.judges.validation import KINDS, evaluate_file

    figures = evaluate_file(get_judge(judge, parse_judge_options(judge_option)), file)
    if as_json:
        keys = ("n", "binary_agreement", "three_way_agreement", "kappa", "confusion")
        out.print_json(json.dumps({k: figures[k] for k in keys}))
        return
    kappa = "n/a" if figures["kappa"] is None else f"{figures['kappa']:.3f}"
    out.print(f"{file.name}: n={figures['n']}  binary agreement {figures['binary_agreement']:.1%}  "
              f"three-way agreement {figures['three_way_agreement']:.1%}  kappa {kappa}")
    table = Table("human \\ judge", *KINDS)
    for human in KINDS:
        table.add_row(human, *(str(figures["confusion"][human][j]) for j in KINDS))
    out.print(table)


@app.command("judges")
def judges() -> None:
    """List the registered judges, their options and shipped validation figures."""
    from compliance.judges import available_judges, shipped_validation
    from compliance.judges.base import _REGISTRY

    table = Table("judge", "version", "options", "validated binary agreement")
    for name in available_judges():
        cls = _REGISTRY[name]
        validation = shipped_validation(name)
        agreement = f"{validation['overall']['binary_agreement']:.1%} (n={validation['overall']['n']})" if validation else "—"
        held = [f for f in (validation or {}).get("files", {}).values() if f.get("protocol", "").startswith("held out")]
        if validation and "held_out" in validation:
            held = [validation["held_out"]]  # e.g. a leave-one-file-out figure, when every file was trained on
        if held:
            # The overall figure includes the files a judge was developed on; the held-out one is what counts.
            agreement = f"{held[0]['binary_agreement']:.1%} held out (n={held[0]['n']}); {agreement} incl. development files"
        table.add_row(f"{name} (default)" if name == DEFAULT_JUDGE else name, cls.version, ", ".join(cls.options) or "—",
                      agreement)
    out.print(table)
