"""SQLite response store (standard library only), one row per response, WAL mode.

Key of a row:

* the model: ``model_id``, ``revision`` (content id: the Hub commit sha or the sha256 over the
  weight-file digests) and ``weights_sha256`` (the sha256 over the listed weight files, and for an
  adapter over its base's too), so a folder whose weights change never hits an old row;
* ``prompt_sha256``: the prompt text's digest (item ids are not part of the key: the same prompt in
  another suite is the same work);
* ``config``: the generation config as canonical JSON, *without* ``batch_size``, plus the device
  kind and dtype. Batch size is left out because it does not change greedy outputs: prompts are
  left-padded with an attention mask and position ids follow the mask, so a prompt decodes the same
  alone or in any batch (``tests/test_generation.py`` checks this on CPU). Keeping it in the key
  would only stop a resumed or re-run report from reusing rows made with another batch size.
  Device and dtype stay in the key because they can change the numbers, and a report says which
  device produced its responses;
* ``backend`` and ``backend_version`` (e.g. ``transformers`` ``4.46.0``).

Every :meth:`ResponseStore.put` commits at once. With WAL and ``synchronous=NORMAL`` a committed
row survives the process being killed (SIGKILL), which is what resume relies on.

Several processes may share one store (four ``compliance report`` runs at once, say): WAL lets
readers run beside the one writer, each put is one short transaction of its own, and a process
that finds the file locked waits up to :data:`BUSY_TIMEOUT_S` for it, creating the file
included. A process killed mid-write leaves no partial row: its open transaction is rolled back
by the next connection. ``tests/test_store.py`` runs both (eight bare writers, four reports).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Sequence

from compliance.constants import ENV_STORE, store_default_path
from compliance.errors import ComplianceError
from compliance.records import GenConfig, ModelRecord, Response, SuiteItem

SCHEMA_VERSION = "1"
#: Seconds a connection waits for another process's lock before the store reports it busy.
BUSY_TIMEOUT_S = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    model_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    config TEXT NOT NULL,
    backend TEXT NOT NULL,
    backend_version TEXT NOT NULL,
    text TEXT NOT NULL,
    n_new_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    item_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model_id, revision, weights_sha256, prompt_sha256, config, backend, backend_version)
);
"""


class StoreError(ComplianceError):
    """The response store cannot be opened, read or written."""


@dataclass(frozen=True)
class ResponseKey:
    """Everything but the prompt that decides a response: which model, how decoded, by what."""

    model_id: str
    revision: str
    weights_sha256: str
    config: str
    backend: str
    backend_version: str

    @classmethod
    def for_run(cls, record: ModelRecord, config: GenConfig, device: str, dtype: str, backend: str,
                backend_version: str) -> "ResponseKey":
        """The key of ``record`` decoding with ``config`` on ``device``/``dtype`` through ``backend``."""
        return cls(record.id, record.revision, weights_sha256(record), config_key(config, device, dtype), backend,
                   backend_version)


def weights_sha256(record: ModelRecord) -> str:
    """sha256 over the record's weight files (sorted ``path:sha256`` lines), and its adapter base's."""
    h = hashlib.sha256()
    for w in sorted(record.weights, key=lambda w: w.path):
        h.update(f"{w.path}:{w.sha256}\n".encode())
    if record.adapter_base is not None:
        h.update(f"adapter_base:{record.adapter_base.revision}:{weights_sha256(record.adapter_base)}\n".encode())
    return h.hexdigest()


def prompt_sha256(prompt: str) -> str:
    """sha256 of the prompt's UTF-8 text."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def config_key(config: GenConfig, device: str, dtype: str) -> str:
    """Canonical JSON of the decoding settings that can change a response (not ``batch_size``)."""
    fields = asdict(config)
    fields.pop("batch_size", None)
    # Settings added after the store's first release are left out at their defaults, so keys of
    # responses stored before them still match.
    for name in ("stop", "min_new_tokens"):
        if not fields.get(name):  # () / 0: the defaults
            fields.pop(name, None)
    fields["device"] = device.split(":")[0]  # cuda:0 and cuda:1 decode alike
    fields["dtype"] = dtype.replace("torch.", "")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def store_path() -> Path:
    """Where the store lives: ``$COMPLIANCE_STORE``, else ``cache_dir()/responses.sqlite3``."""
    return store_default_path()


class ResponseStore:
    """Responses by (model, prompt, config, backend), committed one by one.

    Use as a context manager, or call :meth:`close`.

    Args:
        path: the SQLite file; created (with its folder) when missing, unless ``create`` is False.
        create: False to open an existing store only (``cache info``/``clear`` on a missing file
            see an empty store instead of creating one).

    Raises:
        StoreError: the file is not a readable SQLite store.
    """

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self._conn: Optional[sqlite3.Connection] = None
        if not create and not self.path.exists():
            return
        if self.path.is_dir():
            raise StoreError(f"Response store {self.path} is a folder: point ${ENV_STORE} (or --store) at a file.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc
        if version != SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"Response store {self.path} has format {version}, this version reads {SCHEMA_VERSION}: "
                             f"move it away or point ${ENV_STORE} (or --store) elsewhere.")
        self._conn = conn

    def __enter__(self) -> "ResponseStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (every row is already committed)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(f"Response store {self.path} cannot be used ({exc}): delete or repair the file, "
                          f"or point ${ENV_STORE} (or --store) elsewhere; --no-store runs without it.")

    def _run(self, sql: str, params: Sequence = ()) -> list[tuple]:
        if self._conn is None:
            return []
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def get_many(self, key: ResponseKey, items: Iterable[SuiteItem]) -> dict[str, Response]:
        """Stored responses for ``items`` under ``key``, by item id (missing items are absent)."""
        by_prompt: dict[str, list[str]] = {}
        for item in items:
            by_prompt.setdefault(prompt_sha256(item.prompt), []).append(item.id)
        rows = self._run(
            "SELECT prompt_sha256, text, n_new_tokens, finish_reason FROM responses WHERE model_id = ? AND "
            "revision = ? AND weights_sha256 = ? AND config = ? AND backend = ? AND backend_version = ?",
            (key.model_id, key.revision, key.weights_sha256, key.config, key.backend, key.backend_version))
        found: dict[str, Response] = {}
        for digest, text, n_new_tokens, finish_reason in rows:
            for item_id in by_prompt.get(digest, ()):
                found[item_id] = Response(item_id=item_id, text=text, n_new_tokens=n_new_tokens,
                                          finish_reason=finish_reason)
        return found

    def put(self, key: ResponseKey, item: SuiteItem, response: Response) -> None:
        """Store and commit ``response`` to ``item`` (replacing an equal-keyed row)."""
        self._run(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.model_id, key.revision, key.weights_sha256, prompt_sha256(item.prompt), key.config, key.backend,
             key.backend_version, response.text, response.n_new_tokens, response.finish_reason, item.id,
             datetime.now(timezone.utc).isoformat(timespec="seconds")))

    def count(self) -> int:
        """Number of stored responses."""
        rows = self._run("SELECT COUNT(*) FROM responses")
        return rows[0][0] if rows else 0

    def info(self) -> dict:
        """``{location, exists, entries, size_bytes, models: [{model_id, revision, entries}]}``."""
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.is_file())
        models = [{"model_id": m, "revision": r, "entries": n} for m, r, n in self._run(
            "SELECT model_id, revision, COUNT(*) FROM responses GROUP BY model_id, revision ORDER BY model_id, revision")]
        return {"location": str(self.path), "exists": self.path.exists(), "entries": self.count(),
                "size_bytes": size, "models": models}

    def clear(self, model_id: Optional[str] = None) -> int:
        """Delete every response (or only ``model_id``'s, every revision); returns how many went."""
        if model_id is None:
            n = self.count()
            self._run("DELETE FROM responses")
        else:
            n = self._run("SELECT COUNT(*) FROM responses WHERE model_id = ?", (model_id,))
            n = n[0][0] if n else 0
            self._run("DELETE FROM responses WHERE model_id = ?", (model_id,))
        if self._conn is not None and n:
            self._run("PRAGMA wal_checkpoint(TRUNCATE)")
            self._run("VACUUM")
        return n


def open_store(store: "Path | str | bool | None" = None) -> Optional[ResponseStore]:
    """The store a run should use: ``None``/``True`` the default location, a path that file, False none."""
    if store is False:
        return None
    if store is None or store is True:
        return ResponseStore(store_path())
    return ResponseStore(Path(os.fspath(store)))
