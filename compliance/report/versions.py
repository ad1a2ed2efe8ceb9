"""Read reports of every schema version the tool has written, through one view.

Schema 2.0 (two judge axes) replaced 1.0's single ``judge`` with ``judges`` (one per axis) and
its ``harmful_compliance_rate`` (harmful prompts not refused) with ``harmful_response_rate``
(replies a harm judge finds carry out the request). ``verify``, ``compare`` and ``card`` read
both; these helpers hide the difference where they need to.
"""

from __future__ import annotations

from typing import Any, Optional

AXIS_WORDS = {"refusal": "Refusal judge", "harm": "Harm judge"}


def report_judges(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The primary judge of each axis (schema 1.0: its one judge, on the refusal axis)."""
    if "judges" in report:
        return report["judges"]
    return {"refusal": dict(report["judge"], axis="refusal")}


def judge_names(report: dict[str, Any]) -> str:
    """``refusal: refusal-rules 1.2; harm: harm-cls 1.0``."""
    return "; ".join(f"{axis}: {j['name']} {j['version']}" for axis, j in report_judges(report).items())


def held_out_figures(validation: Optional[dict[str, Any]]) -> Optional[tuple[str, dict[str, Any]]]:
    """``(what, figures)`` of the held-out measurement in a judge's shipped validation, if any."""
    if not validation:
        return None
    held = validation.get("held_out")
    if isinstance(held, dict) and held.get("n"):
        names = held.get("files") or []
        return (", ".join(names) if isinstance(names, list) else str(names)) or "held out", held
    for name, figures in sorted((validation.get("files") or {}).items()):
        if str(figures.get("protocol", "")).startswith("held out"):
            return name, figures
    return None


def agreement_of(figures: dict[str, Any]) -> Optional[float]:
    """The binary agreement of a figures record (``binary_agreement`` or, harm axis, ``agreement``)."""
    value = figures.get("binary_agreement", figures.get("agreement"))
    return None if value is None else float(value)


def validation_line(info: dict[str, Any], short: bool = False) -> str:
    """One sentence on how well a judge agrees with people (``short``: page 1's, without the dataset)."""
    validation = info.get("validation")
    if not validation:
        return "not validated against human labels; treat its labels with care"
    dataset = validation.get("dataset", "human-labelled replies")
    if validation.get("axis") == "harm":
        return _harm_validation_line(validation, dataset, short)
    held = held_out_figures(validation)
    overall = validation.get("overall")
    parts = []
    if held is not None and agreement_of(held[1]) is not None:
        name, figures = held
        if isinstance(validation.get("leave_one_file_out"), dict):
            name += ", leave-one-file-out"
        kappa = f", κ {figures['kappa']:.2f}" if figures.get("kappa") is not None else ""
        parts.append(f"{100 * agreement_of(figures):.1f}% agreement with human labels on {figures['n']} held-out "
                     f"replies ({name}{kappa})" + ("" if short else f" of {dataset}"))
    lofo = validation.get("leave_one_file_out")
    if overall and agreement_of(overall) is not None and not (short and held is not None):
        parts.append(f"{100 * agreement_of(overall):.1f}% on all {overall['n']}"
                     + ("" if short and held is not None else ", including files used in development"
                        if held is not None else f" of {dataset}"))
    if not short and isinstance(lofo, dict) and isinstance(lofo.get("files"), dict):
        # A judge trained on every file: its per-file figures are the leave-one-file-out ones, not training fits.
        per_file = [f"{name} {100 * agreement_of(figures):.1f}%" for name, figures in sorted(lofo["files"].items())
                    if isinstance(figures, dict) and agreement_of(figures) is not None]
        if per_file:
            parts.append("per file, each judged after training on the others: " + ", ".join(per_file))
    return "; ".join(parts) if parts else "validation figures recorded in the JSON"


def _harm_validation_line(validation: dict[str, Any], dataset: str, short: bool) -> str:
    """A harm judge's figures: on the questions it was not trained on, then on its training file."""
    files = validation.get("files") or {}
    unseen, train = files.get("evaluate") or {}, files.get("train") or {}
    parts = []
    if agreement_of(unseen) is not None:
        kappa = f", κ {unseen['kappa']:.2f}" if unseen.get("kappa") is not None else ""
        if short:
            parts.append(f"{100 * agreement_of(unseen):.1f}% agreement with human labels on {unseen['n']} replies "
                         f"to questions it was not trained on{kappa}")
        else:
            parts.append(f"{100 * agreement_of(unseen):.1f}% agreement with human labels on {unseen['n']} replies to "
                         f"questions it was not trained on (the file its settings were chosen on{kappa}), of {dataset}")
    if not short and agreement_of(train) is not None:
        parts.append(f"{100 * agreement_of(train):.1f}% on the {train['n']} training replies")
    return "; ".join(parts) if parts else "validation figures recorded in the JSON"
