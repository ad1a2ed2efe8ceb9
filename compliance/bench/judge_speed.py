"""Judge throughput: how many replies per second a judge labels on this machine.

Usage::

    python -m compliance.bench.judge_speed --judge refusal-hybrid --threads 2 \\
        ../shared/judge-validation/xstest_v2_completions_*.csv

    python -m compliance.bench.judge_speed --axis harm --judge harm-ensemble --threads 2 \\
        ../shared/judge-validation/harm/gptfuzz/evaluate.csv

The replies come from labelled CSV files (only the requests and replies are read): XSTest-style
files (``prompt``, ``completion``, ``final_label``), or with ``--axis harm`` harm files (``prompt``,
``completion``, ``harmful``, or GPTFuzz's layout with its ``question_list.csv``). The judge is loaded and warmed up on a few replies first, so the figure is the
steady rate a report sees, not the one-time load. XSTest replies are longer than a report's (which
stop after about 64 new tokens), and an embedding judge's cost grows with the reply up to its
longest token window; ``--cut-words 48`` cuts each reply to its first 48 words (about 64 tokens)
to time replies of a report's length.

On a shared machine the wall-clock rate depends on what else runs, so the result also gives the
process's CPU time (``cpu_seconds``) and the load average at the start. The last line is one
JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

from compliance.constants import DEFAULT_JUDGE

WARMUP_REPLIES = 8


def measure(judge_name: str, files: list[Path], threads: Optional[int] = None, cut_words: Optional[int] = None,
            axis: str = "refusal") -> dict:
    """Label every reply of ``files`` with ``judge_name`` once, after a warm-up, and time it.

    Args:
        judge_name: a registered judge.
        files: XSTest-style CSV files, or harm files with ``axis="harm"``.
        threads: torch threads (None: torch's default).
        cut_words: cut each reply to this many words first (None: as written).
        axis: the files' layout: ``refusal`` (XSTest) or ``harm``.

    Returns:
        ``judge``, ``replies``, ``cut_words``, ``seconds``, ``replies_per_s``, ``cpu_seconds``,
        ``threads``, ``load_average`` (1 minute, at the start) and ``rules`` (how many replies each
        rule id decided).
    """
    import torch

    from compliance.judges import get_judge
    from compliance.judges.validation import read_harm_file, read_validation_file

    if threads is not None:
        torch.set_num_threads(threads)
    read = read_harm_file if axis == "harm" else read_validation_file
    pairs = [(r.prompt, r.completion) for path in files for r in read(path)]
    if cut_words is not None:
        pairs = [(prompt, " ".join(reply.split(" ")[:cut_words])) for prompt, reply in pairs]
    judge = get_judge(judge_name)
    judge.judge_many(pairs[:WARMUP_REPLIES])
    load = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    results = judge.judge_many(pairs)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"judge": judge.judge_id, "replies": len(pairs), "cut_words": cut_words, "seconds": round(seconds, 2),
            "replies_per_s": round(len(pairs) / seconds, 1), "cpu_seconds": round(cpu_seconds, 2),
            "threads": torch.get_num_threads(), "load_average": round(load, 2),
            "rules": dict(Counter(str(result[2]) for result in results).most_common())}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="labelled CSV files whose replies are judged")
    parser.add_argument("--axis", choices=("refusal", "harm"), default="refusal",
                        help="the files' layout: refusal (XSTest, default) or harm (prompt/completion/harmful or GPTFuzz)")
    parser.add_argument("--judge", default=DEFAULT_JUDGE, help=f"judge to time (default {DEFAULT_JUDGE})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cut-words", type=int, default=None, help="cut each reply to its first N words first")
    args = parser.parse_args(argv)
    from compliance.errors import ComplianceError

    try:
        result = measure(args.judge, args.files, args.threads, args.cut_words, args.axis)
    except ComplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['judge']}: {result['replies']} replies in {result['seconds']} s = "
          f"{result['replies_per_s']} replies/s on {result['threads']} thread(s), {result['cpu_seconds']} s of CPU, "
          f"load average {result['load_average']} at the start")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
