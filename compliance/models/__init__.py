"""Model references: turn what the user typed into a :class:`~compliance.records.ModelRecord`
pinned by content, and load it for generation or training."""

from compliance.models.builtin import builtin_record, is_builtin_ref
from compliance.models.loading import load_model
from compliance.models.refs import WEIGHT_SUFFIXES, local_record, require_weights, resolve_model_ref

__all__ = [
    "WEIGHT_SUFFIXES",
    "builtin_record",
    "is_builtin_ref",
    "load_model",
    "local_record",
    "require_weights",
    "resolve_model_ref",
]
