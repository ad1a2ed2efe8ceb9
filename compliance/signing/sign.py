"""Sign a report folder: ``report.intoto.json`` beside ``report.json``, and a signed ``report.pdf``."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from compliance.constants import tsa_url
from compliance.io import atomic_write_bytes
from compliance.signing.dsse import build_statement, envelope_bytes, keyid_of, sign_statement
from compliance.signing.errors import SigningError
from compliance.signing.keys import PDF_CERT, SigningKeys, certificate_name, fingerprint, load_signing_keys
from compliance.signing.pdf import ATTACHMENT_ENVELOPE, ATTACHMENT_REPORT, sign_pdf_bytes
from compliance.signing.timestamp import check_tsa_url, stamp_dsse_signatures

REPORT_JSON = "report.json"
REPORT_PDF = "report.pdf"
ENVELOPE = "report.intoto.json"


@dataclass
class SignResult:
    """What was signed, with what, and how long it took."""

    envelope_path: Path
    pdf_path: Optional[Path]
    keyid: str
    signer: str
    fingerprint: str
    seconds: float
    pades_level: Optional[str] = None  # B-B, B-T or B-LT (None: no PDF)
    note: Optional[str] = None  # why a timestamped PDF carries no validation data (B-T, not B-LT)
    timestamped: bool = False  # the envelope's signature carries an RFC 3161 timestamp


def sign_report(report_dir: str | Path, keys_dir: str | Path, tsa: Optional[str] = None) -> SignResult:
    """Sign the report in ``report_dir`` with the keys in ``keys_dir``.

    Writes ``report.intoto.json`` (DSSE envelope of an in-toto Statement) and, when
    ``report.pdf`` exists, replaces it with a copy that carries ``report.json`` and the envelope
    as attachments and a PAdES signature over the whole file. Both writes are atomic. An already
    signed PDF is rendered again from ``report.json`` first, so signing twice works.

    Args:
        report_dir: the report folder.
        keys_dir: the key folder (private keys decrypted with ``$COMPLIANCE_KEY_PASSPHRASE``).
        tsa: URL of an RFC 3161 time-stamping authority (default ``$COMPLIANCE_TSA_URL``): each
            signature gets a timestamp (PAdES B-T, B-LT where the chains allow; a ``timestamp``
            beside the DSSE signature), so the report verifies after the certificate expires.

    Raises:
        SigningError: a missing or invalid report, unusable keys, a PDF certificate that is not
            valid now (a signature it makes would never verify), or an unreachable TSA.
    """
    from compliance.schemas import report_errors

    started = time.perf_counter()
    folder = Path(report_dir)
    json_path = folder / REPORT_JSON
    if not folder.is_dir():
        raise SigningError(f"report folder {folder} not found")
    if not json_path.is_file():
        raise SigningError(f"{json_path} not found: sign a folder written by `compliance report`")
    keys = load_keys_for_signing(keys_dir)
    tsa = tsa or tsa_url()
    if tsa is not None:
        check_tsa_url(tsa)
    report_bytes = json_path.read_bytes()
    try:
        report = json.loads(report_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SigningError(f"{json_path} is not valid JSON") from None
    errors = report_errors(report)
    if errors:
        raise SigningError(f"{json_path} does not match the report schema ({errors[0]}); it cannot be signed")

    envelope_dict = sign_statement(build_statement(report, report_bytes), keys.report_key)
    if tsa is not None:
        stamp_dsse_signatures(envelope_dict, tsa)
    envelope = envelope_bytes(envelope_dict)
    envelope_path = atomic_write_bytes(folder / ENVELOPE, envelope)

    pdf_path = folder / REPORT_PDF
    if pdf_path.is_file():
        pdf = pdf_path.read_bytes()
        if _is_signed(pdf):
            pdf = _render(report)
        signed = sign_pdf_bytes(pdf, keys, {ATTACHMENT_REPORT: report_bytes, ATTACHMENT_ENVELOPE: envelope},
                                tsa=tsa)
        atomic_write_bytes(pdf_path, signed.data)
    else:
        pdf_path, signed = None, None
    return SignResult(envelope_path=envelope_path, pdf_path=pdf_path, keyid=keyid_of(keys.report_key.public_key()),
                      signer=certificate_name(keys.pdf_cert), fingerprint=fingerprint(keys.pdf_cert.public_key()),
                      seconds=time.perf_counter() - started, pades_level=signed.level if signed else None,
                      note=signed.note if signed else None, timestamped=tsa is not None)


def load_keys_for_signing(keys_dir: str | Path) -> SigningKeys:
    """The key folder's keys, refused when the PDF certificate is outside its validity period.

    Raises:
        SigningError: as :func:`load_signing_keys`, or a certificate that has expired or is
            not yet valid (nothing it signs now would verify).
    """
    keys = load_signing_keys(keys_dir)
    cert, path = keys.pdf_cert, Path(keys_dir) / PDF_CERT
    now = datetime.now(timezone.utc)
    if cert.not_valid_after_utc < now:
        raise SigningError(f"the certificate in {path} expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                           "a signature made with it now would never verify; renew it and import it "
                           "with `compliance keygen --cert/--pkcs12`")
    if cert.not_valid_before_utc > now:
        raise SigningError(f"the certificate in {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                           "UTC: sign after that time, or check this machine's clock")
    return keys


def _is_signed(pdf: bytes) -> bool:
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        return bool(PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures)
    except Exception:  # noqa: BLE001 - unreadable: let signing report it
        return False


def _render(report: dict) -> bytes:
    from compliance.report.render import render_pdf

    with tempfile.TemporaryDirectory() as tmp:
        return render_pdf(report, Path(tmp) / REPORT_PDF).read_bytes()
