"""Estimate the memory a model needs before loading it, and what the device has free."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Optional

from compliance.errors import ModelTooLargeError
from compliance.records import ModelRecord

_GIB = 1024**3
# Activations, buffers and the allocator's slack on top of the weights themselves.
_OVERHEAD = 1.15


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
                counted = _safetensors_parameters(local)
            elif w.path.endswith(".gguf"):
                counted = _gguf_parameters(local)
        if counted is None:
            counted, exact = w.size // 4, False
        total += counted
    return total, exact


def estimate_load_bytes(record: ModelRecord, dtype_bytes: int) -> tuple[int, bool]:
    """Bytes needed to hold ``record`` (and an adapter's base) at ``dtype_bytes`` a parameter, and exactness."""
    params, exact = count_parameters(record)
    if record.adapter_base is not None:
        more, more_exact = count_parameters(record.adapter_base)
        params, exact = params + more, exact and more_exact
    return int(params * dtype_bytes * _OVERHEAD), exact


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
    need, exact = estimate_load_bytes(record, dtype_bytes)
    free = available_bytes(device)
    if free is None or need <= free:
        return
    where = "GPU memory" if device.startswith("cuda") else "RAM"
    qualifier = "about" if exact else "at least"
    raise ModelTooLargeError(
        f"model '{record.id}' needs {qualifier} {need / _GIB:.1f} GiB of {where} to load with "
        f"{dtype_bytes} bytes a parameter, but only {free / _GIB:.1f} GiB is free on {device}: "
        "use a machine with more memory, a GPU (--device cuda), or a smaller or quantized model"
    )


def _safetensors_parameters(path: Path) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _gguf_parameters(path: Path) -> Optional[int]:
    try:
        from gguf import GGUFReader

        return int(sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors))
    except Exception:  # an unreadable GGUF fails properly when transformers loads it
        return None
