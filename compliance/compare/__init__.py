"""Several reports side by side: verdicts, metrics with intervals, drift, signatures, a ranking.

Example:
    >>> from compliance.compare import compare_reports
    >>> result = compare_reports(["reports/a", "reports/b"], out_dir="reports/compare", keys_dir="keys/")
    >>> [c.model for c in result.candidates]  # best first
"""

from compliance.compare.build import (
    NOT_MEASURED,
    RANKING_RULE,
    Candidate,
    CompareResult,
    compare_reports,
    load_candidates,
    long_table,
    rank_candidates,
    rule_margin,
)

__all__ = ["NOT_MEASURED", "RANKING_RULE", "Candidate", "CompareResult", "compare_reports", "load_candidates",
           "long_table", "rank_candidates", "rule_margin"]
