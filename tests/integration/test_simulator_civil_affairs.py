"""The 民政 simulator over real HTTP, driven by zeep as the gateway drives it: the shipped WSDL
loaded strictly, SOAP 1.2, WS-Security UsernameToken (text and digest); plus raw envelopes for
what zeep would never send (no security, replays, hostile documents)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.wsse.username import UsernameToken

from adapters.simulators.civil_affairs import TNS, WSDL_FILE, WSSE_NS, CivilAffairsSimulator
from tests.support.simulators import KNOWN_ID, eventually

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP12_WSDL = "http://schemas.xmlsoap.org/wsdl/soap12/"
BINDING = f"{{{TNS}}}CivilAffairsSoap12Binding"
DELAY_MS = 240  # generous: the "before the decision" checks must hold on a loaded machine
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

Service = Any  # zeep's ServiceProxy: attributes are the WSDL's operations


def zeep_service(sim: CivilAffairsSimulator, token: UsernameToken | None) -> Service:
    settings = zeep.Settings(strict=True, forbid_external=True, forbid_dtd=True)
    client = zeep.Client(str(WSDL_FILE), settings=settings, wsse=token)
    return client.create_service(BINDING, sim.url)


def apply(service: Service, transaction: str, *, provided: bool = True, case_number: str = "C-1") -> Any:
    return service.ApplyService(
        TransactionId=transaction,
        ItemCode="11150200MB1A00030X3000000002",
        CaseNumber=case_number,
        Applicant={"Name": "李四", "CertificateType": "111", "CertificateNumber": KNOWN_ID},
        Attachments={"Attachment": [{"Name": "户口簿", "Provided": True}, {"Name": "离婚协议", "Provided": provided}]},
        FormXml="<form><reason>补领</reason></form>",
    )


@pytest.fixture
def sim() -> Iterator[CivilAffairsSimulator]:
    with CivilAffairsSimulator(decision_delay_ms=DELAY_MS) as simulator:
        yield simulator


@pytest.fixture(params=[False, True], ids=["PasswordText", "PasswordDigest"])
def service(request: pytest.FixtureRequest, sim: CivilAffairsSimulator) -> Service:
    return zeep_service(sim, UsernameToken("yiwang", "mz-secret", use_digest=request.param))


def raw_post(sim: CivilAffairsSimulator, body: bytes) -> httpx.Response:
    return httpx.post(sim.url, content=body, headers={"Content-Type": "application/soap+xml; charset=utf-8"})


def fault_of(response: httpx.Response) -> tuple[str, list[str], str]:
    """(Code Value, Subcode values resolved to {ns}local, Reason text) of a SOAP 1.2 fault."""
    assert response.headers["content-type"] == "application/soap+xml; charset=utf-8"
    fault = etree.fromstring(response.content, SAFE).find(f"{{{SOAP12_ENV}}}Body/{{{SOAP12_ENV}}}Fault")
    values = fault.findall(f".//{{{SOAP12_ENV}}}Value")
    subcodes = [f"{{{v.nsmap[v.text.split(':')[0]]}}}{v.text.split(':')[1]}" for v in values[1:]]  # QName text
    reason = fault.findtext(f"{{{SOAP12_ENV}}}Reason/{{{SOAP12_ENV}}}Text")
    return values[0].text, subcodes, reason


def envelope(body: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP12_ENV}" xmlns:m="{TNS}">'
        f"<env:Header>{header}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
    ).encode("utf-8")


def marriage_query(number: str = KNOWN_ID) -> str:
    return f"<m:CheckMarriageRecordRequest><m:CertificateNumber>{number}</m:CertificateNumber></m:CheckMarriageRecordRequest>"


def text_token(password: str = "mz-secret", username: str = "yiwang") -> str:
    return (
        f'<wsse:Security xmlns:wsse="{WSSE_NS}"><wsse:UsernameToken><wsse:Username>{username}</wsse:Username>'
        f"<wsse:Password>{password}</wsse:Password></wsse:UsernameToken></wsse:Security>"
    )


# --------------------------------------------------------------------------- the WSDL


def test_the_wsdl_is_soap12_document_literal_and_served_with_the_real_address(sim: CivilAffairsSimulator) -> None:
    served = httpx.get(sim.wsdl_url)
    assert served.status_code == 200
    wsdl = etree.fromstring(served.content, SAFE)
    assert [a.get("location") for a in wsdl.iter(f"{{{SOAP12_WSDL}}}address")] == [sim.url]
    assert wsdl.find(f".//{{{SOAP12_WSDL}}}binding").get("style") == "document"
    assert {b.get("use") for b in wsdl.iter(f"{{{SOAP12_WSDL}}}body")} == {"literal"}
    assert sim.url.endswith("/mca/CivilAffairsService")
    client = zeep.Client(str(WSDL_FILE), settings=zeep.Settings(strict=True, forbid_external=True, forbid_dtd=True))
    operations = set(client.wsdl.bindings[BINDING]._operations)
    assert operations == {"ApplyService", "GetServiceStatus", "CancelService", "CheckMarriageRecord"}


# --------------------------------------------------------------------------- through zeep, both token kinds


def test_apply_is_idempotent_on_the_transaction_id(service: Service, sim: CivilAffairsSimulator) -> None:
    first = apply(service, "T-1")
    assert (first.ResultCode, first.ResultMessage) == ("SUCCESS", "受理成功")
    assert first.ServiceNumber.startswith("MZ") and first.ServiceNumber[2:].isdigit()
    again = apply(service, "T-1")
    assert (again.ResultCode, again.ServiceNumber) == ("SUCCESS", first.ServiceNumber)
    counters = sim.counters
    assert (counters["cases_created"], counters["duplicate_submits"], counters["auth_failures"]) == (1, 1, 0)


def test_a_refused_apply_is_not_remembered(service: Service, sim: CivilAffairsSimulator) -> None:
    refused = apply(service, "T-2", case_number="")
    assert refused.ResultCode == "FAIL" and "CaseNumber" in refused.ResultMessage
    assert refused.ServiceNumber is None
    accepted = apply(service, "T-2")
    assert accepted.ResultCode == "SUCCESS" and sim.counters["cases_created"] == 1
    assert sim.counters["business_errors"] == 1


def test_status_accepted_processing_then_passed(service: Service) -> None:
    number = apply(service, "T-3").ServiceNumber
    assert service.GetServiceStatus(ServiceNumber=number).Status == "ACCEPTED"
    time.sleep(DELAY_MS / 2000 + 0.005)
    assert service.GetServiceStatus(ServiceNumber=number).Status in ("PROCESSING", "PASSED")
    time.sleep(DELAY_MS / 2000 + 0.02)
    decided = service.GetServiceStatus(ServiceNumber=number)
    assert (decided.ResultCode, decided.Status, decided.Comment) == ("SUCCESS", "PASSED", "审核通过，准予办理")
    assert decided.FinishTime.utcoffset() == timedelta(hours=8)
    assert abs(datetime.now(UTC) - decided.FinishTime) < timedelta(seconds=5)


def test_a_missing_attachment_is_rejected(service: Service) -> None:
    number = apply(service, "T-4", provided=False).ServiceNumber
    time.sleep(DELAY_MS / 1000 + 0.02)
    decided = service.GetServiceStatus(ServiceNumber=number)
    assert decided.Status == "REJECTED" and "离婚协议" in decided.Comment
    unknown = service.GetServiceStatus(ServiceNumber="MZ999")
    assert unknown.ResultCode == "FAIL" and unknown.Status is None


def test_cancel_before_and_after_the_decision(service: Service) -> None:
    early = apply(service, "T-5").ServiceNumber
    assert service.CancelService(ServiceNumber=early).Cancelled is True
    assert service.CancelService(ServiceNumber=early).Cancelled is True  # repeated: same answer
    gone = service.GetServiceStatus(ServiceNumber=early)
    assert (gone.ResultCode, gone.ResultMessage) == ("FAIL", "服务已撤销")
    late = apply(service, "T-6").ServiceNumber
    time.sleep(DELAY_MS / 1000 + 0.02)
    refused = service.CancelService(ServiceNumber=late)
    assert (refused.ResultCode, refused.Cancelled) == ("SUCCESS", False)
    unknown = service.CancelService(ServiceNumber="MZ000")
    assert (unknown.ResultCode, unknown.Cancelled) == ("FAIL", False)


def test_check_marriage_record(service: Service) -> None:
    record = service.CheckMarriageRecord(CertificateNumber=KNOWN_ID)
    assert record.ResultCode == "SUCCESS"
    assert record.MaritalStatus in ("UNMARRIED", "MARRIED", "DIVORCED", "WIDOWED")
    assert (record.RegistrationDate is None) == (record.MaritalStatus == "UNMARRIED")
    statuses = {service.CheckMarriageRecord(CertificateNumber=f"1502041990112015{n:02d}").MaritalStatus for n in range(20)}
    assert "MARRIED" in statuses and "UNMARRIED" in statuses
    records = [service.CheckMarriageRecord(CertificateNumber=f"1502041985010100{n:02d}") for n in range(20)]
    assert any(r.RegistrationDate and r.RegistrationDate.year >= 2000 for r in records)
    invalid = service.CheckMarriageRecord(CertificateNumber="12345")
    assert invalid.ResultCode == "FAIL" and invalid.MaritalStatus is None


# --------------------------------------------------------------------------- WS-Security refusals


def assert_failed_authentication(call: Callable[[], object]) -> None:
    with pytest.raises(Fault) as caught:
        call()
    assert caught.value.code == "soap:Sender"
    assert [str(code) for code in caught.value.subcodes] == [f"{{{WSSE_NS}}}FailedAuthentication"]


def test_zeep_with_a_wrong_password_is_refused_in_both_kinds(sim: CivilAffairsSimulator) -> None:
    for digest in (False, True):
        wrong = zeep_service(sim, UsernameToken("yiwang", "guess", use_digest=digest))
        assert_failed_authentication(lambda: wrong.CheckMarriageRecord(CertificateNumber=KNOWN_ID))
    stranger = zeep_service(sim, UsernameToken("mallory", "mz-secret"))
    assert_failed_authentication(lambda: stranger.CheckMarriageRecord(CertificateNumber=KNOWN_ID))
    anonymous = zeep_service(sim, None)
    assert_failed_authentication(lambda: apply(anonymous, "T-7"))
    assert sim.counters["auth_failures"] == 4 and sim.counters["cases_created"] == 0


def test_a_stale_created_or_a_replayed_nonce_is_refused(sim: CivilAffairsSimulator) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=6)
    old = zeep_service(sim, UsernameToken("yiwang", "mz-secret", use_digest=True, created=stale))
    assert_failed_authentication(lambda: old.CheckMarriageRecord(CertificateNumber=KNOWN_ID))
    fixed = zeep_service(sim, UsernameToken("yiwang", "mz-secret", use_digest=True, nonce="same-nonce-twice"))
    assert fixed.CheckMarriageRecord(CertificateNumber=KNOWN_ID).ResultCode == "SUCCESS"
    assert_failed_authentication(lambda: fixed.CheckMarriageRecord(CertificateNumber=KNOWN_ID))


def test_a_raw_envelope_without_security_is_a_sender_fault_on_400(sim: CivilAffairsSimulator) -> None:
    response = raw_post(sim, envelope(marriage_query()))
    assert response.status_code == 400
    code, subcodes, reason = fault_of(response)
    assert (code, subcodes, reason) == ("soap:Sender", [f"{{{WSSE_NS}}}FailedAuthentication"], "安全令牌认证失败")
    ok = raw_post(sim, envelope(marriage_query(), text_token()))
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/soap+xml")
    assert raw_post(sim, envelope(marriage_query(), text_token("wrong"))).status_code == 400
    no_nonce = text_token(base64.b64encode(b"whatever").decode())  # a digest without Nonce and Created
    no_nonce = no_nonce.replace("<wsse:Password>", '<wsse:Password Type="x#PasswordDigest">')
    assert raw_post(sim, envelope(marriage_query(), no_nonce)).status_code == 400


def test_protocol_errors_are_faults(sim: CivilAffairsSimulator) -> None:
    soap11 = envelope(marriage_query(), text_token()).replace(SOAP12_ENV.encode(), b"http://schemas.xmlsoap.org/soap/envelope/")
    mismatch = raw_post(sim, soap11)
    assert mismatch.status_code == 500 and fault_of(mismatch)[0] == "soap:VersionMismatch"
    unknown = raw_post(sim, envelope("<m:DivorceRequest/>", text_token()))
    assert unknown.status_code == 400 and fault_of(unknown)[0] == "soap:Sender"
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + envelope(marriage_query(), text_token()).split(b"?>", 1)[1]
    hostile = raw_post(sim, bomb)
    assert hostile.status_code == 400 and "DOCTYPE" in fault_of(hostile)[2]
    assert sim.counters["client_faults"] == 3


# --------------------------------------------------------------------------- faults


def test_fail_fault_and_rate_limit_modes_through_zeep(service: Service, sim: CivilAffairsSimulator) -> None:
    sim.set_fault("fail", count=1)
    dead = raw_post(sim, envelope(marriage_query(), text_token()))  # zeep itself would parse the HTML page
    assert dead.status_code == 503 and dead.headers["content-type"].startswith("text/html")
    sim.set_fault("fault", count=1)
    with pytest.raises(Fault) as broken:
        apply(service, "T-8")
    assert broken.value.code == "soap:Receiver"
    sim.set_fault("rate_limit", count=1)
    limited = raw_post(sim, envelope(marriage_query(), text_token()))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert apply(service, "T-8").ResultCode == "SUCCESS"
    counters = sim.counters
    assert (counters["raw_requests"], counters["faults_injected"], counters["cases_created"]) == (4, 3, 1)


def test_malformed_and_hostile_answers(sim: CivilAffairsSimulator) -> None:
    sim.set_fault("malformed", count=1)
    truncated = raw_post(sim, envelope(marriage_query(), text_token()))
    assert truncated.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(truncated.content, SAFE)
    sim.set_fault("hostile", count=1)
    hostile = raw_post(sim, envelope(marriage_query(), text_token()))
    assert hostile.status_code == 200 and hostile.headers["content-type"].startswith("application/soap+xml")
    assert hostile.text.count("<!ENTITY") == 10 and "&lol9;" in hostile.text and SOAP12_ENV in hostile.text
    strict = zeep_service(sim, UsernameToken("yiwang", "mz-secret"))
    sim.set_fault("hostile", count=1)
    with pytest.raises(Exception, match="(?i)dtd|entit"):
        strict.CheckMarriageRecord(CertificateNumber=KNOWN_ID)


def test_slow_mode_applies_even_when_the_client_gives_up(sim: CivilAffairsSimulator) -> None:
    sim.set_fault("slow", count=1, slow_ms=300)
    body = envelope(
        "<m:ApplyRequest><m:TransactionId>T-9</m:TransactionId><m:ItemCode>I</m:ItemCode><m:CaseNumber>C</m:CaseNumber>"
        "<m:Applicant><m:Name>王五</m:Name><m:CertificateType>111</m:CertificateType>"
        f"<m:CertificateNumber>{KNOWN_ID}</m:CertificateNumber></m:Applicant><m:Attachments/></m:ApplyRequest>",
        text_token(),
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url, content=body, timeout=0.1)
    assert eventually(lambda: sim.counters["cases_created"] == 1)
    assert raw_post(sim, body).status_code == 200 and sim.counters["duplicate_submits"] == 1
