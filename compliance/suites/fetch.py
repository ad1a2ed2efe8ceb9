"""Find a benchmark's data files, downloading them from their pinned source when needed.

Every file is checked against the sha256 its manifest pins before a row is read. Where a file
comes from, in order:

1. ``local`` sources: the folder of the manifest (the project's own prompts).
2. ``data_dir`` (``--data-dir``) or ``$COMPLIANCE_DATA_DIR``: a folder laid out like
   ``../shared/benchmarks/`` (each file at its manifest ``path``). Nothing is downloaded.
3. The download cache, ``cache_dir()/benchmarks/`` (laid out the same way, so it can serve as a
   data dir elsewhere).
4. The pinned source: HTTPS for a file at a commit (``url``), or ``huggingface_hub`` for a Hub
   dataset at a revision (``hub``). ``$COMPLIANCE_BENCHMARK_MIRROR`` replaces every ``url``
   source with one HTTP folder laid out like a data dir.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from compliance.constants import ENV_BENCHMARK_MIRROR, ENV_DATA_DIR, cache_dir
from compliance.errors import SuiteError
from compliance.hashing import sha256_file

__all__ = ["benchmark_cache_dir", "data_files", "file_url", "resolve_data_dir"]

_TIMEOUT_S = 60


def benchmark_cache_dir() -> Path:
    """Where downloaded benchmark files are kept: ``cache_dir()/benchmarks``."""
    return cache_dir() / "benchmarks"


def resolve_data_dir(data_dir: Optional[Path | str] = None) -> Optional[Path]:
    """``data_dir`` when given, else ``$COMPLIANCE_DATA_DIR`` when set, else None (download)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else None


def file_url(manifest: dict, entry: dict, mirror: Optional[str] = None) -> str:
    """The HTTPS address of one ``url``-source file (or its place on ``mirror``)."""
    mirror = mirror or os.environ.get(ENV_BENCHMARK_MIRROR)
    if mirror:
        return f"{mirror.rstrip('/')}/{quote(entry['path'])}"
    return manifest["source"]["url"].rstrip("/") + "/" + quote(entry.get("remote", entry["path"]))


def data_files(manifest: dict, manifest_path: Path, data_dir: Optional[Path | str] = None,
               mirror: Optional[str] = None) -> list[Path]:
    """Local paths of every file of ``manifest``, each verified against its pinned sha256.

    Args:
        manifest: a validated manifest.
        manifest_path: where it was read from (``local`` files sit beside it).
        data_dir: a folder laid out like ``../shared/benchmarks/``; overrides ``$COMPLIANCE_DATA_DIR``.
        mirror: an HTTP folder laid out like a data dir; overrides ``$COMPLIANCE_BENCHMARK_MIRROR``.

    Raises:
        SuiteError: a file is missing, cannot be downloaded, or its sha256 differs from the pin.
    """
    name, kind = manifest["name"], manifest["source"]["kind"]
    root = resolve_data_dir(data_dir)
    paths = []
    for entry in manifest["files"]:
        if kind == "local":
            path = manifest_path.parent / entry["path"]
            _require(path, name, "restore it from the project's repository")
        elif root is not None:
            path = root / entry["path"]
            _require(path, name, f"the data dir {root} must be laid out like ../shared/benchmarks/")
        else:
            path = benchmark_cache_dir() / entry["path"]
            if not (path.is_file() and sha256_file(path) == entry["sha256"]):
                _download(manifest, entry, path, mirror)
        verify_sha256(path, entry["sha256"], name)
        paths.append(path)
    return paths


def verify_sha256(path: Path, pinned: str, benchmark: str, origin: str = "") -> None:
    """Refuse a file whose digest differs from the pin, in one line naming the file and both digests."""
    digest = sha256_file(path)
    if digest != pinned:
        raise SuiteError(
            f"benchmark '{benchmark}': {path}{origin} has sha256 {digest}, the manifest pins {pinned}: "
            "the file is not the pinned copy; restore it or delete it to download it again"
        )


def _require(path: Path, benchmark: str, hint: str) -> None:
    if not path.is_file():
        raise SuiteError(f"benchmark '{benchmark}': data file {path} is missing: {hint}")


def _download(manifest: dict, entry: dict, dest: Path, mirror: Optional[str]) -> None:
    """Fetch one file into the cache, atomically, after checking its digest."""
    name = manifest["name"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if manifest["source"]["kind"] == "hub":
                origin = _hub_download(manifest, entry, out)
            else:
                origin = file_url(manifest, entry, mirror)
                _http_download(origin, out, name)
        verify_sha256(tmp, entry["sha256"], name, origin=f" (downloaded from {origin})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _http_download(url: str, out, benchmark: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 (https or a chosen mirror)
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: a body shorter than its Content-Length (IncompleteRead), a malformed status line.
        reason = " ".join(str(getattr(exc, "reason", None) or exc).split()) or type(exc).__name__
        raise SuiteError(
            f"benchmark '{benchmark}': cannot download {url} ({reason}); offline, pass --data-dir DIR "
            f"(or set {ENV_DATA_DIR}) pointing at a folder laid out like ../shared/benchmarks/"
        ) from exc


def _hub_download(manifest: dict, entry: dict, out) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    source = manifest["source"]
    remote = entry.get("remote", entry["path"])
    origin = f"hf://datasets/{source['repo']}@{source['revision']}/{remote}"
    try:
        local = hf_hub_download(source["repo"], remote, repo_type="dataset", revision=source["revision"],
                                cache_dir=benchmark_cache_dir() / ".hub")
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise SuiteError(
            f"benchmark '{manifest['name']}': cannot download {origin} ({str(exc).splitlines()[0]}); offline, pass "
            f"--data-dir DIR (or set {ENV_DATA_DIR}) pointing at a folder laid out like ../shared/benchmarks/"
        ) from exc
    with open(local, "rb") as f:
        shutil.copyfileobj(f, out)
    return origin
