"""Read a benchmark file's rows and turn them into suite items (filters, then the column mapping)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from compliance.documents import DocumentError, decode_text, parse_json
from compliance.errors import SuiteError
from compliance.records import SuiteItem

__all__ = ["read_rows", "rows_to_items"]

_DOMAINS = {"general", "medical", "legal", "finance"}
_EXPECTED = {"refuse", "comply"}


def read_rows(file: Path, fmt: str) -> list[dict]:
    """Every row of ``file`` as a dict (csv: by header; jsonl: one object a line; json: a list or a dict).

    Raises:
        SuiteError: the file is not text in ``fmt``, or a row is not an object; the message names the
            file and the line.
    """
    fix = "the file matches its pinned sha256: fix the manifest's format, or pin a copy that is"
    line = None
    try:
        text = decode_text(file.read_bytes())
        if fmt == "jsonl":
            rows = []
            for line, raw in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a string
                if raw.strip():
                    rows.append((line, parse_json(raw)))
        elif fmt == "csv":
            rows = list(enumerate(csv.DictReader(io.StringIO(text, newline="")), 2))
        else:
            data = parse_json(text)
            rows = list(enumerate(data if isinstance(data, list) else
                                  data.values() if isinstance(data, dict) else [data], 1))
    except DocumentError as exc:
        where = f" line {line}" if line else ""
        pin = " (UTF-8)" if exc.fix else ""
        raise SuiteError(f"benchmark data file {file}{where} {exc}; {fix} {fmt}{pin}") from None
    except csv.Error as exc:
        raise SuiteError(f"benchmark data file {file} is not valid CSV ({exc}); {fix} csv") from None
    for n, row in rows:
        if not isinstance(row, dict):
            what = "line" if fmt != "json" else "item"
            raise SuiteError(f"benchmark data file {file} {what} {n} is {type(row).__name__}, not an object of "
                             f"columns; {fix} {fmt} of objects")
    return [row for _, row in rows]


def rows_to_items(rows: list[dict], manifest: dict, file: Path, constants: dict | None = None) -> list[SuiteItem]:
    """Apply the manifest's filters and column mapping to the rows of one file.

    Args:
        rows: the file's rows, in order.
        manifest: a validated manifest.
        file: the file (for messages).
        constants: the file's fixed extra columns (``files[].constants``).
    """
    items = []
    for index, raw in enumerate(rows):
        row = {**raw, **(constants or {}), "_row": str(index + 1)}
        if all(_keep(row, f, manifest, file, index) for f in manifest.get("filters", [])):
            items.append(_to_item(row, manifest, file, index))
    return items


def _keep(row: dict, flt: dict, manifest: dict, file: Path, index: int) -> bool:
    value = _column(row, flt["column"], manifest, file, index, "filter")
    if "in" in flt:
        return value in flt["in"]
    return value not in flt["not_in"]


def _column(row: dict, column: str, manifest: dict, file: Path, index: int, field: str) -> str:
    if column not in row:
        raise SuiteError(f"benchmark '{manifest['name']}': {file} row {index + 1} has no column '{column}' (used by {field})")
    value = row[column]
    return "" if value is None else str(value).strip()


def _value(row: dict, spec, manifest: dict, file: Path, index: int, field: str) -> str:
    if isinstance(spec, str):
        return _column(row, spec, manifest, file, index, field)
    if "const" in spec:
        return spec["const"]
    if "template" in spec:
        try:
            return spec["template"].format_map({k: "" if v is None else str(v).strip() for k, v in row.items()}).strip()
        except (KeyError, IndexError, ValueError) as exc:
            raise SuiteError(f"benchmark '{manifest['name']}': template of {field} cannot be filled from {file} "
                             f"row {index + 1}: {exc!r}") from exc
    if "join" in spec:
        parts = [_column(row, c, manifest, file, index, field) for c in spec["join"]]
        return spec.get("sep", "\n\n").join(p for p in parts if p)
    value = _column(row, spec["column"], manifest, file, index, field)
    if value not in spec["map"]:
        raise SuiteError(f"benchmark '{manifest['name']}': {file} row {index + 1} has {spec['column']} '{value}', "
                         f"which the mapping of {field} does not cover ({', '.join(spec['map'])})")
    return spec["map"][value]


def _to_item(row: dict, manifest: dict, file: Path, index: int) -> SuiteItem:
    values = {field: _value(row, spec, manifest, file, index, field) for field, spec in manifest["columns"].items()}
    where = f"benchmark '{manifest['name']}': {file} row {index + 1}"
    if values["domain"] not in _DOMAINS:
        raise SuiteError(f"{where} has domain '{values['domain']}', expected one of {sorted(_DOMAINS)}")
    if values["expected"] not in _EXPECTED:
        raise SuiteError(f"{where} has expected '{values['expected']}', expected refuse or comply")
    if not values["prompt"]:
        raise SuiteError(f"{where} has an empty prompt")
    if not values["id"]:
        raise SuiteError(f"{where} has an empty id")
    return SuiteItem(benchmark=manifest["name"], **values)
