"""Adapters using the certificate store: mTLS to sectors (httpx and zeep), WS-Security signatures on SOAP
requests and answers, RSA-signed REST requests, and credential rotation without a failed call.

Everything is real: a test CA (`tests/support/pki.py`), simulators serving HTTPS that demand a client certificate,
xmlsec signing and checking on both sides, and the gateway reading the certificates from its store.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.bundle import BundleError, load_bundle, preview
from adapters.contract import DeliveryError, FailureClass
from adapters.registry import RegisteredAdapter, build_adapter
from adapters.resilience import RetryPolicy
from adapters.simulators.base import ServerTls
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from adapters.simulators.wssec import MessageSigning
from certstore.credentials import Credential, MemoryCredentials
from certstore.tls import client_context
from gateway.bootstrap.app import Gateway
from gateway.sectors.bundle_records import pack_folder
from tests.support.pki import Issued, TestCA, new_key

DATA = Path(__file__).parents[1] / "data" / "bundles"
SIGNED_SOAP, RSA_REST = DATA / "social_security_signed", DATA / "public_security_rsa"
FAST = RetryPolicy(2, 1, 5)
WANG = "150203198503120039"  # a person every simulator knows
CONTRIBUTIONS = ("social_insurance_contributions", {"query": {"id_number": WANG}})
HOUSEHOLD = ("household_registration", {"query": {"id_number": WANG}})
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def credential(issued: Issued, name: str, *, with_key: bool = True) -> Credential:
    return Credential(name, issued.cert_pem, issued.key_pem if with_key else None)


def fingerprint(issued: Issued) -> str:
    return credential(issued, "x").fingerprint


@dataclass(frozen=True)
class Pki:
    ca: TestCA
    server_tls: ServerTls  # the sectors' HTTPS, demanding a client certificate from our CA
    client: Issued  # our TLS client certificate ...
    client_next: Issued  # ... and the one it is rotated to
    ours: Issued  # our signing key (RSA)
    sector: Issued  # the sector's answer-signing key (RSA) ...
    sector_next: Issued  # ... and the one it rotates to
    stranger: Issued  # an RSA key from another CA: nobody trusts it
    stranger_ca: TestCA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, stranger_ca = TestCA(), TestCA("Someone Else's CA")
    folder = tmp_path_factory.mktemp("pki")
    certfile, keyfile = ca.issue("sector", sans=("127.0.0.1", "localhost"), server=True).write(folder, "server")
    (folder / "ca.crt").write_bytes(ca.cert_pem)
    rsa = {name: ca.issue(name, key=new_key("rsa")) for name in ("ours", "sector", "sector-next")}
    return Pki(ca, ServerTls(certfile, keyfile, folder / "ca.crt"), ca.issue("yiwang", client=True),
               ca.issue("yiwang-next", client=True), rsa["ours"], rsa["sector"], rsa["sector-next"],
               stranger_ca.issue("stranger", key=new_key("rsa"), client=True), stranger_ca)


def soap_store(pki: Pki, **instead: Credential | None) -> MemoryCredentials:
    """The credentials the signed social-security bundle names; `instead` replaces (None: drops) some,
    by name with `-` written `_` (e.g. `social_security_ca=...`)."""
    return _store([credential(pki.client, "social_security-client"), credential(pki.ours, "social_security-signing"),
                   Credential("social_security-ca", pki.ca.cert_pem),
                   credential(pki.sector, "social_security-sector", with_key=False)], instead)


def rest_store(pki: Pki) -> MemoryCredentials:
    return _store([credential(pki.client, "public_security-client"), credential(pki.ours, "public_security-signing"),
                   Credential("public_security-ca", pki.ca.cert_pem)], {})


def _store(credentials: list[Credential], instead: dict[str, Credential | None]) -> MemoryCredentials:
    chosen = {c.name: c for c in credentials} | {k.replace("_", "-").replace("social-security", "social_security"): v
                                                 for k, v in instead.items()}
    return MemoryCredentials({name: [c] for name, c in chosen.items() if c is not None})


def variant(bundle: Path, tmp_path: Path, **edits: str) -> Path:
    """A copy of `bundle` whose descriptor has each `old=new` text replaced (keys name nothing)."""
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy)
    descriptor = copy / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    for old, new in edits.values():  # type: ignore[misc]
        assert old in text, old
        text = text.replace(old, new)
    descriptor.write_text(text, encoding="utf-8")
    return copy


def adapter(bundle: Path, url: str, store: MemoryCredentials, **kwargs: Any) -> RegisteredAdapter:
    return build_adapter(load_bundle(bundle), endpoint=url, retry_override=FAST, credentials=store, **kwargs)


def signing_sector(pki: Pki, signer: Issued | None = None) -> MessageSigning:
    """The social-security sector checking our request signatures and signing its answers with `signer`."""
    signer = signer or pki.sector
    return MessageSigning(trusted=(pki.ours.cert_pem,), key_pem=signer.key_pem, certificate_pem=signer.cert_pem)


@pytest.fixture
def soap_sector(pki: Pki) -> Iterator[SocialSecuritySimulator]:
    with SocialSecuritySimulator(decision_delay_ms=20).serve_tls(pki.server_tls).use_signing(signing_sector(pki)) as sim:
        yield sim


@pytest.fixture
def rest_sector(pki: Pki) -> Iterator[PublicSecuritySimulator]:
    sim = PublicSecuritySimulator(decision_delay_ms=20, rsa_certificates={fingerprint(pki.ours): pki.ours.cert_pem})
    with sim.serve_tls(pki.server_tls):
        yield sim


def failure(registered: RegisteredAdapter, name: str, message: dict[str, Any]) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        registered.adapter.call(name, message)  # type: ignore[arg-type]
    return caught.value


# ------------------------------------------------------------------ certstore.tls


def test_client_context_is_tls12_or_newer_and_trusts_only_what_it_is_given(pki: Pki) -> None:
    context = client_context(credential(pki.client, "c"), [Credential("ca", pki.ca.cert_pem)])
    assert context.minimum_version.name in ("TLSv1_2", "TLSv1_3")
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"
    assert len(context.get_ca_certs()) == 1  # the sector's CA alone, not the system's


def test_a_client_certificate_without_its_key_is_refused_clearly(pki: Pki) -> None:
    with pytest.raises(ValueError, match="'c' has no private key"):
        client_context(credential(pki.client, "c", with_key=False))
    mismatched = Credential("c", pki.client.cert_pem, pki.client_next.key_pem)
    with pytest.raises(ValueError, match="certificate and key do not load together"):
        client_context(mismatched)


# ------------------------------------------------------------------ (a) mTLS, REST and SOAP


def test_rest_sector_demanding_a_client_certificate_is_reached_with_ours(
        pki: Pki, rest_sector: PublicSecuritySimulator) -> None:
    registered = adapter(RSA_REST, rest_sector.url, rest_store(pki))
    assert rest_sector.url.startswith("https://")
    assert registered.adapter.call(*HOUSEHOLD)["name"]  # type: ignore[arg-type]
    assert set(rest_sector.client_fingerprints) == {fingerprint(pki.client)}


def test_soap_sector_demanding_a_client_certificate_is_reached_with_ours(
        pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    registered = adapter(SIGNED_SOAP, soap_sector.url, soap_store(pki))
    assert registered.adapter.call(*CONTRIBUTIONS)["months_paid"] > 0  # type: ignore[arg-type]
    assert set(soap_sector.client_fingerprints) == {fingerprint(pki.client)}


@pytest.mark.parametrize("bundle", [RSA_REST, SIGNED_SOAP], ids=["rest", "soap"])
def test_without_a_client_certificate_the_sector_refuses_the_connection(
        pki: Pki, bundle: Path, tmp_path: Path, rest_sector: PublicSecuritySimulator,
        soap_sector: SocialSecuritySimulator) -> None:
    sector = "public_security" if bundle == RSA_REST else "social_security"
    line = f"  client_certificate: cert:{sector}-client"
    anonymous = variant(bundle, tmp_path, drop=(line, ""))
    url, store, call = ((rest_sector.url, rest_store(pki), HOUSEHOLD) if bundle == RSA_REST
                        else (soap_sector.url, soap_store(pki), CONTRIBUTIONS))
    error = failure(adapter(anonymous, url, store), *call)
    assert error.failure in (FailureClass.TRANSPORT, FailureClass.AUTH), error


def test_a_sector_whose_server_certificate_we_do_not_trust_is_not_called(
        pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    store = soap_store(pki, social_security_ca=Credential("social_security-ca", pki.stranger_ca.cert_pem))
    error = failure(adapter(SIGNED_SOAP, soap_sector.url, store), *CONTRIBUTIONS)
    assert error.failure is FailureClass.AUTH and "CERTIFICATE_VERIFY_FAILED" in error.message  # not the sector's health
    assert soap_sector.counters["queries_received"] == 0


def test_a_certificate_refused_in_the_handshake_is_an_auth_failure_not_the_sectors_outage(
        pki: Pki, tmp_path: Path, rest_sector: PublicSecuritySimulator, soap_sector: SocialSecuritySimulator) -> None:
    # We do not trust the sector's server certificate: nothing reaches it, whatever we retry.
    lowered = variant(SIGNED_SOAP, tmp_path, breaker=("failure_threshold: 50", "failure_threshold: 2"))
    store = soap_store(pki, social_security_ca=Credential("social_security-ca", pki.stranger_ca.cert_pem))
    registered = adapter(lowered, soap_sector.url, store)
    for _ in range(3):
        error = failure(registered, *CONTRIBUTIONS)
        assert (error.failure, error.attempts) == (FailureClass.AUTH, 1), error  # not retried
        assert "CERTIFICATE_VERIFY_FAILED" in error.message
    assert registered.adapter.query_breaker.state == "closed"  # type: ignore[attr-defined]
    assert registered.health_snapshot()["sector_failures"] == 0
    # The sector wants a client certificate and we present none: its alert says so.
    line = "  client_certificate: cert:public_security-client"
    anonymous = adapter(variant(RSA_REST, tmp_path / "anonymous", drop=(line, "")), rest_sector.url, rest_store(pki))
    error = failure(anonymous, *HOUSEHOLD)
    assert error.failure is FailureClass.AUTH and "CERTIFICATE_REQUIRED" in error.message, error


def test_a_missing_credential_is_a_bundle_error_naming_the_field(pki: Pki) -> None:
    store = soap_store(pki, social_security_client=None)
    with pytest.raises(BundleError, match=r"tls\.client_certificate: no credential named 'social_security-client'"):
        adapter(SIGNED_SOAP, "https://127.0.0.1:9/shebao/case", store)
    with pytest.raises(BundleError, match=r"needs the certificate store"):
        build_adapter(load_bundle(SIGNED_SOAP), endpoint="https://127.0.0.1:9/shebao/case")


def test_a_malformed_credential_reference_is_refused_with_file_and_line(tmp_path: Path) -> None:
    broken = variant(SIGNED_SOAP, tmp_path, ref=("cert:social_security-ca", "social_security-ca"))
    with pytest.raises(BundleError) as caught:
        load_bundle(broken)
    assert [str(p) for p in caught.value.problems] == [
        "bundle.yaml:28: tls.trust: expected a credential reference cert:NAME (letters, digits, _ . : -), "
        "got 'social_security-ca'"]


def test_ws_security_is_refused_on_a_rest_bundle(tmp_path: Path) -> None:
    broken = variant(RSA_REST, tmp_path, add=("tls:\n", "ws_security: {sign: cert:x}\ntls:\n"))
    with pytest.raises(BundleError, match=r"bundle.yaml:\d+: ws_security: soap bundles only"):
        load_bundle(broken)


# ------------------------------------------------------------------ (b) WS-Security, end to end


def test_signed_soap_exchange_uses_sha256_both_ways(pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    registered = adapter(SIGNED_SOAP, soap_sector.url, soap_store(pki))
    assert registered.adapter.call(*CONTRIBUTIONS)["months_paid"] > 0  # type: ignore[arg-type]
    wire = soap_sector.last_request.decode()
    assert f'SignatureMethod Algorithm="{RSA_SHA256}"' in wire
    assert wire.count(f'DigestMethod Algorithm="{SHA256}"') == 2  # the Body and the Timestamp
    assert "sha1" not in wire.lower() and "wsu:Timestamp" in wire
    assert soap_sector.counters["auth_failures"] == 0


def test_a_request_signed_with_a_key_the_sector_does_not_know_is_refused_as_auth(
        pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    store = soap_store(pki, social_security_signing=credential(pki.stranger, "social_security-signing"))
    error = failure(adapter(SIGNED_SOAP, soap_sector.url, store), *CONTRIBUTIONS)
    assert error.failure is FailureClass.AUTH and "FailedCheck" in error.message
    assert soap_sector.counters["auth_failures"] == 1


@pytest.mark.parametrize("mode, why", [
    ("unsigned", "not signed"),
    ("tampered", "does not verify"),
    ("stale_timestamp", "wsu:Timestamp expired"),
])
def test_an_answer_not_properly_signed_is_refused(pki: Pki, soap_sector: SocialSecuritySimulator,
                                                  mode: str, why: str) -> None:
    registered = adapter(SIGNED_SOAP, soap_sector.url, soap_store(pki))
    soap_sector.set_fault(mode)
    error = failure(registered, *CONTRIBUTIONS)
    assert error.failure is FailureClass.VALIDATION and not error.retryable
    assert why in error.message


def test_an_answer_signed_by_a_key_we_do_not_trust_is_refused(pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    registered = adapter(SIGNED_SOAP, soap_sector.url, soap_store(pki))
    soap_sector.use_signing(signing_sector(pki, signer=pki.stranger))
    error = failure(registered, *CONTRIBUTIONS)
    assert error.failure is FailureClass.VALIDATION
    assert "does not verify with the sector's certificate(s) social_security-sector" in error.message


def test_our_own_certificate_cannot_vouch_for_an_answer(pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    """The sector's certificate verifies answers, never ours: an answer signed with our key is refused."""
    registered = adapter(SIGNED_SOAP, soap_sector.url, soap_store(pki))
    soap_sector.use_signing(signing_sector(pki, signer=pki.ours))
    assert failure(registered, *CONTRIBUTIONS).failure is FailureClass.VALIDATION


# ------------------------------------------------------------------ (c) RSA-signed REST requests


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-pss-sha256"])
def test_rsa_signed_rest_request_is_verified_by_the_sector(pki: Pki, tmp_path: Path, algorithm: str) -> None:
    bundle = variant(RSA_REST, tmp_path, alg=("algorithm: rsa-sha256", f"algorithm: {algorithm}"))
    sim = PublicSecuritySimulator(rsa_certificates={fingerprint(pki.ours): pki.ours.cert_pem}, rsa_algorithm=algorithm)
    with sim.serve_tls(pki.server_tls):
        assert adapter(bundle, sim.url, rest_store(pki)).adapter.call(*HOUSEHOLD)["name"]  # type: ignore[arg-type]
        assert sim.counters["auth_failures"] == 0


@pytest.mark.parametrize("sector_knows", ["another key under our key id", "only another key id"])
def test_a_rest_request_signed_with_the_wrong_key_is_refused_as_auth(pki: Pki, sector_knows: str) -> None:
    known = ({fingerprint(pki.ours): pki.stranger.cert_pem} if sector_knows.startswith("another key")
             else {fingerprint(pki.stranger): pki.stranger.cert_pem})
    with PublicSecuritySimulator(rsa_certificates=known).serve_tls(pki.server_tls) as sim:
        error = failure(adapter(RSA_REST, sim.url, rest_store(pki)), *HOUSEHOLD)
        assert error.failure is FailureClass.AUTH and "HTTP 401" in error.message
        assert sim.counters["auth_failures"] == 1


def test_preview_of_an_rsa_signed_request_redacts_the_signature() -> None:
    """The key id is the signing certificate's fingerprint, known when sent (the simulator above finds our
    certificate by it); the signature never shows."""
    headers = preview(load_bundle(RSA_REST), *HOUSEHOLD)["headers"]
    assert headers["X-Ca-Signature"] == "<redacted>" and headers["X-Ca-Key"] == "<set when sent>"


# ------------------------------------------------------------------ (d) rotation


def test_rotating_our_client_certificate_fails_no_call(pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    store = soap_store(pki)
    registered = adapter(SIGNED_SOAP, soap_sector.url, store, rotation_grace_s=0.05)
    first = registered.adapter.inner.inner
    errors: list[BaseException] = []
    done = threading.Event()
    calls = [0]

    def keep_calling() -> None:
        while not done.is_set():
            try:
                registered.adapter.call(*CONTRIBUTIONS)  # type: ignore[arg-type]
                calls[0] += 1
            except BaseException as exc:  # noqa: BLE001 (any failure fails the test)
                errors.append(exc)

    workers = [threading.Thread(target=keep_calling) for _ in range(2)]
    for worker in workers:
        worker.start()
    _wait(lambda: calls[0] >= 4)
    store.put(credential(pki.client_next, "social_security-client"))  # the rotation
    before = calls[0]
    _wait(lambda: calls[0] >= before + 6)
    done.set()
    for worker in workers:
        worker.join(timeout=10)
    assert errors == []
    assert registered.adapter.inner.inner is not first  # rebuilt on the new credential
    old_pools = first.client.transport.session.get_adapter(soap_sector.url).poolmanager.pools
    _wait(lambda: len(old_pools) == 0)  # the replaced adapter's connections closed after the grace period
    seen = soap_sector.client_fingerprints
    assert {fingerprint(pki.client), fingerprint(pki.client_next)} <= set(seen)
    assert seen[-1] == fingerprint(pki.client_next)  # the new certificate is in use after the switch


def test_a_sector_rotating_its_signing_certificate_within_the_overlap_is_accepted(
        pki: Pki, soap_sector: SocialSecuritySimulator) -> None:
    store = soap_store(pki)
    registered = adapter(SIGNED_SOAP, soap_sector.url, store)
    store.put(credential(pki.sector_next, "social_security-sector", with_key=False))  # both trusted: the overlap
    assert registered.adapter.call(*CONTRIBUTIONS)  # type: ignore[arg-type]  # still signed by the old key
    soap_sector.use_signing(signing_sector(pki, signer=pki.sector_next))  # the sector switches
    assert registered.adapter.call(*CONTRIBUTIONS)  # type: ignore[arg-type]


def _wait(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    finished = threading.Event()
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        finished.wait(0.01)
    raise AssertionError("not reached in time")


# ------------------------------------------------------------------ through the real gateway


def test_gateway_calls_a_signed_mtls_sector_with_certificates_from_its_store(
        pki: Pki, make_gateway: Callable[..., Gateway], soap_sector: SocialSecuritySimulator) -> None:
    gateway = make_gateway(bundles=(), sector_endpoints={"social_security": soap_sector.url})
    certs = gateway.certs
    certs.import_pem("social_security-client", pki.client.cert_pem, pki.client.key_pem, actor="test")
    certs.import_pem("social_security-signing", pki.ours.cert_pem, pki.ours.key_pem, actor="test")
    certs.import_pem("social_security-ca", pki.ca.cert_pem, actor="test")
    certs.import_pem("social_security-sector", pki.sector.cert_pem, actor="test")
    gateway.bundles.register(pack_folder(SIGNED_SOAP), "test")
    gateway.bundles.activate("social_security", "2026.12-signed", "test", force=True)
    answer = gateway.sector_calls.query(CONTRIBUTIONS[0], CONTRIBUTIONS[1]["query"])
    assert answer["sector"] == "social_security" and answer["result"]["months_paid"] > 0
    assert soap_sector.client_fingerprints == [fingerprint(pki.client)]
    assert RSA_SHA256 in soap_sector.last_request.decode()
