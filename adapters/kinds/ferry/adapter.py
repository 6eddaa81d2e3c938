"""The ferry kind's adapter (`FerryAdapter`): a message for a sector behind a gap goes into a batch on its
channel, and its answer is taken when it has come back across.

One call never waits for the far side. `call(operation, message)` asks the channel's station what became of the
message sent with this idempotency key for this operation (`Station.message_state`):
- none sent yet, or the last one sent was settled as a failure (a dead letter being replayed): it is sent
  (a `message` entry, `{"operation", "message"}`) and `AnswerPending` says to ask again later;
- sent, unanswered, for less than the bundle's `ferry.answer_within_ms`: `AnswerPending`;
- sent, unanswered, for longer: `DeliveryError(TIMEOUT)`, not retried — a dead letter like any other, whose
  replay sends the message anew (it is settled as a failure here first);
- answered: the answer is taken (`Station.consume`) and becomes what any adapter gives — its canonical result,
  a `SectorRefusal` (`outcome: refused`) or a `DeliveryError` of the failure class the agent met (`failed`).
An answer taken again (the process died between taking it and recording the outcome) gives the same.
`query_status` and named queries never cross (`UnsendableRequest`): the agent polls its sector itself.

The station of a bundle comes from the one seam the composition root sets, `use_stations(source)` (like
`adapters.use_vault`): the gateway builds stations on its own database and folders (`gateway.sectors.ferry`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from adapters.contract import (
    AnswerPending,
    CanonicalMessage,
    CanonicalResult,
    DeliveryError,
    FailureClass,
    Operation,
    SectorRefusal,
    UnsendableRequest,
)
from adapters.descriptor import Bundle
from adapters.kinds.ferry.batch import BatchRefused, Entry

OK, REFUSED, FAILED = "ok", "refused", "failed"  # an answer's outcome
SENT, ANSWERED = "sent", "answered"  # a sent message's state
# The soonest a waiting message is asked about again; its answer arriving makes it due at once anyway.
LEAST_WAIT_S = 1.0


class SentMessage(Protocol):
    """What the station remembers of one message it sent (`Station.message_state`)."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...  # sent | answered
    @property
    def created_at(self) -> datetime: ...
    @property
    def answer(self) -> Mapping[str, Any] | None: ...
    @property
    def consumed_at(self) -> datetime | None: ...


class MessageStation(Protocol):
    """What the adapter needs of its channel's station (`adapters.kinds.ferry.station.Station`)."""

    def send(self, entries: Sequence[Entry], *, operation_of: Mapping[str, str] | None = None) -> int: ...
    def message_state(self, key: str, operation: str) -> SentMessage | None: ...
    def consume(self, message_id: str) -> None: ...


StationSource = Callable[[Bundle], MessageStation]
Clock = Callable[[], datetime]
_stations: StationSource | None = None
_clock: Clock = lambda: datetime.now(UTC)  # noqa: E731 - the default until the composition root sets its own


def use_stations(source: StationSource | None, *, clock: Clock | None = None) -> None:
    """Install where ferry bundles find their channel's station (the composition root: the gateway's database
    and folders) and, optionally, the clock answer deadlines are reckoned by; None removes the source."""
    global _stations, _clock
    _stations = source
    if clock is not None:
        _clock = clock


@dataclass
class FerryAdapter:
    """One ferry bundle version: messages to its channel's station, answers from it."""

    sector: str
    version: str
    channel: str
    station: MessageStation
    answer_within: timedelta
    ask_again: timedelta  # how long a waiting message waits before it is asked about again
    clock: Clock

    @classmethod
    def of(cls, bundle: Bundle, channel: str, answer_within_ms: int, resend_after_ms: int) -> FerryAdapter:
        """The adapter of a ferry bundle, on the station `use_stations` gives for it (`ValueError` without one)."""
        if _stations is None:
            raise ValueError("a ferry bundle needs the gateway's stations (use_stations was never called)")
        return cls(bundle.sector, bundle.version, channel, _stations(bundle), timedelta(milliseconds=answer_within_ms),
                   timedelta(milliseconds=resend_after_ms), _clock)

    def render(self, operation: Operation | str, message: CanonicalMessage) -> dict[str, Any]:
        """What crosses: the canonical message for one operation, on the channel (the agent renders the rest)."""
        return {"ferry": self.channel, "operation": str(operation), "message": dict(message)}

    def call(self, operation: Operation | str, message: CanonicalMessage) -> CanonicalResult:
        name = self._crossing(operation)
        key = str(message.get("idempotency_key") or "")
        if not key:
            raise UnsendableRequest("a message crosses the ferry only with its idempotency key")
        sent = self.station.message_state(key, name)
        if sent is None or _settled_as_failure(sent):
            return self._send(name, message, key)
        if sent.state != ANSWERED:
            return self._wait(sent)
        if sent.consumed_at is None:
            self.station.consume(sent.id)
        return _answer(sent.answer or {}, sent.id)

    def _crossing(self, operation: Operation | str) -> str:
        name = str(operation)
        if name == Operation.QUERY_STATUS or name not in {str(op) for op in Operation}:
            raise UnsendableRequest(f"{name} never crosses the ferry ({self.sector} {self.version}): the agent "
                                    "behind the gap asks its sector itself")
        return name

    def _send(self, operation: str, message: CanonicalMessage, key: str) -> CanonicalResult:
        entry = Entry(id=uuid.uuid4().hex, type="message", key=key,
                      body=json.dumps({"operation": operation, "message": dict(message)}, ensure_ascii=False,
                                      separators=(",", ":")).encode("utf-8"))
        try:
            seq = self.station.send([entry], operation_of={entry.id: operation})
        except BatchRefused as exc:  # too large for the link, the same every time: nothing was sent
            raise UnsendableRequest(f"cannot cross the ferry ({exc.code}): {exc.reason}") from exc
        except OSError as exc:  # the outgoing folder full or gone: nothing was recorded, try again
            raise DeliveryError(FailureClass.TRANSPORT, f"cannot write to the ferry's outgoing folder: {exc}",
                                retryable=True) from exc
        raise AnswerPending(f"sent across the ferry on {self.channel} (batch {seq}, message {entry.id})",
                            self._wait_s(timedelta(0)), sent=True)

    def _wait(self, sent: SentMessage) -> CanonicalResult:
        waited = self.clock() - sent.created_at
        if waited >= self.answer_within:
            self.station.consume(sent.id)  # settled as a failure: a replay of the dead letter sends it anew
            raise DeliveryError(FailureClass.TIMEOUT, f"no answer across the ferry in {_days(waited)} (ferry."
                                                      f"answer_within_ms {_ms(self.answer_within)})", retryable=False)
        raise AnswerPending(f"on its way across the ferry on {self.channel} (message {sent.id})", self._wait_s(waited))

    def _wait_s(self, waited: timedelta) -> float:
        left = self.answer_within - waited
        return max(min(self.ask_again, left).total_seconds(), LEAST_WAIT_S)


def _settled_as_failure(sent: SentMessage) -> bool:
    """Taken already, and not as a result: it timed out or was refused or failed — a replay sends anew."""
    outcome = (sent.answer or {}).get("outcome")
    return sent.consumed_at is not None and (sent.state != ANSWERED or outcome != OK)


def _answer(answer: Mapping[str, Any], message_id: str) -> CanonicalResult:
    """The answer the agent sent as what any adapter gives: the result, or the refusal or failure it carries."""
    outcome = answer.get("outcome")
    if outcome == OK and isinstance(answer.get("result"), Mapping):
        return dict(answer["result"])
    found = answer.get("error")
    error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    said = str(error.get("message") or "")
    if outcome == REFUSED:
        missing = tuple(str(m) for m in error.get("missing") or ())
        raise SectorRefusal(str(error.get("code") or ""), said, str(error.get("way") or "back_office"), missing)
    if outcome == FAILED:
        try:
            failure = FailureClass(str(error.get("failure")))
        except ValueError:
            failure = FailureClass.SECTOR_FAULT
        code = error.get("code")
        # Retrying here cannot help: the agent met it and gave up; a replay of the dead letter sends anew.
        raise DeliveryError(failure, f"across the ferry: {said}", retryable=False,
                            business_code=str(code) if code else None)
    raise DeliveryError(FailureClass.VALIDATION, f"an answer across the ferry that cannot be read "
                                                 f"(message {message_id}, outcome {outcome!r})")


def _days(waited: timedelta) -> str:
    hours = waited.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours" if hours >= 1 \
        else f"{waited.total_seconds():.0f} s"


def _ms(span: timedelta) -> int:
    return round(span.total_seconds() * 1000)
