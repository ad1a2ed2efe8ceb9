"""The response store: every generated response, kept in SQLite so no work is lost or repeated.

A response is committed the moment it is produced, so a killed run resumes where it stopped, and
a second report on another fine-tune of the same base reuses the base's responses. See
:class:`ResponseStore` for the key.
"""

from compliance.store.sqlite_store import (
    ResponseKey,
    ResponseStore,
    StoreError,
    config_key,
    open_store,
    prompt_sha256,
    store_path,
    weights_sha256,
)

__all__ = [
    "ResponseKey",
    "ResponseStore",
    "StoreError",
    "config_key",
    "open_store",
    "prompt_sha256",
    "store_path",
    "weights_sha256",
]
