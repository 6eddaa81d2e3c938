"""The ferry's near side (issue 19): the `FerryAdapter` on a real station, and the gateway's job applying what
comes back across the gap to real cases. Both databases.

The adapter never waits: a message goes into a batch and `AnswerPending` says when to ask again; an answer
that came back becomes a result, a `SectorRefusal` or a classified `DeliveryError`; no answer within the
bundle's `answer_within_ms` is a `timeout`; a replay of a dead letter sends the message anew. In the running
gateway a delivery waiting for its answer spends no attempt, the carried bundle goes across first, an answer
batch (sealed here with the far side's key, as the agent would) makes the waiting message due at once and lands
on the case, a decision batch decides the task, an entry naming no case is counted and the rest applied, and a
synchronous query of the carried bundle is a 409. The agent itself and the full round trip are
tests/faults/test_ferry*.py and tests/e2e.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from adapters import AnswerPending, DeliveryError, FailureClass, SectorRefusal, UnsendableRequest
from adapters.kinds.ferry import FerryAdapter
from adapters.kinds.ferry.batch import Batch, Entry, FerryKeys, Limits, open_batch, seal
from adapters.kinds.ferry.folders import LinkFolder, Naming
from adapters.kinds.ferry.station import Station, StationConfig
from adapters.registry import default_bundles_dir
from certstore import Credential
from gateway.audit.ledger import MESSAGE as MESSAGE_LOG
from gateway.audit.ledger import Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.sectors.bundle_records import pack_folder
from tests.support.ferry_stations import allowance_case, submission
from tests.support.gateways import Keys, drain
from tests.support.pki import TestCA, new_key, sm2_credential

FERRY_BUNDLE = default_bundles_dir() / "upgrades" / "civil_affairs_ferry"
DOWN, UP = "civil_affairs.down", "civil_affairs.up"
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
KEY = "C-1:T1:submit_case"
MESSAGE = {"idempotency_key": KEY, "sector_ref": None, "task": {"id": "T1"},
           "case": {"case_no": "C-1"}}


@dataclass(frozen=True)
class Pair:
    near: Credential  # the gateway's: SM2
    far: Credential  # the agent's: RSA

    def near_keys(self) -> FerryKeys:
        return FerryKeys(own=self.near, peer=(Credential(self.far.name, self.far.certificate_pem),))

    def far_keys(self) -> FerryKeys:
        return FerryKeys(own=self.far, peer=(Credential(self.near.name, self.near.certificate_pem),))


@pytest.fixture(scope="module")
def pair() -> Pair:
    near_cert, near_key = sm2_credential("yiwang-ferry")
    far = TestCA().issue("civil_affairs-ferry", key=new_key("rsa"))
    return Pair(Credential("yiwang-ferry", near_cert, near_key), Credential("civil_affairs-ferry", far.cert_pem,
                                                                             far.key_pem))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def answer_entry(message_id: str, key: str, outcome: str, *, result: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None, operation: str = "submit_case") -> Entry:
    """What the agent sends back for one message (the spec's "Answers")."""
    body = {"message": message_id, "key": key, "operation": operation, "outcome": outcome, "result": result,
            "error": error}
    return Entry(id=uuid.uuid4().hex, type="answer", key=key, body=json.dumps(body).encode())


# --------------------------------------------------------------------------- the adapter on a real station


@dataclass
class Far:
    """The agent's side of the link, by hand: seals batches with its key into the gateway's incoming folder."""

    pair: Pair
    incoming: LinkFolder
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    seq: int = 0
    digest: str = ""

    def send(self, *entries: Entry) -> None:
        self.seq += 1
        data, self.digest = seal(channel=UP, seq=self.seq, previous=self.digest, entries=entries,
                                 keys=self.pair.far_keys(), sender="agent", now=self.clock())
        self.incoming.write(self.incoming.name_for(UP, self.seq, self.digest), data)


@dataclass
class Link:
    """The near station and an adapter on it; the far side is played by hand (`answer`)."""

    near: Station
    adapter: FerryAdapter
    clock: Clock
    far: Far
    outgoing: LinkFolder

    def sent(self) -> list[Path]:
        """The batches written (not the receipts, which are signals)."""
        return [path for path in self.outgoing.ready() if "_sig_" not in path.name]

    def answer(self, outcome: str, **details: Any) -> None:
        """The far side answers the latest message sent for MESSAGE, and the near side receives it."""
        state = self.near.message_state(KEY, "submit_case")
        assert state is not None
        self.far.send(answer_entry(state.id, KEY, outcome, **details))

        def record(batch: Batch, entry: Entry) -> None:
            self.near.record_answer(entry)

        self.near.receive(record)


@pytest.fixture
def link(engine: Engine, pair: Pair, tmp_path: Path) -> Link:
    clock = Clock()
    outgoing, incoming = LinkFolder(tmp_path / "outgoing"), LinkFolder(tmp_path / "incoming")
    near = Station(engine, FERRY_TABLES, StationConfig("gateway", DOWN, UP, outgoing, incoming), pair.near_keys,
                   clock)
    adapter = FerryAdapter("civil_affairs", "2.0.0-ferry", "civil_affairs", near, answer_within=timedelta(hours=48),
                           ask_again=timedelta(minutes=5), clock=clock)
    return Link(near, adapter, clock, Far(pair, incoming, clock), outgoing)


def test_a_message_is_sent_once_and_waits_then_its_answer_is_the_result(link: Link) -> None:
    with pytest.raises(AnswerPending) as pending:
        link.adapter.call("submit_case", MESSAGE)
    assert pending.value.retry_after_s == 300 and not pending.value.retryable
    with pytest.raises(AnswerPending):  # asked again before the answer: nothing is sent again
        link.adapter.call("submit_case", MESSAGE)
    assert len(link.sent()) == 1
    link.answer("ok", result={"sector_ref": "MZ-1"})
    assert link.adapter.call("submit_case", MESSAGE) == {"sector_ref": "MZ-1"}
    assert link.adapter.call("submit_case", MESSAGE) == {"sector_ref": "MZ-1"}  # taken again: the same (a crash)
    assert len(link.sent()) == 1


def test_a_refusal_across_the_ferry_is_a_sector_refusal_and_a_failure_a_classified_error(link: Link) -> None:
    with pytest.raises(AnswerPending):
        link.adapter.call("submit_case", MESSAGE)
    link.answer("refused", error={"failure": "sector_fault", "message": "缺少残疾人证", "retryable": False,
                                  "code": "3001", "way": "supplement", "missing": ["残疾人证"]})
    with pytest.raises(SectorRefusal) as refused:
        link.adapter.call("submit_case", MESSAGE)
    assert (refused.value.code, refused.value.way, refused.value.missing) == ("3001", "supplement", ("残疾人证",))

    with pytest.raises(AnswerPending):  # a replay after the refusal: sent anew, under the same key
        link.adapter.call("submit_case", MESSAGE)
    assert len(link.sent()) == 2
    link.answer("failed", error={"failure": "auth", "message": "401 from the sector", "retryable": False})
    with pytest.raises(DeliveryError) as failed:
        link.adapter.call("submit_case", MESSAGE)
    assert (failed.value.failure, failed.value.retryable) == (FailureClass.AUTH, False)
    assert "401 from the sector" in failed.value.message


def test_no_answer_within_the_bundles_age_is_a_timeout_and_its_replay_sends_anew(link: Link) -> None:
    with pytest.raises(AnswerPending):
        link.adapter.call("submit_case", MESSAGE)
    link.clock.now += timedelta(hours=47, minutes=58)
    with pytest.raises(AnswerPending) as pending:  # two minutes left: asked again then, not in five
        link.adapter.call("submit_case", MESSAGE)
    assert pending.value.retry_after_s == 120
    link.clock.now += timedelta(minutes=2)
    with pytest.raises(DeliveryError) as late:
        link.adapter.call("submit_case", MESSAGE)
    assert (late.value.failure, late.value.retryable) == (FailureClass.TIMEOUT, False)
    assert "no answer across the ferry in 2.0 days" in late.value.message
    with pytest.raises(AnswerPending):  # the dead letter replayed
        link.adapter.call("submit_case", MESSAGE)
    assert len(link.sent()) == 2


def test_status_queries_named_queries_and_oversized_messages_never_cross(link: Link, engine: Engine) -> None:
    for name in ("query_status", "marriage_record"):
        with pytest.raises(UnsendableRequest, match="never crosses the ferry"):
            link.adapter.call(name, MESSAGE)
    link.adapter.station = Station(engine, FERRY_TABLES, replace(link.near.config, limits=Limits(message_bytes=1024)),
                                   link.far.pair.near_keys, link.clock)
    with pytest.raises(UnsendableRequest, match=r"cannot cross the ferry \(too_large\)"):
        link.adapter.call("submit_case", {**MESSAGE, "case": {"form": {"note": "x" * 2000}}})
    assert link.sent() == []


# --------------------------------------------------------------------------- the gateway's near side


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], pair: Pair, tmp_path: Path) -> Gateway:
    gateway = make_gateway(bundles=(), ferry_dir=tmp_path / "ferry")
    gateway.certs.import_pem("yiwang-ferry", pair.near.certificate_pem, pair.near.private_key_pem, actor="test")
    gateway.certs.import_pem("civil_affairs-ferry", pair.far.certificate_pem, actor="test")
    version = gateway.bundles.register(pack_folder(FERRY_BUNDLE), "test").version
    gateway.bundles.activate("civil_affairs", version, "test", force=True)
    return gateway


def test_the_gateway_sends_across_the_ferry_and_takes_answers_and_decisions_from_it(gateway: Gateway,
                                                                                   pair: Pair) -> None:
    case_no = allowance_case(gateway)
    drain(gateway, lambda: submission(gateway, case_no).available_at.replace(tzinfo=UTC) > datetime.now(UTC))
    row = submission(gateway, case_no)
    assert (row.status, row.deliveries) == ("pending", 0)  # waiting for its answer: no attempt spent
    bundle = gateway.registry.get("civil_affairs").bundle
    near = gateway.ferry.station(bundle)
    sent = near.message_state(row.idempotency_key, "submit_case")
    assert sent is not None and sent.state == "sent"

    assert gateway.ferry.run() >= 1  # the carried bundle goes across, once per version
    assert gateway.ferry.run() == 0
    control = near.message_state("bundle:civil_affairs:2026.11.1", "control")
    assert control is not None and control.seq == 2
    outgoing = LinkFolder(gateway.settings.ferry_folder / "civil_affairs" / "outgoing", Naming(".txt", "text"))
    assert len(outgoing.ready()) == 2

    far = Far(pair, LinkFolder(gateway.settings.ferry_folder / "civil_affairs" / "incoming", Naming(".txt", "text")))
    far.send(answer_entry(sent.id, row.idempotency_key, "ok", result={"sector_ref": "MZ-FERRY-1"}))
    gateway.ferry.run()
    assert submission(gateway, case_no).available_at.replace(tzinfo=UTC) <= datetime.now(UTC)  # due at once
    task = lambda: gateway.service.get(case_no).tasks[0]  # noqa: E731
    drain(gateway, lambda: task().sector_ref == "MZ-FERRY-1")
    assert submission(gateway, case_no).status == "done"
    logged = sorted(gateway.ledger.records(Filters(MESSAGE_LOG, case_no=case_no), 100), key=lambda r: r.id)
    assert [(r.action, r.subject, r.outcome) for r in logged] == [("sent", "submit_case", "sent"),
                                                                  ("received", "submit_case", "ok")]

    decision = {"status": "approved", "opinion": "符合条件，予以核定", "decided_at": "2026-12-07T09:00:00Z",
                "sector_ref": "MZ-FERRY-1", "case_no": case_no, "task_id": task().task_id,
                "idempotency_key": row.idempotency_key}
    stray = dict(decision, sector_ref="MZ-NOBODY", case_no="11150203MB0C000405400011300300020991231999999")
    far.send(*(Entry(id=uuid.uuid4().hex, type="decision", body=json.dumps(d).encode()) for d in (stray, decision)))
    refused = gateway.ferry.tally.refused
    gateway.ferry.run()
    assert str(task().state) == "approved"
    assert gateway.ferry.tally.refused == refused + 1  # the stray decision: counted, the batch applied
    assert far.incoming.ready() == []


def test_an_answer_that_arrived_while_its_delivery_decided_to_wait_still_makes_it_due(gateway: Gateway) -> None:
    case_no = allowance_case(gateway)
    drain(gateway, lambda: submission(gateway, case_no).available_at.replace(tzinfo=UTC) > datetime.now(UTC))
    row = submission(gateway, case_no)
    near = gateway.ferry.station(gateway.registry.get("civil_affairs").bundle)
    sent = near.message_state(row.idempotency_key, "submit_case")
    assert sent is not None  # its answer recorded, but the waiting row stored after it was made due
    near.record_answer(answer_entry(sent.id, row.idempotency_key, "ok", result={"sector_ref": "MZ-FERRY-2"}))
    gateway.ferry.run()
    assert submission(gateway, case_no).available_at.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_during_our_keys_rotation_an_answer_wrapped_to_our_previous_certificate_still_opens(gateway: Gateway,
                                                                                           pair: Pair) -> None:
    case_no = allowance(gateway)
    drain(gateway, lambda: submit_row(gateway, case_no).available_at.replace(tzinfo=UTC) > datetime.now(UTC))
    row = submit_row(gateway, case_no)
    sent = gateway.ferry.station(gateway.registry.get("civil_affairs").bundle).message_state(row.idempotency_key,
                                                                                           "submit_case")
    assert sent is not None
    renewed_cert, renewed_key = sm2_credential("yiwang-ferry")
    gateway.certs.import_pem("yiwang-ferry", renewed_cert, renewed_key, actor="test")
    gateway.certs.rotate("yiwang-ferry", "test", overlap=timedelta(days=7))
    far = Far(pair, LinkFolder(gateway.settings.ferry_folder / "civil_affairs" / "incoming", Naming(".txt", "text")))
    far.send(answer_entry(sent.id, row.idempotency_key, "ok", result={"sector_ref": "MZ-FERRY-3"}))  # to the old one
    gateway.ferry.run()
    assert gateway.ferry.tally.failures == {} and far.incoming.ready() == []
    drain(gateway, lambda: gateway.service.get(case_no).tasks[0].sector_ref == "MZ-FERRY-3")


def test_the_carried_bundle_crosses_whole_and_an_operator_may_send_it_again(gateway: Gateway, pair: Pair) -> None:
    gateway.ferry.run()
    assert gateway.ferry.send_carried_bundle("civil_affairs") == 1
    outgoing = LinkFolder(gateway.settings.ferry_folder / "civil_affairs" / "outgoing", Naming(".txt", "text"))
    opened = [open_batch(outgoing.read(path), keys=pair.far_keys(), now=datetime.now(UTC), channel=DOWN)
              for path in outgoing.ready()]  # as the agent opens them, with its own key
    controls = [json.loads(e.body) for batch in opened for e in batch.entries if e.type == "control"]
    assert [(c["control"], c["sector"], c["version"]) for c in controls] == [("bundle", "civil_affairs",
                                                                               "2026.11.1")] * 2
    assert base64.b64decode(controls[0]["archive"]) == pack_folder(default_bundles_dir() / "civil_affairs")
    assert all(batch.sender == "gateway" for batch in opened)


def test_a_query_of_a_sector_behind_a_gap_is_409_and_its_bundle_has_no_synchronous_test(gateway: Gateway) -> None:
    tested = gateway.sector_calls.test_version("civil_affairs", "2.0.0-ferry").test_result
    assert tested is not None and tested["outcome"] == "unreachable" and "no synchronous call" in tested["answer"]
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        answer = hall.post("/v1/queries/marriage_record", json={"params": {"id_number": "150203199211054426"}})
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"] == "urn:yiwang:problem:no-synchronous-path"
