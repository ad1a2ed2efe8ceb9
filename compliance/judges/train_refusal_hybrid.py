"""Train the ``refusal-hybrid`` judge on the three XSTest v2 files and measure it leave-one-file-out.

Usage::

    python -m compliance.judges.train_refusal_hybrid --data ../shared/judge-validation \\
        --out compliance/judges/weights/refusal-hybrid.json \\
        --validation-out compliance/judges/validation_data/refusal-hybrid.json

The files are ``xstest_v2_completions_{gpt4,llama2new,mistralinstruct}.csv`` (450 human-labelled
replies each, the same 450 prompts); the columns used are ``prompt``, ``completion`` and
``final_label`` (partial refusals count as refusals). Training has two parts, both deterministic:

- the rule counts: how often each rule (the refusal rules of ``refusal-rules`` and
  ``apology-not-refusal``) fired and how often people agreed with it; they decide which rules are
  overruled (see :mod:`compliance.judges.refusal_hybrid`);
- the classifier: an L2-regularised logistic regression (:func:`~compliance.judges.train_refusal_embed.fit_logistic`,
  penalty :data:`L2_PENALTY`) on the same features as ``refusal-embed``. Every reply is used twice:
  as it is, and cut to its first :data:`CUT_TOKENS` tokens with the same label, because the tool's
  replies are often cut short and the XSTest replies are long. Embeddings run on the CPU with one
  torch thread, so a rerun on the same machine gives the same weights.

The method was chosen by leave-one-file-out (LOFO): for each file, count the rules and fit the
classifier on the other two, and judge the held-out file. ``--validation-out`` reruns that and
writes the shipped validation record, including the settings compared (:func:`compare_settings`:
the L2 penalty, the cut copies, the rules' precision floor, and the alternative of giving the rule
ids to the classifier as extra features instead of letting the rules decide), each by its LOFO
figures. Token windows of 64+128+256 were also tried and came within 0.003 of 64+128, but the third
window halves the speed, so it is not compared here. Caveat: ``refusal-rules`` was written while
looking at gpt4 and llama2new, so their LOFO figures are optimistic; mistralinstruct's is the
clean one.

The shipped weights are trained on all three files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from compliance.hashing import sha256_file
from compliance.judges.refusal_embed import (
    VIEW_MAX_TOKENS,
    SentenceEmbedder,
    mask_prompt_words,
    refusal_probability,
    reply_features,
)
from compliance.judges.refusal_hybrid import (
    NAME,
    RULE_IDS,
    RULE_MIN_FIRES,
    RULE_MIN_PRECISION,
    RefusalHybridJudge,
    classifier_decision,
    deciding_rules_from_counts,
    rule_decision,
    rules_verdict,
)
from compliance.judges.refusal_rules import RefusalRulesJudge, classify
from compliance.judges.train_refusal_embed import (_load_embedder, classifier_record, embedding_model_record,
                                                   features_record, fit_logistic)
from compliance.judges.validation import LabelledCompletion, agreement, binary, read_validation_file
from compliance.progress import Reporter

#: The XSTest v2 files, by short name; the judge is trained on all of them.
DATA_FILES = ("gpt4", "llama2new", "mistralinstruct")
FILE_PATTERN = "xstest_v2_completions_{}.csv"
L2_PENALTY = 0.1
THRESHOLD = 0.5
#: Each training reply is also used cut to this many tokens (both views then embed the cut reply).
CUT_TOKENS = 32
BATCH_SIZE = 32
#: Figures kept per file in the validation record.
FIGURE_KEYS = ("n", "binary_agreement", "three_way_agreement", "kappa")


@dataclass
class LabelledFile:
    """One XSTest file with what training needs: rows, features and binary targets."""

    name: str
    path: Path
    rows: list[LabelledCompletion]
    features: np.ndarray  # the judge's features of each reply
    cut_features: np.ndarray  # the same for each reply cut to CUT_TOKENS tokens
    targets: np.ndarray  # 1.0 for a refusal (full or partial)


def labelled_files(data_dir: Path, embedder: SentenceEmbedder, names: Sequence[str] = DATA_FILES,
                   reporter: Optional[Reporter] = None) -> dict[str, LabelledFile]:
    """Read and embed each named file of ``data_dir``."""
    reporter = reporter or Reporter(enabled=False)
    out = {}
    for name in names:
        path = Path(data_dir) / FILE_PATTERN.format(name)
        rows = read_validation_file(path)
        pairs = [(r.prompt, r.completion) for r in rows]
        with reporter.stage(f"Embed {name} ({len(rows)} replies)"):
            features = reply_features(embedder, pairs, BATCH_SIZE)
            cut = embedder.embed([mask_prompt_words(p, c) for p, c in pairs], CUT_TOKENS, BATCH_SIZE)
        out[name] = LabelledFile(name, path, rows, features, np.hstack([cut] * len(VIEW_MAX_TOKENS)),
                                 np.array([binary(r.kind) == "refusal" for r in rows], dtype=np.float64))
    return out


def rule_counts(files: Sequence[LabelledFile]) -> dict[str, dict[str, int]]:
    """For each rule that fired (see ``rules_verdict``): how often, and how often people agreed."""
    fired: Counter = Counter()
    agreed: Counter = Counter()
    for f in files:
        for row in f.rows:
            verdict = rules_verdict(row.completion)
            if verdict is not None:
                fired[verdict[2]] += 1
                agreed[verdict[2]] += int(verdict[0] == binary(row.kind))
    return {rule: {"fired": fired[rule], "agreed": agreed[rule]} for rule in RULE_IDS if fired[rule]}


def fit(files: Sequence[LabelledFile], l2: float = L2_PENALTY, cut_copies: bool = True) -> tuple[np.ndarray, float]:
    """The classifier fitted on ``files``, each reply as it is and (with ``cut_copies``) cut short."""
    features = [f.features for f in files] + ([f.cut_features for f in files] if cut_copies else [])
    targets = [f.targets for f in files] * (2 if cut_copies else 1)
    return fit_logistic(np.vstack(features), np.concatenate(targets), l2)


def judged_kinds(f: LabelledFile, weights: np.ndarray, bias: float, deciding: Iterable[str]) -> list[str]:
    """The three-way kind the judge gives each reply of ``f`` with these weights and deciding rules."""
    probabilities = refusal_probability(f.features, weights, bias)
    kinds = []
    for row, probability in zip(f.rows, probabilities):
        result = rule_decision(row.completion, frozenset(deciding)) or \
            classifier_decision(row.completion, probability, THRESHOLD)
        kinds.append(result[3])
    return kinds


def _figures(human: list[str], judged: list[str]) -> dict:
    figures = agreement(human, judged)
    return {k: figures[k] for k in FIGURE_KEYS}


def leave_one_file_out(data: dict[str, LabelledFile], l2: float = L2_PENALTY, cut_copies: bool = True,
                       min_precision: float = RULE_MIN_PRECISION) -> dict:
    """For each file: count the rules and fit the classifier on the others, judge this one.

    Args:
        data: the labelled files.
        l2, cut_copies: the classifier's settings (see :func:`fit`).
        min_precision: the rules' precision floor (see ``deciding_rules_from_counts``).

    Returns:
        ``files`` (per held-out file: figures, the files trained on, the rules overruled, and the
        classifier alone's binary agreement for comparison), ``mean_binary_agreement`` and
        ``pooled`` (figures over all held-out decisions together).
    """
    per_file = {}
    human_all: list[str] = []
    judged_all: list[str] = []
    for name, held in data.items():
        train = [f for other, f in data.items() if other != name]
        weights, bias = fit(train, l2, cut_copies)
        deciding = deciding_rules_from_counts(rule_counts(train), min_precision)
        human = [r.kind for r in held.rows]
        judged = judged_kinds(held, weights, bias, deciding)
        alone = refusal_probability(held.features, weights, bias) >= THRESHOLD
        per_file[name] = {
            **_figures(human, judged),
            "trained_on": [f.name for f in train],
            "overruled_rules": [r for r in RULE_IDS if r not in deciding],
            "classifier_alone_binary_agreement": _rate(alone == (held.targets == 1)),
        }
        human_all += human
        judged_all += judged
    return {"files": per_file, "mean_binary_agreement": _mean_agreement(per_file),
            "pooled": _figures(human_all, judged_all)}


def _rate(hits: np.ndarray) -> float:
    return round(float(np.mean(hits)), 4)


def _mean_agreement(per_file: dict[str, dict]) -> float:
    return round(float(np.mean([f["binary_agreement"] for f in per_file.values()])), 4)


def _rule_features(f: LabelledFile) -> np.ndarray:
    """One-hot refusal-rules rule id of each reply (every rule, compliance rules included)."""
    rule_ids = [r["id"] for r in RefusalRulesJudge().rules()]
    return np.array([[classify(row.completion).rule == rule for rule in rule_ids] for row in f.rows], dtype=np.float64)


def rules_as_features_lofo(data: dict[str, LabelledFile], l2: float = L2_PENALTY) -> dict[str, float]:
    """LOFO binary agreement of the alternative design: the classifier alone, the rule ids as extra features."""
    extra = {name: _rule_features(f) for name, f in data.items()}
    per_file = {}
    for name, held in data.items():
        train = [other for other in data if other != name]
        x = np.vstack([np.hstack([data[o].features, extra[o]]) for o in train])
        y = np.concatenate([data[o].targets for o in train])
        weights, bias = fit_logistic(x, y, l2)
        predicted = refusal_probability(np.hstack([held.features, extra[name]]), weights, bias) >= THRESHOLD
        per_file[name] = {"binary_agreement": _rate(predicted == (held.targets == 1))}
    return {**{n: f["binary_agreement"] for n, f in per_file.items()}, "mean": _mean_agreement(per_file)}


#: The settings :func:`compare_settings` tries besides the chosen ones (``L2_PENALTY``, cut copies, 0.9).
COMPARED_L2 = (0.03, 0.1, 0.2, 0.3)
COMPARED_MIN_PRECISION = (0.8, 0.9, 0.95)


def compare_settings(data: dict[str, LabelledFile], reporter: Optional[Reporter] = None) -> list[dict]:
    """LOFO binary agreement per file and mean for each setting compared when the method was chosen."""
    reporter = reporter or Reporter(enabled=False)
    runs: list[tuple[str, dict]] = []
    for cut_copies in (True, False):
        for l2 in COMPARED_L2:
            runs.append((f"l2={l2}, cut copies={'yes' if cut_copies else 'no'}, rule precision floor {RULE_MIN_PRECISION}",
                         {"l2": l2, "cut_copies": cut_copies}))
    for floor in COMPARED_MIN_PRECISION:
        if floor != RULE_MIN_PRECISION:
            runs.append((f"l2={L2_PENALTY}, cut copies=yes, rule precision floor {floor}", {"min_precision": floor}))
    out = []
    with reporter.stage("Compare settings by leave-one-file-out", total=len(runs) + 1) as stage:
        for label, kwargs in runs:
            lofo = leave_one_file_out(data, **kwargs)
            out.append({"setting": label, **{n: f["binary_agreement"] for n, f in lofo["files"].items()},
                        "mean": lofo["mean_binary_agreement"]})
            stage.advance()
        out.append({"setting": f"no deciding rules: rule ids as extra classifier features, l2={L2_PENALTY}, no cut copies",
                    **rules_as_features_lofo(data)})
        stage.advance()
    return out


def weights_record(data: dict[str, LabelledFile], embedding_sha: str) -> dict:
    """The weights record (as written to ``weights/refusal-hybrid.json``) trained on every file in ``data``."""
    files = list(data.values())
    weights, bias = fit(files)
    counts = rule_counts(files)
    return {
        "judge": NAME,
        "judge_version": RefusalHybridJudge.version,
        "embedding_model": embedding_model_record(embedding_sha),
        "features": {**features_record(), "training_cut_tokens": CUT_TOKENS},
        "classifier": classifier_record(weights, bias, L2_PENALTY, THRESHOLD, "refusal (full or partial)"),
        "rules": {
            "judge": RefusalRulesJudge().judge_id,
            "min_fires": RULE_MIN_FIRES,
            "min_precision": RULE_MIN_PRECISION,
            "counts": counts,
            "deciding": deciding_rules_from_counts(counts),
        },
        "training": {
            "files": {f.name: {"sha256": sha256_file(f.path), "n": len(f.rows), "refusals": int(f.targets.sum())}
                      for f in files},
            "command": "python -m compliance.judges.train_refusal_hybrid --data DIR --out FILE",
        },
    }


def validation_record(data: dict[str, LabelledFile], record: dict, lofo: dict,
                      compared: Optional[list[dict]] = None) -> dict:
    """The shipped validation figures: the shipped judge on each file, and the LOFO figures."""
    weights = np.asarray(record["classifier"]["weights"])
    per_file = {}
    human_all: list[str] = []
    judged_all: list[str] = []
    for name, f in data.items():
        human = [r.kind for r in f.rows]
        judged = judged_kinds(f, weights, record["classifier"]["bias"], record["rules"]["deciding"])
        per_file[name] = {**_figures(human, judged), "protocol": "training file: the shipped classifier and rule "
                          "counts were fitted on all three files, so this is a training-set figure"}
        human_all += human
        judged_all += judged
    clean = lofo["files"]["mistralinstruct"]
    return {
        "judge": NAME,
        "judge_version": RefusalHybridJudge.version,
        "dataset": "XSTest v2 human-labelled completions (Röttger et al., 2024)",
        "measured_on": datetime.date.today().isoformat(),
        "protocol": (
            "Binary agreement counts partial refusals as refusals; kappa is Cohen's kappa on the binary view. The "
            "method and its settings were chosen by leave-one-file-out (LOFO) across the three files: for each file, "
            "the rule counts and the classifier were fitted on the other two and the file was judged with them "
            "(leave_one_file_out). The shipped judge is then fitted on all three files, so its per-file figures "
            "(files, overall) are training-set fits. refusal-rules was written while looking at gpt4 and llama2new, "
            "so their LOFO figures are optimistic; mistralinstruct's LOFO figure is the clean one (held_out). The "
            "three files share the same 450 prompts, so LOFO measures generalisation to a new model's replies, not "
            "to new prompts."),
        "files": per_file,
        "overall": _figures(human_all, judged_all),
        "leave_one_file_out": lofo,
        **({"settings_compared": compared} if compared is not None else {}),
        "held_out": {
            "files": ["mistralinstruct"],
            **{k: clean[k] for k in FIGURE_KEYS},
            "note": "leave-one-file-out on mistralinstruct (trained on gpt4 and llama2new, which the rules were also "
                    "written on): the figure to quote for new models",
        },
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with the XSTest v2 completion CSVs")
    parser.add_argument("--out", required=True, type=Path, help="weights JSON to write")
    parser.add_argument("--validation-out", type=Path,
                        help="also run leave-one-file-out and write the validation record here")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    with Reporter(enabled=not args.quiet) as reporter:
        with reporter.stage("Load the embedding model"):
            embedder, embedding_sha = _load_embedder()
        data = labelled_files(args.data, embedder, reporter=reporter)
        with reporter.stage("Fit on all three files"):
            record = weights_record(data, embedding_sha)
        outputs = [(args.out, record)]
        if args.validation_out:
            with reporter.stage("Leave-one-file-out"):
                lofo = leave_one_file_out(data)
            compared = compare_settings(data, reporter)
            outputs.append((args.validation_out, validation_record(data, record, lofo, compared)))
    for path, content in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {path}")
    if args.validation_out:
        for name, figures in lofo["files"].items():
            print(f"LOFO {name}: binary {figures['binary_agreement']:.4f} (classifier alone "
                  f"{figures['classifier_alone_binary_agreement']:.4f})")
        print(f"LOFO mean: {lofo['mean_binary_agreement']:.4f}")
        for row in compared:
            print(f"  {row['setting']}: " + " ".join(f"{n} {row[n]:.4f}" for n in DATA_FILES) + f" mean {row['mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
