"""A dead letter of a sector behind a gap replays like any other (issue 19): a message the agent never answered
within the bundle's `answer_within_ms` becomes a `timeout` dead letter; the operators' replay (`POST
/v1/ops/dead-letters/{id}/replay`, as for every sector) sends it across again under the same idempotency key,
and the agent's answer to the new copy lands on the case. Both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Role
from tests.support.ferry_stations import FERRY_SECTOR, allowance_case, ferry_sector, submission, waiting_for_answer
from tests.support.gateways import Keys, drain

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
ANSWER_WITHIN = timedelta(milliseconds=172_800_000)  # the civil affairs ferry bundle's answer_within_ms




def test_a_ferry_sectors_dead_letter_replays_like_any_other(make_gateway: Callable[..., Gateway],
                                                            tmp_path: Path) -> None:
    clock = FixedClock(T0)
    gateway = make_gateway(clock=clock, bundles=(), ferry_dir=tmp_path / "ferry")
    agent = ferry_sector(gateway)
    case_no = allowance_case(gateway)
    waiting = lambda: waiting_for_answer(gateway, case_no)  # noqa: E731
    drain(gateway, waiting)
    agent.take()
    [first] = agent.messages  # across once; the agent's answer never comes back

    clock.advance(ANSWER_WITHIN + timedelta(minutes=1))
    drain(gateway, lambda: submission(gateway, case_no).status == "dead")
    operator = TestClient(create_app(gateway), headers=Keys.of(gateway, Role.OPERATOR))
    [letter] = operator.get("/v1/ops/dead-letters", params={"case_no": case_no}).json()["items"]
    assert (letter["sector"], letter["error_class"], letter["status"]) == (FERRY_SECTOR, "timeout", "dead")
    assert "no answer across the ferry" in letter["error_message"]

    replayed = operator.post(f"/v1/ops/dead-letters/{letter['id']}/replay", json={"reason": "前置机已恢复"})
    assert replayed.status_code == 200, replayed.text
    drain(gateway, waiting)
    agent.take()
    assert len(agent.messages) == 2  # sent anew …
    second = agent.messages[1]
    assert second["key"] == first["key"] == submission(gateway, case_no).idempotency_key  # … under the same key
    assert second["id"] != first["id"]

    agent.answer_latest({"sector_ref": "MZ-REPLAYED-1"})
    gateway.ferry.run()  # the answer comes back across: the waiting message is due at once
    drain(gateway, lambda: submission(gateway, case_no).status == "done")
    assert gateway.service.get(case_no).tasks[0].sector_ref == "MZ-REPLAYED-1"
    assert operator.get(f"/v1/ops/dead-letters/{letter['id']}").json()["status"] == "replayed"
