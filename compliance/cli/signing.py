"""Commands that sign and verify reports: keygen, sign, verify."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

from compliance.cli.app import TSA_HELP, app, err, out, plain
from compliance.constants import ENV_KEY_PASSPHRASE, ENV_KEY_PASSWORD



@app.command()
def keygen(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the four key files to."),
    name: Optional[str] = typer.Option(None, "--name", help="Signer name in the self-signed PDF certificate."),
    pkcs12: Optional[Path] = typer.Option(None, "--pkcs12", help="Use your own PDF certificate and key from a PKCS#12 (.p12/.pfx)."),
    cert: Optional[Path] = typer.Option(None, "--cert", help="Use your own PEM certificate chain (leaf first) ..."),
    cert_key: Optional[Path] = typer.Option(None, "--cert-key", help="... with this PEM private key."),
    password: Optional[str] = typer.Option(None, "--password", envvar=ENV_KEY_PASSWORD,
                                           help="Password of --pkcs12 or --cert-key (or $COMPLIANCE_KEY_PASSWORD)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing key files."),
) -> None:
    """Create signing keys: report-signing.key/.pub (Ed25519) and pdf-signing.key/.crt.

    Private keys are written with mode 0600, encrypted with $COMPLIANCE_KEY_PASSPHRASE when it is set (signing then needs it too). Without --pkcs12/--cert the PDF certificate is a new self-signed ECDSA P-256 certificate for --name.

    Example: compliance keygen --out keys/ --name "ACME Health compliance team"
    """
    from compliance import api
    from compliance.signing import DEMO_NAME

    paths = api.keygen(out_dir, name=name or DEMO_NAME, pkcs12_file=pkcs12, cert_file=cert, key_file=cert_key,
                       password=password, overwrite=overwrite)
    encrypted = f", encrypted with ${ENV_KEY_PASSPHRASE}" if paths.encrypted else ""
    out.print(f"Keys written to {paths.out_dir} (private keys mode 0600{encrypted})")
    out.print(f"report-signing keyid: {paths.keyid}")
    out.print(f"PDF key SHA-256:      {paths.fingerprint}")


@app.command()
def sign(
    report_dir: Path = typer.Argument(..., help="Report folder (holds report.json, and report.pdf if rendered)."),
    keys: Path = typer.Option(..., "--keys", help="Key folder made by `compliance keygen`."),
    tsa: Optional[str] = typer.Option(None, "--tsa", help=TSA_HELP),
) -> None:
    """Sign a report: write report.intoto.json (in-toto/DSSE) and sign report.pdf (PAdES, attachments).

    Encrypted private keys are decrypted with $COMPLIANCE_KEY_PASSPHRASE.

    Example: compliance sign reports/my-model --keys keys/ --tsa http://timestamp.example.com/tsa
    """
    from compliance import api

    result = api.sign(report_dir, keys, tsa=tsa)
    out.print(f"Signed in {result.seconds:.1f} s by '{result.signer}'")
    out.print(f"Envelope: {result.envelope_path}{' (RFC 3161 timestamp)' if result.timestamped else ''}")
    if result.pdf_path:
        out.print(f"PDF:      {result.pdf_path} (PAdES {result.pades_level})")
    if result.note:
        out.print(f"No validation data embedded (B-T, not B-LT): {result.note}", highlight=False)


@app.command()
def verify(
    path: Path = typer.Argument(..., help="Report folder, report.intoto.json or report.pdf."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Key folder (its report-signing.pub and pdf-signing.crt)."),
    key: Optional[Path] = typer.Option(None, "--key", help="Ed25519 public key (PEM) the envelope must be signed with."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Certificate (PEM) the PDF signer must chain to."),
    models: Optional[List[Path]] = typer.Option(None, "--models", help="Local model folder whose weight files must match the subjects (repeatable)."),
    tsa_trust: Optional[Path] = typer.Option(None, "--tsa-trust", help="Certificate (PEM) of the time-stamping "
                                             "authority whose RFC 3161 timestamps count: a timestamped signature "
                                             "is judged at its timestamp's time, so it outlives its certificate."),
    at: Optional[datetime] = typer.Option(None, "--at", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
                                          help="Verify as of this UTC date instead of now (how the report will "
                                               "verify after its certificate expires)."),
    key_revoked: Optional[datetime] = typer.Option(None, "--key-revoked", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
                                                   help="The signing keys were stolen or revoked at this UTC time: "
                                                        "accept only signatures that a trusted timestamp (--tsa-trust) "
                                                        "shows are older."),
) -> None:
    """Verify a signed report: DSSE signature, statement, schema, digests, PDF signature and attachments.

    Exits 0 only when every check holds; each failed check is printed on one line (exit 1). A file that is not a signed report at all is one error line (exit 2).

    Example: compliance verify reports/my-model --keys keys/ --models ./my-model
    """
    from compliance import api

    result = api.verify(path, keys_dir=keys, key=key, trust=trust, models=models or [], tsa_trust=tsa_trust,
                        at=at.replace(tzinfo=timezone.utc) if at else None,
                        revoked_at=key_revoked.replace(tzinfo=timezone.utc) if key_revoked else None)
    for line in result.passed:
        out.print(f"[green]ok[/]    {plain(line)}", highlight=False)
    for line in result.failed:
        err.print(f"[bold red]FAIL[/]  {plain(line)}", highlight=False, soft_wrap=True)
    if result.signer:
        when = "timestamped" if result.timestamped else "signed"
        out.print(plain(f"PDF signer: {result.signer}; {when} at {result.signed_at}; PAdES {result.pades_level}; "
                        f"key SHA-256 {result.fingerprint}"), highlight=False)
    if not result.ok:
        err.print(f"[bold red]Verification failed[/]: {len(result.failed)} check(s) failed", highlight=False)
        sys.exit(1)  # main() runs click with standalone_mode=False, which would swallow typer.Exit
    out.print(f"[bold green]Verified[/]: {len(result.passed)} checks hold ({result.seconds:.2f} s)")
