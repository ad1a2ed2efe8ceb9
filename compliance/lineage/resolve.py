"""Follow a model's declared ancestry to the root and choose the base to compare it with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from compliance.errors import ComplianceError, LineageCycleError, LineageDepthError, LineageNotFoundError
from compliance.lineage.sources import Declared, declared_parents, is_pure_adapter, visible_files
from compliance.records import Lineage, LineageLink, LineageNode, ModelRecord

#: How many derivation steps are followed before giving up.
MAX_DEPTH = 10


@dataclass
class Step:
    """One model of a traced chain; ``parents`` are resolved records (several for a merge)."""

    record: ModelRecord
    declared: Optional[Declared] = None
    parents: list[ModelRecord] = field(default_factory=list)
    parent_chains: list[list["Step"]] = field(default_factory=list)  # merges only

    @property
    def relation(self) -> Optional[str]:
        return self.declared.relation if self.declared else None

    @property
    def unresolved_merge(self) -> bool:
        return len(self.parents) > 1 and not self._continues

    _continues: bool = False

    def node(self) -> LineageNode:
        d = self.declared
        return lineage_node(
            self.record, relation=d.relation if d else None, confidence=d.confidence if d else None,
            source=d.source if d else None,
            parents=[f"{p.id}@{p.revision}" for p in self.parents] if len(self.parents) > 1 else [],
        )


def lineage_node(record: ModelRecord, relation: Optional[str], confidence: Optional[str], source: Optional[str],
                 parents: Optional[list[str]] = None) -> LineageNode:
    """The chain element for ``record``, with what is visible of it (files, weights, gated, refused files)."""
    files, unreadable = visible_files(record)
    return LineageNode(
        id=record.id, revision=record.revision, kind=record.kind, relation=relation, confidence=confidence,
        source=source, license=record.license, gated=record.gated, parents=parents or [],
        has_weights=bool(record.weights), files=files, unreadable=unreadable,
    )


def model_key(record: ModelRecord) -> str:
    """Identity of a model for cycle detection: the Hub repo, the folder, or the built-in."""
    if record.kind == "hub":
        return "hub:" + record.id.lower()
    if record.kind == "local":
        return "local:" + str(Path(record.path).resolve())
    return record.kind + ":" + record.id


class Tracer:
    """Follows declared bases; remembers resolved references so each model is fetched once."""

    def __init__(self, max_depth: int = MAX_DEPTH):
        self.max_depth = max_depth
        self._records: dict[tuple[str, str], ModelRecord] = {}

    def parent(self, child: ModelRecord, ref: str, source: Optional[str] = None) -> ModelRecord:
        """The record ``child`` names as a base; its weights are not needed (lineage is metadata).

        Raises:
            The error of resolving ``ref`` (same class), its message saying which model named it.
        """
        key = (model_key(child), ref)
        if key not in self._records:
            try:
                if child.kind == "hub":  # a Hub card's base names a Hub repo, never a folder here
                    from compliance.hub import hub_record

                    record = hub_record(ref)
                else:
                    from compliance.models import resolve_model_ref

                    record = resolve_model_ref(ref, relative_to=Path(child.path) if child.path else None)
            except ComplianceError as exc:
                named = f" ({source})" if source else ""
                raise type(exc)(f"'{child.id}' names '{ref}' as its base{named}, but {exc}") from exc
            self._records[key] = record
        return self._records[key]

    def trace(self, record: ModelRecord, trail: tuple[tuple[str, str], ...] = ()) -> list[Step]:
        """The chain from ``record`` to its root.

        Raises:
            LineageCycleError, LineageDepthError, MalformedCardError, and the errors of resolving a parent.
        """
        key = model_key(record)
        keys = [k for k, _ in trail]
        if key in keys:
            loop = [name for _, name in trail[keys.index(key):]] + [record.id]
            raise LineageCycleError(
                f"the lineage of '{trail[0][1]}' loops: {' → '.join(loop)}; fix base_model in one of these cards, "
                "or pass the model to compare with using --base"
            )
        trail = trail + ((key, record.id),)
        declared = declared_parents(record)
        if declared is None:
            return [Step(record)]
        if len(trail) > self.max_depth:
            raise LineageDepthError(
                f"the lineage of '{trail[0][1]}' is deeper than {self.max_depth} levels "
                f"(stopped at '{record.id}'): pass the model to compare with using --base"
            )
        if len(declared.parents) == 1:
            parent = self.parent(record, declared.parents[0], declared.source)
            step = Step(record, declared, [parent])
            if declared.relation == "adapter" and is_pure_adapter(record):
                record.adapter_base = parent
            return [step] + self.trace(parent, trail)
        return self._trace_merge(record, declared, trail)

    def _trace_merge(self, record: ModelRecord, declared: Declared, trail) -> list[Step]:
        try:
            parents = [self.parent(record, ref, declared.source) for ref in declared.parents]
            chains = [self.trace(p, trail) for p in parents]
        except LineageCycleError:
            raise
        except ComplianceError as exc:
            raise LineageNotFoundError(
                f"model '{record.id}' is a merge of {len(declared.parents)} models ({', '.join(declared.parents)}) "
                f"whose common ancestor could not be found ({exc}): choose the one to compare with using --base"
            ) from exc
        step = Step(record, declared, parents, chains)
        common = nearest_common_ancestor(chains)
        if common is None:
            return [step]
        step._continues = True
        which, index = common
        return [step] + chains[which][index:]


def nearest_common_ancestor(chains: list[list[Step]]) -> Optional[tuple[int, int]]:
    """``(chain, index)`` of the model all chains reach with the fewest steps in total, or None."""
    positions = [{model_key(s.record): i for i, s in enumerate(c)} for c in chains]
    best = None
    for i, step in enumerate(chains[0]):
        key = model_key(step.record)
        if all(key in p for p in positions):
            cost = sum(p[key] for p in positions)
            if best is None or cost < best[0]:
                best = (cost, i)
    return (0, best[1]) if best else None


def choose_base(chain: list[Step], base: Optional[str] = None) -> tuple[int, str]:
    """Index in ``chain`` of the comparison base, and how it was chosen.

    Default: the model the nearest adaptation started from, skipping pure quantization edges;
    for a merge, its parents' nearest common ancestor. ``base="root"``: the root.

    Raises:
        LineageNotFoundError: nothing to compare with (a root, or a merge with no common ancestor).
    """
    model = chain[0].record
    if len(chain) == 1 and chain[0].declared is None:
        raise LineageNotFoundError(
            f"model '{model.id}' declares no base model (no base_model in its card, no baseModels on the Hub, "
            "no adapter_config.json): pass the model to compare with using --base"
        )
    for step in chain:
        if step.unresolved_merge:
            raise LineageNotFoundError(
                f"model '{step.record.id}' is a merge of {len(step.parents)} models "
                f"({', '.join(p.id for p in step.parents)}) with no common ancestor: "
                "choose the one to compare with using --base"
            )
    if base == "root":
        return len(chain) - 1, "--base root: the root of the lineage"
    i = 0
    while chain[i].relation == "quantized" and chain[i + 1].declared is not None:
        i += 1
    skipped = f" (skipped {i} quantization step{'s' * (i > 1)})" if i else ""
    if chain[i].relation == "merge" or len(chain[i].parents) > 1:
        return i + 1, f"nearest common ancestor of the merge's parents{skipped}"
    return i + 1, f"nearest adaptation: {chain[i].relation} of {chain[i + 1].record.id} ({chain[i].declared.source}){skipped}"


def resolve_lineage(model: ModelRecord, base: Optional[str] = None, max_depth: int = MAX_DEPTH) -> Lineage:
    """Pair ``model`` with the base it is to be compared with, and record its ancestry.

    Args:
        model: the evaluated model.
        base: ``None`` (the declared base: nearest adaptation, quantization skipped), ``"root"``,
            or an explicit model reference (``--base``), which skips following the ancestry.
        max_depth: derivation steps followed before giving up.

    Raises:
        LineageNotFoundError (and its subclasses): no base can be chosen; the message says what to do.
    """
    tracer = Tracer(max_depth)
    if base is not None and base != "root":
        return _explicit_base(tracer, model, base)
    chain = tracer.trace(model)
    index, selection = choose_base(chain, base)
    links = [LineageLink(child=s.record.id, parent=chain[k + 1].record.id, relation=s.relation,
                         source=s.declared.source) for k, s in enumerate(chain[:index])]
    return Lineage(model=model, base=chain[index].record, links=links, chain=[s.node() for s in chain],
                   base_selection=selection)


def _explicit_base(tracer: Tracer, model: ModelRecord, base: str) -> Lineage:
    from compliance.models import resolve_model_ref

    base_record = resolve_model_ref(base)
    try:
        declared = declared_parents(model)
    except ComplianceError:  # --base is how a user gets past a broken card
        declared = None
    if is_pure_adapter(model) and model.adapter_base is None:
        adapter_base = base_record
        if declared is not None and declared.parents:
            try:
                adapter_base = tracer.parent(model, declared.parents[0])
            except ComplianceError:
                pass
        model.adapter_base = adapter_base
    relation = declared.relation if declared is not None else "finetune"
    source = "--base (user-supplied)"
    link = LineageLink(child=model.id, parent=base_record.id, relation=relation, source=source)
    nodes = [lineage_node(model, relation, "high", source), lineage_node(base_record, None, None, None)]
    return Lineage(model=model, base=base_record, links=[link], chain=nodes, base_selection=source)
