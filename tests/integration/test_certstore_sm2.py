"""SM2 credentials in the certificate store (SQLite and PostgreSQL), like RSA ones: imported with a PKCS#8 or
SEC1 key or alone, a key that is not the certificate's refused, the certificate's facts, expiry warnings,
rotation with its overlap, `current()`/`trusted()` handing out keys that sign, an SM2 CSR completed by the
certificate an OpenSSL CA signs, and `yiwang certs` showing the algorithm."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import pem, x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import Engine
from typer.testing import CliRunner

from certstore import (
    SM2_DEFAULT_ID,
    CertificateError,
    Credential,
    Subject,
    sm2_key,
    sm2_public_key,
    sm2_sign,
    sm2_verify,
)
from certstore.keyring import MasterKeys
from certstore.store import CertStore, CertStoreError, UnknownEntry
from gateway.cli.certs import make_certs_app
from gateway.domain.clock import FixedClock
from gateway.persistence.cert_tables import CERT_TABLES
from tests.support.pki import TestCA, sm2_credential, sm2_sec1

NOW = datetime.now(UTC).replace(microsecond=0)
OPENSSL = shutil.which("openssl")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def store(engine: Engine, clock: FixedClock) -> CertStore:
    return CertStore(engine, CERT_TABLES, MasterKeys.parse(MasterKeys.generate("k1")), clock, refresh_s=0)


def signs_for(credential: Credential) -> bool:
    """Whether the credential's key signs what its certificate's public key verifies."""
    key = sm2_key(credential.private_key_pem or b"")
    return sm2_verify(sm2_public_key(credential.certificate_pem), b"probe", sm2_sign(key, b"probe"))


def der(certificate_pem: bytes) -> bytes:
    return bytes(pem.unarmor(certificate_pem)[2])


@pytest.mark.parametrize("form", ["pkcs8", "sec1"])
def test_an_sm2_certificate_and_key_import_with_their_facts_and_sign(store: CertStore, form: str) -> None:
    certificate, key = sm2_credential("e-licence client", days=30, now=NOW)
    stored = store.import_pem("el-client", certificate, sm2_sec1(key) if form == "sec1" else key,
                              sector="e_licence", actor="t")
    assert (stored.status, stored.has_private_key, stored.key_algorithm) == ("current", True, "sm2")
    facts, parsed = stored.facts, x509.Certificate.load(der(certificate))
    assert facts is not None
    assert "CN=e-licence client" in facts.subject and facts.issuer == facts.subject
    assert facts.serial == format(parsed.serial_number, "x")
    assert facts.not_after == parsed.not_valid_after and facts.not_before == parsed.not_valid_before
    assert facts.sha256 == hashlib.sha256(der(certificate)).hexdigest()
    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(der(certificate))
    assert facts.sm3 == sm3.finalize().hex()
    assert facts.public_key_sha256 == hashlib.sha256(parsed.public_key.dump()).hexdigest()
    credential = store.current("el-client")
    assert credential.certificate_pem.strip() == certificate.strip() and signs_for(credential)
    assert sm2_key(credential.private_key_pem or b"") == sm2_key(key)  # sealed and opened as PKCS#8
    assert not any("BEGIN" in str(v) for v in stored.public().values())


def test_an_sm2_certificate_alone_is_trusted_and_says_sm2(store: CertStore) -> None:
    certificate, _key = sm2_credential("e-licence signing", now=NOW)
    stored = store.import_pem("el-signing", certificate, sector="e_licence", actor="t")
    assert (stored.has_private_key, stored.key_algorithm) == (False, "sm2")
    [trusted] = store.trusted("el-signing")
    assert trusted.private_key_pem is None and sm2_public_key(trusted.certificate_pem)


def test_a_key_that_is_not_the_certificates_is_refused_and_nothing_is_stored(store: CertStore) -> None:
    certificate, _key = sm2_credential("mine", now=NOW)
    _other, stranger = sm2_credential("someone else", now=NOW)
    rsa = TestCA(now=NOW).issue("an rsa one")
    for cert, key in ((certificate, stranger), (certificate, rsa.key_pem), (rsa.cert_pem, stranger)):
        with pytest.raises(CertificateError, match="does not belong to the certificate"):
            store.import_pem("mismatch", cert, key, actor="t")
    with pytest.raises(UnknownEntry):
        store.versions("mismatch")
    expired, expired_key = sm2_credential("expired", days=-1, now=NOW)
    with pytest.raises(CertStoreError, match="expired"):
        store.import_pem("mismatch", expired, expired_key, actor="t")


def test_expiry_warnings_and_rotation_with_overlap_as_for_rsa(store: CertStore, clock: FixedClock) -> None:
    first, first_key = sm2_credential("el", days=10, now=NOW)
    store.import_pem("el", first, first_key, actor="t")
    [warning] = store.check_expiry()
    assert (warning.name, warning.threshold) == ("el", "30d")
    second, second_key = sm2_credential("el", days=365, now=NOW)
    assert store.import_pem("el", second, second_key, actor="t").status == "staged"
    store.rotate("el", "t", overlap=timedelta(days=2))
    assert [c.certificate_pem.strip() for c in store.trusted("el")] == [second.strip(), first.strip()]
    assert store.current("el").certificate_pem.strip() == second.strip()
    assert all(signs_for(c) for c in store.trusted("el"))
    clock.advance(timedelta(days=2))
    assert [c.certificate_pem.strip() for c in store.trusted("el")] == [second.strip()]


@pytest.mark.skipif(OPENSSL is None, reason="the system's openssl is not installed")
def test_an_sm2_csr_is_completed_by_the_certificate_an_openssl_ca_signs(store: CertStore, tmp_path: Path) -> None:
    pending, request = store.request("el-csr", Subject("yiwang.example", sans=("127.0.0.1",)), "sm2",
                                     sector="e_licence", actor="t")
    assert (pending.status, pending.key_algorithm) == ("pending", "sm2")
    (tmp_path / "req.pem").write_bytes(request)
    distid = f"distid:{SM2_DEFAULT_ID.decode()}"

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL or "openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("genpkey", "-algorithm", "SM2", "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-sm3", "-sigopt", distid, "-subj", "/CN=SM2 test CA",
            "-days", "30", "-out", "ca.pem")
    openssl("x509", "-req", "-in", "req.pem", "-vfyopt", distid, "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-sm3", "-sigopt", distid, "-days", "30", "-out", "signed.pem")
    completed = store.import_pem("el-csr", (tmp_path / "signed.pem").read_bytes(), sector="e_licence", actor="t")
    assert (completed.version, completed.status, completed.has_private_key) == (1, "current", True)
    assert completed.key_algorithm == "sm2" and signs_for(store.current("el-csr"))


def test_certs_import_list_show_and_a_readable_refusal(store: CertStore, tmp_path: Path) -> None:
    run = CliRunner().invoke
    app = make_certs_app(lambda: store)
    certificate, key = sm2_credential("cli sm2", now=NOW)
    _other, stranger = sm2_credential("cli stranger", now=NOW)
    (tmp_path / "c.pem").write_bytes(certificate)
    (tmp_path / "k.pem").write_bytes(sm2_sec1(key))
    (tmp_path / "x.pem").write_bytes(stranger)
    refused = run(app, ["import", "sm2", str(tmp_path / "c.pem"), "--key", str(tmp_path / "x.pem")])
    assert refused.exit_code == 2 and "does not belong to the certificate" in refused.output
    assert "Traceback" not in refused.output and "PRIVATE KEY" not in refused.output
    assert run(app, ["import", "sm2", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem")]).exit_code == 0
    listed = run(app, ["list", "--json"])
    assert '"key_algorithm": "sm2"' in listed.output, listed.output
    shown = run(app, ["show", "sm2"]).output
    assert "key algorithm" in shown and "sm2" in shown and "CN=cli sm2" in shown and "PRIVATE KEY" not in shown
