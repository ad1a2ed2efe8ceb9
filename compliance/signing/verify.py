"""Verify a signed report: the DSSE envelope, the statement, the report, the weights, the PDF.

Every check that fails is one line in :attr:`VerifyResult.failed`; the report verifies only
when none does.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from compliance.documents import DocumentError, parse_json
from compliance.hashing import sha256_file
from compliance.signing.dsse import (
    MODEL_ROLES,
    PAYLOAD_TYPE,
    REPORT_SUBJECT,
    check_signature,
    keyid_of,
    parse_envelope,
    statement_problems,
    subject_name,
)
from compliance.signing.errors import SigningError
from compliance.signing.keys import PDF_CERT, REPORT_PUB, load_certificates, load_public_key
from compliance.signing.pdf import ATTACHMENT_ENVELOPE, ATTACHMENT_REPORT, check_pdf
from compliance.signing.sign import ENVELOPE, REPORT_JSON, REPORT_PDF
from compliance.signing.timestamp import DSSE_TIMESTAMP_FIELD, check_token


@dataclass
class VerifyResult:
    """Checks that held and checks that failed, one line each."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    signer: Optional[str] = None
    signed_at: Optional[str] = None
    fingerprint: Optional[str] = None
    keyid: Optional[str] = None
    seconds: float = 0.0
    pades_level: Optional[str] = None  # B-B, B-T or B-LT
    timestamped: bool = False  # a trusted RFC 3161 timestamp says when the PDF was signed

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed)

    def check(self, problems: Iterable[str], passed: str) -> bool:
        problems = list(problems)
        if problems:
            self.failed.extend(problems)
        else:
            self.passed.append(passed)
        return not problems


def verify_report(path: str | Path, keys_dir: Optional[str | Path] = None, key: Optional[str | Path] = None,
                  trust: Optional[str | Path] = None, models: Iterable[str | Path] = (),
                  tsa_trust: Optional[str | Path] = None, at: Optional[datetime] = None,
                  revoked_at: Optional[datetime] = None) -> VerifyResult:
    """Verify a report folder, a ``report.intoto.json`` or a ``report.pdf``.

    Args:
        path: the report folder, its envelope or its PDF.
        keys_dir: a key folder; its ``report-signing.pub`` and ``pdf-signing.crt`` are used.
        key: the Ed25519 public key (PEM) the envelope must be signed with (overrides ``keys_dir``).
        trust: certificate(s) (PEM) the PDF signer must chain to (overrides ``keys_dir``).
        models: local model folders whose weight files are checked against the subjects.
        tsa_trust: certificate(s) (PEM) of the time-stamping authorities whose RFC 3161
            timestamps count. A signature with such a timestamp is judged at the timestamp's
            time, so it verifies after its certificate expires, and fails when it was made
            after the certificate expired.
        at: verify as of this time instead of now (how the report will verify later); a
            trusted timestamp's time still wins for the signer's certificate.
        revoked_at: the signing keys were stolen (or may have been) at this time: a signature
            counts only when a timestamp from a trusted TSA proves it was made before then.
    """
    started = time.perf_counter()
    p = Path(path)
    if not p.exists():
        raise SigningError(f"{p} not found: give a report folder, a {ENVELOPE} or a {REPORT_PDF}")
    public_key, roots = _load_trust(keys_dir, key, trust)
    tsa_roots = load_certificates(tsa_trust) if tsa_trust is not None else []
    if revoked_at is not None and not tsa_roots:
        raise SigningError("--key-revoked needs --tsa-trust CERT: only a trusted timestamp can show that a "
                           "signature was made before the keys were revoked")
    ctx = _Context(public_key, roots, tsa_roots, at, revoked_at)
    model_dirs = [Path(m) for m in models]
    for m in model_dirs:
        if not m.is_dir():
            raise SigningError(f"model folder {m} not found")
    result = VerifyResult()
    if public_key is not None:
        result.keyid = keyid_of(public_key)

    if p.is_dir():
        folder, envelope_file, pdf_file = p, p / ENVELOPE, p / REPORT_PDF
        if not (folder / REPORT_JSON).is_file():
            raise SigningError(f"{folder / REPORT_JSON} not found: {folder} is not a report folder")
        if not envelope_file.is_file():
            result.failed.append(f"{ENVELOPE} not found in {folder}: the report is not signed")
            envelope_file = None
        if not pdf_file.is_file():
            pdf_file = None
    elif p.suffix.lower() == ".pdf":
        folder, envelope_file, pdf_file = p.parent, None, p
    else:
        folder, envelope_file, pdf_file = p.parent, p, None

    report_bytes = _maybe(folder / REPORT_JSON)
    if envelope_file is not None:
        _check_json(result, _read_envelope(envelope_file), report_bytes, ctx, model_dirs, ENVELOPE, folder)
    if pdf_file is not None:
        # A PDF on its own carries everything: its embedded envelope and report are checked too.
        _check_pdf_file(result, pdf_file, ctx, model_dirs, folder_report=report_bytes,
                        folder_envelope=_maybe(folder / ENVELOPE), run_json=envelope_file is None)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Context:
    """What the checks verify against."""

    public_key: Optional[ed25519.Ed25519PublicKey]
    roots: list[x509.Certificate]
    tsa_roots: list[x509.Certificate]
    at: Optional[datetime]
    revoked_at: Optional[datetime] = None


def _read_envelope(path: Path) -> bytes:
    """The envelope file's bytes, refused in one line when they are not a DSSE envelope at all (exit status 2)."""
    from compliance.documents import DocumentError, read_capped
    from compliance.schemas import REPORT_MAX_BYTES

    try:
        data = read_capped(path, REPORT_MAX_BYTES)
        parse_envelope(data)
    except (DocumentError, ValueError) as exc:
        raise SigningError(f"{path}: {str(exc).removeprefix('is ')}, so it is not the envelope `compliance sign` "
                           "writes (damaged or replaced): get the signed report folder again from its signer") from None
    except OSError as exc:
        raise SigningError(f"{path} cannot be read ({exc.strerror}): check its permissions") from None
    return data


def _maybe(path: Path) -> Optional[bytes]:
    from compliance.documents import DocumentError, read_capped
    from compliance.schemas import REPORT_MAX_BYTES

    try:
        return read_capped(path, REPORT_MAX_BYTES) if path.is_file() else None
    except DocumentError as exc:
        raise SigningError(f"{path} {exc}: it is not a report `compliance report` wrote") from None


def _load_trust(keys_dir, key, trust) -> tuple[Optional[ed25519.Ed25519PublicKey], list[x509.Certificate]]:
    if keys_dir is not None:
        d = Path(keys_dir)
        if not d.is_dir():
            raise SigningError(f"key folder {d} not found")
        key = key or d / REPORT_PUB
        trust = trust or d / PDF_CERT
    if key is None and trust is None:
        raise SigningError("nothing to verify against: give --keys DIR, or --key PUB and/or --trust CERT")
    public_key = load_public_key(key) if key is not None else None
    roots = load_certificates(trust) if trust is not None else []
    return public_key, roots


def _check_json(result: VerifyResult, envelope: bytes, report_bytes: Optional[bytes],
                ctx: _Context, model_dirs: list[Path], label: str, folder: Optional[Path] = None) -> None:
    from compliance.schemas import report_errors

    try:
        env, payload = parse_envelope(envelope)
    except ValueError as exc:
        result.failed.append(f"{label}: {exc}")
        return
    if env["payloadType"] != PAYLOAD_TYPE:
        result.failed.append(f"{label}: payloadType is {env['payloadType']!r}, expected {PAYLOAD_TYPE}")
    if ctx.public_key is None:
        result.failed.append(f"{label}: DSSE signature not checked: no public key given (use --key PUB or --keys DIR)")
    else:
        result.check(check_signature(env, payload, ctx.public_key),
                     f"{label}: DSSE signature verifies (keyid {result.keyid[:16]}…)")
    _check_dsse_timestamps(result, env, ctx, label)
    try:
        statement = parse_json(payload)
    except DocumentError:
        result.failed.append(f"{label}: payload is not a JSON in-toto statement")
        return
    if not result.check([f"{label}: {p}" for p in statement_problems(statement)], f"{label}: in-toto Statement v1"):
        return
    report = statement["predicate"]
    errors = report_errors(report)
    if not result.check([f"signed report does not match the report schema: {errors[0]}"] if errors else [],
                        "signed report matches the report schema"):
        return
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    expected = {subject_name(role, w["path"]): w["sha256"] for role in MODEL_ROLES for w in report["models"][role]["weights"]}
    mismatched = [n for n, d in expected.items() if subjects.get(n) != d]
    result.check([f"statement subjects do not list the report's weight files: {', '.join(mismatched)}"]
                 if mismatched else [], f"statement names {len(expected)} weight files")
    if REPORT_SUBJECT not in subjects:
        result.failed.append(f"statement has no subject {REPORT_SUBJECT}")
    elif report_bytes is None:
        result.passed.append(f"{REPORT_JSON} not present: checked the signed copy inside the envelope")
    elif hashlib.sha256(report_bytes).hexdigest() != subjects[REPORT_SUBJECT]:
        result.failed.append(f"subject {REPORT_SUBJECT}: sha256 differs ({REPORT_JSON} changed after signing)")
    else:
        try:
            same = parse_json(report_bytes) == report
        except DocumentError:
            same = False
        result.check([] if same else [f"{REPORT_JSON} differs from the signed report in the statement"],
                     f"subject {REPORT_JSON}: sha256 matches")
    if folder is not None and report.get("audit"):
        _check_audit_labels(result, report["audit"], subjects, folder)
    if model_dirs:
        _check_models(result, report, subjects, model_dirs)


def _check_audit_labels(result: VerifyResult, audit: dict, subjects: dict[str, str], folder: Path) -> None:
    """An audited report's labels file (copied into the folder) is the one the statement names."""
    name = audit["labels"]["file"]
    subject = f"audit/{name}"
    if subject not in subjects:
        result.failed.append(f"statement has no subject {subject}: the audit's labels file is not signed")
        return
    data = _maybe(folder / name)
    if data is None:
        result.failed.append(f"{name} not found in {folder}: the audit's labels cannot be checked")
    elif hashlib.sha256(data).hexdigest() != subjects[subject]:
        result.failed.append(f"subject {subject}: sha256 differs ({name} changed after signing)")
    else:
        result.passed.append(f"subject {subject}: sha256 matches (auditor {audit.get('auditor')})")


def _check_models(result: VerifyResult, report: dict, subjects: dict[str, str], model_dirs: list[Path]) -> None:
    """Match each folder to the model (fine-tune or base) whose weight files it holds, then compare digests."""
    roles = {role: [w["path"] for w in report["models"][role]["weights"]] for role in MODEL_ROLES}
    digests: dict[Path, dict[str, Optional[str]]] = {}
    for d in model_dirs:
        paths = {p for ps in roles.values() for p in ps}
        digests[d] = {p: (sha256_file(d / p) if (d / p).is_file() else None) for p in paths}
    unassigned = list(MODEL_ROLES)
    for d in model_dirs:
        def score(role: str) -> tuple[int, int]:
            return (sum(digests[d][p] == subjects.get(subject_name(role, p)) for p in roles[role]),
                    sum(digests[d][p] is not None for p in roles[role]))
        candidates = unassigned or list(MODEL_ROLES)
        role = max(candidates, key=lambda r: score(r))  # ties keep the order: fine-tune, then base
        if role in unassigned:
            unassigned.remove(role)
        problems = []
        for p in roles[role]:
            name = subject_name(role, p)
            if digests[d][p] is None:
                problems.append(f"subject {name}: {d / p} not found")
            elif digests[d][p] != subjects.get(name):
                problems.append(f"subject {name}: sha256 differs ({d / p})")
        result.check(problems, f"{d}: {len(roles[role])} weight file(s) match the {role}'s subjects")


def _check_dsse_timestamps(result: VerifyResult, env: dict, ctx: _Context, label: str) -> None:
    """Each ``timestamp`` beside a DSSE signature must be an intact RFC 3161 token over that signature."""
    proven_before_revocation = False
    for entry in env["signatures"]:
        if not isinstance(entry, dict) or DSSE_TIMESTAMP_FIELD not in entry:
            continue
        try:
            sig = base64.b64decode(entry["sig"], validate=True)
        except (ValueError, TypeError, KeyError):
            continue  # check_signature has reported it
        ts = check_token(entry[DSSE_TIMESTAMP_FIELD], sig, ctx.tsa_roots)
        if ts.problems:
            result.failed.extend(f"{label}: DSSE signature {p}" for p in ts.problems)
        elif ts.trusted:
            result.passed.append(f"{label}: RFC 3161 timestamp {ts.time_text} by {ts.tsa} (trusted) "
                                 "over the DSSE signature: it existed then")
            proven_before_revocation |= ctx.revoked_at is not None and ts.time < ctx.revoked_at
        else:
            result.passed.append(f"{label}: RFC 3161 timestamp {ts.time_text} by {ts.tsa} over the DSSE signature "
                                 "is intact; its TSA is not trusted (give --tsa-trust CERT)")
    if ctx.revoked_at is not None:
        result.check([] if proven_before_revocation else [
            f"{label}: no trusted timestamp shows the DSSE signature was made before the keys were revoked "
            f"({_utc_text(ctx.revoked_at)})"], f"{label}: DSSE signature made before the keys were revoked")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_pdf_file(result: VerifyResult, pdf_file: Path, ctx: _Context,
                    model_dirs: list[Path], folder_report: Optional[bytes], folder_envelope: Optional[bytes],
                    run_json: bool) -> None:
    check = check_pdf(pdf_file.read_bytes(), ctx.roots, at=ctx.at, tsa_roots=ctx.tsa_roots)
    result.signer, result.signed_at, result.fingerprint = check.signer, check.signed_at, check.fingerprint
    result.pades_level, result.timestamped = check.level, check.timestamped
    name = pdf_file.name
    ok = result.check([f"{name}: {p}" if not p.startswith("PDF") else p for p in check.problems],
                      f"{name}: PAdES {check.level} signature intact, covers the whole file, trusted")
    result.passed.extend(f"{name}: {note}" for note in check.notes)
    if ctx.revoked_at is not None and check.level is not None:
        before = check.timestamp_at is not None and check.timestamp_at < ctx.revoked_at
        result.check([] if before else [f"{name}: no trusted timestamp shows the PDF was signed before the keys were "
                                        f"revoked ({_utc_text(ctx.revoked_at)})"],
                     f"{name}: signed before the keys were revoked")
    if not ok and not check.attachments:
        return
    embedded_report = check.attachments.get(ATTACHMENT_REPORT)
    embedded_envelope = check.attachments.get(ATTACHMENT_ENVELOPE)
    for attachment, embedded, folder_file, folder_copy in (
        (ATTACHMENT_REPORT, embedded_report, REPORT_JSON, folder_report),
        (ATTACHMENT_ENVELOPE, embedded_envelope, ENVELOPE, folder_envelope),
    ):
        if embedded is None:
            result.failed.append(f"{name}: no embedded {attachment}")
        elif folder_copy is not None:
            result.check([] if embedded == folder_copy else [f"{name}: embedded {attachment} differs from {folder_file}"],
                         f"{name}: embedded {attachment} equals {folder_file}")
    if run_json and embedded_envelope is not None and ctx.public_key is not None:
        _check_json(result, embedded_envelope, embedded_report, ctx, model_dirs,
                    f"{name} embedded {ATTACHMENT_ENVELOPE}")
