"""Download a pinned Hub model into the Hub cache: only what loading needs, safe by default."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from compliance.errors import ModelNotFoundError
from compliance.hashing import sha256_file
from compliance.hub.client import endpoint, hub_errors
from compliance.hub.records import PICKLE_SUFFIXES
from compliance.hub.refs import HubRef
from compliance.records import ModelRecord

# Configuration, tokenizer and chat-template files: small, and never executed.
_SUPPORT_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "README.md"]


def download_model(record: ModelRecord, allow_pickle: bool = False, trust_remote_code: bool = False) -> ModelRecord:
    """Return ``record`` with ``path`` set to a snapshot of its pinned commit (and its adapter base's).

    Downloads the configuration and tokenizer files plus exactly the recorded weight files, then
    checks each weight file's sha256 against the digest recorded from the Hub's LFS metadata.
    Pickle weights are refused unless ``allow_pickle``; Python files are fetched only with
    ``trust_remote_code``.

    Raises:
        ModelNotFoundError: only pickle weights and no ``allow_pickle``, or a digest mismatch.
    """
    if record.kind != "hub":
        return record
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
    from huggingface_hub import snapshot_download

    patterns = _SUPPORT_FILES + [w.path for w in record.weights] + (["*.py"] if trust_remote_code else [])
    with hub_errors(HubRef(record.id, record.revision)):
        folder = Path(snapshot_download(record.id, revision=record.revision, allow_patterns=patterns,
                                        endpoint=endpoint()))
    for w in record.weights:
        local = folder / w.path
        if not local.is_file():
            raise ModelNotFoundError(f"model '{record.id}' at {record.revision[:12]}: {w.path} did not download; retry")
        digest = sha256_file(local)
        if digest != w.sha256:
            raise ModelNotFoundError(
                f"model '{record.id}' at {record.revision[:12]}: {w.path} has sha256 {digest[:12]}… but the Hub "
                f"recorded {w.sha256[:12]}…; delete it from the Hub cache and retry"
            )
    return replace(record, path=str(folder), adapter_base=adapter_base)
