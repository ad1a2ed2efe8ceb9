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
