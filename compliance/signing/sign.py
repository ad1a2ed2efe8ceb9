"""Sign a report folder: ``report.intoto.json`` beside ``report.json``, and a signed ``report.pdf``."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from compliance.io import atomic_write_bytes
from compliance.signing.dsse import build_statement, envelope_bytes, keyid_of, sign_statement
from compliance.signing.errors import SigningError
from compliance.signing.keys import certificate_name, fingerprint, load_signing_keys
from compliance.signing.pdf import ATTACHMENT_ENVELOPE, ATTACHMENT_REPORT, sign_pdf_bytes

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


def sign_report(report_dir: str | Path, keys_dir: str | Path) -> SignResult:
    """Sign the report in ``report_dir`` with the keys in ``keys_dir``.

    Writes ``report.intoto.json`` (DSSE envelope of an in-toto Statement) and, when
    ``report.pdf`` exists, replaces it with a copy that carries ``report.json`` and the envelope
    as attachments and a PAdES signature over the whole file. Both writes are atomic. An already
    signed PDF is rendered again from ``report.json`` first, so signing twice works.
    """
    from compliance.schemas import report_errors

    started = time.perf_counter()
    folder = Path(report_dir)
    json_path = folder / REPORT_JSON
    if not folder.is_dir():
        raise SigningError(f"report folder {folder} not found")
    if not json_path.is_file():
        raise SigningError(f"{json_path} not found: sign a folder written by `compliance report`")
    keys = load_signing_keys(keys_dir)
    report_bytes = json_path.read_bytes()
    try:
        report = json.loads(report_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SigningError(f"{json_path} is not valid JSON") from None
    errors = report_errors(report)
    if errors:
        raise SigningError(f"{json_path} does not match the report schema ({errors[0]}); it cannot be signed")

    envelope = envelope_bytes(sign_statement(build_statement(report, report_bytes), keys.report_key))
    envelope_path = atomic_write_bytes(folder / ENVELOPE, envelope)

    pdf_path = folder / REPORT_PDF
    if pdf_path.is_file():
        pdf = pdf_path.read_bytes()
        if _is_signed(pdf):
            pdf = _render(report)
        signed = sign_pdf_bytes(pdf, keys, {ATTACHMENT_REPORT: report_bytes, ATTACHMENT_ENVELOPE: envelope})
        atomic_write_bytes(pdf_path, signed)
    else:
        pdf_path = None
    return SignResult(envelope_path=envelope_path, pdf_path=pdf_path, keyid=keyid_of(keys.report_key.public_key()),
                      signer=certificate_name(keys.pdf_cert), fingerprint=fingerprint(keys.pdf_cert.public_key()),
                      seconds=time.perf_counter() - started)


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
