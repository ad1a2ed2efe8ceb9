"""Adapt: a controlled full fine-tune, used to make fine-tunes whose lineage we know exactly.

The written folder carries a model card whose front matter records ``base_model``,
``base_model_relation: finetune``, the training data's sha256 and every hyperparameter, so the
result is both reproducible and resolvable by :mod:`compliance.lineage`.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from compliance.errors import DataError
from compliance.hashing import sha256_file
from compliance.records import ModelRecord

__all__ = ["TrainConfig", "TrainResult", "finetune", "read_training_data"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`finetune` (all recorded in the model card)."""

    steps: int = 30
    lr: float = 2e-5
    seed: int = 0
    max_length: int = 256
    batch_size: int = 4
    weight_decay: float = 0.0


@dataclass
class TrainResult:
    out_dir: Path
    losses: list[float]
    seconds: float
    data_sha256: str
    n_examples: int


def read_training_data(path: Path) -> list[list[dict]]:
    """Read chat examples from JSONL: ``{"prompt", "response"}`` or ``{"messages": [...]}`` per line.

    Raises:
        DataError: missing file, invalid JSON, or a line without the expected keys.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training data '{path}' does not exist: pass a JSONL file with --data")
    examples = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"training data {path} line {n} is not valid JSON ({exc.msg}): fix that line") from exc
            if isinstance(row, dict) and isinstance(row.get("messages"), list) and row["messages"]:
                msgs = row["messages"]
                if msgs[-1].get("role") != "assistant":
                    raise DataError(f"training data {path} line {n}: the last message must be the assistant's reply")
                examples.append([{"role": m["role"], "content": str(m["content"])} for m in msgs])
            elif isinstance(row, dict) and row.get("prompt") and row.get("response"):
                examples.append([{"role": "user", "content": str(row["prompt"])},
                                 {"role": "assistant", "content": str(row["response"])}])
            else:
                raise DataError(
                    f"training data {path} line {n} needs non-empty 'prompt' and 'response' (or a 'messages' list)"
                )
    if not examples:
        raise DataError(f"training data {path} holds no examples: add JSONL lines with 'prompt' and 'response'")
    return examples


def _encode(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; only the assistant's reply is learned (prompt tokens get -100)."""
    if getattr(tokenizer, "chat_template", None):
        prompt_ids = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True)
        full_ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if hasattr(prompt_ids, "keys"):  # newer transformers return a BatchEncoding
            prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    else:
        prompt_text = "\n".join(m["content"] for m in messages[:-1]) + "\n"
        prompt_ids = tokenizer(prompt_text)["input_ids"]
        full_ids = tokenizer(prompt_text + messages[-1]["content"])["input_ids"] + [tokenizer.eos_token_id]
    full_ids = list(full_ids)[:max_length]
    n_prompt = min(len(prompt_ids), len(full_ids))
    labels = [-100] * n_prompt + full_ids[n_prompt:]
    return full_ids, labels


def finetune(
    base: ModelRecord,
    data_path: Path,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    device: Optional[str] = None,
    overwrite: bool = False,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> TrainResult:
    """Fully fine-tune ``base`` on chat examples and save it with a lineage-bearing card.

    Args:
        base: the model to start from.
        data_path: JSONL training data (see :func:`read_training_data`).
        out_dir: folder to write; must not exist unless ``overwrite``.
        config: hyperparameters.
        device: ``cpu``/``cuda``; automatic when None.
        overwrite: replace an existing ``out_dir``.
        on_step: called with ``(step, loss)`` after every optimizer step.
    """
    import torch

    from compliance.generation import pick_device
    from compliance.models import load_model

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"output folder '{out_dir}' already exists and is not empty: choose another --out or pass --overwrite")
    if config.steps < 1 or config.batch_size < 1 or config.max_length < 8 or config.lr <= 0:
        raise DataError("--steps and --batch-size must be ≥ 1, --max-length ≥ 8 and --lr > 0")
    examples = read_training_data(data_path)
    data_sha = sha256_file(data_path)
    dev, _ = pick_device(device)
    # Train in fp32 even on GPU: small models, and mixed-precision would change results by device.
    torch.manual_seed(config.seed)
    model, tokenizer = load_model(base, device=dev, dtype=torch.float32)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [_encode(tokenizer, ex, config.max_length) for ex in examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = []
        while len(batch) < config.batch_size:
            if not order:
                order = list(range(len(encoded)))
                rng.shuffle(order)
            batch.append(encoded[order.pop()])
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=dev)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=dev)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=dev)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step, losses[-1])
    seconds = time.perf_counter() - start
    model.eval()
    _save(model, tokenizer, base, out_dir, config, data_path, data_sha, len(examples), losses, overwrite)
    return TrainResult(out_dir=out_dir, losses=losses, seconds=seconds, data_sha256=data_sha, n_examples=len(examples))


def _save(model, tokenizer, base: ModelRecord, out_dir: Path, config: TrainConfig, data_path: Path,
          data_sha: str, n_examples: int, losses: list[float], overwrite: bool) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    import compliance

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        data = ModelCardData(
            base_model=base.id,
            base_model_relation="finetune",
            library_name="transformers",
            license=base.license,
            tags=["compliance-adapt", "fine-tune"],
        )
        data.training = {
            "tool": f"compliance {compliance.__version__} adapt",
            "method": "full fine-tune, AdamW, loss on assistant tokens only",
            "data_file": Path(data_path).name,
            "data_sha256": data_sha,
            "n_examples": n_examples,
            "base_revision": base.revision,
            "hyperparameters": asdict(config),
            "final_loss": round(losses[-1], 6),
        }
        body = (
            f"# Fine-tune of {base.id}\n\n"
            f"Made with `compliance adapt`: {config.steps} steps of full fine-tuning on "
            f"`{Path(data_path).name}` ({n_examples} examples, sha256 `{data_sha[:16]}…`).\n"
            f"Training loss went from {losses[0]:.3f} to {losses[-1]:.3f}.\n"
        )
        ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(tmp / "README.md")
        if out_dir.exists():
            if not overwrite:
                raise DataError(f"output folder '{out_dir}' appeared while training: choose another --out")
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
