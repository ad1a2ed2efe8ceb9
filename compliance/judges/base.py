"""What a judge is, how judges are registered, and how a judge labels a whole run.

A judge turns one (prompt, response) pair into a binary label. Judges are plug-ins: a module
defines a :class:`Judge` subclass, decorates it with :func:`register_judge`, and the rest of
the tool finds it by name with :func:`get_judge`. The name and version end up in every
:class:`~compliance.records.Judgement`, so a report says exactly which judge produced it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, TypeVar, Union

from compliance.errors import ComplianceError
from compliance.records import Axis, Judgement, Kind, Label, Response, SuiteItem

#: A judge's verdict on one response: label, confidence that it is a refusal, deciding rule.
#: ``judge_one`` returns these three; ``judge_many`` may add a fourth, the three-way kind (full
#: refusal / partial refusal / compliance). Without it the kind follows the label
#: (refusal -> full refusal).
JudgeResult = Union[tuple[Label, float, Optional[str]], tuple[Label, float, Optional[str], Kind]]

J = TypeVar("J", bound=type["Judge"])

# Name -> class. Filled by ``@register_judge`` when the judge modules are imported, which
# ``compliance.judges`` does on import so lookups never depend on import order elsewhere.
_REGISTRY: dict[str, type["Judge"]] = {}

#: The labels a judge of each axis may give.
AXIS_LABELS: dict[str, tuple[str, ...]] = {"refusal": ("refusal", "compliance"), "harm": ("harmful", "not_harmful")}


class Judge(ABC):
    """Labels a model response as a refusal or a compliance.

    Subclasses set the class attributes and implement :meth:`judge_one`.

    Attributes:
        name: registry name, used on the command line and recorded in judgements.
        version: bumped whenever a change could alter any label, so old reports stay traceable.
        description: one sentence for ``--help`` and the report.
        axis: ``refusal`` (labels ``refusal``/``compliance``, score = confidence of a refusal) or
            ``harm`` (labels ``harmful``/``not_harmful``, score = probability that the reply
            carries out the harmful request; harm judges see only replies to harmful prompts).
    """

    name: str = ""
    axis: Axis = "refusal"
    #: Runs on a CPU from files installed with the package, with no option to set: every report
    #: labels its responses with all such judges too, to show whether a verdict survives a
    #: change of judge (see :mod:`compliance.sensitivity`).
    cheap: bool = False
    version: str = ""
    description: str = ""
    #: Construction options the judge accepts (``--judge-option KEY=VALUE``), name -> help text.
    options: dict[str, str] = {}

    def rules(self) -> list[dict]:
        """Document what the judge checks.

        Returns:
            One dict per rule with ``id`` (the value that appears in ``Judgement.rule``) and
            ``description`` (what the rule catches and why). Empty for judges without rules,
            such as a model-based classifier.
        """
        return []

    @abstractmethod
    def judge_one(self, prompt: str, response: str) -> JudgeResult:
        """Label one response.

        Args:
            prompt: the prompt the model answered; judges may ignore it.
            response: the model's reply, possibly truncated or empty.

        Returns:
            ``(label, score, rule)``: ``label`` is ``"refusal"`` or ``"compliance"``, ``score``
            is the confidence that the response is a refusal, in [0, 1], and ``rule`` is the id
            of the rule that decided, or ``None`` when no single rule did.
        """

    def judge_many(self, pairs: list[tuple[str, str]]) -> list[JudgeResult]:
        """Label many ``(prompt, response)`` pairs; model-based judges override this to batch.

        Returns:
            One result per pair, in order, as :meth:`judge_one` returns them, optionally with the
            three-way kind as a fourth element.
        """
        return [self.judge_one(prompt, response) for prompt, response in pairs]

    @staticmethod
    def kind_of(result: JudgeResult) -> Kind:
        """The three-way kind of a result: its fourth element, else derived from the label."""
        if len(result) > 3 and result[3] is not None:  # type: ignore[misc]
            return result[3]  # type: ignore[misc]
        return "compliance" if result[0] == "compliance" else "full_refusal"

    def describe(self) -> dict:
        """What the report records about the judge: name, version, description, rules, options."""
        info: dict[str, Any] = {"name": self.name, "version": self.version, "axis": self.axis,
                                "description": self.description, "rules": self.rules()}
        settings = self.settings()
        if settings:
            info["options"] = settings
        return info

    def settings(self) -> dict:
        """The construction options in effect (for provenance); empty for option-less judges."""
        return {}

    @property
    def judge_id(self) -> str:
        """``name@version``, the string stored in each judgement for provenance."""
        return f"{self.name}@{self.version}"


def register_judge(name: str) -> Callable[[J], J]:
    """Class decorator that registers a :class:`Judge` subclass under ``name``.

    Args:
        name: the name users select the judge by; also set as the class's ``name``.

    Returns:
        The decorator, which returns the class unchanged apart from ``name``.

    Raises:
        ValueError: if another class is already registered under ``name`` (two plug-ins
            silently shadowing each other would make reports ambiguous).
    """

    def decorator(cls: J) -> J:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"judge name {name!r} is already registered by {existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_judges(axis: Optional[str] = None) -> list[str]:
    """Names of the registered judges (of one axis, when given), sorted."""
    return sorted(name for name, cls in _REGISTRY.items() if axis is None or cls.axis == axis)


def judge_class(name: str) -> type["Judge"]:
    """The class registered under ``name``.

    Raises:
        ComplianceError: if no judge has that name (the message lists the valid names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(available_judges()) or "(none registered)"
        raise ComplianceError(f"unknown judge {name!r}: choose one of {choices}") from None


def cheap_judges(axis: str) -> list[str]:
    """Names of the judges of ``axis`` that every report also runs (see :attr:`Judge.cheap`)."""
    return [name for name in available_judges(axis) if _REGISTRY[name].cheap]


def get_judge(name: str, options: Optional[dict[str, str]] = None) -> Judge:
    """Instantiate the judge registered under ``name``.

    Args:
        name: a name from :func:`available_judges`.
        options: construction options as strings (from ``--judge-option KEY=VALUE``), passed to
            the judge's constructor as keyword arguments; each judge documents its own in
            ``options`` (e.g. ``model``, ``labels`` for ``hf-classifier``).

    Returns:
        A new instance of the judge.

    Raises:
        ComplianceError: if no judge has that name (the message lists the valid names), or an
            option is one the judge does not take (the message lists the ones it does).
    """
    cls = judge_class(name)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        accepted = ", ".join(sorted(cls.options)) or "none"
        raise ComplianceError(f"judge {name!r} does not take option(s) {', '.join(unknown)}; it takes: {accepted}")
    return cls(**options) if options else cls()


def parse_judge_options(values: Optional[list[str]], option: str = "--judge-option") -> dict[str, str]:
    """``["model=PATH", "labels=A=refusal,B=compliance"]`` -> ``{"model": "PATH", "labels": "..."}``.

    Raises:
        ComplianceError: for a value without ``=``.
    """
    options: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise ComplianceError(f"{option} {value!r}: expected KEY=VALUE, e.g. model=path/to/classifier")
        options[key.strip().replace("-", "_")] = rest.strip()
    return options


def judged_items(judge: Judge, items: list[SuiteItem]) -> list[SuiteItem]:
    """The items a judge labels: all of them on the refusal axis; on the harm axis the items that
    expect a refusal (harm is judged on replies to harmful prompts)."""
    return [item for item in items if judge.axis != "harm" or item.expected == "refuse"]


def judge_responses(judge: Judge, items: list[SuiteItem], responses: list[Response]) -> list[Judgement]:
    """Label every item's response on the judge's axis (harm: items that expect a refusal only).

    Responses are matched to items by ``item_id`` rather than position, because a resumed
    generation run may store them in a different order.

    Args:
        judge: the judge to apply.
        items: the suite items; the output follows their order.
        responses: one response per item (extra responses are ignored).

    Returns:
        One :class:`Judgement` per judged item, in item order, with the judge's axis.

    Raises:
        ValueError: if an item has no response; the message names the item id.
        ComplianceError: if the judge returns a label that is not one of its axis's labels.
    """
    by_id = {r.item_id: r for r in responses}
    items = judged_items(judge, items)
    pairs = []
    for item in items:
        response = by_id.get(item.id)
        if response is None:
            raise ValueError(f"no response for suite item {item.id!r}")
        pairs.append((item.prompt, response.text))
    results = judge.judge_many(pairs) if pairs else []
    allowed = AXIS_LABELS[judge.axis]
    out = []
    for item, result in zip(items, results):
        if result[0] not in allowed:
            raise ComplianceError(f"judge {judge.judge_id!r} ({judge.axis} axis) returned label {result[0]!r}; "
                                  f"expected one of {', '.join(allowed)}")
        kind = judge.kind_of(result) if judge.axis == "refusal" else None
        out.append(Judgement(item_id=item.id, label=result[0], score=float(result[1]), judge=judge.judge_id,
                             rule=result[2], kind=kind, axis=judge.axis))
    return out


def load_judge_model(auto_class: Any, model_ref: str, judge_name: str, device: Optional[str] = None):
    """Tokenizer and model for a model-based judge, loaded as safely as the models under test.

    Safetensors only and no repository code: a judge model is third-party code and weights too.

    Args:
        auto_class: a transformers ``AutoModelFor...`` class.
        model_ref: a local folder or a Hub id.
        judge_name: the judge's registered name, for error messages.
        device: ``cpu``/``cuda``; automatic when None.

    Returns:
        ``(model, tokenizer, device)`` with the model in eval mode on ``device``.
    """
    from transformers import AutoTokenizer

    from compliance.generation import pick_device

    dev, _ = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_ref, trust_remote_code=False)
        model = auto_class.from_pretrained(model_ref, trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ComplianceError(f"judge '{judge_name}': cannot load {model_ref!r}: {first}") from None
    return model.to(dev).eval(), tokenizer, dev
