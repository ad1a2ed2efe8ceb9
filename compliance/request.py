"""One typed request for a report, built from small parts.

``compliance report``, :func:`compliance.api.run_report` and ``compliance fleet`` all build a
:class:`ReportRequest` and hand it to the same code. Each part groups the settings of one
stage: which models, which policy and suite, how to generate, which judges, which backend and
servers, where the output goes and how it is signed, and which response store is used.

Example:
    >>> from compliance.request import ReportRequest, ModelSpec
    >>> request = ReportRequest(models=ModelSpec("path/to/fine-tune"), policy="legal")
    >>> request.judges.refusal
    'refusal-...'
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

from compliance.constants import ENV_OPENAI_API_KEY
from compliance.errors import ComplianceError

__all__ = ["BackendSpec", "GenerationSpec", "JudgeSpec", "ModelSpec", "OutputSpec", "ReportRequest", "SuiteSpec",
           "request_from_kwargs"]


@dataclass(frozen=True)
class ModelSpec:
    """The model to evaluate and what it is compared with.

    Attributes:
        model: a local folder, the built-in model's id, or a Hub id ``org/name[@revision]``.
        base: ``None`` for the declared base, ``"root"`` for the lineage's root, or a model reference.
        allow_pickle: allow loading pickle weight files.
        trust_remote_code: allow a Hub model's own Python code to run (never by default).
    """

    model: str
    base: Optional[str] = None
    allow_pickle: bool = False
    trust_remote_code: bool = False


@dataclass(frozen=True)
class SuiteSpec:
    """Which prompts: the policy's suite or named benchmarks/suites, sampled or whole.

    Attributes:
        names: benchmark or suite names to run instead of the policy's ``suite``.
        limit: run a stratified sample of this many items.
        data_dir: folder laid out like ``../shared/benchmarks/`` for offline runs.
        accept_licence: opt-in benchmarks (unconfirmed licence) to run.
    """

    names: Optional[tuple[str, ...]] = None
    limit: Optional[int] = None
    data_dir: Optional[Path] = None
    accept_licence: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationSpec:
    """How replies are generated (greedy decoding).

    Attributes:
        max_new_tokens: generation length per prompt.
        batch_size: prompts per batch; chosen from the device when None.
        seed: seed for sampling the suite and for generation.
        device: ``cpu``/``cuda``; automatic when None.
        stop: strings that end an answer where they appear (not kept).
    """

    max_new_tokens: int = 64
    batch_size: Optional[int] = None
    seed: int = 0
    device: Optional[str] = None
    stop: tuple[str, ...] = ()


def _default_refusal_judge() -> str:
    from compliance.judges import DEFAULT_JUDGE

    return DEFAULT_JUDGE


def _default_harm_judge() -> str:
    from compliance.judges import DEFAULT_HARM_JUDGE

    return DEFAULT_HARM_JUDGE


@dataclass(frozen=True)
class JudgeSpec:
    """Who labels the replies, on each axis.

    Attributes:
        refusal: the refusal judge (refusal and over-refusal rates).
        refusal_options: its construction options (``--judge-option``).
        harm: the harm judge (harmful-response rate), or None to measure refusal only.
        harm_options: its construction options (``--harm-judge-option``).
        sensitivity: also label every reply with every cheap judge of each axis and say whether
            the verdict holds under each.
    """

    refusal: str = field(default_factory=_default_refusal_judge)
    refusal_options: dict[str, str] = field(default_factory=dict)
    harm: Optional[str] = field(default_factory=_default_harm_judge)
    harm_options: dict[str, str] = field(default_factory=dict)
    sensitivity: bool = True


@dataclass(frozen=True)
class BackendSpec:
    """Who generates: transformers here, an OpenAI-compatible server, or vLLM here.

    Attributes:
        name: ``transformers``, ``openai`` or ``vllm``.
        base_url: the server's base URL (``openai`` only).
        served_model: the name the server serves the model under (default: the model's id).
        served_base_model: the name it serves the base under (default: the base's id).
        base_model_url: the base's server, when it is not ``base_url``.
        concurrency: requests in flight at once (``openai`` only).
        api_key_env: environment variable holding the server's API key; never recorded.
    """

    name: str = "transformers"
    base_url: Optional[str] = None
    served_model: Optional[str] = None
    served_base_model: Optional[str] = None
    base_model_url: Optional[str] = None
    concurrency: int = 8
    api_key_env: str = ENV_OPENAI_API_KEY


@dataclass(frozen=True)
class OutputSpec:
    """Where the report goes and how it is signed.

    Attributes:
        out_dir: output folder; ``reports/<model name>`` when None.
        pdf: also render ``report.pdf``.
        keys: key folder to sign with (``$COMPLIANCE_SIGNING_KEYS`` when None).
        tsa: URL of an RFC 3161 time-stamping authority that timestamps the signatures
            (``$COMPLIANCE_TSA_URL`` when None); needs signing keys. It is asked once up front.
        progress: show progress on stderr.
    """

    out_dir: Optional[Path] = None
    pdf: bool = True
    keys: Optional[Path] = None
    tsa: Optional[str] = None
    progress: bool = True


@dataclass(frozen=True)
class ReportRequest:
    """Everything one report needs.

    Attributes:
        models: the model and its base.
        policy: a shipped policy name or a policy YAML path.
        suite: the prompts.
        generation: decoding settings.
        judges: the judges of each axis.
        backend: who generates.
        output: output folder, PDF, signing.
        store: the response store file (``$COMPLIANCE_STORE`` or the cache's when None); False
            runs without one.
    """

    models: ModelSpec
    policy: str = "healthcare"
    suite: SuiteSpec = field(default_factory=SuiteSpec)
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    judges: JudgeSpec = field(default_factory=JudgeSpec)
    backend: BackendSpec = field(default_factory=BackendSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    store: Union[Path, str, bool, None] = None

    def with_model(self, model: str, out_dir: Optional[Path] = None) -> "ReportRequest":
        """The same request for another model (and output folder): what a fleet builds per model."""
        return replace(self, models=replace(self.models, model=model),
                       output=replace(self.output, out_dir=out_dir if out_dir is not None else self.output.out_dir))


#: ``run_report`` keyword -> (part, field) of the request it sets.
_KWARGS: dict[str, tuple[str, str]] = {
    "base": ("models", "base"), "allow_pickle": ("models", "allow_pickle"),
    "trust_remote_code": ("models", "trust_remote_code"),
    "suite": ("suite", "names"), "limit": ("suite", "limit"), "data_dir": ("suite", "data_dir"),
    "accept_licence": ("suite", "accept_licence"),
    "max_new_tokens": ("generation", "max_new_tokens"), "batch_size": ("generation", "batch_size"),
    "seed": ("generation", "seed"), "device": ("generation", "device"), "stop": ("generation", "stop"),
    "judge": ("judges", "refusal"), "judge_options": ("judges", "refusal_options"),
    "harm_judge": ("judges", "harm"), "harm_judge_options": ("judges", "harm_options"),
    "sensitivity": ("judges", "sensitivity"),
    "backend": ("backend", "name"), "base_url": ("backend", "base_url"),
    "served_model": ("backend", "served_model"), "served_base_model": ("backend", "served_base_model"),
    "base_model_url": ("backend", "base_model_url"), "concurrency": ("backend", "concurrency"),
    "api_key_env": ("backend", "api_key_env"),
    "out_dir": ("output", "out_dir"), "pdf": ("output", "pdf"), "keys": ("output", "keys"), "tsa": ("output", "tsa"),
    "progress": ("output", "progress"),
}
_TUPLES = {"names", "accept_licence", "stop"}


def request_from_kwargs(model: str, policy: str = "healthcare", store: Union[Path, str, bool, None] = None,
                        **kwargs: Any) -> ReportRequest:
    """A :class:`ReportRequest` from ``run_report``'s keyword arguments (see :data:`_KWARGS`).

    Raises:
        ComplianceError: for a keyword that is not a setting.
    """
    unknown = sorted(set(kwargs) - set(_KWARGS))
    if unknown:
        raise ComplianceError(f"run_report got unknown setting(s) {', '.join(unknown)}; it takes: "
                              f"{', '.join(sorted(_KWARGS))}")
    parts: dict[str, dict[str, Any]] = {}
    for key, value in kwargs.items():
        part, name = _KWARGS[key]
        if name in _TUPLES and value is not None:
            value = tuple(value)
        if name in ("refusal_options", "harm_options") and value is None:
            value = {}
        parts.setdefault(part, {})[name] = value
    classes = {f.name: f.default_factory for f in fields(ReportRequest) if f.name in  # type: ignore[misc]
               ("suite", "generation", "judges", "backend", "output")}
    built = {part: replace(classes[part](), **values) for part, values in parts.items() if part != "models"}
    return ReportRequest(models=ModelSpec(model, **parts.get("models", {})), policy=policy, store=store, **built)
