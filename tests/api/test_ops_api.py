"""The operators' admin API (`/v1/ops`, ops/api.py): dead letters listed, counted, shown, replayed (one, or in
bulk after a dry run), discarded; webhook deliveries that failed for good, sent again. Who may do what, what
is masked, and the audit record of every action (who, what, why, outcome).

Dead letters come two ways: real ones, from a social-security simulator failing longer than the retry
policy (these replay: the sector then gets the message again under the same idempotency key), and ones
written straight through the repository with a spread of sectors, error classes, attempts, versions and
times (for the filters; they name no outbox message). Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.notification_tables import webhook_deliveries
from gateway.persistence.repository import Failure
from ops.api import Sort
from ops.dead_letters import SORTS
from tests.support.cases import outbox_statuses, submit
from tests.support.gateways import COMPLETE_APPLICATION, drain, pump
from tests.support.receiver import LOOPBACK, Receiver, receiver  # noqa: F401 - `receiver` is a fixture

OPS = "/v1/ops"
PROBLEM = "urn:yiwang:problem:"
ID_NUMBER, PHONE = COMPLETE_APPLICATION["applicant"]["id_number"], COMPLETE_APPLICATION["applicant"]["phone"]
OTHER_MATTER = "12150200MB1A00010L3000805002000"
BASE = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
# sector, error class, attempts, bundle version, hours after BASE, which case (of three)
SPREAD = [
    ("social_security", "timeout", 3, "1.0.0", 0, 0),
    ("social_security", "sector_fault", 1, "1.0.0", 5, 0),
    ("social_security", "transport", 5, "1.1.0", 10, 1),
    ("housing_fund", "timeout", 2, "2.0.0", 15, 1),
    ("housing_fund", "mapping", 0, "2.0.0", 20, 2),
    ("civil_affairs", "timeout", 4, "0.9.0", 25, 2),
]


@dataclass
class Letter:
    id: int
    sector: str
    error_class: str
    attempts: int
    version: str
    created_at: datetime
    case_no: str
    matter: str


@dataclass
class Ops:
    """A gateway and a client per caller of the operators' API."""

    gateway: Gateway
    operator: TestClient
    own_admin: TestClient  # sector_admin of social_security
    other_admin: TestClient  # sector_admin of housing_fund
    ids: dict[str, str]  # caller -> identity id

    def audit(self, action: str) -> list[tuple[str, str | None, str | None, Any]]:
        """(actor, subject, outcome, detail) of every audit record of `action`."""
        ledger = self.gateway.ledger
        return [(r.actor, r.subject, r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT), 5000)
                if r.action == action]

    def letter(self, letter_id: int) -> dict[str, Any]:
        answer = self.operator.get(f"{OPS}/dead-letters/{letter_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


def make_ops(gateway: Gateway) -> Ops:
    app = create_app(gateway)
    ids: dict[str, str] = {}

    def client(name: str, role: Role, **scope: str) -> TestClient:
        identity, key = gateway.keys.issue(name, [role], **scope)
        ids[name] = identity.id
        return TestClient(app, headers={"Authorization": f"Bearer {key}"})

    return Ops(gateway, client("operator", Role.OPERATOR), client("own", Role.SECTOR_ADMIN, sector="social_security"),
               client("other", Role.SECTOR_ADMIN, sector="housing_fund"), ids)


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    # One attempt per delivery: three dead letters stay under the sector's circuit-breaker threshold (5).
    return make_gateway(sector_endpoints={"social_security": simulator.url}, retry_attempts=1)


@pytest.fixture
def ops(gateway: Gateway) -> Ops:
    return make_ops(gateway)


def spread(gateway: Gateway) -> list[Letter]:
    """SPREAD written as dead letters about three real cases (the third of another matter)."""
    cases = [submit(gateway) for _ in range(3)]
    with gateway.engine.begin() as conn:  # the matter filter reads the case's matter
        conn.execute(update(t.cases).where(t.cases.c.case_no == cases[2]).values(matter_code=OTHER_MATTER))
    letters = []
    with gateway.service.uow() as uow:
        for sector, error_class, attempts, version, hours, case in SPREAD:
            at = BASE + timedelta(hours=hours)
            failure = Failure(error_class, f"{error_class} for {ID_NUMBER}", attempts, bundle_version=version,
                              canonical_payload={"applicant": {"id_number": ID_NUMBER, "phone": PHONE}})
            about = {"case_no": cases[case], "sector": sector, "operation": "submit_case",
                     "idempotency_key": f"{cases[case]}:1:submit_case"}
            letter_id = uow.dead_letters.add(None, failure, at, about=about)
            matter = OTHER_MATTER if case == 2 else COMPLETE_APPLICATION["matter_code"]
            letters.append(Letter(letter_id, sector, error_class, attempts, version, at, cases[case], matter))
        uow.commit()
    return letters


def real_dead_letters(gateway: Gateway, simulator: SocialSecuritySimulator, count: int = 1) -> list[str]:
    """`count` cases whose submission died at a failing social-security system: their case numbers."""
    simulator.set_fault("fail")
    cases = [submit(gateway) for _ in range(count)]
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")] * count)
    return cases


def delivered(gateway: Gateway, count: int) -> Callable[[], bool]:
    """Whether all `count` submissions reached the sector (what it decides later is not this file's matter)."""
    return lambda: outbox_statuses(gateway)[:count] == [("submit_case", "done")] * count


def ids_of(answer: Any) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def newest_first(letters: list[Letter]) -> list[int]:
    return [x.id for x in sorted(letters, key=lambda x: (x.created_at, x.id), reverse=True)]


# --- listing ------------------------------------------------------------------------------------------------


def test_every_filter_sorts_pages_and_counts(ops: Ops) -> None:
    letters = spread(ops.gateway)
    listed = lambda **params: ids_of(ops.operator.get(f"{OPS}/dead-letters", params=params))  # noqa: E731
    assert listed() == newest_first(letters)
    at = lambda hours: (BASE + timedelta(hours=hours)).isoformat()  # noqa: E731
    filters: list[tuple[dict[str, Any], Callable[[Letter], bool]]] = [
        ({"sector": "housing_fund"}, lambda x: x.sector == "housing_fund"),
        ({"version": "2.0.0"}, lambda x: x.version == "2.0.0"),
        ({"matter": OTHER_MATTER}, lambda x: x.matter == OTHER_MATTER),
        ({"case_no": letters[2].case_no}, lambda x: x.case_no == letters[2].case_no),
        ({"error_class": "timeout"}, lambda x: x.error_class == "timeout"),
        ({"since": at(5), "until": at(20)}, lambda x: BASE + timedelta(hours=5) <= x.created_at
         < BASE + timedelta(hours=20)),
        ({"since": "2026-11-20T13:00:00"}, lambda x: x.created_at >= BASE + timedelta(hours=5)),  # Beijing time
        ({"min_attempts": 2, "max_attempts": 4}, lambda x: 2 <= x.attempts <= 4),
        ({"sector": "social_security", "error_class": "timeout"},
         lambda x: x.sector == "social_security" and x.error_class == "timeout"),
    ]
    for params, keep in filters:
        expected = newest_first([x for x in letters if keep(x)])
        assert expected, params
        assert listed(**params) == expected, params

    # Sorted, and paged by the cursor: every letter once, in order, the total on every page.
    assert set(get_args(Sort)) == set(SORTS)
    by_attempts = [x.id for x in sorted(letters, key=lambda x: (x.attempts, x.id))]
    assert listed(sort="attempts") == by_attempts
    walked, cursor, pages = [], None, 0
    while True:
        page = ops.operator.get(f"{OPS}/dead-letters", params={"sort": "attempts", "limit": 4, "cursor": cursor}
                                if cursor else {"sort": "attempts", "limit": 4}).json()
        assert page["total"] == len(letters)
        walked += [item["id"] for item in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert (walked, pages) == (by_attempts, 2)

    counts = ops.operator.get(f"{OPS}/dead-letters/counts").json()
    assert {(c["sector"], c["error_class"]): c["count"] for c in counts} == \
        Counter((x.sector, x.error_class) for x in letters)
    timeouts = ops.operator.get(f"{OPS}/dead-letters/counts", params={"error_class": "timeout"}).json()
    assert sum(c["count"] for c in timeouts) == 3

    # The status filter: a discarded letter leaves the default (dead) list and shows under its status.
    gone = letters[0].id
    discarded = ops.operator.post(f"{OPS}/dead-letters/{gone}/discard",
                                  json={"reason": "test data", "case_outcome": "void"})
    assert discarded.status_code == 200, discarded.text
    assert gone not in listed()
    assert listed(status="discarded") == [gone]
    assert sorted(listed(status="any")) == sorted(x.id for x in letters)

    # Masked in the list too; bad filters are refused with a problem, whole.
    text = ops.operator.get(f"{OPS}/dead-letters").text
    assert ID_NUMBER not in text and ID_NUMBER[:4] in text
    for params in ({"min_attempts": 3, "max_attempts": 2}, {"since": at(5), "until": at(5)}, {"limit": 501},
                   {"sort": "bogus"}, {"status": "lost"}, {"matter": "nope"}, {"colour": "red"}, {"limit": 0}):
        answer = ops.operator.get(f"{OPS}/dead-letters", params=params)
        assert answer.status_code == 422 and answer.json()["type"] == PROBLEM + "invalid-request", (params, answer.text)
    by_attempts_cursor = ops.operator.get(f"{OPS}/dead-letters", params={"sort": "attempts", "limit": 1}).json()
    for cursor in ("not-a-cursor", by_attempts_cursor["next_cursor"]):  # the second was made for another sort
        stale = ops.operator.get(f"{OPS}/dead-letters", params={"sort": "-attempts", "cursor": cursor})
        assert stale.status_code == 422 and stale.json()["type"] == PROBLEM + "invalid-cursor", stale.text


# --- one whole ----------------------------------------------------------------------------------------------


def test_shown_whole_masked_and_unmasked_to_operators_and_the_own_sector_with_an_audit_record(
        ops: Ops, simulator: SocialSecuritySimulator) -> None:
    [case_no] = real_dead_letters(ops.gateway, simulator)
    [letter_id] = ids_of(ops.operator.get(f"{OPS}/dead-letters"))
    shown = ops.letter(letter_id)
    assert (shown["case_no"], shown["error_class"], shown["attempts"], shown["masked"]) == \
        (case_no, "sector_fault", 1, True)
    assert shown["idempotency_key"] == f"{case_no}:1:submit_case"
    assert shown["rendered_request"]["bjbh"] == case_no and shown["last_response"]["status"] == 503
    assert [h["failure"] for h in shown["history"]] == ["sector_fault"]
    assert [e["trigger"] for e in shown["timeline"]][:1] == ["submit"]
    text = ops.operator.get(f"{OPS}/dead-letters/{letter_id}").text
    assert ID_NUMBER not in text and PHONE not in text  # the payload holds both, masked

    assert ops.other_admin.get(f"{OPS}/dead-letters/{letter_id}", params={"unmasked": "true"}).status_code == 404
    assert ops.audit("read unmasked dead letter") == []

    plain = ops.own_admin.get(f"{OPS}/dead-letters/{letter_id}", params={"unmasked": "true"})
    assert plain.status_code == 200 and plain.json()["masked"] is False
    assert ID_NUMBER in plain.text
    [(actor, subject, outcome, detail)] = ops.audit("read unmasked dead letter")
    assert (actor, subject, outcome) == (f"identity:{ops.ids['own']}", f"dead_letter:{letter_id}", "shown")
    assert detail["name"] == "own" and "canonical_payload" in detail["fields"]
    assert ops.operator.get(f"{OPS}/dead-letters/{letter_id}", params={"unmasked": "true"}).json()["masked"] is False
    assert len(ops.audit("read unmasked dead letter")) == 2  # the operator's read is recorded too

    missing = ops.operator.get(f"{OPS}/dead-letters/999999")
    assert missing.status_code == 404 and missing.json()["type"] == PROBLEM + "dead-letter-not-found"


# --- replay and discard -------------------------------------------------------------------------------------


def test_replay_one_reaches_the_sector_again_under_the_same_key_and_is_audited(
        ops: Ops, simulator: SocialSecuritySimulator) -> None:
    [case_no] = real_dead_letters(ops.gateway, simulator)
    [letter_id] = ids_of(ops.operator.get(f"{OPS}/dead-letters"))
    simulator.set_fault(None)  # the sector is back

    for body in ({}, {"reason": "   "}, {"reason": "x", "colour": "red"}, {"reason": "x", "mapping": "newest"}):
        answer = ops.operator.post(f"{OPS}/dead-letters/{letter_id}/replay", json=body)
        assert answer.status_code == 422, (body, answer.text)
    assert ops.operator.post(f"{OPS}/dead-letters/{letter_id}/replay", json={"reason": " "}).json()["type"] == \
        PROBLEM + "reason-required"
    assert ops.letter(letter_id)["status"] == "dead" and outbox_statuses(ops.gateway) == [("submit_case", "dead")]

    replayed = ops.operator.post(f"{OPS}/dead-letters/{letter_id}/replay",
                                 json={"reason": "social security is back (INC-42)", "mapping": "original"})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "replayed"
    assert replayed.json()["replayed_by"] == f"identity:{ops.ids['operator']}"
    drain(ops.gateway, delivered(ops.gateway, 1))
    assert simulator.counters["cases_created"] == 1
    with ops.gateway.engine.connect() as conn:
        [row] = conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.status, t.outbox.c.replays)
                             .where(t.outbox.c.operation == "submit_case")).all()
    assert tuple(row) == (f"{case_no}:1:submit_case", "done", 1)  # one message, reopened once

    again = ops.operator.post(f"{OPS}/dead-letters/{letter_id}/replay", json={"reason": "once more"})
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "not-replayable"
    [(actor, subject, outcome, detail)] = ops.audit("ops replay dead letter")
    assert (actor, subject, outcome) == (f"identity:{ops.ids['operator']}", f"dead_letter:{letter_id}", "replayed")
    assert detail["reason"] == "social security is back (INC-42)" and detail["mapping"] == "original"
    assert detail["idempotency_key"] == f"{case_no}:1:submit_case"
    # The middleware's record of every POST, refused ones included, is there as well.
    trail = [outcome for _, _, outcome, _ in ops.audit("POST /v1/ops/dead-letters/{dead_letter_id}/replay")]
    assert trail.count("200 ok") == 1 and trail.count("422 refused") == 5 and trail.count("409 refused") == 1


def test_a_dry_run_then_a_bulk_replay_runs_to_completion(ops: Ops, simulator: SocialSecuritySimulator) -> None:
    cases = real_dead_letters(ops.gateway, simulator, count=3)
    simulator.set_fault(None)
    chosen = {"sector": "social_security", "error_class": "sector_fault"}

    dry = ops.operator.post(f"{OPS}/replays", json={"filter": chosen, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["count"] == 3 and sorted(x["case_no"] for x in dry.json()["sample"]) == sorted(cases)
    assert ID_NUMBER not in dry.text
    assert outbox_statuses(ops.gateway) == [("submit_case", "dead")] * 3  # a dry run changes nothing
    assert ops.operator.post(f"{OPS}/replays", json={"filter": chosen}).json()["type"] == PROBLEM + "reason-required"
    assert ops.operator.post(f"{OPS}/replays", json={"reason": "everything"}).status_code == 422  # filter required

    started = ops.operator.post(f"{OPS}/replays", json={"filter": chosen, "reason": "after the outage",
                                                        "mapping": "active"})
    assert started.status_code == 202, started.text
    run = started.json()
    assert started.headers["Location"] == f"{OPS}/replays/{run['id']}"
    assert (run["total"], run["reason"], run["mapping"]) == (3, "after the outage", "active")
    assert run["requested_by"] == f"identity:{ops.ids['operator']}"
    deadline = time.monotonic() + 20
    while (progress := ops.operator.get(started.headers["Location"]).json())["status"] != "done":
        assert time.monotonic() < deadline, progress
        time.sleep(0.02)
    assert (progress["replayed"], progress["skipped"], progress["finished_at"] is not None) == (3, 0, True)
    drain(ops.gateway, delivered(ops.gateway, 3))
    assert simulator.counters["cases_created"] == 3  # each once
    assert [r["id"] for r in ops.operator.get(f"{OPS}/replays").json()["items"]] == [run["id"]]
    assert ids_of(ops.operator.get(f"{OPS}/dead-letters")) == []

    [(actor, subject, outcome, detail)] = ops.audit("ops replay many")
    assert (actor, subject, outcome) == (f"identity:{ops.ids['operator']}", f"replay_run:{run['id']}",
                                         f"run {run['id']} started: 3 to replay")
    assert detail["reason"] == "after the outage" and detail["filter"]["error_class"] == "sector_fault"
    [(_, _, dry_outcome, dry_detail)] = ops.audit("ops replay dry run")
    assert dry_outcome == "3 would be replayed" and dry_detail["filter"]["sector"] == "social_security"
    assert ops.operator.get(f"{OPS}/replays/999999").status_code == 404


def test_discarded_letters_never_match_a_replay_filter(ops: Ops, simulator: SocialSecuritySimulator) -> None:
    real_dead_letters(ops.gateway, simulator, count=3)
    first, second, third = sorted(ids_of(ops.operator.get(f"{OPS}/dead-letters")))
    for body in ({}, {"reason": ""}, {"reason": "\t", "case_outcome": "void"}, {"reason": "ok"},
                 {"reason": "ok", "case_outcome": "forget"}):
        refused = ops.operator.post(f"{OPS}/dead-letters/{first}/discard", json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert ops.letter(first)["status"] == "dead"

    discarded = ops.operator.post(f"{OPS}/dead-letters/{first}/discard",
                                  json={"reason": "applicant withdrew", "case_outcome": "void"})
    assert discarded.status_code == 200, discarded.text
    assert (discarded.json()["status"], discarded.json()["discard_reason"]) == ("discarded", "applicant withdrew")
    assert discarded.json()["discarded_by"] == f"identity:{ops.ids['operator']}"
    again = ops.operator.post(f"{OPS}/dead-letters/{first}/discard", json={"reason": "twice", "case_outcome": "void"})
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "not-discardable"
    replay = ops.operator.post(f"{OPS}/dead-letters/{first}/replay", json={"reason": "by mistake"})
    assert replay.status_code == 409 and replay.json()["type"] == PROBLEM + "not-replayable"
    plan = ops.operator.post(f"{OPS}/replays", json={"filter": {"ids": [first, second]}, "dry_run": True}).json()
    assert (plan["count"], [x["id"] for x in plan["sample"]]) == (1, [second])

    # In bulk: a dry run first, then the discard; the ones discarded are gone from every replay filter.
    dry = ops.operator.post(f"{OPS}/discards", json={"filter": {"ids": [second, third]}, "dry_run": True})
    assert dry.status_code == 200 and dry.json()["count"] == 2, dry.text
    assert ops.operator.post(f"{OPS}/discards", json={"filter": {"ids": [second]}}).status_code == 422
    assert ops.operator.post(f"{OPS}/discards", json={"filter": {"ids": [second]}, "reason": "no outcome"}
                             ).status_code == 422
    assert ops.letter(second)["status"] == "dead"
    done = ops.operator.post(f"{OPS}/discards", json={"filter": {"ids": [second, third]}, "reason": "duplicates",
                                                       "case_outcome": "return"})
    assert done.status_code == 200 and done.json() == {"count": 2, "kept": []}, done.text
    assert ops.operator.post(f"{OPS}/replays", json={"filter": {}, "dry_run": True}).json()["count"] == 0
    assert outbox_statuses(ops.gateway) == [("submit_case", "dead")] * 3  # nothing reopened (and none to tell)
    cases = [ops.gateway.service.get(ops.letter(i)["case_no"]) for i in (first, second, third)]
    assert [str(c.completion) for c in cases] == ["作废办结", "退回办结", "退回办结"]  # each case has its outcome

    [(actor, subject, outcome, detail)] = ops.audit("ops discard dead letter")
    assert (actor, subject, outcome, detail["reason"]) == (f"identity:{ops.ids['operator']}",
                                                           f"dead_letter:{first}", "discarded", "applicant withdrew")
    [(_, subject, outcome, detail)] = ops.audit("ops discard many")
    assert (subject, outcome, detail["reason"]) == ("dead_letters", "2 discarded, 0 kept", "duplicates")
    assert detail["case_outcome"] == "return"
    assert sorted(detail["filter"]["ids"]) == [second, third]


# --- who may ------------------------------------------------------------------------------------------------


def test_a_sector_administrator_acts_for_their_own_sector_only(ops: Ops, simulator: SocialSecuritySimulator) -> None:
    real_dead_letters(ops.gateway, simulator)
    [own] = ids_of(ops.operator.get(f"{OPS}/dead-letters"))
    theirs = [x.id for x in spread(ops.gateway) if x.sector == "housing_fund"]

    mine = ids_of(ops.own_admin.get(f"{OPS}/dead-letters", params={"status": "any"}))
    assert own in mine and not set(mine) & set(theirs)
    assert {c["sector"] for c in ops.own_admin.get(f"{OPS}/dead-letters/counts").json()} == {"social_security"}
    for method, path, body in [("GET", f"/dead-letters/{theirs[0]}", None),
                               ("POST", f"/dead-letters/{theirs[0]}/replay", {"reason": "mine now"})]:
        answer = ops.own_admin.request(method, OPS + path, json=body)
        assert answer.status_code == 404 and answer.json()["type"] == PROBLEM + "dead-letter-not-found", path
    for method, path, params, body in [
            ("GET", "/dead-letters", {"sector": "housing_fund"}, None),
            ("GET", "/dead-letters/counts", {"sector": "housing_fund"}, None),
            ("POST", "/replays", None, {"filter": {"sector": "housing_fund"}, "dry_run": True}),
            ("POST", f"/dead-letters/{own}/discard", None, {"reason": "not mine to discard", "case_outcome": "void"}),
            ("POST", "/discards", None, {"filter": {}, "reason": "x", "dry_run": True}),
            ("GET", "/webhook-failures", None, None),
            ("POST", "/webhook-failures/1/redeliver", None, {"reason": "x"})]:
        answer = ops.own_admin.request(method, OPS + path, params=params, json=body)
        assert answer.status_code == 403 and answer.json()["type"] == PROBLEM + "forbidden", (path, answer.text)
    # A filter naming nothing is their sector: the other sector's letters never count.
    plan = ops.own_admin.post(f"{OPS}/replays", json={"filter": {"ids": [own, *theirs]}, "dry_run": True}).json()
    assert [x["id"] for x in plan["sample"]] == [own]

    simulator.set_fault(None)
    started = ops.own_admin.post(f"{OPS}/replays", json={"filter": {}, "reason": "our system is back"})
    assert started.status_code == 202 and started.json()["total"] == 1, started.text
    drain(ops.gateway, delivered(ops.gateway, 4))  # the three cases of spread() were only waiting
    assert simulator.counters["cases_created"] == 4
    assert [r["id"] for r in ops.own_admin.get(f"{OPS}/replays").json()["items"]] == [started.json()["id"]]
    assert ops.other_admin.get(f"{OPS}/replays").json()["items"] == []
    assert ops.other_admin.get(started.headers["Location"]).status_code == 404
    assert all(ops.letter(x)["status"] == "dead" for x in theirs)  # untouched

    for role in (Role.SYSTEM_ADMIN, Role.AUDITOR, Role.WINDOW):
        _, key = ops.gateway.keys.issue(f"a {role}", [role])
        answer = ops.operator.get(f"{OPS}/dead-letters", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 403, role
    assert TestClient(ops.operator.app).get(f"{OPS}/dead-letters").status_code == 401


# --- webhook failures ---------------------------------------------------------------------------------------


def test_failed_webhook_deliveries_are_listed_and_sent_again_with_the_same_event_id(
        make_gateway: Callable[..., Gateway], receiver: Receiver) -> None:  # noqa: F811 - the fixture
    gateway = make_gateway(notify_interval_ms=10, webhook_backoff_ms=10, webhook_max_attempts=2,
                           webhook_insecure_hosts=frozenset({LOOPBACK}))
    ops = make_ops(gateway)
    hall_identity, key = gateway.keys.issue("hall", [Role.HALL_CLIENT])
    hall = TestClient(ops.operator.app, headers={"Authorization": f"Bearer {key}"})
    hook = hall.post("/v1/webhooks", json={"url": receiver.url("/hook"), "events": ["submit"]}).json()
    receiver.secrets["/hook"] = hook["secret"]
    receiver.answer = lambda path, event, nth: 503
    case_no = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
    pump(gateway, lambda: failed_count(gateway) == 1)

    listed = ops.operator.get(f"{OPS}/webhook-failures")
    assert listed.status_code == 200, listed.text
    [failure] = listed.json()["items"]
    assert (failure["subscription_id"], failure["hall"], failure["hall_name"]) == (hook["id"], hall_identity.id, "hall")
    assert (failure["case_no"], failure["status"], failure["attempts"], failure["last_status"]) == \
        (case_no, "failed", 2, 503)
    event_id = failure["event"]["event_id"]
    found = lambda **params: [x["id"] for x in  # noqa: E731
                              ops.operator.get(f"{OPS}/webhook-failures", params=params).json()["items"]]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert found(subscription=hook["id"]) == found(hall=hall_identity.id) == found(until=later) == [failure["id"]]
    assert found(subscription="wh_000000000000") == found(hall="id_nobody") == found(since=later) == []
    page = ops.operator.get(f"{OPS}/webhook-failures", params={"limit": 1}).json()
    assert page["next_cursor"] is None and page["items"] == [failure]  # one failure: one page
    assert ops.operator.get(f"{OPS}/webhook-failures", params={"subscription": "nope"}).status_code == 422

    redeliver = f"{OPS}/webhook-failures/{failure['id']}/redeliver"
    for body in ({}, {"reason": " "}):
        assert ops.operator.post(redeliver, json=body).status_code == 422
    assert failed_count(gateway) == 1  # refused: nothing changed
    assert hall.post(redeliver, json={"reason": "x"}).status_code == 403
    receiver.answer = lambda path, event, nth: 200  # the hall fixed its endpoint
    sent = ops.operator.post(redeliver, json={"reason": "hall endpoint fixed (INC-7)"})
    assert sent.status_code == 200 and (sent.json()["status"], sent.json()["attempts"]) == ("pending", 0), sent.text
    pump(gateway, lambda: len(receiver.delivered("/hook")) == 1)
    requests = receiver.on("/hook")
    assert [r.status for r in requests] == [503, 503, 200]
    assert {r.headers["yiwang-event-id"] for r in requests} == {event_id}  # the hall deduplicates by it
    assert all(r.signed for r in requests)

    again = ops.operator.post(redeliver, json={"reason": "again"})
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "not-redeliverable"
    missing = ops.operator.post(f"{OPS}/webhook-failures/999999/redeliver", json={"reason": "x"})
    assert missing.status_code == 404 and missing.json()["type"] == PROBLEM + "webhook-delivery-not-found"
    [(actor, subject, outcome, detail)] = ops.audit("ops redeliver webhook")
    assert (actor, subject, outcome) == (f"identity:{ops.ids['operator']}", f"webhook_delivery:{failure['id']}",
                                         "pending again")
    assert (detail["reason"], detail["event_id"], detail["hall"]) == ("hall endpoint fixed (INC-7)", event_id,
                                                                     hall_identity.id)


def failed_count(gateway: Gateway) -> int:
    with gateway.engine.connect() as conn:
        return len(conn.execute(select(webhook_deliveries.c.id).where(webhook_deliveries.c.status == "failed")).all())

