"""Correlation ids and masked JSON logs: one id from the hall's request through the outbox and the
dispatcher to the sector's HTTP header, on SQLite and PostgreSQL; no ID or phone number in clear in
any log line, nested values and tracebacks included."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.contract import CORRELATION_HEADER, Operation, correlation_headers
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.observability.correlation import correlated, current_correlation_id, new_correlation_id, well_formed
from gateway.observability.logs import configure_logging
from gateway.persistence import tables as t
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain
from tests.support.local_server import TICKET, LocalServer, make_adapter, message

ID_NUMBER = COMPLETE_APPLICATION["applicant"]["id_number"]
PHONE = COMPLETE_APPLICATION["applicant"]["phone"]


class RecordingSimulator(SocialSecuritySimulator):
    """The social-security simulator, noting the correlation header of every request it answers."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.correlation_ids: list[str | None] = []

    def _answer(self, http: Any) -> Any:
        self.correlation_ids.append(http.headers.get(CORRELATION_HEADER))
        return super()._answer(http)


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """JSON logs on (YIWANG_LOG_FORMAT=json); yields a reader of the lines written so far."""
    configure_logging("info", "json")
    written: list[str] = []

    def lines() -> list[dict[str, Any]]:
        written.append(capsys.readouterr().err)
        return [json.loads(line) for line in "".join(written).splitlines() if line.startswith("{")]

    yield lines
    structlog.reset_defaults()


def test_ids_offered_by_the_caller_are_kept_only_when_well_formed() -> None:
    assert well_formed("hall-req:42.a_b") and well_formed("x" * 64)
    assert not well_formed("") and not well_formed("x" * 65) and not well_formed("bad id") and not well_formed("a\nb")
    assert not well_formed(PHONE)  # the logs would mask it, and then it would correlate nothing
    assert all(well_formed(new_correlation_id()) for _ in range(200))


def test_a_correlated_block_binds_its_id_and_restores_what_was_bound() -> None:
    with correlated("outer", job="clock"):
        with correlated("not well formed!", case_no="C1") as inner:
            assert current_correlation_id() == inner != "outer" and len(inner) == 32
            assert correlation_headers() == {CORRELATION_HEADER: inner}
        assert structlog.contextvars.get_contextvars() == {"correlation_id": "outer", "job": "clock"}
    assert current_correlation_id() is None and correlation_headers() == {}


def test_nested_values_and_tracebacks_are_masked(json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    log = structlog.get_logger("t")
    log.info("nested", applicant={"id_number": ID_NUMBER, "phones": [PHONE, (PHONE,)]}, phone_as_int=int(PHONE),
             count=3, error=ValueError(f"bad {ID_NUMBER}"))
    try:
        raise RuntimeError(f"cannot reach applicant {PHONE} / {ID_NUMBER}")
    except RuntimeError:
        log.exception("failed")
    nested, failed = json_logs()[-2:]
    text = json.dumps([nested, failed], ensure_ascii=False)
    assert ID_NUMBER not in text and PHONE not in text
    assert nested["applicant"] == {"id_number": "1502**********0039", "phones": ["138****0001", ["138****0001"]]}
    assert nested["phone_as_int"] == "138****0001" and nested["count"] == 3
    assert "RuntimeError" in failed["exception"] and "138****0001" in failed["exception"]


def test_a_request_echoes_its_id_or_gets_a_fresh_one(make_gateway: Callable[..., Gateway],
                                                    json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway)) as client:
        kept = client.get("/healthz", headers={CORRELATION_HEADER: "hall-req-1"})
        fresh = client.get("/healthz", headers={CORRELATION_HEADER: "no spaces allowed"})
        missing = client.get("/v1/cases/nope")
    assert kept.headers[CORRELATION_HEADER] == "hall-req-1"
    assert well_formed(fresh.headers[CORRELATION_HEADER]) and fresh.headers[CORRELATION_HEADER] != "no spaces allowed"
    assert missing.status_code == 401 and well_formed(missing.headers[CORRELATION_HEADER])
    served = [line for line in json_logs() if line["event"] == "request served"]
    assert [(s["correlation_id"], s["path"], s["status"]) for s in served] == [
        ("hall-req-1", "/healthz", 200), (fresh.headers[CORRELATION_HEADER], "/healthz", 200),
        (missing.headers[CORRELATION_HEADER], "/v1/cases/nope", 401)]
    assert served[2]["case_no"] == "nope"  # routes about one case name it in their lines


def test_one_id_from_the_request_to_the_worker_and_the_sectors_header(
        make_gateway: Callable[..., Gateway], json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    with RecordingSimulator(host="127.0.0.1", port=0, decision_delay_ms=50) as sector:
        gateway = make_gateway(sector_endpoints={"social_security": sector.url})
        with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
            answer = hall.post("/v1/cases", json=COMPLETE_APPLICATION, headers={CORRELATION_HEADER: "hall-req-42"})
        assert answer.status_code == 201, answer.text
        assert answer.headers[CORRELATION_HEADER] == "hall-req-42"
        case_no = answer.json()["case_no"]
        drain(gateway, lambda: str(gateway.service.get(case_no).state) == "approved")

    with gateway.engine.connect() as conn:
        stored = conn.execute(select(t.outbox.c.operation, t.outbox.c.correlation_id).order_by(t.outbox.c.id)).all()
    assert stored[0] == ("submit_case", "hall-req-42")
    assert all(correlation == "hall-req-42" for _, correlation in stored)  # the polls it caused follow it
    assert sector.correlation_ids and set(sector.correlation_ids) == {"hall-req-42"}

    lines = json_logs()
    assert ID_NUMBER not in json.dumps(lines, ensure_ascii=False) and PHONE not in json.dumps(lines)
    submitted = next(line for line in lines if line["event"] == "case submitted")
    assert (submitted["correlation_id"], submitted["case_no"]) == ("hall-req-42", case_no)
    delivered = next(line for line in lines if line["event"] == "delivered" and line["operation"] == "submit_case")
    assert (delivered["correlation_id"], delivered["case_no"], delivered["sector"]) == (
        "hall-req-42", case_no, "social_security")
    assert isinstance(delivered["outbox_id"], int)


def test_a_scheduled_job_run_gets_an_id_of_its_own(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    seen: list[str | None] = []
    gateway.scheduler.jobs[0] = type(gateway.scheduler.jobs[0])(
        "deadline-clock", gateway.scheduler.jobs[0].every, lambda: seen.append(current_correlation_id()) or 0)
    gateway.scheduler.run_due()
    assert len(seen) == 1 and well_formed(seen[0]) and current_correlation_id() is None


@pytest.fixture
def rest_sector() -> Iterator[LocalServer]:
    with LocalServer() as server:
        server.script(TICKET)
        yield server


def test_the_rest_adapter_sends_the_bound_id_and_nothing_when_none_is_bound(rest_sector: LocalServer) -> None:
    adapter = make_adapter(rest_sector.url)
    try:
        with correlated("hall-req-7"):
            adapter.call(Operation.SUBMIT_CASE, message())
        adapter.call(Operation.SUBMIT_CASE, message())
        with correlated("hall-req-7"):
            rendered = adapter.render(Operation.SUBMIT_CASE, message())
    finally:
        adapter.close()
    assert [seen.headers.get("x-correlation-id") for seen in rest_sector.seen] == ["hall-req-7", None]
    assert CORRELATION_HEADER not in rendered.headers  # a preview or a dead letter shows the mapping's request
