"""Lineage: find what a model was derived from, follow it to the root, and choose the base to compare it with.

Sources, in order of authority: the model card's front matter (``base_model``,
``base_model_relation``), the Hub's ``baseModels``, ``adapter_config.json``'s
``base_model_name_or_path`` (medium confidence), then ``config.json``'s ``_name_or_path``
(low confidence, used only when nothing else exists). An explicit ``--base`` overrides all.
"""

from __future__ import annotations

from typing import Optional

from compliance.lineage.card import parse_front_matter, read_card_metadata, split_front_matter
from compliance.lineage.describe import describe_lineage
from compliance.lineage.resolve import MAX_DEPTH, Step, Tracer, choose_base, resolve_lineage
from compliance.lineage.sources import Declared, declared_parents
from compliance.records import ModelRecord

__all__ = [
    "MAX_DEPTH",
    "Declared",
    "Step",
    "Tracer",
    "choose_base",
    "declared_base",
    "declared_parents",
    "describe_lineage",
    "parse_front_matter",
    "read_card_metadata",
    "resolve_lineage",
    "split_front_matter",
]


def declared_base(model: ModelRecord) -> Optional[tuple[str, str, str]]:
    """The first declared parent of ``model`` as ``(base_ref, relation, source)``, or None."""
    declared = declared_parents(model)
    if declared is None:
        return None
    return declared.parents[0], declared.relation, declared.source
