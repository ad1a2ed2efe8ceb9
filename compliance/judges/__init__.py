"""Judges: label each response as a refusal or a compliance.

Judges are plug-ins looked up by name. Importing this package imports every built-in judge
module so that each registers itself; a new judge is one module plus one import line here.
"""

from compliance.constants import DEFAULT_JUDGE
from compliance.judges.base import (
    Judge,
    JudgeResult,
    available_judges,
    get_judge,
    judge_responses,
    parse_judge_options,
    register_judge,
)
from compliance.judges.guard import GuardJudge
from compliance.judges.hf_classifier import HFClassifierJudge
from compliance.judges.refusal_embed import RefusalEmbedJudge
from compliance.judges.refusal_hybrid import RefusalHybridJudge
from compliance.judges.refusal_rules import RefusalRulesJudge, RuleMatch, classify
from compliance.judges.validation import shipped_validation


__all__ = [
    "DEFAULT_JUDGE",
    "GuardJudge",
    "HFClassifierJudge",
    "Judge",
    "JudgeResult",
    "RefusalEmbedJudge",
    "RefusalHybridJudge",
    "RefusalRulesJudge",
    "RuleMatch",
    "available_judges",
    "classify",
    "get_judge",
    "judge_responses",
    "parse_judge_options",
    "register_judge",
    "shipped_validation",
]
