"""The far-side agent's loop: one pass reads the near side's batches, delivers, polls, and sends back.

One pass (`Agent.run_once`), in this order:
1. `station.receive(apply)`: every batch the station opens and verifies (signed by the near side's certificate
   in the agent's store, in sequence, not seen before) hands its entries here —
   - `control` (a bundle): installed after the adapters' own checks (ferry/bundles.py), active for its sector;
   - `message`: delivered to the sector with `adapters.build_adapter` of the installed bundle (the configured
     `endpoint` instead of the bundle's, if set); its outcome becomes an `answer` (ferry/answers.py), stored —
     with the polling of an accepted submission — before the station records the message applied. A message
     whose answer is stored already (re-applied after a crash) is not delivered again. A message for a sector
     with no bundle installed is answered `failed`, not lost.
2. the due polls: `query_status` to the sector; a changed status becomes a `decision` (ferry/polls.py).
3. every answer and decision not yet sent goes out in ONE batch (`station.send`); then `resend_due` (two-way:
   what the near side has not receipted) and `beacon_due` (one-way).
`serve` runs passes every `interval_ms` until SIGTERM or SIGINT, which let the pass in hand finish (exit 0).
The crash points for tests (`YIWANG_UNSAFE_FERRY_CRASH_AT`, read from the environment) are the station's
`after_read` and `after_apply`, and `before_rename` in the outgoing folder the agent hands it.
"""

from __future__ import annotations

import base64
import binascii
import json
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, cast

import structlog
from sqlalchemy.exc import IntegrityError

from adapters import (
    Batch,
    BundleError,
    DeliveryError,
    Entry,
    FailureClass,
    FerryKeys,
    FolderFull,
    Limits,
    LinkFolder,
    Naming,
    Operation,
    ReceiveReport,
    RegisteredAdapter,
    SectorRefusal,
    Station,
    StationConfig,
    crash_point,
    keys_from_store,
    mask_text,
)
from ferry import answers
from ferry.answers import ANSWER, DECISION, Outbox, Pending
from ferry.bundles import BundleRefused, Bundles
from ferry.config import AgentConfig
from ferry.polls import Poll, Polls, interval
from ferry.state import State, open_state

log = structlog.get_logger("ferry.agent")
MAX_ENTRIES_PER_BATCH = 500
RETRY_POLL_AFTER = timedelta(minutes=1)  # a poll that cannot be made (no bundle, no polling interval)
NEVER_SENT = ("query_status",)  # the agent polls itself: the near side never sends these across


@dataclass(frozen=True)
class PassReport:
    """What one pass did: the station's receiving, then the agent's own work."""

    received: ReceiveReport
    delivered: int
    installed: int
    decisions: int
    sent_seq: int | None
    resent: int
    beacon: bool


class Agent:
    """One agent on its configuration: its state opened (`close` it), its station, bundles, outbox and polls."""

    def __init__(self, config: AgentConfig, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.clock = clock
        self.state: State = open_state(config, env)
        engine, tables = self.state.engine, self.state.agent
        self.bundles = Bundles(engine, tables, self.state.store, config.endpoint)
        self.outbox = Outbox(engine, tables)
        self.polls = Polls(engine, tables)
        self.station = Station(engine, self.state.ferry, station_config(config), self.keys, clock)
        self._counts = {"delivered": 0, "installed": 0}

    def close(self) -> None:
        self.bundles.close()
        self.state.close()

    def keys(self) -> FerryKeys:
        """Ours (with the private keys: the current one and any still in its rotation overlap) and the near
        side's, from the agent's store: a rotation is seen at once."""
        return keys_from_store(self.state.store, self.config.own_certificate, self.config.near_certificate)

    # -- one pass ------------------------------------------------------------------------------------------------
    def run_once(self) -> PassReport:
        self._counts = {"delivered": 0, "installed": 0}
        received = self.station.receive(self.apply)
        decisions = self.poll_due()
        sent = self.send_pending()
        resent = self.station.resend_due()
        beacon = self.station.beacon_due()
        self.outbox.forget_sent_before(self.clock() - timedelta(days=self.config.keep_keys_days))
        report = PassReport(received, self._counts["delivered"], self._counts["installed"], decisions, sent,
                            resent, beacon)
        if report.delivered or report.installed or decisions or sent is not None or resent:
            log.info("ferry pass", delivered=report.delivered, installed=report.installed, decisions=decisions,
                     sent_seq=sent, resent=resent, received=_shown(received))
        return report

    def apply(self, batch: Batch, entry: Entry) -> None:
        """One entry of a verified batch (the station records it applied after this returns)."""
        if entry.type == "message":
            self.deliver(entry)
        elif entry.type == "control":
            self.install(batch, entry)
        else:  # answers and decisions travel the other way
            log.warning("entry of a type the agent does not take", type=entry.type, entry_id=entry.id,
                        channel=batch.channel, seq=batch.seq)

    # -- control: bundles ----------------------------------------------------------------------------------------
    def install(self, batch: Batch, entry: Entry) -> None:
        bound = log.bind(entry_id=entry.id, seq=batch.seq)
        body = _json(entry.body)
        if body is None or body.get("control") not in ("bundle", "config"):
            bound.error("control entry not understood: ignored")
            return
        if body["control"] == "config":
            bound.warning("configuration control entries are not taken by this agent yet: ignored")
            return
        try:
            sector, version = str(body["sector"]), str(body["version"])
            archive = base64.b64decode(str(body["archive"]), validate=True)
        except (KeyError, binascii.Error) as exc:
            bound.error("bundle control entry malformed: ignored", error=str(exc))
            return
        try:
            installed = self.bundles.install(sector, version, archive, batch.seq, self.clock())
        except BundleRefused as exc:
            bound.error("bundle refused", sector=sector, version=version, reason=str(exc))
            return
        self._counts["installed"] += 1
        bound.info("bundle installed", sector=sector, version=version, active=installed.active)

    # -- messages: delivery and answers ------------------------------------------------------------------------
    def deliver(self, entry: Entry) -> None:
        if self.outbox.answered(entry.id):
            log.info("message answered already (applied again after a restart): not delivered again",
                     entry_id=entry.id)
            return
        body = _json(entry.body)
        operation = str(body.get("operation", "")) if body else ""
        message = body.get("message") if body else None
        if body is None or not operation or not isinstance(message, dict):
            self._answer(entry, operation or "unknown", answers.answer_not_delivered(
                entry.id, entry.key, operation or "unknown", "the message is not {operation, message} JSON",
                FailureClass.VALIDATION))
            return
        sector = str(body.get("sector") or self.bundles.only_sector() or "")
        answer, accepted = self._call(entry, sector, operation, message)
        self._answer(entry, operation, answer, sector=sector, message=message if accepted else None)

    def _call(self, entry: Entry, sector: str, operation: str, message: Mapping[str, Any]
              ) -> tuple[dict[str, Any], bool]:
        """The answer to one message, and whether the sector accepted it."""
        key, bound = entry.key, log.bind(entry_id=entry.id, sector=sector, operation=operation)
        if operation in NEVER_SENT:
            return answers.answer_not_delivered(entry.id, key, operation, f"{operation} is never sent across the "
                                                "ferry: the agent polls its sector itself", FailureClass.VALIDATION
                                                ), False
        try:
            registered = self.bundles.adapter(sector) if sector else None
        except BundleError as exc:
            bound.error("the installed bundle cannot be used", error=str(exc))
            return answers.answer_not_delivered(entry.id, key, operation,
                                                f"configuration: the agent cannot use {sector}'s bundle: {exc}"), False
        if registered is None:
            bound.warning("message for a sector with no bundle installed")
            return answers.answer_not_delivered(entry.id, key, operation, f"configuration: agent "
                                                f"{self.config.name} has no bundle installed for "
                                                f"{sector or 'the sector'}"), False
        try:
            result = registered.adapter.call(_operation(operation), message)
        except SectorRefusal as refusal:
            bound.info("refused by the sector", code=refusal.code, way=refusal.way)
            return answers.answer_refused(entry.id, key, operation, refusal), False
        except DeliveryError as error:
            bound.warning("delivery failed", failure=str(error.failure), error=error.message)
            return answers.answer_failed(entry.id, key, operation, error), False
        except Exception as error:  # never swallowed: a bug becomes a failed answer the near side shows
            bound.exception("delivery crashed")
            return answers.answer_not_delivered(entry.id, key, operation, f"agent error: {type(error).__name__}: "
                                                f"{error}", FailureClass.SECTOR_FAULT), False
        self._counts["delivered"] += 1
        bound.info("delivered")
        return answers.answer_ok(entry.id, key, operation, result), True

    def _answer(self, entry: Entry, operation: str, answer: dict[str, Any], *, sector: str = "",
                message: Mapping[str, Any] | None = None) -> None:
        """The answer, and what an accepted message starts or ends (polling), in one transaction."""
        now = self.clock()
        sector_ref = (answer.get("result") or {}).get("sector_ref")
        polled = operation == Operation.SUBMIT_CASE and message is not None and sector_ref
        every = self._poll_interval(sector) if polled else None  # read before the write lock is taken
        try:
            with self.state.engine.begin() as conn:
                self.outbox.add(conn, ANSWER, answer, key=entry.key, operation=operation, answer_to=entry.id,
                                now=now)
                if message is None:
                    return
                if every is not None:
                    self.polls.register(conn, entry.id, sector, message, entry.key or "", str(sector_ref),
                                        now + every, now)
                elif operation == Operation.CANCEL_CASE:
                    self.polls.end_for_task(conn, sector, message)
        except IntegrityError:  # a second process (`run-once` beside `serve`) applied the same batch first
            log.warning("message answered by another process of this agent", entry_id=entry.id)

    # -- polling: decisions ------------------------------------------------------------------------------------
    def poll_due(self) -> int:
        """Ask the sector about every due poll; how many decisions that made."""
        made = 0
        for poll in self.polls.due(self.clock()):
            made += self._poll(poll)
        return made

    def _poll(self, poll: Poll) -> int:
        bound = log.bind(sector=poll.sector, case_no=poll.case_no, task_id=poll.task_id)
        registered = self._adapter_or_none(poll.sector)
        every = self._poll_interval(poll.sector, registered) or RETRY_POLL_AFTER
        if registered is None:
            self.polls.failed(poll, "no bundle installed for the sector", self.clock() + every)
            return 0
        try:
            result = registered.adapter.call(Operation.QUERY_STATUS, poll.query())
        except DeliveryError as error:
            bound.warning("status poll failed", failure=str(error.failure), error=error.message)
            self.polls.failed(poll, mask_text(str(error)), self.clock() + every)
            return 0
        status, now = str(result.get("status", "")), self.clock()
        with self.state.engine.begin() as conn:
            changed = status != poll.last_status
            if changed:
                body = answers.decision(result, case_no=poll.case_no, task_id=poll.task_id,
                                        idempotency_key=poll.idempotency_key, sector_ref=poll.sector_ref)
                self.outbox.add(conn, DECISION, body, key=poll.idempotency_key, operation=Operation.QUERY_STATUS,
                                answer_to=None, now=now)
            self.polls.answered(conn, poll, status, now + every)
        if changed:
            bound.info("status changed", status=status)
        return int(changed)

    def _adapter_or_none(self, sector: str) -> RegisteredAdapter | None:
        try:
            return self.bundles.adapter(sector)
        except BundleError as exc:
            log.error("the installed bundle cannot be used", sector=sector, error=str(exc))
            return None

    def _poll_interval(self, sector: str, registered: RegisteredAdapter | None = None) -> timedelta | None:
        registered = registered or self._adapter_or_none(sector)
        return interval(self.config.poll_interval_ms, registered.poll_interval_ms if registered else None)

    # -- sending -----------------------------------------------------------------------------------------------
    def send_pending(self) -> int | None:
        """Every answer and decision waiting, in one batch (up to the batch limits); its sequence number."""
        pending = self.outbox.pending(MAX_ENTRIES_PER_BATCH)
        budget = self.config.limits.batch_bytes // 2  # half: room for the envelope and its encoding
        chosen: list[Pending] = []
        for item in pending:
            budget -= len(item.entry.body)
            if chosen and budget < 0:
                break
            chosen.append(item)
        if not chosen:
            return None
        try:
            seq = self.station.send([p.entry for p in chosen], operation_of={p.entry.id: p.operation for p in chosen})
        except FolderFull as exc:
            log.warning("the outgoing folder is full: answers wait for the next pass", error=str(exc))
            return None
        self.outbox.sent([p.entry.id for p in chosen], seq, self.clock())
        return seq

    # -- serving -------------------------------------------------------------------------------------------------
    def serve(self, stop: threading.Event) -> int:
        """Passes every `interval_ms` until `stop` is set (the pass in hand finishes); how many passes ran. A pass
        that fails is logged and the next one tries again: a locked file or a full disk passes."""
        passes = 0
        every = self.config.interval_ms / 1000
        log.info("ferry agent serving", name=self.config.name, channel=self.config.channel,
                 interval_ms=self.config.interval_ms)
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - kept serving; the traceback is in the log
                log.exception("ferry pass failed")
            passes += 1
            stop.wait(every)
        log.info("ferry agent stopped", passes=passes)
        return passes


def station_config(config: AgentConfig) -> StationConfig:
    naming = Naming(extension=config.naming.extension, wrapper=config.naming.wrapper,
                    **({"pattern": config.naming.pattern} if config.naming.pattern else {}))
    return StationConfig(
        name=config.name, send_channel=config.send_channel, receive_channel=config.receive_channel,
        # crash_point: the test-only "before_rename" (YIWANG_UNSAFE_FERRY_CRASH_AT) of what the agent writes
        outgoing=LinkFolder(config.outgoing, naming, crash_at=crash_point),
        incoming=LinkFolder(config.incoming, naming),
        mode=config.mode, cipher=config.cipher,
        limits=Limits(batch_bytes=config.limits.batch_bytes, message_bytes=config.limits.message_bytes),
        resend_after=timedelta(milliseconds=config.resend_after_ms),
        beacon_every=timedelta(milliseconds=config.beacon_every_ms),
        keep_keys=timedelta(days=config.keep_keys_days))


def serve(config: AgentConfig, env: Mapping[str, str] | None = None) -> int:
    """`yiwang ferry serve`: the loop until SIGTERM or SIGINT (then the pass in hand finishes); exit code 0."""
    stop = threading.Event()

    def stopping(signum: int, _frame: FrameType | None) -> None:
        log.info("ferry agent stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    agent = Agent(config, env=env)
    try:
        agent.serve(stop)
    finally:
        agent.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run_once(config: AgentConfig, env: Mapping[str, str] | None = None) -> PassReport:
    """`yiwang ferry run-once`: one pass."""
    agent = Agent(config, env=env)
    try:
        return agent.run_once()
    finally:
        agent.close()


def _operation(name: str) -> Operation:
    """A canonical operation, or a case event's name (a subscription), which adapters take as they are."""
    return Operation(name) if name in Operation.__members__.values() else cast(Operation, name)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _shown(report: Any) -> Any:
    return asdict(report) if is_dataclass(report) and not isinstance(report, type) else report
