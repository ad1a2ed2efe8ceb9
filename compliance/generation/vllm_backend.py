"""Greedy generation with vLLM in this process (GPU machines; ``pip install 'compliance[vllm]'``).

vLLM is imported only when this backend runs, so the package works without it. Prompts are
encoded exactly as the transformers backend encodes them (the tokenizer's chat template, one
user turn) and handed to ``LLM.generate`` as token ids, so both backends see the same input.
Decoding is pinned in ``SamplingParams`` (temperature 0, no penalties); vLLM adds the model's
end-of-sequence ids from its ``generation_config.json``, as transformers does.

Everything between vLLM and our records (engine arguments, sampling arguments, prompt
encoding, output mapping, the chunk loop) is a plain function of plain inputs, so it is tested
without vLLM installed; only :func:`load_llm` and :func:`generate` touch the library itself.
"""

from __future__ import annotations

import gc
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

from compliance.errors import ComplianceError
from compliance.records import GenConfig, ModelRecord, Response, SuiteItem

BACKEND_NAME = "vllm"

#: Prompts handed to vLLM per call: vLLM schedules its own batches inside a call, so this only
#: bounds how much work is lost if the run is killed (responses are stored after each call).
DEFAULT_CHUNK_SIZE = 256

MISSING_MESSAGE = "The vllm backend needs the vllm package: pip install 'compliance[vllm]' (GPU machines only)."

#: vLLM ``finish_reason`` values mapped to ours (``stop`` covers EOS tokens and stop strings).
FINISH_REASONS = {"stop": "eos", "length": "length"}


class VLLMNotInstalledError(ComplianceError):
    """``--backend vllm`` was asked for but vLLM is not installed."""


def require_vllm() -> ModuleType:
    """Import vLLM, or explain in one line how to install it.

    Raises:
        VLLMNotInstalledError: vLLM cannot be imported.
    """
    try:
        import vllm
    except ImportError:
        raise VLLMNotInstalledError(MISSING_MESSAGE) from None
    return vllm


def backend_version() -> str:
    """vLLM's version, recorded in the report and the response store key.

    Raises:
        VLLMNotInstalledError: vLLM is not installed.
    """
    return str(require_vllm().__version__)


def engine_kwargs(record: ModelRecord, dtype: str, seed: int, trust_remote_code: bool = False) -> dict:
    """Arguments for ``vllm.LLM`` that load ``record`` from its local folder.

    Args:
        record: a model with a local ``path`` (downloaded first when it comes from the Hub).
        dtype: ``bfloat16``, ``float16`` or ``float32`` (a ``torch.`` prefix is dropped).
        seed: the engine's seed (greedy decoding does not use it; recorded for completeness).
        trust_remote_code: let the model's own Python code run (never by default).

    Raises:
        ComplianceError: the record is a PEFT adapter (vLLM serves adapters through LoRA requests,
            which this backend does not make) or has no local folder.
    """
    if record.adapter_base is not None:
        raise ComplianceError(
            f"The vllm backend cannot load the PEFT adapter {record.id!r}: merge it into its base "
            "(peft's merge_and_unload) or use --backend transformers.")
    if not record.path or not Path(record.path).is_dir():
        raise ComplianceError(f"Model {record.id!r} has no local folder for vLLM to load: download it first.")
    kwargs: dict[str, Any] = {"model": record.path, "tokenizer": record.path, "dtype": dtype.replace("torch.", ""),
                              "seed": seed, "trust_remote_code": trust_remote_code}
    if record.gguf_file:
        # vLLM loads a GGUF file by its path and takes the tokenizer from the folder beside it.
        kwargs["model"] = str(Path(record.path) / record.gguf_file)
    return kwargs


def sampling_kwargs(config: GenConfig) -> dict:
    """Arguments for ``vllm.SamplingParams``: greedy, ``max_new_tokens`` long, with the config's stop strings.

    Penalties are set to their neutral values explicitly, so a model's ``generation_config.json``
    cannot change decoding, and base and fine-tune decode alike.

    Raises:
        ComplianceError: sampling was requested or ``max_new_tokens`` is below 1.
    """
    if config.do_sample:
        raise ComplianceError("Sampling is not supported: results must be reproducible, so set do_sample to false.")
    if config.max_new_tokens < 1:
        raise ComplianceError(f"max_new_tokens must be at least 1, got {config.max_new_tokens}.")
    stop = [s for s in (getattr(config, "stop", None) or ()) if s]
    return {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "max_tokens": config.max_new_tokens,
            "seed": config.seed, "stop": stop or None, "skip_special_tokens": True}


def to_response(item_id: str, output: Any) -> Response:
    """Map one vLLM ``RequestOutput`` to a :class:`Response`.

    ``outputs[0].text`` (stripped, special tokens already skipped), ``len(outputs[0].token_ids)``
    (the end-of-sequence token included, as the transformers backend counts it) and
    ``finish_reason`` ``stop`` -> ``eos``, ``length`` -> ``length``.

    Raises:
        ComplianceError: the request did not finish normally (vLLM's ``abort``, or no output).
    """
    completions = getattr(output, "outputs", None) or []
    if not completions:
        raise ComplianceError(f"vLLM returned no output for item {item_id!r}: check the vLLM log above.")
    completion = completions[0]
    reason = FINISH_REASONS.get(completion.finish_reason)
    if reason is None:
        raise ComplianceError(f"vLLM stopped item {item_id!r} with finish_reason {completion.finish_reason!r}: "
                              "check the vLLM log above (out of memory, a prompt longer than max_model_len?).")
    return Response(item_id=item_id, text=completion.text.strip(), n_new_tokens=len(completion.token_ids),
                    finish_reason=reason)  # type: ignore[arg-type]


def run_chunks(
    llm: Any,
    sampling_params: Any,
    items: Sequence[SuiteItem],
    config: GenConfig,
    on_response: Optional[Callable[[Response], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[Response]:
    """Encode the items, generate chunk by chunk with ``llm.generate`` and map the outputs.

    Args:
        llm: a ``vllm.LLM`` (anything with ``get_tokenizer()`` and ``generate(prompts, params, use_tqdm=)``
            returning one output per prompt, in order).
        sampling_params: the ``vllm.SamplingParams`` for every prompt.
        items: the prompts.
        config: ``use_chat_template`` decides the encoding.
        on_response: called with each response once its chunk finishes.
        progress: called with the number of items done after each chunk.
        chunk_size: prompts per ``generate`` call.

    Returns:
        One :class:`Response` per item, in the order of ``items``.
    """
    tokenizer = llm.get_tokenizer()
    from compliance.generation.transformers_backend import encode_prompt

    prompts = [{"prompt_token_ids": encode_prompt(tokenizer, item, config.use_chat_template)} for item in items]
    responses: list[Response] = []
    for start in range(0, len(items), max(chunk_size, 1)):
        chunk = items[start : start + chunk_size]
        outputs = llm.generate(prompts[start : start + chunk_size], sampling_params, use_tqdm=False)
        if len(outputs) != len(chunk):
            raise ComplianceError(f"vLLM returned {len(outputs)} outputs for {len(chunk)} prompts: check the vLLM log.")
        for item, output in zip(chunk, outputs):
            response = to_response(item.id, output)
            responses.append(response)
            if on_response is not None:
                on_response(response)
        if progress is not None:
            progress(len(responses))
    return responses


def load_llm(record: ModelRecord, dtype: str, seed: int = 0, trust_remote_code: bool = False, **engine: Any) -> Any:
    """Load ``record`` into a ``vllm.LLM``.

    Args:
        record: the model (a local folder).
        dtype: weights' dtype (``bfloat16`` on most GPUs).
        seed: the engine's seed.
        trust_remote_code: let the model's own Python code run.
        engine: further ``vllm.LLM`` arguments (``gpu_memory_utilization``, ``max_model_len``...).

    Raises:
        VLLMNotInstalledError: vLLM is not installed.
        ComplianceError: see :func:`engine_kwargs`.
    """
    kwargs = engine_kwargs(record, dtype, seed, trust_remote_code)
    vllm = require_vllm()
    return vllm.LLM(**kwargs, **engine)


def generate(
    llm: Any,
    items: Sequence[SuiteItem],
    config: GenConfig,
    on_response: Optional[Callable[[Response], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> list[Response]:
    """Answer every item greedily with a loaded ``vllm.LLM``; responses come back in the items' order.

    The counterpart of the transformers backend's ``generate``: ``llm`` holds both model and
    tokenizer. ``config.batch_size``, when set, is the number of prompts per ``generate`` call
    (vLLM batches inside a call by itself).

    Raises:
        VLLMNotInstalledError: vLLM is not installed.
        ComplianceError: sampling was requested, a setting is out of range, or a request did not finish.
    """
    params = require_vllm().SamplingParams(**sampling_kwargs(config))
    return run_chunks(llm, params, items, config, on_response, progress, config.batch_size or DEFAULT_CHUNK_SIZE)


def release(llm: Any) -> None:
    """Free the GPU memory ``llm`` holds, so the next model fits (best effort across vLLM versions)."""
    engine = getattr(llm, "llm_engine", None)
    shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
    if callable(shutdown):
        shutdown()
    del llm, engine
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # noqa: BLE001 - older or newer vLLM lay this out differently; freeing is best effort
        pass
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
