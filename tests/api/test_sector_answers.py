"""A sector's answer lands on its own case, and only there (issue 14).

- A signed callback is applied only when every identifier its bundle's mapping reads (the sector's reference,
  our case number, …) names one task; a reference we do not know is bound only to a case whose task at that
  sector has none yet. Anything else is a 409 `callback-mismatch` that changes nothing (the negative control:
  case A's reference with case B's number, correctly signed, moves neither).
- A status answer naming another reference than the task it was asked for changes nothing either: its outbox
  row becomes a `validation` dead letter.
- A submit answer with a reference another case's task already holds becomes a `validation` dead letter
  naming both cases; both cases stay as they were.

Callbacks are signed with the public-security simulator's own signer; the sector that answers wrongly is a
scripted HTTP server (tests/api/test_hostile_input.py), since a well-behaved simulator never does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from adapters.registry import default_bundles_dir
from adapters.simulators.public_security import CALLBACK_KEY_ID, DEFAULT_SECRET, PublicSecuritySimulator, signed_headers
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain import answers
from gateway.domain.answers import AnswerMismatch
from gateway.domain.case import Applicant, Case, Task
from gateway.domain.results import ResultProblem
from gateway.persistence import tables as t
from gateway.persistence.repository import DeadLetter
from gateway.sectors.bundle_records import BundleInvalid, pack_folder
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain
from tests.support.hostile import CASE_NS, PERSON, HostileSector, assert_problem, envelope, submit_answer

POLICE = "public_security"
CALLBACK_PATH = f"/callbacks/{POLICE}"
ID_CARD_RENEWAL = {"matter_code": "11150203MB0E00080E4000114002000", "channel": "city_window",  # 居民身份证换领
                   "applicant": {"name": "王建国", "id_number": PERSON},
                   "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]}


@dataclass
class Hall:
    """A gateway behind its HTTP app: cases submitted by a window, callbacks posted as the sector signs them."""

    gateway: Gateway
    client: TestClient

    def submit(self, application: dict[str, Any]) -> str:
        keys = Keys.issue(self.gateway)  # a window files for a person at the counter, the hall online
        answer = self.client.post("/v1/cases", json=application,
                                  headers=keys.window if application.get("channel") else keys.hall)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["case_no"])

    def callback(self, notice: dict[str, Any]) -> httpx.Response:
        """A callback signed exactly as the public-security system signs its own (key id ga-callback)."""
        body = json.dumps(notice, ensure_ascii=False).encode()
        headers = signed_headers(CALLBACK_KEY_ID, DEFAULT_SECRET, "POST", CALLBACK_PATH, body)
        return self.client.post(CALLBACK_PATH, content=body, headers={**headers, "Content-Type": "application/json"})

    def reference(self, case_no: str) -> str | None:
        return self.gateway.service.get(case_no).tasks[0].sector_ref

    def seen(self, case_no: str) -> tuple[int, str, list[tuple[str, str, str | None]]]:
        """What a change would alter: the version, the state and every task's state and reference."""
        case = self.gateway.service.get(case_no)
        return case.version, str(case.state), [(t.task_id, str(t.state), t.sector_ref) for t in case.tasks]

    def mismatches(self, source: str, sector: str = POLICE) -> float | None:
        return self.gateway.metrics.get_sample_value("yiwang_callback_mismatches_total",
                                                     {"sector": sector, "source": source})

    def dead_letters(self) -> list[DeadLetter]:
        return self.gateway.service.dead_letters()

    def outbox(self, case_no: str) -> list[tuple[str, str]]:
        with self.gateway.engine.connect() as conn:
            query = select(t.outbox.c.operation, t.outbox.c.status).where(t.outbox.c.case_no == case_no)
            return [(r.operation, r.status) for r in conn.execute(query.order_by(t.outbox.c.id))]


def decision(sector_ref: str, case_no: str, opinion: str = "准予换领") -> dict[str, Any]:
    return {"YWH": sector_ref, "BJBH": case_no, "JG": "TY", "YJ": opinion, "SJ": "2026-11-24 10:00:00"}


@pytest.fixture
def police(make_gateway: Callable[..., Gateway]) -> Iterator[Hall]:
    """The real public-security simulator, deciding too late to call back during a test."""
    with PublicSecuritySimulator(decision_delay_ms=600_000) as sector:
        gateway = make_gateway(bundles=(POLICE,), sector_endpoints={POLICE: sector.url}, metrics_cache_ms=0)
        with TestClient(create_app(gateway)) as client:
            yield Hall(gateway, client)


def two_cases_in_process(hall: Hall) -> tuple[str, str]:
    first, second = hall.submit(ID_CARD_RENEWAL), hall.submit(ID_CARD_RENEWAL)
    drain(hall.gateway, lambda: bool(hall.reference(first) and hall.reference(second)))
    return first, second


# --- callbacks ---------------------------------------------------------------------------------------------


def test_a_signed_callback_with_one_cases_reference_and_anothers_number_moves_neither(police: Hall) -> None:
    a, b = two_cases_in_process(police)
    before = police.seen(a), police.seen(b)
    answer = police.callback(decision(str(police.reference(a)), b))
    problem = assert_problem(answer, 409, "callback-mismatch")
    assert a in problem["detail"] and b in problem["detail"]  # the sector's team reads what clashed
    assert (police.seen(a), police.seen(b)) == before
    assert police.mismatches("callback") == 1
    # The same callback with its own case's number decides that case.
    assert police.callback(decision(str(police.reference(a)), a)).json() == {"recorded": True}
    assert police.seen(a)[1] == "approved" and police.seen(b) == before[1]


def test_an_unknown_reference_is_not_bound_to_a_task_that_has_one(police: Hall) -> None:
    a, _ = two_cases_in_process(police)
    before = police.seen(a)
    problem = assert_problem(police.callback(decision("GA999999999999", a)), 409, "callback-mismatch")
    assert str(police.reference(a)) in problem["detail"]
    assert police.seen(a) == before
    assert police.mismatches("callback") == 1


def test_an_unknown_reference_without_a_known_case_number_is_refused(police: Hall) -> None:
    a, _ = two_cases_in_process(police)
    before = police.seen(a)
    for notice in ({"YWH": "GA999999999999", "JG": "TY", "YJ": "准予", "SJ": "2026-11-24 10:00:00"},
                   decision("GA999999999999", ID_CARD_RENEWAL["matter_code"] + "20261124999999")):
        assert_problem(police.callback(notice), 409, "callback-mismatch")
    assert police.seen(a) == before
    assert police.mismatches("callback") == 2


def test_a_callback_that_overtakes_the_submit_answer_binds_its_reference(police: Hall) -> None:
    case_no = police.submit(ID_CARD_RENEWAL)  # not delivered yet: the sector's answer to the submit is not in
    assert police.callback(decision("GA-EARLY-1", case_no)).json() == {"recorded": True}
    case = police.gateway.service.get(case_no)
    assert (str(case.state), case.tasks[0].sector_ref) == ("approved", "GA-EARLY-1")


# --- the submit's answer -----------------------------------------------------------------------------------


Scripted = Callable[[str], tuple[Hall, HostileSector]]


@pytest.fixture
def scripted(make_gateway: Callable[..., Gateway]) -> Iterator[Scripted]:
    """A gateway whose system of `sector` is a scripted HTTP server answering what the test says."""
    with ExitStack() as stack:
        def open_sector(sector: str) -> tuple[Hall, HostileSector]:
            scripted_sector = HostileSector()
            stack.callback(scripted_sector.close)
            gateway = make_gateway(bundles=(sector,), sector_endpoints={sector: scripted_sector.url},
                                   metrics_cache_ms=0)
            return Hall(gateway, stack.enter_context(TestClient(create_app(gateway)))), scripted_sector

        yield open_sector


def test_a_submit_answer_with_a_reference_another_case_holds_is_a_validation_dead_letter(scripted: Scripted) -> None:
    hall, sector = scripted(POLICE)
    sector.answer = (202, "application/json", json.dumps({"ZT": "1", "XX": "已受理", "YWH": "GA-SAME"}).encode())
    a = hall.submit(ID_CARD_RENEWAL)
    drain(hall.gateway, lambda: hall.reference(a) == "GA-SAME")
    before_a = hall.seen(a)
    b = hall.submit(ID_CARD_RENEWAL)
    before_b = hall.seen(b)
    drain(hall.gateway, lambda: hall.outbox(b)[0][1] in ("done", "dead"))
    assert hall.outbox(b) == [("submit_case", "dead")]
    [letter] = hall.dead_letters()
    assert (letter.case_no, letter.error_class, letter.operation) == (b, "validation", "submit_case")
    assert a in letter.error_message and b in letter.error_message and "GA-SAME" in letter.error_message
    assert (hall.seen(a), hall.seen(b)) == (before_a, before_b)
    assert hall.gateway.metrics.get_sample_value("yiwang_sector_ref_clashes_total", {"sector": POLICE}) == 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite writes one at a time: no such race
def test_a_reference_taken_by_another_worker_meanwhile_is_a_dead_letter_not_an_error(scripted: Scripted) -> None:
    """Another worker records case A's answer with the same reference while this one records case B's, after
    B's check found the reference free: the unique index refuses B's write, and once more it is a clash."""
    hall, sector = scripted(POLICE)
    sector.answer = (202, "application/json", json.dumps({"ZT": "1", "XX": "已受理", "YWH": "GA-A"}).encode())
    a = hall.submit(ID_CARD_RENEWAL)
    drain(hall.gateway, lambda: hall.reference(a) == "GA-A")
    sector.answer = (202, "application/json", json.dumps({"ZT": "1", "XX": "已受理", "YWH": "GA-RACE"}).encode())
    b = hall.submit(ID_CARD_RENEWAL)
    raced: list[str] = []

    def other_worker_first(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO case_tasks") and b in str(parameters) and not raced:
            raced.append(b)
            with hall.gateway.engine.begin() as other:
                other.execute(update(t.case_tasks).where(t.case_tasks.c.case_no == a).values(sector_ref="GA-RACE"))

    event.listen(hall.gateway.engine, "before_cursor_execute", other_worker_first)
    try:
        drain(hall.gateway, lambda: hall.outbox(b)[0][1] in ("done", "dead"))
    finally:
        event.remove(hall.gateway.engine, "before_cursor_execute", other_worker_first)
    assert raced and hall.outbox(b) == [("submit_case", "dead")]
    [letter] = hall.dead_letters()
    assert letter.case_no == b and a in letter.error_message and "GA-RACE" in letter.error_message
    assert (hall.reference(a), hall.reference(b)) == ("GA-RACE", None)


# --- polled answers ----------------------------------------------------------------------------------------


def status_answer(ywlsh: str) -> bytes:
    return envelope(f'<c:QueryCaseStatusResponse xmlns:c="{CASE_NS}"><fhdm>0000</fhdm><fhxx>ok</fhxx>'
                    f"<ywlsh>{ywlsh}</ywlsh><blzt>03</blzt><spyj>准予</spyj><bjsj>20261124100000</bjsj>"
                    "</c:QueryCaseStatusResponse>")


def test_a_status_answer_about_another_reference_changes_nothing(scripted: Scripted) -> None:
    hall, sector = scripted("social_security")
    case_no = in_process_at_social_security(hall, sector)
    before = hall.seen(case_no)
    sector.answer = (200, "text/xml", status_answer("SB0000000099"))
    drain(hall.gateway, lambda: hall.outbox(case_no)[-1][1] in ("done", "dead"))
    assert hall.outbox(case_no) == [("submit_case", "done"), ("query_status", "dead")]
    [letter] = hall.dead_letters()
    assert (letter.case_no, letter.error_class, letter.operation) == (case_no, "validation", "query_status")
    assert "SB0000000099" in letter.error_message and "SB0000000001" in letter.error_message
    assert hall.seen(case_no) == before
    assert hall.mismatches("poll", "social_security") == 1


def test_a_status_answer_about_its_own_reference_decides_the_case(scripted: Scripted) -> None:
    hall, sector = scripted("social_security")
    case_no = in_process_at_social_security(hall, sector)
    sector.answer = (200, "text/xml", status_answer("SB0000000001"))
    drain(hall.gateway, lambda: hall.seen(case_no)[1] == "approved")
    assert hall.dead_letters() == []


def in_process_at_social_security(hall: Hall, sector: HostileSector) -> str:
    """A case the scripted social-security system took as SB0000000001; its first poll is due."""
    sector.answer = (200, "text/xml", envelope(submit_answer()))
    case_no = hall.submit(COMPLETE_APPLICATION)
    drain(hall.gateway, lambda: hall.reference(case_no) == "SB0000000001")
    return case_no


# --- the rule itself (gateway.domain.answers), without a database -------------------------------------------


def case_with_tasks(*tasks: Task) -> Case:
    applicant = Applicant("王建国", "111", PERSON)
    return Case("C1", "M", 1, applicant, (), {}, "online_pc", "150200", tasks=list(tasks))


def test_an_idempotency_key_names_a_case_and_a_task() -> None:
    found = answers.claims({"idempotency_key": "C1:2:submit_case", "case_no": "C1", "task_id": None})
    answers.check_same_task(POLICE, found, "C1", "2", known_as="GA1", answer_ref="GA1")
    with pytest.raises(AnswerMismatch, match="idempotency_key 'C1:2:submit_case' names case C1 task 2"):
        answers.check_same_task(POLICE, found, "C1", "1", known_as="GA1", answer_ref="GA1")
    with pytest.raises(AnswerMismatch, match="not one of our keys"):
        answers.claims({"idempotency_key": "C1-2"})


@pytest.mark.parametrize("value", [{"$ref": "file:///etc/passwd"}, ["C1"], 1.5, True])
def test_an_identifier_that_is_no_text_or_number_is_a_mismatch(value: object) -> None:
    with pytest.raises(AnswerMismatch, match="case_no is not an identifier"):
        answers.claims({"case_no": value})


def test_an_unknown_reference_is_bound_to_the_one_open_task_the_answer_names() -> None:
    first, second = Task("1", "公安", "c", POLICE, True), Task("2", "公安", "c", POLICE, False)
    case = case_with_tasks(first, second, Task("3", "民政", "d", "civil_affairs", False))
    with pytest.raises(AnswerMismatch, match="has 2 tasks at public_security without a reference: name the task"):
        answers.task_to_bind(case, POLICE, "GA1", answers.claims({"case_no": "C1"}))
    assert answers.task_to_bind(case, POLICE, "GA1", answers.claims({"case_no": "C1", "task_id": "2"})) is second
    first.sector_ref = "GA0"
    assert answers.task_to_bind(case, POLICE, "GA1", answers.claims({"case_no": "C1"})) is second
    second.sector_ref = "GA1"  # bound meanwhile, by this very reference: still the one
    assert answers.task_to_bind(case, POLICE, "GA1", answers.claims({"case_no": "C1"})) is second
    with pytest.raises(AnswerMismatch, match="has no task at housing_fund"):
        answers.task_to_bind(case, "housing_fund", "GA1", answers.claims({"case_no": "C1"}))


def test_a_long_identifier_is_cut_in_the_message() -> None:
    with pytest.raises(AnswerMismatch) as refused:
        answers.case_to_bind("GA" + "9" * 10_000, answers.claims({"case_no": "C1", "idempotency_key": "C2:1:x"}))
    assert "names more than one case: C1, C2" in str(refused.value) and len(str(refused.value)) < 300


# --- what a decision says besides itself (issue 18) ---------------------------------------------------------


def test_a_callbacks_decision_time_is_kept_beside_ours_and_a_time_without_its_zone_is_refused(police: Hall) -> None:
    a, b = two_cases_in_process(police)
    assert police.callback(decision(str(police.reference(a)), a)).json() == {"recorded": True}
    case = police.gateway.service.get(a)
    concluded = next(e for e in case.events if e.trigger == "task_concluded")
    assert concluded.data["sector_at"] == "2026-11-24T02:00:00+00:00"  # SJ 10:00 in Beijing, declared so
    assert case.tasks[0].result is not None and case.tasks[0].result.decided_at == datetime(2026, 11, 24, 2, tzinfo=UTC)
    shown = police.client.get(f"/v1/cases/{a}/events", headers=Keys.issue(police.gateway).window).json()["items"]
    assert [e["sector_at"] for e in shown if e["trigger"] == "task_concluded"] == ["2026-11-24T10:00:00.000+08:00"]
    # A canonical answer whose time says no zone (a mapping that forgot to declare one) changes nothing.
    before = police.seen(b)
    naive = {"sector_ref": police.reference(b), "case_no": b, "status": "approved", "decided_at": "2026-11-24T10:00:00"}
    with pytest.raises(ResultProblem, match="does not say its time zone"):
        police.gateway.service.record_callback(POLICE, naive)
    assert police.seen(b) == before


def test_a_mapping_reading_the_sectors_time_without_its_zone_is_refused_at_registration(scripted: Scripted,
                                                                                         tmp_path: Path) -> None:
    """A mapping that reads the sector's time without declaring its zone never gets as far as a decision: the
    bundle is refused when registered, naming the field (the zone is not guessed), and nothing is stored. The
    domain's own guard against a zoneless time (`SectorResult.read`) is proved in tests/unit/test_sector_results.py."""
    hall, _sector = scripted("social_security")
    folder = tmp_path / "social_security"
    shutil.copytree(default_bundles_dir() / "social_security", folder)
    for name, old, new in (("bundle.yaml", 'version: "', 'version: "zoneless-'),
                           ("query_status.mapping.yaml", "convert: compact_shanghai_to_iso_utc, ", "")):
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    with pytest.raises(BundleInvalid) as refused:
        hall.gateway.bundles.register(pack_folder(folder), "test")
    assert "response.fields.decided_at" in str(refused.value) and "never guessed" in str(refused.value)
    assert all(not v.version.startswith("zoneless-") for v in hall.gateway.bundles.versions("social_security"))
