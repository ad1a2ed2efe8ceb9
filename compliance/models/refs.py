"""Resolve a model reference (built-in id, local folder or Hub id) to a pinned record."""

from __future__ import annotations

import hashlib
from pathlib import Path

from compliance.errors import ModelNotFoundError
from compliance.hashing import sha256_file
from compliance.models.builtin import builtin_record, is_builtin_ref
from compliance.records import ModelRecord, WeightFile

#: Files that hold weights. Pickle-based formats are recorded but not loaded unless allowed.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def resolve_model_ref(ref: str, relative_to: Path | None = None) -> ModelRecord:
    """Turn ``ref`` into a :class:`ModelRecord`.

    Args:
        ref: the built-in model's id (``HuggingFaceTB/SmolLM2-135M-Instruct``), a folder, or a Hub id
            ``org/name[@revision]`` (pinned to its commit sha; weights are not downloaded here).
        relative_to: folder against which a relative path is tried first (a card's own folder).

    Raises:
        ModelNotFoundError: nothing loadable answers to ``ref``.
    """
    if is_builtin_ref(ref):
        return builtin_record()
    candidates = [Path(ref).expanduser()]
    if relative_to is not None and not Path(ref).is_absolute():
        candidates.insert(0, relative_to / ref)
    for path in candidates:
        if path.is_dir():
            return local_record(path)
    if Path(ref).exists():
        raise ModelNotFoundError(f"model '{ref}' is a file, not a folder: pass the folder that holds config.json")
    from compliance.hub import hub_record, looks_like_hub_id

    if looks_like_hub_id(ref):
        return hub_record(ref)
    raise ModelNotFoundError(
        f"model '{ref}' is neither a folder on this machine nor the built-in model nor a Hub id: "
        "pass a local Hugging Face model folder or a Hub id as org/name[@revision]"
    )


def local_record(folder: Path) -> ModelRecord:
    """Record for a local Hugging Face folder: sha256 of every weight file."""
    folder = folder.resolve()
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"model folder '{folder}' has no config.json: pass a Hugging Face model folder "
            "(one written by save_pretrained)"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelNotFoundError(
            f"model folder '{folder}' holds no weight files ({', '.join(WEIGHT_SUFFIXES)}): "
            "pass a folder with the weights saved in it"
        )
    weights = [WeightFile(path=str(p.relative_to(folder)), sha256=sha256_file(p), size=p.stat().st_size) for p in files]
    gguf = [w.path for w in weights if w.path.endswith(".gguf")]
    return ModelRecord(
        id=str(folder),
        kind="local",
        path=str(folder),
        revision=content_revision(weights),
        weights=weights,
        provenance={"source": "local folder"},
        license=_card_license(folder),
        gguf_file=gguf[0] if gguf and not any(w.path.endswith(".safetensors") for w in weights) else None,
    )


def content_revision(weights: list[WeightFile]) -> str:
    """A revision id for unversioned folders: sha256 over the sorted ``path:sha256`` lines."""
    h = hashlib.sha256()
    for w in sorted(weights, key=lambda w: w.path):
        h.update(f"{w.path}:{w.sha256}\n".encode())
    return h.hexdigest()


def _card_license(folder: Path) -> str | None:
    from compliance.lineage.card import read_card_metadata

    try:
        license_ = read_card_metadata(folder).get("license")
    except Exception:  # a malformed card is reported by lineage, not here
        return None
    return str(license_) if license_ else None
