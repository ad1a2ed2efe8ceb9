"""Signed, verifiable reports: keys, the in-toto/DSSE envelope, the PAdES-signed PDF, RFC 3161
timestamps (:mod:`compliance.signing.timestamp`), verification. The threat model is in SECURITY.md.

Example:
    >>> from compliance import signing
    >>> signing.keygen("keys/", name="ACME Health compliance team")
    >>> signing.sign_report("reports/my-model", "keys/", tsa="http://timestamp.example.com/tsa")
    >>> signing.verify_report("reports/my-model", keys_dir="keys/", tsa_trust="tsa-root.pem").ok
    True
"""

from compliance.signing.dsse import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, build_statement, pae
from compliance.signing.errors import SigningError
from compliance.signing.keys import DEMO_NAME, KeyPaths, SigningKeys, fingerprint, keygen, load_signing_keys
from compliance.signing.sign import ENVELOPE, SignResult, sign_report
from compliance.signing.verify import VerifyResult, verify_report

__all__ = [
    "DEMO_NAME", "ENVELOPE", "KeyPaths", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "SignResult",
    "SigningError", "SigningKeys", "VerifyResult", "build_statement", "fingerprint", "keygen",
    "load_signing_keys", "pae", "sign_report", "verify_report",
]
