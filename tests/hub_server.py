"""A small read-only server that speaks the Hugging Face Hub's API shape, for tests.

Serves fixture repositories from memory (files added from folders or bytes) to the real
``huggingface_hub`` client and transformers through ``HF_ENDPOINT``. Routes:

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info with ``id``,
  ``sha``, ``siblings`` (size, blobId, and ``lfs.sha256`` for weight files), ``cardData``,
  ``baseModels`` when set, ``gated``, ``private``;
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing ``snapshot_download`` reads;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``ETag``, ``Content-Length``;
- ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (every file "regular") and
  ``POST /api/models/{repo}/commit/{rev}[?create_pr=1]`` (the NDJSON body ``create_commit`` sends):
  a commit changes the branch in place, or with ``create_pr`` opens ``refs/pr/{n}``; each commit is
  recorded in :attr:`FakeHub.commits`;
- ``GET /api/models/{repo}/discussions``: the pull requests opened so far (one page), with the
  status in :attr:`FakeRepo.pull_requests` (tests may set it to ``merged`` or ``closed``).
- ``GET /api/models?filter=..&search=..&sort=downloads&limit=N``: the listing ``list_models`` reads
  (see :func:`list_models_route`): every filter must be one of a model's tags, which include the
  ``base_model:<id>`` and ``base_model:<relation>:<id>`` tags the Hub derives from the card;
  download counts come from :attr:`FakeHub.downloads`;
- a repository named in :attr:`FakeHub.unavailable` answers its next N requests with HTTP 503 (a Hub
  that is briefly down), see :func:`answered_unavailable`.

A hostile repository, for tests of what the client refuses: file names are served as given
(``../x``, ``/abs``); a :class:`Streamed` file is generated as it is sent, never held (a 100 MB
card costs no memory); :attr:`FakeRepo.listed` overrides what the listing says of a file (its
size, its LFS sha256) while the bytes stay as they are; :attr:`FakeRepo.redirects` answers a
file's resolve route with a redirect to another URL; :attr:`FakeRepo.info_body` replaces the model-info
answer with any bytes. :attr:`FakeHub.bytes_sent` counts the body
bytes sent per file.

Errors carry ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``,
``GatedRepo`` (401 without a token, 403 with a token that has no access).
Each revision has a fixed fake commit sha: ``sha1("{repo}@{revision}")``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def fake_sha(repo_id: str, revision: str) -> str:
    """The fixed 40-hex commit sha of ``repo_id`` at branch/tag ``revision``."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def git_blob_oid(data: bytes) -> str:
    if isinstance(data, Streamed):  # never hashed: it is never held
        return hashlib.sha1(b"streamed %d\0" % len(data) + data.head).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Streamed:
    """File content generated while it is sent: ``head``, then filler up to ``size`` bytes in all."""

    size: int
    head: bytes = b""
    filler: bytes = b"x"

    def __len__(self) -> int:
        return self.size

    def chunks(self, chunk_size: int = 1 << 16):
        yield self.head
        block = (self.filler * (chunk_size // len(self.filler) + 1))[:chunk_size]
        left = self.size - len(self.head)
        while left > 0:
            yield block[:left]
            left -= len(block)


@dataclass
class FakeRepo:
    repo_id: str
    revisions: dict[str, dict[str, bytes]] = field(default_factory=dict)  # revision name -> files
    base_models: Any = None
    gated: Union[bool, str] = False
    private: bool = False
    heads: dict[str, str] = field(default_factory=dict)  # branch -> sha after a commit through the API
    listed: dict[str, dict] = field(default_factory=dict)  # file -> {"size": .., "sha256": ..} the listing claims
    redirects: dict[str, str] = field(default_factory=dict)  # file -> URL its resolve route redirects to
    pull_requests: dict[int, dict] = field(default_factory=dict)  # number -> {"title", "status"}
    info_body: Optional[bytes] = None  # served as the model-info answer instead of the real one (a broken Hub)

    def head(self, revision: str) -> str:
        return self.heads.get(revision) or fake_sha(self.repo_id, revision)

    def commit(self, revision: Optional[str]) -> Optional[tuple[str, dict[str, bytes]]]:
        revision = revision or "main"
        if revision in self.revisions:
            return self.head(revision), self.revisions[revision]
        for name, files in self.revisions.items():
            if self.head(name) == revision:
                return revision, files
        return None


class FakeHub:
    """The repositories a :class:`HubServer` serves; tests add to it while it runs."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: set[str] = {"hf_test_token"}  # tokens with access to gated/private repos
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent: dict[str, int] = {}  # file path -> body bytes written for it (all requests)
        self.commits: list[dict] = []  # {"repo", "revision", "create_pr", "pr_num", "summary", "files", "deleted"}
        self.endpoint = ""
        self.downloads: dict[str, int] = {}  # repo id -> the download count the listing reports
        self.unavailable: dict[str, int] = {}  # repo id -> how many more of its requests get HTTP 503

    def add_repo(
        self,
        repo_id: str,
        source: Union[str, Path, dict[str, Union[bytes, str]], None] = None,
        *,
        files: Optional[dict[str, Union[bytes, str]]] = None,
        card: Optional[str] = None,
        revision: str = "main",
        base_models: Any = None,
        gated: Union[bool, str] = False,
        private: bool = False,
    ) -> str:
        """Add (or add a revision to) ``repo_id`` and return the revision's commit sha.

        Args:
            source: a folder whose files are served, or a ``{path: content}`` dict.
            files: extra files, added on top of ``source``.
            card: ``README.md`` text.
            revision: branch name for these files.
            base_models: the Hub's ``baseModels`` value, in whichever shape the test wants.
            gated: ``"auto"``/``"manual"`` (or True) to require a token.
            private: answer 401 RepoNotFound without a token.
        """
        content: dict[str, bytes] = {}
        if isinstance(source, (str, Path)):
            root = Path(source)
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    content[str(p.relative_to(root))] = p.read_bytes()
        elif isinstance(source, dict):
            content.update({k: v.encode() if isinstance(v, str) else v for k, v in source.items()})
        content.update({k: v.encode() if isinstance(v, str) else v for k, v in (files or {}).items()})
        # (values may also be Streamed)
        if card is not None:
            content["README.md"] = card.encode()
        repo = self.repos.setdefault(repo_id, FakeRepo(repo_id))
        repo.revisions[revision] = content
        repo.heads.pop(revision, None)
        repo.base_models = base_models if base_models is not None else repo.base_models
        repo.gated = gated or repo.gated
        repo.private = private or repo.private
        return fake_sha(repo_id, revision)

    def sha(self, repo_id: str, revision: str = "main") -> str:
        return fake_sha(repo_id, revision)


def _file_entry(path: str, data: bytes, listed: Optional[dict] = None) -> dict:
    """The listing's entry for a file; ``listed`` overrides its size and LFS sha256 (a lying server)."""
    listed = listed or {}
    size = listed.get("size", len(data))
    entry = {"path": path, "size": size, "oid": git_blob_oid(data)}
    if path.endswith(LFS_SUFFIXES):
        sha256 = listed.get("sha256") or hashlib.sha256(data).hexdigest()
        entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": 134}
    return entry


def _card_data(files: dict[str, bytes]) -> Optional[dict]:
    data = files.get("README.md", b"")
    text = (data.head if isinstance(data, Streamed) else data).decode("utf-8", "replace")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        data = yaml.safe_load("\n".join(lines[1:end]))
    except (StopIteration, yaml.YAMLError):
        return None  # the real Hub also leaves cardData out when it cannot parse the card
    return data if isinstance(data, dict) else None


def card(base=None, relation=None, license="apache-2.0") -> str:
    """A model card whose front matter declares ``base_model`` (a Hub id or a list) and its relation."""
    lines = [f"license: {license}"]
    if base is not None:
        lines.append(f"base_model: {json.dumps(base)}")
    if relation:
        lines.append(f"base_model_relation: {relation}")
    return "---\n" + "\n".join(lines) + "\n---\n\n# model\n"


def weights(tag: str) -> dict:
    """Fake weight files: enough for lineage, which never loads them."""
    return {"config.json": json.dumps({"model_type": "llama"}), "model.safetensors": f"weights of {tag}".encode()}


def metadata_only(tag: str) -> dict:
    """A repository without weights, as many ancestors are: a config and nothing to load."""
    return {"config.json": json.dumps({"model_type": "llama", "_comment": tag})}


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub  # set on the subclass made per server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append((self.command, url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts == ["api", "validate-yaml"]:
            return self._json({"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
            repo_id, revision = "/".join(parts[2:4]), "/".join(parts[5:])
            found = self._repo(repo_id, revision, files_route=False)
            if found is None:
                return
            if parts[4] == "preupload":
                files = found[2]
                return self._json({"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None}
                    for f in json.loads(body)["files"]]})
            return self._commit(found[0], revision, body, "create_pr=1" in (url.query or ""))
        self._error(404, "EntryNotFound", "not found")

    def _commit(self, repo: "FakeRepo", revision: str, body: bytes, create_pr: bool) -> None:
        import base64

        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        files = dict(repo.commit(revision)[1])
        added, deleted = {}, []
        for line in lines:
            if line["key"] == "file":
                v = line["value"]
                added[v["path"]] = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
            elif line["key"] == "deletedFile":
                deleted.append(line["value"]["path"])
        files.update(added)
        for path in deleted:
            files.pop(path, None)
        pr_num = None
        if create_pr:
            pr_num = 1 + sum(1 for name in repo.revisions if name.startswith("refs/pr/"))
            target = f"refs/pr/{pr_num}"
            repo.pull_requests[pr_num] = {"title": header.get("summary"), "status": "open"}
        else:
            target = revision if revision in repo.revisions else "main"
        repo.revisions[target] = files
        # a commit moves the branch to a new sha, as on the Hub (clients cache by commit)
        sha = repo.heads[target] = hashlib.sha1(f"{repo.repo_id}@{target}#{len(self.hub.commits)}".encode()).hexdigest()
        self.hub.commits.append({"repo": repo.repo_id, "revision": target, "create_pr": create_pr, "pr_num": pr_num,
                                 "summary": header.get("summary"), "files": sorted(added), "deleted": deleted})
        body_out = {"commitUrl": f"{self.hub.endpoint}/{repo.repo_id}/commit/{sha}", "commitOid": sha}
        if pr_num is not None:
            body_out["pullRequestUrl"] = f"{self.hub.endpoint}/{repo.repo_id}/discussions/{pr_num}"
        self._json(body_out, sha)

    # --- routing -----------------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            if parts == ["api", "models"]:
                return list_models_route(self, urlsplit(self.path).query)
            if answered_unavailable(self, parts):
                return
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id = "/".join(parts[2:4])
                rest = parts[4:]
                if not rest:
                    return self._info(repo_id, None)
                if rest[0] == "revision" and len(rest) >= 2:
                    return self._info(repo_id, "/".join(rest[1:]))
                if rest[0] == "tree" and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]))
                if rest == ["discussions"]:
                    return self._discussions(repo_id)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            self._error(404, "RepoNotFound" if parts[:2] == ["api", "models"] else "EntryNotFound", "not found")
        except BrokenPipeError:
            pass

    def _repo(self, repo_id: str, revision: Optional[str], files_route: bool):
        repo = self.hub.repos.get(repo_id)
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if repo is None or (repo.private and token not in self.hub.tokens):
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and files_route and token not in self.hub.tokens:
            status = 403 if token else 401
            self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it.")
            return None
        found = repo.commit(revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, found[0], found[1]

    def _discussions(self, repo_id: str) -> None:
        found = self._repo(repo_id, None, files_route=False)
        if found is None:
            return
        repo = found[0]
        items = [{"num": num, "title": pr["title"], "status": pr["status"], "isPullRequest": True,
                  "author": {"name": "test-user"}, "createdAt": "2026-11-28T00:00:00.000Z",
                  "repo": {"name": repo.repo_id, "type": "model"}}
                 for num, pr in sorted(repo.pull_requests.items(), reverse=True)]
        self._json({"discussions": items, "count": len(items), "start": 0, "numClosedDiscussions": 0})

    def _info(self, repo_id: str, revision: Optional[str]) -> None:
        found = self._repo(repo_id, revision, files_route=False)
        if found is None:
            return
        repo, sha, files = found
        siblings = []
        for name, data in sorted(files.items()):
            e = _file_entry(name, data, repo.listed.get(name))
            sib = {"rfilename": name, "size": e["size"], "blobId": e["oid"]}
            if "lfs" in e:
                sib["lfs"] = {"sha256": e["lfs"]["oid"], "size": e["size"], "pointerSize": 134}
            siblings.append(sib)
        body = {"_id": sha[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                "private": repo.private, "gated": repo.gated if repo.gated else False, "disabled": False,
                "lastModified": "2025-01-01T00:00:00.000Z", "tags": [], "siblings": siblings}
        card = _card_data(files)
        if card is not None:
            body["cardData"] = card
        if repo.base_models is not None:
            body["baseModels"] = repo.base_models
        self._json(body if repo.info_body is None else repo.info_body, sha)

    def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
        found = self._repo(repo_id, revision, files_route=False)
        if found is None:
            return
        repo, sha, files = found
        entries, folders = [], set()
        for name, data in sorted(files.items()):
            if prefix and not name.startswith(prefix.rstrip("/") + "/"):
                continue
            parent = name.rsplit("/", 1)[0] if "/" in name else None
            while parent:
                folders.add(parent)
                parent = parent.rsplit("/", 1)[0] if "/" in parent else None
            entries.append({"type": "file", **_file_entry(name, data, repo.listed.get(name))})
        entries += [{"type": "directory", "oid": git_blob_oid(f.encode()), "size": 0, "path": f} for f in sorted(folders)]
        self._json(entries, sha)

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        found = self._repo(repo_id, revision, files_route=True)
        if found is None:
            return
        repo, sha, files = found
        if filename not in files:
            self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}", sha)
            return
        data = files[filename]
        entry = _file_entry(filename, data, repo.listed.get(filename))
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        redirect = repo.redirects.get(filename)
        self.send_response(302 if redirect else 200)
        if redirect:
            self.send_header("Location", redirect)
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", f'"{etag}"')
        if "lfs" in entry:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", "0" if redirect else str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not head and not redirect:
            self._send_body(filename, data)

    def _send_body(self, filename: str, data) -> None:
        chunks = data.chunks() if isinstance(data, Streamed) else [data]
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.hub.bytes_sent[filename] = self.hub.bytes_sent.get(filename, 0) + len(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: what a cap does
            pass

    # --- responses ---------------------------------------------------------------------------

    def _json(self, body: Any, sha: Optional[str] = None, status: int = 200,
              headers: Optional[dict[str, str]] = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if sha:
            self.send_header("X-Repo-Commit", sha)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, sha: Optional[str] = None) -> None:
        self._json({"error": message}, sha, status, {"X-Error-Code": code, "X-Error-Message": message})


# --- the model listing (list_models), for discovery ----------------------------------------


def inferred_relation(files: dict[str, bytes], bases: list[str]) -> str:
    """The relation the Hub assumes when a card names a base but no ``base_model_relation``."""
    if "adapter_config.json" in files:
        return "adapter"
    if any(name.endswith(".gguf") for name in files):
        return "quantized"
    return "merge" if len(bases) > 1 else "finetune"


def listing_tags(repo: FakeRepo) -> list[str]:
    """The tags the Hub lists for ``repo``'s main branch: the card's ``tags`` plus, for each declared
    base, ``base_model:<id>`` and ``base_model:<relation>:<id>``."""
    files = repo.commit("main")[1] if repo.commit("main") else {}
    card = _card_data(files) or {}
    tags = [str(t) for t in (card.get("tags") or [])]
    bases = card.get("base_model") or []
    bases = [bases] if isinstance(bases, str) else [str(b) for b in bases]
    relation = card.get("base_model_relation") or inferred_relation(files, bases)
    for base in bases:
        tags += [f"base_model:{base}", f"base_model:{relation}:{base}"]
    return tags


def list_models_route(handler: "_Handler", query: str) -> None:
    """``GET /api/models``: the public models whose tags hold every ``filter``, whose id contains
    ``search`` (case-insensitive), sorted by ``sort`` (``downloads``: most first), at most ``limit``."""
    from urllib.parse import parse_qs

    params = parse_qs(query)
    filters = params.get("filter", [])
    search = (params.get("search") or [""])[0].lower()
    token = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    hub = handler.hub
    items = []
    for repo_id, repo in sorted(hub.repos.items()):
        if (repo.private and token not in hub.tokens) or repo.commit("main") is None:
            continue
        tags = listing_tags(repo)
        if all(f in tags for f in filters) and search in repo_id.lower():
            items.append({"_id": repo.head("main")[:24], "id": repo_id, "modelId": repo_id,
                          "author": repo_id.split("/")[0], "sha": repo.head("main"), "private": repo.private,
                          "gated": repo.gated or False, "downloads": hub.downloads.get(repo_id, 0),
                          "likes": 0, "tags": tags, "createdAt": "2025-01-01T00:00:00.000Z",
                          "lastModified": "2025-01-01T00:00:00.000Z"})
    if (params.get("sort") or [""])[0] == "downloads":
        items.sort(key=lambda item: -item["downloads"])
    limit = (params.get("limit") or [None])[0]
    handler._json(items[: int(limit)] if limit else items)


def answered_unavailable(handler: "_Handler", parts: list[str]) -> bool:
    """Answer HTTP 503 when the request is for a repository with 503s left in :attr:`FakeHub.unavailable`."""
    repo_id = "/".join(parts[2:4]) if parts[:2] == ["api", "models"] else "/".join(parts[:2])
    left = handler.hub.unavailable.get(repo_id, 0)
    if left <= 0:
        return False
    handler.hub.unavailable[repo_id] = left - 1
    handler._error(503, "ServiceUnavailable", "the Hub is briefly unavailable")
    return True


class HubServer:
    """Runs a :class:`FakeHub` on ``127.0.0.1`` at a random port, in a daemon thread."""

    def __init__(self, hub: Optional[FakeHub] = None) -> None:
        self.hub = hub or FakeHub()
        handler = type("Handler", (_Handler,), {"hub": self.hub})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.hub.endpoint = self.endpoint
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the pytest fixture -------------------------------------------------------------------

import pytest  # noqa: E402  (the server above is usable without pytest)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running :class:`HubServer` that ``huggingface_hub`` talks to; yields its :class:`FakeHub`.

    Undoes the session's offline mode (``HF_HUB_OFFLINE``) for this test, points ``HF_ENDPOINT``
    (and the client's constants, read at import) at the server, and gives the test its own
    ``HF_HOME``/``HF_HUB_CACHE`` and no token.
    """
    with HubServer() as server:
        point_client_at(server, tmp_path / "hf-home", monkeypatch)
        yield server.hub


def point_client_at(server: HubServer, home: Path, monkeypatch) -> None:
    """Make ``huggingface_hub`` (here and in child processes) talk to ``server``, online, with its
    own ``HF_HOME`` under ``home`` and no token; ``monkeypatch`` undoes it all."""
    import huggingface_hub.constants as hf_constants

    for name, value in {"HF_ENDPOINT": server.endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
                        "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
