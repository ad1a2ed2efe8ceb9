"""Measure a harm judge on GPTFuzz's two labelled files and write the figures that ship with it.

Usage::

    python -m compliance.judges.validate_harm --judge harm-cls --data ../shared/judge-validation/harm/gptfuzz \\
        --out compliance/judges/validation_data/harm-cls.json

``tests/test_judge_harm.py`` recomputes the ``evaluate`` figures from the shared files and fails
when they differ from the shipped ones.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Optional

from compliance.errors import ComplianceError

#: How each file was used; the same for both harm judges.
PROTOCOLS = {
    "train": "development (training) file: the judge was trained on it, so this is a training-set figure",
    "evaluate": "selection file: its 20 questions never occur in train.csv; every setting (architecture, windows, "
                "epochs, learning rate, threshold, rules) was chosen by the agreement on it, so it is an optimistic "
                "estimate for new requests, not an untouched test",
}
PROTOCOL = ("GPTFuzz's human labels (1 = the reply carries out the harmful question). The judge was trained on "
            "train.csv only (80 questions); evaluate.csv asks 20 other questions. Agreement is the share of replies "
            "where the judge's label equals the human one; kappa is Cohen's kappa; precision and recall are those of "
            "the harmful class; confusion rows are human labels, columns the judge's.")


def validation_record(judge_name: str, data_dir: Path) -> dict:
    """The shipped validation record of ``judge_name`` measured on ``data_dir``'s train and evaluate files."""
    from compliance.judges import get_judge
    from compliance.judges.validation import harm_validation_summary

    files = {name: Path(data_dir) / f"{name}.csv" for name in PROTOCOLS}
    summary = harm_validation_summary(get_judge(judge_name), files, PROTOCOLS)
    summary["measured_on"] = datetime.date.today().isoformat()
    summary["protocol"] = PROTOCOL
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", required=True, help="harm judge to measure (harm-cls, harm-embed)")
    parser.add_argument("--data", required=True, type=Path, help="folder with GPTFuzz's train.csv and evaluate.csv")
    parser.add_argument("--out", required=True, type=Path, help="validation JSON to write")
    args = parser.parse_args(argv)
    try:
        record = validation_record(args.judge, args.data)
    except ComplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    for name, figures in record["files"].items():
        print(f"{name}: n={figures['n']} agreement {figures['agreement']:.4f} kappa {figures['kappa']} "
              f"precision {figures['precision']} recall {figures['recall']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
