"""Lineage: find what a model was derived from, follow it to the root, and choose the base to compare it with.

Sources, in order of authority: the model card's front matter (``base_model``,
``base_model_relation``), the Hub's ``baseModels``, ``adapter_config.json``'s
``base_model_name_or_path`` (medium confidence), then ``config.json``'s ``_name_or_path``
(low confidence, used only when nothing else exists). An explicit ``--base`` overrides all.
"""

from __future__ import annotations

from compliance.lineage.card import parse_front_matter, read_card_metadata, split_front_matter
from compliance.lineage.describe import describe_lineage
from compliance.lineage.resolve import MAX_DEPTH, Step, Tracer, choose_base, resolve_lineage
from compliance.lineage.sources import Declared, declared_parents

__all__ = [
    "MAX_DEPTH",
    "Declared",
    "Step",
    "Tracer",
    "choose_base",
    "declared_parents",
    "describe_lineage",
    "parse_front_matter",
    "read_card_metadata",
    "resolve_lineage",
    "split_front_matter",
]
