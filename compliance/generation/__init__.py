"""Generation: run a model over a suite's prompts and collect its responses.

Decoding is greedy, so a run is reproducible: the same model, suite and :class:`GenConfig`
give the same responses, batched or not. :func:`pick_device` and :func:`default_batch_size`
choose where and how wide to run; :func:`generate` does the work with transformers and hands
each response to a callback as it is produced, so callers can persist it at once.
"""

from compliance.generation.device import batch_size_for, choose_device, default_batch_size, pick_device
from compliance.generation.transformers_backend import BACKEND_NAME, backend_version, generate

__all__ = [
    "BACKEND_NAME",
    "backend_version",
    "batch_size_for",
    "choose_device",
    "default_batch_size",
    "generate",
    "pick_device",
]
