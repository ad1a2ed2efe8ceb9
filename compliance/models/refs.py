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
# What identifies a folder without weights: the files lineage reads.
_METADATA_FILES = ("config.json", "adapter_config.json", "README.md")


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
        if _is(path, Path.is_dir):
            return local_record(path)
    if _is(Path(ref), Path.exists):
        raise ModelNotFoundError(f"model '{ref}' is a file, not a folder: pass the folder that holds config.json")
    from compliance.hub import hub_record, looks_like_hub_id

    if looks_like_hub_id(ref):
        return hub_record(ref)
    raise ModelNotFoundError(
        f"model '{ref}' is neither a folder on this machine nor the built-in model nor a Hub id: "
        "pass a local Hugging Face model folder or a Hub id as org/name[@revision]"
    )


def _is(path: Path, test) -> bool:
    """``test(path)``, False for a name the system refuses to look up (longer than a file name may be)."""
    try:
        return test(path)
    except OSError:
        return False


def local_record(folder: Path) -> ModelRecord:
    """Record for a local Hugging Face folder: sha256 of every weight file.

    A folder without weight files (a card and a config: an ancestor kept for its lineage) gives a
    record with no ``weights``, whose revision is the digest of those metadata files; evaluation
    refuses it (:func:`require_weights`).
    """
    folder = folder.resolve()
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"model folder '{folder}' has no config.json: pass a Hugging Face model folder "
            "(one written by save_pretrained)"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    weights = [_digest(folder, p) for p in files]
    metadata = [_digest(folder, folder / n) for n in _METADATA_FILES if (folder / n).is_file()]
    gguf = [w.path for w in weights if w.path.endswith(".gguf")]
    return ModelRecord(
        id=str(folder),
        kind="local",
        path=str(folder),
        revision=content_revision(weights or metadata),
        weights=weights,
        provenance={"source": "local folder"},
        license=_card_license(folder),
        gguf_file=gguf[0] if gguf and not any(w.path.endswith(".safetensors") for w in weights) else None,
    )


def require_weights(record: ModelRecord, role: str = "model", hint: str = "") -> None:
    """Refuse to evaluate a model (or an adapter whose base) has no weight files.

    Args:
        record: the model to evaluate.
        role: how messages name it (``model``, ``comparison base``).
        hint: appended to the message, e.g. which ancestor has weights.

    Raises:
        ModelNotFoundError: one line naming the model and what to do.
    """
    for part, what in ((record, role), (record.adapter_base, f"base of adapter '{record.id}', the model")):
        if part is not None and not part.weights:
            at = f" at {part.revision[:12]}" if part.kind == "hub" else ""
            raise ModelNotFoundError(
                f"{what} '{part.id}'{at} holds no weight files ({', '.join(WEIGHT_SUFFIXES)}): it is metadata only, "
                "so lineage passes through it but it cannot be evaluated; pin a revision that has weights, pass a "
                f"local folder, or compare with another model using --base{hint}"
            )


def _digest(folder: Path, path: Path) -> WeightFile:
    return WeightFile(path=str(path.relative_to(folder)), sha256=sha256_file(path), size=path.stat().st_size)


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
