"""`/v1/certificates` and `/metrics` over the app: roles, sector scoping, problem+json, and the expiry check
on the dispatcher's clock tick feeding the metrics."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from certstore.store import CertStore
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Role
from tests.support.pki import TestCA, key_pem, sm2_credential

NOW = datetime.now(UTC).replace(microsecond=0)
PROBLEM = "application/problem+json"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], clock: FixedClock) -> Gateway:
    return make_gateway(clock=clock, bundles=())


@pytest.fixture
def ca() -> TestCA:
    return TestCA(now=NOW)


def client(gateway: Gateway, role: Role, sector: str | None = None) -> TestClient:
    _, key = gateway.keys.issue(f"test {role}", [role], sector=sector)
    return TestClient(create_app(gateway), headers={"Authorization": f"Bearer {key}"})


def problem(answer: object, status: int, slug: str) -> None:
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    assert answer.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    assert answer.json()["type"] == f"urn:yiwang:problem:{slug}"  # type: ignore[attr-defined]


def test_security_admin_imports_pem_and_pkcs12_and_never_sees_a_key(gateway: Gateway, ca: TestCA) -> None:
    admin = client(gateway, Role.SECURITY_ADMIN)
    ours = ca.issue("gateway client", client=True)
    answer = admin.post("/v1/certificates/gw-client/import",
                        json={"certificate_pem": (ours.cert_pem + ours.chain_pem).decode(),
                              "private_key_pem": key_pem(ours.key, b"pw").decode(), "password": "pw"})
    assert answer.status_code == 201, answer.text
    shown = answer.json()
    assert shown["status"] == "current" and shown["has_private_key"] and shown["sector"] is None
    assert len(shown["sm3"]) == 64 and "CN=gateway client" in shown["subject"]

    theirs = ca.issue("gjj client", client=True)
    answer = admin.post("/v1/certificates/gjj-client/import",
                        json={"pkcs12_base64": base64.b64encode(theirs.pkcs12(b"p12")).decode(), "password": "p12",
                              "sector": "housing_fund"})
    assert answer.status_code == 201 and answer.json()["sector"] == "housing_fund", answer.text
    sm2_cert, sm2_key = sm2_credential("e-licence client", now=NOW)
    answer = admin.post("/v1/certificates/el-client/import",
                        json={"certificate_pem": sm2_cert.decode(), "private_key_pem": sm2_key.decode()})
    assert answer.status_code == 201 and answer.json()["key_algorithm"] == "sm2", answer.text
    listing = admin.get("/v1/certificates")
    assert [e["name"] for e in listing.json()["items"]] == ["el-client", "gjj-client", "gw-client"]
    assert "PRIVATE KEY" not in listing.text and "PRIVATE KEY" not in admin.get("/v1/certificates/gw-client").text


def test_bad_input_is_a_problem_and_changes_nothing(gateway: Gateway, ca: TestCA) -> None:
    admin = client(gateway, Role.SECURITY_ADMIN)
    good, other = ca.issue("good"), ca.issue("other")
    problem(admin.post("/v1/certificates/x/import", json={"certificate_pem": "garbage"}), 422, "invalid-certificate")
    problem(admin.post("/v1/certificates/x/import",
                       json={"certificate_pem": good.cert_pem.decode(), "private_key_pem": other.key_pem.decode()}),
            422, "invalid-certificate")
    problem(admin.post("/v1/certificates/x/import",
                       json={"pkcs12_base64": base64.b64encode(good.pkcs12(b"right")).decode(), "password": "wrong"}),
            422, "invalid-certificate")
    problem(admin.post("/v1/certificates/x/import", json={"pkcs12_base64": "%%%"}), 422, "invalid-certificate")
    sm2_cert, _ = sm2_credential("sm2 good", now=NOW)
    problem(admin.post("/v1/certificates/x/import", json={"certificate_pem": sm2_cert.decode(),
                                                          "private_key_pem": sm2_credential("sm2 other")[1].decode()}),
            422, "invalid-certificate")
    problem(admin.post("/v1/certificates/x/import", json={}), 422, "invalid-certificate")
    problem(admin.get("/v1/certificates/x"), 404, "unknown-certificate")
    assert admin.get("/v1/certificates").json()["items"] == []
    admin.post("/v1/certificates/x/import", json={"certificate_pem": good.cert_pem.decode(), "sector": "civil_affairs"})
    problem(admin.post("/v1/certificates/x/import", json={"certificate_pem": other.cert_pem.decode(),
                                                          "sector": "public_security"}), 409, "certificate-conflict")
    problem(admin.post("/v1/certificates/x/rotate", json={}), 409, "certificate-conflict")


def test_csr_sign_import_rotate_and_retire_over_http(gateway: Gateway, ca: TestCA, clock: FixedClock) -> None:
    admin = client(gateway, Role.SECURITY_ADMIN)
    first = ca.issue("v1")
    admin.post("/v1/certificates/ss-client/import", json={"certificate_pem": first.cert_pem.decode(),
                                                          "private_key_pem": first.key_pem.decode()})
    answer = admin.post("/v1/certificates/ss-client/csr",
                        json={"subject": {"common_name": "yiwang", "organization": "包头市", "sans": ["127.0.0.1"]},
                              "algorithm": "ec-p256"})
    assert answer.status_code == 201, answer.text
    csr_pem = answer.json()["csr_pem"]
    assert x509.load_pem_x509_csr(csr_pem.encode()).is_signature_valid
    assert admin.get("/v1/certificates/ss-client").json()["versions"][1]["csr_pem"] == csr_pem  # handed over again

    staged = admin.post("/v1/certificates/ss-client/import",
                        json={"certificate_pem": ca.sign_csr(csr_pem.encode()).decode()})
    assert (staged.json()["version"], staged.json()["status"], staged.json()["has_private_key"]) == (2, "staged", True)
    rotated = admin.post("/v1/certificates/ss-client/rotate", json={"overlap_days": 1})
    assert rotated.json()["status"] == "current", rotated.text
    store: CertStore = gateway.certs
    assert [c.certificate.subject.rfc4514_string() for c in store.trusted("ss-client")] == [
        "CN=yiwang,O=包头市,C=CN", first.cert.subject.rfc4514_string()]
    problem(admin.post("/v1/certificates/ss-client/retire", json={"version": 2}), 409, "certificate-conflict")
    retired = admin.post("/v1/certificates/ss-client/retire", json={"version": 1})
    assert [v["status"] for v in retired.json()["versions"]] == ["retired", "current"]
    assert len(store.trusted("ss-client")) == 1


def test_a_sector_admin_sees_and_changes_only_their_own_sectors_entries(gateway: Gateway, ca: TestCA) -> None:
    security = client(gateway, Role.SECURITY_ADMIN)
    theirs = ca.issue("housing fund")
    security.post("/v1/certificates/gjj/import", json={"certificate_pem": theirs.cert_pem.decode(),
                                                       "sector": "housing_fund"})
    security.post("/v1/certificates/own/import", json={"certificate_pem": ca.issue("gateway").cert_pem.decode()})
    admin = client(gateway, Role.SECTOR_ADMIN, sector="social_security")

    mine = ca.issue("social security")
    created = admin.post("/v1/certificates/ss/import", json={"certificate_pem": mine.cert_pem.decode()})
    assert created.status_code == 201 and created.json()["sector"] == "social_security"  # their sector, always
    assert [e["name"] for e in admin.get("/v1/certificates").json()["items"]] == ["ss"]
    assert admin.get("/v1/certificates/ss").status_code == 200
    for name in ("gjj", "own"):
        problem(admin.get(f"/v1/certificates/{name}"), 403, "forbidden")
        problem(admin.post(f"/v1/certificates/{name}/rotate", json={}), 403, "forbidden")
        problem(admin.post(f"/v1/certificates/{name}/retire", json={}), 403, "forbidden")
        problem(admin.post(f"/v1/certificates/{name}/import", json={"certificate_pem": mine.cert_pem.decode()}),
                403, "forbidden")
        problem(admin.post(f"/v1/certificates/{name}/csr", json={"subject": {"common_name": "x"}}), 403, "forbidden")
    problem(admin.post("/v1/certificates/new/import", json={"certificate_pem": mine.cert_pem.decode(),
                                                            "sector": "housing_fund"}), 403, "forbidden")
    assert [v.status for v in gateway.certs.versions("gjj")] == ["current"]  # nothing changed on B's side
    with pytest.raises(LookupError):
        gateway.certs.versions("new")
    problem(client(gateway, Role.OPERATOR).get("/v1/certificates"), 403, "forbidden")


def test_expiry_check_on_the_clock_tick_feeds_logs_rows_and_metrics(gateway: Gateway, ca: TestCA, clock: FixedClock,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    expiring = ca.issue("expiring soon", days=20)
    gateway.certs.import_pem("soon", expiring.cert_pem, sector="public_security", actor="t")
    metrics = TestClient(create_app(gateway)).get("/metrics")  # no key: scraped like any exporter
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    line = next(x for x in metrics.text.splitlines()
                if x.startswith('yiwang_certificate_expiry_seconds{name="soon",sector="public_security"}'))
    assert abs(float(line.split()[-1]) - (expiring.cert.not_valid_after_utc - NOW).total_seconds()) < 1

    stop = threading.Event()  # the dispatcher as `yiwang worker` runs it: the check rides its clock tick
    worker = threading.Thread(target=gateway.dispatcher.run, args=(stop,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while gateway.metrics.get_sample_value("yiwang_certificate_warnings_total", {"threshold": "30d"}) is None:
        assert time.monotonic() < deadline, "the dispatcher's tick did not run the expiry check"
        time.sleep(0.01)
    stop.set()
    worker.join(timeout=10)
    text = TestClient(create_app(gateway)).get("/metrics").text
    assert 'yiwang_certificate_warnings_total{threshold="30d"} 1.0' in text
    captured = capsys.readouterr()
    assert "certificate expiring" in captured.out + captured.err
    assert gateway.expiry.check() == 0  # once only

    clock.advance(timedelta(days=14))
    assert gateway.expiry.check() == 1
    assert 'yiwang_certificate_warnings_total{threshold="7d"} 1.0' in TestClient(create_app(gateway)).get(
        "/metrics").text



@pytest.mark.parametrize("san", ["ÿ\x80_³ÝY", "政务.example.cn", "bad name.cn", "-lead.cn", "a" * 64 + ".cn"])
def test_a_csr_naming_a_san_that_is_no_dns_name_or_ip_is_refused_and_stores_nothing(gateway: Gateway,
                                                                                    san: str) -> None:
    admin = client(gateway, Role.SECURITY_ADMIN)
    answer = admin.post("/v1/certificates/ss-client/csr",
                        json={"subject": {"common_name": "yiwang", "sans": ["gw.example.cn", san]},
                              "algorithm": "ec-p256"})
    problem(answer, 422, "invalid-certificate")
    assert admin.get("/v1/certificates/ss-client").status_code == 404


def test_a_csr_takes_dns_names_wildcards_and_ip_addresses(gateway: Gateway) -> None:
    admin = client(gateway, Role.SECURITY_ADMIN)
    sans = ["gw.example.cn", "*.zwfw.example.cn", "xn--fiq228c.cn", "10.1.2.3", "::1"]
    answer = admin.post("/v1/certificates/ss-client/csr",
                        json={"subject": {"common_name": "yiwang", "sans": sans}, "algorithm": "ec-p256"})
    assert answer.status_code == 201, answer.text
    csr = x509.load_pem_x509_csr(answer.json()["csr_pem"].encode())
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(list(names)) == len(sans)
