"""The idempotency key in a SOAP header, as a soap bundle declares (`idempotency.soap_header`).

The test bundle `tests/data/bundles/civil_affairs_soap_header` is the shipped civil-affairs bundle whose key
travels in `{http://yiwang.gov.cn/ns/idempotency}RequestId` instead of the body (TransactionId carries the
task id, which the WSDL still requires); the civil-affairs simulator applies once per RequestId header.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.bundle import load_bundle, preview, validate_bundle
from adapters.contract import Operation
from adapters.registry import RegisteredAdapter, build_adapter
from adapters.resilience import RetryPolicy
from adapters.simulators import civil_affairs
from adapters.simulators.civil_affairs import REQUEST_ID_HEADER, CivilAffairsSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from adapters.simulators.wssec import MessageSigning
from certstore.credentials import Credential, MemoryCredentials
from tests.support.pki import TestCA, new_key
from tests.support.sector_cases import mz_case, shebao_case

DATA = Path(__file__).parents[1] / "data" / "bundles"
HEADER_BUNDLE = DATA / "civil_affairs_soap_header"
SHIPPED = Path(__file__).parents[2] / "adapters" / "bundles"
SUBMIT = Operation.SUBMIT_CASE
RETRIES = RetryPolicy(3, 1, 5)
SOAP11, SOAP12 = "http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope"
MCA = civil_affairs.TNS
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(autouse=True)
def sector_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_MZ_PASSWORD", civil_affairs.DEFAULT_PASSWORD)


def registered(url: str, *, timeout_ms: int | None = None) -> RegisteredAdapter:
    bundle = load_bundle(HEADER_BUNDLE)
    return build_adapter(replace(bundle, timeout_ms=timeout_ms or bundle.timeout_ms), endpoint=url,
                         retry_override=RETRIES)


def case(key: str, task_id: str = "T-1") -> dict[str, Any]:
    message = mz_case(key, "11150203MB0C000405400011300300020261124000001", certificate_provided=True)
    return {**message, "task": {**message["task"], "id": task_id}}


def header_of(envelope: bytes | etree._Element, soap_ns: str) -> etree._Element:
    root = etree.fromstring(envelope) if isinstance(envelope, bytes) else envelope
    header = root.find(f"{{{soap_ns}}}Header")
    assert header is not None, "the envelope has no SOAP Header"
    return header


# ------------------------------------------------------------------ the header on the wire


def test_the_key_travels_in_the_declared_soap_header_beside_the_username_token() -> None:
    assert load_bundle(HEADER_BUNDLE).options.idempotency_header == REQUEST_ID_HEADER
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        answer = registered(sim.url).adapter.call(SUBMIT, case("MZ-IDEM-1"))
        assert answer["sector_ref"].startswith("MZ")
        header = header_of(sim.last_request, SOAP12)
        assert [e.text for e in header.iter(REQUEST_ID_HEADER)] == ["MZ-IDEM-1"]
        assert header.find(f"{{{WSSE}}}Security/{{{WSSE}}}UsernameToken") is not None  # still authenticated
        body = etree.fromstring(sim.last_request).find(f"{{{SOAP12}}}Body/{{{MCA}}}ApplyRequest")
        assert body is not None and body.findtext(f"{{{MCA}}}TransactionId") == "T-1"  # the task id, not the key
        assert sim.counters["auth_failures"] == 0


def test_the_preview_shows_the_header_that_will_be_sent() -> None:
    rendered = preview(load_bundle(HEADER_BUNDLE), "submit_case", case("MZ-IDEM-P"))
    header = header_of(rendered["envelope"].encode("utf-8"), SOAP12)
    assert [e.text for e in header.iter(REQUEST_ID_HEADER)] == ["MZ-IDEM-P"]


def test_without_an_idempotency_key_no_header_is_sent() -> None:
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        registered(sim.url).adapter.call("marriage_record", {"query": {"id_number": "150203198503120039"}})
        assert not list(header_of(sim.last_request, SOAP12).iter(REQUEST_ID_HEADER))


def test_the_shipped_bundle_sends_no_such_header() -> None:
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        shipped = build_adapter(load_bundle(SHIPPED / "civil_affairs"), endpoint=sim.url, retry_override=RETRIES)
        shipped.adapter.call(SUBMIT, case("MZ-IDEM-S"))
        assert not list(header_of(sim.last_request, SOAP12).iter(REQUEST_ID_HEADER))


# ------------------------------------------------------------------ the sector applies once per key


def test_the_header_not_the_body_decides_which_case_a_request_is() -> None:
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        mz = registered(sim.url)
        first = mz.adapter.call(SUBMIT, case("MZ-IDEM-2", task_id="T-1"))
        assert mz.adapter.call(SUBMIT, case("MZ-IDEM-2", task_id="T-2")) == first  # same key, other body: same case
        assert mz.adapter.call(SUBMIT, case("MZ-IDEM-3", task_id="T-1")) != first  # other key, same body: new case
        assert (sim.counters["cases_created"], sim.counters["duplicate_submits"]) == (2, 1)


@pytest.mark.timeout(30)
def test_a_submit_retried_after_a_timeout_makes_one_case() -> None:
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        mz = registered(sim.url, timeout_ms=300)
        sim.set_fault("slow", count=1, slow_ms=800)  # the first try is applied after we gave up on it
        answer = mz.adapter.call(SUBMIT, case("MZ-IDEM-4"))
        deadline = time.monotonic() + 5
        while sim.counters["submits_received"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the slow first try has been applied too
        counters = sim.counters
        assert counters["faults_injected"] == 1 and counters["submits_received"] == 2
        assert (counters["cases_created"], counters["duplicate_submits"]) == (1, 1)
        assert re.fullmatch(r"MZ\d{12}", answer["sector_ref"])


# ------------------------------------------------------------------ with WS-Security signatures


def test_the_header_goes_beside_a_ws_security_signature_that_both_sides_verify() -> None:
    ca = TestCA()
    ours, sector = (ca.issue(name, key=new_key("rsa")) for name in ("ours", "sector"))
    store = MemoryCredentials({
        "social_security-signing": [Credential("social_security-signing", ours.cert_pem, ours.key_pem)],
        "social_security-sector": [Credential("social_security-sector", sector.cert_pem)],
    })
    signed = load_bundle(DATA / "social_security_signed")
    # Plain http here: the TLS side of this bundle is tested in test_mtls_and_signing.
    bundle = replace(signed, tls=None, options=replace(signed.options, idempotency_header="{urn:example:idem}Key"))
    signing = MessageSigning(trusted=(ours.cert_pem,), key_pem=sector.key_pem, certificate_pem=sector.cert_pem)
    with SocialSecuritySimulator(decision_delay_ms=50).use_signing(signing) as sim:
        shebao = build_adapter(bundle, endpoint=sim.url, retry_override=RETRIES, credentials=store)
        answer = shebao.adapter.call(SUBMIT, shebao_case("SB-IDEM-1", "SB-CASE-1", insured_months=36))
        assert answer["sector_ref"].startswith("SB")  # the sector accepted our signature; we accepted its
        header = header_of(sim.last_request, SOAP11)
        assert [e.text for e in header.iter("{urn:example:idem}Key")] == ["SB-IDEM-1"]
        assert header.find(f"{{{WSSE}}}Security/{{{DS}}}Signature") is not None
        assert sim.counters["auth_failures"] == 0


# ------------------------------------------------------------------ validation


def with_idempotency(tmp_path: Path, source: Path, old: str | None, new: str) -> Path:
    """A copy of `source` whose descriptor declares `new` (replacing the line `old`, or appended)."""
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    descriptor = copy / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    if old is None:
        text += new + "\n"
    else:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    descriptor.write_text(text, encoding="utf-8")
    return copy


def line_of(bundle: Path, text: str) -> int:
    lines = (bundle / "bundle.yaml").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_soap_header_on_a_rest_bundle_is_refused_clearly(tmp_path: Path) -> None:
    declared = 'idempotency: {soap_header: {namespace: "http://yiwang.gov.cn/ns/idempotency", name: RequestId}}'
    bundle = with_idempotency(tmp_path, SHIPPED / "housing_fund", "idempotency: {header: X-Request-Id}", declared)
    assert [str(p) for p in validate_bundle(bundle)] == [
        f"bundle.yaml:{line_of(bundle, 'soap_header')}: idempotency.soap_header: "
        "soap bundles only (rest: idempotency.header)"]


def test_an_http_header_on_a_soap_bundle_is_refused_clearly(tmp_path: Path) -> None:
    bundle = with_idempotency(tmp_path, SHIPPED / "civil_affairs", None, "idempotency: {header: X-Request-Id}")
    assert [str(p) for p in validate_bundle(bundle)] == [
        f"bundle.yaml:{line_of(bundle, 'X-Request-Id')}: idempotency.header: "
        "rest bundles only (soap: idempotency.soap_header, or map idempotency_key into the body)"]


@pytest.mark.parametrize(("declared", "problem"), [
    ('idempotency: {soap_header: {namespace: "http://yiwang.gov.cn/ns/idempotency", name: "idem:RequestId"}}',
     "idempotency.soap_header.name: 'idem:RequestId' is not an XML element name without prefix"),
    ("idempotency: {soap_header: {namespace: not a uri, name: RequestId}}",
     "idempotency.soap_header.namespace: 'not a uri' is not an absolute namespace URI"),
    ("idempotency: {soap_header: {name: RequestId}}", "idempotency.soap_header.namespace: required"),
    ("idempotency: {}", "idempotency: expected one of header (rest: an HTTP header name) or soap_header"),
])
def test_a_malformed_soap_header_is_refused_clearly(tmp_path: Path, declared: str, problem: str) -> None:
    bundle = with_idempotency(tmp_path, HEADER_BUNDLE, 'idempotency: {soap_header: {namespace: '
                              '"http://yiwang.gov.cn/ns/idempotency", name: RequestId}}', declared)
    problems = [str(p) for p in validate_bundle(bundle)]
    assert len(problems) == 1 and problems[0].startswith(f"bundle.yaml:{line_of(bundle, 'idempotency:')}: {problem}")


def test_the_test_bundle_validates_clean_and_differs_from_the_shipped_one_only_where_it_says() -> None:
    assert validate_bundle(HEADER_BUNDLE) == []
    for name in ("service.wsdl", "query_status.mapping.yaml", "cancel_case.mapping.yaml",
                 "marriage_record.mapping.yaml"):
        assert (HEADER_BUNDLE / name).read_bytes() == (SHIPPED / "civil_affairs" / name).read_bytes(), name
