"""Delivering one outbox message: call the sector's adapter, record the outcome. The transports decide when
(`gateway.transport.in_process`, the loop of the embedded default; `gateway.transport.amqp`, RabbitMQ workers).

A message is leased, never locked across the sector call: a dispatcher that dies mid-call simply
lets its lease expire, and another takes the message over with the same idempotency key, so the
sector recognises the repeat (invariants 1 and 2). The sector call happens outside any database
transaction, so a slow sector never holds SQLite's write lock.

A delivery refused by the sector's open circuit breaker is no failure of the message: it is made due again
for when the breaker may close, this take not counted (unless a call reached the sector first). The bundle's
`retry.max_wait_ms` bounds that wait from the first refusal; past it the message becomes a dead letter of
class `circuit_open` carrying the sector's last real answer. Over RabbitMQ the row goes back to pending: the
worker acknowledges the broker's message and the relay publishes the row again when it is due.

A status answer that cannot be read (`unreadable`) does not end the polling: it is counted on the outbox row and
asked again after a backoff; only `results.max_bad_answers` of them in a row make a dead letter.

A message to a sector behind a gap (the `ferry` kind) is answered later: `AnswerPending` makes it due again, this
take not counted (`CaseService.wait_for_answer`), until its answer has come across (or it waited too long: the
adapter's `timeout` dead letter).

A sector's final refusal of a submission (`SectorRefusal`: a code its mapping declares final) is an answer, not
a failure: the way forward it names is applied to the case (`CaseService.record_refusal`), with no dead letter.

A case event for a sector subscribed to it (its row's task is `e<event seq>`, `OutboxRepository.add_event`) goes
the same way, through the mapping named for the event, with the event message (`event_message`), even when the
case has ended: the sector's answer (its receipt) is recorded in the message log and nothing on the case changes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal, Protocol

import structlog

from adapters import (
    MATERIALS_SENT_WITH,
    AnswerPending,
    DeliveryError,
    FailureClass,
    Operation,
    RegisteredAdapter,
    SectorRefusal,
    UnsendableRequest,
    carried_bundle,
)
from gateway.cases.service import CaseService
from gateway.domain.case import Case, CaseState, Trigger
from gateway.domain.lifecycle import EVALUATED, announced_as
from gateway.materials.links import MaterialNotSendable, MaterialTransport
from gateway.observability.correlation import correlated
from gateway.persistence.repository import Failure, OutboxMessage

log = structlog.get_logger("yiwang.dispatch")
INTERNAL_ERROR = "internal"  # a bug of ours, not one of the sector failure classes
CONFIGURATION_ERROR = "configuration"  # no active bundle for the sector
MATERIAL_ERROR = "material"  # a material that cannot go as the bundle declares (altered, too large): not retried
CIRCUIT_OPEN = "circuit_open"  # the sector's breaker stayed open for longer than the bundle's retry.max_wait_ms
ENDED = frozenset({CaseState.WITHDRAWN, CaseState.CLOSED, CaseState.NOT_ACCEPTED, CaseState.VOIDED})
# How a delivery ended, as the observer hears it (the label `outcome` of yiwang_deliveries_total).
DELIVERED = "delivered"  # the sector took it; its answer is recorded
DEAD = "dead"  # a dead letter: failed past the retry policy, or can never go (configuration, material, a bug)
NOT_SENT = "not_sent"  # settled without a sector call: the case ended, or the bundle lacks the operation
WAITING = "waiting"  # refused by the open breaker, or its answer is on its way across a gap: due again later
BAD_ANSWER = "bad_answer"  # a status answer that could not be read: asked again later (`unreadable`)
RETRY = "retry"  # nothing could be stored (the database): the lease expires or the broker redelivers
# A run of unreadable status answers backs off: the polling interval doubled per bad answer, at most this many times.
BAD_ANSWER_BACKOFF_CAP = 16


@dataclass
class DispatchSettings:
    lease: timedelta = timedelta(seconds=60)  # longer than any adapter's timeout times its attempts
    batch: int = 10
    idle: timedelta = timedelta(milliseconds=200)  # how long to sleep when nothing is due
    poll_interval: timedelta | None = None  # overrides the bundles' polling interval (tests, demo)
    concurrency: int = 1  # cases whose messages `run` delivers side by side (YIWANG_WORKER_CONCURRENCY)
    # The negative control of the fault tests, never for production: a fresh idempotency key on every
    # delivery, so a sector cannot recognise a repeat and the ledger check must find duplicates.
    unsafe_fresh_keys: bool = False


class AdapterSource(Protocol):
    def get(self, sector: str) -> RegisteredAdapter: ...

    def get_version(self, sector: str, version: str) -> RegisteredAdapter: ...


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended; `call_s` is how long the sector call took (None: no call was made)."""

    name: str
    call_s: float | None = None


class DeliveryObserver(Protocol):
    """Hears how every delivery ended (metrics, built by the composition root); must not raise."""

    def __call__(self, sector: str, operation: str, outcome: Outcome) -> None: ...


class MessageLog(Protocol):
    """Where what is sent to and received from sectors is recorded (`gateway.audit.ledger.Ledger`); never raises."""

    def message(self, sector: str, direction: Literal["sent", "received"], operation: str, case_no: str | None,
                idempotency_key: str | None, body: Any, status: str) -> object: ...


class Delivery:
    """Delivers one outbox message at a time and stores its outcome; the transports decide when."""

    def __init__(self, service: CaseService, registry: AdapterSource,
                 settings: DispatchSettings | None = None, materials: MaterialTransport | None = None,
                 messages: MessageLog | None = None, observer: DeliveryObserver | None = None) -> None:
        self.observer = observer  # None: outcomes are only logged
        self.service = service
        self.units = service.units  # the outbox leases: a unit of work each, committed explicitly
        self.messages = messages  # None: exchanges with sectors are not recorded
        self.registry = registry
        self.settings = settings or DispatchSettings()
        self.materials = materials  # None: materials travel as references only (`file_ref`)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def take_and_deliver(self, outbox_id: int) -> bool:
        """A worker got this message from the broker: deliver it unless its outcome is stored already (a
        redelivered copy). Returns False for such a copy. Database errors propagate: nothing was stored,
        so the worker must hand the message back rather than acknowledge it.

        While another worker's lease on it is live, this copy waits — for that worker to store the outcome
        (then it is a copy) or for its lease to lapse (it died: this one delivers) — and never calls the
        sector beside it. The wait is bounded by one lease."""
        give_up = time.monotonic() + self.settings.lease.total_seconds()
        while True:
            now = self.service.clock.now()
            with self.units() as uow:
                message = uow.outbox.take(outbox_id, self.owner, now, now + self.settings.lease)
                held = None if message is not None else uow.outbox.held_by_another(outbox_id, self.owner, now)
                uow.commit()
            if message is not None:
                self.deliver(message)
                return True
            if held is None or time.monotonic() > give_up:
                return False  # settled already (a copy), or held longer than any lease: its holder settles it
            time.sleep(min((held - now).total_seconds(), self.settings.idle.total_seconds()))

    def deliver(self, message: OutboxMessage) -> None:
        """Deliver one message and store its outcome; the observer hears how it ended, even when a
        database error propagates (outcome `retry`: nothing was stored)."""
        outcome = Outcome(RETRY)
        try:  # every log line of the delivery, and the adapter's X-Correlation-Id, carry the request's id
            with correlated(message.correlation_id, case_no=message.case_no, sector=message.sector,
                            operation=message.operation, outbox_id=message.id):
                outcome = self._deliver(message)
        finally:
            if self.observer is not None:
                self.observer(message.sector, message.operation, outcome)

    def _deliver(self, message: OutboxMessage) -> Outcome:
        case = self.service.get(message.case_no)
        event = message.event_seq is not None  # a case event to a subscribed sector: the case has often ended
        if case.state in ENDED and message.operation != Operation.CANCEL_CASE and not event:
            self._settle(message, "the case has ended")
            return Outcome(NOT_SENT)
        try:  # a replay with the original mapping is pinned to the version the message died with
            target = self.registry.get(message.sector) if message.bundle_version is None \
                else self.registry.get_version(message.sector, message.bundle_version)
        except LookupError as error:  # no active bundle: a configuration an operator must fix, then replay
            self._dead_letter(message, Failure(CONFIGURATION_ERROR, str(error)))
            return Outcome(DEAD)
        if message.operation not in (target.bundle.subscriptions if event else target.bundle.operations):
            self._settle(message, f"the {message.sector} bundle has no {message.operation}")
            return Outcome(NOT_SENT)
        # A subscribed event goes through the mapping named for it, as a named query goes by its name.
        operation = message.operation if event else Operation(message.operation)
        key = f"{message.idempotency_key}#{uuid.uuid4().hex[:8]}" if self.settings.unsafe_fresh_keys \
            else message.idempotency_key
        payload = event_message(case, message.event_seq, key) if message.event_seq is not None \
            else canonical_message(case, message.task_id, key)
        bound = log.bind(case_no=message.case_no, sector=message.sector, operation=operation, outbox_id=message.id,
                         bundle_version=target.version)
        context = Failure("", "", canonical_payload=payload, bundle_version=target.version)
        if self.materials is not None and message.operation in MATERIALS_SENT_WITH:
            try:
                payload = self.materials.attach(payload, target.bundle.materials_transport, message.sector)
            except MaterialNotSendable as error:  # the same every time: a dead letter at once, nothing sent
                bound.warning("materials not sendable", error=str(error))
                self._dead_letter(message, replace(context, error_class=MATERIAL_ERROR, error_message=str(error)))
                return Outcome(DEAD)
        started = time.monotonic()
        try:
            result = logged_call(self.messages, target, operation, payload, case_no=message.case_no)
        except DeliveryError as error:
            def render() -> Any:  # what would have been sent, for the dead letter
                return target.adapter.render(operation, payload)  # type: ignore[arg-type]  # an event's name

            if isinstance(error, AnswerPending):
                return self._wait_for_answer(message, error, time.monotonic() - started, bound)
            if isinstance(error, SectorRefusal) and operation is Operation.SUBMIT_CASE:
                return self._refused(message, error, time.monotonic() - started, bound)
            if operation is Operation.QUERY_STATUS and unreadable(error):
                return self._bad_answer(message, target, error, _failed(context, error), time.monotonic() - started,
                                        bound)
            if getattr(error, "circuit_open", False):
                return self._wait_for_circuit(message, target, error, _failed(context, error), started, render,
                                              bound)
            bound.warning("delivery failed", failure=str(error.failure), error=error.message)
            self._dead_letter(message, _failed(context, error), render)
            return Outcome(DEAD, time.monotonic() - started)
        except Exception as error:  # never swallowed: a bug becomes a dead letter an operator can see
            bound.exception("delivery crashed")
            self._dead_letter(message, replace(context, error_class=INTERNAL_ERROR, attempts=1,
                                               error_message=f"{type(error).__name__}: {error}"))
            return Outcome(DEAD, time.monotonic() - started)
        call_s = time.monotonic() - started
        self._record(message, target, result)
        bound.info("delivered", result_status=result.get("status"))
        return Outcome(DELIVERED, call_s)

    def _refused(self, message: OutboxMessage, refusal: SectorRefusal, call_s: float, bound: Any) -> Outcome:
        """The sector's final no to a submission: the way forward its mapping names is applied to the case at
        once (`CaseService.record_refusal`); no dead letter — nothing is left for an operator to do."""
        self.service.record_refusal(message, self.owner, refusal)
        bound.info("refused by the sector", code=refusal.code, way=refusal.way)
        return Outcome(DELIVERED, call_s)

    def _wait_for_answer(self, message: OutboxMessage, pending: AnswerPending, call_s: float, bound: Any) -> Outcome:
        """The message is on its way across a gap (a `ferry` sector): due again in `retry_after_s` — sooner if
        its answer arrives (`gateway.sectors.ferry` makes it due then) — this take not counted as a delivery."""
        until = self.service.clock.now() + timedelta(seconds=max(pending.retry_after_s, 0.0))
        self.service.wait_for_answer(message, self.owner, until)
        bound.info("waiting for the answer", until=until.isoformat(), detail=pending.message)
        return Outcome(WAITING, call_s)

    def _bad_answer(self, message: OutboxMessage, target: RegisteredAdapter, error: DeliveryError, failure: Failure,
                    call_s: float, bound: Any) -> Outcome:
        """A status answer that cannot be read (already in the message log): asked again after a backoff — the
        polling interval doubled per bad answer in a row, capped at `BAD_ANSWER_BACKOFF_CAP` times it; the
        bundle's `results.max_bad_answers` in a row make a dead letter."""
        in_a_row = message.bad_answers + 1
        if in_a_row >= target.max_bad_answers:
            bound.warning("status answers unreadable too often", bad_answers=in_a_row, error=error.message)
            self._dead_letter(message, replace(failure, error_message=f"{in_a_row} status answers in a row could not "
                                                                      f"be read; the last: {error.message}"))
            return Outcome(DEAD, call_s)
        backoff = self._poll_interval(target) * min(2 ** in_a_row, BAD_ANSWER_BACKOFF_CAP)
        self.service.record_bad_answer(message, self.owner, backoff)
        bound.warning("status answer unreadable: asking again later", bad_answers=in_a_row, error=error.message,
                      next_poll_in_s=backoff.total_seconds())
        return Outcome(BAD_ANSWER, call_s)

    def _poll_interval(self, target: RegisteredAdapter) -> timedelta:
        interval = target.poll_interval_ms
        return self.settings.poll_interval or timedelta(milliseconds=interval or 5000)

    def _wait_for_circuit(self, message: OutboxMessage, target: RegisteredAdapter, error: DeliveryError,
                          failure: Failure, started: float, render: Callable[[], Any], bound: Any) -> Outcome:
        """Due again when the breaker may close, or a `circuit_open` dead letter once it has waited long enough."""
        now = self.service.clock.now()
        since = message.circuit_wait_since or now
        max_wait = timedelta(milliseconds=target.bundle.retry.max_wait_ms)
        spent = error.attempts > 1  # calls reached the sector before the breaker opened under them
        call_s = time.monotonic() - started if spent else None
        if now - since >= max_wait:
            bound.warning("circuit stayed open too long", error=error.message)
            self._dead_letter(message, replace(
                failure, error_class=CIRCUIT_OPEN, error_message=_waited_too_long(error, now - since, max_wait)),
                render)
            return Outcome(DEAD, call_s)
        until = min(now + timedelta(seconds=getattr(error, "circuit_wait_s", 0.0)), since + max_wait)
        self.service.wait_for_circuit(message, self.owner, until, spent=spent)
        bound.info("waiting for the circuit", until=until.isoformat(), waiting_since=since.isoformat())
        return Outcome(WAITING, call_s)

    def _record(self, message: OutboxMessage, target: RegisteredAdapter, result: dict[str, Any]) -> None:
        interval = target.poll_interval_ms  # None: the sector calls back with its decision
        poll_after = None if interval is None else self.settings.poll_interval or timedelta(milliseconds=interval)
        if message.event_seq is not None:  # the subscriber has it: nothing on the case changes
            self.service.record_event_delivered(message, self.owner)
        elif message.operation == Operation.SUBMIT_CASE:
            self.service.record_submitted(message, self.owner, result["sector_ref"], poll_after)
        elif message.operation == Operation.QUERY_STATUS:
            self.service.record_status(message, self.owner, result, poll_after or timedelta(seconds=5))
        elif message.operation == Operation.FETCH_CERTIFICATE:
            self.service.record_certificate(message, self.owner, result)
        else:  # cancel_case: the sector has been told, and the cancelled task shows it
            self.service.record_cancelled(message, self.owner)

    def _settle(self, message: OutboxMessage, why: str) -> None:
        self.service.settle_without_sending(message, self.owner)
        log.info("not sent", case_no=message.case_no, operation=message.operation, why=why)

    def _dead_letter(self, message: OutboxMessage, failure: Failure,
                     render: Callable[[], Any] | None = None) -> None:
        rendered = None
        if render is not None:
            try:
                rendered = jsonable(render())
            except Exception as exc:  # the rendering may be what failed; say so rather than lose the letter
                rendered = {"error": f"could not render: {exc}"}
        self.service.record_dead_letter(message, self.owner, replace(failure, rendered_request=rendered))


def unreadable(error: DeliveryError) -> bool:
    """An answer came and could not be read: malformed or hostile (VALIDATION), or not what the mapping reads
    (MAPPING: a missing field, an unknown status code). Not a request that could not be rendered: nothing went."""
    return error.failure in (FailureClass.VALIDATION, FailureClass.MAPPING) and not isinstance(error,
                                                                                           UnsendableRequest)


def _failed(context: Failure, error: DeliveryError) -> Failure:
    """The dead letter of a delivery that failed with `error`: its class, message and every attempt."""
    return replace(context, error_class=str(error.failure), error_message=error.message, attempts=error.attempts,
                   last_response=error.last_response, history=tuple(error.history))


def _waited_too_long(error: DeliveryError, waited: timedelta, max_wait: timedelta) -> str:
    """A `circuit_open` dead letter's message: how long it waited, the refusal, the sector's latest failure."""
    text = (f"waited {waited.total_seconds():.0f} s for the circuit (retry.max_wait_ms "
            f"{round(max_wait.total_seconds() * 1000)}): {error.message}")
    last = getattr(error, "last_failure", "")
    return f"{text}; last failure: {last}" if last else text


def canonical_message(case: Case, task_id: str, idempotency_key: str) -> dict[str, Any]:
    """The canonical message of `adapters.contract`: identifiers and the case as the sector needs it."""
    task = case.task(task_id)
    return {
        "idempotency_key": idempotency_key,
        "sector_ref": task.sector_ref,
        "task": {"id": task.task_id, "department": task.department, "credit_code": task.credit_code,
                 "lead": task.lead},
        "case": _case_block(case),
    }


def event_message(case: Case, seq: int, idempotency_key: str) -> dict[str, Any]:
    """A case event as a subscribed sector gets it (`adapters.canonical.EVENT_MESSAGES`): the event, the case, and
    the evaluation (evaluated) or the certificate (certificate_issued, case_closed once one was issued)."""
    event = next(e for e in case.events if e.seq == seq)
    kind = announced_as(event)
    message: dict[str, Any] = {"idempotency_key": idempotency_key,
                               "event": {"type": kind, "at": event.at.isoformat(), "seq": event.seq},
                               "case": _case_block(case)}
    if kind == EVALUATED and case.evaluation is not None:
        message["evaluation"] = vars(case.evaluation).copy()
    issued = next((e for e in case.events if e.trigger is Trigger.ISSUE_CERTIFICATE), None)
    if kind != EVALUATED and case.certificate is not None and issued is not None:
        certificate = case.certificate
        message["certificate"] = {
            "name": certificate.name, "number": certificate.number, "issuer": certificate.issuer,
            "valid_until": certificate.valid_until.isoformat() if certificate.valid_until else None,
            "holder": {"name": case.applicant.name, "id_type": case.applicant.id_type,
                       "id_number": case.applicant.id_number},
            "issued_at": issued.at.isoformat(),
        }
    return message


def _case_block(case: Case) -> dict[str, Any]:
    """The case as every canonical message carries it; accepted_at is None for a case never accepted."""
    accepted = next((e for e in case.events if e.to_state is CaseState.ACCEPTED), None)
    return {
        "case_no": case.case_no,
        "matter_code": case.matter_code,
        "accepted_at": accepted.at.isoformat() if accepted is not None else None,
        "green_channel": bool(case.green_channel),
        "channel": case.channel,
        "region_code": case.region_code,
        "applicant": vars(case.applicant).copy(),
        "materials": [{**m.described(), "received": True} for m in case.materials],
        "form": dict(case.form),
    }



def logged_call(messages: MessageLog | None, target: RegisteredAdapter, operation: str, payload: dict[str, Any], *,
                case_no: str | None) -> dict[str, Any]:
    """`target.adapter.call`, with the rendered request recorded as sent and the canonical answer (or the
    classified failure) as received. A message the mapping cannot render is never sent: nothing to record; nor
    is an attempt the sector's open breaker refuses. The request is recorded as sent once, when the first
    attempt passes the breaker — before the call, so a process that dies during it leaves it on record.
    A ferry's message (its bundle carries the sector's: `adapters.carried_bundle`) is recorded as sent when it
    went into a batch (`AnswerPending.sent`), not at each look for its answer, and as received when its answer is
    taken."""
    if messages is None:
        return target.adapter.call(operation, payload)
    key = payload.get("idempotency_key") or payload.get("request_id")  # a named query's: its request id
    # Kinds render a query's name too; adapters.contract.Adapter.render names only Operation: hence the ignore.
    try:
        rendered = jsonable(target.adapter.render(operation, payload))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the call below fails the same way and says why
        return target.adapter.call(operation, payload)
    sent: list[bool] = []

    def record_sent() -> None:
        if not sent:
            sent.append(True)
            messages.message(target.sector, "sent", operation, case_no, key, rendered, "sent")

    later = carried_bundle(target.bundle) is not None  # answered later, across a gap
    try:
        result = target.adapter.call(operation, payload, on_sent=None if later else record_sent)
    except AnswerPending as pending:
        if pending.sent:  # into a batch just now: on record once, as it went
            record_sent()
        raise
    except DeliveryError as error:
        if sent or (later and not isinstance(error, UnsendableRequest)):  # else nothing was exchanged to record
            messages.message(target.sector, "received", operation, case_no, key,
                             {"failure": str(error.failure), "error": error.message, "attempts": error.attempts},
                             str(error.failure))
        raise
    messages.message(target.sector, "received", operation, case_no, key, result, "ok")
    return result


def jsonable(value: Any) -> Any:
    """What an adapter rendered (a dict for SOAP, an HttpRequest for REST), as JSON for the dead letter."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
