"""Locate the project's resource folders (templates, policies, benchmarks).

In a source checkout (or an editable install) they sit at the repository root; in a wheel
they are shipped under ``compliance/_resources/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the folder ``name`` (``templates``, ``policies`` or ``benchmarks``)."""
    for candidate in (_PACKAGE_DIR / "_resources" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} not found next to {_PACKAGE_DIR}")


def schema_path(name: str) -> Path:
    """Path of a JSON Schema shipped in ``compliance/schemas``."""
    return _PACKAGE_DIR / "schemas" / name
