"""Estimate the memory a model needs before loading it, and what the device has free."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

from compliance.constants import HUB_METADATA_MAX_BYTES, SAFETENSORS_HEADER_MAX_BYTES
from compliance.documents import DocumentError, parse_json
from compliance.errors import ModelTooLargeError, UnsafeModelError
from compliance.records import ModelRecord

_GIB = 1024**3
# Activations, buffers and the allocator's slack on top of the weights themselves.
_OVERHEAD = 1.15
# Bytes a parameter per safetensors dtype (sub-byte and unknown dtypes are not size-checked).
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # pickle, torch zip
# config.json keys that size a transformer, by their names across architectures (first found wins).
_CONFIG_SIZES = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "vocab": ("vocab_size",),
    "intermediate": ("intermediate_size", "n_inner", "ffn_dim"),
    "heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads",),
}
# No real model has a dimension this large; a config.json that says so is refused, not estimated.
_MAX_CONFIG_SIZE = 2**40


def count_parameters(record: ModelRecord) -> tuple[int, bool]:
    """Parameters in ``record``'s weight files, and whether the count is exact.

    Exact for safetensors (from each file's header) and GGUF (from its tensor table); for a
    record whose files are not on disk yet, or pickles, a lower bound from the file sizes
    (at most 4 bytes a parameter).
    """
    total, exact = 0, True
    folder = Path(record.path) if record.path else None
    for w in record.weights:
        local = folder / w.path if folder is not None else None
        counted = None
        if local is not None and local.is_file():
            if w.path.endswith(".safetensors"):
                counted = safetensors_parameters(read_safetensors_header(local, f"model '{record.id}': {w.path}"))
            elif w.path.endswith(".gguf"):
                counted = _gguf_parameters(local)
        if counted is None:
            counted, exact = w.size // 4, False
        total += counted
    return total, exact


def config_parameters(config: dict, where: str) -> int:
    """A lower bound on the parameters a transformer's ``config.json`` describes (embeddings, attention, MLP).

    transformers allocates what the configuration describes, whatever the weight files hold, so
    the estimate must not trust the weights alone. A multimodal config is sized by its ``text_config``.

    Raises:
        UnsafeModelError: a size that is not a whole number between 0 and 2**40.
    """
    cfg = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    sizes: dict[str, int] = {}
    for key, names in _CONFIG_SIZES.items():
        name = next((n for n in names if cfg.get(n) is not None), None)
        if name is None:
            continue
        value = cfg[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_CONFIG_SIZE:
            raise UnsafeModelError(
                f"{where} has {name}={value!r}, not a size a model can have: refused before loading; "
                "fix config.json, or pass another model"
            )
        sizes[key] = value
    hidden, inter = sizes.get("hidden", 0), sizes.get("intermediate", 0)
    heads = sizes.get("heads") or 0
    kv_dim = hidden * (sizes.get("kv_heads") or heads) // heads if heads else hidden
    embeddings = sizes.get("vocab", 0) * hidden * (2 if cfg.get("tie_word_embeddings") is False else 1)
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_dim + 2 * hidden * inter
    return embeddings + sizes.get("layers", 0) * per_layer


def estimate_load_bytes(record: ModelRecord, dtype_bytes: int) -> tuple[int, bool, bool]:
    """Bytes needed to hold ``record`` (and an adapter's base) at ``dtype_bytes`` a parameter.

    The larger of what the weight files hold and what ``config.json`` describes.

    Returns:
        ``(bytes, exact, from_config)``: ``exact`` when counted from weight-file headers;
        ``from_config`` when the configuration described more than the weights hold.
    """
    total, exact, from_config = 0, True, False
    for part in (record, record.adapter_base):
        if part is None:
            continue
        params, part_exact = count_parameters(part)
        config = _config_of(part)
        described = config_parameters(config, f"config.json of '{part.id}'") if config else 0
        if described > params:
            params, part_exact, from_config = described, False, True
        total, exact = total + params, exact and part_exact
    return int(total * dtype_bytes * _OVERHEAD), exact, from_config


def _config_of(record: ModelRecord) -> Optional[dict]:
    """``config.json`` of a model on disk, or of a Hub model from its (capped, cached) metadata; None if unknown."""
    if record.path:
        path = Path(record.path) / "config.json"
        if not path.is_file():
            return None
        if path.stat().st_size > HUB_METADATA_MAX_BYTES:
            raise UnsafeModelError(
                f"model '{record.id}': config.json is {path.stat().st_size:,} bytes, more than the "
                f"{HUB_METADATA_MAX_BYTES:,} read of a configuration: refused; fix config.json"
            )
        try:
            data = parse_json(path.read_bytes())
        except DocumentError:  # transformers names a broken config when it loads it
            return None
    elif record.kind == "hub":
        from compliance.hub.client import read_json_file
        from compliance.hub.records import repo_of

        data = read_json_file(repo_of(record), "config.json")
    else:
        return None
    return data if isinstance(data, dict) else None


def available_bytes(device: str) -> Optional[int]:
    """Free memory on ``device`` (GPU memory for cuda, MemAvailable for cpu), or None when unknown."""
    if device.startswith("cuda"):
        import torch

        try:
            index = torch.device(device).index or 0
            return int(torch.cuda.mem_get_info(index)[0])
        except Exception:
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(record: ModelRecord, device: str, dtype_bytes: int) -> None:
    """Raise when ``record`` will not fit in the free memory of ``device``.

    Raises:
        ModelTooLargeError: the estimate exceeds what is free.
    """
    need, exact, from_config = estimate_load_bytes(record, dtype_bytes)
    free = available_bytes(device)
    if free is None or need <= free:
        return
    where = "GPU memory" if device.startswith("cuda") else "RAM"
    qualifier = "about" if exact else "at least"
    basis = " (what its config.json describes)" if from_config else ""
    raise ModelTooLargeError(
        f"model '{record.id}' needs {qualifier} {need / _GIB:.1f} GiB of {where}{basis} to load with "
        f"{dtype_bytes} bytes a parameter, but only {free / _GIB:.1f} GiB is free on {device}: "
        "use a machine with more memory, a GPU (--device cuda), or a smaller or quantized model"
    )


def read_safetensors_header(path: Path, where: str) -> dict:
    """The JSON header of a safetensors file, checked against the file before anything trusts it.

    Args:
        path: the file.
        where: the file as messages name it.

    Raises:
        UnsafeModelError: the file is a pickle (or a torch zip archive) under a safetensors name,
            its header length passes the format's 100 MB limit or the file's size, the header is not
            a JSON object, or a tensor's dtype, shape or byte range does not fit the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(_PICKLE_MAGIC):
            raise UnsafeModelError(
                f"{where} is a pickle, not a safetensors file (pickles run code when loaded): refused, nothing "
                "was loaded; report it to the model's owners"
            )
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if n is None or n > min(SAFETENSORS_HEADER_MAX_BYTES, size - 8):
            claims = "no header" if n is None else f"a header of {n:,} bytes"
            raise UnsafeModelError(
                f"{where} claims {claims} in a file of {size:,} bytes (the format allows "
                f"{SAFETENSORS_HEADER_MAX_BYTES:,}): not a valid safetensors file; refused before reading it"
            )
        raw = f.read(n)
    try:
        header = parse_json(raw)
    except DocumentError:
        header = None
    if not isinstance(header, dict):
        raise UnsafeModelError(f"{where}: its safetensors header is not a JSON object: not a valid safetensors file")
    data_bytes = size - 8 - n
    for name, entry in header.items():
        if name != "__metadata__":
            _check_tensor(where, name, entry, data_bytes)
    return header


def _check_tensor(where: str, name: str, entry, data_bytes: int) -> None:
    shape = entry.get("shape") if isinstance(entry, dict) else None
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (_sizes(shape) and _sizes(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1] <= data_bytes):
        raise UnsafeModelError(
            f"{where}: tensor {name!r} has shape {shape!r} at bytes {offsets!r}, outside the file's {data_bytes:,} "
            "bytes of data: not a valid safetensors file; refused before loading"
        )
    count = 1
    for dim in shape:
        count *= dim
    width = _DTYPE_BYTES.get(str(entry.get("dtype")))
    if width is not None and count * width != offsets[1] - offsets[0]:
        raise UnsafeModelError(
            f"{where}: tensor {name!r} claims shape {shape} ({count * width:,} bytes of {entry.get('dtype')}) but "
            f"holds {offsets[1] - offsets[0]:,} bytes: not a valid safetensors file; refused before loading"
        )


def _sizes(value) -> bool:
    return isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value)


def safetensors_parameters(header: dict) -> int:
    """Parameters in a checked safetensors header (see :func:`read_safetensors_header`)."""
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= dim
        total += count
    return total


def _gguf_parameters(path: Path) -> Optional[int]:
    try:
        from gguf import GGUFReader

        return int(sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors))
    except Exception:  # an unreadable GGUF fails properly when transformers loads it
        return None
