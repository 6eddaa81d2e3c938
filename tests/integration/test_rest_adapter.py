"""The REST adapter against small real HTTP servers: rendering, failure classes, paging, the registry.

No mocks: a stdlib HTTP server on 127.0.0.1 (port 0) answers as each test scripts it, so httpx
runs exactly as it does against a sector. `LocalServer` is also used by the auth and SOAP 1.2 tests.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

import adapters.kinds.rest.adapter as rest
from adapters.bundle import BundleError
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.kinds.rest.adapter import RestAdapter, RetryAfterError, parse_retry_after
from adapters.registry import Registry
from adapters.resilience import RetryPolicy, with_retries
from mappings import HttpRequest, compile_mapping
from tests.support.local_server import (
    DEPOSITS,
    STATUS as STATUS_SOURCE,
    ENVELOPE_OK,
    TICKET,
    LocalServer,
    Reply,
    Responder,
    Seen,
    free_port,
    make_adapter,
    mappings,
    message,
)

# ------------------------------------------------------------------ a small real server


# ------------------------------------------------------------------ mappings in the housing-fund dialect


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        yield local


@pytest.fixture(autouse=True)
def fresh_script(server: LocalServer) -> None:
    server.script(TICKET)


@pytest.fixture
def adapter(server: LocalServer) -> Iterator[RestAdapter]:
    made = make_adapter(server.url)
    yield made
    made.close()


def failure(adapter: Any, operation: Operation | str = Operation.SUBMIT_CASE, msg: Any = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        adapter.call(operation, msg or message())
    return caught.value


# ------------------------------------------------------------------ the happy path


def test_submit_renders_body_headers_and_idempotency_key(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(TICKET)
    assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
    [seen] = server.seen
    assert (seen.method, seen.path) == ("POST", "/api/v2/applications")
    assert seen.headers["x-request-id"] == "150200-20261124-0001:t2:submit_case"
    assert seen.headers["x-priority"] == "GREEN"
    assert seen.headers["content-type"] == "application/json; charset=utf-8"
    assert "王五".encode() in seen.body  # UTF-8 as is, not \\u escapes
    assert seen.json() == {
        "applicationNo": "150200-20261124-0001",
        "applicant": {"fullName": "王五", "idCardNo": "150202199001011234"},
        "attachments": [{"title": "购房合同", "received": True}],
        "formData": {"amount": 50000, "house_price": 800000},
    }


FORM_SUBMIT = {
    "http": {"method": "POST", "path": "/api/v2/applications", "body": "form"},
    "request": {"applicationNo": {"from": "case.case_no"}, "fullName": {"from": "case.applicant.name"},
                "green": {"from": "case.green_channel"}, "remark": {"value": "a b&c=d"}},
    "response": {**ENVELOPE_OK, "fields": {"sector_ref": {"from": "data.ticketId"}}},
}


def test_a_form_body_goes_on_the_wire_url_encoded(server: LocalServer) -> None:
    adapter = RestAdapter("housing_fund", "1", server.url, mappings(**{str(Operation.SUBMIT_CASE): FORM_SUBMIT}), 2.0)
    try:
        assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
    finally:
        adapter.close()
    [seen] = server.seen
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.body == (b"applicationNo=150200-20261124-0001&fullName=%E7%8E%8B%E4%BA%94&green=true"
                         b"&remark=a+b%26c%3Dd")


def test_get_fills_and_escapes_path_params_and_sends_query_without_body(
    adapter: RestAdapter, server: LocalServer
) -> None:
    answer = {"code": 0, "data": {"status": "APPROVED", "remark": "审核通过", "decidedAt": 1764000000000}}
    server.script(Reply(body=answer))
    result = adapter.call(Operation.QUERY_STATUS, message() | {"sector_ref": "GJJ 1/2?x"})
    assert result == {"status": "approved", "opinion": "审核通过", "decided_at": "2025-11-24T16:00:00Z"}
    [seen] = server.seen
    assert seen.method == "GET" and seen.body == b""
    assert seen.target == "/api/v2/applications/GJJ%201%2F2%3Fx?lang=zh"


def test_render_previews_without_sending(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(TICKET)
    preview = adapter.render(Operation.QUERY_STATUS, message())
    assert preview == HttpRequest(
        "GET", "/api/v2/applications/GJJ0000000001", {"lang": "zh"},
        {"X-Request-Id": "150200-20261124-0001:t2:submit_case"}, None,
    )  # fmt: skip
    assert server.seen == []


def test_one_client_is_reused_across_calls(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(TICKET)
    for _ in range(3):
        adapter.call(Operation.SUBMIT_CASE, message())
    assert len({seen.client_port for seen in server.seen}) == 1  # one kept-alive connection


def test_endpoint_path_prefix_is_kept(server: LocalServer) -> None:
    server.script(TICKET)
    with_prefix = make_adapter(server.url + "/gjj")
    with_prefix.call(Operation.SUBMIT_CASE, message())
    assert server.seen[0].path == "/gjj/api/v2/applications"


def test_idempotency_header_is_left_out_without_a_key(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(TICKET)
    adapter.call(Operation.SUBMIT_CASE, message() | {"idempotency_key": None})
    assert "x-request-id" not in server.seen[0].headers


# ------------------------------------------------------------------ failure classes

DEEP = b"[" * 100_000 + b"]" * 100_000
SHALLOW_BUT_ABSURD = b'{"code": 0, "data": ' + b"[" * 300 + b"]" * 300 + b"}"


@pytest.mark.parametrize(
    ("reply", "failure_class", "retryable"),
    [
        (Reply(500, {"code": 500, "msg": "db down"}), FailureClass.SECTOR_FAULT, True),
        (Reply(503, b"<html>503</html>", "text/html"), FailureClass.SECTOR_FAULT, True),
        (Reply(429, b"", headers={"Retry-After": "1"}), FailureClass.SECTOR_FAULT, True),
        (Reply(401, {"code": 401, "msg": "invalid_token"}), FailureClass.AUTH, False),
        (Reply(403, b""), FailureClass.AUTH, False),
        (Reply(404, {"code": 404}), FailureClass.SECTOR_FAULT, False),
        (Reply(400, {"code": 400}), FailureClass.SECTOR_FAULT, False),
        (Reply(302, b"", headers={"Location": "http://127.0.0.1:9/"}), FailureClass.VALIDATION, False),
        (Reply(200, {"code": 4001, "msg": "缺少申请人"}), FailureClass.SECTOR_FAULT, False),
        (Reply(200, b"<html>ok</html>", "text/html"), FailureClass.VALIDATION, False),
        (Reply(200, b'{"code": 0, "data": {"ticketId": "GJJ'), FailureClass.VALIDATION, False),
        (Reply(200, b'{"code": NaN}'), FailureClass.VALIDATION, False),
        (Reply(200, b"[1, 2]"), FailureClass.VALIDATION, False),
        (Reply(200, DEEP), FailureClass.VALIDATION, False),
        (Reply(200, SHALLOW_BUT_ABSURD), FailureClass.VALIDATION, False),
        (Reply(200, {"code": 0, "data": {}}), FailureClass.MAPPING, False),
    ],
    ids=[
        "http-500", "http-503-html", "http-429", "http-401", "http-403", "http-404", "http-400",
        "redirect-not-followed", "business-error", "html-answer", "truncated-json", "nan", "json-array",
        "hostile-100000-deep", "300-deep", "answer-without-the-field",
    ],
)  # fmt: skip
def test_failure_classes(
    adapter: RestAdapter, server: LocalServer, reply: Reply, failure_class: FailureClass, retryable: bool
) -> None:
    server.script(reply)
    error = failure(adapter)
    assert (error.failure, error.retryable) == (failure_class, retryable), str(error)
    assert len(server.seen) == 1  # nothing followed, nothing retried inside the adapter


def test_messages_name_the_template_not_the_filled_path(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(Reply(404, {"code": 404}))
    error = failure(adapter, Operation.QUERY_STATUS)
    assert error.message == "HTTP 404 from GET /api/v2/applications/{ticketId}"


def test_business_error_carries_code_and_message(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(Reply(200, {"code": 4001, "msg": "缺少申请人"}))
    assert failure(adapter).message == "business error 4001: 缺少申请人"


def test_a_business_code_listed_under_auth_fails_as_auth_with_the_sectors_code_and_message(
        server: LocalServer) -> None:
    status = {**STATUS_SOURCE, "response": {**STATUS_SOURCE["response"], "business_error": {
        **ENVELOPE_OK["business_error"], "auth": ["40001"]}}}
    adapter = RestAdapter("housing_fund", "1", server.url, mappings(**{str(Operation.QUERY_STATUS): status}), 2.0)
    server.script(Reply(200, {"code": 40001, "msg": "签名错误", "data": None}))
    try:
        error = failure(adapter, Operation.QUERY_STATUS)
        server.script(Reply(200, {"code": 4004, "msg": "业务号不存在", "data": None}))
        business = failure(adapter, Operation.QUERY_STATUS)
    finally:
        adapter.close()
    assert (error.failure, error.retryable) == (FailureClass.AUTH, False)
    assert "40001: 签名错误" in error.message and error.last_response is not None
    assert error.last_response["status"] == 200 and "签名错误" in error.last_response["body"]
    assert business.failure is FailureClass.SECTOR_FAULT  # any other code: the request refused, as before


def in_30_s() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (in_30_s, 30.0), ("soon", None), (None, None)],
    ids=["seconds", "http-date", "unreadable", "absent"],
)
def test_429_carries_retry_after(
    adapter: RestAdapter, server: LocalServer, header: str | Callable[[], str] | None, expected: float | None
) -> None:
    value = header() if callable(header) else header
    server.script(Reply(429, b"", headers={} if value is None else {"Retry-After": value}))
    error = failure(adapter)
    assert isinstance(error, RetryAfterError) and error.retryable
    if expected is None:
        assert error.retry_after_s is None
    else:
        assert error.retry_after_s == pytest.approx(expected, abs=1.5)


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 24 Nov 2026 02:01:00 GMT", now) == 60.0
    assert parse_retry_after("Tue, 24 Nov 2026 01:00:00 GMT", now) == 0.0  # in the past: now
    assert parse_retry_after("-5", now) is None and parse_retry_after("", now) is None


def test_oversized_answer_is_refused_while_reading(
    adapter: RestAdapter, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "MAX_ANSWER_BYTES", 1024)
    server.script(Reply(200, {"code": 0, "data": {"ticketId": "x" * 2000}}))
    error = failure(adapter)
    assert error.failure is FailureClass.VALIDATION and "larger than 1024 bytes" in error.message


def test_slow_answer_is_a_timeout(server: LocalServer) -> None:
    server.script(Reply(201, TICKET.body, delay_s=0.5))
    error = failure(make_adapter(server.url, timeout_s=0.05))
    assert (error.failure, error.retryable) == (FailureClass.TIMEOUT, True)


def test_closed_port_is_a_transport_failure() -> None:
    error = failure(make_adapter(f"http://127.0.0.1:{free_port()}"))
    assert (error.failure, error.retryable) == (FailureClass.TRANSPORT, True)


def test_missing_field_is_a_mapping_failure_and_sends_nothing(adapter: RestAdapter, server: LocalServer) -> None:
    error = failure(adapter, msg=message(applicant={"id_number": "1"}))
    assert (error.failure, error.retryable) == (FailureClass.MAPPING, False)
    assert error.message == "submit_case.mapping.yaml: request.applicant.fullName: case.applicant.name is missing"
    assert server.seen == []


def test_unknown_operation_or_query_is_a_mapping_failure(adapter: RestAdapter) -> None:
    assert failure(adapter, "household_registration").failure is FailureClass.MAPPING


def test_a_mapping_without_http_block_is_refused() -> None:
    soap_style = compile_mapping({"operation": "SubmitCase", "request": {"a": {"value": 1}}}, source_name="s.yaml")
    with pytest.raises(ValueError, match="s.yaml: a REST mapping needs an http block"):
        RestAdapter("x", "1", "http://127.0.0.1:9", {Operation.SUBMIT_CASE: soap_style}, 1.0)


def test_retryable_failures_are_retried_and_others_are_not(adapter: RestAdapter, server: LocalServer) -> None:
    fast = RetryPolicy(attempts=3, initial_ms=1, max_ms=5)
    server.script(Reply(503, b""), TICKET)
    assert with_retries(adapter, fast).call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
    assert len(server.seen) == 2
    server.script(Reply(404, b""))
    with pytest.raises(DeliveryError):
        with_retries(adapter, fast).call(Operation.SUBMIT_CASE, message())
    assert len(server.seen) == 1


# ------------------------------------------------------------------ paging


def deposits(total: int) -> Responder:
    """The housing-fund deposits list: `total` records, paged by `page` and `pageSize`."""

    def respond(seen: Seen) -> Reply:
        page, size = int(seen.query["page"][0]), int(seen.query["pageSize"][0])
        start = (page - 1) * size
        items = [{"month": f"m{i}", "amount": "860.00"} for i in range(start, min(start + size, total))]
        return Reply(body={"code": 0, "data": {"items": items, "page": page, "pageSize": size, "total": total}})

    return respond


def test_paging_gathers_every_page(adapter: RestAdapter, server: LocalServer) -> None:
    server.script()  # forget earlier requests
    server.respond = deposits(57)
    result = adapter.call("housing_fund_deposits", {"query": {"id_number": "150202199001011234"}})
    assert result["total"] == 57
    assert [item["month"] for item in result["items"]] == [f"m{i}" for i in range(57)]
    assert [seen.query["page"] for seen in server.seen] == [["1"], ["2"], ["3"]]
    assert {seen.path for seen in server.seen} == {"/api/v2/accounts/150202199001011234/deposits"}
    assert all("x-request-id" not in seen.headers for seen in server.seen)  # a query carries no key


def test_paging_stops_at_max_pages_and_can_map_items(server: LocalServer) -> None:
    capped = {
        **DEPOSITS,
        "http": {**DEPOSITS["http"], "paging": {**DEPOSITS["http"]["paging"], "max_pages": 2}},
        "response": {**ENVELOPE_OK, "fields": {"items": {"for_each": "data.items", "map": {"ym": {"from": "month"}}}}},
    }
    adapter = RestAdapter("housing_fund", "1", server.url, mappings(capped=capped), 2.0)
    server.script()
    server.respond = deposits(57)
    result = adapter.call("capped", {"query": {"id_number": "1"}})
    assert len(server.seen) == 2
    assert result["items"][:2] == [{"ym": "m0"}, {"ym": "m1"}] and len(result["items"]) == 40


def test_paging_business_error_on_a_page_is_a_sector_fault(adapter: RestAdapter, server: LocalServer) -> None:
    server.script(Reply(body={"code": 4040, "msg": "未查询到缴存账户"}))
    error = failure(adapter, "housing_fund_deposits", {"query": {"id_number": "1"}})
    assert (error.failure, error.retryable, error.message) == (
        FailureClass.SECTOR_FAULT, False, "business error 4040: 未查询到缴存账户"
    )  # fmt: skip


# ------------------------------------------------------------------ the registry


REFERENCE = Path(__file__).parents[1] / "data" / "bundles" / "housing_fund_rest"


def write_bundle(root: Path, auth: str) -> Path:
    """The validator's REST reference bundle with another `auth` block, in a folder of bundles."""
    bundle = root / "housing_fund"
    shutil.copytree(REFERENCE, bundle)
    descriptor = bundle / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    descriptor.write_text(re.sub(r"(?ms)^auth:.*?(?=^idempotency:)", auth, text), encoding="utf-8")
    return root


def test_registry_builds_a_rest_adapter_with_auth_and_idempotency(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YIWANG_TEST_GJJ_TOKEN", "t0ken")
    root = write_bundle(tmp_path, "auth: {type: bearer, token: {secret: env:YIWANG_TEST_GJJ_TOKEN}}\n")
    registry = Registry.load(root, endpoints={"housing_fund": server.url})
    server.script(TICKET)
    answer = registry.get("housing_fund").adapter.call(Operation.SUBMIT_CASE,
                                                       message(matter_code="12150200MB1A00020M3000720001000"))
    assert answer["sector_ref"] == "GJJ0000000001"
    assert server.seen[0].headers["authorization"] == "Bearer t0ken"
    assert server.seen[0].headers["x-request-id"] == "150200-20261124-0001:t2:submit_case"


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("auth: {type: bearer, token: hunter2}\n", "auth.token: a literal secret is refused"),
        ("auth: {type: wsse_username_token, username: u, password: {secret: env:X}}\n",
         "auth.type: unknown auth type 'wsse_username_token' for rest"),
        ("auth: {type: bearer, token: {secret: env:YIWANG_TEST_UNSET_TOKEN}}\n",
         "auth: secret env:YIWANG_TEST_UNSET_TOKEN: environment variable YIWANG_TEST_UNSET_TOKEN is not set"),
    ],
    ids=["literal-secret", "soap-only-form", "unset-secret"],
)  # fmt: skip
def test_registry_refuses_bad_auth_naming_the_field(tmp_path: Path, auth: str, expected: str) -> None:
    with pytest.raises(BundleError) as caught:
        Registry.load(write_bundle(tmp_path, auth))
    assert expected in str(caught.value)
    assert "hunter2" not in str(caught.value)
