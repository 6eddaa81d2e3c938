"""A dead letter keeps everything needed to understand and replay it; one is replayed by id, audited,
with the idempotency key of every earlier attempt."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway
from gateway.cases.service import DeadLetterNotFound, NotReplayable
from gateway.persistence import tables as t
from gateway.persistence.ledger_tables import ledger_records
from gateway.persistence.repository import DeadLetter
from tests.support.cases import outbox_statuses, state, submit
from tests.support.gateways import drain

YIWANG = str(Path(sys.executable).with_name("yiwang"))


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    return make_gateway(sector_endpoints={"social_security": simulator.url})


def ops(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YIWANG_DATABASE_URL": gateway.settings.db_url, "COLUMNS": "250",
           "YIWANG_VAR_DIR": str(gateway.settings.var_dir)}  # the master key the data was sealed with
    return subprocess.run([YIWANG, "ops", *args], env=env, capture_output=True, text=True, timeout=60)


def dead_letter_of(gateway: Gateway, simulator: SocialSecuritySimulator) -> tuple[str, DeadLetter]:
    simulator.set_fault("fail")  # a 503 page on every attempt: longer than the retry policy
    case_no = submit(gateway)
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    [letter] = gateway.service.dead_letters()
    return case_no, letter


def test_a_dead_letter_keeps_payload_request_last_answer_and_every_attempt(
    gateway: Gateway, simulator: SocialSecuritySimulator
) -> None:
    case_no, letter = dead_letter_of(gateway, simulator)
    assert (letter.error_class, letter.attempts, letter.deliveries, letter.status) == ("sector_fault", 3, 1, "dead")
    assert letter.idempotency_key == f"{case_no}:1:submit_case"
    assert letter.canonical_payload["case"]["case_no"] == case_no
    assert letter.canonical_payload["idempotency_key"] == letter.idempotency_key
    assert letter.rendered_request["bjbh"] == case_no
    assert letter.bundle_version == gateway.registry.get("social_security").version
    assert [h["failure"] for h in letter.history] == ["sector_fault"] * 3
    assert letter.last_response and letter.last_response["status"] == 503
    # Personal data in the payload rests sealed, like the case itself.
    with gateway.engine.connect() as conn:
        raw = conn.execute(select(t.dead_letters.c.canonical_payload, t.dead_letters.c.history)).one()
    assert "150203198503120039" not in str(raw) and "13847100001" not in str(raw)
    shown = ops(gateway, "dead-letter", str(letter.id))
    assert shown.returncode == 0, shown.stderr
    assert case_no in shown.stdout and '"last_response"' in shown.stdout and "sector_fault" in shown.stdout
    assert '"timeline"' in shown.stdout and '"to_state": "accepted"' in shown.stdout  # the case's story
    assert "150203198503120039" not in shown.stdout  # operators see personal data masked


def test_replay_by_id_delivers_once_with_the_same_key_and_is_audited(
    gateway: Gateway, simulator: SocialSecuritySimulator
) -> None:
    case_no, letter = dead_letter_of(gateway, simulator)
    simulator.set_fault(None)  # the sector is back
    assert ops(gateway, "replay", str(letter.id)).returncode == 2  # no reason: refused, nothing changes
    assert outbox_statuses(gateway) == [("submit_case", "dead")]
    replayed = ops(gateway, "replay", str(letter.id), "--reason", "the sector is back")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{case_no}:1:submit_case" in replayed.stdout
    drain(gateway, lambda: state(gateway, case_no) == "approved")
    assert simulator.counters["cases_created"] == 1
    [after] = gateway.service.dead_letters()
    assert after.status == "replayed" and after.replayed_by and after.replayed_by.startswith("cli:")
    assert after.replay_reason == "the sector is back" and after.replay_run_id is None
    with gateway.engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.deliveries, t.outbox.c.status)
                            .where(t.outbox.c.operation == "submit_case")).all()
        audited = conn.execute(select(ledger_records.c.action, ledger_records.c.outcome)
                               .where(ledger_records.c.action == "ops replay")).all()
    assert [tuple(r) for r in rows] == [(f"{case_no}:1:submit_case", 2, "done")]  # one message, taken twice
    assert audited == [("ops replay", f"ok: replayed {letter.id}")]  # a usage error runs nothing: not audited
    again = ops(gateway, "replay", str(letter.id), "--reason", "once more")
    assert again.returncode == 2 and "replayed" in again.stderr  # once only: nothing changes


def test_replay_refuses_what_it_cannot_replay(gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    with pytest.raises(DeadLetterNotFound):
        gateway.dead_letters.replay(404, by="test", reason="test")
    assert ops(gateway, "replay", "404", "--reason", "test").returncode == 3  # not found
    _, letter = dead_letter_of(gateway, simulator)
    gateway.dead_letters.replay(letter.id, by="first operator", reason="the sector is back")
    with pytest.raises(NotReplayable):
        gateway.dead_letters.replay(letter.id, by="second operator", reason="the sector is back")
    assert outbox_statuses(gateway) == [("submit_case", "pending")]
