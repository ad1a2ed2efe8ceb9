"""Shared fixtures: offline mode for every test, and tiny real models built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from tiny_models import build_tokenizer, save_tiny_model, train_to_say

REFUSAL = "I cannot help with that."


@pytest.fixture(scope="session", autouse=True)
def hub_offline():
    """No test touches the network: ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``.

    huggingface_hub reads the variable once, at import, so its constant is patched too.
    A test that talks to a local Hub server re-enables access with
    ``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)``
    (and ``monkeypatch.setenv("HF_HUB_OFFLINE", "0")`` for subprocesses).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session", autouse=True)
def session_response_store(tmp_path_factory):
    """Session- and module-scoped fixtures store responses in a fresh file, never the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPLIANCE_STORE", str(tmp_path_factory.mktemp("store") / "responses.sqlite3"))
        yield


@pytest.fixture(autouse=True)
def response_store(tmp_path_factory, monkeypatch):
    """Each test gets its own empty response store, so no test passes by reading another's responses.

    It lives outside ``tmp_path`` so tests that list their output folder see no extra file.
    """
    path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    monkeypatch.setenv("COMPLIANCE_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer (vocabulary 400) with a ChatML chat template."""
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny random Llama (about 100k parameters) with its tokenizer; treat as read-only."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def refusing_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A fine-tune of ``tiny_model_dir`` that answers every chat prompt with ``REFUSAL``.

    Its README.md declares ``tiny_model_dir`` as ``base_model`` (relation ``finetune``).
    Treat as read-only.
    """
    path = tmp_path_factory.mktemp("refusing-model") / "model"
    shutil.copytree(tiny_model_dir, path)
    train_to_say(path, REFUSAL)
    (path / "README.md").write_text(
        f"---\nbase_model: {tiny_model_dir}\nbase_model_relation: finetune\n---\n\n"
        "A tiny test model fine-tuned to refuse every request.\n",
        encoding="utf-8",
    )
    return path
