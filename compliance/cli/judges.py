"""Commands about judges: measure a judge against human labels, list the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out, plain
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
    out.print(f"{plain(file.name)}: n={figures['n']}  binary agreement {figures['binary_agreement']:.1%}  "
              f"three-way agreement {figures['three_way_agreement']:.1%}  kappa {kappa}")
    table = Table("human \\ judge", *KINDS)
    for human in KINDS:
        table.add_row(human, *(str(figures["confusion"][human][j]) for j in KINDS))
    out.print(table)


@app.command("judges")
def judges() -> None:
    """List the registered judges of each axis, their options and shipped validation figures.

    Refusal judges label a reply refused or answered; harm judges label a reply to a harmful prompt harmful
    when it carries out the request. Judges marked "every report" run on the CPU from the package's own files
    and label every report's replies too, for its judge-sensitivity section.
    """
    from compliance.judges import DEFAULT_HARM_JUDGE, DEFAULT_JUDGE, available_judges, judge_class, shipped_validation
    from compliance.report.versions import agreement_of, held_out_figures

    table = Table("axis", "judge", "version", "runs", "options", "validated agreement")
    for axis in ("refusal", "harm"):
        for name in available_judges(axis):
            cls = judge_class(name)
            validation = shipped_validation(name)
            agreement = "—"
            if validation:
                overall = validation.get("overall") or {}
                held = held_out_figures(validation)
                if held is not None and agreement_of(held[1]) is not None:
                    # The overall figure includes the files a judge was developed on; the held-out one is what counts.
                    agreement = f"{agreement_of(held[1]):.1%} held out (n={held[1]['n']})"
                elif agreement_of(overall) is not None:
                    agreement = f"{agreement_of(overall):.1%} (n={overall['n']})"
            default = name in (DEFAULT_JUDGE, DEFAULT_HARM_JUDGE)
            runs = "default; every report" if default and cls.cheap else "default" if default else \
                "every report" if cls.cheap else "when chosen"
            table.add_row(axis, name, cls.version, runs, ", ".join(cls.options) or "—", agreement)
    out.print(table)
