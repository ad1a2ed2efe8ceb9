"""A small RFC 3161 time-stamping authority and certificate authority over HTTP, for tests.

Built from ``cryptography`` (keys, certificates, CRLs, ECDSA signatures) and ``asn1crypto`` (the
TimeStampReq/TimeStampResp and CMS structures), so the timestamps pyHanko and our verifier read
are made by other code than theirs. Routes:

- ``POST /tsa`` with a DER ``TimeStampReq`` (``application/timestamp-query``): a granted
  ``TimeStampResp`` (``application/timestamp-reply``) whose token is a CMS SignedData over a
  TSTInfo (the request's message imprint and nonce, the time from :attr:`TimestampServer.clock`),
  signed by the TSA's ECDSA P-256 key with the ESS signing-certificate-v2 attribute; the TSA's
  certificate and its root are included when the request asks (``certReq``);
- ``GET /crl/{ca}.crl``: the DER CRL of one of :attr:`TimestampServer.cas`, made fresh per request.

:class:`TestCA` issues certificates (document signers, the TSA) whose CRL distribution point is
this server, so a signer that embeds validation data (PAdES B-LT) has a real CRL to fetch.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The TSA's policy: any OID will do for a test authority.
TSA_POLICY = "1.3.6.1.4.1.55555.3161.1"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class TestCA:
    """A root certificate authority that issues end-entity certificates and publishes a CRL."""

    name: str
    crl_base: str  # e.g. http://127.0.0.1:PORT/crl
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    revoked: dict[int, datetime] = field(default_factory=dict)  # serial -> revocation time
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.now(timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(self.name)).issuer_name(_name(self.name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def crl_url(self) -> str:
        return f"{self.crl_base}/{self.name.replace(' ', '-')}.crl"

    def issue(self, common_name: str, public_key, not_before: datetime, not_after: datetime,
              time_stamping: bool = False) -> x509.Certificate:
        """An end-entity certificate: a document signer, or (``time_stamping``) a TSA."""
        eku = [ExtendedKeyUsageOID.TIME_STAMPING] if time_stamping else [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        return (
            x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(self.cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=not time_stamping,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=time_stamping)  # RFC 3161: critical for a TSA
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.crl_url)], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def crl(self) -> bytes:
        """The CRL as of now (valid for a day), DER."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=1))
                   .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        for serial, when in self.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class TimestampServer:
    """The HTTP server: a TSA (its own root CA and ECDSA key) plus the CRLs of :attr:`cas`.

    Use as a context manager; :attr:`url` is the TSA's URL, :attr:`requests` counts timestamps issued.
    """

    def __init__(self, clock: Optional[Callable[[], datetime]] = None) -> None:
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.requests = 0
        self.cas: dict[str, TestCA] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = f"{self.base}/tsa"
        self.tsa_ca = self.new_ca("compliance test TSA root")
        self.tsa_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        self.tsa_cert = self.tsa_ca.issue("compliance test TSA", self.tsa_key.public_key(),
                                          now - timedelta(days=365), now + timedelta(days=3650), time_stamping=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def new_ca(self, name: str) -> TestCA:
        """A CA whose CRL this server publishes."""
        ca = TestCA(name, crl_base=f"{self.base}/crl")
        self.cas[ca.crl_url.rsplit("/", 1)[1]] = ca
        return ca

    def __enter__(self) -> "TimestampServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def root_pem(self) -> bytes:
        """The TSA's root certificate (what a verifier trusts), PEM."""
        return self.tsa_ca.cert.public_bytes(serialization.Encoding.PEM)

    def respond(self, request_der: bytes) -> bytes:
        """The DER TimeStampResp to a DER TimeStampReq."""
        req = tsp.TimeStampReq.load(request_der)
        algo = req["message_imprint"]["hash_algorithm"]["algorithm"].native
        if algo not in ("sha256", "sha384", "sha512"):
            return tsp.TimeStampResp({"status": {"status": "rejection", "fail_info": {"bad_alg"}}}).dump()
        self.requests += 1
        info = {
            "version": "v1", "policy": TSA_POLICY, "message_imprint": req["message_imprint"],
            "serial_number": secrets.randbits(64), "gen_time": self.clock().astimezone(timezone.utc),
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=_asn1(self.tsa_cert).subject),
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"]
        content = tsp.TSTInfo(info).dump()
        tsa_der = self.tsa_cert.public_bytes(serialization.Encoding.DER)
        attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({
                "certs": [{"hash_algorithm": {"algorithm": "sha256"}, "cert_hash": hashlib.sha256(tsa_der).digest()}],
            })]}),
        ])
        signature = self.tsa_key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))
        tsa = _asn1(self.tsa_cert)
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
                {"issuer": tsa.issuer, "serial_number": tsa.serial_number})}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        })
        signed = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(content)},
            "signer_infos": [signer],
        }
        if req["cert_req"].native:
            signed["certificates"] = [tsa, _asn1(self.tsa_ca.cert)]
        token = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/tsa" or self.headers.get("Content-Type") != "application/timestamp-query":
                    return self._send(400, b"expected application/timestamp-query at /tsa", "text/plain")
                try:
                    reply = server.respond(body)
                except (ValueError, TypeError):
                    return self._send(400, b"not a TimeStampReq", "text/plain")
                self._send(200, reply, "application/timestamp-reply")

            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                ca = server.cas.get(name) if self.path.startswith("/crl/") else None
                if ca is None:
                    return self._send(404, b"not found", "text/plain")
                self._send(200, ca.crl(), "application/pkix-crl")

        return Handler
