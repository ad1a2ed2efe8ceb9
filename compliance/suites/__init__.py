"""Suites: load benchmark manifests (YAML, no code) into suite items, pinned by sha256.

A manifest names its data files with their sha256, its licence and citation, the file format,
and how the file's columns map to :class:`~compliance.records.SuiteItem` fields. A suite is a
list of benchmark names (a policy's ``suite``), optionally sampled down with ``limit``.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

import yaml

from compliance.errors import SuiteError
from compliance.hashing import sha256_file
from compliance.records import BenchmarkInfo, Suite, SuiteItem
from compliance.resources import resource_dir
from compliance.schemas import schema_errors

__all__ = ["available_benchmarks", "load_benchmark", "load_manifest", "load_suite", "stratified_sample"]

_DOMAINS = {"general", "medical", "legal", "finance"}
_EXPECTED = {"refuse", "comply"}


def available_benchmarks() -> list[str]:
    """Names of the manifests shipped in ``benchmarks/``."""
    return sorted(p.stem for p in resource_dir("benchmarks").glob("*.yaml"))


def _manifest_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SuiteError(f"benchmark manifest '{name_or_path}' does not exist: check the path")
        return path
    candidate = resource_dir("benchmarks") / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise SuiteError(
            f"unknown benchmark '{name_or_path}': choose one of {', '.join(available_benchmarks())} "
            "or pass a manifest .yaml path"
        )
    return candidate


def load_manifest(name_or_path: str) -> tuple[dict, Path]:
    """Read and validate a manifest; returns ``(manifest, path)``.

    Raises:
        SuiteError: the file is not YAML or violates ``benchmark.schema.json`` (the message names the field).
    """
    path = _manifest_path(name_or_path)
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError(f"benchmark manifest {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    errors = schema_errors(manifest, "benchmark")
    if errors:
        raise SuiteError(f"benchmark manifest {path} is invalid: {errors[0]}")
    return manifest, path


def load_benchmark(name_or_path: str, data_dir: Path | None = None) -> tuple[BenchmarkInfo, list[SuiteItem]]:
    """Load one benchmark's items after checking every file's sha256.

    Args:
        name_or_path: a shipped benchmark name (``starter``) or a manifest path.
        data_dir: folder holding the data files; defaults to the manifest's own folder.

    Raises:
        SuiteError: a file is missing, its digest differs from the pin, or a row is invalid.
    """
    manifest, path = load_manifest(name_or_path)
    root = Path(data_dir) if data_dir is not None else path.parent
    items: list[SuiteItem] = []
    digests = []
    for entry in manifest["files"]:
        file = root / entry["path"]
        if not file.is_file():
            raise SuiteError(f"benchmark '{manifest['name']}': data file {file} is missing: check --data-dir")
        digest = sha256_file(file)
        if digest != entry["sha256"]:
            raise SuiteError(
                f"benchmark '{manifest['name']}': {file} has sha256 {digest}, the manifest pins {entry['sha256']}: "
                "the file changed; restore the pinned copy"
            )
        digests.append(digest)
        rows = _read_rows(file, manifest["format"])
        if "rows" in entry and len(rows) != entry["rows"]:
            raise SuiteError(f"benchmark '{manifest['name']}': {file} has {len(rows)} rows, the manifest says {entry['rows']}")
        items.extend(_to_item(row, manifest, file, i) for i, row in enumerate(rows))
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SuiteError(f"benchmark '{manifest['name']}': item id '{dup}' appears more than once")
    info = BenchmarkInfo(
        name=manifest["name"],
        version=str(manifest["version"]),
        title=manifest["title"],
        license=manifest["license"]["spdx"],
        citation=" ".join(manifest["citation"].split()),
        source=_describe_source(manifest["source"]),
        sha256=digests[0] if len(digests) == 1 else sha256_file_list(digests),
        n_items=len(items),
    )
    return info, items


def sha256_file_list(digests: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def load_suite(benchmarks: list[str], name: str | None = None, limit: int | None = None, seed: int = 0,
               data_dir: Path | None = None) -> Suite:
    """Load several benchmarks as one suite, optionally sampled down to ``limit`` items.

    Args:
        benchmarks: benchmark names or manifest paths.
        name: suite name recorded in the report (defaults to the names joined by ``+``).
        limit: draw a stratified sample of this many items (by benchmark, category, expected).
        seed: seed of the sample.
        data_dir: folder holding the data files, for all benchmarks.
    """
    infos, items = [], []
    for b in benchmarks:
        info, its = load_benchmark(b, data_dir)
        infos.append(info)
        items.extend(its)
    if limit is not None:
        if limit < 1:
            raise SuiteError(f"--limit {limit} is not a positive number of items: pass 1 or more")
        items = stratified_sample(items, limit, seed)
    return Suite(name=name or "+".join(i.name for i in infos), benchmarks=infos, items=items)


def stratified_sample(items: list[SuiteItem], limit: int, seed: int) -> list[SuiteItem]:
    """Up to ``limit`` items, spread over (benchmark, category, expected) strata in proportion.

    Each stratum gets its proportional share (largest remainders first); within a stratum the
    choice is a seeded shuffle. The result keeps the suite's original order.
    """
    if limit >= len(items):
        return list(items)
    strata: dict[tuple, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        strata[(it.benchmark, it.category, it.expected)].append(i)
    keys = sorted(strata)
    quotas = {k: limit * len(strata[k]) / len(items) for k in keys}
    take = {k: int(quotas[k]) for k in keys}
    for k in sorted(keys, key=lambda k: (-(quotas[k] - take[k]), k))[: limit - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for k in keys:
        idx = list(strata[k])
        rng.shuffle(idx)
        chosen.extend(idx[: take[k]])
    return [items[i] for i in sorted(chosen)]


def _read_rows(file: Path, fmt: str) -> list[dict]:
    try:
        if fmt == "jsonl":
            with open(file, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        if fmt == "csv":
            with open(file, encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))
        data = json.loads(file.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else list(data.values())
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise SuiteError(f"benchmark data file {file} cannot be parsed as {fmt}: {exc}") from exc


def _to_item(row: dict, manifest: dict, file: Path, index: int) -> SuiteItem:
    values = {}
    for field, spec in manifest["columns"].items():
        if isinstance(spec, dict):
            values[field] = spec["const"]
        elif spec not in row:
            raise SuiteError(f"benchmark '{manifest['name']}': {file} row {index + 1} has no column '{spec}' (mapped to {field})")
        else:
            values[field] = str(row[spec]).strip()
    if values["domain"] not in _DOMAINS:
        raise SuiteError(f"benchmark '{manifest['name']}': row {index + 1} has domain '{values['domain']}', expected one of {sorted(_DOMAINS)}")
    if values["expected"] not in _EXPECTED:
        raise SuiteError(f"benchmark '{manifest['name']}': row {index + 1} has expected '{values['expected']}', expected refuse or comply")
    if not values["prompt"]:
        raise SuiteError(f"benchmark '{manifest['name']}': row {index + 1} has an empty prompt")
    return SuiteItem(benchmark=manifest["name"], **values)


def _describe_source(source: dict) -> str:
    if source["kind"] == "local":
        return "shipped with compliance (benchmarks/)"
    if source["kind"] == "hub":
        return f"hf://datasets/{source.get('repo')}@{source.get('revision')}"
    return source.get("url", "")
