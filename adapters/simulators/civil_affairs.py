"""民政 (civil affairs) sector simulator: SOAP 1.2 with a WS-Security UsernameToken on every call.

Why it exists: the second SOAP dialect the gateway must speak — SOAP 1.2 envelopes and faults
(``application/soap+xml``, Code/Subcode/Reason, Sender faults on HTTP 400 as the SOAP 1.2 HTTP
binding says), English CamelCase names, and authentication in the message (OASIS UsernameToken
Profile 1.0: PasswordText, or PasswordDigest = Base64(SHA-1(nonce + created + password)) with a
fresh Nonce and a Created within ±5 minutes; a replayed nonce is refused). The contract is
``civil_affairs.wsdl`` next to this file.

Default credentials (the shipped bundle reads the password from ``YIWANG_SECRET_MZ_PASSWORD``):
username ``yiwang``, password ``mz-secret``.

Known persons for CheckMarriageRecord: every well-formed 18-character ID number (status and
registration date derived from it); anything else is ResultCode FAIL.

Idempotent application: ApplyService applies once per request id, which is the SOAP header
``{http://yiwang.gov.cn/ns/idempotency}RequestId`` when the caller sends one (the gateway's
idempotency key, bundle ``idempotency.soap_header``), else the body's TransactionId.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from lxml import etree

from adapters.simulators.base import (
    BEIJING,
    Case,
    Decider,
    FaultPlan,
    NonceCache,
    Reply,
    dig,
    missing_fields,
    person_seed,
    run_cli,
    serve_forever,
)
from adapters.simulators.soap import SOAP12, Fields, SoapContract, SoapFault, SoapSimulator

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "ENDPOINT_PATH",
    "REQUEST_ID_HEADER",
    "TNS",
    "WSDL_FILE",
    "CivilAffairsSimulator",
    "default_decide",
    "serve",
]

TNS: Final = "http://mca.sim.yiwang.local/service/2019"
ENDPOINT_PATH: Final = "/mca/CivilAffairsService"
WSDL_FILE: Final = Path(__file__).with_name("civil_affairs.wsdl")
DEFAULT_USERNAME: Final = "yiwang"
DEFAULT_PASSWORD: Final = "mz-secret"
DEFAULT_PORT: Final = 8803

WSSE_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_PROFILE: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT: Final = f"{_TOKEN_PROFILE}#PasswordText"
PASSWORD_DIGEST: Final = f"{_TOKEN_PROFILE}#PasswordDigest"
MAX_SKEW: Final = timedelta(minutes=5)
IDEMPOTENCY_NS: Final = "http://yiwang.gov.cn/ns/idempotency"
REQUEST_ID_HEADER: Final = f"{{{IDEMPOTENCY_NS}}}RequestId"

REQUIRED_APPLY_FIELDS: Final = (
    "TransactionId",
    "ItemCode",
    "CaseNumber",
    "Applicant.Name",
    "Applicant.CertificateType",
    "Applicant.CertificateNumber",
)
SUCCESS: Final = "SUCCESS"
FAIL: Final = "FAIL"
_MARITAL_BY_DIGIT: Final = ("UNMARRIED",) * 4 + ("MARRIED",) * 4 + ("DIVORCED", "WIDOWED")


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """Refused when an attachment was not provided; granted otherwise."""
    attachments = fields.get("Attachments") or []
    lacking = [
        str(a.get("Name", "")) for a in attachments if isinstance(a, dict) and a.get("Provided") in ("false", "0")
    ]
    if lacking:
        return False, f"材料不齐全：{'、'.join(lacking)}，不予办理"
    return True, "审核通过，准予办理"


def marriage_record(seed: int) -> tuple[str, date | None]:
    """A person's made-up marital status and, unless unmarried, the date it was registered."""
    status = _MARITAL_BY_DIGIT[seed % 10]
    registered = None if status == "UNMARRIED" else date(2000, 1, 1) + timedelta(days=seed // 10 % 9000)
    return status, registered


# --------------------------------------------------------------------------- WS-Security


class UsernameTokenCheck:
    """Verifies a wsse:Security/UsernameToken against one account; answers why not (for the log
    only: the client always hears the same FailedAuthentication, so it cannot probe)."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._nonces = NonceCache(2 * MAX_SKEW.total_seconds())

    def problem(self, envelope: etree._Element) -> str | None:
        token = envelope.find(f"{{{SOAP12.envelope_ns}}}Header/{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
        if token is None:
            return "no UsernameToken"
        username = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
        password = token.find(f"{{{WSSE_NS}}}Password")
        if password is None or not hmac.compare_digest(username.encode(), self._username.encode()):
            return "unknown user or no password"
        given = (password.text or "").strip()
        kind = password.get("Type", PASSWORD_TEXT)
        if kind.endswith("#PasswordText"):
            return None if hmac.compare_digest(given.encode(), self._password.encode()) else "wrong password"
        if kind.endswith("#PasswordDigest"):
            return self._digest_problem(token, given)
        return f"unsupported password type {kind}"

    def _digest_problem(self, token: etree._Element, given: str) -> str | None:
        nonce_text = (token.findtext(f"{{{WSSE_NS}}}Nonce") or "").strip()
        created = (token.findtext(f"{{{WSU_NS}}}Created") or "").strip()
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
            moment = datetime.fromisoformat(created)
        except (binascii.Error, ValueError):
            return "unreadable Nonce or Created"
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # no offset: UTC, as WSS says
        if not nonce or abs(datetime.now(UTC) - moment) > MAX_SKEW:
            return "stale Created or empty Nonce"
        expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + self._password.encode()).digest())
        if not hmac.compare_digest(expected, given.encode()):
            return "wrong digest"
        # Checked last, so a forged request cannot burn a legitimate client's nonce.
        return None if self._nonces.first_use(nonce_text) else "replayed nonce"


# --------------------------------------------------------------------------- the simulator


class CivilAffairsSimulator(SoapSimulator):
    """The 民政 service: ApplyService, GetServiceStatus, CancelService, CheckMarriageRecord.

    ``url`` is the SOAP 1.2 endpoint (http://127.0.0.1:PORT/mca/CivilAffairsService), the WSDL
    at ``wsdl_url``. Statuses: ACCEPTED (first half of the delay), PROCESSING, then PASSED or
    REJECTED with Comment and FinishTime. A cancelled service is gone (FAIL on status queries).
    """

    label = "civil-affairs"
    sector = "civil_affairs"
    server_version = "MzSim/2019"
    extra_counters = (*SoapSimulator.extra_counters, "cancels_received")
    reference_prefix = "MZ"
    contract = SoapContract(
        SOAP12, TNS, ENDPOINT_PATH, WSDL_FILE,
        sample_response=(
            "ApplyResponse", (("ResultCode", SUCCESS), ("ResultMessage", "受理成功"), ("ServiceNumber", "MZ0"))
        ),
        server_error="民政业务系统内部错误，请稍后重试（模拟故障）",
    )

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self._token_check = UsernameTokenCheck(username, password)

    def _check_headers(self, envelope: etree._Element) -> None:
        problem = self._token_check.problem(envelope)
        if problem is not None:
            self._counters.bump("auth_failures")
            raise SoapFault("sender", "安全令牌认证失败", subcode=(WSSE_NS, "FailedAuthentication"))

    def _operations(self) -> dict[str, Any]:
        return {
            "ApplyRequest": self._apply,
            "GetServiceStatusRequest": self._status,
            "CancelServiceRequest": self._cancel,
            "CheckMarriageRecordRequest": self._marriage,
        }

    def _fail(self, response: str, message: str, *fields: tuple[str, str]) -> Reply:
        self._counters.bump("business_errors")
        return self._respond(response, [("ResultCode", FAIL), ("ResultMessage", message), *fields])

    # ----- ApplyService

    def _apply(self, operation: etree._Element) -> Reply:
        """Apply once per request id (see ``_request_id``); a refused request is not remembered."""
        self._counters.bump("submits_received")
        fields = self._read(operation, lists=frozenset({"Attachments"}))
        missing = missing_fields(fields, REQUIRED_APPLY_FIELDS)
        if missing:
            return self._fail("ApplyResponse", f"缺少必填项：{'、'.join(missing)}")
        case, created = self._book.apply(self._request_id(operation, fields), fields)
        message = "受理成功" if created else "重复提交，返回原服务编号"
        return self._respond(
            "ApplyResponse", [("ResultCode", SUCCESS), ("ResultMessage", message), ("ServiceNumber", case.reference)]
        )

    def _request_id(self, operation: etree._Element, fields: dict[str, Any]) -> str:
        """The RequestId SOAP header if the caller sent a non-empty one, else the body's TransactionId."""
        envelope = operation.getroottree().getroot()
        header = envelope.find(f"{{{SOAP12.envelope_ns}}}Header/{REQUEST_ID_HEADER}")
        given = (header.text or "").strip() if header is not None else ""
        return given or str(dig(fields, "TransactionId"))

    # ----- GetServiceStatus

    def _status(self, operation: etree._Element) -> Reply:
        self._counters.bump("queries_received")
        number = self._read(operation).get("ServiceNumber", "")
        case = self._book.get(number) if number else None
        if case is None or case.cancelled:
            reason = (
                "缺少必填项：ServiceNumber" if not number else "服务已撤销" if case else f"服务编号不存在：{number}"
            )
            return self._fail("GetServiceStatusResponse", reason)
        return self._respond("GetServiceStatusResponse", [("ResultCode", SUCCESS), *self._progress(case)])

    def _progress(self, case: Case) -> Fields:
        decision = self._book.decision(case)
        if decision is None:
            return [("Status", "ACCEPTED" if case.in_first_half() else "PROCESSING")]
        finished = case.decided_at.astimezone(BEIJING).isoformat(timespec="seconds")
        return [("Status", "PASSED" if decision[0] else "REJECTED"), ("Comment", decision[1]), ("FinishTime", finished)]

    # ----- CancelService

    def _cancel(self, operation: etree._Element) -> Reply:
        """Cancelled true (again true when repeated, then the service is gone), false once decided."""
        self._counters.bump("cancels_received")
        number = self._read(operation).get("ServiceNumber", "")
        cancelled = self._book.cancel(number) if number else None
        if cancelled is None:
            return self._fail("CancelServiceResponse", f"服务编号不存在：{number}", ("Cancelled", "false"))
        return self._respond("CancelServiceResponse", [("ResultCode", SUCCESS), ("Cancelled", str(cancelled).lower())])

    # ----- CheckMarriageRecord

    def _marriage(self, operation: etree._Element) -> Reply:
        self._counters.bump("queries_received")
        number = self._read(operation).get("CertificateNumber", "")
        seed = person_seed(number)
        if seed is None:
            return self._fail("CheckMarriageRecordResponse", f"证件号码无效或无婚姻登记信息：{number}")
        status, registered = marriage_record(seed)
        registration = registered.isoformat() if registered else None
        fields = [("ResultCode", SUCCESS), ("MaritalStatus", status), ("RegistrationDate", registration)]
        return self._respond("CheckMarriageRecordResponse", fields)


# --------------------------------------------------------------------------- foreground use


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    simulator = CivilAffairsSimulator(port, decision_delay_ms, username=username, password=password)
    serve_forever(simulator, "民政 (SOAP 1.2 + WS-Security)", fault)


if __name__ == "__main__":
    run_cli("民政 SOAP 1.2 sector simulator", serve, DEFAULT_PORT, CivilAffairsSimulator.fault_modes)
