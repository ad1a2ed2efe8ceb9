"""Hub repositories as pinned :class:`ModelRecord` s, and what each says it derives from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from compliance.errors import HubGatedRepoError, MalformedCardError
from compliance.hashing import sha256_file
from compliance.hub.client import HubRepo, download_file, fetch_repo, read_json_file, repo_metadata
from compliance.hub.refs import HubRef, looks_like_hub_id, parse_hub_ref
from compliance.records import ModelRecord, WeightFile

RELATIONS = ("finetune", "adapter", "merge", "quantized")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# Pickles a training run leaves next to the weights; they are not weights.
_NOT_WEIGHTS = re.compile(r"(^|/)(training_args\.bin|optimizer\.pt|scheduler\.pt|rng_state.*\.pth)$")
_QUANT_FILE = re.compile(r"(gptq|awq)", re.IGNORECASE)
# Preferred GGUF quantizations when a repository holds several (closest to the original first).
_GGUF_PREFERENCE = ("f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")


def hub_record(ref: str) -> ModelRecord:
    """Record for the Hub model ``org/name[@revision]``, pinned to its commit sha, without downloading weights.

    The weight files' sha256 come from the Hub's LFS metadata; a weight file stored outside
    LFS (small, rare) is downloaded and hashed. A repository without weight files (a card and a
    config, as many ancestors are) gives a record with no ``weights``: lineage passes through it,
    evaluation refuses it (:func:`compliance.models.require_weights`).
    """
    hub_ref = parse_hub_ref(ref)
    repo = fetch_repo(hub_ref)
    weights, gguf_file = _weights(repo)
    try:
        license_ = repo_metadata(repo).get("license")
    except MalformedCardError:  # reported by lineage, which needs the card
        license_ = (repo.card_data or {}).get("license")
    return ModelRecord(
        id=repo.repo_id,
        kind="hub",
        path="",
        revision=repo.sha,
        weights=weights,
        provenance={
            "source": "huggingface hub",
            "endpoint": repo.endpoint,
            "requested_revision": hub_ref.revision or "default branch",
            "commit": repo.sha,
            "private": repo.private,
            **({"gguf_file": gguf_file} if gguf_file else {}),
        },
        license=str(license_) if license_ else None,
        gguf_file=gguf_file,
        gated=repo.gated,
    )


def repo_of(record: ModelRecord) -> HubRepo:
    """The (cached) Hub metadata of a ``hub`` record, at its pinned commit."""
    repo = fetch_repo(HubRef(record.id, record.revision))
    return repo


def hub_declared_parents(record: ModelRecord) -> Optional[tuple[list[str], str, str, str]]:
    """What a Hub model says it derives from: ``(parent ids, relation, source, confidence)`` or None.

    Sources, most authoritative first: the card's ``base_model`` (with ``base_model_relation``),
    the Hub's ``baseModels``, ``adapter_config.json``'s ``base_model_name_or_path`` (medium
    confidence) and, only when nothing else exists, ``config.json``'s ``_name_or_path`` (low).

    Raises:
        MalformedCardError: the card's front matter is not valid YAML.
    """
    repo = repo_of(record)
    meta = repo_metadata(repo)
    adapter_cfg = read_json_file(repo, "adapter_config.json")
    config = read_json_file(repo, "config.json")
    card_bases = _ids(meta.get("base_model"))
    card_relation = meta.get("base_model_relation") if meta.get("base_model_relation") in RELATIONS else None
    api_bases, api_relation = parse_base_models(repo.base_models)

    def relation(parents: list[str], *declared: Optional[str]) -> str:
        for r in declared:
            if r:
                return r
        return infer_relation(repo, adapter_cfg, config, parents)

    if card_bases:
        return card_bases, relation(card_bases, card_relation, api_relation), "model card: base_model", "high"
    if api_bases:
        return api_bases, relation(api_bases, api_relation, card_relation), "Hub API: baseModels", "high"
    if adapter_cfg and looks_like_hub_id(str(adapter_cfg.get("base_model_name_or_path") or "")):
        return ([str(adapter_cfg["base_model_name_or_path"])], "adapter",
                "adapter_config.json: base_model_name_or_path", "medium")
    name = str((config or {}).get("_name_or_path") or "")
    if looks_like_hub_id(name) and parse_hub_ref(name).repo_id.lower() != repo.repo_id.lower():
        return [name], relation([name], card_relation), "config.json: _name_or_path (weak hint)", "low"
    return None


def infer_relation(repo: HubRepo, adapter_cfg: Optional[dict], config: Optional[dict], parents: list[str]) -> str:
    """The relation when nothing declares it: adapter, quantized, merge, else finetune."""
    if adapter_cfg is not None or repo.has("adapter_config.json"):  # listed, though gated
        return "adapter"
    names = [f.path for f in repo.files]
    if any(n.endswith(".gguf") or _QUANT_FILE.search(n) for n in names) or "quantize_config.json" in names:
        return "quantized"
    if config and "quantization_config" in config:
        return "quantized"
    if len(parents) > 1:
        return "merge"
    return "finetune"


def parse_base_models(value: Any) -> tuple[list[str], Optional[str]]:
    """The Hub's ``baseModels`` in either shape seen: a list of ids (or ``{id}``), or ``{relation, models: [{id}]}``."""
    if not value:
        return [], None
    relation = None
    models = value
    if isinstance(value, dict):
        relation = value.get("relation") if value.get("relation") in RELATIONS else None
        models = value.get("models") or []
    return _ids(models), relation


def is_pure_adapter(repo: HubRepo) -> bool:
    """A PEFT adapter without a full model of its own: it loads onto its base."""
    return repo.has("adapter_config.json") and not repo.has("config.json")


def _ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("id")
        if item and looks_like_hub_id(str(item)):
            out.append(str(item))
    return out


def _weights(repo: HubRepo) -> tuple[list[WeightFile], Optional[str]]:
    safetensors = [f for f in repo.files if f.path.endswith(".safetensors")]
    ggufs = sorted((f for f in repo.files if f.path.endswith(".gguf")), key=lambda f: f.path)
    pickles = [f for f in repo.files if f.path.endswith(PICKLE_SUFFIXES) and not _NOT_WEIGHTS.search(f.path)]
    gguf_file = None
    if safetensors:
        chosen = safetensors
    elif ggufs:
        chosen = [_pick_gguf(ggufs)]
        gguf_file = chosen[0].path
    else:
        chosen = pickles
    weights = []
    for f in sorted(chosen, key=lambda f: f.path):
        if f.lfs_sha256:
            weights.append(WeightFile(path=f.path, sha256=f.lfs_sha256, size=int(f.size or 0)))
            continue
        try:  # not in LFS, so small: hash the bytes themselves
            local = Path(download_file(repo, f.path))
        except HubGatedRepoError:  # an ancestor we may not read: the digest is taken when it is downloaded
            weights.append(WeightFile(path=f.path, sha256="", size=int(f.size or 0)))
            continue
        weights.append(WeightFile(path=f.path, sha256=sha256_file(local), size=local.stat().st_size))
    return weights, gguf_file


def _pick_gguf(ggufs):
    for pref in _GGUF_PREFERENCE:
        for f in ggufs:
            if f.path.lower().endswith(f"{pref}.gguf"):
                return f
    return ggufs[0]
