"""Read repository metadata and small files from the Hub, with errors meant for people.

Every call goes through the real ``huggingface_hub`` client, at the endpoint and in the offline
mode it is configured with (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``). The metadata of
each repository seen online (commit sha, files with their LFS sha256, card data, gated status)
is kept in ``<HF_HUB_CACHE>/../compliance-hub-meta`` so lineage resolves offline from a warm cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from compliance.constants import HUB_METADATA_MAX_BYTES
from compliance.documents import DocumentError, decode_text, parse_json
from compliance.errors import (
    HubGatedRepoError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    UnsafeModelError,
)
from compliance.hub.guard import check_repo_path, install_host_guard, origin, refuse_untrusted
from compliance.hub.refs import COMMIT_SHA, HubRef, looks_like_hub_id


@dataclass(frozen=True)
class HubFile:
    """A file of a repository at one commit; ``lfs_sha256`` is set for files stored with Git LFS."""

    path: str
    size: Optional[int]
    lfs_sha256: Optional[str] = None


@dataclass
class HubRepo:
    """What the Hub says about a model repository at one commit.

    ``unreadable`` names the files lineage wanted to read that the Hub refused (a gated repository
    and no token with access): what is known of the repository then comes from its API metadata.
    """

    repo_id: str
    sha: str
    requested_revision: Optional[str]
    files: list[HubFile]
    card_data: Optional[dict] = None
    base_models: Any = None
    gated: Optional[str] = None
    private: Optional[bool] = None
    endpoint: str = ""
    unreadable: list[str] = field(default_factory=list)
    _texts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.repo_id}@{self.requested_revision}" if self.requested_revision else self.repo_id

    def has(self, filename: str) -> bool:
        return any(f.path == filename for f in self.files)


# In-process memo: one resolution asks for the same repository several times.
_MEMO: dict[tuple[str, str, str], HubRepo] = {}


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _meta_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser().parent / "compliance-hub-meta"


def _repo_dir(repo_id: str) -> Path:
    return _meta_dir() / ("models--" + repo_id.replace("/", "--"))


def fetch_repo(ref: HubRef) -> HubRepo:
    """Metadata of ``ref`` pinned to a commit: from the Hub, or from the cache when offline.

    Raises:
        HubRepoNotFoundError, HubRevisionNotFoundError, HubGatedRepoError, HubUnreachableError.
    """
    key = (endpoint(), ref.repo_id.lower(), ref.revision or "")
    if key in _MEMO and (ref.revision and COMMIT_SHA.match(ref.revision) or offline()):
        return _MEMO[key]
    if offline():
        repo = _load_cached(ref)
    else:
        from huggingface_hub import HfApi

        install_host_guard()
        try:
            with hub_errors(ref):
                info = HfApi(endpoint=endpoint()).model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
            repo = _repo_from_info(info, ref)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # Not JSON, or JSON of the wrong shape: huggingface_hub and we read its fields as the Hub writes them.
            raise HubUnreachableError(
                f"the Hub at {endpoint()} answered '{ref}' with a model description that cannot be read "
                f"({type(exc).__name__}): check HF_ENDPOINT points at a Hub"
            ) from None
        if not repo.sha or not COMMIT_SHA.match(repo.sha):
            raise HubUnreachableError(
                f"the Hub at {endpoint()} returned no commit sha for '{ref}': check HF_ENDPOINT points at a Hub"
            )
        if not looks_like_hub_id(repo.repo_id):
            raise UnsafeModelError(
                f"the Hub at {endpoint()} answered '{ref}' with the repository id {repo.repo_id!r}, which is not "
                "an org/name id: check HF_ENDPOINT points at a Hub"
            )
        for f in repo.files:  # before any name becomes a path on this machine
            check_repo_path(f"'{ref}' at {repo.sha[:12]}", f.path)
        _save_cached(repo)
    _MEMO[key] = repo
    _MEMO[(key[0], key[1], repo.sha)] = repo
    return repo


def read_repo_file(repo: HubRepo, filename: str) -> Optional[str]:
    """Text of a small metadata file (the card, ``config.json``, ``adapter_config.json``) at the pinned commit.

    At most :data:`~compliance.constants.HUB_METADATA_MAX_BYTES` are read; the text is kept next to
    the Hub cache for offline runs.

    Returns:
        The text; None when the repository has no such file, or when the Hub refuses it because the
        repository is gated and no token has access (the name is then added to ``repo.unreadable``,
        and lineage goes on with what the API says).

    Raises:
        UnsafeModelError: the file is larger than the cap, or the Hub redirects it to another host.
        HubUnreachableError: offline, and the file was never read online.
    """
    if not repo.has(filename) or filename in repo.unreadable:
        return None
    if filename in repo._texts:
        return repo._texts[filename]
    cached = _files_dir(repo) / filename
    if cached.is_file():
        text = cached.read_text(encoding="utf-8", errors="replace")
    elif offline():
        text = _from_hub_cache(repo, filename)
    else:
        try:
            data = fetch_small_file(repo, filename)
        except HubGatedRepoError:
            repo.unreadable.append(filename)
            _save_cached(repo)
            return None
        text = decode_text(data, errors="replace")
        _atomic_write(cached, text)
    repo._texts[filename] = text
    return text


def fetch_small_file(repo: HubRepo, filename: str, max_bytes: int = HUB_METADATA_MAX_BYTES) -> bytes:
    """The bytes of ``filename`` at the pinned commit, read from the Hub with a cap and without the Hub cache.

    Redirects are followed only to trusted hosts (see :mod:`compliance.hub.guard`), and the
    token is sent only to the endpoint itself.

    Raises:
        UnsafeModelError: listed or served larger than ``max_bytes``, or redirected to another host.
        HubGatedRepoError, HubRepoNotFoundError, HubUnreachableError: as the Hub answers.
    """
    import httpx2
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    ref = HubRef(repo.repo_id, repo.requested_revision)
    where = f"'{ref}' (file {filename})"
    listed = next((f.size for f in repo.files if f.path == filename), None)
    if listed is not None and listed > max_bytes:
        raise _too_large(where, f"is listed at {listed:,} bytes", max_bytes)
    install_host_guard()
    url = hf_hub_url(repo.repo_id, filename, revision=repo.sha, endpoint=endpoint())
    headers = build_hf_headers()
    with hub_errors(ref, filename):
        for _ in range(5):
            refuse_untrusted(url, where)
            with get_session().stream("GET", url, headers=headers, follow_redirects=False,
                                      timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
                if response.has_redirect_location:
                    target = str(response.url.join(response.headers["Location"]))
                    refuse_untrusted(target, where)
                    if origin(target) != origin(url):
                        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    url = target
                    continue
                body = _read_capped(response, max_bytes if response.status_code < 400 else 1024**2)
                if body is None:
                    if response.status_code < 400:
                        raise _too_large(where, "is served as more bytes than that", max_bytes)
                    body = b""
                hf_raise_for_status(httpx2.Response(response.status_code, headers=response.headers, content=body,
                                                    request=response.request))
                return body
        raise HubUnreachableError(
            f"the Hub at {endpoint()} redirected {where} more than 5 times: check HF_ENDPOINT points at a Hub"
        )


def _read_capped(response, max_bytes: int) -> Optional[bytes]:
    """The body, or None once it passes ``max_bytes`` (the rest is never read)."""
    chunks, total = [], 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(where: str, what: str, max_bytes: int) -> UnsafeModelError:
    return UnsafeModelError(
        f"model {where} {what}, more than the {max_bytes:,} bytes read of a metadata file: refused; "
        "report it to the repository's owners, or pass the model to compare with using --base"
    )


def _from_hub_cache(repo: HubRepo, filename: str) -> str:
    """Offline: a metadata file an earlier version left in the Hub cache, if it is small enough."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo.repo_id, filename, revision=repo.sha)
    if not isinstance(path, str) or Path(path).stat().st_size > HUB_METADATA_MAX_BYTES:
        raise _unreachable(HubRef(repo.repo_id, repo.requested_revision), RuntimeError("not cached"))
    return Path(path).read_text(encoding="utf-8", errors="replace")


def download_file(repo: HubRepo, filename: str) -> str:
    """Local path of ``filename`` at the pinned commit, downloading it into the Hub cache if needed."""
    from huggingface_hub import hf_hub_download

    install_host_guard()
    with hub_errors(HubRef(repo.repo_id, repo.requested_revision), filename):
        return hf_hub_download(repo.repo_id, filename, revision=repo.sha, endpoint=endpoint())


def read_json_file(repo: HubRepo, filename: str) -> Optional[dict]:
    """``filename`` parsed as a JSON object, or None when absent or not a JSON object."""
    text = read_repo_file(repo, filename)
    if text is None:
        return None
    try:
        data = parse_json(text)
    except DocumentError:  # broken, ambiguous (a key twice) or too deep: read as absent, as transformers would fail
        return None
    return data if isinstance(data, dict) else None


def repo_metadata(repo: HubRepo) -> dict:
    """The model card's front matter: parsed from README.md at the pinned commit, else the API's cardData.

    Raises:
        MalformedCardError: README.md's front matter is not valid YAML.
    """
    from compliance.lineage.card import parse_front_matter

    text = read_repo_file(repo, "README.md")
    if text is None:
        return dict(repo.card_data or {})
    return parse_front_matter(text, f"model card of {repo.repo_id}@{repo.sha[:12]} (README.md)")


@contextlib.contextmanager
def hub_errors(ref: HubRef, filename: Optional[str] = None) -> Iterator[None]:
    """Turn ``huggingface_hub`` and transport errors into one-line :class:`ComplianceError` messages."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    where = f"'{ref}'" + (f" (file {filename})" if filename else "")
    try:
        yield
    except hf_errors.GatedRepoError as exc:
        raise HubGatedRepoError(
            f"model {where} is gated or private: accept its terms at {endpoint()}/{ref.repo_id} while logged in, "
            "then set HF_TOKEN to an access token of that account"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise HubRevisionNotFoundError(
            f"model '{ref.repo_id}' has no revision '{ref.revision}' on {endpoint()}: "
            "pass an existing branch, tag or 40-hex commit sha as org/name@revision"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise HubRepoNotFoundError(
            f"model '{ref.repo_id}' was not found on the Hub ({endpoint()}): check the id (org/name); "
            "if the repository is private, set HF_TOKEN to an access token that can read it"
        ) from exc
    except hf_errors.EntryNotFoundError as exc:
        raise HubRepoNotFoundError(
            f"model {where} lists a file the Hub does not serve: retry, or pin another revision"
        ) from exc
    except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as exc:
        raise _unreachable(ref, exc) from exc
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise HubGatedRepoError(
                f"model {where} refused access (HTTP {status}): it is gated or private; accept its terms at "
                f"{endpoint()}/{ref.repo_id} and set HF_TOKEN to an access token of that account"
            ) from exc
        raise HubUnreachableError(
            f"the Hub at {endpoint()} answered HTTP {status} for {where}: retry later, set HF_HUB_OFFLINE=1 "
            "to use a warm cache, or pass a local model folder"
        ) from exc
    except httpx2.TransportError as exc:
        raise _unreachable(ref, exc) from exc


def _unreachable(ref: HubRef, exc: Exception) -> HubUnreachableError:
    if offline():
        return HubUnreachableError(
            f"HF_HUB_OFFLINE=1 is set and '{ref}' is not in the local cache: run once with the Hub reachable "
            "to warm the cache, unset HF_HUB_OFFLINE, or pass a local model folder"
        )
    return HubUnreachableError(
        f"the Hub at {endpoint()} cannot be reached for '{ref}' ({type(exc).__name__}): check the network and "
        "HF_ENDPOINT, set HF_HUB_OFFLINE=1 to use a warm cache, or pass a local model folder"
    )


def _repo_from_info(info: Any, ref: HubRef) -> HubRepo:
    """A :class:`HubRepo` from ``model_info``'s answer, every field checked for the type it must have.

    Raises:
        TypeError: a field of the wrong type (the Hub's answer was not what the Hub writes).
    """
    files = [HubFile(s.rfilename, s.size if s.size is not None else (s.lfs.size if s.lfs else None),
                     s.lfs.sha256 if s.lfs else None) for s in (info.siblings or [])]
    repo = HubRepo(
        repo_id=info.id or ref.repo_id,
        sha=info.sha,
        requested_revision=ref.revision,
        files=files,
        card_data=_card_dict(info.card_data),
        base_models=getattr(info, "base_models", None),
        gated=(info.gated or None) if isinstance(info.gated, str) else ("auto" if info.gated else None),
        private=info.private,
        endpoint=endpoint(),
    )
    optional_int = (int, type(None))
    if not (isinstance(repo.repo_id, str) and isinstance(repo.sha, (str, type(None)))
            and all(isinstance(f.path, str) and isinstance(f.size, optional_int) and not isinstance(f.size, bool)
                    and isinstance(f.lfs_sha256, (str, type(None))) for f in files)):
        raise TypeError("a field of the wrong type")
    return repo


def _card_dict(card_data: Any) -> Optional[dict]:
    if card_data is None:
        return None
    if isinstance(card_data, dict):
        return dict(card_data)
    try:
        return card_data.to_dict()
    except Exception:  # a card the client could not model: we read README.md ourselves anyway
        return None


def _save_cached(repo: HubRepo) -> None:
    folder = _repo_dir(repo.repo_id)
    data = {k: v for k, v in asdict(repo).items() if not k.startswith("_")}
    _atomic_write(folder / "commits" / f"{repo.sha}.json", json.dumps(data, indent=1, default=str))
    _atomic_write(folder / "refs" / _ref_name(repo.requested_revision), repo.sha)


def _load_cached(ref: HubRef) -> HubRepo:
    folder = _repo_dir(ref.repo_id)
    sha = ref.revision if ref.revision and COMMIT_SHA.match(ref.revision) else None
    if sha is None:
        ref_file = folder / "refs" / _ref_name(ref.revision)
        sha = ref_file.read_text().strip() if ref_file.is_file() else None
    commit = folder / "commits" / f"{sha}.json" if sha else None
    if commit is None or not commit.is_file():
        raise _unreachable(ref, RuntimeError("not cached"))
    data = json.loads(commit.read_text())
    data["files"] = [HubFile(**f) for f in data["files"]]
    data["requested_revision"] = ref.revision
    return HubRepo(**data)


def _files_dir(repo: HubRepo) -> Path:
    return _repo_dir(repo.repo_id) / "files" / repo.sha


def _ref_name(revision: Optional[str]) -> str:
    return "_default" if not revision else revision.replace("/", "%2F")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
