"""RFC 3161 timestamps: ask a time-stamping authority (TSA) for one, and check one.

A timestamp token is the TSA's signature over a digest and the time it saw it. Signing with
``--tsa URL`` puts one over each signature: the PAdES signature's (PAdES B-T, through pyHanko)
and the DSSE envelope's (stored in the signature entry as ``timestamp``, base64 DER). With a
trusted token the signer's certificate is checked at the token's time instead of today, so a
report outlives its signing certificate, and a signature made after the certificate expired is
rejected.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import urlsplit

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from compliance.signing.errors import SigningError

#: Seconds to wait for the TSA's answer.
TSA_TIMEOUT_S = 20
#: Field of a DSSE signature entry that holds the RFC 3161 token over that signature's bytes.
DSSE_TIMESTAMP_FIELD = "timestamp"


def quiet_pyhanko() -> None:
    """pyHanko logs each failed path search with a traceback; our callers report outcomes instead."""
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)


def asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    """The asn1crypto form of a ``cryptography`` certificate (what pyHanko takes)."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def reason(exc: BaseException) -> str:
    """The first line of the innermost cause of ``exc`` (pyHanko wraps the path validator's reason)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_tsa_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host.

    Raises:
        SigningError: naming the URL and the fix.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SigningError(f"--tsa {url!r} is not an http(s) URL: give the time-stamping authority's address, "
                           "e.g. http://timestamp.example.com/tsa")
    return url


def timestamper(url: str):
    """A pyHanko time stamper for ``url`` (checked first)."""
    from pyhanko.sign.timestamps import HTTPTimeStamper

    return HTTPTimeStamper(check_tsa_url(url), timeout=TSA_TIMEOUT_S)


def request_token(stamper, digest: bytes, url: str) -> cms.ContentInfo:
    """A timestamp token over the SHA-256 ``digest`` from ``stamper`` (the TSA at ``url``).

    Raises:
        SigningError: the TSA cannot be reached or refuses, in one line naming the URL.
    """
    return _ask(stamper.async_timestamp(digest, "sha256"), url)


def probe(stamper, url: str) -> cms.ContentInfo:
    """The token pyHanko sizes the signature with (one request, cached by ``stamper``).

    Raises:
        SigningError: as :func:`request_token`.
    """
    return _ask(stamper.async_dummy_response("sha256"), url)


def check_tsa(url: str) -> None:
    """Check that ``url`` is a time-stamping authority that answers, before long work that needs it.

    Raises:
        SigningError: a malformed URL, or a TSA that gives no timestamp.
    """
    probe(timestamper(url), url)


def _ask(coro, url: str) -> cms.ContentInfo:
    try:
        return asyncio.run(coro)
    except Exception as exc:  # noqa: BLE001 - aiohttp, TSP status and parse errors all mean "no token"
        raise SigningError(f"time-stamping authority {url} gave no timestamp ({reason(exc)}): "
                           "check --tsa (or $COMPLIANCE_TSA_URL) and that the server is up") from None


def tsa_certificates(token: cms.ContentInfo) -> list[asn1_x509.Certificate]:
    """The certificates a token carries (the TSA's, and its chain when the TSA sends it)."""
    certs = token["content"]["certificates"]
    return [c.chosen for c in certs if c.name == "certificate"] if certs.native is not None else []


def token_time(token: cms.ContentInfo) -> datetime:
    """The time a token states (TSTInfo ``genTime``), in UTC."""
    info = token["content"]["encap_content_info"]["content"].parsed
    return info["gen_time"].native.astimezone(timezone.utc)


def stamp_dsse_signatures(envelope: dict, url: str) -> dict:
    """Add an RFC 3161 token over each DSSE signature's bytes to its entry (``timestamp``)."""
    stamper = timestamper(url)
    for entry in envelope["signatures"]:
        digest = hashlib.sha256(base64.b64decode(entry["sig"])).digest()
        entry[DSSE_TIMESTAMP_FIELD] = base64.b64encode(request_token(stamper, digest, url).dump()).decode()
    return envelope


@dataclass
class TimestampCheck:
    """What checking one token found: the time it states, who issued it, and what is wrong."""

    time: Optional[datetime] = None
    tsa: Optional[str] = None
    trusted: bool = False  # chains to a trusted TSA root, valid at its own time
    problems: list[str] = field(default_factory=list)  # the token is damaged or covers something else

    @property
    def time_text(self) -> str:
        return self.time.strftime("%Y-%m-%dT%H:%M:%SZ") if self.time else "?"


def tsa_name(cert: Optional[asn1_x509.Certificate]) -> Optional[str]:
    if cert is None:
        return None
    from compliance.signing.keys import certificate_name

    return certificate_name(x509.load_der_x509_certificate(cert.dump()))


def check_token(token_b64: object, signed_bytes: bytes, tsa_roots: list[x509.Certificate]) -> TimestampCheck:
    """Check a base64 DER token over ``signed_bytes`` against the trusted TSA roots.

    The TSA's certificate is checked at the time the token states (revocation soft-fail, no
    fetching): the token proves the signature existed then, as long as the TSA was trusted then.
    """
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko.sign.validation.status import TimestampSignatureStatus
    from pyhanko_certvalidator import ValidationContext

    result = TimestampCheck()
    try:
        token = cms.ContentInfo.load(base64.b64decode(str(token_b64), validate=True))
        when = token_time(token)
    except Exception:  # noqa: BLE001 - any parse failure means a damaged token
        result.problems.append("timestamp token cannot be read (damaged or not RFC 3161)")
        return result
    quiet_pyhanko()
    vc = ValidationContext(trust_roots=[asn1_cert(c) for c in tsa_roots], allow_fetching=False,
                           revocation_mode="soft-fail", moment=when, retroactive_revinfo=True)
    try:
        status = TimestampSignatureStatus(**asyncio.run(validate_tst_signed_data(
            token["content"], vc, lambda algo: hashlib.new(algo, signed_bytes).digest())))
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"timestamp token cannot be validated ({reason(exc)})")
        return result
    result.time, result.tsa = status.timestamp.astimezone(timezone.utc), tsa_name(status.signing_cert)
    if not status.intact:
        result.problems.append("timestamp token does not cover this signature")
    elif not status.valid:
        result.problems.append("timestamp token's own signature does not verify")
    result.trusted = not result.problems and status.trusted
    return result
