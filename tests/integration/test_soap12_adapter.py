"""The SOAP adapter over SOAP 1.2 with WS-Security, against a tiny real SOAP 1.2 server.

The WSDL publishes the same port type over SOAP 1.1 (first) and SOAP 1.2 (second), in the civil
affairs dialect; `soap_version: "1.2"` must pick the second. The server answers
`application/soap+xml` envelopes and checks UsernameTokens with its own code.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from adapters.auth import NO_AUTH, AuthSpec, parse_auth
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.kinds.soap import SOAP
from adapters.kinds.soap.adapter import SoapAdapter
from mappings import compile_mapping
from tests.support.local_server import LocalServer, Reply, Seen

NS = "http://mca.sim.yiwang.local/service/2019"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SOAP12_TYPE = "application/soap+xml; charset=utf-8"

WSDL = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="{NS}" targetNamespace="{NS}">
  <types>
    <xsd:schema targetNamespace="{NS}" elementFormDefault="qualified">
      <xsd:element name="ApplyRequest"><xsd:complexType><xsd:sequence>
        <xsd:element name="TransactionId" type="xsd:string"/>
        <xsd:element name="CaseNumber" type="xsd:string"/>
        <xsd:element name="Applicant"><xsd:complexType><xsd:sequence>
          <xsd:element name="Name" type="xsd:string"/>
          <xsd:element name="CertificateNumber" type="xsd:string"/>
        </xsd:sequence></xsd:complexType></xsd:element>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="ApplyResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="ResultCode" type="xsd:string"/>
        <xsd:element name="ResultMessage" type="xsd:string"/>
        <xsd:element name="ServiceNumber" type="xsd:string" minOccurs="0"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="CheckMarriageRecordRequest"><xsd:complexType><xsd:sequence>
        <xsd:element name="CertificateNumber" type="xsd:string"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="CheckMarriageRecordResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="ResultCode" type="xsd:string"/>
        <xsd:element name="MaritalStatus" type="xsd:string"/>
        <xsd:element name="RegistrationDate" type="xsd:date" minOccurs="0"/>
      </xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </types>
  <message name="ApplyIn"><part name="body" element="tns:ApplyRequest"/></message>
  <message name="ApplyOut"><part name="body" element="tns:ApplyResponse"/></message>
  <message name="MarriageIn"><part name="body" element="tns:CheckMarriageRecordRequest"/></message>
  <message name="MarriageOut"><part name="body" element="tns:CheckMarriageRecordResponse"/></message>
  <portType name="MzService">
    <operation name="ApplyService"><input message="tns:ApplyIn"/><output message="tns:ApplyOut"/></operation>
    <operation name="CheckMarriageRecord"><input message="tns:MarriageIn"/><output message="tns:MarriageOut"/></operation>
  </portType>
  <binding name="MzSoap11" type="tns:MzService">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="ApplyService"><soap:operation soapAction="ApplyService"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
    <operation name="CheckMarriageRecord"><soap:operation soapAction="CheckMarriageRecord"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
  <binding name="MzSoap12" type="tns:MzService">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="ApplyService"><soap12:operation soapAction="ApplyService"/>
      <input><soap12:body use="literal"/></input><output><soap12:body use="literal"/></output></operation>
    <operation name="CheckMarriageRecord"><soap12:operation soapAction="CheckMarriageRecord"/>
      <input><soap12:body use="literal"/></input><output><soap12:body use="literal"/></output></operation>
  </binding>
  <service name="MzCaseService">
    <port name="Soap11" binding="tns:MzSoap11"><soap:address location="http://127.0.0.1:9/mz"/></port>
    <port name="Soap12" binding="tns:MzSoap12"><soap12:address location="http://127.0.0.1:9/mz"/></port>
  </service>
</definitions>
"""

APPLY = {
    "operation": "ApplyService",
    "request": {
        "TransactionId": {"from": "idempotency_key"},
        "CaseNumber": {"from": "case.case_no"},
        "Applicant": {"Name": {"from": "case.applicant.name"}, "CertificateNumber": {"from": "case.applicant.id_number"}},
    },
    "response": {
        "business_error": {"code": "ResultCode", "ok": ["SUCCESS"], "message": "ResultMessage"},
        "fields": {"sector_ref": {"from": "ServiceNumber"}},
    },
}
MARRIAGE = {
    "operation": "CheckMarriageRecord",
    "code_tables": {"marital": {"UNMARRIED": "unmarried", "MARRIED": "married"}},
    "request": {"CertificateNumber": {"from": "query.id_number"}},
    "response": {
        "business_error": {"code": "ResultCode", "ok": ["SUCCESS"]},
        "fields": {
            "marital_status": {"from": "MaritalStatus", "code_table": "marital"},
            "registered_on": {"from": "RegistrationDate", "convert": "str", "optional": True},
        },
    },
}
MESSAGE = {
    "idempotency_key": "150200-20261124-0002:t1:submit_case",
    "sector_ref": None,
    "case": {"case_no": "150200-20261124-0002", "applicant": {"name": "赵六", "id_number": "150202198805051234"}},
}


def envelope(body: str) -> bytes:
    return f'<env:Envelope xmlns:env="{SOAP12}" xmlns:m="{NS}"><env:Body>{body}</env:Body></env:Envelope>'.encode()


def fault(code: str, text: str, subcode: str | None = None) -> bytes:
    sub = f'<env:Subcode><env:Value xmlns:wsse="{WSSE}">{subcode}</env:Value></env:Subcode>' if subcode else ""
    return envelope(
        f"<env:Fault><env:Code><env:Value>{code}</env:Value>{sub}</env:Code>"
        f'<env:Reason><env:Text xml:lang="zh">{text}</env:Text></env:Reason></env:Fault>'
    )


APPLIED = Reply(
    200,
    envelope("<m:ApplyResponse><m:ResultCode>SUCCESS</m:ResultCode><m:ResultMessage>受理成功</m:ResultMessage>"
             "<m:ServiceNumber>MZ20261124001</m:ServiceNumber></m:ApplyResponse>"),
    SOAP12_TYPE,
)  # fmt: skip


@pytest.fixture(scope="module")
def wsdl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("civil_affairs") / "civil_affairs.wsdl"
    path.write_text(WSDL, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        yield local


@pytest.fixture(autouse=True)
def fresh_script(server: LocalServer) -> None:
    server.script(APPLIED)


def make_adapter(wsdl: Path, url: str, auth: AuthSpec = NO_AUTH, soap_version: str | None = "1.2") -> SoapAdapter:
    mappings = {
        Operation.SUBMIT_CASE: compile_mapping(APPLY, source_name="submit_case.mapping.yaml"),
        "marriage_record": compile_mapping(MARRIAGE, source_name="marriage_record.mapping.yaml"),
    }
    return SoapAdapter("civil_affairs", "1", wsdl, url + "/mz", mappings, 2.0, soap_version=soap_version, auth=auth)


@pytest.fixture
def adapter(wsdl: Path, server: LocalServer) -> SoapAdapter:
    return make_adapter(wsdl, server.url)


def sent(seen: Seen) -> etree._Element:
    return etree.fromstring(seen.body)


def failure(adapter: SoapAdapter) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        adapter.call(Operation.SUBMIT_CASE, MESSAGE)
    return caught.value


# ------------------------------------------------------------------ SOAP 1.2 on the wire


def test_call_goes_out_as_soap_12(adapter: SoapAdapter, server: LocalServer) -> None:
    assert adapter.call(Operation.SUBMIT_CASE, MESSAGE) == {"sector_ref": "MZ20261124001"}
    [seen] = server.seen
    assert seen.headers["content-type"].startswith("application/soap+xml")
    assert 'action="ApplyService"' in seen.headers["content-type"]
    root = sent(seen)
    assert etree.QName(root).namespace == SOAP12
    assert root.findtext(f".//{{{NS}}}Applicant/{{{NS}}}Name") == "赵六"


def test_soap_11_binding_is_picked_when_declared(wsdl: Path, server: LocalServer) -> None:
    server.script(Reply(200, APPLIED.body.replace(SOAP12.encode(), SOAP11.encode()), "text/xml; charset=utf-8"))
    adapter = make_adapter(wsdl, server.url, soap_version="1.1")
    assert adapter.call(Operation.SUBMIT_CASE, MESSAGE) == {"sector_ref": "MZ20261124001"}
    assert etree.QName(sent(server.seen[0])).namespace == SOAP11


def test_unknown_soap_version_is_refused(wsdl: Path) -> None:
    with pytest.raises(ValueError, match="soap_version must be one of 1.1, 1.2"):
        make_adapter(wsdl, "http://127.0.0.1:9", soap_version="2.0")


def test_named_query_is_a_call_by_name(adapter: SoapAdapter, server: LocalServer) -> None:
    server.script(Reply(200, envelope(
        "<m:CheckMarriageRecordResponse><m:ResultCode>SUCCESS</m:ResultCode><m:MaritalStatus>MARRIED</m:MaritalStatus>"
        "<m:RegistrationDate>2015-05-20</m:RegistrationDate></m:CheckMarriageRecordResponse>"), SOAP12_TYPE))  # fmt: skip
    result = adapter.call("marriage_record", {"query": {"id_number": "150202198805051234"}})
    assert result == {"marital_status": "married", "registered_on": "2015-05-20"}
    assert sent(server.seen[0]).findtext(f".//{{{NS}}}CertificateNumber") == "150202198805051234"


# ------------------------------------------------------------------ SOAP 1.2 faults


@pytest.mark.parametrize(
    ("reply", "failure_class", "retryable"),
    [
        (Reply(500, fault("env:Receiver", "数据库繁忙"), SOAP12_TYPE), FailureClass.SECTOR_FAULT, True),
        (Reply(400, fault("env:Sender", "证件号码格式错误"), SOAP12_TYPE), FailureClass.SECTOR_FAULT, False),
        (Reply(500, fault("env:Sender", "格式错误"), SOAP12_TYPE), FailureClass.SECTOR_FAULT, False),
        (Reply(400, fault("env:Sender", "认证失败", "wsse:FailedAuthentication"), SOAP12_TYPE), FailureClass.AUTH, False),
        (Reply(400, b"<html>bad request</html>", "text/html"), FailureClass.SECTOR_FAULT, False),
        (Reply(503, b"<html>busy</html>", "text/html"), FailureClass.SECTOR_FAULT, True),
    ],
    ids=["receiver", "sender-400", "sender-500", "failed-authentication", "400-html", "503-html"],
)  # fmt: skip
def test_soap_12_fault_classes(
    adapter: SoapAdapter, server: LocalServer, reply: Reply, failure_class: FailureClass, retryable: bool
) -> None:
    server.script(reply)
    error = failure(adapter)
    assert (error.failure, error.retryable) == (failure_class, retryable), str(error)


def test_fault_message_names_code_subcode_and_reason(adapter: SoapAdapter, server: LocalServer) -> None:
    server.script(Reply(400, fault("env:Sender", "认证失败", "wsse:FailedAuthentication"), SOAP12_TYPE))
    assert failure(adapter).message == "SOAP fault env:Sender / FailedAuthentication: 认证失败"


# ------------------------------------------------------------------ WS-Security UsernameToken


def username_token(seen: Seen) -> etree._Element:
    token = sent(seen).find(f"{{{SOAP12}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    assert token is not None, seen.body.decode()
    return token


def wsse(monkeypatch: pytest.MonkeyPatch, digest: bool) -> AuthSpec:
    monkeypatch.setenv("YIWANG_TEST_MZ_PASSWORD", "mz-secret")
    spec = {"type": "wsse_username_token", "username": "yiwang", "password": {"secret": "env:YIWANG_TEST_MZ_PASSWORD"},
            "digest": digest}  # fmt: skip
    return parse_auth(spec, accepted=SOAP.auth_forms)


def test_username_token_password_text(wsdl: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    make_adapter(wsdl, server.url, wsse(monkeypatch, digest=False)).call(Operation.SUBMIT_CASE, MESSAGE)
    token = username_token(server.seen[0])
    password = token.find(f"{{{WSSE}}}Password")
    assert token.findtext(f"{{{WSSE}}}Username") == "yiwang"
    assert password is not None and password.text == "mz-secret" and password.get("Type", "").endswith("#PasswordText")


def test_username_token_digest(wsdl: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = make_adapter(wsdl, server.url, wsse(monkeypatch, digest=True))
    adapter.call(Operation.SUBMIT_CASE, MESSAGE)
    adapter.call(Operation.SUBMIT_CASE, MESSAGE)
    nonces = []
    for seen in server.seen:
        token = username_token(seen)
        password = token.find(f"{{{WSSE}}}Password")
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = token.findtext(f"{{{WSU}}}Created") or ""
        expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"mz-secret").digest()).decode()
        assert password is not None and password.get("Type", "").endswith("#PasswordDigest")
        assert password.text == expected and "mz-secret" not in seen.body.decode()
        nonces.append(nonce)
    assert len(set(nonces)) == 2  # a fresh nonce per message


def test_basic_auth_over_soap(wsdl: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_MZ_PASSWORD", "mz-secret")
    auth = parse_auth({"type": "basic", "username": "yiwang", "password": {"secret": "env:YIWANG_TEST_MZ_PASSWORD"}})
    make_adapter(wsdl, server.url, auth).call(Operation.SUBMIT_CASE, MESSAGE)
    assert server.seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"yiwang:mz-secret").decode()
