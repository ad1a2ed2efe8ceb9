"""The Hugging Face Hub, through the real ``huggingface_hub`` client.

Resolves ``org/name[@revision]`` to a :class:`~compliance.records.ModelRecord` pinned to its
commit sha, with its weight files' sha256 read from the Hub's LFS metadata (no download), and
reads what the repository says about where it came from. Works offline (``HF_HUB_OFFLINE=1``)
from a warm cache: the repository metadata seen online is kept next to the Hub cache.
"""

from compliance.hub.client import HubRepo, fetch_repo, read_repo_file, repo_metadata
from compliance.hub.download import download_model
from compliance.hub.refs import HubRef, looks_like_hub_id, parse_hub_ref
from compliance.hub.records import hub_declared_parents, hub_record

__all__ = [
    "HubRef",
    "HubRepo",
    "download_model",
    "fetch_repo",
    "hub_declared_parents",
    "hub_record",
    "looks_like_hub_id",
    "parse_hub_ref",
    "read_repo_file",
    "repo_metadata",
]
