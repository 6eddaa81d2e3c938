"""The certificate store on SQLite and PostgreSQL: imports, CSRs, sealing at rest, master-key rotation,
certificate rotation with its overlap window, expiry warnings, secrets, and refusals that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import Engine, select

from adapters import secrets as bundle_secrets
from certstore.credentials import CredentialMissing
from certstore.keyring import MasterKeys
from certstore.store import CertConflict, CertStore, CertStoreError, SealedValueUnavailable, UnknownEntry
from certstore.x509 import CertificateError, Subject
from gateway.domain.clock import FixedClock
from gateway.persistence.cert_tables import CERT_TABLES, cert_versions
from tests.support.pki import TestCA, key_pem

NOW = datetime.now(UTC).replace(microsecond=0)
K1, K2 = MasterKeys.generate("k1"), MasterKeys.generate("k2")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ca() -> TestCA:
    return TestCA(now=NOW)


def make_store(engine: Engine, clock: FixedClock, ring: str = K1, refresh_s: float = 0) -> CertStore:
    return CertStore(engine, CERT_TABLES, MasterKeys.parse(ring), clock, refresh_s=refresh_s)


@pytest.fixture
def store(engine: Engine, clock: FixedClock) -> CertStore:
    return make_store(engine, clock)


def public_key_der(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(cert_versions)).mappings()]


# --- imports ---------------------------------------------------------------------------------------------


def test_pem_import_with_chain_round_trips_and_shows_subject_issuer_fingerprints(store: CertStore, ca: TestCA
                                                                                 ) -> None:
    client = ca.issue("yiwang-gateway", client=True)
    stored = store.import_pem("gw-client", client.cert_pem + client.chain_pem, client.key_pem, actor="t")
    assert stored.status == "current" and stored.has_private_key and stored.sector is None
    der = client.cert.public_bytes(serialization.Encoding.DER)
    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(der)
    assert stored.facts is not None
    assert stored.facts.sha256 == client.cert.fingerprint(hashes.SHA256()).hex()
    assert stored.facts.sm3 == sm3.finalize().hex()
    assert "CN=yiwang-gateway" in stored.facts.subject and "CN=Yiwang Test Root CA" in stored.facts.issuer
    assert stored.facts.not_after == client.cert.not_valid_after_utc
    credential = store.current("gw-client")
    assert credential.certificate == client.cert
    assert len(x509.load_pem_x509_certificates(credential.certificate_pem)) == 2  # the chain came along
    assert credential.private_key_pem is not None
    assert public_key_der(credential.private_key_pem) == public_key_der(client.key_pem)
    assert not any("BEGIN" in str(v) for v in stored.public().values())  # a listing never shows key material


def test_encrypted_pem_key_needs_its_password(store: CertStore, ca: TestCA) -> None:
    client = ca.issue("encrypted")
    locked = key_pem(client.key, b"open sesame")
    with pytest.raises(CertificateError, match="encrypted: give its password"):
        store.import_pem("enc", client.cert_pem, locked, actor="t")
    with pytest.raises(CertificateError, match="wrong password"):
        store.import_pem("enc", client.cert_pem, locked, password=b"wrong", actor="t")
    with pytest.raises(UnknownEntry):
        store.versions("enc")  # refusals store nothing, not even the name
    store.import_pem("enc", client.cert_pem, locked, password=b"open sesame", actor="t")
    assert public_key_der(store.current("enc").private_key_pem or b"") == public_key_der(client.key_pem)


def test_pkcs12_import_with_password_and_refusal_of_a_wrong_one(store: CertStore, ca: TestCA) -> None:
    client = ca.issue("p12 client", client=True)
    with pytest.raises(CertificateError, match="wrong password"):
        store.import_pkcs12("p12", client.pkcs12(b"pfx-pass"), b"nope", actor="t")
    with pytest.raises(UnknownEntry):
        store.versions("p12")
    stored = store.import_pkcs12("p12", client.pkcs12(b"pfx-pass"), b"pfx-pass", sector="housing_fund", actor="t")
    assert stored.has_private_key and stored.sector == "housing_fund" and stored.key_algorithm == "ec-p256"
    credential = store.current("p12")
    assert credential.certificate == client.cert
    assert x509.load_pem_x509_certificates(credential.certificate_pem)[1] == ca.cert


def test_a_certificate_alone_is_trusted_without_a_key(store: CertStore, ca: TestCA) -> None:
    sector = ca.issue("sector signing")
    stored = store.import_pem("ss-signing", sector.cert_pem, sector="social_security", actor="t")
    assert not stored.has_private_key
    assert store.current("ss-signing").private_key_pem is None


@pytest.mark.parametrize("algorithm", ["rsa-2048", "ec-p256"])
def test_csr_then_the_signed_certificate_finds_its_key(store: CertStore, ca: TestCA, algorithm: str) -> None:
    subject = Subject("yiwang.baotou.example", organization="包头市政务服务局", organizational_unit="一网",
                      sans=("yiwang.baotou.example", "127.0.0.1"))
    pending, csr_pem = store.request("gjj-client", subject, algorithm, sector="housing_fund", actor="t")
    csr = x509.load_pem_x509_csr(csr_pem)
    assert pending.status == "pending" and pending.has_private_key and pending.facts is None
    assert csr.is_signature_valid and "C=CN" in csr.subject.rfc4514_string()
    assert "O=包头市政务服务局" in csr.subject.rfc4514_string()
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n) for n in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(CredentialMissing):
        store.current("gjj-client")  # nothing to use before the signed certificate comes back

    stranger = ca.issue("not ours")  # a certificate for another key does not complete it
    with pytest.raises(CertStoreError, match="matches none of the keys awaiting"):
        store.import_pem("gjj-client", stranger.cert_pem, sector="housing_fund", actor="t")

    signed = ca.sign_csr(csr_pem)
    completed = store.import_pem("gjj-client", signed, sector="housing_fund", actor="t")
    assert (completed.version, completed.status, completed.has_private_key) == (1, "current", True)
    assert completed.key_algorithm == algorithm
    credential = store.current("gjj-client")
    key = serialization.load_pem_private_key(credential.private_key_pem or b"", None)
    assert key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == credential.certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def test_bad_input_is_refused_and_changes_nothing(store: CertStore, ca: TestCA, clock: FixedClock) -> None:
    good, other = ca.issue("good"), ca.issue("other")
    store.import_pem("mine", good.cert_pem, good.key_pem, sector="civil_affairs", actor="t")
    before = store.versions("mine")
    with pytest.raises(CertificateError, match="does not belong to the certificate"):
        store.import_pem("mine", other.cert_pem, good.key_pem, sector="civil_affairs", actor="t")
    expired = ca.issue("old", not_before=NOW - timedelta(days=30), days=10)
    with pytest.raises(CertStoreError, match="expired on"):
        store.import_pem("mine", expired.cert_pem, expired.key_pem, sector="civil_affairs", actor="t")
    with pytest.raises(CertificateError, match="no PEM certificate"):
        store.import_pem("mine", b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
                         actor="t", sector="civil_affairs")
    with pytest.raises(CertificateError, match="could not be read"):
        store.import_pem("mine", other.cert_pem, b"not a key", sector="civil_affairs", actor="t")
    with pytest.raises(CertConflict, match="belongs to sector 'civil_affairs', not to sector 'public_security'"):
        store.import_pem("mine", other.cert_pem, other.key_pem, sector="public_security", actor="t")
    with pytest.raises(CertConflict, match="already 'mine' version 1"):
        store.import_pem("mine", good.cert_pem, sector="civil_affairs", actor="t")
    with pytest.raises(CertConflict, match="holds a certificate, not a secret"):
        store.set_secret("mine", "x", sector="civil_affairs", actor="t")
    with pytest.raises(CertificateError, match="unknown key algorithm"):
        store.request("new", Subject("x"), "dsa-1024", actor="t")
    with pytest.raises(CertificateError, match="invalid subject"):
        store.request("new", Subject("x", country="China"), actor="t")
    assert store.versions("mine") == before
    with pytest.raises(UnknownEntry):
        store.versions("new")


# --- sealed at rest ------------------------------------------------------------------------------------


def test_private_keys_and_secrets_are_never_stored_in_plaintext(engine: Engine, store: CertStore, ca: TestCA,
                                                                db_url: str) -> None:
    client = ca.issue("plain check", client=True)
    store.import_pem("plain", client.cert_pem, client.key_pem, actor="t")
    _, csr = store.request("generated", Subject("generated"), "rsa-2048", actor="t")
    store.import_pem("generated", ca.sign_csr(csr), actor="t")
    generated = serialization.load_pem_private_key(store.current("generated").private_key_pem or b"", None)
    generated_der = generated.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    store.set_secret("gjj-client-secret", "s3cret-value-漢字", actor="t")
    body = b"".join(client.key_pem.splitlines()[1:-1])  # the PEM's base64 body
    needles = [client.key_der, body, body[:40], generated_der, generated_der[-64:], b"s3cret-value",
               "s3cret-value-漢字".encode()]
    every_row = repr(rows(engine)).encode()
    for needle in needles:
        assert needle not in every_row
    assert all(r["sealed"] is None or str(r["sealed"]).startswith('{"key_id": "k1"') for r in rows(engine))
    if db_url.startswith("sqlite"):
        engine.dispose()  # checkpoint the WAL into the file
        raw = b"".join(p.read_bytes() for p in Path(db_url.removeprefix("sqlite:///")).parent.glob("yiwang.db*"))
        assert b"CN=plain check" in raw or b"plain check" in raw  # the certificate itself is public: it is there
        for needle in needles:
            assert needle not in raw


def test_master_key_rotation_rewrap_then_the_old_key_can_go(engine: Engine, clock: FixedClock, ca: TestCA) -> None:
    client = ca.issue("rotating master", client=True)
    old = make_store(engine, clock, K1)
    old.import_pem("gw", client.cert_pem, client.key_pem, actor="t")
    old.set_secret("token", "t0ken", actor="t")
    old.request("pending", Subject("pending"), "ec-p256", actor="t")

    both = make_store(engine, clock, f"{K2},{K1}")  # the new key first: current; the old one still opens
    assert both.secret("token") == "t0ken"
    told: list[tuple[int, int]] = []
    assert both.rewrap(lambda done, total: told.append((done, total))) == 3
    assert told == [(1, 3), (2, 3), (3, 3)]  # what `yiwang certs rewrap` draws its progress bar from
    assert {r["master_key_id"] for r in rows(engine) if r["sealed"]} == {"k2"}
    assert both.rewrap() == 0

    only_new = make_store(engine, clock, K2)
    assert public_key_der(only_new.current("gw").private_key_pem or b"") == public_key_der(client.key_pem)
    assert only_new.secret("token") == "t0ken"
    with pytest.raises(SealedValueUnavailable, match="master key 'k2' is not configured"):
        old_only = make_store(engine, clock, K1)
        old_only.secret("token")


def test_a_wrong_master_key_gives_a_clear_error(engine: Engine, clock: FixedClock, ca: TestCA) -> None:
    client = ca.issue("wrong master")
    make_store(engine, clock, K1).import_pem("gw", client.cert_pem, client.key_pem, actor="t")
    impostor = make_store(engine, clock, MasterKeys.generate("k1"))  # same id, other bytes
    with pytest.raises(SealedValueUnavailable, match="'gw' version 1: the sealed value does not open"):
        impostor.current("gw")


def test_an_envelope_copied_to_another_row_does_not_open(engine: Engine, store: CertStore, ca: TestCA) -> None:
    store.set_secret("a", "value-a", actor="t")
    store.set_secret("b", "value-b", actor="t")
    sealed_a = next(r["sealed"] for r in rows(engine) if r["name"] == "a")
    with engine.begin() as conn:
        conn.execute(cert_versions.update().where(cert_versions.c.name == "b").values(sealed=sealed_a))
    with pytest.raises(SealedValueUnavailable):
        store.secret("b")


# --- rotation -------------------------------------------------------------------------------------------


def test_rotation_keeps_the_previous_certificate_trusted_for_the_overlap_window(
        store: CertStore, ca: TestCA, clock: FixedClock) -> None:
    first, second = ca.issue("sector v1"), ca.issue("sector v2")
    store.import_pem("ss-tls", first.cert_pem, sector="social_security", actor="t")
    staged = store.import_pem("ss-tls", second.cert_pem, sector="social_security", actor="t")
    assert staged.status == "staged"
    assert [c.certificate for c in store.trusted("ss-tls")] == [first.cert]  # staged is not used yet

    rotated = store.rotate("ss-tls", "t", overlap=timedelta(days=7))
    assert (rotated.version, rotated.status) == (2, "current")
    assert store.current("ss-tls").certificate == second.cert
    assert [c.certificate for c in store.trusted("ss-tls")] == [second.cert, first.cert]
    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    assert len(store.trusted("ss-tls")) == 2
    clock.advance(timedelta(seconds=1))
    assert [c.certificate for c in store.trusted("ss-tls")] == [second.cert]
    with pytest.raises(CertConflict, match="no staged version"):
        store.rotate("ss-tls", "t")
    with pytest.raises(UnknownEntry):
        store.rotate("nothing", "t")


def test_retire_a_superseded_version_or_the_whole_name(store: CertStore, ca: TestCA) -> None:
    first, second = ca.issue("r1"), ca.issue("r2")
    store.import_pem("r", first.cert_pem, actor="t")
    store.import_pem("r", second.cert_pem, actor="t")
    store.rotate("r", "t")
    with pytest.raises(CertConflict, match="is current"):
        store.retire("r", "t", version=2)
    store.retire("r", "t", version=1)  # ends the overlap early
    assert [c.certificate for c in store.trusted("r")] == [second.cert]
    assert {v.status for v in store.retire("r", "t")} == {"retired"}
    with pytest.raises(CredentialMissing):
        store.current("r")
    with pytest.raises(UnknownEntry, match="no version 9"):
        store.retire("r", "t", version=9)


def test_other_processes_see_a_rotation_after_their_cache_refresh(engine: Engine, clock: FixedClock, ca: TestCA
                                                                  ) -> None:
    first, second = ca.issue("c1"), ca.issue("c2")
    writer = make_store(engine, clock)
    writer.import_pem("cached", first.cert_pem, actor="t")
    reader = make_store(engine, clock, refresh_s=3600)
    assert reader.current("cached").certificate == first.cert
    writer.import_pem("cached", second.cert_pem, actor="t")
    writer.rotate("cached", "t")
    assert reader.current("cached").certificate == first.cert  # served from the cache: no round trip
    reader.refresh_s = 0
    assert reader.current("cached").certificate == second.cert


# --- expiry warnings ------------------------------------------------------------------------------------


def test_expiry_warnings_once_per_threshold_across_processes(engine: Engine, store: CertStore, ca: TestCA,
                                                             clock: FixedClock) -> None:
    expiring = ca.issue("expiring", days=40)
    store.import_pem("exp", expiring.cert_pem, sector="public_security", actor="t")
    not_after = expiring.cert.not_valid_after_utc
    assert store.check_expiry() == []
    clock.advance(not_after - timedelta(days=30) - clock.now())
    [warning] = store.check_expiry()
    assert (warning.name, warning.sector, warning.threshold, warning.version) == ("exp", "public_security", "30d", 1)
    assert store.check_expiry() == []
    assert make_store(engine, clock).check_expiry() == []  # another process (or a restart) does not repeat it
    clock.advance(timedelta(days=23, seconds=1))  # 7 days minus a second left
    assert [w.threshold for w in store.check_expiry()] == ["7d"]
    clock.advance(timedelta(days=7))
    assert [w.threshold for w in store.check_expiry()] == ["expired"]
    assert store.check_expiry() == []
    assert store.expiries() == [("exp", "public_security", not_after)]


def test_a_certificate_imported_close_to_expiry_is_warned_of_the_worst_threshold(store: CertStore, ca: TestCA
                                                                               ) -> None:
    store.import_pem("short", ca.issue("short", days=3).cert_pem, actor="t")
    assert [w.threshold for w in store.check_expiry()] == ["7d"]
    assert store.check_expiry() == []


# --- secrets --------------------------------------------------------------------------------------------


def test_secrets_are_versioned_and_resolve_as_vault_references(store: CertStore) -> None:
    first = store.set_secret("gjj-client-secret", "one", sector="housing_fund", actor="t")
    second = store.set_secret("gjj-client-secret", "two", sector="housing_fund", actor="t")
    assert (first.version, second.version, second.status, second.kind) == (1, 2, "current", "secret")
    assert [v.status for v in store.versions("gjj-client-secret")] == ["retired", "current"]
    assert not second.has_private_key and "two" not in repr(second.public())
    assert store.secret("gjj-client-secret") == "two"
    with pytest.raises(CertStoreError, match="may not be empty"):
        store.set_secret("empty", "", actor="t")

    assert bundle_secrets.is_reference("vault:gjj-client-secret")
    assert bundle_secrets.resolve("vault:gjj-client-secret", vault=store.secret) == "two"
    with pytest.raises(bundle_secrets.SecretRefError, match="vault:missing: no current secret"):
        bundle_secrets.resolve("vault:missing", vault=store.secret)
    with pytest.raises(bundle_secrets.SecretRefError, match="no secret store"):
        bundle_secrets.resolve("vault:gjj-client-secret", vault=None)
