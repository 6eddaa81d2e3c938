"""政务服务“好差评”系统 (the province's service-rating platform) simulator: REST/JSON behind a bearer token, one
rating per online matter or visit (一事一评).

Why it exists: the gateway sends every evaluation there as a guaranteed delivery (issue 18, a bundle subscribed
to the case event `evaluated`), and the platform must be shown to receive each one once. As its page says
(docs/sectors/rating_platform.md; the contract is ``rating_platform.openapi.yaml`` next to this file, also served at
``/openapi.yaml``): ``POST /hcp/v1/ratings`` takes {requestId, caseNo, itemCode, channel 1-7, level 5-1, content,
evaluateTime}; the same requestId again is a repeat (the same ratingNo, counted in ``repeats``); another requestId
for a case already rated is refused with code E2001. ``GET /hcp/v1/ratings/{caseNo}`` shows the rating.

Default token (the bundle reads it from ``YIWANG_SECRET_RATING_PLATFORM_TOKEN``): ``hcp-token``.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from adapters.simulators.base import (
    FaultPlan,
    Handler,
    References,
    Reply,
    Request,
    missing_fields,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply

__all__ = ["DEFAULT_TOKEN", "OPENAPI_FILE", "Rating", "RatingPlatformSimulator", "serve"]

DEFAULT_TOKEN: Final = "hcp-token"
DEFAULT_PORT: Final = 8808
OPENAPI_FILE: Final = Path(__file__).with_name("rating_platform.openapi.yaml")

OK: Final = "0000"
MISSING_FIELD: Final = "E1001"
INVALID_FIELD: Final = "E1002"
ALREADY_RATED: Final = "E2001"
REQUIRED_FIELDS: Final = ("requestId", "caseNo", "itemCode", "channel", "level", "evaluateTime")
LEVELS: Final = {"5": "非常满意", "4": "满意", "3": "基本满意", "2": "不满意", "1": "非常不满意"}
CHANNELS: Final = {"1": "PC端", "2": "移动端", "3": "二维码", "4": "政务服务平板", "5": "自助终端", "6": "12345热线",
                   "7": "短信"}


@dataclass(frozen=True)
class Rating:
    """One rating as the platform keeps it."""

    rating_no: str
    request_id: str
    case_no: str
    item_code: str
    channel: str
    level: str
    content: str
    evaluate_time: str


class RatingPlatformSimulator(RestSimulator):
    """The 好差评 platform: ratings in, one per case; ``ratings`` is what it has received (for tests and the demo)."""

    label = "rating_platform"
    sector = "rating_platform"
    server_version = "HcpSim/1.0"
    extra_counters = ("ratings_received", "repeats", "refused_twice")
    reference_prefix = "HCP"
    openapi_file = OPENAPI_FILE
    canned_success = {"code": OK, "msg": "成功", "data": {"ratingNo": "HCP000000000000"}}

    def __init__(self, port: int = 0, decision_delay_ms: int = 0, *, token: str = DEFAULT_TOKEN,
                 host: str = "127.0.0.1") -> None:
        super().__init__(host, port, decision_delay_ms, lambda fields: (True, ""))
        self.token = token  # what the platform issued us; change it to refuse ours
        self._ratings: dict[str, Rating] = {}  # by case number
        self._numbers = References(self.reference_prefix, self.reference_width, self.reference_unit_ms)
        self._lock = threading.Lock()

    @property
    def ratings(self) -> list[Rating]:
        with self._lock:
            return list(self._ratings.values())

    def _routes(self) -> list[RestRoute]:
        return [
            RestRoute("POST", "/hcp/v1/ratings", self._authorised(self._json_handler(self._rate))),
            RestRoute("GET", "/hcp/v1/ratings/{caseNo}", self._authorised(self._show)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"code": str(code), "msg": message})

    def _business_error(self, code: str, message: str) -> Reply:
        self._counters.bump("business_errors")
        return json_reply(HTTPStatus.OK, {"code": code, "msg": message})

    def _ok(self, rating: Rating) -> Reply:
        return json_reply(HTTPStatus.OK, {"code": OK, "msg": "成功", "data": {
            "ratingNo": rating.rating_no, "caseNo": rating.case_no, "level": rating.level, "channel": rating.channel}})

    def _authorised(self, handler: Handler) -> Handler:
        def guarded(request: Request) -> Reply:
            given = (request.header("Authorization") or "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                self._counters.bump("auth_failures")
                return self._error(HTTPStatus.UNAUTHORIZED, 401, "访问令牌无效或已过期")
            return handler(request)

        return guarded

    def _rate(self, request: Request, document: dict[str, Any]) -> Reply:
        """A new ratingNo; the same requestId again gets the same one; another requestId for a rated case: E2001."""
        self._counters.bump("submits_received")
        missing = missing_fields(document, REQUIRED_FIELDS)
        if missing:
            return self._business_error(MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}")
        level, channel = str(document["level"]), str(document["channel"])
        if level not in LEVELS or channel not in CHANNELS:
            return self._business_error(INVALID_FIELD, "评价等级（1-5）或评价渠道（1-7）取值不正确")
        case_no = str(document["caseNo"])
        with self._lock:
            earlier = self._ratings.get(case_no)
            if earlier is not None and earlier.request_id == str(document["requestId"]):
                self._counters.bump("repeats")
                return self._ok(earlier)
            if earlier is not None:
                self._counters.bump("refused_twice")
                return self._business_error(ALREADY_RATED, f"办件 {case_no} 已评价，一事一评，不能重复评价")
            rating = Rating(self._numbers.next(), str(document["requestId"]), case_no,
                            str(document["itemCode"]), channel, level, str(document.get("content") or ""),
                            str(document["evaluateTime"]))
            self._ratings[case_no] = rating
        self._counters.bump("ratings_received")
        return self._ok(rating)

    def _show(self, request: Request) -> Reply:
        with self._lock:
            rating = self._ratings.get(request.params.get("caseNo", ""))
        if rating is None:
            return self._error(HTTPStatus.NOT_FOUND, 404, "该办件尚无评价")
        return self._ok(rating)


# --------------------------------------------------------------------------- foreground use


def serve(port: int = DEFAULT_PORT, decision_delay_ms: int = 0, token: str = DEFAULT_TOKEN,
          fault: FaultPlan | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    serve_forever(RatingPlatformSimulator(port, decision_delay_ms, token=token), "政务服务好差评系统 (REST + bearer)",
                  fault)


if __name__ == "__main__":
    run_cli("政务服务好差评系统 REST/JSON simulator", serve, DEFAULT_PORT, RatingPlatformSimulator.fault_modes)
