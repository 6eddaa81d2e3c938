"""就业和人才服务 (employment and talent service) sector simulator: REST/JSON, every request HMAC-signed
over the request line, a 401 with a Chinese message when the signature, key, clock or nonce is wrong.

Why it exists: a sector whose signature no one on the gateway team chose (issue 17). As its page says
(docs/sectors/employment.md; the contract is ``employment.openapi.yaml`` next to this file, also served at
``/openapi.yaml``)::

    X-Sign = HEX_UPPER(HMAC-SHA256(secret, METHOD & path & sorted_query & X-Timestamp & BASE64(SHA256(body))))

with the app key in ``X-App-Key``, the timestamp in epoch SECONDS (±300 s) in ``X-Timestamp`` and a nonce in
``X-Nonce`` it remembers (a replay is refused). sorted_query: parameters sorted by key then value, RFC 3986
encoded (upper-case hex, %20), ``k=v`` joined with ``&``; "" without a query.

Default credentials (the bundle reads the secret from ``YIWANG_SECRET_EMPLOYMENT_APP_SECRET``): app key
``yw-gateway-0471``, secret ``jy-secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from adapters.simulators.base import (
    BEIJING,
    Case,
    Decider,
    FaultPlan,
    Handler,
    Reply,
    Request,
    dig,
    missing_fields,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply
from adapters.simulators.signed import Refusal, Verdict, sorted_query

__all__ = ["DEFAULT_APP_KEY", "DEFAULT_SECRET", "OPENAPI_FILE", "EmploymentSimulator", "default_decide",
           "serve", "sign", "signed_text"]

log = logging.getLogger(__name__)

DEFAULT_APP_KEY: Final = "yw-gateway-0471"
DEFAULT_SECRET: Final = "jy-secret"
DEFAULT_PORT: Final = 8805
OPENAPI_FILE: Final = Path(__file__).with_name("employment.openapi.yaml")

OK: Final = "000000"
MISSING_FIELD: Final = "100001"
INVALID_FIELD: Final = "100002"
NOT_FOUND: Final = "404000"
REFUSALS: Final = {  # retCode and retMsg of each 401, as the page lists them
    Refusal.MISSING: ("401001", "缺少签名参数（X-App-Key、X-Timestamp、X-Nonce、X-Sign）"),
    Refusal.APP: ("401002", "应用标识不存在或已停用"),
    Refusal.STALE: ("401003", "请求时间戳已过期（与服务器时间相差超过300秒）"),
    Refusal.SIGNATURE: ("401004", "签名校验失败"),
    Refusal.REPLAY: ("401005", "重复请求：X-Nonce已使用"),
}
REQUIRED_FIELDS: Final = ("requestId", "itemCode", "caseNo", "applicant.name", "applicant.idNumber", "acceptTime")
STATES: Final = {"received": ("01", "已受理"), "reviewing": ("02", "审核中")}


# --------------------------------------------------------------------------- signatures (the page's formula)


def signed_text(method: str, path: str, query: str, timestamp: str, body: bytes) -> str:
    """METHOD&path&sorted_query&timestamp&BASE64(SHA256(body))."""
    body_digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    return "&".join((method.upper(), path, sorted_query(query), timestamp, body_digest))


def sign(secret: str, text: str) -> str:
    """HEX_UPPER(HMAC-SHA256(secret, text))."""
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest().upper()


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """Still insured by an employer (formInfo.insuredEmployer named): no unemployment registration."""
    employer = dig(fields, "formInfo.insuredEmployer")
    if isinstance(employer, str) and employer.strip():
        return False, f"经核查，申请人仍在{employer.strip()}参保缴费，不符合失业登记条件"
    return True, "准予办理失业登记，已在《就业创业证》登记失业信息"


# --------------------------------------------------------------------------- the simulator


class EmploymentSimulator(RestSimulator):
    """The 就业 service: applications (就业失业登记), their status by query string, withdrawal.

    ``url`` is the base URL (http://127.0.0.1:PORT); paths under ``/jyapi/v1``. Every business endpoint
    checks the signature first; the OpenAPI document is not signed (published). Refusals to rehearse:
    ``secret`` (another one: our signatures no longer match) and ``verdict`` (adapters/simulators/signed.py:
    a drifted clock, every nonce seen).
    """

    label = "employment"
    sector = "employment"
    server_version = "JyfwSim/1.0"
    extra_counters = ("cancels_received",)
    reference_prefix = "JY"
    openapi_file = OPENAPI_FILE
    canned_success = {"retCode": OK, "retMsg": "成功", "data": {"applyNo": "JY000000000000"}}

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        app_key: str = DEFAULT_APP_KEY,
        secret: str = DEFAULT_SECRET,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self.app_key, self.secret = app_key, secret  # what the sector issued us; change to refuse our key
        self.verdict = Verdict(unit_ms=1000)

    def _routes(self) -> list[RestRoute]:
        applications = "/jyapi/v1/applications"
        return [
            RestRoute("POST", applications, self._signed(self._json_handler(self._submit))),
            RestRoute("GET", applications + "/status", self._signed(self._status)),
            RestRoute("POST", applications + "/withdraw", self._signed(self._json_handler(self._withdraw))),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"retCode": f"{code}000" if code < 1000 else str(code), "retMsg": message})

    def _answer_of(self, code: str, message: str, status: int = HTTPStatus.OK) -> Reply:
        return json_reply(status, {"retCode": code, "retMsg": message})

    def _ok(self, data: dict[str, Any]) -> Reply:
        return json_reply(HTTPStatus.OK, {"retCode": OK, "retMsg": "成功", "data": data})

    def _business_error(self, code: str, message: str) -> Reply:
        self._counters.bump("business_errors")
        return self._answer_of(code, message)

    # ----- signatures

    def _signed(self, handler: Handler) -> Handler:
        def guarded(request: Request) -> Reply:
            refusal = self._refusal(request)
            if refusal is None:
                return handler(request)
            log.debug("employment simulator refused a request: %s", refusal.value)
            self._counters.bump("auth_failures")
            return self._answer_of(*REFUSALS[refusal], status=HTTPStatus.UNAUTHORIZED)

        return guarded

    def _refusal(self, request: Request) -> Refusal | None:
        app_key, timestamp, nonce, signature = (
            request.header(name) or "" for name in ("X-App-Key", "X-Timestamp", "X-Nonce", "X-Sign")
        )
        if not (app_key and timestamp and nonce and signature):
            return Refusal.MISSING
        if not hmac.compare_digest(app_key.encode(), self.app_key.encode()):
            return Refusal.APP
        if self.verdict.stale(timestamp):
            return Refusal.STALE
        expected = sign(self.secret, signed_text(request.method, request.path, request.query, timestamp, request.body))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return Refusal.SIGNATURE
        return Refusal.REPLAY if self.verdict.replayed(nonce) else None

    # ----- applications

    def _submit(self, request: Request, document: dict[str, Any]) -> Reply:
        """A new applyNo; the same requestId again gets the same applyNo."""
        self._counters.bump("submits_received")
        missing = missing_fields(document, REQUIRED_FIELDS)
        if missing:
            return self._business_error(MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}")
        if not isinstance(document["applicant"], dict) or not isinstance(document.get("materials", []), list):
            return self._business_error(INVALID_FIELD, "字段格式不正确：applicant、materials")
        case, _ = self._book.apply(str(document["requestId"]), document)
        return self._ok({"applyNo": case.reference})

    def _status(self, request: Request) -> Reply:
        """GET …/status?applyNo=: state 01 已受理, 02 审核中, 03 审核通过, 04 审核不通过."""
        self._counters.bump("queries_received")
        case = self._book.live(request.query_param("applyNo") or "")
        if case is None:
            return self._answer_of(NOT_FOUND, "申请不存在或已撤回", HTTPStatus.NOT_FOUND)
        return self._ok(self._state(case))

    def _state(self, case: Case) -> dict[str, Any]:
        decision = self._book.decision(case)
        if decision is None:
            state, opinion = STATES["received" if case.in_first_half() else "reviewing"]
            return {"applyNo": case.reference, "state": state, "opinion": opinion, "finishTime": None}
        finished = case.decided_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return {"applyNo": case.reference, "state": "03" if decision[0] else "04", "opinion": decision[1],
                "finishTime": finished}

    def _withdraw(self, request: Request, document: dict[str, Any]) -> Reply:
        """withdrawn true (again true when repeated), false once decided; unknown → 404."""
        self._counters.bump("cancels_received")
        withdrawn = self._book.cancel(str(document.get("applyNo") or ""))
        if withdrawn is None:
            return self._answer_of(NOT_FOUND, "申请不存在或已撤回", HTTPStatus.NOT_FOUND)
        return self._ok({"withdrawn": withdrawn})

# --------------------------------------------------------------------------- foreground use


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    app_key: str = DEFAULT_APP_KEY,
    secret: str = DEFAULT_SECRET,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    simulator = EmploymentSimulator(port, decision_delay_ms, app_key=app_key, secret=secret)
    serve_forever(simulator, "就业和人才服务 (REST + HMAC-SHA256)", fault)


if __name__ == "__main__":
    run_cli("就业和人才服务 REST/JSON sector simulator", serve, DEFAULT_PORT, EmploymentSimulator.fault_modes)
