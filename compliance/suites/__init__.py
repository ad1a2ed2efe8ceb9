"""Suites: load benchmark manifests (YAML, no code) into suite items, pinned by sha256.

A manifest (``benchmarks/<name>.yaml``) names its data files with their sha256, its pinned source
(a file at a commit over HTTPS, or a Hub dataset at a revision), its licence and citation, the
file format, filters, and how the file's columns map to :class:`~compliance.records.SuiteItem`
fields. A suite (``benchmarks/suites/<name>.yaml``) is a named group of benchmarks; policies and
``--suite`` name benchmarks or suites. ``limit`` draws a seeded stratified sample.

Example:
    >>> from compliance.suites import load_suite
    >>> suite = load_suite(["medical"], data_dir="../shared/benchmarks", limit=50)
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Optional

from compliance.errors import SuiteError
from compliance.records import BenchmarkInfo, Suite, SuiteItem
from compliance.suites.fetch import data_files, file_url, resolve_data_dir
from compliance.suites.manifest import available_benchmarks, available_suites, load_manifest, load_suite_definition
from compliance.suites.rows import read_rows, rows_to_items

__all__ = [
    "available_benchmarks", "available_suites", "catalog", "describe", "expand_names", "load_benchmark",
    "load_manifest", "load_suite", "load_suite_definition", "resolve_data_dir", "stratified_sample",
]

_STRATA = ("benchmark", "category", "expected")


def load_benchmark(name_or_path: str, data_dir: Optional[Path | str] = None, accept_licences: Iterable[str] = (),
                   mirror: Optional[str] = None,
                   require_acceptance: bool = True) -> tuple[BenchmarkInfo, list[SuiteItem]]:
    """Load one benchmark's items after checking every file's sha256.

    Args:
        name_or_path: a shipped benchmark name (``xstest``) or a manifest path.
        data_dir: folder laid out like ``../shared/benchmarks/`` (else ``$COMPLIANCE_DATA_DIR``, else download).
        accept_licences: opt-in benchmarks whose unconfirmed licence the user accepts.
        mirror: HTTP folder that replaces ``url`` sources (else ``$COMPLIANCE_BENCHMARK_MIRROR``).
        require_acceptance: refuse an opt-in benchmark that was not accepted (False: just read it).

    Raises:
        SuiteError: an opt-in benchmark was not accepted, a file is missing or differs from its pin,
            or a row is invalid.
    """
    manifest, path = load_manifest(name_or_path)
    name = manifest["name"]
    opt_in = bool(manifest["license"].get("opt_in", False))
    accepted = opt_in and name in set(accept_licences)
    if opt_in and require_acceptance and not accepted:
        raise SuiteError(
            f"benchmark '{name}' has an unconfirmed licence ({manifest['license']['spdx']}): read its licence note "
            f"(compliance suites show {name}) and pass --accept-licence {name} to run it"
        )
    files = data_files(manifest, path, data_dir, mirror)
    items: list[SuiteItem] = []
    for entry, file in zip(manifest["files"], files):
        rows = read_rows(file, manifest["format"])
        if not rows:
            raise SuiteError(f"benchmark '{name}': {file} has no rows; it matches its pinned sha256, so remove it "
                             "from the manifest's files or pin a file that holds the benchmark")
        if "rows" in entry and len(rows) != entry["rows"]:
            raise SuiteError(f"benchmark '{name}': {file} has {len(rows)} rows, the manifest says {entry['rows']}")
        items.extend(rows_to_items(rows, manifest, file, entry.get("constants")))
    if "rows" in manifest and len(items) != manifest["rows"]:
        raise SuiteError(f"benchmark '{name}': its filters keep {len(items)} rows, the manifest says {manifest['rows']}")
    _check_unique(items, f"benchmark '{name}'")
    digests = [e["sha256"] for e in manifest["files"]]
    info = BenchmarkInfo(
        name=name,
        version=str(manifest["version"]),
        title=manifest["title"],
        license=manifest["license"]["spdx"],
        citation=" ".join(manifest["citation"].split()),
        source=_describe_source(manifest["source"]),
        sha256=digests[0] if len(digests) == 1 else sha256_of_digests(digests),
        n_items=len(items),
        n_available=len(items),
        license_note=" ".join(manifest["license"].get("note", "").split()),
        opt_in=opt_in,
        license_accepted=accepted,
        files=[{"path": e["path"], "sha256": e["sha256"]} for e in manifest["files"]],
    )
    return info, items


def sha256_of_digests(digests: list[str]) -> str:
    """One digest for a multi-file benchmark: sha256 over the files' digests joined by newlines, in manifest order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def expand_names(names: Iterable[str], accept_licences: Iterable[str] = ()) -> list[str]:
    """Benchmark names (or manifest paths) for a mix of benchmark and suite names, in order, once each.

    A suite's ``opt_in`` benchmarks are included only when their licence is accepted.

    Raises:
        SuiteError: a name is neither a suite nor a benchmark, or suites include each other in a cycle.
    """
    accepted = set(accept_licences)
    suites = set(available_suites())
    out: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in suites and not name.endswith((".yaml", ".yml")):
            if name in trail:
                raise SuiteError(f"suite '{name}' includes itself (via {' > '.join(trail)}): fix benchmarks/suites/")
            doc = load_suite_definition(name)
            for member in doc["benchmarks"]:
                visit(member, trail + (name,))
            for member in doc.get("opt_in", []):
                if member in accepted:
                    visit(member, trail + (name,))
        elif name not in out:
            out.append(name)

    for n in names:
        visit(n, ())
    return out


def load_suite(benchmarks: list[str], name: str | None = None, limit: int | None = None, seed: int = 0,
               data_dir: Optional[Path | str] = None, accept_licences: Iterable[str] = (),
               mirror: Optional[str] = None) -> Suite:
    """Load benchmarks and suites as one suite, optionally sampled down to ``limit`` items.

    Args:
        benchmarks: benchmark names, suite names (``general``, ``medical``...) or manifest paths.
        name: suite name recorded in the report (defaults to the names joined by ``+``).
        limit: draw a stratified sample of this many items (by benchmark, category, expected).
        seed: seed of the sample.
        data_dir: folder laid out like ``../shared/benchmarks/``, for every downloaded benchmark.
        accept_licences: opt-in benchmarks (unconfirmed licence) the user accepts to run.
        mirror: HTTP folder replacing ``url`` sources.
    """
    if limit is not None and limit < 1:
        raise SuiteError(f"--limit {limit} is not a positive number of items: pass 1 or more")
    accept = list(accept_licences)
    _check_accepted_names(accept)
    infos, items = [], []
    for b in expand_names(benchmarks, accept):
        info, its = load_benchmark(b, data_dir, accept, mirror)
        infos.append(info)
        items.extend(its)
    _check_unique(items, "the suite")
    sampling = None
    if limit is not None:
        chosen = stratified_sample(items, limit, seed)
        sampling = {"limit": limit, "seed": seed, "strata": list(_STRATA), "n_available": len(items),
                    "n_selected": len(chosen)}
        items = chosen
        counts = Counter(it.benchmark for it in items)
        for info in infos:
            info.n_items = counts.get(info.name, 0)
    return Suite(name=name or "+".join(benchmarks), benchmarks=infos, items=items, sampling=sampling)


def stratified_sample(items: list[SuiteItem], limit: int, seed: int) -> list[SuiteItem]:
    """Up to ``limit`` items, spread in proportion over benchmarks, then over (category, expected) strata.

    Each benchmark gets its proportional share, and at least one item when ``limit`` allows;
    within a benchmark each (category, expected) stratum gets its proportional share. Shares are
    rounded by largest remainder with seeded tie-breaks, and within a stratum the choice is a
    seeded shuffle. The result keeps the suite's original order.
    """
    if limit >= len(items):
        return list(items)
    rng = random.Random(seed)
    by_benchmark: dict[str, dict[tuple, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, it in enumerate(items):
        by_benchmark[it.benchmark][(it.category, it.expected)].append(i)
    shares = _allocate({b: sum(len(v) for v in strata.values()) for b, strata in by_benchmark.items()},
                       limit, rng, at_least_one=True)
    chosen: list[int] = []
    for bench in sorted(by_benchmark):
        strata = by_benchmark[bench]
        for key, n in sorted(_allocate({k: len(v) for k, v in strata.items()}, shares[bench], rng).items()):
            idx = list(strata[key])
            rng.shuffle(idx)
            chosen.extend(idx[:n])
    return [items[i] for i in sorted(chosen)]


def _allocate(sizes: dict, limit: int, rng: random.Random, at_least_one: bool = False) -> dict:
    """Split ``limit`` over groups in proportion to ``sizes`` (largest remainder, seeded ties)."""
    total = sum(sizes.values())
    keys = sorted(sizes)
    quotas = {k: limit * sizes[k] / total for k in keys}
    take = {k: min(sizes[k], int(quotas[k])) for k in keys}
    if at_least_one and limit >= len(keys):
        take = {k: max(1, t) for k, t in take.items()}
        while sum(take.values()) > limit:  # the floors pushed the total over: trim the largest shares
            k = max((k for k in keys if take[k] > 1), key=lambda k: (take[k] - quotas[k], take[k]))
            take[k] -= 1
    tie = {k: rng.random() for k in keys}
    order = sorted(keys, key=lambda k: (-(quotas[k] - take[k]), tie[k]))
    rest = limit - sum(take.values())
    while rest > 0:
        progressed = False
        for k in order:
            if rest and take[k] < sizes[k]:
                take[k] += 1
                rest -= 1
                progressed = True
        if not progressed:
            break
    return take


def catalog() -> dict:
    """Every shipped benchmark and suite with licence and sha256 pins, without reading any data."""
    benchmarks = []
    for name in available_benchmarks():
        manifest, _ = load_manifest(name)
        benchmarks.append({
            "name": name, "title": manifest["title"], "version": str(manifest["version"]),
            "license": manifest["license"]["spdx"], "opt_in": bool(manifest["license"].get("opt_in", False)),
            "source": _describe_source(manifest["source"]),
            "files": [{"path": e["path"], "sha256": e["sha256"]} for e in manifest["files"]],
        })
    suites = []
    for name in available_suites():
        doc = load_suite_definition(name)
        suites.append({"name": name, "title": doc["title"], "benchmarks": doc["benchmarks"],
                       "opt_in": doc.get("opt_in", []), "expands_to": expand_names([name])})
    return {"benchmarks": benchmarks, "suites": suites}


def describe(name: str, data_dir: Optional[Path | str] = None, accept_licences: Iterable[str] = (),
             mirror: Optional[str] = None) -> dict:
    """Sources, licence, sha256 pins and rows per category of one benchmark or suite (reads the data).

    Returns:
        a dict with ``kind`` (``benchmark`` or ``suite``), ``rows`` (int) and ``categories``
        (category -> rows), plus the benchmark's manifest facts or the suite's members.
    """
    accept = list(accept_licences)
    if name in available_suites():
        doc = load_suite_definition(name)
        members, categories, total = [], Counter(), 0
        for b in expand_names([name], accept):
            sub = describe(b, data_dir, accept, mirror)
            members.append({k: sub[k] for k in ("name", "version", "license", "opt_in", "sha256", "rows")})
            categories.update(sub["categories"])
            total += sub["rows"]
        return {"name": name, "kind": "suite", "title": doc["title"], "description": " ".join(doc.get("description", "").split()),
                "opt_in": doc.get("opt_in", []), "benchmarks": members, "rows": total,
                "categories": dict(sorted(categories.items()))}
    manifest, _ = load_manifest(name)
    info, items = load_benchmark(name, data_dir, accept, mirror, require_acceptance=False)
    source = dict(manifest["source"])
    if source["kind"] == "url":
        source["files"] = [file_url(manifest, e, mirror) for e in manifest["files"]]
    return {
        "name": info.name, "kind": "benchmark", "title": info.title, "version": info.version,
        "license": info.license, "license_note": info.license_note, "opt_in": info.opt_in,
        "citation": info.citation, "source": source, "sha256": info.sha256,
        "files": [{"path": e["path"], "sha256": e["sha256"], **({"rows": e["rows"]} if "rows" in e else {})}
                  for e in manifest["files"]],
        "rows": len(items),
        "categories": dict(sorted(Counter(i.category for i in items).items())),
        "expected": dict(sorted(Counter(i.expected for i in items).items())),
        "domains": dict(sorted(Counter(i.domain for i in items).items())),
    }


def _check_accepted_names(accept: list[str]) -> None:
    for name in accept:
        try:
            manifest, _ = load_manifest(name)
        except SuiteError:
            manifest = None
        if manifest is None or not manifest["license"].get("opt_in", False):
            opt = [b for b in available_benchmarks() if load_manifest(b)[0]["license"].get("opt_in", False)]
            raise SuiteError(f"--accept-licence {name}: not a benchmark that needs acceptance; "
                             f"choose among {', '.join(opt)}")


def _check_unique(items: list[SuiteItem], where: str) -> None:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise SuiteError(f"{where}: item id '{it.id}' appears more than once: make the manifest's id mapping unique")
        seen.add(it.id)


def _describe_source(source: dict) -> str:
    if source["kind"] == "local":
        return "shipped with compliance (benchmarks/)"
    if source["kind"] == "hub":
        return f"hf://datasets/{source['repo']}@{source['revision']}"
    return source["url"]
