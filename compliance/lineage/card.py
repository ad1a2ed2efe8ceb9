"""Read a model card's YAML front matter (the block between ``---`` lines at the top of README.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

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

    Raises:
        MalformedCardError: the front matter is not valid YAML or not a mapping.
    """
    card = Path(folder) / "README.md"
    if not card.is_file():
        return {}
    return parse_front_matter(card.read_text(encoding="utf-8", errors="replace"), f"model card {card}")


def parse_front_matter(text: str, where: str) -> dict:
    """Front matter of a card's ``text`` as a dict; ``where`` names the card in error messages.

    Raises:
        MalformedCardError: the front matter is not valid YAML or not a mapping.
    """
    meta_text, _ = split_front_matter(text)
    if meta_text is None:
        return {}
    try:
        meta = yaml.safe_load(meta_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 2})" if mark is not None else ""
        raise MalformedCardError(
            f"{where} has malformed YAML front matter{line}: fix the block between the '---' lines, "
            "or pass the base to compare with using --base"
        ) from exc
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise MalformedCardError(f"{where} front matter is not a mapping of keys to values: fix its YAML")
    return meta
