"""Download a pinned Hub model into the Hub cache: only what loading needs, safe by default."""

from __future__ import annotations

from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path

from compliance.constants import HUB_SUPPORT_FILE_MAX_BYTES
from compliance.errors import ModelNotFoundError, UnsafeModelError
from compliance.hashing import sha256_file
from compliance.hub.client import HubRepo, endpoint, hub_errors
from compliance.hub.guard import install_host_guard
from compliance.hub.records import PICKLE_SUFFIXES, repo_of
from compliance.hub.refs import HubRef
from compliance.records import ModelRecord, WeightFile

# Configuration, tokenizer and chat-template files: small, and never executed. The model card is
# not needed to load a model (lineage reads it, with a cap, through the API client).
_SUPPORT_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def download_model(record: ModelRecord, allow_pickle: bool = False, trust_remote_code: bool = False) -> ModelRecord:
    """Return ``record`` with ``path`` set to a snapshot of its pinned commit (and its adapter base's).

    Downloads the configuration and tokenizer files plus exactly the recorded weight files, then
    checks each file's size against the Hub's listing and each weight file's sha256 against the
    digest recorded from the Hub's LFS metadata (a file that does not match is deleted from the
    cache). Pickle weights are refused unless ``allow_pickle``; Python files are fetched only with
    ``trust_remote_code``.

    Raises:
        ModelNotFoundError: no weight files, or only pickle weights and no ``allow_pickle``.
        UnsafeModelError: a file larger than it may be, or not the bytes the Hub recorded.
    """
    if record.kind != "hub":
        return record
    from compliance.models.refs import require_weights

    require_weights(record)
    adapter_base = record.adapter_base
    if adapter_base is not None:
        adapter_base = download_model(adapter_base, allow_pickle, trust_remote_code)
    if record.path and Path(record.path).is_dir():
        return replace(record, adapter_base=adapter_base)
    if any(w.path.endswith(PICKLE_SUFFIXES) for w in record.weights) and not allow_pickle:
        raise ModelNotFoundError(
            f"model '{record.id}' only has pickle weights (.bin/.pt), which can run code when loaded: "
            "pick a revision with safetensors, or pass --allow-pickle if you trust the source"
        )
    repo = repo_of(record)
    where = f"'{record.id}' at {record.revision[:12]}"
    names = _files_to_fetch(repo, record, trust_remote_code)
    folder = None
    for name in names:
        local = _download(repo, name)
        folder = local.parents[name.count("/")]
        _check_size(repo, where, name, local)
    weights = [_verified(where, folder / w.path, w) for w in record.weights]
    from compliance.models.memory import read_safetensors_header

    for w in weights:
        if w.path.endswith(".safetensors"):
            read_safetensors_header(folder / w.path, f"{where}: {w.path}")
    return replace(record, path=str(folder), weights=weights, adapter_base=adapter_base)


def _files_to_fetch(repo: HubRepo, record: ModelRecord, trust_remote_code: bool) -> list[str]:
    patterns = _SUPPORT_FILES + (["*.py"] if trust_remote_code else [])
    support = [f for f in repo.files if any(fnmatch(f.path, p) for p in patterns)]
    for f in support:
        if f.size is not None and f.size > HUB_SUPPORT_FILE_MAX_BYTES:
            raise UnsafeModelError(
                f"model '{record.id}' at {record.revision[:12]}: {f.path} is listed at {f.size:,} bytes, more than "
                f"the {HUB_SUPPORT_FILE_MAX_BYTES:,} bytes a configuration or tokenizer file may have: refused; "
                "report it to the repository's owners, or pass a local model folder"
            )
    weights = {w.path for w in record.weights}
    return sorted({f.path for f in support} - weights) + sorted(weights)


def _download(repo: HubRepo, name: str) -> Path:
    from huggingface_hub import hf_hub_download

    install_host_guard()
    with hub_errors(HubRef(repo.repo_id, repo.sha), name):
        return Path(hf_hub_download(repo.repo_id, name, revision=repo.sha, endpoint=endpoint()))


def _check_size(repo: HubRepo, where: str, name: str, local: Path) -> None:
    listed = next((f.size for f in repo.files if f.path == name), None)
    actual = local.stat().st_size
    if listed is not None and actual != listed:
        _evict(local)
        raise UnsafeModelError(
            f"model {where}: {name} was served as {actual:,} bytes but the Hub lists {listed:,}: "
            "removed from the cache; retry, or report it to the repository's owners"
        )


def _verified(where: str, local: Path, w: WeightFile) -> WeightFile:
    if not local.is_file():
        raise ModelNotFoundError(f"model {where}: {w.path} did not download; retry")
    digest = sha256_file(local)
    if not w.sha256:  # not in LFS and not readable when the record was made: the bytes are the record
        return replace(w, sha256=digest, size=local.stat().st_size)
    if digest != w.sha256:
        _evict(local)
        raise UnsafeModelError(
            f"model {where}: {w.path} has sha256 {digest[:12]}… but the Hub recorded {w.sha256[:12]}…: "
            "the file is not what the Hub lists, so it was removed from the cache; retry, or report it to the "
            "repository's owners"
        )
    return w


def _evict(local: Path) -> None:
    """Delete a bad download (the snapshot link and the blob it points to) so a retry fetches it again."""
    import os

    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).resolve()
    for path in (Path(os.path.realpath(local.parent)) / local.name, local.resolve()):
        if path.is_relative_to(cache):
            path.unlink(missing_ok=True)
