"""Write a report's headline results into a model card, through huggingface_hub's card API.

Example:
    >>> from compliance.card import update_local_card
    >>> update_local_card("reports/my-model", "path/to/my-model").changed
    True
"""

from compliance.card.build import (
    SECTION_END,
    SECTION_START,
    SOURCE_NAME,
    TASK_TYPE,
    CardUpdate,
    apply_report,
    eval_results_for,
    load_report_dir,
)
from compliance.card.write import update_hub_card, update_local_card

__all__ = [
    "SECTION_END", "SECTION_START", "SOURCE_NAME", "TASK_TYPE", "CardUpdate", "apply_report",
    "eval_results_for", "load_report_dir", "update_hub_card", "update_local_card",
]
