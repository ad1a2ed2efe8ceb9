"""Train the ``refusal-embed`` classifier from the XSTest v2 development files, deterministically.

Usage::

    python -m compliance.judges.train_refusal_embed --data ../shared/judge-validation \\
        --out compliance/judges/weights/refusal-embed.json [--cv]

Only the development files are read: ``xstest_v2_completions_gpt4.csv`` and
``xstest_v2_completions_llama2new.csv`` (450 human-labelled replies each). The third file,
``mistralinstruct``, is the held-out test file and this module never opens it. The columns used
are ``prompt``, ``completion`` and ``final_label`` (partial refusals count as refusals); the
``type`` column is not used, because real prompts do not come with one.

The classifier is an L2-regularised logistic regression (penalty :data:`L2_PENALTY` on the
weights, not the bias, added to the summed log-loss), fitted with L-BFGS from zero to a tight
tolerance: the same embeddings give the same weights. Embeddings are computed on the CPU with
one torch thread so that they, too, are the same on every run.

``--cv`` also prints (and records in the output) the cross-validation figures used to choose the
method: train on one development file, test on the other, both plainly and with the prompts split
into five groups (a test prompt is never a training prompt), and five-fold cross-validation on the
pooled files with the same prompt groups.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from compliance.hashing import sha256_file
from compliance.judges.refusal_embed import (
    EMBEDDING_PACKAGE,
    EMBEDDING_REQUIREMENT,
    MASK_TOKEN,
    VIEW_MAX_TOKENS,
    SentenceEmbedder,
    locate_embedding_model,
    refusal_probability,
    reply_features,
)
from compliance.judges.validation import binary, read_validation_file

#: The files the classifier is trained on, by short name; nothing else is read.
DEVELOPMENT_FILES = ("gpt4", "llama2new")
FILE_PATTERN = "xstest_v2_completions_{}.csv"
#: Weight of the L2 penalty; chosen by the cross-validation described above.
L2_PENALTY = 0.01
THRESHOLD = 0.5
#: Prompt groups for the grouped cross-validation (a fixed seed keeps them reproducible).
CV_FOLDS = 5
CV_SEED = 0
BATCH_SIZE = 32


def classifier_record(weights: np.ndarray, bias: float, l2_penalty: float, threshold: float,
                      positive_class: str) -> dict:
    """The ``classifier`` part of a shipped logistic-regression record (what
    :func:`compliance.judges.refusal_embed.logistic_weights` reads back)."""
    return {"type": "logistic regression", "l2_penalty": l2_penalty, "threshold": threshold,
            "positive_class": positive_class, "bias": bias, "weights": weights.tolist()}


def fit_logistic(features: np.ndarray, targets: np.ndarray, l2: float = L2_PENALTY) -> tuple[np.ndarray, float]:
    """Weights and bias minimising summed log-loss + ``l2``/2 * |weights|^2 (the bias is not penalised).

    Deterministic: L-BFGS from zero with fixed tolerances, in float64.
    """
    from scipy.optimize import minimize

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w))
        residual = refusal_probability(x, w, b) - y
        return loss, np.concatenate([x.T @ residual + l2 * w, [residual.sum()]])

    result = minimize(objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20000, "maxcor": 20, "gtol": 1e-9, "ftol": 1e-15})
    return result.x[:-1].copy(), float(result.x[-1])


def _load_embedder() -> tuple[SentenceEmbedder, str]:
    import torch

    torch.set_num_threads(1)  # one thread: the embeddings, hence the weights, are reproducible
    folder = locate_embedding_model(EMBEDDING_PACKAGE)
    return SentenceEmbedder(folder, "cpu"), sha256_file(folder / "model.safetensors")


def development_data(data_dir: Path, embedder: SentenceEmbedder) -> dict[str, dict]:
    """Features, binary targets and prompts of each development file."""
    out = {}
    for name in DEVELOPMENT_FILES:
        path = Path(data_dir) / FILE_PATTERN.format(name)
        rows = read_validation_file(path)
        pairs = [(r.prompt, r.completion) for r in rows]
        out[name] = {
            "path": path,
            "features": reply_features(embedder, pairs, BATCH_SIZE),
            "targets": np.array([binary(r.kind) == "refusal" for r in rows], dtype=np.float64),
            "prompts": [r.prompt for r in rows],
        }
    return out


def _accuracy(train_x, train_y, test_x, test_y) -> tuple[int, int]:
    w, b = fit_logistic(train_x, train_y)
    predicted = refusal_probability(test_x, w, b) >= THRESHOLD
    return int(np.sum(predicted == (test_y == 1))), len(test_y)


def cross_validation(data: dict[str, dict]) -> dict:
    """Binary agreement of the method under the cross-validation schemes in the module docstring."""
    first, second = DEVELOPMENT_FILES
    prompts = sorted(set(data[first]["prompts"]) | set(data[second]["prompts"]))
    order = np.random.RandomState(CV_SEED).permutation(len(prompts))
    group = {prompts[i]: rank % CV_FOLDS for rank, i in enumerate(order)}
    folds = {name: np.array([group[p] for p in d["prompts"]]) for name, d in data.items()}
    figures: dict[str, float] = {}
    for train, test in ((first, second), (second, first)):
        a, n = _accuracy(data[train]["features"], data[train]["targets"], data[test]["features"], data[test]["targets"])
        figures[f"train {train} -> test {test}"] = round(a / n, 4)
        agree = total = 0
        for fold in range(CV_FOLDS):
            tr, te = folds[train] != fold, folds[test] == fold
            a, n = _accuracy(data[train]["features"][tr], data[train]["targets"][tr],
                             data[test]["features"][te], data[test]["targets"][te])
            agree, total = agree + a, total + n
        figures[f"train {train} -> test {test}, prompt-disjoint {CV_FOLDS} folds"] = round(agree / total, 4)
    agree = total = 0
    for fold in range(CV_FOLDS):
        train_x = np.vstack([d["features"][folds[k] != fold] for k, d in data.items()])
        train_y = np.concatenate([d["targets"][folds[k] != fold] for k, d in data.items()])
        test_x = np.vstack([d["features"][folds[k] == fold] for k, d in data.items()])
        test_y = np.concatenate([d["targets"][folds[k] == fold] for k, d in data.items()])
        a, n = _accuracy(train_x, train_y, test_x, test_y)
        agree, total = agree + a, total + n
    figures[f"pooled {first}+{second}, prompt-disjoint {CV_FOLDS}-fold"] = round(agree / total, 4)
    return figures


def train(data_dir: Path, with_cv: bool = False) -> dict:
    """The weights record (as written to ``weights/refusal-embed.json``) trained on the development files."""
    embedder, embedding_sha = _load_embedder()
    return weights_record(development_data(Path(data_dir), embedder), embedding_sha, with_cv)


def embedding_model_record(embedding_sha: str) -> dict:
    """What a weights file records about the embedding model its classifier was trained on."""
    return {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "package": EMBEDDING_REQUIREMENT,
        "file": "model.safetensors",
        "safetensors_sha256": embedding_sha,
        "pooling": "mean over tokens, then L2 normalisation",
    }


def features_record() -> dict:
    """What a weights file records about the features (:func:`~compliance.judges.refusal_embed.reply_features`)."""
    return {
        "view_max_tokens": list(VIEW_MAX_TOKENS),
        "prompt_word_mask": MASK_TOKEN,
        "description": "reply with the prompt's content words masked, embedded truncated to each token window; "
                       "the embeddings are concatenated",
    }


def weights_record(data: dict[str, dict], embedding_sha: str, with_cv: bool = False) -> dict:
    """The weights record fitted on :func:`development_data`'s features (see :func:`train`)."""
    features = np.vstack([d["features"] for d in data.values()])
    targets = np.concatenate([d["targets"] for d in data.values()])
    weights, bias = fit_logistic(features, targets)
    record = {
        "judge": "refusal-embed",
        "judge_version": "1.0",
        "embedding_model": embedding_model_record(embedding_sha),
        "features": features_record(),
        "classifier": classifier_record(weights, bias, L2_PENALTY, THRESHOLD, "refusal (full or partial)"),
        "training": {
            "files": {name: {"sha256": sha256_file(d["path"]), "n": len(d["targets"]),
                             "refusals": int(d["targets"].sum())} for name, d in data.items()},
            "command": "python -m compliance.judges.train_refusal_embed --data DIR --out FILE",
            "held_out": "mistralinstruct: never read by this module",
        },
    }
    if with_cv:
        record["training"]["cross_validation"] = cross_validation(data)
    return record


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with the XSTest v2 completion CSVs")
    parser.add_argument("--out", required=True, type=Path, help="weights JSON to write")
    parser.add_argument("--cv", action="store_true", help="also run and record the cross-validation")
    args = parser.parse_args(argv)
    record = train(args.data, with_cv=args.cv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    for key, value in record["training"].get("cross_validation", {}).items():
        print(f"{key}: {value:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
