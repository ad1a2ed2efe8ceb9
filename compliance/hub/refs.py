"""Hub model references: ``org/name`` or ``org/name@revision``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from compliance.errors import ModelNotFoundError

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[^\s@]+))?$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubRef:
    """A Hub model repository and the revision asked for (None: the default branch)."""

    repo_id: str
    revision: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def looks_like_hub_id(ref: str) -> bool:
    """True when ``ref`` has the shape ``org/name[@revision]`` (it may still not exist)."""
    if ref.startswith((".", "/", "~")) or "\\" in ref:
        return False
    return _HUB_ID.match(ref.strip()) is not None


def parse_hub_ref(ref: str) -> HubRef:
    """Split ``org/name[@revision]``.

    Raises:
        ModelNotFoundError: ``ref`` is not shaped like a Hub model id.
    """
    m = _HUB_ID.match(ref.strip())
    if m is None:
        raise ModelNotFoundError(
            f"'{ref}' is not a Hub model id: write it as org/name or org/name@revision (a branch, tag or commit)"
        )
    return HubRef(m.group("repo"), m.group("rev"))
