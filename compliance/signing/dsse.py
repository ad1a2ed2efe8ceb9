"""The report's in-toto attestation: a Statement v1 in a DSSE envelope signed with Ed25519.

The envelope (``report.intoto.json``) is::

    {"payloadType": "application/vnd.in-toto+json", "payload": <base64 Statement>,
     "signatures": [{"keyid": ..., "sig": <base64 Ed25519 over PAE(payloadType, payload)>}]}

and the Statement's subjects are every evaluated weight file of each model (named
``<role>/<path>``, e.g. ``model/model.safetensors``) plus ``report.json`` itself, and for an
audited report the labels file (``audit/<file>``, annotated with the auditor); its predicate is
the report.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from compliance.documents import DocumentError, parse_json
from compliance.io import dumps_canonical

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://compliance.dev/attestation/safety-report/v1"
REPORT_SUBJECT = "report.json"
MODEL_ROLES = ("model", "base")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body``."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def keyid_of(public_key: ed25519.Ed25519PublicKey) -> str:
    """The key's id as securesystemslib computes it (sha256 of the canonical key description)."""
    return SSlibKey.from_crypto(public_key).keyid


def subject_name(role: str, path: str) -> str:
    return f"{role}/{path}"


def build_statement(report: dict, report_bytes: bytes) -> dict:
    """An in-toto Statement v1 about ``report`` (whose file bytes are ``report_bytes``)."""
    subjects = []
    for role in MODEL_ROLES:
        model = report["models"][role]
        for w in model["weights"]:
            subjects.append({
                "name": subject_name(role, w["path"]),
                "digest": {"sha256": w["sha256"]},
                "annotations": {"role": role, "model_id": model["id"], "path": w["path"], "size": w["size"]},
            })
    subjects.append({"name": REPORT_SUBJECT, "digest": {"sha256": hashlib.sha256(report_bytes).hexdigest()}})
    audit = report.get("audit")
    if audit:  # an audited report (schema 2.1): the person's labels file is an artifact it rests on
        subjects.append({"name": f"audit/{audit['labels']['file']}", "digest": {"sha256": audit["labels"]["sha256"]},
                         "annotations": {"auditor": audit["auditor"], "n_labelled": audit["labels"]["n_labelled"]}})
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": report}


def sign_statement(statement: dict, key: ed25519.Ed25519PrivateKey) -> dict:
    """Sign ``statement`` into a DSSE envelope (a dict ready to write as JSON)."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(key))
    return envelope.to_dict()


def envelope_bytes(envelope: dict) -> bytes:
    return dumps_canonical(envelope).encode()


def parse_envelope(data: bytes) -> tuple[dict, bytes]:
    """Parse an envelope file: the envelope dict and its decoded payload.

    Raises:
        ValueError: with a message naming what is wrong.
    """
    try:
        env = parse_json(data)
    except DocumentError as exc:
        raise ValueError(f"not valid JSON ({exc.detail})") from None
    if not isinstance(env, dict) or not {"payload", "payloadType", "signatures"} <= env.keys():
        raise ValueError("not a DSSE envelope (payload, payloadType, signatures)")
    try:
        payload = base64.b64decode(env["payload"], validate=True)
    except (ValueError, TypeError):
        raise ValueError("payload is not valid base64") from None
    if not isinstance(env["signatures"], list) or not env["signatures"]:
        raise ValueError("envelope has no signatures")
    return env, payload


def check_signature(env: dict, payload: bytes, public_key: ed25519.Ed25519PublicKey) -> list[str]:
    """Problems with the envelope's signature against ``public_key`` (empty when it verifies)."""
    want = keyid_of(public_key)
    sslib_key = SSlibKey.from_crypto(public_key)
    message = pae(str(env["payloadType"]), payload)
    keyids = []
    for entry in env["signatures"]:
        keyid = str(entry.get("keyid", "")) if isinstance(entry, dict) else ""
        keyids.append(keyid)
        try:
            sig_hex = base64.b64decode(entry["sig"], validate=True).hex()
            # keyid is a hint, not part of what is signed: check the signature with our key's id.
            sslib_key.verify_signature(Signature(want, sig_hex), message)
        except Exception:  # noqa: BLE001 - any failure means "does not verify"
            continue
        if keyid != want:
            return [f"DSSE signature keyid {keyid[:16]}… does not match the key's id {want[:16]}… (envelope altered)"]
        return []
    if want in keyids:
        return ["DSSE signature does not verify: the envelope was altered after signing"]
    return [f"DSSE signature is not by the given key: signed by keyid {', '.join(k[:16] + '…' for k in keyids)}, "
            f"the key's id is {want[:16]}…"]


def statement_problems(statement: Any) -> list[str]:
    """Structural problems with a decoded Statement."""
    if not isinstance(statement, dict):
        return ["statement is not a JSON object"]
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"statement _type is {statement.get('_type')!r}, expected {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"statement predicateType is {statement.get('predicateType')!r}, expected {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str) for s in subjects):
        problems.append("statement subject must be a non-empty list of {name, digest.sha256}")
    if not isinstance(statement.get("predicate"), dict):
        problems.append("statement predicate (the report) is missing")
    return problems
