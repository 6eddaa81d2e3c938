"""Texts a citizen or clerk reads are Chinese (issue 16): every refusal's `title` and `detail`, and each
`errors[].msg`, while the `type` slugs (the problem's and each error's) stay the stable English identifiers
programs match on. Nothing the caller sent is echoed back.

One table of refusals, one per kind of answer the hall meets: 401, 403, 404, 409, 413, 415, 422 (several
pydantic error types, a validator of ours, the case rules), 429 and 503.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.http.errors import FALLBACK_MESSAGE, PYDANTIC_MESSAGES, chinese_message
from tests.support.gateways import COMPLETE_APPLICATION, Keys

PROBLEM = "urn:yiwang:problem:"
CJK = re.compile(r"[\u4e00-\u9fff]")
# An English sentence: three or more Latin words in a row with spaces between (an identifier, a slug, a list
# of choices joined by 、 is no sentence).
ENGLISH_SENTENCE = re.compile(r"[A-Za-z]+(?: [A-Za-z]+){2,}")
UNKNOWN_CASE = "12150200MB1A00010L300080500100020261124999999"
SECRET_INPUT = "150203198503120039"  # what a refused request carried: never in the answer


@dataclass(frozen=True)
class Refusal:
    name: str
    who: str  # a key of Clients.by_role, or "anonymous"
    method: str
    path: str
    status: int
    slug: str
    error_types: tuple[str, ...] = ()  # errors[].type, in order, when the answer lists errors
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] | None = None


def application(**changes: Any) -> dict[str, Any]:
    return {**COMPLETE_APPLICATION, **changes}


REFUSALS = [
    Refusal("no key", "anonymous", "GET", f"/v1/cases/{UNKNOWN_CASE}", 401, "not-authenticated"),
    Refusal("wrong role", "hall", "GET", "/v1/ops/dead-letters", 403, "forbidden"),
    Refusal("window channel from the hall", "hall", "POST", "/v1/cases", 403, "forbidden",
            json=application(channel="city_window")),
    Refusal("no such case", "hall", "GET", f"/v1/cases/{UNKNOWN_CASE}", 404, "case-not-found"),
    Refusal("no such matter", "hall", "POST", "/v1/cases", 404, "unknown-matter",
            json=application(matter_code="12150200MB1A00010L3000805999000")),
    Refusal("no such document", "hall", "GET", "/v1/cases/{case_no}/documents/passport", 404,
            "document-not-available"),
    Refusal("no such webhook", "hall", "DELETE", "/v1/webhooks/wh_000000000000", 404, "unknown-webhook"),
    Refusal("no such dead letter", "operator", "GET", "/v1/ops/dead-letters/999999", 404, "dead-letter-not-found"),
    Refusal("accepted twice", "window", "POST", "/v1/cases/{case_no}/accept", 409, "transition-not-allowed",
            json={}),
    Refusal("stale version", "window", "POST", "/v1/cases/{case_no}/withdraw", 409, "stale-version",
            json={"reason": "申请人撤回"}, headers={"If-Match": '"99"'}),
    Refusal("body too large", "hall", "POST", "/v1/cases", 413, "payload-too-large",
            json=application(form={"note": "长" * 1200})),
    Refusal("not JSON", "hall", "POST", "/v1/cases", 415, "unsupported-media-type", content=b"name=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Refusal("missing, too long, pattern, extra, literal", "hall", "POST", "/v1/cases", 422, "invalid-request",
            ("missing", "string_too_long", "string_pattern_mismatch", "literal_error", "extra_forbidden"),
            json={"matter_code": COMPLETE_APPLICATION["matter_code"],
                  "applicant": {"name": "王" * 65, "id_number": SECRET_INPUT, "phone": "not-a-phone"},
                  "channel": "carrier-pigeon", "surprise": SECRET_INPUT,
                  "materials": [{"file_ref": "x"}]}),
    Refusal("wrong types", "hall", "POST", "/v1/cases", 422, "invalid-request",
            ("model_attributes_type", "list_type", "dict_type"),
            json={"matter_code": COMPLETE_APPLICATION["matter_code"], "applicant": SECRET_INPUT,
                  "materials": SECRET_INPUT, "form": [SECRET_INPUT]}),
    Refusal("query numbers", "operator", "GET", "/v1/ops/dead-letters/counts?min_attempts=-1&max_attempts=x", 422,
            "invalid-request", ("greater_than_equal", "int_parsing")),
    Refusal("a validator of ours", "operator", "GET",
            "/v1/ops/dead-letters?since=2026-11-25T00:00:00%2B08:00&until=2026-11-24T00:00:00%2B08:00", 422,
            "invalid-request", ("value_error",)),
    Refusal("a datetime that is none", "operator", "GET", "/v1/ops/dead-letters?since=yesterday", 422,
            "invalid-request", ("datetime_from_date_parsing",)),
    Refusal("the matter's rules", "hall", "POST", "/v1/cases", 422, "invalid-application",
            json=application(materials=[{"name": "户口本"}])),
    Refusal("the case rules", "hall", "POST", "/v1/cases/{case_no}/evaluation", 409, "transition-not-allowed",
            json={"level": "very_satisfied", "channel": "pc"}),
    Refusal("unknown address", "hall", "GET", "/v1/nowhere", 404, "not-found"),
    Refusal("two duties in one key", "security", "POST", "/v1/identities", 422, "separation-of-duties",
            json={"name": "root", "roles": ["auditor", "system_admin"]}),
    Refusal("no such identity", "security", "POST", "/v1/identities/id_000000000000/revoke", 404, "unknown-identity",
            json={}),
]


class Clients:
    def __init__(self, gateway: Gateway) -> None:
        self.app = create_app(gateway)
        keys = Keys.issue(gateway)
        self.by_role = {"anonymous": {}, "hall": keys.hall, "window": keys.window, "operator": keys.operator,
                        "issuing": keys.issuing, "security": Keys.of(gateway, Role.SECURITY_ADMIN)}

    def send(self, refusal: Refusal, case_no: str) -> Any:
        with TestClient(self.app, headers=self.by_role[refusal.who]) as client:
            return client.request(refusal.method, refusal.path.format(case_no=case_no), json=refusal.json,
                                  content=refusal.content, headers=refusal.headers)


@pytest.fixture
def office(make_gateway: Callable[..., Gateway]) -> Iterator[tuple[Clients, str]]:
    gateway = make_gateway(max_body_bytes=2048)
    clients = Clients(gateway)
    with TestClient(clients.app, headers=clients.by_role["hall"]) as hall:
        case_no = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]  # accepted on the spot
    yield clients, case_no


def assert_chinese(problem: dict[str, Any]) -> None:
    texts = [problem["title"], *([problem["detail"]] if "detail" in problem else []),
             *(e["msg"] for e in problem.get("errors") or ())]
    for text in texts:
        assert CJK.search(text), f"not Chinese: {text!r}"
        assert not ENGLISH_SENTENCE.search(text), f"an English sentence: {text!r}"
    assert SECRET_INPUT not in str(problem)


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
def test_every_refusal_reads_in_chinese_with_its_english_slug(office: tuple[Clients, str], refusal: Refusal) -> None:
    clients, case_no = office
    answer = clients.send(refusal, case_no)
    assert answer.status_code == refusal.status, answer.text
    problem = answer.json()
    assert problem["type"] == PROBLEM + refusal.slug
    assert_chinese(problem)
    if refusal.error_types:
        assert [e["type"] for e in problem["errors"]][:len(refusal.error_types)] == list(refusal.error_types) \
            or sorted({e["type"] for e in problem["errors"]}) == sorted(set(refusal.error_types)), problem["errors"]


def test_too_many_requests_is_a_chinese_429(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), rate_limit_per_s=0.5, rate_limit_burst=1)
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.HALL_CLIENT)) as hall:
        hall.get("/v1/matters")
        refused = hall.get("/v1/matters")
    assert refused.status_code == 429 and refused.json()["type"] == PROBLEM + "rate-limited"
    assert_chinese(refused.json())


def test_a_lost_database_is_a_chinese_503(make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    gateway = make_gateway(bundles=())

    def lost(*_: Any) -> Any:
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))

    monkeypatch.setattr(gateway.service, "get", lost)
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.HALL_CLIENT)) as hall:
        answer = hall.get(f"/v1/cases/{UNKNOWN_CASE}")
    assert answer.status_code == 503 and answer.json()["type"] == PROBLEM + "database-unavailable"
    assert_chinese(answer.json())


# --- the message table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "says"), [
    ({"type": "missing", "msg": "Field required"}, "缺少此字段"),
    ({"type": "string_too_long", "msg": "…", "ctx": {"max_length": 64}}, "长度超过上限 64"),
    ({"type": "greater_than_equal", "msg": "…", "ctx": {"ge": 1}}, "应大于或等于 1"),
    ({"type": "literal_error", "msg": "…", "ctx": {"expected": "'a', 'b' or 'c'"}}, "应为以下取值之一：a、b、c"),
    ({"type": "enum", "msg": "…", "ctx": {"expected": "1 or 2"}}, "应为以下取值之一：1 or 2"),  # not quoted: as given
    ({"type": "string_too_long", "msg": "…"}, "长度超过上限"),  # no context: said without the number
    ({"type": "value_error", "msg": "Value error, since 应早于 until",
      "ctx": {"error": ValueError("since 应早于 until")}}, "取值无效：since 应早于 until"),
    ({"type": "value_error", "msg": "Value error, nope", "ctx": {"error": ValueError("nope")}}, FALLBACK_MESSAGE),
    ({"type": "text_refused", "msg": "申请人姓名含有控制字符"}, "申请人姓名含有控制字符"),  # a Chinese custom type
    ({"type": "some_future_type", "msg": "Something went wrong"}, FALLBACK_MESSAGE),
])
def test_pydantic_errors_read_in_chinese(error: dict[str, Any], says: str) -> None:
    assert chinese_message(error) == says


def test_every_message_of_the_table_is_chinese_and_every_type_the_api_meets_is_in_it() -> None:
    assert all(CJK.search(text) for text in PYDANTIC_MESSAGES.values())
    common = {"missing", "extra_forbidden", "string_type", "string_too_short", "string_too_long",
              "string_pattern_mismatch", "int_parsing", "int_type", "float_parsing", "bool_parsing",
              "greater_than", "greater_than_equal", "less_than", "less_than_equal", "literal_error", "enum",
              "list_type", "dict_type", "model_type", "too_short", "too_long", "date_from_datetime_parsing",
              "datetime_from_date_parsing", "datetime_parsing", "value_error", "finite_number", "json_invalid"}
    assert common <= set(PYDANTIC_MESSAGES)
