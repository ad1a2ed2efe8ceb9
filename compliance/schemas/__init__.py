"""JSON Schemas and one helper to validate against them with people-readable errors."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema

_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """Load ``<name>.schema.json`` from this folder."""
    return json.loads((_DIR / f"{name}.schema.json").read_text())


def schema_errors(instance: object, name: str) -> list[str]:
    """Every violation of schema ``name`` as ``"<json path>: <message>"``, most specific first."""
    validator = jsonschema.Draft202012Validator(load_schema(name), format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(list(e.absolute_path)), e.message))
    return [f"{_path(e)}: {_message(e)}" for e in errors]


def _path(error: jsonschema.ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "$" + parts


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is missing (required)")
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown field(s)")
    return error.message


#: Report schema files by ``schema_version``; the newest is ``report.schema.json``. One file holds
#: 2.0 and 2.1: a 2.1 report is a 2.0 report with an ``audit`` section (``compliance audit``).
REPORT_SCHEMAS = {"1.0": "report-1.0", "2.0": "report", "2.1": "report"}


def report_errors(report: object) -> list[str]:
    """Every violation of the report schema that the report's own ``schema_version`` names.

    Reports of every version the tool has written still read: ``verify``, ``compare`` and
    ``card`` check an older report against its own schema. An unknown or missing version is one
    error naming the versions this tool reads.
    """
    version = report.get("schema_version") if isinstance(report, dict) else None
    name = REPORT_SCHEMAS.get(version) if isinstance(version, str) else None
    if name is None:
        return [f"$.schema_version: {version!r} is not a report schema version this tool reads "
                f"({', '.join(REPORT_SCHEMAS)}); upgrade compliance or re-run compliance report"]
    return schema_errors(report, name)
