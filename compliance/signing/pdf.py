"""The signed PDF: ``report.json`` and the envelope attached, then a visible PAdES signature.

Signing embeds the two files as PDF attachments and signs the result with a PAdES baseline
(B-B) signature whose byte range covers the whole file. A signature block on page 1 (in the
top margin) shows the signer, the signing time and the SHA-256 fingerprint of the key.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from compliance.signing.errors import SigningError
from compliance.signing.keys import SigningKeys, certificate_name, fingerprint

SIGNATURE_FIELD = "ComplianceReportSignature"
ATTACHMENT_REPORT = "report.json"
ATTACHMENT_ENVELOPE = "report.intoto.json"
#: Height of the signature block in points; it sits in page 1's top margin (16 mm ≈ 45 pt).
BLOCK_HEIGHT = 38
BLOCK_MARGIN = 51  # the report's left/right page margin, 18 mm


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign_pdf_bytes(pdf: bytes, keys: SigningKeys, attachments: dict[str, bytes],
                   signed_at: Optional[datetime] = None) -> bytes:
    """Attach ``attachments`` to ``pdf`` and sign it; returns the signed PDF's bytes."""
    from pyhanko.pdf_utils import embed, layout, text
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.stamp import TextStampStyle
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signed_at = (signed_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises several kinds for a broken file
        raise SigningError(f"report.pdf cannot be read as a PDF ({exc}); re-render it") from None
    if writer.prev.embedded_signatures:
        raise SigningError("report.pdf is already signed")
    for name, data in attachments.items():
        spec = embed.FileSpec(
            file_spec_string=name, file_name=name, description=_DESCRIPTIONS.get(name, name),
            embedded_data=embed.EmbeddedFileObject.from_file_data(
                writer, data=data, mime_type="application/json",
                params=embed.EmbeddedFileParams(creation_date=signed_at, modification_date=signed_at)),
        )
        embed.embed_file(writer, spec)

    key_der = keys.pdf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    chain = [_asn1_cert(c) for c in keys.pdf_chain]
    signer = signers.SimpleSigner(signing_cert=chain[0], signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
                                  cert_registry=SimpleCertificateStore.from_certs(chain))
    name = certificate_name(keys.pdf_cert)
    fp = fingerprint(keys.pdf_cert.public_key())
    # pyHanko's standard Courier font covers Latin-1 only (its OpenType path needs an extra
    # dependency and spaced glyphs badly in tests), so the name is shown in Latin-1.
    box_style = text.TextBoxStyle(font_size=6.5, leading=8, border_width=0)
    name = name.replace("\u2014", "-").replace("\u2013", "-").encode("latin-1", "replace").decode("latin-1")
    stamp = TextStampStyle(
        stamp_text="Digitally signed (PAdES) by: %(signer_name)s\nSigned at: %(signed_at)s\n"
                   "Key SHA-256: %(fp1)s\n             %(fp2)s",
        text_box_style=box_style, background=None, border_width=1,
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MIN, y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins(left=6, right=6, top=2, bottom=2),
            inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT),
    )
    page_w, page_h = _page_size(writer)
    box = (BLOCK_MARGIN, page_h - 4 - BLOCK_HEIGHT, page_w - BLOCK_MARGIN, page_h - 4)
    fp_groups = fp.split(":")
    meta = signers.PdfSignatureMetadata(field_name=SIGNATURE_FIELD, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, name=name,
                                        reason="compliance safety report")
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=stamp,
                                   new_field_spec=fields.SigFieldSpec(SIGNATURE_FIELD, on_page=0, box=box))
    out = io.BytesIO()
    pdf_signer.sign_pdf(writer, output=out, appearance_text_params={
        "signer_name": name, "signed_at": signed_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "fp1": ":".join(fp_groups[:16]), "fp2": ":".join(fp_groups[16:]),
    })
    return out.getvalue()


_DESCRIPTIONS = {
    ATTACHMENT_REPORT: "The report (JSON), exactly as report.json",
    ATTACHMENT_ENVELOPE: "in-toto attestation of the report (DSSE envelope)",
}


def _page_size(writer) -> tuple[float, float]:
    try:
        page = writer.root["/Pages"]["/Kids"][0].get_object()
        llx, lly, urx, ury = (float(v) for v in page["/MediaBox"])
        return urx - llx, ury - lly
    except Exception:  # noqa: BLE001 - fall back to A4
        return 595.28, 841.89


@dataclass
class PdfCheck:
    """What verifying the PDF found: problems (empty when all hold) and facts about the signature."""

    problems: list[str] = field(default_factory=list)
    attachments: dict[str, bytes] = field(default_factory=dict)
    signer: Optional[str] = None
    signed_at: Optional[str] = None
    fingerprint: Optional[str] = None


def read_attachments(reader) -> dict[str, bytes]:
    """The PDF's embedded files, by name."""
    out: dict[str, bytes] = {}
    try:
        names = reader.root["/Names"]["/EmbeddedFiles"]
    except KeyError:
        return out
    stack = [names]
    while stack:
        node = stack.pop().get_object()
        if "/Kids" in node:
            stack.extend(node["/Kids"])
        arr = node["/Names"] if "/Names" in node else []
        for i in range(0, len(arr) - 1, 2):
            spec = arr[i + 1]
            spec = spec.get_object() if hasattr(spec, "get_object") else spec
            try:
                out[str(arr[i])] = spec["/EF"]["/F"].get_object().data
            except KeyError:
                continue
    return out


def check_pdf(pdf: bytes, trust_roots: list[x509.Certificate], at: Optional[datetime] = None) -> PdfCheck:
    """Verify the PDF's signature against ``trust_roots`` and read its attachments."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    result = PdfCheck()
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        sigs = reader.embedded_signatures
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in many ways
        result.problems.append(f"PDF cannot be read: {exc}")
        return result
    if not sigs:
        result.problems.append("PDF is not signed")
        return result
    if len(sigs) > 1:
        result.problems.append(f"PDF has {len(sigs)} signatures, expected one")
    sig = sigs[-1]
    try:
        result.attachments = read_attachments(reader)
    except Exception:  # noqa: BLE001
        result.problems.append("PDF attachments cannot be read")
    if not trust_roots:
        result.problems.append("PDF signature trust not checked: no certificate given (use --trust CERT or --keys DIR)")
    vc = ValidationContext(trust_roots=[_asn1_cert(c) for c in trust_roots], allow_fetching=False,
                           moment=at or datetime.now(timezone.utc), revocation_mode="soft-fail")
    # pyHanko logs every failed path search with a traceback; the outcome is reported below instead.
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)
    try:
        status = validate_pdf_signature(sig, vc)
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"PDF signature cannot be validated: {exc}")
        return result
    cert = status.signing_cert
    if cert is not None:
        crypto_cert = x509.load_der_x509_certificate(cert.dump())
        result.signer = certificate_name(crypto_cert)
        result.fingerprint = fingerprint(crypto_cert.public_key())
    if status.signer_reported_dt is not None:
        result.signed_at = status.signer_reported_dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not status.intact:
        result.problems.append("PDF signature is not intact: the signed bytes changed after signing")
    elif not status.valid:
        result.problems.append("PDF signature is not valid: the signature does not match the signed bytes")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        result.problems.append("PDF signature does not cover the whole file")
    now = at or datetime.now(timezone.utc)
    if cert is not None and trust_roots and status.trusted and not (
            cert["tbs_certificate"]["validity"]["not_before"].native <= now
            <= cert["tbs_certificate"]["validity"]["not_after"].native):
        # Without a timestamp a PAdES B-B signature is only as good as the certificate is today.
        result.problems.append(f"PDF signer certificate is not trusted: {_trust_reason(status, cert, trust_roots)}")
    elif trust_roots and not status.trusted:
        result.problems.append(f"PDF signer certificate is not trusted: {_trust_reason(status, cert, trust_roots)}")
    return result


def _trust_reason(status, cert, roots: list[x509.Certificate]) -> str:
    indic = getattr(status, "trust_problem_indic", None)
    name = getattr(indic, "name", str(indic)) if indic is not None else ""
    if cert is not None:
        now = datetime.now(timezone.utc)
        valid = cert["tbs_certificate"]["validity"]
        if valid["not_after"].native < now:
            return f"the certificate expired on {valid['not_after'].native:%Y-%m-%d}"
        if valid["not_before"].native > now:
            return f"the certificate is not valid before {valid['not_before'].native:%Y-%m-%d}"
        issuer = x509.load_der_x509_certificate(cert.dump()).issuer
        if not any(root.subject == issuer for root in roots):
            return "it does not chain to the given trusted certificate"
    reasons = {
        "NO_CERTIFICATE_CHAIN_FOUND": "it does not chain to the given trusted certificate",
        "EXPIRED": "the certificate has expired",
        "OUT_OF_BOUNDS_NO_POE": "the certificate is expired or not yet valid",
        "REVOKED": "the certificate is revoked",
        "CHAIN_CONSTRAINTS_FAILURE": "the certificate chain breaks its constraints",
    }
    return reasons.get(name, name.replace("_", " ").lower() or "unknown reason")
