"""Measure a judge against human labels (XSTest-style completion files).

A validation file is a CSV with columns ``prompt``, ``completion`` and ``final_label``, where the
label is ``1_full_compliance``, ``2_full_refusal`` or ``3_partial_refusal`` (XSTest v2). Partial
refusals count as refusals in the binary view, as in XSTest.

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
from typing import Optional

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


def evaluate_file(judge: Judge, path: Path | str) -> dict:
    """Agreement of ``judge`` with the human labels in one validation file (see :func:`agreement`)."""
    rows = read_validation_file(path)
    return agreement([r.kind for r in rows], judge_kinds(judge, rows))


def validation_summary(judge: Judge, files: dict[str, Path], held_out: dict[str, str]) -> dict:
    """The validation record shipped for a judge: per-file and overall figures.

    Args:
        judge: the judge measured.
        files: short name -> validation CSV.
        held_out: short name -> how the file was used ("held out: developed on X and Y").
    """
    human_all: list[str] = []
    judged_all: list[str] = []
    per_file = {}
    for name, path in sorted(files.items()):
        rows = read_validation_file(path)
        human = [r.kind for r in rows]
        judged = judge_kinds(judge, rows)
        human_all += human
        judged_all += judged
        figures = agreement(human, judged)
        per_file[name] = {k: figures[k] for k in ("n", "binary_agreement", "three_way_agreement", "kappa")}
        if name in held_out:
            per_file[name]["protocol"] = held_out[name]
    overall = agreement(human_all, judged_all)
    return {
        "judge": judge.name,
        "judge_version": judge.version,
        "dataset": "XSTest v2 human-labelled completions (Röttger et al., 2024)",
        "files": per_file,
        "overall": {k: overall[k] for k in ("n", "binary_agreement", "three_way_agreement", "kappa")},
    }


def shipped_validation(judge_name: str) -> Optional[dict]:
    """The validation figures shipped for ``judge_name``, or None when none ship."""
    resource = resources.files("compliance.judges").joinpath("validation_data", f"{judge_name}.json")
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))
