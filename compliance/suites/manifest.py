"""Benchmark manifests and suite definitions: find them by name, read them, validate them."""

from __future__ import annotations

from pathlib import Path

import yaml

from compliance.errors import SuiteError
from compliance.resources import resource_dir
from compliance.schemas import schema_errors

__all__ = ["available_benchmarks", "available_suites", "load_manifest", "load_suite_definition"]

#: Folder under ``benchmarks/`` that holds the named suites, one YAML file each.
SUITES_FOLDER = "suites"


def available_benchmarks() -> list[str]:
    """Names of the manifests shipped in ``benchmarks/``."""
    return sorted(p.stem for p in resource_dir("benchmarks").glob("*.yaml"))


def available_suites() -> list[str]:
    """Names of the suites shipped in ``benchmarks/suites/``."""
    return sorted(p.stem for p in (resource_dir("benchmarks") / SUITES_FOLDER).glob("*.yaml"))


def _read_yaml(path: Path, what: str) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc


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
            f"(or a suite: {', '.join(available_suites())}) or pass a manifest .yaml path"
        )
    return candidate


def load_manifest(name_or_path: str) -> tuple[dict, Path]:
    """Read and validate a manifest; returns ``(manifest, path)``.

    Raises:
        SuiteError: the file is not YAML or violates ``benchmark.schema.json`` (the message names the field).
    """
    path = _manifest_path(name_or_path)
    manifest = _read_yaml(path, "benchmark manifest")
    errors = schema_errors(manifest, "benchmark")
    if errors:
        raise SuiteError(f"benchmark manifest {path} is invalid: {errors[0]}")
    source = manifest["source"]
    if source["kind"] == "url" and source["revision"] not in source["url"]:
        raise SuiteError(f"benchmark manifest {path} is invalid: $.source.url must contain the pinned revision "
                         f"{source['revision']} so the files cannot change under it")
    return manifest, path


def load_suite_definition(name: str) -> dict:
    """Read and validate ``benchmarks/suites/<name>.yaml``.

    Raises:
        SuiteError: no such suite, or the file violates ``suite.schema.json``.
    """
    path = resource_dir("benchmarks") / SUITES_FOLDER / f"{name}.yaml"
    if not path.is_file():
        raise SuiteError(f"unknown suite '{name}': choose one of {', '.join(available_suites())}")
    doc = _read_yaml(path, "suite definition")
    errors = schema_errors(doc, "suite")
    if errors:
        raise SuiteError(f"suite definition {path} is invalid: {errors[0]}")
    if doc["name"] != name:
        raise SuiteError(f"suite definition {path} is named '{doc['name']}': rename the file or the suite to match")
    return doc
