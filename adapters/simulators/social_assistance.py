"""社会救助 (social assistance) sector simulator: REST with form-encoded request bodies, a ``sign`` form field
(an SM3 keyed digest), and every answer HTTP 200 with ``{"code", "msg", "data"}``.

Why it exists: the dialect where nothing is in the headers and nothing is an HTTP status (issue 17). As its
page says (docs/sectors/social_assistance.md; the contract is ``social_assistance.openapi.yaml`` next to
this file, also served at ``/openapi.yaml``): every request body is ``application/x-www-form-urlencoded`` with
``appid``, ``timestamp`` (epoch milliseconds, ±300 s), ``nonce_str`` (never reused) and ``sign`` =
hex lower of SM3(``k1=v1&k2=v2…`` over every other field sorted by name, values as decoded, + ``&key=`` +
secret). Refusals of the signature, clock or nonce are codes too (40001…40005); code 0 is success; some
business codes are final refusals (42001 不符合救助条件, 42002 已有在办申请). Times are UTC epoch ms.
The business system's own failures (the ``fault`` and ``rate_limit`` switches) keep their HTTP 500 and 429:
they come from the platform in front of it.

Default credentials (the bundle reads the secret from ``YIWANG_SECRET_SOCIAL_ASSISTANCE_KEY``): appid
``yw_gateway``, secret ``jz-secret``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes

from adapters.simulators.base import (
    Case,
    Decider,
    FaultPlan,
    Handler,
    Reply,
    Request,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply
from adapters.simulators.signed import Refusal, Verdict

__all__ = ["DEFAULT_APPID", "DEFAULT_SECRET", "LOW_INCOME_STANDARD", "OPENAPI_FILE", "SocialAssistanceSimulator",
           "default_decide", "serve", "sign", "signed_text"]

log = logging.getLogger(__name__)

DEFAULT_APPID: Final = "yw_gateway"
DEFAULT_SECRET: Final = "jz-secret"
DEFAULT_PORT: Final = 8807
OPENAPI_FILE: Final = Path(__file__).with_name("social_assistance.openapi.yaml")
LOW_INCOME_STANDARD: Final = Decimal(880)  # 元/人·月, the city's 最低生活保障标准 the page states
SAVINGS_MONTHS: Final = 24  # savings above this many months of the standard per person: refused

OK: Final = 0
REFUSALS: Final = {  # code and msg of each refusal before business, as the page lists them
    Refusal.SIGNATURE: (40001, "签名错误"),
    Refusal.STALE: (40002, "时间戳过期"),
    Refusal.REPLAY: (40003, "重复请求"),
    Refusal.APP: (40004, "appid无效"),
    Refusal.MISSING: (40005, "缺少签名参数：appid、timestamp、nonce_str、sign"),
}
MISSING_FIELD: Final = 41001
INVALID_FIELD: Final = 41002
NOT_ELIGIBLE: Final = 42001  # final
ALREADY_PENDING: Final = 42002  # final for this request: the earlier application stands
NOT_FOUND: Final = 44001
REQUIRED_APPLY: Final = ("req_no", "item_code", "case_no", "name", "id_no", "family_size", "monthly_income",
                         "accept_time")
STATUS_WAITING: Final = ("1", "待审核")
STATUS_REVIEWING: Final = ("2", "审核中")


# --------------------------------------------------------------------------- signatures (the page's formula)


def signed_text(form: dict[str, str]) -> str:
    """Every field but ``sign``, sorted by name, ``k=v`` (values as decoded) joined with ``&``."""
    return "&".join(f"{key}={value}" for key, value in sorted(form.items()) if key != "sign")


def sign(secret: str, form: dict[str, str]) -> str:
    """hex lower of SM3(signed_text + "&key=" + secret)."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(f"{signed_text(form)}&key={secret}".encode())
    return digest.finalize().hex()


# --------------------------------------------------------------------------- decisions


def _amount(value: object) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """Savings (``savings``) above 24 months of the standard per person: refused; else the monthly top-up."""
    size = int(fields["family_size"])
    savings = _amount(fields.get("savings") or "0") or Decimal(0)
    if savings > LOW_INCOME_STANDARD * size * SAVINGS_MONTHS:
        return False, "经家庭经济状况核对，家庭存款超过规定标准，不予批准"
    top_up = LOW_INCOME_STANDARD * size - Decimal(str(fields["monthly_income"]))
    return True, f"经审核，准予临时救助，救助金{top_up:.2f}元"


# --------------------------------------------------------------------------- the simulator


class SocialAssistanceSimulator(RestSimulator):
    """The 社会救助 service: apply, query, cancel; paths under ``/shjz/open/v1``, all POST with form bodies.

    Refusals to rehearse: ``secret`` (another one: our signs no longer match) and ``verdict``
    (adapters/simulators/signed.py: a drifted clock, every nonce seen).
    """

    label = "social-assistance"
    sector = "social_assistance"
    server_version = "ShjzSim/1.0"
    extra_counters = ("cancels_received",)
    reference_prefix = "JZ"
    openapi_file = OPENAPI_FILE
    canned_success = {"code": OK, "msg": "成功", "data": {"apply_id": "JZ000000000000", "accept_time": 0}}

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self.appid, self.secret = appid, secret  # what the sector issued us; change to refuse our key
        self.verdict = Verdict(unit_ms=1)

    def _routes(self) -> list[RestRoute]:
        base = "/shjz/open/v1"
        return [
            RestRoute("POST", base + "/apply", self._signed(self._apply)),
            RestRoute("POST", base + "/query", self._signed(self._query)),
            RestRoute("POST", base + "/cancel", self._signed(self._cancel)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        """HTTP 200 with the code, save the platform's own 500 and 429."""
        kept = status if status in (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.TOO_MANY_REQUESTS) else HTTPStatus.OK
        return json_reply(kept, {"code": code, "msg": message, "data": None})

    def _coded(self, code: int, message: str, data: dict[str, Any] | None = None) -> Reply:
        return json_reply(HTTPStatus.OK, {"code": code, "msg": message, "data": data})

    def _business_error(self, code: int, message: str) -> Reply:
        self._counters.bump("business_errors")
        return self._coded(code, message)

    # ----- signatures

    def _signed(self, handler: Callable[[dict[str, str]], Reply]) -> Handler:
        """Read the form, check it; ``handler`` gets the request and its fields."""

        def guarded(request: Request) -> Reply:
            form = _form(request)
            if form is None:
                return self._business_error(INVALID_FIELD, "请求体须为application/x-www-form-urlencoded（UTF-8）")
            refusal = self._refusal(form)
            if refusal is None:
                return handler(form)
            log.debug("social-assistance simulator refused a request: %s", refusal.value)
            self._counters.bump("auth_failures")
            return self._coded(*REFUSALS[refusal])

        return guarded

    def _refusal(self, form: dict[str, str]) -> Refusal | None:
        if not all(form.get(name) for name in ("appid", "timestamp", "nonce_str", "sign")):
            return Refusal.MISSING
        if not hmac.compare_digest(form["appid"].encode(), self.appid.encode()):
            return Refusal.APP
        if self.verdict.stale(form["timestamp"]):
            return Refusal.STALE
        if not hmac.compare_digest(sign(self.secret, form).encode(), form["sign"].encode()):
            return Refusal.SIGNATURE
        return Refusal.REPLAY if self.verdict.replayed(form["nonce_str"]) else None

    # ----- applications

    def _apply(self, form: dict[str, str]) -> Reply:
        """A new apply_id (the same req_no again: the same); 42001 when the income is above the standard."""
        self._counters.bump("submits_received")
        missing = [name for name in REQUIRED_APPLY if not form.get(name)]
        if missing:
            return self._business_error(MISSING_FIELD, f"缺少必填参数：{'、'.join(missing)}")
        problem = _apply_problem(form)
        if problem is not None:
            return self._business_error(*problem)
        if self._pending_for(form["id_no"], form["req_no"]):
            return self._business_error(ALREADY_PENDING, "申请人已有在办的救助申请，不予重复受理")
        case, _ = self._book.apply(form["req_no"], form)
        return self._coded(OK, "受理成功", {"apply_id": case.reference, "accept_time": _epoch_ms(case)})

    def _pending_for(self, id_no: str, req_no: str) -> bool:
        """Another request's case for the same person still undecided (a repeat of the same req_no is not)."""
        return any(
            case.fields.get("id_no") == id_no and case.fields.get("req_no") != req_no
            and not case.cancelled and self._book.decision(case) is None
            for case in self._book.cases()
        )

    def _query(self, form: dict[str, str]) -> Reply:
        """status 1 待审核, 2 审核中, 3 批准, 4 不予批准; decide_time epoch ms once decided."""
        self._counters.bump("queries_received")
        case = self._book.live(form.get("apply_id", ""))
        if case is None:
            return self._business_error(NOT_FOUND, "申请不存在或已撤销")
        decision = self._book.decision(case)
        data: dict[str, Any] = {"apply_id": case.reference, "accept_time": _epoch_ms(case)}
        if decision is None:
            status, opinion = STATUS_WAITING if case.in_first_half() else STATUS_REVIEWING
            return self._coded(OK, "成功", data | {"status": status, "opinion": opinion, "decide_time": None})
        approved, opinion = decision
        decided = int(case.decided_at.timestamp() * 1000)
        return self._coded(OK, "成功", data | {"status": "3" if approved else "4", "opinion": opinion,
                                                "decide_time": decided})

    def _cancel(self, form: dict[str, str]) -> Reply:
        """cancelled true (again true), false once decided; unknown → 44001."""
        self._counters.bump("cancels_received")
        cancelled = self._book.cancel(form.get("apply_id", ""))
        if cancelled is None:
            return self._business_error(NOT_FOUND, "申请不存在或已撤销")
        return self._coded(OK, "成功", {"cancelled": cancelled})

def _form(request: Request) -> dict[str, str] | None:
    """The form's fields (the last of a repeated name), or None if the body is not a UTF-8 form."""
    if not (request.header("Content-Type") or "").lower().startswith("application/x-www-form-urlencoded"):
        return None
    try:
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(request.body)))
    except (UnicodeDecodeError, ValueError):
        return None


def _apply_problem(form: dict[str, str]) -> tuple[int, str] | None:
    """A malformed number (41002), or a monthly income per person above the standard (42001, final)."""
    income = _amount(form["monthly_income"])
    size = int(form["family_size"]) if form["family_size"].isdigit() else 0
    if income is None or not 1 <= size <= 20 or not form["accept_time"].isdigit():
        return INVALID_FIELD, "参数格式错误：family_size、monthly_income、accept_time"
    if income / size > LOW_INCOME_STANDARD:
        return NOT_ELIGIBLE, (f"不符合救助条件：家庭月人均收入{income / size:.2f}元，"
                              f"高于本市最低生活保障标准{LOW_INCOME_STANDARD}元")
    return None


def _epoch_ms(case: Case) -> int:
    """When the case was accepted: the applicant's accept_time as sent (epoch ms)."""
    return int(case.fields["accept_time"])


# --------------------------------------------------------------------------- foreground use


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    appid: str = DEFAULT_APPID,
    secret: str = DEFAULT_SECRET,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    simulator = SocialAssistanceSimulator(port, decision_delay_ms, appid=appid, secret=secret)
    serve_forever(simulator, "社会救助 (REST form + SM3 sign)", fault)


if __name__ == "__main__":
    run_cli("社会救助 REST/form sector simulator", serve, DEFAULT_PORT, SocialAssistanceSimulator.fault_modes)
