"""Find a base model's descendants on the Hub: ``compliance fleet --finetunes-of BASE``.

The Hub tags every model whose card declares ``base_model: BASE`` with
``base_model:<relation>:BASE`` (relation ``finetune``, ``adapter``, ``quantized`` or ``merge``,
from the card's ``base_model_relation``). Discovery asks ``huggingface_hub``'s ``list_models``
for that tag (and any ``--tag``, which the Hub also matches as a filter, and ``--search`` text
in the id), most downloaded first, and records the query and the date it was asked, since the
answer changes as models are uploaded and downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Optional, Sequence

from compliance.errors import ComplianceError

__all__ = ["RELATIONS", "DiscoveredModel", "Discovery", "discover_finetunes"]

#: The relations the Hub's ``base_model:<relation>:<id>`` tags use (the card's ``base_model_relation``).
RELATIONS = ("finetune", "adapter", "quantized", "merge")


class DiscoveryError(ComplianceError):
    """The discovery query is malformed, or the Hub cannot answer it."""


@dataclass(frozen=True)
class DiscoveredModel:
    """One descendant as the Hub lists it."""

    id: str
    downloads: int
    likes: Optional[int] = None
    created_at: Optional[str] = None
    sha: Optional[str] = None


@dataclass
class Discovery:
    """A discovery query, when it was asked, and the models it found (most downloaded first).

    Attributes:
        base: the base model's Hub id (without a revision: the tags carry none).
        relation: which descendants (``finetune``, ``adapter``, ``quantized``, ``merge``).
        search: text the model id must contain (the Hub's ``search``), if any.
        tags: further tags every model must carry (e.g. ``medical``).
        top: how many were kept, None for all.
        filter: the filters sent to ``list_models``.
        endpoint: the Hub that answered.
        date: when it was asked (UTC, ISO 8601).
        models: the kept models, most downloaded first (ties by id).
    """

    base: str
    relation: str
    search: Optional[str]
    tags: tuple[str, ...]
    top: Optional[int]
    filter: list[str]
    endpoint: str
    date: str
    models: list[DiscoveredModel] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["sort"] = "downloads, descending"
        return data


def discover_finetunes(base: str, relation: str = "finetune", search: Optional[str] = None,
                       tags: Sequence[str] = (), top: Optional[int] = None) -> Discovery:
    """The Hub's models derived from ``base`` by ``relation``, most downloaded first.

    Args:
        base: the base model's Hub id ``org/name`` (a ``@revision`` is ignored: the Hub's tags carry none).
        relation: ``finetune``, ``adapter``, ``quantized`` or ``merge``.
        search: only models whose id contains this text.
        tags: only models that carry every one of these tags.
        top: keep the ``top`` most downloaded.

    Raises:
        DiscoveryError: an unknown relation, a ``top`` below 1, or a base that is not a Hub id.
        HubUnreachableError: the Hub cannot be reached, or offline mode is on.
    """
    from huggingface_hub import HfApi

    from compliance.hub.client import endpoint, hub_errors, offline
    from compliance.hub.refs import looks_like_hub_id, parse_hub_ref

    if relation not in RELATIONS:
        raise DiscoveryError(f"--relation {relation!r} is not a Hub base-model relation: choose one of "
                             f"{', '.join(RELATIONS)}")
    if top is not None and top < 1:
        raise DiscoveryError(f"--top {top} must be at least 1")
    if not looks_like_hub_id(base):
        raise DiscoveryError(f"--finetunes-of {base!r} is not a Hub model id: write the base as org/name")
    ref = parse_hub_ref(base)
    if offline():
        raise DiscoveryError(f"--finetunes-of {ref.repo_id} asks the Hub for its descendants, and HF_HUB_OFFLINE=1 "
                             "is set: unset it, or list the models with --models FILE")
    filters = [f"base_model:{relation}:{ref.repo_id}", *tags]
    asked = datetime.now(timezone.utc)
    with hub_errors(ref):
        listed = list(HfApi(endpoint=endpoint()).list_models(
            filter=filters, search=search or None, sort="downloads", limit=top,
            expand=["downloads", "likes", "createdAt", "sha"]))
    models = [DiscoveredModel(id=m.id, downloads=int(m.downloads or 0), likes=m.likes,
                              created_at=m.created_at.isoformat() if m.created_at else None, sha=m.sha)
              for m in listed]
    models.sort(key=lambda m: (-m.downloads, m.id))  # the Hub sorts too; ties get a fixed order here
    return Discovery(base=ref.repo_id, relation=relation, search=search or None, tags=tuple(tags), top=top,
                     filter=filters, endpoint=endpoint(), date=asked.isoformat(timespec="seconds"),
                     models=models[:top] if top else models)
