"""Signing keys: make them, import a user's own certificate, load them, fingerprint them.

A key folder holds four files:

- ``report-signing.key``: Ed25519 private key, PKCS#8 PEM, mode 0600 (signs the DSSE envelope);
- ``report-signing.pub``: its SubjectPublicKeyInfo PEM;
- ``pdf-signing.key``: the PDF signing key, PKCS#8 PEM, mode 0600 (ECDSA P-256 when generated);
- ``pdf-signing.crt``: its X.509 certificate, followed by any intermediate certificates (PEM).

The two private keys are encrypted (PKCS#8 PBES2: PBKDF2-HMAC-SHA256, 600,000 rounds, AES-256-CBC) with
``$COMPLIANCE_KEY_PASSPHRASE`` when it is set at ``keygen``, and decrypted with it when signing.
A private key file that its group or other users may read or write is refused, as OpenSSH does.

Private keys never enter a report, a log or an error message: errors name files, not contents.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from compliance.constants import ENV_KEY_PASSPHRASE, key_passphrase
from compliance.io import atomic_write_bytes
from compliance.signing.errors import SigningError

REPORT_KEY = "report-signing.key"
REPORT_PUB = "report-signing.pub"
PDF_KEY = "pdf-signing.key"
PDF_CERT = "pdf-signing.crt"

#: Signer name of the key ``make demo`` creates; page 1 of a demo report shows it.
DEMO_NAME = "compliance DEMO key — not a trusted identity"
#: Validity of a generated self-signed certificate.
CERT_VALIDITY_DAYS = 3650

PRIVATE_MODE = 0o600
#: Permission bits a private key file must not have: any access by group or others.
FORBIDDEN_MODE_BITS = 0o077
#: PBKDF2-HMAC-SHA256 rounds that turn the passphrase into the key-encryption key (OWASP's 2023
#: figure for PBKDF2-SHA256; about 0.2 s per key on one core).
PBKDF2_ROUNDS = 600_000


@dataclass
class KeyPaths:
    """Where ``keygen`` wrote each file."""

    out_dir: Path
    report_key: Path
    report_pub: Path
    pdf_key: Path
    pdf_cert: Path
    fingerprint: str  # of the PDF certificate's public key
    keyid: str  # of the report-signing key
    encrypted: bool = False  # the private keys are encrypted with the passphrase

    @classmethod
    def in_dir(cls, out_dir: Path, fingerprint: str = "", keyid: str = "") -> "KeyPaths":
        return cls(out_dir, out_dir / REPORT_KEY, out_dir / REPORT_PUB, out_dir / PDF_KEY, out_dir / PDF_CERT,
                   fingerprint, keyid)


@dataclass
class SigningKeys:
    """Loaded private keys and the PDF certificate chain (leaf first)."""

    report_key: ed25519.Ed25519PrivateKey
    pdf_key: object
    pdf_chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def pdf_cert(self) -> x509.Certificate:
        return self.pdf_chain[0]


def fingerprint(public_key) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo DER, as colon-separated upper-case hex."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _private_pem(key, passphrase: Optional[str] = None) -> bytes:
    """PKCS#8 PEM of ``key``; encrypted (PBES2) with ``passphrase`` when one is given."""
    if not passphrase:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return encrypt_pkcs8(der, passphrase)


def encrypt_pkcs8(der: bytes, passphrase: str) -> bytes:
    """A PKCS#8 ``ENCRYPTED PRIVATE KEY`` PEM: PBES2, PBKDF2-HMAC-SHA256 and AES-256-CBC.

    ``cryptography``'s own PKCS#8 encryption derives the key with 2,048 PBKDF2 rounds, cheap to
    guess against for a stolen key folder; this writes the same standard structure (which
    ``cryptography`` and ``openssl pkcs8`` read) with :data:`PBKDF2_ROUNDS`.
    """
    from asn1crypto import algos as asn1_algos
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, PBKDF2_ROUNDS).derive(passphrase.encode())
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    data = encryptor.update(padder.update(der) + padder.finalize()) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {"algorithm": "pbes2", "parameters": {
            "key_derivation_func": {"algorithm": "pbkdf2", "parameters": {
                "salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt), "iteration_count": PBKDF2_ROUNDS, "prf": {"algorithm": "sha256"}}},
            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
        }},
        "encrypted_data": data,
    })
    return pem.armor("ENCRYPTED PRIVATE KEY", info.dump())


def _public_pem(key) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def self_signed_certificate(key, name: str, not_before: Optional[datetime] = None,
                            days: int = CERT_VALIDITY_DAYS) -> x509.Certificate:
    """A self-signed certificate for ``key`` with common name ``name``, usable to sign documents."""
    not_before = not_before or datetime.now(timezone.utc) - timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def keygen(out_dir: str | Path, name: str = DEMO_NAME, *, pkcs12_file: Optional[str | Path] = None,
           cert_file: Optional[str | Path] = None, key_file: Optional[str | Path] = None,
           password: Optional[str] = None, overwrite: bool = False,
           passphrase: Optional[str] = None) -> KeyPaths:
    """Write a new key folder.

    The report-signing key is always a new Ed25519 key. The PDF key and certificate are a new
    ECDSA P-256 key with a self-signed certificate for ``name``, unless the user brings their
    own: a PKCS#12 file (``pkcs12_file``) or a PEM certificate chain (``cert_file``, leaf first)
    with its PEM private key (``key_file``).

    Args:
        out_dir: folder to write the four files to (created if missing).
        name: common name of the generated self-signed certificate.
        pkcs12_file: a PKCS#12 (.p12/.pfx) with key, certificate and chain.
        cert_file: PEM certificate chain, leaf first (with ``key_file``).
        key_file: PEM private key for ``cert_file``.
        password: password of ``pkcs12_file`` or ``key_file``, if encrypted.
        overwrite: replace existing key files.
        passphrase: encrypt both private keys with it (default ``$COMPLIANCE_KEY_PASSPHRASE``;
            unencrypted when neither is set).
    """
    out = Path(out_dir)
    paths = KeyPaths.in_dir(out)
    existing = [p.name for p in (paths.report_key, paths.report_pub, paths.pdf_key, paths.pdf_cert) if p.exists()]
    if existing and not overwrite:
        raise SigningError(f"{out} already holds keys ({', '.join(existing)}); use another folder or --overwrite")
    if pkcs12_file and (cert_file or key_file):
        raise SigningError("give either a PKCS#12 file or a PEM certificate with its key, not both")
    if bool(cert_file) != bool(key_file):
        raise SigningError("a PEM certificate needs its private key too: give both --cert and --cert-key")

    if pkcs12_file:
        pdf_key, chain = _load_pkcs12(Path(pkcs12_file), password)
    elif cert_file:
        pdf_key, chain = _load_pem_pair(Path(cert_file), Path(key_file), password)
    else:
        if not name.strip():
            raise SigningError("--name must not be empty: it is the signer name shown on the PDF")
        pdf_key = ec.generate_private_key(ec.SECP256R1())
        chain = [self_signed_certificate(pdf_key, name)]

    passphrase = passphrase or key_passphrase()
    report_key = ed25519.Ed25519PrivateKey.generate()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths.report_key, _private_pem(report_key, passphrase), mode=PRIVATE_MODE)
    atomic_write_bytes(paths.report_pub, _public_pem(report_key.public_key()))
    atomic_write_bytes(paths.pdf_key, _private_pem(pdf_key, passphrase), mode=PRIVATE_MODE)
    atomic_write_bytes(paths.pdf_cert, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    from compliance.signing.dsse import keyid_of

    paths.fingerprint = fingerprint(chain[0].public_key())
    paths.keyid = keyid_of(report_key.public_key())
    paths.encrypted = bool(passphrase)
    return paths


def _password(password: Optional[str]) -> Optional[bytes]:
    return password.encode() if password else None


def _load_pkcs12(path: Path, password: Optional[str]):
    data = _read(path, "PKCS#12 file")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, _password(password))
    except ValueError:
        raise SigningError(f"cannot open PKCS#12 file {path}: wrong password or not a PKCS#12 file") from None
    if key is None or cert is None:
        raise SigningError(f"PKCS#12 file {path} must hold a private key and its certificate")
    return key, [cert, *(extra or [])]


def _load_pem_pair(cert_path: Path, key_path: Path, password: Optional[str]):
    try:
        chain = x509.load_pem_x509_certificates(_read(cert_path, "certificate"))
    except ValueError:
        raise SigningError(f"{cert_path} is not a PEM certificate (chain)") from None
    key = _load_private_key(key_path, password)
    if _public_pem(key.public_key()) != _public_pem(chain[0].public_key()):
        raise SigningError(f"the key in {key_path} does not belong to the first certificate in {cert_path}")
    return key, chain


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise SigningError(f"{what} {path} not found")
    return path.read_bytes()


def _load_private_key(path: Path, password: Optional[str] = None):
    try:
        return serialization.load_pem_private_key(_read(path, "private key"), _password(password))
    except (ValueError, TypeError):
        # The message never quotes the file: it is a secret.
        raise SigningError(f"cannot read private key {path}: not a PEM private key, or wrong password") from None


def check_private_mode(path: Path) -> None:
    """Refuse a private key file that its group or other users may access (POSIX only).

    Raises:
        SigningError: naming the file, its mode and the ``chmod`` that fixes it.
    """
    if os.name != "posix" or not path.is_file():
        return  # a missing file is reported by the reader
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & FORBIDDEN_MODE_BITS:
        raise SigningError(f"private key {path} is accessible to other users (mode {mode:04o}): "
                           f"run `chmod 600 {path}`, then sign again")


def _load_folder_key(path: Path, passphrase: Optional[str]):
    """A key folder's private key, decrypted with ``passphrase`` when the file is encrypted."""
    check_private_mode(path)
    data = _read(path, "private key")
    encrypted = b"BEGIN ENCRYPTED PRIVATE KEY" in data
    if encrypted and not passphrase:
        raise SigningError(f"private key {path} is encrypted: set ${ENV_KEY_PASSPHRASE} to its passphrase")
    try:
        return serialization.load_pem_private_key(data, _password(passphrase) if encrypted else None)
    except (ValueError, TypeError):
        # The message never quotes the file or the passphrase: both are secrets.
        if encrypted:
            raise SigningError(f"cannot decrypt private key {path}: ${ENV_KEY_PASSPHRASE} is not its passphrase") \
                from None
        raise SigningError(f"cannot read private key {path}: not a PEM private key") from None


def load_signing_keys(keys_dir: str | Path, passphrase: Optional[str] = None) -> SigningKeys:
    """Load the private keys and certificate chain from a key folder made by :func:`keygen`.

    Args:
        keys_dir: the key folder.
        passphrase: the private keys' passphrase, when they are encrypted (default
            ``$COMPLIANCE_KEY_PASSPHRASE``).

    Raises:
        SigningError: a missing folder or file, a key file others may read, an encrypted key
            without (or with the wrong) passphrase, or a key that does not match its certificate.
    """
    d = Path(keys_dir)
    if not d.is_dir():
        raise SigningError(f"key folder {d} not found; create one with `compliance keygen --out {d}`")
    passphrase = passphrase or key_passphrase()
    report_key = _load_folder_key(d / REPORT_KEY, passphrase)
    if not isinstance(report_key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{d / REPORT_KEY} must be an Ed25519 key")
    pdf_key = _load_folder_key(d / PDF_KEY, passphrase)
    chain = load_certificates(d / PDF_CERT)
    if _public_pem(pdf_key.public_key()) != _public_pem(chain[0].public_key()):
        raise SigningError(f"{d / PDF_KEY} does not belong to the certificate {d / PDF_CERT}")
    return SigningKeys(report_key=report_key, pdf_key=pdf_key, pdf_chain=chain)


def load_public_key(path: str | Path) -> ed25519.Ed25519PublicKey:
    """Load an Ed25519 public key (SubjectPublicKeyInfo PEM)."""
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(_read(p, "public key"))
    except ValueError:
        raise SigningError(f"{p} is not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{p} is not an Ed25519 public key (the report-signing key is Ed25519)")
    return key


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Load one or more PEM (or a DER) certificates."""
    p = Path(path)
    data = _read(p, "certificate")
    try:
        return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise SigningError(f"{p} is not an X.509 certificate (PEM or DER)") from None


def certificate_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()
