"""Case events to subscribed sectors (issue 18, "The national platform's hooks"), on SQLite and PostgreSQL, over
real HTTP to the rating-platform simulator.

- An evaluation commits with one outbox row per sector subscribed to `evaluated` (key `case:event:seq:sector`),
  in the same transaction: when the row cannot be written, the evaluation is not stored either.
- Delivered, the 好差评 platform holds one rating (level 5..1, its channel code, the case and matter); the case
  does not change, and the message log keeps the platform's receipt. A second delivery of the same row (a
  worker that died before storing the outcome) is recognised by the platform as a repeat: still one rating.
- The platform down: retries, a dead letter (the event message sealed at rest), and a replay pinned to the
  version it died with delivers it once.
- The shipped bundle validates clean and carries the platform's published document; the platform refuses a
  second rating of one case (another request: a sector fault, never a second rating).
- certificate_issued and case_closed through a test bundle subscribed to both: each event goes once, with the
  certificate and its holder; a bundle that subscribes serves no department.
- Over RabbitMQ (PostgreSQL): the platform is consumed from a queue of its own; down, its delivery becomes a dead
  letter, another evaluation still goes, and the replay delivers the first once.
"""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from adapters.bundle import load_bundle, validate_bundle
from adapters.contract import DeliveryError
from adapters.registry import build_adapter, default_bundles_dir
from adapters.resilience import RetryPolicy
from adapters.simulators.rating_platform import DEFAULT_TOKEN, OPENAPI_FILE, RatingPlatformSimulator
from gateway.audit.ledger import MESSAGE, Filters
from gateway.bootstrap.app import Gateway
from gateway.cases.service import SubmitCase
from gateway.domain.case import (
    Actor,
    ActorKind,
    Applicant,
    Certificate,
    Delivery,
    Evaluation,
    SubmittedMaterial,
    TaskState,
)
from gateway.persistence import tables as t
from gateway.sectors.bundle_records import pack_folder
from gateway.transport.amqp import queue_name
from ops.dead_letters import DeadLetterFilter
from tests.support.broker import eventually, queue_depth, running
from tests.support.cases import outbox_statuses
from tests.support.gateways import drain
from tests.support.services import rabbitmq_vhost

WITHDRAWAL = "12150200MB1A00020M3000720001000"  # 住房公积金提取: one department, decided in its back office
FUND = "12150200MB1A00020M"
MATERIALS = ("居民身份证", "购房合同", "购房发票", "本人银行卡")
ID_NUMBER = "150203198503120039"
PERSON = Actor(ActorKind.APPLICANT, "hall")
WINDOW = Actor(ActorKind.WINDOW, "clerk-w")
CLERK = Actor(ActorKind.DEPARTMENT, "clerk-f")
ISSUER = Actor(ActorKind.ISSUING_WINDOW, "issuer")
RATING = "rating_platform"


@pytest.fixture
def rating(monkeypatch: pytest.MonkeyPatch) -> Iterator[RatingPlatformSimulator]:
    monkeypatch.setenv("YIWANG_SECRET_RATING_PLATFORM_TOKEN", DEFAULT_TOKEN)
    with RatingPlatformSimulator() as simulator:
        yield simulator


def register(gateway: Gateway, folder: Path) -> None:
    archive = pack_folder(folder)
    version = gateway.bundles.register(archive, "test")
    gateway.bundles.activate(version.sector, version.version, "test", force=True)


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], rating: RatingPlatformSimulator) -> Gateway:
    gateway = make_gateway(bundles=(), sector_endpoints={RATING: rating.url})
    register(gateway, default_bundles_dir() / RATING)
    return gateway


def closed_case(gateway: Gateway, *, certificate: bool = False, delivered: bool = True) -> str:
    """A 公积金提取 case decided in the back office and closed: withdrawn, or issued and (unless not `delivered`)
    delivered."""
    service = gateway.service
    command = SubmitCase(WITHDRAWAL, Applicant("王建国", "111", ID_NUMBER), tuple(map(SubmittedMaterial, MATERIALS)))
    case_no = str(service.submit(command, PERSON).case["case_no"])
    if service.get(case_no).state == "submitted":
        service.accept(case_no, WINDOW)
    if not certificate:
        service.withdraw(case_no, PERSON, "不再需要")
        return case_no
    service.decide_task(case_no, "1", TaskState.APPROVED, "准予提取", CLERK, FUND)
    service.issue_certificate(case_no, Certificate("提取到账通知", "GJJ-2026-0001", "包头市住房公积金管理中心"), ISSUER)
    if delivered:
        service.deliver(case_no, Delivery("pickup"), ISSUER)
    return case_no


def outbox_rows(gateway: Gateway, case_no: str) -> list[tuple[str, str, str, str]]:
    """(sector, operation, idempotency key, status) of the case's event deliveries."""
    with gateway.engine.connect() as conn:
        rows = conn.execute(select(t.outbox).where(t.outbox.c.case_no == case_no,
                                                   t.outbox.c.task_id.like("e%")).order_by(t.outbox.c.id))
        return [(r.sector, r.operation, r.idempotency_key, r.status) for r in rows]


def evaluated(gateway: Gateway, case_no: str) -> None:
    gateway.service.evaluate(case_no, Evaluation("satisfied", "mobile", "办事很快"), PERSON)


def test_an_evaluation_commits_with_its_delivery_and_reaches_the_rating_platform_once(
        gateway: Gateway, rating: RatingPlatformSimulator) -> None:
    # What `yiwang ops` reads (it has no live registry): the active versions' summaries.
    assert [gateway.bundles.subscribers(e) for e in ("evaluated", "case_closed")] == [(RATING,), ()]
    case_no = closed_case(gateway)
    assert outbox_rows(gateway, case_no) == []  # it subscribes to evaluations only
    evaluated(gateway, case_no)
    seq = gateway.service.get(case_no).events[-1].seq
    assert outbox_rows(gateway, case_no) == [(RATING, "evaluated", f"{case_no}:event:{seq}:{RATING}", "pending")]
    version = gateway.service.get(case_no).version

    # What a sector team previews (`yiwang adapters preview rating_platform evaluated --case-no …`): as sent.
    preview = gateway.sector_calls.preview(RATING, "evaluated", case_no, {})
    assert preview["request"]["body"]["requestId"] == f"{case_no}:event:{seq}:{RATING}"
    drain(gateway, lambda: outbox_rows(gateway, case_no)[0][3] == "done")
    [given] = rating.ratings
    assert (given.case_no, given.item_code, given.level, given.channel, given.content) == (
        case_no, WITHDRAWAL, "4", "2", "办事很快")
    assert given.request_id == f"{case_no}:event:{seq}:{RATING}"
    assert gateway.service.get(case_no).version == version  # the delivery changed nothing on the case
    received = [r for r in gateway.ledger.records(Filters(MESSAGE, sector=RATING, case_no=case_no))
                if r.action == "received"]
    assert [gateway.ledger.open_body(r)["body"] for r in received] == [{"receipt": given.rating_no}]

    # A worker died after the platform took it, before the outcome was stored: the row is delivered again.
    with gateway.engine.begin() as conn:
        conn.execute(update(t.outbox).where(t.outbox.c.case_no == case_no).values(status="pending"))
    drain(gateway, lambda: outbox_rows(gateway, case_no)[0][3] == "done")
    assert len(rating.ratings) == 1 and rating.counters["repeats"] == 1


def test_the_delivery_row_is_written_in_the_transaction_of_the_event(gateway: Gateway) -> None:
    case_no = closed_case(gateway)
    events = len(gateway.service.get(case_no).events)

    def broken(event: str) -> list[str]:
        raise RuntimeError("the subscribers cannot be read")

    gateway.service.units.subscribers = broken
    with pytest.raises(RuntimeError):
        evaluated(gateway, case_no)
    case = gateway.service.get(case_no)
    assert (len(case.events), case.evaluation, outbox_rows(gateway, case_no)) == (events, None, [])


def test_the_platform_down_is_retried_dead_lettered_and_a_replay_delivers_once(
        gateway: Gateway, rating: RatingPlatformSimulator) -> None:
    case_no = closed_case(gateway)
    rating.set_fault("fault")  # every answer a 500
    evaluated(gateway, case_no)
    drain(gateway, lambda: outbox_rows(gateway, case_no)[0][3] == "dead")
    [letter] = gateway.service.dead_letters(case_no)
    assert (letter.sector, letter.operation, letter.attempts) == (RATING, "evaluated", 3)
    with gateway.engine.connect() as conn:
        stored = conn.execute(select(t.dead_letters.c.canonical_payload)).scalar_one()
    assert ID_NUMBER not in str(stored)  # sealed at rest, as every message's
    assert letter.canonical_payload["case"]["applicant"]["id_number"] == ID_NUMBER
    assert rating.ratings == []

    rating.set_fault(None)
    gateway.dead_letters.replay(letter.id, by="ops-1", reason="好差评系统已恢复", mapping="original")
    drain(gateway, lambda: outbox_rows(gateway, case_no)[0][3] == "done")
    assert len(rating.ratings) == 1


def test_the_shipped_bundle_is_clean_and_the_platform_takes_one_rating_per_case(
        rating: RatingPlatformSimulator) -> None:
    bundle = load_bundle(default_bundles_dir() / RATING)
    assert validate_bundle(bundle) == []
    assert filecmp.cmp(bundle.service_description, OPENAPI_FILE, shallow=False)
    assert (bundle.operations, bundle.results, sorted(bundle.subscriptions)) == ({}, None, ["evaluated"])
    platform = build_adapter(bundle, endpoint=rating.url, retry_override=RetryPolicy(1, 1, 1)).adapter
    message = {"idempotency_key": "K1", "event": {"type": "evaluated", "at": "2026-11-24T02:00:00+00:00", "seq": 9},
               "case": {"case_no": "C1", "matter_code": WITHDRAWAL},
               "evaluation": {"level": "very_dissatisfied", "channel": "hall_terminal", "text": ""}}
    first = platform.call("evaluated", message)
    assert platform.call("evaluated", message) == first  # the same request again: a repeat
    with pytest.raises(DeliveryError, match="E2001"):
        platform.call("evaluated", {**message, "idempotency_key": "K2"})
    [given] = rating.ratings
    assert (given.level, given.channel, given.evaluate_time, first) == (
        "1", "5", "2026-11-24 10:00:00", {"receipt": given.rating_no})


def listener_bundle(tmp_path: Path) -> Path:
    """The rating platform's bundle, as a test listener subscribed to certificate_issued and case_closed instead:
    each event becomes a 'rating' of its own request (the platform keeps one per caseNo, here the key)."""
    folder = tmp_path / "listener"
    shutil.copytree(default_bundles_dir() / RATING, folder)
    descriptor = (folder / "bundle.yaml").read_text(encoding="utf-8")
    descriptor = descriptor.replace("sector: rating_platform", "sector: listener").replace(
        "  evaluated: evaluated.mapping.yaml", "  certificate_issued: certificate.mapping.yaml\n"
                                               "  case_closed: closed.mapping.yaml")
    (folder / "bundle.yaml").write_text(descriptor, encoding="utf-8")
    for name, content in (("certificate", "certificate.number"), ("closed", "event.type")):
        (folder / f"{name}.mapping.yaml").write_text(f"""
http: {{method: POST, path: /hcp/v1/ratings, success: [200]}}
request:
  requestId: {{from: idempotency_key}}
  caseNo: {{from: idempotency_key}}
  itemCode: {{from: certificate.holder.id_number}}
  channel: {{value: "1"}}
  level: {{value: "5"}}
  content: {{from: {content}}}
  evaluateTime: {{from: event.at}}
response:
  business_error: {{code: code, ok: ["0000"], message: msg}}
  fields:
    receipt: {{from: data.ratingNo}}
""", encoding="utf-8")
    (folder / "evaluated.mapping.yaml").unlink()
    return folder


def test_a_subscriptions_dead_letter_is_discarded_with_nothing_to_settle_on_its_open_case(
        make_gateway: Callable[..., Gateway], rating: RatingPlatformSimulator, tmp_path: Path) -> None:
    gateway = make_gateway(bundles=(), sector_endpoints={"listener": rating.url})
    register(gateway, listener_bundle(tmp_path))
    rating.set_fault("fault")
    case_no = closed_case(gateway, certificate=True, delivered=False)  # issued, waiting to be picked up
    drain(gateway, lambda: outbox_rows(gateway, case_no)[0][3] == "dead")
    version = gateway.service.get(case_no).version
    discarded = gateway.dead_letters.discard(DeadLetterFilter(case_no=case_no), by="ops-1", reason="证照库另行补录",
                                             case_outcome="back_office")
    assert (discarded.count, discarded.kept) == (1, [])
    assert (gateway.service.get(case_no).state, gateway.service.get(case_no).version) == ("certificate_issued",
                                                                                           version)


def test_a_certificate_issued_and_a_case_closed_reach_a_bundle_subscribed_to_them(
        make_gateway: Callable[..., Gateway], rating: RatingPlatformSimulator, tmp_path: Path) -> None:
    gateway = make_gateway(bundles=(), sector_endpoints={"listener": rating.url})
    register(gateway, listener_bundle(tmp_path))
    case_no = closed_case(gateway, certificate=True)
    assert gateway.service.get(case_no).tasks[0].sector is None  # a subscriber serves no department
    assert [row[1] for row in outbox_rows(gateway, case_no)] == ["certificate_issued", "case_closed"]
    drain(gateway, lambda: [row[3] for row in outbox_rows(gateway, case_no)] == ["done", "done"])
    assert sorted((r.content, r.item_code) for r in rating.ratings) == [
        ("GJJ-2026-0001", ID_NUMBER), ("case_closed", ID_NUMBER)]
    assert outbox_statuses(gateway, case_no) == [("certificate_issued", "done"), ("case_closed", "done")]


# --- over RabbitMQ: the subscription is a sector with its own queue ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_over_rabbitmq_an_evaluation_goes_through_the_platforms_own_queue_and_a_replay_delivers_once(
        make_gateway: Callable[..., Gateway], rating: RatingPlatformSimulator) -> None:
    with rabbitmq_vhost() as amqp_url:
        gateway = make_gateway(bundles=(), sector_endpoints={RATING: rating.url}, amqp_url=amqp_url,
                               dispatch_idle_ms=20)
        register(gateway, default_bundles_dir() / RATING)
        down, up = closed_case(gateway), closed_case(gateway)
        rating.set_fault("fault", count=3)  # the first case's three attempts: a 500 each
        evaluated(gateway, down)
        with running(gateway) as transport:
            eventually(lambda: outbox_rows(gateway, down)[0][3] == "dead", what="the platform's dead letter")
            assert queue_depth(amqp_url, queue_name(RATING, False)) == 0
            evaluated(gateway, up)
            eventually(lambda: outbox_rows(gateway, up)[0][3] == "done", what="the second evaluation delivered")
            [letter] = gateway.service.dead_letters(down)
            gateway.dead_letters.replay(letter.id, by="ops-1", reason="好差评系统已恢复", mapping="original")
            eventually(lambda: outbox_rows(gateway, down)[0][3] == "done", what="the replay delivered")
        assert sorted(r.case_no for r in rating.ratings) == sorted([down, up])
        assert transport.consumer.stats.delivered == 3 and rating.counters["repeats"] == 0
