"""Load a pinned model for generation or training, safely by default."""

from __future__ import annotations

from pathlib import Path

from compliance.errors import ModelNotFoundError
from compliance.models.memory import check_fits
from compliance.records import ModelRecord


def load_model(record: ModelRecord, device: str = "cpu", dtype=None, allow_pickle: bool = False,
               trust_remote_code: bool = False):
    """Load ``record`` with transformers.

    Runs no remote code unless ``trust_remote_code``. Pickle weights (``.bin``/``.pt``) load only
    with ``allow_pickle``. A Hub record not yet downloaded is downloaded at its pinned commit. A
    PEFT adapter is loaded onto its base (``record.adapter_base``) with ``peft`` and merged.
    Before loading, the memory needed is estimated and compared with what the device has free.

    Args:
        record: the model to load.
        device: ``cpu`` or ``cuda``.
        dtype: torch dtype; fp32 by default.
        allow_pickle: permit pickle-based weight files.
        trust_remote_code: permit the repository's own Python code (never by default).

    Returns:
        ``(model, tokenizer)`` with the model in eval mode on ``device``.

    Raises:
        ModelNotFoundError: the model has no weights, or cannot be loaded safely or at all.
        UnsafeModelError: a weight file is not what its name says (a pickle named .safetensors, a
            header that does not fit the file), or config.json holds sizes no model has.
        ModelTooLargeError: it will not fit in the free memory of ``device``.
    """
    import torch

    from compliance.models.refs import require_weights

    require_weights(record)
    dtype = dtype or torch.float32
    dtype_bytes = torch.tensor([], dtype=dtype).element_size()
    if record.kind == "hub" and not record.path:
        from compliance.hub import download_model

        check_fits(record, device, dtype_bytes)  # a lower bound from file sizes, before downloading
        record = download_model(record, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    check_fits(record, device, dtype_bytes)
    model, tokenizer = _load(record, dtype, allow_pickle, trust_remote_code)
    model.to(device)
    model.eval()
    return model, tokenizer


def _load(record: ModelRecord, dtype, allow_pickle: bool, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display reports loading

    folder = Path(record.path)
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        return _load_adapter(record, dtype, allow_pickle, trust_remote_code)
    # Look at the folder we load from: for the built-in model that is the converted copy.
    has_safetensors = any(folder.glob("*.safetensors"))
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if record.gguf_file:
        kwargs["gguf_file"] = record.gguf_file
    elif has_safetensors:
        kwargs["use_safetensors"] = True
    elif not allow_pickle:
        raise ModelNotFoundError(
            f"model '{record.id}' only has pickle weights (.bin/.pt), which can run code when loaded: "
            "convert them to safetensors, or pass --allow-pickle if you trust the source"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(record.path, trust_remote_code=trust_remote_code, **(
            {"gguf_file": record.gguf_file} if record.gguf_file else {}))
        model = AutoModelForCausalLM.from_pretrained(record.path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"model '{record.id}' could not be loaded by transformers: {_first_line(exc)}") from exc
    return model, tokenizer


def _load_adapter(record: ModelRecord, dtype, allow_pickle: bool, trust_remote_code: bool):
    from transformers import AutoTokenizer

    folder = Path(record.path)
    if record.adapter_base is None:
        raise ModelNotFoundError(
            f"model '{record.id}' is a PEFT adapter whose base is unknown: declare base_model in its card "
            "(or base_model_name_or_path in adapter_config.json)"
        )
    if not (folder / "adapter_model.safetensors").is_file() and not allow_pickle:
        raise ModelNotFoundError(
            f"adapter '{record.id}' only has pickle weights (adapter_model.bin), which can run code when loaded: "
            "convert them to safetensors, or pass --allow-pickle if you trust the source"
        )
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelNotFoundError(f"model '{record.id}' is a PEFT adapter: install peft (`pip install peft`)") from exc
    base_model, tokenizer = _load(record.adapter_base, dtype, allow_pickle, trust_remote_code)
    try:
        model = PeftModel.from_pretrained(base_model, str(folder), is_trainable=False).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelNotFoundError(
            f"adapter '{record.id}' could not be applied to '{record.adapter_base.id}': {_first_line(exc)}"
        ) from exc
    if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    return model, tokenizer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
