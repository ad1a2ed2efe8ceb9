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
from compliance.signing import DEMO_NAME, PREDICATE_TYPE, keygen, sign_report, verify_report
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


def test_expired_certificate_fails(unsigned_dir, keys_dir, tmp_path):
    # A key folder whose PDF certificate expired yesterday.
    expired_keys = tmp_path / "expired"
    shutil.copytree(keys_dir, expired_keys)
    pdf_key = serialization.load_pem_private_key((keys_dir / "pdf-signing.key").read_bytes(), None)
    cert = self_signed_certificate(pdf_key, "expired signer",
                                   not_before=datetime.now(timezone.utc) - timedelta(days=30), days=29)
    (expired_keys / "pdf-signing.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    d = tmp_path / "report"
    shutil.copytree(unsigned_dir / "report", d)
    sign_report(d, expired_keys)
    result = verify_report(d, keys_dir=expired_keys)
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
