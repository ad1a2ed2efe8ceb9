"""Signed reports: keys, the DSSE envelope, the PAdES-signed PDF, and `compliance verify`."""

from __future__ import annotations

import base64
import io
import json
import shutil
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from compliance import api
from compliance.io import atomic_write_json
from compliance.signing import (DEMO_NAME, PREDICATE_TYPE, SigningError, keygen, load_signing_keys, sign_report,
                                verify_report)
from compliance.signing.keys import self_signed_certificate
from report_example import example_report
from cli_runner import run_cli




@pytest.fixture(scope="module")
def unsigned_dir(tmp_path_factory) -> Path:
    """report.json + report.pdf from the hand-built example report, plus fake weight files for its models."""
    from compliance.report.render import render_pdf

    d = tmp_path_factory.mktemp("unsigned")
    report = example_report()
    models = d / "models"
    for role in ("model", "base"):
        folder = models / role
        folder.mkdir(parents=True)
        weights = []
        for w in report["models"][role]["weights"]:
            data = f"{role} weights {w['path']}".encode()
            (folder / w["path"]).write_bytes(data)
            import hashlib

            weights.append({"path": w["path"], "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
        report["models"][role]["weights"] = weights
    atomic_write_json(d / "report" / "report.json", report)
    render_pdf(report, d / "report" / "report.pdf")
    return d


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("keys") / "k", name=DEMO_NAME).out_dir


@pytest.fixture(scope="module")
def signed_dir(unsigned_dir, keys_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("signed") / "report"
    shutil.copytree(unsigned_dir / "report", d)
    sign_report(d, keys_dir)
    return d


@pytest.fixture
def signed_copy(signed_dir, tmp_path) -> Path:
    d = tmp_path / "report"
    shutil.copytree(signed_dir, d)
    return d


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_keygen_writes_four_files_with_private_modes(keys_dir):
    names = sorted(p.name for p in keys_dir.iterdir())
    assert names == ["pdf-signing.crt", "pdf-signing.key", "report-signing.key", "report-signing.pub"]
    for name in ("report-signing.key", "pdf-signing.key"):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in (keys_dir / "report-signing.key").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (keys_dir / "report-signing.pub").read_bytes()


def test_sign_then_verify(signed_dir, keys_dir, unsigned_dir):
    result = verify_report(signed_dir, keys_dir=keys_dir, models=[unsigned_dir / "models" / "model",
                                                                   unsigned_dir / "models" / "base"])
    assert result.failed == [] and result.ok
    assert result.signer == DEMO_NAME
    # the PDF on its own carries the envelope and the report
    alone = verify_report(signed_dir / "report.pdf", keys_dir=keys_dir)
    assert alone.ok, alone.failed


def test_statement_subjects_and_independent_dsse_verifier(signed_dir, keys_dir):
    env = json.loads((signed_dir / "report.intoto.json").read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(env["payload"])
    body_type = env["payloadType"].encode()
    pae = b"DSSEv1 " + str(len(body_type)).encode() + b" " + body_type + b" " + str(len(payload)).encode() + b" " + payload
    pub = serialization.load_pem_public_key((keys_dir / "report-signing.pub").read_bytes())
    [sig] = env["signatures"]
    pub.verify(base64.b64decode(sig["sig"]), pae)  # raises if wrong
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    report = json.loads((signed_dir / "report.json").read_text())
    assert statement["predicate"] == report
    import hashlib

    names = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert names["report.json"] == hashlib.sha256((signed_dir / "report.json").read_bytes()).hexdigest()
    for role in ("model", "base"):
        for w in report["models"][role]["weights"]:
            assert names[f"{role}/{w['path']}"] == w["sha256"]


def test_pdf_verifies_with_pyhanko_and_shows_the_signature_block(signed_dir, keys_dir):
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext
    from pypdf import PdfReader

    cert = asn1_x509.Certificate.load(
        serialization.load_pem_public_key  # noqa: B018 - just to keep imports grouped
        and __import__("cryptography.x509", fromlist=["x"]).load_pem_x509_certificate(
            (keys_dir / "pdf-signing.crt").read_bytes()).public_bytes(serialization.Encoding.DER))
    reader = PdfFileReader(io.BytesIO((signed_dir / "report.pdf").read_bytes()))
    [sig] = reader.embedded_signatures
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=[cert]))
    assert status.intact and status.valid and status.trusted
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    pdf = PdfReader(str(signed_dir / "report.pdf"))
    assert set(pdf.attachments) == {"report.json", "report.intoto.json"}
    assert pdf.attachments["report.json"][0] == (signed_dir / "report.json").read_bytes()
    annots = [a.get_object() for a in pdf.pages[0]["/Annots"]]
    widget = [a for a in annots if a.get("/FT") == "/Sig" or "/Parent" in a or a.get("/T")]
    assert widget, "no signature widget on page 1"
    ap = widget[0]["/AP"]["/N"].get_object().get_data()
    assert b"DEMO key" in ap or b"DEMO" in b"".join(
        x.get_object().get_data() for x in widget[0]["/AP"]["/N"]["/Resources"]["/XObject"].values())


def test_flipped_byte_in_report_json(signed_copy, keys_dir):
    path = signed_copy / "report.json"
    text = path.read_text()
    path.write_text(text.replace('"verdict": "fail"', '"verdict": "pass"', 1))
    result = verify_report(signed_copy, keys_dir=keys_dir)
    assert not result.ok
    assert any("subject report.json: sha256 differs" in f for f in result.failed)
    assert any("embedded report.json differs" in f for f in result.failed)


def test_flipped_byte_in_envelope(signed_copy, keys_dir):
    path = signed_copy / "report.intoto.json"
    env = json.loads(path.read_text())
    payload = env["payload"]
    i = len(payload) // 2
    env["payload"] = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
    path.write_text(json.dumps(env))
    result = verify_report(signed_copy, keys_dir=keys_dir)
    assert not result.ok
    assert any("DSSE signature does not verify" in f for f in result.failed)


def test_flipped_byte_in_pdf(signed_copy, keys_dir):
    path = signed_copy / "report.pdf"
    _flip(path, len(path.read_bytes()) // 3)
    result = verify_report(signed_copy, keys_dir=keys_dir)
    assert not result.ok
    assert any(f.startswith("PDF") for f in result.failed), result.failed


def test_weights_that_differ_are_named(signed_dir, keys_dir, unsigned_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(unsigned_dir / "models" / "model", model)
    weight = sorted(model.iterdir())[0]
    _flip(weight, 0)
    result = verify_report(signed_dir, keys_dir=keys_dir, models=[model])
    assert f"subject model/{weight.name}: sha256 differs ({weight})" in result.failed


def test_wrong_key_fails_with_reason(signed_dir, tmp_path):
    other = keygen(tmp_path / "other", name="Someone else").out_dir
    result = verify_report(signed_dir, keys_dir=other)
    assert not result.ok
    assert any("not by the given key" in f for f in result.failed)
    assert any("PDF signer certificate is not trusted: it does not chain" in f for f in result.failed)


def test_untrusted_certificate_fails(signed_dir, keys_dir, tmp_path):
    stranger = tmp_path / "stranger.crt"
    key = ec.generate_private_key(ec.SECP256R1())
    stranger.write_bytes(self_signed_certificate(key, "stranger").public_bytes(serialization.Encoding.PEM))
    result = verify_report(signed_dir / "report.pdf", key=keys_dir / "report-signing.pub", trust=stranger)
    assert result.failed == ["PDF signer certificate is not trusted: it does not chain to the given trusted certificate"]


def _expired_keys(keys_dir: Path, folder: Path) -> Path:
    """A copy of ``keys_dir`` whose PDF certificate (same key) expired yesterday."""
    shutil.copytree(keys_dir, folder)
    pdf_key = serialization.load_pem_private_key((keys_dir / "pdf-signing.key").read_bytes(), None)
    cert = self_signed_certificate(pdf_key, "expired signer",
                                   not_before=datetime.now(timezone.utc) - timedelta(days=30), days=29)
    (folder / "pdf-signing.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder


def _sign_pdf_only(report_dir: Path, keys_dir: Path, tsa: str | None = None) -> Path:
    """Sign report.pdf as another tool could, without the checks of `compliance sign` (attachments included)."""
    from compliance.signing.dsse import build_statement, envelope_bytes, sign_statement
    from compliance.signing.pdf import sign_pdf_bytes

    keys = load_signing_keys(keys_dir)
    report_bytes = (report_dir / "report.json").read_bytes()
    envelope = envelope_bytes(sign_statement(build_statement(json.loads(report_bytes), report_bytes), keys.report_key))
    pdf = report_dir / "report.pdf"
    pdf.write_bytes(sign_pdf_bytes(pdf.read_bytes(), keys, {"report.json": report_bytes,
                                                            "report.intoto.json": envelope}, tsa=tsa).data)
    return pdf


def test_expired_certificate_fails(unsigned_dir, keys_dir, tmp_path):
    expired_keys = _expired_keys(keys_dir, tmp_path / "expired")
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    # `compliance sign` refuses: nothing signed with it now would verify.
    with pytest.raises(SigningError, match=r"pdf-signing.crt expired on \d{4}-\d\d-\d\d: .* renew it"):
        sign_report(d, expired_keys)
    assert not (d / "report.intoto.json").exists()
    # A PDF signed with it anyway, without a timestamp, does not verify.
    pdf = _sign_pdf_only(d, expired_keys)
    result = verify_report(pdf, keys_dir=expired_keys)
    assert any("PDF signer certificate is not trusted: the certificate expired on" in f for f in result.failed), result.failed


def test_user_pem_chain_and_pkcs12(unsigned_dir, tmp_path):
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, "ACME Health compliance")
    (tmp_path / "me.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "me.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.BestAvailableEncryption(b"pw")))
    (tmp_path / "me.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"me", key, cert, None, serialization.BestAvailableEncryption(b"pw")))
    pem_keys = keygen(tmp_path / "pem", cert_file=tmp_path / "me.crt", key_file=tmp_path / "me.key", password="pw")
    p12_keys = keygen(tmp_path / "p12", pkcs12_file=tmp_path / "me.p12", password="pw")
    assert pem_keys.fingerprint == p12_keys.fingerprint
    assert stat.S_IMODE(p12_keys.pdf_key.stat().st_mode) == 0o600
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    sign_report(d, p12_keys.out_dir)
    result = verify_report(d, key=p12_keys.report_pub, trust=tmp_path / "me.crt")
    assert result.ok, result.failed
    assert result.signer == "ACME Health compliance"


def test_cli_keygen_sign_verify(unsigned_dir, tmp_path, monkeypatch, capsys):
    keys = tmp_path / "keys"
    code, out, _ = run_cli(["keygen", "--out", str(keys), "--name", "Test signer"], monkeypatch, capsys)
    assert code == 0 and "0600" in out
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    code, out, err = run_cli(["sign", str(d), "--keys", str(keys)], monkeypatch, capsys)
    assert code == 0, err
    code, out, err = run_cli(["verify", str(d), "--keys", str(keys)], monkeypatch, capsys)
    assert code == 0 and "Verified" in out, err
    _flip(d / "report.json", 10)
    code, out, err = run_cli(["verify", str(d), "--keys", str(keys)], monkeypatch, capsys)
    assert code == 1
    assert "FAIL  subject report.json: sha256 differs" in err


@pytest.mark.parametrize("args, words", [
    (["verify", "{tmp}/nope", "--keys", "{tmp}"], ["nope", "not found"]),
    (["verify", "{report}", "--keys", "{tmp}/no-keys"], ["no-keys", "not found"]),
    (["verify", "{report}", "--key", "{tmp}/missing.pub"], ["missing.pub", "not found"]),
    (["sign", "{tmp}/nope", "--keys", "{tmp}"], ["nope", "not found"]),
    (["sign", "{report}", "--keys", "{tmp}/no-keys"], ["no-keys", "compliance keygen"]),
])
def test_cli_bad_inputs_give_one_line(args, words, signed_dir, tmp_path, monkeypatch, capsys):
    args = [a.format(tmp=tmp_path, report=signed_dir) for a in args]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert "PRIVATE KEY" not in err


def test_run_report_signs_when_keys_are_configured(refusing_model_dir, keys_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLIANCE_SIGNING_KEYS", str(keys_dir))
    result = api.run_report(str(refusing_model_dir), policy="healthcare", out_dir=tmp_path / "r", limit=8,
                            max_new_tokens=4, progress=False)
    assert (result.out_dir / "report.intoto.json").is_file()
    verified = verify_report(result.out_dir, keys_dir=keys_dir, models=[refusing_model_dir])
    assert verified.ok, verified.failed


# --- RFC 3161 timestamps: signatures that outlive their certificate -----------------------------


@pytest.fixture(scope="module")
def tsa():
    """A local RFC 3161 time-stamping authority (and CRL server) on 127.0.0.1."""
    from tsa_server import TimestampServer

    with TimestampServer() as server:
        yield server


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_keys(server, folder: Path, not_before: datetime, not_after: datetime, with_root: bool = True):
    """A key folder whose PDF certificate a test CA issued (its CRL on ``server``); returns (keys, ca, cert)."""
    ca = server.new_ca(f"signer CA {folder.name}")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(f"Signer {folder.name}", key.public_key(), not_before, not_after)
    folder.mkdir(parents=True)
    (folder / "chain.pem").write_bytes(_pem(cert) + (_pem(ca.cert) if with_root else b""))
    (folder / "ca.pem").write_bytes(_pem(ca.cert))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    keys = keygen(folder / "keys", cert_file=folder / "chain.pem", key_file=folder / "key.pem").out_dir
    return keys, ca, cert


def _tsa_trust(server, tmp_path: Path) -> Path:
    path = tmp_path / "tsa-root.pem"
    path.write_bytes(server.root_pem())
    return path


def _dss_crl_issuers(pdf: Path) -> set[str]:
    from asn1crypto import crl as asn1_crl
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(pdf.read_bytes()), strict=False)
    crls = reader.root["/DSS"].get("/CRLs", [])
    return {asn1_crl.CertificateList.load(ref.get_object().data).issuer.native["common_name"] for ref in crls}


def test_timestamped_signature_outlives_its_certificate(unsigned_dir, tmp_path):
    from tsa_server import TimestampServer

    now = datetime.now(timezone.utc)
    d, plain = tmp_path / "report", tmp_path / "plain"
    shutil.copytree(unsigned_dir / "report", d)
    shutil.copytree(unsigned_dir / "report", plain)
    with TimestampServer() as server:
        keys, ca, cert = _ca_keys(server, tmp_path / "signer", now - timedelta(hours=1), now + timedelta(days=1))
        signed = sign_report(d, keys, tsa=server.url)
        sign_report(plain, keys)  # the same keys, no timestamp
        tsa_trust = _tsa_trust(server, tmp_path)
        asked = server.requests
    # Signing asked the TSA for the PDF's timestamp (and a sizing one) and the envelope's, and
    # embedded the signer CA's CRL, fetched from its distribution point: PAdES B-LT.
    assert signed.pades_level == "B-LT" and signed.timestamped and signed.note is None
    assert asked == 3
    assert ca.name in _dss_crl_issuers(d / "report.pdf")
    # The server is gone: everything below is checked from the files alone.
    today = verify_report(d, keys_dir=keys, tsa_trust=tsa_trust)
    assert today.ok and today.timestamped and today.pades_level == "B-LT", today.failed
    assert any("RFC 3161 timestamp" in p and "(trusted) over the DSSE signature" in p for p in today.passed)

    after_expiry = cert.not_valid_after_utc + timedelta(days=30)
    later = verify_report(d, keys_dir=keys, tsa_trust=tsa_trust, at=after_expiry)
    assert later.ok, later.failed
    assert any(f"signer certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}, after the timestamped signing time"
               in p for p in later.passed), later.passed
    # Without trusting the TSA the timestamp proves nothing, and the expired certificate fails.
    untrusted = verify_report(d, keys_dir=keys, at=after_expiry)
    assert f"PDF signer certificate is not trusted: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d} " \
           "(its timestamp's TSA is not trusted: give --tsa-trust CERT)" in untrusted.failed
    # A signature without a timestamp dies with its certificate.
    assert verify_report(plain, keys_dir=keys, tsa_trust=tsa_trust).ok
    untimed = verify_report(plain, keys_dir=keys, tsa_trust=tsa_trust, at=after_expiry)
    assert not untimed.ok and untimed.pades_level == "B-B"
    assert any("the certificate expired on" in f for f in untimed.failed), untimed.failed


def test_signature_made_after_expiry_is_rejected(unsigned_dir, tsa, tmp_path):
    now = datetime.now(timezone.utc)
    # The chain file holds the leaf only, so the PDF gets B-T (no validation data can be embedded).
    keys, ca, cert = _ca_keys(tsa, tmp_path / "expired", now - timedelta(days=30), now - timedelta(days=1),
                              with_root=False)
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    with pytest.raises(SigningError, match="expired on"):
        sign_report(d, keys, tsa=tsa.url)
    pdf = _sign_pdf_only(d, keys, tsa=tsa.url)  # what another tool might still produce
    result = verify_report(pdf, key=keys / "report-signing.pub", trust=tmp_path / "expired" / "ca.pem",
                           tsa_trust=_tsa_trust(tsa, tmp_path))
    assert result.timestamped and result.pades_level == "B-T"
    expired = [f for f in result.failed if f.startswith("PDF signer certificate is not trusted: signed at ")]
    assert expired and expired[0].endswith(f"(RFC 3161 timestamp), after the certificate expired on "
                                           f"{cert.not_valid_after_utc:%Y-%m-%d}"), result.failed


def test_revoked_certificate_is_not_signed_with(unsigned_dir, tsa, tmp_path):
    now = datetime.now(timezone.utc)
    keys, ca, cert = _ca_keys(tsa, tmp_path / "revoked", now - timedelta(days=1), now + timedelta(days=30))
    ca.revoked[cert.serial_number] = now - timedelta(hours=1)  # the CA's CRL now lists it
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    with pytest.raises(SigningError, match="report.pdf was not signed: .*revoked"):
        sign_report(d, keys, tsa=tsa.url)


@pytest.fixture(scope="module")
def timestamped_dir(unsigned_dir, keys_dir, tsa, tmp_path_factory) -> Path:
    """The example report signed with the demo keys and a timestamp from the local TSA."""
    d = tmp_path_factory.mktemp("timestamped") / "report"
    shutil.copytree(unsigned_dir / "report", d)
    sign_report(d, keys_dir, tsa=tsa.url)
    return d


def test_dsse_timestamp_covers_the_signature_bytes(timestamped_dir, keys_dir, tsa, tmp_path):
    import hashlib

    from asn1crypto import cms

    env = json.loads((timestamped_dir / "report.intoto.json").read_text())
    [entry] = env["signatures"]
    token = cms.ContentInfo.load(base64.b64decode(entry["timestamp"]))
    info = token["content"]["encap_content_info"]["content"].parsed
    # Read without our code: the token's message imprint is the SHA-256 of the signature bytes.
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(base64.b64decode(entry["sig"])).digest()
    assert info["policy"].native == "1.3.6.1.4.1.55555.3161.1"
    tsa_trust = _tsa_trust(tsa, tmp_path)
    assert verify_report(timestamped_dir / "report.intoto.json", key=keys_dir / "report-signing.pub",
                         tsa_trust=tsa_trust).ok

    # A genuine token from the same TSA, but over other bytes, is caught.
    from compliance.signing.timestamp import request_token, timestamper

    other = request_token(timestamper(tsa.url), hashlib.sha256(b"another signature").digest(), tsa.url)
    entry["timestamp"] = base64.b64encode(other.dump()).decode()
    swapped = tmp_path / "report.intoto.json"
    swapped.write_text(json.dumps(env))
    result = verify_report(swapped, key=keys_dir / "report-signing.pub", tsa_trust=tsa_trust)
    assert "report.intoto.json: DSSE signature timestamp token does not cover this signature" in result.failed
    entry["timestamp"] = "bm90IGEgdG9rZW4="  # base64 of "not a token"
    swapped.write_text(json.dumps(env))
    result = verify_report(swapped, key=keys_dir / "report-signing.pub", tsa_trust=tsa_trust)
    assert "report.intoto.json: DSSE signature timestamp token cannot be read (damaged or not RFC 3161)" in result.failed


def test_an_update_after_the_validation_data_is_caught(timestamped_dir, keys_dir, tsa, tmp_path):
    from pyhanko.pdf_utils import embed
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    pdf = timestamped_dir / "report.pdf"
    assert verify_report(pdf, keys_dir=keys_dir, tsa_trust=_tsa_trust(tsa, tmp_path)).pades_level == "B-LT"
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf.read_bytes()), strict=False)
    forged = (timestamped_dir / "report.json").read_bytes().replace(b'"fail"', b'"pass"')
    embed.embed_file(writer, embed.FileSpec(file_spec_string="report.json", file_name="report.json",
                                            embedded_data=embed.EmbeddedFileObject.from_file_data(writer, data=forged)))
    out = io.BytesIO()
    writer.write(out)
    tampered = tmp_path / "report.pdf"
    tampered.write_bytes(out.getvalue())
    result = verify_report(tampered, keys_dir=keys_dir, tsa_trust=_tsa_trust(tsa, tmp_path))
    assert "PDF was changed after signing: an update other than validation data follows the signature" in result.failed


def test_cli_sign_with_tsa_and_verify_at_a_later_date(unsigned_dir, keys_dir, tsa, tmp_path, monkeypatch, capsys):
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    code, out, err = run_cli(["sign", str(d), "--keys", str(keys_dir), "--tsa", tsa.url], monkeypatch, capsys)
    assert code == 0, err
    assert "(RFC 3161 timestamp)" in out and "(PAdES B-LT)" in out
    later = (datetime.now(timezone.utc) + timedelta(days=3650 + 30)).strftime("%Y-%m-%d")  # the demo cert is gone
    args = ["verify", str(d), "--keys", str(keys_dir), "--at", later]
    code, out, err = run_cli(args + ["--tsa-trust", str(_tsa_trust(tsa, tmp_path))], monkeypatch, capsys)
    assert code == 0 and "Verified" in out and "timestamped at" in out and "PAdES B-LT" in out, err
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 1 and "give --tsa-trust CERT" in err


@pytest.mark.parametrize("args, words", [
    (["sign", "{report}", "--keys", "{keys}", "--tsa", "http://127.0.0.1:9/tsa"],
     ["time-stamping authority http://127.0.0.1:9/tsa gave no timestamp", "--tsa"]),
    (["sign", "{report}", "--keys", "{keys}", "--tsa", "ftp://tsa.example.com"], ["'ftp://tsa.example.com'", "http(s)"]),
    (["sign", "{report}", "--keys", "{keys}", "--tsa", "{tsa_base}/not-a-tsa"], ["gave no timestamp"]),
    (["report", "{model}", "--tsa", "{tsa_url}", "--no-pdf", "-q", "--out", "{tmp}/r"], ["--tsa", "--keys DIR"]),
    (["report", "{model}", "--keys", "{keys}", "--tsa", "http://127.0.0.1:9/tsa", "--no-pdf", "-q",
      "--out", "{tmp}/r"], ["http://127.0.0.1:9/tsa", "gave no timestamp"]),
    (["verify", "{report}", "--keys", "{keys}", "--tsa-trust", "{tmp}/missing.pem"], ["missing.pem", "not found"]),
])
def test_cli_bad_timestamp_inputs_give_one_line(args, words, unsigned_dir, keys_dir, tsa, tiny_model_dir, tmp_path,
                                                monkeypatch, capsys):
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    before = (d / "report.pdf").read_bytes()
    args = [a.format(report=d, keys=keys_dir, tmp=tmp_path, tsa_url=tsa.url, tsa_base=tsa.base, model=tiny_model_dir)
            for a in args]
    code, _, err = run_cli(args, monkeypatch, capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(" ".join(lines)) < 400 and "Traceback" not in err, err
    assert all(w in " ".join(lines) for w in words), err
    assert (d / "report.pdf").read_bytes() == before and not (d / "report.intoto.json").exists()
    assert not (tmp_path / "r").exists()  # a report fails before any model work


# --- private keys: passphrase, permissions, never in any output ---------------------------------


def test_passphrase_encrypts_the_private_keys(unsigned_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLIANCE_KEY_PASSPHRASE", "correct horse battery staple")
    paths = keygen(tmp_path / "keys", name="Encrypted signer")
    assert paths.encrypted
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem

    for key in (paths.report_key, paths.pdf_key):
        data = key.read_bytes()
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in data
        with pytest.raises(TypeError):  # cryptography: "password was not given but private key is encrypted"
            serialization.load_pem_private_key(data, None)
        # Read by another parser: standard PBES2 with a costly key derivation, not 2,048 rounds.
        scheme = asn1_keys.EncryptedPrivateKeyInfo.load(pem.unarmor(data)[2])["encryption_algorithm"].native
        kdf = scheme["parameters"]["key_derivation_func"]
        assert scheme["algorithm"] == "pbes2" and kdf["algorithm"] == "pbkdf2"
        assert kdf["parameters"]["iteration_count"] >= 600_000 and kdf["parameters"]["prf"]["algorithm"] == "sha256"
        assert scheme["parameters"]["encryption_scheme"]["algorithm"] == "aes256_cbc"
        assert serialization.load_pem_private_key(data, b"correct horse battery staple") is not None
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    sign_report(d, paths.out_dir)
    assert verify_report(d, keys_dir=paths.out_dir).ok

    monkeypatch.delenv("COMPLIANCE_KEY_PASSPHRASE")
    with pytest.raises(SigningError, match=r"report-signing.key is encrypted: set \$COMPLIANCE_KEY_PASSPHRASE"):
        sign_report(d, paths.out_dir)
    monkeypatch.setenv("COMPLIANCE_KEY_PASSPHRASE", "wrong horse")
    with pytest.raises(SigningError, match=r"cannot decrypt private key .*: \$COMPLIANCE_KEY_PASSPHRASE is not its"):
        sign_report(d, paths.out_dir)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_private_key_readable_by_others_is_refused(keys_dir, unsigned_dir, tmp_path, mode, monkeypatch, capsys):
    keys = tmp_path / "keys"
    shutil.copytree(keys_dir, keys)
    (keys / "pdf-signing.key").chmod(mode)
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    code, _, err = run_cli(["sign", str(d), "--keys", str(keys)], monkeypatch, capsys)
    line = " ".join(err.split())
    assert code == 2 and f"(mode {mode:04o})" in line and f"chmod 600 {keys / 'pdf-signing.key'}" in line, err
    assert len(err.strip().splitlines()) <= 3 and "Traceback" not in err
    assert not (d / "report.intoto.json").exists()
    (keys / "pdf-signing.key").chmod(0o400)  # owner-only, even read-only, is fine
    assert sign_report(d, keys).pdf_path is not None


def _secret_forms(keys_dir: Path, passphrase: str) -> dict[str, bytes]:
    """Every form in which the key folder's secrets could leak: PEM lines, DER, raw key bytes; hex, base64."""
    forms: dict[str, bytes] = {"passphrase": passphrase.encode()}
    for name in ("report-signing.key", "pdf-signing.key"):
        pem = (keys_dir / name).read_bytes()
        for i, line in enumerate(pem.splitlines()):
            if len(line) >= 40:
                forms[f"{name} PEM line {i}"] = line
        key = serialization.load_pem_private_key(pem, passphrase.encode())
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        raw = (key.private_bytes_raw() if hasattr(key, "private_bytes_raw")
               else key.private_numbers().private_value.to_bytes(32, "big"))
        for what, data in (("PKCS#8 DER", der), ("raw private key", raw)):
            forms[f"{name} {what}"] = data
            forms[f"{name} {what} hex"] = data.hex().encode()
            forms[f"{name} {what} HEX"] = data.hex().upper().encode()
            forms[f"{name} {what} base64"] = base64.b64encode(data).rstrip(b"=")
            forms[f"{name} {what} base64url"] = base64.urlsafe_b64encode(data).rstrip(b"=")
    return forms


def _blobs(folder: Path):
    """Each file's bytes, and for a PDF every Flate stream inflated (content, attachments, signature)."""
    import re
    import zlib

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path), data
        if path.suffix == ".pdf":
            for i, match in enumerate(re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S)):
                try:
                    yield f"{path} stream {i}", zlib.decompressobj().decompress(match.group(1))
                except zlib.error:
                    continue


def test_private_keys_and_passphrase_never_appear_in_any_output(refusing_model_dir, tsa, tmp_path):
    import os
    import subprocess
    import sys

    passphrase = "s3cret-passphrase-for-the-test"
    env = {**os.environ, "COMPLIANCE_KEY_PASSPHRASE": passphrase, "COMPLIANCE_STORE": str(tmp_path / "store.sqlite3"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    # Every logger at DEBUG, to stderr: whatever any library logs is captured too.
    entry = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
             "from compliance.cli import main; sys.argv[0] = 'compliance'; main()")
    outputs: list[tuple[str, bytes]] = []

    def run(*args: str, env=env) -> int:
        proc = subprocess.run([sys.executable, "-c", entry, *args], env=env, capture_output=True, timeout=600)
        outputs.append((f"{args[0]} stdout", proc.stdout))
        outputs.append((f"{args[0]} stderr", proc.stderr))
        return proc.returncode

    keys, reports = tmp_path / "keys", tmp_path / "reports"
    assert run("keygen", "--out", str(keys), "--name", "Leak test signer") == 0
    report = reports / "r"
    assert run("report", str(refusing_model_dir), "--keys", str(keys), "--tsa", tsa.url, "--limit", "4",
               "--max-new-tokens", "4", "--out", str(report)) == 0, outputs[-1]
    assert run("sign", str(report), "--keys", str(keys), "--tsa", tsa.url) == 0, outputs[-1]
    assert run("verify", str(report), "--keys", str(keys), "--tsa-trust", str(_tsa_trust(tsa, tmp_path))) == 0, \
        outputs[-2]
    # Failures print too: a wrong passphrase, with and without --debug's traceback.
    wrong = {**env, "COMPLIANCE_KEY_PASSPHRASE": passphrase[::-1]}
    assert run("sign", str(report), "--keys", str(keys), env=wrong) == 2
    assert run("--debug", "sign", str(report), "--keys", str(keys), env=wrong) != 0
    assert b"Traceback" in outputs[-1][1]  # the --debug run did print a traceback, and it was searched

    assert json.loads((report / "report.intoto.json").read_text())["signatures"][0]["timestamp"]
    assert any(b"DEBUG" in data for _, data in outputs)  # logging reached the captured output
    forms = _secret_forms(keys, passphrase)
    searched = outputs + list(_blobs(report)) + [(p.name, p.read_bytes()) for p in (keys / "report-signing.pub",
                                                                                      keys / "pdf-signing.crt")]
    searched += [("store", (tmp_path / "store.sqlite3").read_bytes())]
    assert len(searched) > 20
    leaks = [(where, what) for where, data in searched for what, secret in forms.items() if secret in data]
    assert leaks == []


def test_after_a_key_theft_only_signatures_timestamped_before_it_count(timestamped_dir, signed_dir, keys_dir, tsa,
                                                                      tmp_path, monkeypatch, capsys):
    tsa_trust = _tsa_trust(tsa, tmp_path)
    ts_time = datetime.fromisoformat(verify_report(timestamped_dir, keys_dir=keys_dir, tsa_trust=tsa_trust)
                                     .signed_at.replace("Z", "+00:00"))
    # Stolen an hour after the timestamped signing: that report still counts.
    after = verify_report(timestamped_dir, keys_dir=keys_dir, tsa_trust=tsa_trust, revoked_at=ts_time + timedelta(hours=1))
    assert after.ok, after.failed
    assert "report.intoto.json: DSSE signature made before the keys were revoked" in after.passed
    assert "report.pdf: signed before the keys were revoked" in after.passed
    # Stolen before it was signed (or the report carries no timestamp): it does not.
    before = verify_report(timestamped_dir, keys_dir=keys_dir, tsa_trust=tsa_trust, revoked_at=ts_time - timedelta(hours=1))
    assert not before.ok
    assert any(f.startswith("report.pdf: no trusted timestamp shows the PDF was signed before the keys were revoked")
               for f in before.failed), before.failed
    assert any(f.startswith("report.intoto.json: no trusted timestamp shows the DSSE signature was made before")
               for f in before.failed), before.failed
    untimed = verify_report(signed_dir, keys_dir=keys_dir, tsa_trust=tsa_trust, revoked_at=ts_time + timedelta(days=1))
    assert not untimed.ok and len([f for f in untimed.failed if "before the keys were revoked" in f]) >= 2
    code, _, err = run_cli(["verify", str(timestamped_dir), "--keys", str(keys_dir), "--key-revoked", "2020-01-01"],
                           monkeypatch, capsys)
    assert code == 2 and "--key-revoked needs --tsa-trust CERT" in err and len(err.strip().splitlines()) <= 2
