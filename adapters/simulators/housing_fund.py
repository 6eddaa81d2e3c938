"""住房公积金 (housing provident fund) sector simulator: REST/JSON behind OAuth2 client credentials.

Why it exists: the gateway's REST adapter kind needs a sector that authenticates with short-lived
bearer tokens (so token refresh is exercised), answers business errors as ``code != 0`` inside
HTTP 200, keys idempotency on a header, pages its lists, and misbehaves on demand like the others.
The contract is ``housing_fund.openapi.yaml`` next to this file, also served at ``/openapi.yaml``.

Default credentials (the shipped bundle reads them from ``YIWANG_SECRET_GJJ_CLIENT_ID`` and
``YIWANG_SECRET_GJJ_CLIENT_SECRET``): client id ``yiwang``, client secret ``s3cret``.

Known persons: every well-formed 18-character ID number has an account (balance and 57 monthly
deposits derived from the number); anything else is "未查询到缴存账户" (code 4040).
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import threading
import time
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from adapters.simulators.base import (
    Case,
    Decider,
    FaultPlan,
    Handler,
    Reply,
    Request,
    dig,
    missing_fields,
    person_seed,
    recent_months,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "OPENAPI_FILE",
    "HousingFundSimulator",
    "default_decide",
    "serve",
]

DEFAULT_CLIENT_ID: Final = "yiwang"
DEFAULT_CLIENT_SECRET: Final = "s3cret"
DEFAULT_PORT: Final = 8802
OPENAPI_FILE: Final = Path(__file__).with_name("housing_fund.openapi.yaml")

CODE_OK: Final = 0
CODE_MISSING_FIELD: Final = 4001
CODE_INVALID_FIELD: Final = 4002
CODE_NO_ACCOUNT: Final = 4040
MAX_PAGE_SIZE: Final = 100

# Where each body field lives, its JSON type, and whether the sector insists on it.
_APPLICATION_FIELDS: Final[tuple[tuple[str, type, bool], ...]] = (
    ("bizType", str, True),
    ("applicationNo", str, True),
    ("applicant", dict, True),
    ("applicant.fullName", str, True),
    ("applicant.idCardNo", str, True),
    ("applicant.mobile", str, False),
    ("attachments", list, False),
    ("formData", dict, False),
    ("acceptedAt", int, True),
    ("priority", str, False),
)
_PRIORITIES: Final = frozenset({"GREEN", "NORMAL"})


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """Withdrawing more than the house cost is refused; anything else is approved."""
    form = fields.get("formData") or {}
    amount, price = _decimal(form.get("amount")), _decimal(form.get("house_price"))
    if amount is not None and price is not None and amount > price:
        return False, "提取金额超过购房款"
    return True, "审核通过，款项将于3个工作日内到账"


def _decimal(value: object) -> Decimal | None:
    """Numbers or numeric strings; anything else counts as absent."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# --------------------------------------------------------------------------- validation


def _wrong_type(value: object, kind: type) -> bool:
    """Absent is fine here (required-ness is checked apart); JSON true is not an integer."""
    return value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool)))


def _application_problem(document: dict[str, Any]) -> tuple[int, str] | None:
    """The first thing wrong with an application body as (business code, message), or None."""
    missing = missing_fields(document, (path for path, _, required in _APPLICATION_FIELDS if required))
    if missing:
        return CODE_MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}"
    for path, kind, _ in _APPLICATION_FIELDS:
        if _wrong_type(dig(document, path), kind):
            return CODE_INVALID_FIELD, f"字段格式不正确：{path}"
    if document.get("priority", "NORMAL") not in _PRIORITIES:
        return CODE_INVALID_FIELD, "字段格式不正确：priority"
    for index, item in enumerate(document.get("attachments") or []):
        well_formed = (
            isinstance(item, dict) and isinstance(item.get("title"), str) and isinstance(item.get("received"), bool)
        )
        if not well_formed:
            return CODE_INVALID_FIELD, f"字段格式不正确：attachments[{index}]"
    return None


def _page_params(request: Request) -> tuple[int, int] | None:
    """page >= 1 and 1 <= pageSize <= 100 (defaults 1 and 20), or None if unreadable."""
    try:
        page = int(request.query_param("page") or 1)
        size = int(request.query_param("pageSize") or 20)
    except ValueError:
        return None
    return (page, size) if page >= 1 and 1 <= size <= MAX_PAGE_SIZE else None


# --------------------------------------------------------------------------- the simulator


class HousingFundSimulator(RestSimulator):
    """The 公积金 service: applications, their status and cancellation, account balance and deposits.

    ``url`` is the base URL (http://127.0.0.1:PORT); paths as in SECTORS.md. Tokens from
    ``POST /oauth/token`` live ``token_ttl_s`` seconds. The token endpoint is outside the fault
    plan (an identity server apart from the business system), the business API is not.
    """

    label = "housing-fund"
    sector = "housing_fund"
    server_version = "GjjSim/2.0"
    extra_counters = ("tokens_issued", "cancels_received")
    reference_prefix = "GJJ"
    reference_width = 10  # GJJ + 10 digits: the pattern of its OpenAPI document
    reference_unit_ms = 10  # so ten digits last three years (References)
    openapi_file = OPENAPI_FILE
    canned_success = {"code": CODE_OK, "msg": "ok", "data": {"ticketId": "GJJ0000000000"}}

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_ttl_s: float = 300,
        deposit_months: int = 57,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if token_ttl_s <= 0:
            raise ValueError("token_ttl_s must be > 0")
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self._client = (client_id, client_secret)
        self._token_ttl_s = token_ttl_s
        self._deposit_months = deposit_months
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._tokens_lock = threading.Lock()

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    def _routes(self) -> list[RestRoute]:
        applications = "/api/v2/applications"
        accounts = "/api/v2/accounts/{idCardNo}"
        return [
            RestRoute("POST", "/oauth/token", self._issue_token, faultable=False),
            RestRoute("POST", applications, self._bearer(self._json_handler(self._submit))),
            RestRoute("GET", applications + "/{ticketId}", self._bearer(self._status)),
            RestRoute("DELETE", applications + "/{ticketId}", self._bearer(self._cancel)),
            RestRoute("GET", accounts + "/balance", self._bearer(self._balance)),
            RestRoute("GET", accounts + "/deposits", self._bearer(self._deposits)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"code": code, "msg": message})

    def _ok(self, data: dict[str, Any], status: int = HTTPStatus.OK) -> Reply:
        return json_reply(status, {"code": CODE_OK, "msg": "ok", "data": data})

    def _business_error(self, code: int, message: str) -> Reply:
        self._counters.bump("business_errors")
        return self._error(HTTPStatus.OK, code, message)

    # ----- OAuth2 client credentials

    def _issue_token(self, request: Request) -> Reply:
        """RFC 6749 §4.4: client authenticated with HTTP Basic, grant_type=client_credentials."""
        if self._basic_credentials(request) != self._client:
            self._counters.bump("auth_failures")
            body = {"error": "invalid_client", "error_description": "客户端认证失败"}
            return json_reply(HTTPStatus.UNAUTHORIZED, body, (("WWW-Authenticate", 'Basic realm="gjj"'),))
        form = parse_qs(request.body.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return json_reply(HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(24)
        with self._tokens_lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}  # forget the expired
            self._tokens[token] = now + self._token_ttl_s
        self._counters.bump("tokens_issued")
        answer: dict[str, Any] = {
            "access_token": token, "token_type": "Bearer", "expires_in": math.ceil(self._token_ttl_s)
        }
        if "scope" in form:
            answer["scope"] = form["scope"][0]
        return json_reply(HTTPStatus.OK, answer, (("Cache-Control", "no-store"),))

    @staticmethod
    def _basic_credentials(request: Request) -> tuple[str, str] | None:
        scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def _bearer(self, handler: Handler) -> Handler:
        """Guard a business endpoint: an unknown or expired token is 401 invalid_token."""

        def guarded(request: Request) -> Reply:
            scheme, _, token = (request.header("Authorization") or "").partition(" ")
            with self._tokens_lock:
                expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if expiry is None or expiry <= time.monotonic():
                self._counters.bump("auth_failures")
                reply = self._error(HTTPStatus.UNAUTHORIZED, 401, "invalid_token")
                return reply._replace(headers=(("WWW-Authenticate", 'Bearer error="invalid_token"'),))
            return handler(request)

        return guarded

    # ----- applications

    def _submit(self, request: Request, document: dict[str, Any]) -> Reply:
        """201 with a new ticket; the same X-Request-Id again is 200 with the same ticket."""
        self._counters.bump("submits_received")
        request_id = request.header("X-Request-Id")
        if not request_id:
            return self._business_error(CODE_MISSING_FIELD, "缺少请求头：X-Request-Id")
        problem = _application_problem(document)
        if problem is not None:
            return self._business_error(*problem)
        case, created = self._book.apply(request_id, document)
        return self._ok({"ticketId": case.reference}, HTTPStatus.CREATED if created else HTTPStatus.OK)

    def _application(self, request: Request) -> Case | None:
        case = self._book.get(request.params["ticketId"])
        return None if case is None or case.cancelled else case  # a cancelled one is gone (DELETE)

    def _status(self, request: Request) -> Reply:
        """PENDING, then REVIEWING (second half of the delay), then APPROVED/REJECTED."""
        self._counters.bump("queries_received")
        case = self._application(request)
        if case is None:
            return self._error(HTTPStatus.NOT_FOUND, 404, "申请不存在")
        data: dict[str, Any] = {"ticketId": case.reference}
        decision = self._book.decision(case)
        if decision is None:
            waiting = case.in_first_half()
            data |= {
                "status": "PENDING" if waiting else "REVIEWING", "remark": "已受理，等待审核" if waiting else "审核中"
            }
            return self._ok(data | {"decidedAt": None})
        approved, remark = decision
        decided_at = int(case.decided_at.timestamp() * 1000)
        return self._ok(
            data | {"status": "APPROVED" if approved else "REJECTED", "remark": remark, "decidedAt": decided_at}
        )

    def _cancel(self, request: Request) -> Reply:
        """cancelled true (again true when repeated), false once decided; unknown → 404."""
        self._counters.bump("cancels_received")
        cancelled = self._book.cancel(request.params["ticketId"])
        if cancelled is None:
            return self._error(HTTPStatus.NOT_FOUND, 404, "申请不存在")
        return self._ok({"cancelled": cancelled})

    # ----- accounts

    def _balance(self, request: Request) -> Reply:
        self._counters.bump("queries_received")
        seed = person_seed(request.params["idCardNo"])
        if seed is None:
            return self._business_error(CODE_NO_ACCOUNT, "未查询到缴存账户")
        balance = Decimal(seed % 50_000_00) / 100
        return self._ok({"balance": f"{balance:.2f}", "currency": "CNY", "status": "NORMAL"})

    def _deposits(self, request: Request) -> Reply:
        """One deposit a month, newest first, ``deposit_months`` of them, paged."""
        self._counters.bump("queries_received")
        seed = person_seed(request.params["idCardNo"])
        if seed is None:
            return self._business_error(CODE_NO_ACCOUNT, "未查询到缴存账户")
        paging = _page_params(request)
        if paging is None:
            return self._business_error(
                CODE_INVALID_FIELD, f"分页参数不正确：page >= 1，1 <= pageSize <= {MAX_PAGE_SIZE}"
            )
        page, size = paging
        amount = f"{Decimal(300 + seed % 1500):.2f}"
        months = recent_months(self._deposit_months)[(page - 1) * size : page * size]
        items = [{"month": f"{year:04d}-{month:02d}", "amount": amount} for year, month in months]
        return self._ok({"items": items, "page": page, "pageSize": size, "total": self._deposit_months})


# --------------------------------------------------------------------------- foreground use


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    token_ttl_s: float = 300,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    simulator = HousingFundSimulator(
        port, decision_delay_ms, client_id=client_id, client_secret=client_secret, token_ttl_s=token_ttl_s
    )
    serve_forever(simulator, "公积金 (REST + OAuth2)", fault)


if __name__ == "__main__":
    run_cli("住房公积金 REST/JSON sector simulator", serve, DEFAULT_PORT, HousingFundSimulator.fault_modes)
