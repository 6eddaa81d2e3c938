"""Case numbers: a day's sequence per matter, unique under concurrent submissions, and on PostgreSQL taken
in a transaction of their own so that submissions of one matter do not wait for each other to commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from gateway.bootstrap.app import Gateway
from gateway.cases.service import SubmitCase
from gateway.domain.case import Actor, ActorKind, Applicant, SubmittedMaterial
from tests.support.gateways import COMPLETE_APPLICATION

HALL = Actor(ActorKind.APPLICANT, "test")


def command() -> SubmitCase:
    return SubmitCase(COMPLETE_APPLICATION["matter_code"], Applicant("王建国", "111", "150203198503120039"),
                      tuple(SubmittedMaterial(m["name"]) for m in COMPLETE_APPLICATION["materials"]),
                      COMPLETE_APPLICATION["form"])


def test_a_replayed_key_spends_no_number(make_gateway: Callable[..., Gateway]) -> None:
    service = make_gateway().service
    first = service.submit(command(), HALL, "key-1").case["case_no"]
    again = service.submit(command(), HALL, "key-1")
    second = service.submit(command(), HALL, "key-2").case["case_no"]
    assert again.replayed and again.case["case_no"] == first
    assert int(second[-6:]) == int(first[-6:]) + 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.timeout(60)
def test_on_postgresql_a_submission_does_not_wait_for_another_to_commit(
        make_gateway: Callable[..., Gateway]) -> None:
    """The first submission is held inside its transaction (after its case row is written) until the second
    has finished; with the day's counter locked until commit, the second would wait for the first and this
    would time out."""
    gateway = make_gateway()
    held, second_done = threading.Event(), threading.Event()

    @event.listens_for(gateway.service.units.engine, "after_cursor_execute")
    def hold_the_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.current_thread().name == "first" and statement.startswith("INSERT INTO cases "):
            held.set()
            second_done.wait(timeout=20)

    numbers: dict[str, str] = {}

    def submit(name: str) -> None:
        numbers[name] = gateway.service.submit(command(), HALL).case["case_no"]

    first = threading.Thread(target=submit, args=("first",), name="first")
    first.start()
    assert held.wait(timeout=20), "the first submission never reached its case row"
    began = time.monotonic()
    submit("second")  # must not block on the first's open transaction
    waited = time.monotonic() - began
    second_done.set()
    first.join(timeout=20)
    assert waited < 10, f"the second submission waited {waited:.1f} s for the first to commit"
    assert {int(numbers["first"][-6:]), int(numbers["second"][-6:])} == {1, 2}
