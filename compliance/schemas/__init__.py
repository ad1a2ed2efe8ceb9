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
    message = _shorten_instance(error)
    if error.validator == "required":
        return message.replace("is a required property", "is missing (required)")
    if error.validator == "additionalProperties":
        return message.replace("Additional properties are not allowed", "unknown field(s)")
    return message


def _shorten_instance(error: jsonschema.ValidationError, limit: int = 80) -> str:
    """jsonschema's message with the offending value cut to ``limit`` characters (it may be a whole document)."""
    shown = repr(error.instance)
    if len(shown) <= limit:
        return error.message
    return error.message.replace(shown, shown[:limit] + "…")


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


#: The largest report file read (``report.json``, or an envelope that carries one): reports of the
#: largest suites, every prompt and reply included, stay far below it.
REPORT_MAX_BYTES = 256 * 1024**2


def parse_report(data: bytes) -> dict:
    """Parse the bytes of a ``report.json`` and check them against the schema their version names.

    Raises:
        compliance.documents.DocumentError: not UTF-8 JSON (standard JSON: unique keys, no ``NaN``), or
            not a report of a schema this tool reads; the message reads after the file's name.
    """
    from compliance.documents import DocumentError, parse_json

    report = parse_json(data, allow_nan=False)
    errors = report_errors(report)
    if errors:
        raise DocumentError(f"does not follow the report schema ({errors[0]})")
    return report
