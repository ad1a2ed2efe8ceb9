"""Errors meant for people.

Every error the tool raises on bad input is a :class:`ComplianceError` whose message is one
line that names the input and says what to do. The CLI prints that line and exits non-zero;
tracebacks appear only with ``--debug``.
"""

from __future__ import annotations


class ComplianceError(Exception):
    """Base class: the message is a complete, actionable sentence."""

    exit_code: int = 2


class ModelNotFoundError(ComplianceError):
    """A model reference points at nothing we can load."""


class LineageNotFoundError(ComplianceError):
    """The model declares no base model and none was given."""


class PolicyError(ComplianceError):
    """A policy name is unknown or a policy file is invalid."""


class SuiteError(ComplianceError):
    """A benchmark manifest or its data is missing or invalid."""


class DataError(ComplianceError):
    """User-supplied data (for example training JSONL) is unusable."""


class ReportError(ComplianceError):
    """A report could not be built or does not match its schema."""


class HubRepoNotFoundError(ModelNotFoundError):
    """A Hub repository does not exist (or is private and no token grants access)."""


class HubRevisionNotFoundError(ModelNotFoundError):
    """A Hub repository exists but the requested revision (branch, tag, commit) does not."""


class HubGatedRepoError(ModelNotFoundError):
    """A Hub repository is gated or private and the current token (if any) has no access."""


class UnsafeModelError(ModelNotFoundError):
    """A model repository or folder holds something we refuse to read or load.

    A file path that leaves the repository, a file larger than we read, a weight file whose
    bytes are not what its name or its recorded digest says, or a redirect to a host that is
    not the Hub's.
    """


class HubUnreachableError(ComplianceError):
    """The Hub (``HF_ENDPOINT``) cannot be reached, or offline mode is on and the cache is cold."""


class MalformedCardError(LineageNotFoundError):
    """A model card's YAML front matter cannot be parsed."""


class LineageCycleError(LineageNotFoundError):
    """Following declared bases leads back to a model already seen (A → B → A)."""


class LineageDepthError(LineageNotFoundError):
    """Following declared bases exceeded the depth limit."""


class ModelTooLargeError(ComplianceError):
    """A model needs more memory than the device has available."""
