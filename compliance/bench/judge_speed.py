"""Judge throughput: how many replies per second a judge labels on this machine.

Usage::

    python -m compliance.bench.judge_speed --judge refusal-hybrid --threads 2 \\
        ../shared/judge-validation/xstest_v2_completions_*.csv

The replies come from XSTest-style CSV files (``prompt``, ``completion``, ``final_label``; only the
first two are read). The judge is loaded and warmed up on a few replies first, so the figure is the
steady rate a report sees, not the one-time load. XSTest replies are longer than a report's (which
stop after about 64 new tokens), so for embedding judges, whose cost grows with the reply up to
their longest token window, the figure errs low. The last line is one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

from compliance.constants import DEFAULT_JUDGE

WARMUP_REPLIES = 8


def measure(judge_name: str, files: list[Path], threads: Optional[int] = None) -> dict:
    """Label every reply of ``files`` with ``judge_name`` once, after a warm-up, and time it.

    Args:
        judge_name: a registered judge.
        files: XSTest-style CSV files.
        threads: torch threads (None: torch's default).

    Returns:
        ``judge``, ``replies``, ``seconds``, ``replies_per_s``, ``threads`` and ``rules`` (how
        many replies each rule id decided).
    """
    import torch

    from compliance.judges import get_judge
    from compliance.judges.validation import read_validation_file

    if threads is not None:
        torch.set_num_threads(threads)
    pairs = [(r.prompt, r.completion) for path in files for r in read_validation_file(path)]
    judge = get_judge(judge_name)
    judge.judge_many(pairs[:WARMUP_REPLIES])
    start = time.perf_counter()
    results = judge.judge_many(pairs)
    seconds = time.perf_counter() - start
    return {"judge": judge.judge_id, "replies": len(pairs), "seconds": round(seconds, 2),
            "replies_per_s": round(len(pairs) / seconds, 1), "threads": torch.get_num_threads(),
            "rules": dict(Counter(str(result[2]) for result in results).most_common())}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="XSTest-style CSV files whose replies are judged")
    parser.add_argument("--judge", default=DEFAULT_JUDGE, help=f"judge to time (default {DEFAULT_JUDGE})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    from compliance.errors import ComplianceError

    try:
        result = measure(args.judge, args.files, args.threads)
    except ComplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['judge']}: {result['replies']} replies in {result['seconds']} s = "
          f"{result['replies_per_s']} replies/s on {result['threads']} thread(s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
