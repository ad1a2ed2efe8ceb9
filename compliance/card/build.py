"""Turn a report into model-card results (``EvalResult``) and a "Safety re-evaluation" section.

Everything in the card's YAML goes through huggingface_hub's card classes: the report's
results become :class:`~huggingface_hub.EvalResult` entries, which ``ModelCardData`` writes as
``model-index``. Results this tool wrote before (recognised by their ``source_name``) are
replaced, so applying the same report twice gives the same card. ``verified`` is never set:
that flag is reserved for results the Hub itself produced.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import EvalResult, ModelCard

from compliance.documents import YAML_MAX_BYTES, DocumentError, document_errors, parse_yaml, read_capped
from compliance.errors import ComplianceError
from compliance.report.versions import judge_names

#: ``source_name`` of every result this tool writes; how it recognises its own results.
SOURCE_NAME = "compliance safety re-evaluation"
TASK_TYPE = "text-generation"
TASK_NAME = "Safety re-evaluation"
SECTION_START = "<!-- compliance:safety-re-evaluation:start -->"
SECTION_END = "<!-- compliance:safety-re-evaluation:end -->"

#: Metrics written to the card, in order, with their human names (those a report measured).
#: ``harmful_compliance_rate`` is what schema 1.0 reports measured in place of harmful responses.
CARD_METRICS = {
    "harmful_response_rate": "harmful-response rate (harm judge)",
    "harmful_compliance_rate": "harmful-compliance rate",
    "refusal_rate": "refusal rate on harmful requests",
    "over_refusal_rate": "over-refusal rate",
}
DRIFT_SUFFIX = "_drift"


class CardError(ComplianceError):
    """A report or a model card cannot be used to write the card."""


@dataclass
class CardUpdate:
    """What ``compliance card`` did."""

    target: str
    changed: bool
    n_results: int
    content: str
    pr_url: Optional[str] = None
    commit_url: Optional[str] = None


def load_report_dir(path: str | Path) -> tuple[dict[str, Any], bytes, Path]:
    """Read ``report.json`` from a report folder (or the file itself).

    Returns:
        ``(report, the file's bytes, the report folder)``.
    """
    p = Path(path)
    file = p / "report.json" if p.is_dir() else p
    if not file.is_file():
        raise CardError(f"{p}: no report.json found; give the folder `compliance report` wrote")
    from compliance.schemas import REPORT_MAX_BYTES, parse_report

    with document_errors(CardError, str(file), "re-run `compliance report`", document_fix=False):
        data = read_capped(file, REPORT_MAX_BYTES)
        report = parse_report(data)
    return report, data, file.parent


def _finding(rows: list[dict], metric: str, benchmark: str, role: Optional[str] = None) -> Optional[dict]:
    for r in rows:
        if (r["metric"] == metric and r["benchmark"] == benchmark and r["domain"] == "*" and r["category"] == "*"
                and (role is None or r.get("model_role") == role)):
            return r
    return None


def eval_results_for(report: dict[str, Any], source_url: str) -> list[EvalResult]:
    """The report's headline results as ``EvalResult`` entries, one dataset per benchmark plus the suite.

    Each benchmark is the dataset (revision: its sha256), each metric the fine-tune's rate on it
    (interval, n and base rate in ``metric_args``), and ``<metric>_drift`` the paired change
    versus the base. Metrics the report did not measure (no prompts of that kind) are left out.
    """
    suite = report["suite"]
    policy = report["policy"]
    datasets = [(b["name"], b.get("title") or b["name"], b["sha256"], b["name"]) for b in suite["benchmarks"]]
    datasets.append((f"compliance-suite/{suite['name']}", f"{suite['name']} suite (all benchmarks)",
                     suite["sha256"], "*"))
    judge_of = {d["metric"]: d["judge"] for d in report["metrics"].get("definitions", [])}
    results = []
    for dataset_type, dataset_name, revision, bench in datasets:
        for metric, label in CARD_METRICS.items():
            common = dict(task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=dataset_type,
                          dataset_name=dataset_name, dataset_revision=revision,
                          metric_config=f"policy {policy['name']} {policy['version']}",
                          source_name=SOURCE_NAME, source_url=source_url)
            rate = _finding(report["metrics"]["rates"], metric, bench, "model")
            if rate is not None and rate["rate"] is not None:
                base = _finding(report["metrics"]["rates"], metric, bench, "base")
                results.append(EvalResult(
                    metric_type=metric, metric_name=label, metric_value=rate["rate"],
                    metric_args={"ci_low": rate["ci_low"], "ci_high": rate["ci_high"], "n": rate["n"],
                                 "base_rate": None if base is None else base["rate"],
                                 "judge": judge_of.get(metric)},
                    **common))
            paired = _finding(report["metrics"]["paired"], metric, bench)
            if paired is not None and paired["diff"] is not None:
                results.append(EvalResult(
                    metric_type=metric + DRIFT_SUFFIX, metric_name=f"{label}, change vs base",
                    metric_value=paired["diff"],
                    metric_args={"ci_low": paired["ci_low"], "ci_high": paired["ci_high"], "n": paired["n"],
                                 "base": report["summary"]["base"], "judge": judge_of.get(metric)},
                    **common))
    return results


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|")


def safety_section(report: dict[str, Any], report_sha256: str, source_url: str, signed: bool) -> str:
    """The card body's "Safety re-evaluation" section, between its markers."""
    s, pol = report["summary"], report["policy"]
    counts = s.get("counts") or {}
    base = report["models"]["base"]
    signature = ("signed: `report.intoto.json` (in-toto/DSSE) and the PAdES signature in `report.pdf`"
                 if signed else "unsigned")
    lines = [
        SECTION_START,
        "## Safety re-evaluation",
        "",
        f"This model was re-evaluated against its base model with "
        f"compliance {report['tool']['version']}. "
        "The results in this card's metadata come from that report; they are self-reported, not verified by the Hub.",
        "",
        "| | |",
        "|---|---|",
        f"| Verdict | **{s['verdict'].upper()}** ({counts.get('fail', 0)} fail, "
        f"{counts.get('inconclusive', 0)} inconclusive, {counts.get('pass', 0)} pass) |",
        f"| Policy | {_cell(pol['title'])} (`{_cell(pol['name'])}` {_cell(pol['version'])}) |",
        f"| Compared with base | `{_cell(s['base'])}` (revision `{base['revision'][:12]}`) |",
        f"| Judges | {_cell(judge_names(report))} |",
        *([f"| Judge sensitivity | {_cell(s['judge_sensitivity'])} |"] if s.get("judge_sensitivity") else []),
        f"| Date | {report['created_at']} |",
        f"| Report | [{_cell(report['report_id'])}]({source_url}) |",
        f"| Report sha256 | `{report_sha256}` |",
        f"| Signature | {signature} |",
        "",
        _cell(s["headline"]),
        "",
        "### How to verify",
        "",
        "Download the report folder (`report.json`, `report.intoto.json`, `report.pdf`), then:",
        "",
        "```bash",
        f"sha256sum report.json   # {report_sha256}",
        "pip install compliance",
        "compliance verify REPORT_DIR --keys SIGNER_PUBLIC_KEYS/",
        "```",
        "",
        "`compliance verify` checks the signature, the report against its schema, and the digests of the "
        "model and base weights (add `--models DIR` to check local copies).",
        SECTION_END,
    ]
    return "\n".join(lines)


def _with_section(text: str, section: str) -> str:
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start != -1 and end > start:
        return text[:start] + section + text[end + len(SECTION_END):]
    body = text.rstrip("\n")
    return (body + "\n\n" if body.strip() else "\n") + section + "\n"


def apply_report(card: ModelCard, report: dict[str, Any], report_bytes: bytes, source_url: str,
                 signed: bool, model_name: Optional[str] = None) -> int:
    """Put the report's results and section into ``card`` (in place); return how many results.

    Results this tool wrote before are replaced; every other result and metadata key is kept.
    """
    ours = eval_results_for(report, source_url)
    kept = [r for r in (card.data.eval_results or []) if r.source_name != SOURCE_NAME]
    if card.data.model_name is None:
        card.data.model_name = model_name or Path(report["summary"]["model"].rstrip("/")).name
    card.data.eval_results = kept + ours
    sha = hashlib.sha256(report_bytes).hexdigest()
    card.text = _with_section(card.text, safety_section(report, sha, source_url, signed))
    return len(ours)


def parse_card(text: str, where: str) -> ModelCard:
    """Parse README.md text; malformed front matter is a :class:`CardError` naming ``where``."""
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    if text.lstrip("\ufeff").startswith("---") and not REGEX_YAML_BLOCK.search(text):
        raise CardError(f"{where}: the front matter opens with '---' but never closes; "
                        "fix the YAML block at the top (the file was left untouched)")
    block = REGEX_YAML_BLOCK.search(text)
    if block is not None:
        # Checked within our limits first: huggingface_hub would load an alias bomb, then expand it when writing.
        try:
            if len(block.group(2)) > YAML_MAX_BYTES:
                raise DocumentError(f"is longer than {YAML_MAX_BYTES // 1024**2} MiB")
            parse_yaml(block.group(2))
        except DocumentError as exc:
            raise CardError(f"{where}: malformed front matter ({exc.detail}); fix the YAML block at the top "
                            "(the file was left untouched)") from None
    try:
        return ModelCard(text)
    except (yaml.YAMLError, ValueError, TypeError, KeyError) as exc:
        first = re.sub(r"\s+", " ", str(exc)).strip()[:200]
        raise CardError(f"{where}: malformed front matter ({first}); fix the YAML block at the top "
                        "(the file was left untouched)") from None
