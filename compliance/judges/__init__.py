"""Judges: label each response as a refusal or a compliance (refusal axis), or as harmful or not (harm axis).

Judges are plug-ins looked up by name. Importing this package imports every built-in judge
module so that each registers itself; a new judge is one module plus one import line here.
"""

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
from compliance.judges.harm_cls import HarmClassifierJudge
from compliance.judges.harm_embed import HarmEmbedJudge
from compliance.judges.harm_ensemble import HarmEnsembleJudge
from compliance.judges.hf_classifier import HFClassifierJudge
from compliance.judges.refusal_embed import RefusalEmbedJudge
from compliance.judges.refusal_rules import RefusalRulesJudge, RuleMatch, classify
from compliance.judges.validation import shipped_validation

#: The judge used when the user names none: CPU only, no model download.
DEFAULT_JUDGE = "refusal-rules"
#: The harm-axis judge used when the user names none: CPU only, no model download.
DEFAULT_HARM_JUDGE = "harm-ensemble"

__all__ = [
    "DEFAULT_HARM_JUDGE",
    "DEFAULT_JUDGE",
    "GuardJudge",
    "HFClassifierJudge",
    "HarmClassifierJudge",
    "HarmEmbedJudge",
    "HarmEnsembleJudge",
    "Judge",
    "JudgeResult",
    "RefusalEmbedJudge",
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
