"""How many replies per second a judge labels on this CPU: a benchmark script, not a test.

Usage::

    python -m compliance.bench.judge_speed --judge harm-cls \\
        --data ../shared/judge-validation/harm/gptfuzz/evaluate.csv [--threads 2] [--limit N]

Two workloads, both from the labelled file (either harm layout, or an XSTest file with
``--axis refusal``):

- **full**: the file's replies as they are (GPTFuzz's run from a few words to thousands);
- **short**: the same replies cut to their first :data:`SHORT_CHARS` characters (at a word
  boundary), about what a suite run's 64 new tokens give.

The judge is loaded and warmed up on a few pairs first, so model loading is not counted. The
load average before and after is printed with the rates, because other processes on the machine
change them: measure when the machine is quiet. The last line is one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

from compliance.errors import ComplianceError

#: Characters kept of each reply for the short workload.
SHORT_CHARS = 300
WARMUP_PAIRS = 16


def cut(text: str, chars: int = SHORT_CHARS) -> str:
    """``text`` cut to about ``chars`` characters, at the next space."""
    if len(text) <= chars:
        return text
    end = text.find(" ", chars)
    return text if end == -1 else text[:end]


def rate(judge, pairs: list[tuple[str, str]]) -> dict:
    """Time one ``judge_many`` call over ``pairs``: replies/s and how the rules split them."""
    start = time.perf_counter()
    results = judge.judge_many(pairs)
    seconds = time.perf_counter() - start
    rules: dict[str, int] = {}
    for result in results:
        rules[str(result[2])] = rules.get(str(result[2]), 0) + 1
    return {"n": len(pairs), "seconds": round(seconds, 2), "replies_per_s": round(len(pairs) / seconds, 1),
            "decided_by": rules}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", default="harm-cls", help="registered judge name (default harm-cls)")
    parser.add_argument("--data", required=True, type=Path, help="labelled CSV whose replies are judged")
    parser.add_argument("--axis", choices=("harm", "refusal"), default="harm", help="layout of --data")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the 2-core goal)")
    parser.add_argument("--limit", type=int, default=0, help="judge only the first N replies (0: all)")
    args = parser.parse_args(argv)
    import torch

    from compliance.judges import get_judge
    from compliance.judges.validation import read_harm_file, read_validation_file

    torch.set_num_threads(args.threads)
    try:
        judge = get_judge(args.judge)
        rows = read_harm_file(args.data) if args.axis == "harm" else read_validation_file(args.data)
    except ComplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pairs = [(r.prompt, r.completion) for r in rows][:args.limit or None]
    judge.judge_many(pairs[:WARMUP_PAIRS])
    load_before = os.getloadavg()
    result = {
        "judge": judge.judge_id,
        "data": str(args.data),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "full": rate(judge, pairs),
        "short": rate(judge, [(prompt, cut(reply)) for prompt, reply in pairs]),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    for name in ("full", "short"):
        r = result[name]
        print(f"{name:5s}: {r['n']} replies in {r['seconds']} s = {r['replies_per_s']} replies/s  {r['decided_by']}")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
