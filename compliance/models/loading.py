"""Load a pinned model for generation or training, safely by default."""

from __future__ import annotations

from pathlib import Path

from compliance.errors import ModelNotFoundError
from compliance.records import ModelRecord


def load_model(record: ModelRecord, device: str = "cpu", dtype=None, allow_pickle: bool = False):
    """Load ``record`` with transformers.

    Never runs remote code. Pickle weights (``.bin``/``.pt``) load only with ``allow_pickle``.

    Args:
        record: the model to load.
        device: ``cpu`` or ``cuda``.
        dtype: torch dtype; fp32 by default.
        allow_pickle: permit pickle-based weight files.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode on ``device``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display reports loading

    dtype = dtype or torch.float32
    folder = Path(record.path)
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"model '{record.id}' is a PEFT adapter, which this version cannot load: merge it into its base "
            "(peft's merge_and_unload) and save the merged folder"
        )
    # Look at the folder we load from: for the built-in model that is the converted copy.
    has_safetensors = any(Path(record.path).glob("*.safetensors"))
    kwargs: dict = {"trust_remote_code": False}
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
        tokenizer = AutoTokenizer.from_pretrained(record.path, trust_remote_code=False, **(
            {"gguf_file": record.gguf_file} if record.gguf_file else {}))
        model = AutoModelForCausalLM.from_pretrained(record.path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"model '{record.id}' could not be loaded by transformers: {first}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer
