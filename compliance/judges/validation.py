"""Measure a judge against human labels, on either axis.

Refusal axis: a validation file is a CSV with columns ``prompt``, ``completion`` and
``final_label``, where the label is ``1_full_compliance``, ``2_full_refusal`` or
``3_partial_refusal`` (XSTest v2). Partial refusals count as refusals in the binary view, as in
XSTest.

Harm axis: a CSV with columns ``prompt``, ``completion`` and ``harmful`` (``1`` when the reply
carries out the harmful request, else ``0``), or a file in GPTFuzz's layout: columns
``question`` (an index into ``question_list.csv`` beside the file, whose columns are ``index`` and
``text``), ``Response`` and ``label`` (1/0).

The measured figures of the default judge ship with the package (``validation_data/<judge>.json``)
so that every report carries them without needing the validation data at build time; a test
recomputes them from the shared data and fails when they drift.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from compliance.errors import ComplianceError
from compliance.judges.base import Judge

#: Human labels in XSTest files, mapped to the three-way kinds used throughout the tool.
HUMAN_LABELS = {
    "1_full_compliance": "compliance",
    "2_full_refusal": "full_refusal",
    "3_partial_refusal": "partial_refusal",
}
KINDS = ("full_refusal", "partial_refusal", "compliance")
REQUIRED_COLUMNS = ("prompt", "completion", "final_label")


class ValidationFileError(ComplianceError):
    """A validation file that cannot be read or lacks the required columns or labels."""


@dataclass(frozen=True)
class LabelledCompletion:
    prompt: str
    completion: str
    kind: str  # one of KINDS


def read_validation_file(path: Path | str) -> list[LabelledCompletion]:
    """Read an XSTest-style CSV of human-labelled completions.

    Raises:
        ValidationFileError: if the file is missing, not CSV, lacks a required column, has no
            rows, or holds a label other than the three XSTest labels; the message names the file.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: files saved by spreadsheets start with a BOM
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ValidationFileError(
                    f"{path}: missing column(s) {', '.join(missing)}; an XSTest-style file needs "
                    f"{', '.join(REQUIRED_COLUMNS)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                label = (row.get("final_label") or "").strip()
                if label not in HUMAN_LABELS:
                    raise ValidationFileError(
                        f"{path}: row {line} has final_label {label!r}; expected one of {', '.join(HUMAN_LABELS)}")
                rows.append(LabelledCompletion(row["prompt"] or "", row["completion"] or "", HUMAN_LABELS[label]))
    except FileNotFoundError:
        raise ValidationFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValidationFileError(f"{path}: is a folder, expected a CSV file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationFileError(f"{path}: not a readable UTF-8 CSV file ({exc}); save it as UTF-8 CSV") from None
    except OSError as exc:
        raise ValidationFileError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if not rows:
        raise ValidationFileError(f"{path}: no labelled rows")
    return rows


def binary(kind: str) -> str:
    """The binary view of a three-way kind: partial refusals are refusals."""
    return "compliance" if kind == "compliance" else "refusal"


def cohen_kappa(pairs: list[tuple[str, str]]) -> Optional[float]:
    """Cohen's kappa of two raters on the same items; None when chance agreement is 1."""
    n = len(pairs)
    if n == 0:
        return None
    categories = sorted({c for pair in pairs for c in pair})
    observed = sum(a == b for a, b in pairs) / n
    expected = sum((sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in categories)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def judge_kinds(judge: Judge, rows: list[LabelledCompletion]) -> list[str]:
    """The judge's three-way kind for every row (batched when the judge supports it)."""
    results = judge.judge_many([(r.prompt, r.completion) for r in rows])
    return [judge.kind_of(result) for result in results]


def agreement(human: list[str], judged: list[str]) -> dict:
    """Agreement figures between human three-way kinds and a judge's.

    Returns:
        ``n``, ``binary_agreement``, ``three_way_agreement``, ``kappa`` (binary Cohen's kappa),
        ``three_way_kappa`` and ``confusion`` (``confusion[human][judge]`` counts, three-way).
    """
    n = len(human)
    binary_pairs = [(binary(h), binary(j)) for h, j in zip(human, judged)]
    confusion = {h: {j: 0 for j in KINDS} for h in KINDS}
    for h, j in zip(human, judged):
        confusion[h][j] += 1
    kappa = cohen_kappa(binary_pairs)
    kappa3 = cohen_kappa(list(zip(human, judged)))
    return {
        "n": n,
        "binary_agreement": round(sum(a == b for a, b in binary_pairs) / n, 4),
        "three_way_agreement": round(sum(h == j for h, j in zip(human, judged)) / n, 4),
        "kappa": None if kappa is None else round(kappa, 4),
        "three_way_kappa": None if kappa3 is None else round(kappa3, 4),
        "confusion": confusion,
    }


def require_axis(judge: Judge, axis: str) -> None:
    """Refuse to measure a judge against labels of the other axis.

    Raises:
        ComplianceError: naming the judge, its axis, and the judges of ``axis``.
    """
    if judge.axis != axis:
        from compliance.judges.base import _REGISTRY

        same = ", ".join(name for name in sorted(_REGISTRY) if _REGISTRY[name].axis == axis) or "none"
        raise ComplianceError(f"judge {judge.name!r} is a {judge.axis} judge, but these are {axis} labels: "
                              f"pick a {axis} judge ({same}) or --axis {judge.axis}")


def evaluate_file(judge: Judge, path: Path | str) -> dict:
    """Agreement of ``judge`` with the human labels in one validation file (see :func:`agreement`)."""
    require_axis(judge, "refusal")
    rows = read_validation_file(path)
    return agreement([r.kind for r in rows], judge_kinds(judge, rows))


def validation_summary(judge: Judge, files: dict[str, Path], held_out: dict[str, str]) -> dict:
    """The validation record shipped for a judge: per-file and overall figures.

    Args:
        judge: the judge measured.
        files: short name -> validation CSV.
        held_out: short name -> how the file was used ("held out: developed on X and Y").
    """
    def labels(path: Path) -> tuple[list, list]:
        rows = read_validation_file(path)
        return [r.kind for r in rows], judge_kinds(judge, rows)

    per_file, overall = _figures_per_file(files, held_out, labels, agreement,
                                          ("n", "binary_agreement", "three_way_agreement", "kappa"))
    return {
        "judge": judge.name,
        "judge_version": judge.version,
        "dataset": "XSTest v2 human-labelled completions (Röttger et al., 2024)",
        "files": per_file,
        "overall": overall,
    }


def _figures_per_file(files: dict[str, Path], protocols: dict[str, str], labels: Callable[[Path], tuple[list, list]],
                      figures_of: Callable[[list, list], dict], keys: tuple[str, ...]) -> tuple[dict, dict]:
    """Figures (``keys`` of ``figures_of(human, judged)``) for each file, with its protocol, and over all files."""
    human_all: list = []
    judged_all: list = []
    per_file = {}
    for name, path in sorted(files.items()):
        human, judged = labels(path)
        human_all += human
        judged_all += judged
        figures = figures_of(human, judged)
        per_file[name] = {k: figures[k] for k in keys}
        if name in protocols:
            per_file[name]["protocol"] = protocols[name]
    overall = figures_of(human_all, judged_all)
    return per_file, {k: overall[k] for k in keys}


def shipped_validation(judge_name: str) -> Optional[dict]:
    """The validation figures shipped for ``judge_name``, or None when none ship."""
    resource = resources.files("compliance.judges").joinpath("validation_data", f"{judge_name}.json")
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))


# --- the harm axis ---------------------------------------------------------------------------

HARM_COLUMNS = ("prompt", "completion", "harmful")
GPTFUZZ_COLUMNS = ("question", "Response", "label")
#: The file that maps GPTFuzz's ``question`` indices to request texts, beside the labelled file.
GPTFUZZ_QUESTIONS = "question_list.csv"
HARM_LABELS = ("harmful", "not_harmful")


@dataclass(frozen=True)
class LabelledReply:
    """A reply to a harmful request, with the human label: does it carry out the request?"""

    prompt: str
    completion: str
    harmful: bool


def _read_csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    """Column names and rows of a UTF-8 CSV; one :class:`ValidationFileError` line for any failure."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)
    except FileNotFoundError:
        raise ValidationFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValidationFileError(f"{path}: is a folder, expected a CSV file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None


def _binary_label(path: Path, line: int, column: str, value: Optional[str]) -> bool:
    text = (value or "").strip()
    if text not in ("0", "1"):
        raise ValidationFileError(f"{path}: row {line} has {column} {text!r}; expected 1 (harmful) or 0 (not harmful)")
    return text == "1"


def _gptfuzz_questions(path: Path) -> dict[str, str]:
    """``index -> request text`` from the ``question_list.csv`` beside a GPTFuzz file."""
    questions = path.parent / GPTFUZZ_QUESTIONS
    if not questions.is_file():
        raise ValidationFileError(f"{path}: a GPTFuzz file needs {GPTFUZZ_QUESTIONS} beside it (columns index, text) "
                                  f"to turn its question numbers into requests; {questions} not found")
    columns, rows = _read_csv_rows(questions)
    missing = [c for c in ("index", "text") if c not in columns]
    if missing:
        raise ValidationFileError(f"{questions}: missing column(s) {', '.join(missing)}; it needs index, text")
    return {(row["index"] or "").strip(): row["text"] or "" for row in rows}


def read_harm_file(path: Path | str) -> list[LabelledReply]:
    """Read a CSV of human harm labels: ``prompt, completion, harmful`` or GPTFuzz's layout.

    Raises:
        ValidationFileError: if the file is missing, not CSV, has neither layout's columns, has no
            rows, holds a label other than 1/0, or (GPTFuzz) lacks ``question_list.csv`` or a
            question number in it; the message names the file and the row.
    """
    path = Path(path)
    columns, rows = _read_csv_rows(path)
    out: list[LabelledReply] = []
    if all(c in columns for c in GPTFUZZ_COLUMNS) and "prompt" not in columns:
        questions = _gptfuzz_questions(path)
        for line, row in enumerate(rows, start=2):
            number = (row["question"] or "").strip()
            if number not in questions:
                raise ValidationFileError(f"{path}: row {line} has question {number!r}, which "
                                          f"{GPTFUZZ_QUESTIONS} does not list")
            out.append(LabelledReply(questions[number], row["Response"] or "",
                                     _binary_label(path, line, "label", row["label"])))
    else:
        missing = [c for c in HARM_COLUMNS if c not in columns]
        if missing:
            raise ValidationFileError(
                f"{path}: missing column(s) {', '.join(missing)}; a harm file needs {', '.join(HARM_COLUMNS)} "
                f"(or GPTFuzz's {', '.join(GPTFUZZ_COLUMNS)} with {GPTFUZZ_QUESTIONS} beside it)")
        for line, row in enumerate(rows, start=2):
            out.append(LabelledReply(row["prompt"] or "", row["completion"] or "",
                                     _binary_label(path, line, "harmful", row["harmful"])))
    if not out:
        raise ValidationFileError(f"{path}: no labelled rows")
    return out


def judge_harm_labels(judge: Judge, rows: list[LabelledReply]) -> list[str]:
    """The harm judge's label (``harmful``/``not_harmful``) for every row, batched."""
    require_axis(judge, "harm")
    return [str(result[0]) for result in judge.judge_many([(r.prompt, r.completion) for r in rows])]


def harm_agreement(human: list[bool], judged: list[str]) -> dict:
    """Agreement figures between human harm labels and a judge's.

    Args:
        human: True where people labelled the reply harmful.
        judged: the judge's labels, ``harmful`` or ``not_harmful``.

    Returns:
        ``n``, ``agreement``, ``kappa`` (Cohen's), ``precision`` and ``recall`` of the harmful
        class (None when undefined: nothing judged, or nothing labelled, harmful) and
        ``confusion`` (``confusion[human][judge]`` counts).
    """
    truth = ["harmful" if h else "not_harmful" for h in human]
    confusion = {h: {j: 0 for j in HARM_LABELS} for h in HARM_LABELS}
    for h, j in zip(truth, judged):
        confusion[h][j] += 1
    hits = confusion["harmful"]["harmful"]
    said_harmful = hits + confusion["not_harmful"]["harmful"]
    are_harmful = hits + confusion["harmful"]["not_harmful"]
    kappa = cohen_kappa(list(zip(truth, judged)))
    return {
        "n": len(truth),
        "agreement": round(sum(h == j for h, j in zip(truth, judged)) / len(truth), 4),
        "kappa": None if kappa is None else round(kappa, 4),
        "precision": round(hits / said_harmful, 4) if said_harmful else None,
        "recall": round(hits / are_harmful, 4) if are_harmful else None,
        "confusion": confusion,
    }


def evaluate_harm_file(judge: Judge, path: Path | str) -> dict:
    """Agreement of a harm judge with the human labels in one harm file (see :func:`harm_agreement`)."""
    require_axis(judge, "harm")
    rows = read_harm_file(path)
    return harm_agreement([r.harmful for r in rows], judge_harm_labels(judge, rows))


def harm_validation_summary(judge: Judge, files: dict[str, Path], protocols: dict[str, str]) -> dict:
    """The validation record shipped for a harm judge: figures per file and over all files.

    Args:
        judge: the harm judge measured.
        files: short name -> harm file (either layout).
        protocols: short name -> how the file was used ("development (training) file ...").
    """
    def labels(path: Path) -> tuple[list, list]:
        rows = read_harm_file(path)
        return [r.harmful for r in rows], judge_harm_labels(judge, rows)

    per_file, overall = _figures_per_file(files, protocols, labels, harm_agreement,
                                          ("n", "agreement", "kappa", "precision", "recall", "confusion"))
    return {
        "judge": judge.name,
        "judge_version": judge.version,
        "axis": "harm",
        "dataset": "GPTFuzz human-labelled jailbreak replies (Yu et al., 2023; arXiv:2309.10253)",
        "files": per_file,
        "overall": overall,
    }
