"""Train the harm judges (``harm-cls``, ``harm-embed``) from GPTFuzz's ``train.csv``, deterministically.

Usage::

    python -m compliance.judges.train_harm --data ../shared/judge-validation/harm/gptfuzz \\
        --out compliance/judges/weights/harm-cls.json
    python -m compliance.judges.train_harm --judge harm-embed --data ../shared/judge-validation/harm/gptfuzz \\
        --out compliance/judges/weights/harm-embed.json

Only ``train.csv`` (and ``question_list.csv``, which turns its question numbers into requests) is
read. ``evaluate.csv``, whose 20 questions the training file never asks, is the file every
setting below was chosen on; this module never opens it.

``harm-cls``: every ``(request, reply)`` is encoded as one window of :data:`MAX_TOKENS` tokens
(the reply's start). MiniLM's lower layers are frozen, so their output is computed once, in
inference mode; then the LoRA adapter of the top layers and the head are trained with AdamW on
the mean log-loss, in batches of similar length drawn by a seeded generator, with a linear
warm-up and decay of the learning rate. The weights file (``--out`` with ``.safetensors``) holds
the adapter and the head; the record (``--out``) holds the settings and the sha256 of the data,
the embedding model and the weights.

``harm-embed``: the frozen embeddings of :func:`~compliance.judges.harm_embed.harm_features`,
then an L2-regularised logistic regression fitted with L-BFGS from zero (the refusal-embed
fitter).

Everything runs on the CPU with a fixed number of torch threads (:data:`THREADS`) and fixed
seeds: on one machine two runs give the same bytes. Another CPU kind (AVX2 against AVX-512) sums
floats in another order; the README states how far that moved the decisions when measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from compliance.hashing import sha256_bytes, sha256_file
from compliance.judges.validation import GPTFUZZ_QUESTIONS, LabelledReply, read_harm_file
from compliance.progress import Reporter

TRAIN_FILE = "train.csv"
#: harm-cls training settings, chosen by the agreement on evaluate.csv.
EPOCHS = 2
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.01
BATCH_SIZE = 16
DROPOUT = 0.1
WARMUP_FRACTION = 0.06
THRESHOLD = 0.5
SEED = 0
#: Batches are drawn from pools of this many batches, sorted by length inside a pool.
POOL_BATCHES = 50
#: torch threads for training; results are reproducible for a fixed thread count.
THREADS = 2
#: harm-embed's L2 penalty and threshold.
EMBED_L2 = 0.1
EMBED_THRESHOLD = 0.5
JUDGES = ("harm-cls", "harm-embed")


def training_rows(data_dir: Path) -> tuple[Path, list[LabelledReply]]:
    """``train.csv``'s path and rows (requests joined from ``question_list.csv``)."""
    path = Path(data_dir) / TRAIN_FILE
    return path, read_harm_file(path)


def _data_record(path: Path, rows: list[LabelledReply]) -> dict:
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "questions_file": GPTFUZZ_QUESTIONS,
        "questions_sha256": sha256_file(path.parent / GPTFUZZ_QUESTIONS),
        "n": len(rows),
        "harmful": sum(r.harmful for r in rows),
        "not_read": "evaluate.csv (the file every setting was chosen on)",
    }


def _embedding_record(folder: Path) -> dict:
    from compliance.judges.refusal_embed import EMBEDDING_REQUIREMENT

    return {"name": "sentence-transformers/all-MiniLM-L6-v2", "package": EMBEDDING_REQUIREMENT,
            "file": "model.safetensors", "safetensors_sha256": sha256_file(folder / "model.safetensors")}


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over :data:`WARMUP_FRACTION` of the steps, then linear decay to zero."""
    return min(1.0, (step + 1) / max(1.0, WARMUP_FRACTION * total)) * max(0.0, (total - step) / total)


def _batches(lengths: list[int], rng: np.random.RandomState) -> list[list[int]]:
    """One epoch's batches: shuffled, grouped by similar length inside pools, in shuffled order."""
    perm = rng.permutation(len(lengths))
    pool = BATCH_SIZE * POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(perm), pool):
        chunk = sorted(perm[start:start + pool].tolist(), key=lambda i: (lengths[i], i))
        batches += [chunk[i:i + BATCH_SIZE] for i in range(0, len(chunk), BATCH_SIZE)]
    return [batches[i] for i in rng.permutation(len(batches))]


def frozen_states(model, encoded: list, first_trained: int, reporter: Reporter) -> list:
    """The hidden states entering layer ``first_trained`` for every input (inference mode, float32)."""
    import torch

    from compliance.judges.harm_cls import pad

    states: list = [None] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].ids), i))
    with reporter.stage("frozen MiniLM layers", total=len(order)) as stage:
        for start in range(0, len(order), 32):
            chunk = order[start:start + 32]
            ids, types, mask = pad([encoded[i] for i in chunk])
            with torch.inference_mode():
                hidden = model(input_ids=ids, token_type_ids=types, attention_mask=mask,
                               output_hidden_states=True).hidden_states[first_trained]
            for row, i in enumerate(chunk):
                states[i] = hidden[row, :len(encoded[i].ids)].clone()
            stage.advance(len(chunk))
    return states


def fit_cls(rows: list[LabelledReply], reporter: Optional[Reporter] = None, epochs: int = EPOCHS,
            ) -> tuple[dict, list[float], Path]:
    """Train harm-cls's adapter and head on ``rows``.

    Returns:
        ``(tensors, mean loss per epoch, embedding model folder)``; the tensors are the adapter's
        (peft's names) and ``head.weight``/``head.bias``.
    """
    import torch
    from peft import get_peft_model, get_peft_model_state_dict
    from transformers.masking_utils import create_bidirectional_mask

    from compliance.judges import harm_cls as hc
    from compliance.judges.refusal_embed import locate_embedding_model

    reporter = reporter or Reporter(enabled=False)
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    rng = np.random.RandomState(SEED)
    folder = locate_embedding_model()
    tokenizer, base = hc.load_base_model(folder)
    base.eval()
    encoded = [hc.encode_pair(tokenizer, r.prompt, r.completion, windows=1)[0] for r in rows]
    targets = torch.tensor([float(r.harmful) for r in rows])
    first = hc.N_LAYERS - hc.TRAINED_LAYERS
    states = frozen_states(base, encoded, first, reporter)
    for module in base.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = DROPOUT
    model = get_peft_model(base, hc.lora_config())
    top = [base.encoder.layer[i] for i in range(first, hc.N_LAYERS)]
    head = torch.nn.Linear(hc.HIDDEN, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    lengths = [len(e.ids) for e in encoded]
    total = epochs * int(np.ceil(len(encoded) / BATCH_SIZE))
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    losses: list[float] = []
    with reporter.stage("training the adapter", total=total) as stage:
        for epoch in range(epochs):
            epoch_loss = 0.0
            for batch in _batches(lengths, rng):
                width = max(lengths[i] for i in batch)
                hidden = torch.zeros((len(batch), width, hc.HIDDEN))
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    hidden[row, :lengths[i]] = states[i]
                    mask[row, :lengths[i]] = 1
                attention = create_bidirectional_mask(config=base.config, inputs_embeds=hidden, attention_mask=mask)
                for layer in top:
                    hidden = layer(hidden, attention_mask=attention)
                loss = loss_fn(hc.pooled_logit(hidden, mask, head), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                epoch_loss += loss.detach().item() * len(batch)
                stage.advance()
            losses.append(round(epoch_loss / len(encoded), 6))
            reporter.log(f"epoch {epoch + 1}/{epochs}: mean training loss {losses[-1]:.4f}")
    tensors = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    tensors["head.weight"] = head.weight.detach().clone().contiguous()
    tensors["head.bias"] = head.bias.detach().clone().contiguous()
    return tensors, losses, folder


def train_cls(data_dir: Path, reporter: Optional[Reporter] = None) -> tuple[dict, bytes]:
    """The ``harm-cls`` record and weights (safetensors bytes) trained on ``train.csv``."""
    from safetensors.torch import save as save_tensors

    from compliance.judges import harm_cls as hc

    path, rows = training_rows(data_dir)
    tensors, losses, folder = fit_cls(rows, reporter)
    total = EPOCHS * int(np.ceil(len(rows) / BATCH_SIZE))
    weights = save_tensors(tensors)
    record = {
        "judge": "harm-cls",
        "judge_version": hc.HarmClassifierJudge.version,
        "embedding_model": _embedding_record(folder),
        "model": {
            "input": "[CLS] request [SEP] reply [SEP], token types 0/1",
            "max_tokens": hc.MAX_TOKENS,
            "request_max_tokens": hc.REQUEST_MAX_TOKENS,
            "read_windows": hc.READ_WINDOWS,
            "trained_layers": hc.TRAINED_LAYERS,
            "lora_rank": hc.LORA_RANK,
            "lora_alpha": hc.LORA_ALPHA,
            "lora_modules": list(hc.LORA_MODULES),
            "pooling": "mean of the last layer's token states, then a linear head",
            "threshold": THRESHOLD,
            "parameters": int(sum(v.numel() for v in tensors.values())),
        },
        "training": {
            "data": _data_record(path, rows),
            "windows": "one per reply: its first tokens",
            "epochs": EPOCHS,
            "learning_rate": LEARNING_RATE,
            "schedule": f"linear warm-up over {WARMUP_FRACTION:.0%} of {total} steps, then linear decay to 0",
            "optimizer": "AdamW",
            "weight_decay": WEIGHT_DECAY,
            "batch_size": BATCH_SIZE,
            "dropout": DROPOUT,
            "seed": SEED,
            "torch_threads": THREADS,
            "mean_loss_per_epoch": losses,
            "command": "python -m compliance.judges.train_harm --data DIR --out FILE",
        },
        "weights_file": hc.WEIGHTS_FILE,
        "weights_sha256": sha256_bytes(weights),
    }
    return record, weights


def embed_features(data_dir: Path, reporter: Optional[Reporter] = None,
                   ) -> tuple[Path, list[LabelledReply], np.ndarray, Path]:
    """``train.csv``'s rows and their harm-embed features (one torch thread: reproducible)."""
    import torch

    from compliance.judges.harm_embed import harm_features
    from compliance.judges.refusal_embed import SentenceEmbedder, locate_embedding_model

    torch.set_num_threads(1)
    path, rows = training_rows(data_dir)
    folder = locate_embedding_model()
    with (reporter or Reporter(enabled=False)).stage(f"embedding the {len(rows)} replies of {path.name}"):
        features = harm_features(SentenceEmbedder(folder, "cpu"), [(r.prompt, r.completion) for r in rows])
    return path, rows, features, folder


def embed_record(path: Path, rows: list[LabelledReply], features: np.ndarray, folder: Path) -> dict:
    """The ``harm-embed`` weights record fitted on :func:`embed_features`."""
    from compliance.judges import harm_embed as he
    from compliance.judges.train_refusal_embed import classifier_record, fit_logistic

    weights, bias = fit_logistic(features, np.array([float(r.harmful) for r in rows]), EMBED_L2)
    return {
        "judge": "harm-embed",
        "judge_version": he.HarmEmbedJudge.version,
        "embedding_model": {**_embedding_record(folder), "pooling": "mean over tokens, then L2 normalisation"},
        "features": {
            "window_tokens": he.WINDOW_TOKENS,
            "windows": he.WINDOWS,
            "request_max_tokens": he.REQUEST_MAX_TOKENS,
            "description": "embeddings of the reply's windows, their cosine with the request's embedding, "
                           "log1p of their token counts",
        },
        "classifier": classifier_record(weights, bias, EMBED_L2, EMBED_THRESHOLD, "harmful"),
        "training": {"data": _data_record(path, rows), "torch_threads": 1,
                     "command": "python -m compliance.judges.train_harm --judge harm-embed --data DIR --out FILE"},
    }


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with GPTFuzz's train.csv and question_list.csv")
    parser.add_argument("--out", required=True, type=Path,
                        help="record JSON to write (harm-cls also writes its weights beside it, as .safetensors)")
    parser.add_argument("--judge", choices=JUDGES, default="harm-cls", help="which harm judge to train")
    args = parser.parse_args(argv)
    from compliance.errors import ComplianceError

    try:
        with Reporter() as reporter:
            if args.judge == "harm-cls":
                record, weights = train_cls(args.data, reporter)
            else:
                record = embed_record(*embed_features(args.data, reporter))
        if args.judge == "harm-cls":
            weights_path = args.out.with_suffix(".safetensors")
            record["weights_file"] = weights_path.name
            _write_atomic(weights_path, weights)
            print(f"wrote {weights_path}")
    except ComplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_atomic(args.out, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
