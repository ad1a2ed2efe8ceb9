"""Judges: label each response as a refusal or a compliance.

Judges are plug-ins looked up by name. Importing this package imports every built-in judge
module so that each registers itself; a new judge is one module plus one import line here.
"""

from compliance.judges.base import (
    Judge,
    JudgeResult,
    available_judges,
    get_judge,
    judge_responses,
    register_judge,
)
from compliance.judges.refusal_rules import RefusalRulesJudge, RuleMatch, classify

#: The judge used when the user names none: CPU only, no model download.
DEFAULT_JUDGE = "refusal-rules"

__all__ = [
    "DEFAULT_JUDGE",
    "Judge",
    "JudgeResult",
    "RefusalRulesJudge",
    "RuleMatch",
    "available_judges",
    "classify",
    "get_judge",
    "judge_responses",
    "register_judge",
]
