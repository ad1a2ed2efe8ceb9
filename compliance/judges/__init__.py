"""Judges: label each response on two axes, refusal and harm.

Refusal judges label a reply a refusal or a compliance; harm judges label a reply to a harmful
prompt harmful (it carries out the request) or not. Judges are plug-ins looked up by name.
Importing this package imports every built-in judge module so that each registers itself; a
new judge is one module plus one import line here.
"""

from compliance.constants import DEFAULT_JUDGE
from compliance.judges.base import (
    AXIS_LABELS,
    Judge,
    JudgeResult,
    available_judges,
    cheap_judges,
    get_judge,
    judge_class,
    judge_responses,
    judged_items,
    parse_judge_options,
    register_judge,
)
from compliance.judges.guard import GuardJudge
from compliance.judges.harmbench_cls import HarmBenchClassifierJudge
from compliance.judges.harm_cls import HarmClassifierJudge
from compliance.judges.harm_embed import HarmEmbedJudge
from compliance.judges.harm_ensemble import HarmEnsembleJudge
from compliance.judges.hf_classifier import HFClassifierJudge
from compliance.judges.refusal_embed import RefusalEmbedJudge
from compliance.judges.refusal_hybrid import RefusalHybridJudge
from compliance.judges.refusal_rules import RefusalRulesJudge, RuleMatch, classify
from compliance.judges.validation import shipped_validation

#: The harm judge used when the user names none: CPU only, no model download.
DEFAULT_HARM_JUDGE = "harm-ensemble"

__all__ = [
    "AXIS_LABELS",
    "DEFAULT_HARM_JUDGE",
    "DEFAULT_JUDGE",
    "GuardJudge",
    "HarmBenchClassifierJudge",
    "HFClassifierJudge",
    "HarmClassifierJudge",
    "HarmEmbedJudge",
    "HarmEnsembleJudge",
    "Judge",
    "JudgeResult",
    "RefusalEmbedJudge",
    "RefusalHybridJudge",
    "RefusalRulesJudge",
    "RuleMatch",
    "available_judges",
    "cheap_judges",
    "classify",
    "get_judge",
    "judge_class",
    "judge_responses",
    "judged_items",
    "parse_judge_options",
    "register_judge",
    "shipped_validation",
]
