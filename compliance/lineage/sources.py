"""What a model says it was derived from, whatever kind of model it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from compliance.constants import HUB_METADATA_MAX_BYTES
from compliance.documents import document_errors, parse_json, read_capped
from compliance.errors import LineageNotFoundError
from compliance.lineage.card import read_card_metadata
from compliance.records import ModelRecord

RELATIONS = ("finetune", "adapter", "merge", "quantized")


@dataclass(frozen=True)
class Declared:
    """The parents a model declares, how it derives from them, where that was read, and how sure we are.

    ``confidence``: ``high`` for the card or the Hub's ``baseModels``, ``medium`` for
    ``adapter_config.json``, ``low`` for ``config.json``'s ``_name_or_path`` (a weak hint).
    """

    parents: list[str]
    relation: str
    source: str
    confidence: str


def declared_parents(model: ModelRecord) -> Optional[Declared]:
    """What ``model`` says it derives from, or None (a root).

    Raises:
        MalformedCardError: the card's front matter is not valid YAML.
    """
    if model.kind == "hub":
        from compliance.hub import hub_declared_parents

        found = hub_declared_parents(model)
        return Declared(*found) if found else None
    if model.kind != "local":
        return None
    folder = Path(model.path)
    meta = read_card_metadata(folder)
    adapter_cfg = read_json(folder / "adapter_config.json")
    base = meta.get("base_model")
    bases = [str(b) for b in (base if isinstance(base, list) else [base]) if b]
    if bases:
        relation = meta.get("base_model_relation")
        if relation not in RELATIONS:
            relation = infer_local_relation(folder, adapter_cfg, bases)
        return Declared(bases, relation, "README.md front matter: base_model", "high")
    if adapter_cfg and adapter_cfg.get("base_model_name_or_path"):
        return Declared([str(adapter_cfg["base_model_name_or_path"])], "adapter",
                        "adapter_config.json: base_model_name_or_path", "medium")
    from compliance.hub import looks_like_hub_id

    config = read_json(folder / "config.json") or {}
    name = str(config.get("_name_or_path") or "")
    if looks_like_hub_id(name):
        return Declared([name], infer_local_relation(folder, adapter_cfg, [name]),
                        "config.json: _name_or_path (weak hint)", "low")
    return None


def visible_files(model: ModelRecord) -> tuple[list[str], list[str]]:
    """The file names a model shows, and those the Hub refused to serve (a gated repository, no access)."""
    if model.kind == "hub":
        from compliance.hub.records import repo_of

        repo = repo_of(model)
        return sorted(f.path for f in repo.files), sorted(repo.unreadable)
    if model.kind == "local":
        folder = Path(model.path)
        names = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
        return sorted(str(n) for n in names if not any(part.startswith(".") for part in n.parts)), []
    return sorted(w.path for w in model.weights), []


def is_pure_adapter(model: ModelRecord) -> bool:
    """A PEFT adapter with no full model of its own: it must be loaded onto its base."""
    if model.kind == "hub":
        from compliance.hub.records import is_pure_adapter as hub_is_pure_adapter, repo_of

        return hub_is_pure_adapter(repo_of(model))
    if model.kind == "local":
        folder = Path(model.path)
        return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()
    return False


def infer_local_relation(folder: Path, adapter_cfg: Optional[dict], bases: list[str]) -> str:
    """adapter_config.json → adapter; GGUF/GPTQ/AWQ or quantization_config → quantized; several bases → merge."""
    if adapter_cfg is not None:
        return "adapter"
    if any(folder.glob("*.gguf")) or (folder / "quantize_config.json").is_file():
        return "quantized"
    if "quantization_config" in (read_json(folder / "config.json") or {}):
        return "quantized"
    if len(bases) > 1:
        return "merge"
    return "finetune"


def read_json(path: Path) -> Optional[dict]:
    """A JSON object file, or None when absent.

    Raises:
        LineageNotFoundError: the file is not valid JSON.
    """
    if not path.is_file():
        return None
    with document_errors(LineageNotFoundError, str(path), "fix or remove it",
                         after=", or pass the base to compare with using --base"):
        data = parse_json(read_capped(path, HUB_METADATA_MAX_BYTES))
    return data if isinstance(data, dict) else None
