"""Benchmark manifests and suite definitions: find them by name, read them, validate them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from string import Formatter

from compliance.documents import YAML_MAX_BYTES, document_errors, parse_yaml, read_capped
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
    with document_errors(SuiteError, f"{what} {path}",
                         "fix it (`compliance suites list` names the shipped ones, to compare with)"):
        doc = parse_yaml(read_capped(path, YAML_MAX_BYTES))
    if doc is None:
        raise SuiteError(f"{what} {path} is empty: write it (`compliance suites list` names the shipped ones, "
                         "to start from)")
    return doc


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
    _check_paths(manifest, path)
    _check_templates(manifest, path)
    return manifest, path


def _check_paths(manifest: dict, path: Path) -> None:
    """A downloaded file is written at its ``path`` under the cache or data dir: it may not leave that folder."""
    if manifest["source"]["kind"] == "local":
        return
    for entry in manifest["files"]:
        parts = PurePosixPath(entry["path"].replace("\\", "/")).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise SuiteError(f"benchmark manifest {path} is invalid: files path '{entry['path']}' leaves the data "
                             "folder; give a relative path inside it (like name/file.csv)")


def _check_templates(manifest: dict, path: Path) -> None:
    """A column template names columns only: ``{x.attr}``, ``{x[0]}`` and ``{x:>999999999}`` read or build too much."""
    for field, spec in manifest["columns"].items():
        if not (isinstance(spec, dict) and "template" in spec):
            continue
        try:
            fields = [(name, fmt, conv) for _, name, fmt, conv in Formatter().parse(spec["template"])
                      if name is not None]
        except ValueError as exc:
            raise SuiteError(f"benchmark manifest {path} is invalid: $.columns.{field}.template: {exc}; "
                             "write {{column}} for a column, {{{{ and }}}} for braces") from None
        for name, fmt, conv in fields:
            if not name or fmt or conv or any(c in name for c in ".[]"):
                shown = "{" + name + (f"!{conv}" if conv else "") + (f":{fmt}" if fmt else "") + "}"
                raise SuiteError(f"benchmark manifest {path} is invalid: $.columns.{field}.template uses "
                                 f"'{shown}'; a template names whole columns only, as {{column}}")


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
