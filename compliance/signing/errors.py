"""Errors of signing and verification (kept here, beside the code that raises them)."""

from __future__ import annotations

from compliance.errors import ComplianceError


class SigningError(ComplianceError):
    """A key, certificate or report to sign or verify is missing or unusable."""
