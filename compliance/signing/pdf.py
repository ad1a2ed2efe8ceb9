"""The signed PDF: ``report.json`` and the envelope attached, then a visible PAdES signature.

Signing embeds the two files as PDF attachments and signs the result with a PAdES baseline
signature whose byte range covers the whole file. A signature block on page 1 (in the top
margin) shows the signer, the signing time and the SHA-256 fingerprint of the key.

Levels (ETSI EN 319 142-1):

- **B-B**: the signature alone; it verifies only while the certificate is valid.
- **B-T** (``tsa``): plus an RFC 3161 timestamp over the signature; the certificate is then
  checked at the timestamp's time, so the report verifies after the certificate expires.
- **B-LT** (``tsa``, when the signer's chain and the TSA's each end in a root certificate):
  plus the validation data, the certificates and the CRLs/OCSP responses their issuers publish,
  in the document security store (DSS, an incremental update after the signature), so the
  revocation status at signing time can be checked offline later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from compliance.signing.errors import SigningError
from compliance.signing.keys import SigningKeys, certificate_name, fingerprint
from compliance.signing.timestamp import (asn1_cert, probe, quiet_pyhanko, reason, timestamper, tsa_certificates,
                                          tsa_name)

SIGNATURE_FIELD = "ComplianceReportSignature"
ATTACHMENT_REPORT = "report.json"
ATTACHMENT_ENVELOPE = "report.intoto.json"
#: Height of the signature block in points; it sits in page 1's top margin (16 mm ≈ 45 pt).
BLOCK_HEIGHT = 38
BLOCK_MARGIN = 51  # the report's left/right page margin, 18 mm


@dataclass
class SignedPdf:
    """A signed PDF's bytes, its PAdES level, and why validation data is missing (B-T only)."""

    data: bytes
    level: str  # B-B, B-T or B-LT
    note: Optional[str] = None


def _self_signed(cert: asn1_x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _long_term_context(chain: list[asn1_x509.Certificate], tsa_certs: list[asn1_x509.Certificate]
                       ) -> tuple[object, Optional[str]]:
    """The validation context to embed B-LT data with, or None and the reason it cannot be."""
    from pyhanko_certvalidator import ValidationContext

    if not _self_signed(chain[-1]):
        return None, "the certificate chain in pdf-signing.crt does not end in its root certificate"
    tsa_roots = [c for c in tsa_certs if _self_signed(c)]
    if not tsa_roots:
        return None, "the time-stamping authority does not send its root certificate"
    # Fetching is on: the CRLs and OCSP responses the certificates point to are what B-LT embeds.
    return ValidationContext(trust_roots=[chain[-1], *tsa_roots], other_certs=chain + tsa_certs,
                             allow_fetching=True, revocation_mode="soft-fail"), None


def sign_pdf_bytes(pdf: bytes, keys: SigningKeys, attachments: dict[str, bytes],
                   signed_at: Optional[datetime] = None, tsa: Optional[str] = None) -> SignedPdf:
    """Attach ``attachments`` to ``pdf`` and sign it.

    Args:
        pdf: the unsigned PDF.
        keys: the key folder's keys.
        attachments: files to embed, by name.
        signed_at: the time shown in the signature block (default: now).
        tsa: URL of an RFC 3161 time-stamping authority: PAdES B-T, and B-LT where the chains allow.

    Raises:
        SigningError: an unreadable or already signed PDF, an unreachable TSA, or a chain that
            does not validate while its validation data is collected.
    """
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signed_at = (signed_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    key_der = keys.pdf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    chain = [asn1_cert(c) for c in keys.pdf_chain]
    signer = signers.SimpleSigner(signing_cert=chain[0], signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
                                  cert_registry=SimpleCertificateStore.from_certs(chain))
    if tsa is None:
        return SignedPdf(_sign(pdf, keys, attachments, signed_at, signer), "B-B")
    stamper = timestamper(tsa)
    # Reach the TSA once before signing: an unreachable one is one clear line, and its certificates
    # say whether validation data can be embedded.
    context, note = _long_term_context(chain, tsa_certificates(probe(stamper, tsa)))
    quiet_pyhanko()
    try:
        data = _sign(pdf, keys, attachments, signed_at, signer, stamper, context)
    except SigningError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyHanko's validation and network errors
        raise SigningError(f"report.pdf was not signed: {reason(exc)}; check the certificate in pdf-signing.crt "
                           f"and the time-stamping authority {tsa}") from None
    return SignedPdf(data, "B-LT" if context is not None else "B-T", note)


def _sign(pdf: bytes, keys: SigningKeys, attachments: dict[str, bytes], signed_at: datetime, signer,
          stamper=None, context=None) -> bytes:
    from pyhanko.pdf_utils import embed, layout, text
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.stamp import TextStampStyle

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
                                        reason="compliance safety report",
                                        embed_validation_info=context is not None, validation_context=context)
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=stamp, timestamper=stamper,
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
    level: Optional[str] = None  # PAdES B-B, B-T or B-LT
    timestamped: bool = False  # a trusted RFC 3161 timestamp proves when it was signed
    timestamp_at: Optional[datetime] = None  # that timestamp's time
    notes: list[str] = field(default_factory=list)  # facts that held, one line each (timestamp, expiry)


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


def _signature_token(signer_info):
    """The RFC 3161 token over the signature (its unsigned ``signature_time_stamp_token``), or None."""
    attrs = signer_info["unsigned_attrs"]
    if attrs.native is None:
        return None
    for attr in attrs:
        if attr["type"].native == "signature_time_stamp_token":
            return attr["values"][0]
    return None


def _utc(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_pdf(pdf: bytes, trust_roots: list[x509.Certificate], at: Optional[datetime] = None,
              tsa_roots: Optional[list[x509.Certificate]] = None) -> PdfCheck:
    """Verify the PDF's signature against ``trust_roots`` and read its attachments.

    Args:
        pdf: the signed PDF's bytes.
        trust_roots: certificates the signer must chain to.
        at: the time to verify as of (default: now); used when no trusted timestamp says when
            the PDF was signed.
        tsa_roots: certificates a time-stamping authority must chain to for its timestamp to
            count. With a trusted timestamp the signer's certificate is checked at the
            timestamp's time (and against the validation data embedded at signing, B-LT), so a
            certificate that expired after signing still verifies, and one that had expired
            before does not.
    """
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.dss import DocumentSecurityStore
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    from compliance.signing.timestamp import token_time

    result = PdfCheck()
    now = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
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
    try:
        dss = DocumentSecurityStore.read_dss(reader) if "/DSS" in reader.root else None
        token = _signature_token(sig.signer_info)
        token_at = token_time(token) if token is not None else None
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"PDF signature cannot be validated: {exc}")
        return result
    tsa_roots = list(tsa_roots or [])

    def validate(moment: datetime):
        """Signer checked at ``moment``, the timestamp's TSA at the timestamp's own time."""
        kwargs = dict(trust_roots=[asn1_cert(c) for c in trust_roots], allow_fetching=False,
                      revocation_mode="soft-fail", moment=moment, retroactive_revinfo=True)
        ts_kwargs = dict(kwargs, trust_roots=[asn1_cert(c) for c in tsa_roots], moment=token_at or moment)
        if dss is not None:  # B-LT: the certificates and revocation data embedded at signing
            signer_vc, ts_vc = dss.as_validation_context(kwargs), dss.as_validation_context(ts_kwargs)
        else:
            signer_vc, ts_vc = ValidationContext(**kwargs), ValidationContext(**ts_kwargs)
        return validate_pdf_signature(sig, signer_vc, ts_vc)

    quiet_pyhanko()
    try:
        status = validate(token_at or now)
        ts = status.timestamp_validity
        result.timestamped = ts is not None and ts.intact and ts.valid and ts.trusted
        if token is not None and not result.timestamped:
            status = validate(now)  # the timestamp cannot vouch for the time: judge the signer as of now
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"PDF signature cannot be validated: {exc}")
        return result
    result.level = "B-LT" if dss is not None and token is not None else "B-T" if token is not None else "B-B"
    moment = token_at if result.timestamped else now
    cert = status.signing_cert
    if cert is not None:
        crypto_cert = x509.load_der_x509_certificate(cert.dump())
        result.signer = certificate_name(crypto_cert)
        result.fingerprint = fingerprint(crypto_cert.public_key())
    if result.timestamped:
        result.signed_at, result.timestamp_at = _utc(token_at), token_at
    elif status.signer_reported_dt is not None:
        result.signed_at = _utc(status.signer_reported_dt)
    if not status.intact:
        result.problems.append("PDF signature is not intact: the signed bytes changed after signing")
    elif not status.valid:
        result.problems.append("PDF signature is not valid: the signature does not match the signed bytes")
    if status.coverage == SignatureCoverageLevel.ENTIRE_REVISION and dss is not None:
        # B-LT appends the validation data after the signature; nothing else may follow it.
        if status.modification_level not in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES):
            result.problems.append("PDF was changed after signing: an update other than validation data "
                                   "follows the signature")
    elif status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        result.problems.append("PDF signature does not cover the whole file")
    ts_name = tsa_name(ts.signing_cert) if ts is not None else None
    if token is not None and ts is not None and not (ts.intact and ts.valid):
        result.problems.append("PDF signature timestamp is damaged: it does not match the signature it covers")
    elif token is not None and ts is not None and not result.timestamped:
        result.notes.append(f"RFC 3161 timestamp {_utc(token_at)} by {ts_name} is intact but its TSA is not "
                            "trusted (give --tsa-trust CERT): the signer is checked as of now")
    elif result.timestamped:
        result.notes.append(f"RFC 3161 timestamp {_utc(token_at)} by {ts_name} (trusted): signed then")
    if trust_roots and ((cert is not None and not _valid_at(cert, moment)) or not status.trusted):
        # A self-signed trust anchor's own dates are not checked by the path validator: _valid_at does.
        result.problems.append(f"PDF signer certificate is not trusted: {_trust_reason(status, cert, trust_roots, moment, result)}")
    elif cert is not None and result.timestamped and not _valid_at(cert, now):
        result.notes.append(f"signer certificate expired on {_not_after(cert):%Y-%m-%d}, after the timestamped "
                            f"signing time {_utc(token_at)}: still valid for this signature")
    return result


def _not_after(cert) -> datetime:
    return cert["tbs_certificate"]["validity"]["not_after"].native


def _valid_at(cert, moment: datetime) -> bool:
    validity = cert["tbs_certificate"]["validity"]
    return validity["not_before"].native <= moment <= validity["not_after"].native


def _trust_reason(status, cert, roots: list[x509.Certificate], moment: datetime, check: PdfCheck) -> str:
    indic = getattr(status, "trust_problem_indic", None)
    name = getattr(indic, "name", str(indic)) if indic is not None else ""
    if cert is not None:
        valid = cert["tbs_certificate"]["validity"]
        if check.timestamped:
            when = f"signed at {_utc(moment)} (RFC 3161 timestamp), "
            if valid["not_after"].native < moment:
                return f"{when}after the certificate expired on {valid['not_after'].native:%Y-%m-%d}"
            if valid["not_before"].native > moment:
                return f"{when}before the certificate became valid on {valid['not_before'].native:%Y-%m-%d}"
        else:
            hint = "" if check.level == "B-B" else " (its timestamp's TSA is not trusted: give --tsa-trust CERT)"
            if valid["not_after"].native < moment:
                return f"the certificate expired on {valid['not_after'].native:%Y-%m-%d}{hint}"
            if valid["not_before"].native > moment:
                return f"the certificate is not valid before {valid['not_before'].native:%Y-%m-%d}"
        issuer = x509.load_der_x509_certificate(cert.dump()).issuer
        if not any(root.subject == issuer for root in roots):
            return "it does not chain to the given trusted certificate"
    reasons = {
        "NO_CERTIFICATE_CHAIN_FOUND": "it does not chain to the given trusted certificate",
        "EXPIRED": "the certificate has expired",
        "OUT_OF_BOUNDS_NO_POE": "the certificate is expired or not yet valid",
        "REVOKED": "the certificate is revoked",
        "REVOKED_NO_POE": "the certificate is revoked",
        "CHAIN_CONSTRAINTS_FAILURE": "the certificate chain breaks its constraints",
    }
    return reasons.get(name, name.replace("_", " ").lower() or "unknown reason")
