"""Lineage: find what a model was derived from, and choose the base to compare it with.

Local sources, in order of authority: the model card's front matter (``base_model``,
``base_model_relation``), then ``adapter_config.json``'s ``base_model_name_or_path``.
An explicit ``--base`` overrides both.
"""

from __future__ import annotations

import json
from pathlib import Path

from compliance.errors import LineageNotFoundError
from compliance.lineage.card import read_card_metadata, split_front_matter
from compliance.models import resolve_model_ref
from compliance.records import Lineage, LineageLink, ModelRecord

_RELATIONS = ("finetune", "adapter", "merge", "quantized")

__all__ = ["declared_base", "read_card_metadata", "resolve_lineage", "split_front_matter"]


def declared_base(model: ModelRecord) -> tuple[str, str, str] | None:
    """What ``model`` says it was derived from: ``(base_ref, relation, source)`` or None.

    Raises:
        LineageNotFoundError: the card is malformed, or declares several bases (a merge) with no
            way to choose one.
    """
    if model.kind != "local":
        return None
    folder = Path(model.path)
    meta = read_card_metadata(folder)
    adapter_cfg = _read_adapter_config(folder)
    base = meta.get("base_model")
    if isinstance(base, list):
        bases = [str(b) for b in base if b]
        if len(bases) > 1:
            raise LineageNotFoundError(
                f"model '{model.id}' is a merge of {len(bases)} models ({', '.join(bases)}): "
                "choose the one to compare with using --base"
            )
        base = bases[0] if bases else None
    if base:
        relation = meta.get("base_model_relation")
        if relation not in _RELATIONS:
            relation = "adapter" if adapter_cfg is not None else _infer_relation(folder)
        return str(base), relation, "README.md front matter: base_model"
    if adapter_cfg and adapter_cfg.get("base_model_name_or_path"):
        return str(adapter_cfg["base_model_name_or_path"]), "adapter", "adapter_config.json: base_model_name_or_path"
    return None


def resolve_lineage(model: ModelRecord, base: str | None = None) -> Lineage:
    """Pair ``model`` with the base it is to be compared with.

    Args:
        model: the evaluated model.
        base: an explicit base reference (``--base``); otherwise the declared one is used.

    Raises:
        LineageNotFoundError: no base is declared and none was given.
    """
    if base is not None:
        base_record = resolve_model_ref(base)
        link = LineageLink(child=model.id, parent=base_record.id, relation="finetune", source="--base (user-supplied)")
        declared = declared_base(model)
        if declared is not None:
            link.relation = declared[1]  # keep the declared relation; the user only chose the parent
        return Lineage(model=model, base=base_record, links=[link])
    declared = declared_base(model)
    if declared is None:
        raise LineageNotFoundError(
            f"model '{model.id}' declares no base model (no base_model in README.md front matter, "
            "no adapter_config.json): pass the model to compare with using --base"
        )
    base_ref, relation, source = declared
    base_record = resolve_model_ref(base_ref, relative_to=Path(model.path))
    if Path(base_record.path).resolve() == Path(model.path).resolve():
        raise LineageNotFoundError(
            f"model '{model.id}' names itself as its base ({base_ref}): fix base_model in its card or pass --base"
        )
    return Lineage(
        model=model,
        base=base_record,
        links=[LineageLink(child=model.id, parent=base_record.id, relation=relation, source=source)],
    )


def _read_adapter_config(folder: Path) -> dict | None:
    path = folder / "adapter_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LineageNotFoundError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): fix or remove it") from exc


def _infer_relation(folder: Path) -> str:
    if any(folder.glob("*.gguf")):
        return "quantized"
    config = folder / "config.json"
    if config.is_file():
        try:
            if "quantization_config" in json.loads(config.read_text()):
                return "quantized"
        except json.JSONDecodeError:
            pass
    return "finetune"
