"""Read a model card's YAML front matter (the block between ``---`` lines at the top of README.md)."""

from __future__ import annotations

from pathlib import Path

from compliance.constants import HUB_METADATA_MAX_BYTES
from compliance.documents import (YAML_MAX_BYTES, DocumentError, decode_text, document_errors, parse_yaml,
                                  read_capped)
from compliance.errors import MalformedCardError


def split_front_matter(text: str) -> tuple[str | None, str]:
    """Return ``(yaml_text, body)``; ``yaml_text`` is None when the card has no front matter."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


def read_card_metadata(folder: Path) -> dict:
    """Front matter of ``folder/README.md`` as a dict (empty when there is no card or no front matter).

    The card is read as the Hub's are: at most :data:`~compliance.constants.HUB_METADATA_MAX_BYTES`,
    as UTF-8 (or UTF-16 with its byte-order mark), bytes that are not UTF-8 read as U+FFFD.

    Raises:
        MalformedCardError: the card is too large, or its front matter is not valid YAML or not a mapping.
    """
    card = Path(folder) / "README.md"
    if not card.is_file():
        return {}
    where = f"model card {card}"
    with document_errors(MalformedCardError, where, "shorten it",
                         after=", or pass the base to compare with using --base"):
        data = read_capped(card, HUB_METADATA_MAX_BYTES)
    return parse_front_matter(decode_text(data, errors="replace"), where)


def parse_front_matter(text: str, where: str) -> dict:
    """Front matter of a card's ``text`` as a dict; ``where`` names the card in error messages.

    Raises:
        MalformedCardError: the front matter is not valid YAML (within :mod:`compliance.documents`' limits:
            no duplicate keys, no alias bomb, at most :data:`~compliance.documents.YAML_MAX_BYTES`) or not a mapping.
    """
    meta_text, _ = split_front_matter(text.lstrip("\ufeff"))
    if meta_text is None:
        return {}
    fix = "fix the block between the '---' lines, or pass the base to compare with using --base"
    if len(meta_text) > YAML_MAX_BYTES:
        raise MalformedCardError(f"{where} has front matter longer than {YAML_MAX_BYTES // 1024**2} MiB: {fix}")
    try:
        meta = parse_yaml(meta_text)
    except DocumentError as exc:
        line = f"line {exc.line + 1}: " if exc.line else ""  # of the file: the block starts after its '---'
        raise MalformedCardError(f"{where} has malformed YAML front matter ({line}{exc.detail}): {fix}") from None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise MalformedCardError(f"{where} front matter is not a mapping of keys to values: fix its YAML")
    return meta
