"""A model's lineage as a plain dict: what ``compliance lineage --json`` prints."""

from __future__ import annotations

from dataclasses import asdict
from typing import Optional

from compliance.errors import LineageNotFoundError
from compliance.lineage.resolve import MAX_DEPTH, Tracer, choose_base, resolve_lineage


def describe_lineage(model: str, base: Optional[str] = None, max_depth: int = MAX_DEPTH) -> dict:
    """Resolve ``model``'s lineage and describe it.

    Returns:
        ``{"model", "chain", "parents", "base", "base_selection"}``: ``chain`` runs from the model
        to the root, one element per model with ``id``, ``revision``, ``relation`` (how it derives
        from the next element; null for the root), ``confidence``, and what is visible of it:
        ``files``, ``has_weights``, ``gated`` and ``unreadable`` (files a gated repository refused;
        weights are needed only to evaluate, so a metadata-only ancestor is followed like any other);
        ``parents`` lists a merge's
        parents, each with its own chain; ``base`` is the comparison base's id, or null with
        ``base_error`` saying why (a merge with no common ancestor: pass ``--base``).
    """
    from compliance.models import resolve_model_ref

    record = resolve_model_ref(model)
    if base is not None and base != "root":
        lin = resolve_lineage(record, base=base, max_depth=max_depth)
        return {"model": record.id, "chain": [asdict(n) for n in lin.chain], "parents": [],
                "base": lin.base.id, "base_revision": lin.base.revision, "base_selection": lin.base_selection}
    chain = Tracer(max_depth).trace(record)
    merge = next((s for s in chain if len(s.parents) > 1), None)
    parents = [] if merge is None else [
        {"id": p.id, "revision": p.revision, "chain": [asdict(s.node()) for s in c]}
        for p, c in zip(merge.parents, merge.parent_chains)
    ]
    out = {"model": record.id, "chain": [asdict(s.node()) for s in chain], "parents": parents}
    try:
        index, selection = choose_base(chain, base)
    except LineageNotFoundError as exc:
        if merge is None:
            raise
        return {**out, "base": None, "base_revision": None, "base_selection": None, "base_error": str(exc)}
    return {**out, "base": chain[index].record.id, "base_revision": chain[index].record.revision,
            "base_selection": selection}
