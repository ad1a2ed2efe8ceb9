"""Commands about judges: measure a judge against human labels, list the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compliance.cli.app import app, out, plain


@app.command("judge-eval")
def judge_eval(
    file: Path = typer.Argument(..., help="CSV of human labels. Refusal axis: columns prompt, completion, final_label "
                                          "(1_full_compliance, 2_full_refusal, 3_partial_refusal). Harm axis: columns "
                                          "prompt, completion, harmful (1/0), or GPTFuzz's question, Response, label "
                                          "with question_list.csv beside the file."),
    axis: str = typer.Option("refusal", "--axis", help="What the labels measure: refusal (default) or harm."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Judge to measure (default: the axis's default judge, "
                                                               "refusal-hybrid or harm-ensemble)."),
    judge_option: Optional[list[str]] = typer.Option(None, "--judge-option",
                                                     help="Judge construction option KEY=VALUE (e.g. model=PATH, "
                                                          "labels=REJECTION=refusal,NORMAL=compliance); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON: n, binary_agreement, "
                                                       "three_way_agreement, kappa and confusion (refusal axis); n, "
                                                       "agreement, kappa, precision, recall and confusion (harm axis)."),
) -> None:
    """Measure a judge's agreement with human labels in FILE.

    Refusal axis: partial refusals count as refusals in the binary view. kappa is Cohen's kappa on the binary view; the confusion matrix is three-way, rows are the human labels and columns the judge's.

    Harm axis: precision and recall are those of the harmful class; rows of the confusion matrix are the human labels.

    Example: compliance judge-eval ../shared/judge-validation/harm/gptfuzz/evaluate.csv --axis harm --json
    """
    from compliance.errors import ComplianceError
    from compliance.judges import DEFAULT_HARM_JUDGE, DEFAULT_JUDGE, get_judge, parse_judge_options

    if axis not in ("refusal", "harm"):
        raise ComplianceError(f"--axis {axis!r}: choose refusal or harm")
    name = judge or (DEFAULT_HARM_JUDGE if axis == "harm" else DEFAULT_JUDGE)
    chosen = get_judge(name, parse_judge_options(judge_option))
    if axis == "harm":
        _print_harm_figures(file, chosen, as_json)
        return
    from compliance.judges.validation import KINDS, evaluate_file

    figures = evaluate_file(chosen, file)
    if as_json:
        keys = ("n", "binary_agreement", "three_way_agreement", "kappa", "confusion")
        out.print_json(json.dumps({k: figures[k] for k in keys}))
        return
    kappa = "n/a" if figures["kappa"] is None else f"{figures['kappa']:.3f}"
    out.print(f"{plain(file.name)}: n={figures['n']}  binary agreement {figures['binary_agreement']:.1%}  "
              f"three-way agreement {figures['three_way_agreement']:.1%}  kappa {kappa}")
    out.print(_confusion_table(figures["confusion"], KINDS))


def _print_harm_figures(file: Path, judge, as_json: bool) -> None:
    from compliance.judges.validation import HARM_LABELS, evaluate_harm_file

    figures = evaluate_harm_file(judge, file)
    if as_json:
        keys = ("n", "agreement", "kappa", "precision", "recall", "confusion")
        out.print_json(json.dumps({k: figures[k] for k in keys}))
        return

    def show(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    out.print(f"{plain(file.name)}: n={figures['n']}  agreement {figures['agreement']:.1%}  kappa {show(figures['kappa'])}  "
              f"precision {show(figures['precision'])}  recall {show(figures['recall'])}  ({judge.judge_id})")
    out.print(_confusion_table(figures["confusion"], HARM_LABELS))


def _confusion_table(confusion: dict, labels: tuple[str, ...]) -> Table:
    """Rows are the human labels, columns the judge's."""
    table = Table("human \\ judge", *labels)
    for human in labels:
        table.add_row(human, *(str(confusion[human][j]) for j in labels))
    return table


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
                unseen = (validation.get("files") or {}).get("evaluate") if validation.get("axis") == "harm" else None
                if unseen and agreement_of(unseen) is not None:
                    # The harm judges' overall figure includes their training file; the questions they never saw count.
                    agreement = f"{agreement_of(unseen):.1%} on unseen questions (n={unseen['n']})"
                elif held is not None and agreement_of(held[1]) is not None:
                    # The overall figure includes the files a judge was developed on; the held-out one is what counts.
                    agreement = f"{agreement_of(held[1]):.1%} held out (n={held[1]['n']})"
                elif agreement_of(overall) is not None:
                    agreement = f"{agreement_of(overall):.1%} (n={overall['n']})"
            default = name in (DEFAULT_JUDGE, DEFAULT_HARM_JUDGE)
            runs = "default; every report" if default and cls.cheap else "default" if default else \
                "every report" if cls.cheap else "when chosen"
            table.add_row(axis, name, cls.version, runs, ", ".join(cls.options) or "—", agreement)
    out.print(table)
