"""The operators' dead-letter desk: find failed messages, read their whole story, replay or discard them.

A dead letter is a message that outlasted its retry policy (DESIGN invariant 9). Operators list them by
filter (sector, bundle version, matter, case, error class, time, attempts), page through them with an
opaque keyset cursor, replay one or thousands, and discard what must never be sent, always with a reason.

A replay reopens the letter's outbox row: due at once, with the idempotency key of every earlier attempt
(invariant 2), delivered by the ordinary transport under the sector's rate limit. A bulk replay is a
*run*: `start_replay` freezes its letters (each carries the run's id) in one transaction and returns;
`continue_replay` then works in batches, each ONE transaction that marks letters still dead as replayed
(a conditional UPDATE) and reopens exactly their outbox rows. A process killed between batches loses
nothing, and a resume, or two processes continuing one run, reopen each row once. The scheduled job
`replay-runs` finishes runs whose starter died.

A run can be cancelled (`cancel_replay`): in one transaction its letters not yet replayed are released (still dead,
in no run, replayable again) and the run ends `cancelled`. A batch racing the cancel either committed first (its
letters stay replayed; the cancel waits for its row locks and then finds them not dead) or finds nothing left:
every letter is replayed once or released, never both.

Search: besides the columns, a letter is found by the correlation id of the request or job that wrote its message
(`outbox.correlation_id`), and by its *cause* (ops/causes.py): `cause` exact, `text` a case-insensitive part of
it. The error text itself rests sealed (personal data, gateway/persistence/personal_data.py), so no SQL reads
it; the cause is that text with ids and numbers taken out, so `text` finds words, not a case's number (filter
by `case_no` for that). `causes(filter)` groups the letters by cause, the largest group first; `letters(filter)`
reads every matching letter in pages (the CSV export). A letter gets its cause when it is written; those written
before causes existed whose error text is sealed get theirs from the scheduled job `dead-letter-causes`
(`fill_causes`), as the migration that added the column had no key to open them.

`mapping="original"` pins the reopened row to the bundle version the message died with (the dispatcher
builds that version's adapter); "active" (the default) delivers with the sector's active version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Literal, cast, get_args

from sqlalchemy import ColumnElement, Connection, RowMapping, insert, select, update

from gateway.cases.service import DeadLetterNotFound, NotReplayable, store_change, task_snapshot
from gateway.domain import lifecycle
from gateway.domain.case import (
    DISCARD_OUTCOMES,
    ENDED_STATES,
    Actor,
    ActorKind,
    CaseEvent,
    CaseRuleViolation,
    ForbiddenTransition,
    WayForward,
)
from gateway.domain.causes import cause_key
from gateway.domain.clock import Clock, as_utc
from gateway.domain.text import UndeliverableText, optional_text
from gateway.persistence import tables as t
from gateway.persistence.bundle_tables import RETIRED
from gateway.persistence.keyset import InvalidCursor, Key, Keyset
from gateway.persistence.repository import DeadLetter, DeadLetterRepository, ReplayedLetter
from gateway.persistence.uow import UnitOfWork, UnitsOfWork
from gateway.sectors.bundle_records import BundleStore, UnknownBundle
from ops.causes import Cause

__all__ = ["BadCursor", "Cause", "DeadLetterDesk", "DeadLetterFilter", "DeadLetterNotFound", "Discarded",
           "NotCancellable", "NotDiscardable", "NotReplayable",
           "Page", "ReasonRequired", "ReplayPlan", "ReplayRun", "ReplayRunNotFound", "BadInput", "SORTS",
           "case_outcome_of", "check_reason", "conditions"]

Status = Literal["dead", "replayed", "discarded", "superseded"]
MappingChoice = Literal["original", "active"]
STATUSES: tuple[str, ...] = get_args(Status)
MAPPINGS: tuple[str, ...] = get_args(MappingChoice)
SORTS = ("created_at", "-created_at", "attempts", "-attempts", "sector", "-sector")
MAX_PAGE = 500
SAMPLE = 20  # dead letters a dry run shows
MAX_REASON = 2000
DEAD = cast(Status, DeadLetterRepository.DEAD)  # one of the Status literals
RUNNING, DONE, CANCELLED = "running", "done", "cancelled"
MAX_TEXT = 200  # characters of a text search (a cause is at most causes.MAX_CAUSE)


class BadInput(ValueError):
    """A filter, sort, cursor, limit or mapping that cannot be used: nothing was changed."""


class BadCursor(InvalidCursor, BadInput):
    """A cursor this list (in this sort) did not give. InvalidCursor first: the API answers `invalid-cursor`."""


class ReasonRequired(BadInput):
    """Replays and discards need a non-blank reason (it goes into the audit record and the letter)."""


REASON_REQUIRED = "必须说明原因（原因随死信和审计日志保存），且不能为空白"


class ReplayRunNotFound(LookupError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"没有编号为 {run_id} 的重放批次")


class NotCancellable(ValueError):
    """A replay run that has ended (done or cancelled already): nothing to cancel."""


class NotDiscardable(ValueError):
    """A letter not dead (replayed, discarded, superseded), or whose case cannot take the way forward chosen."""


@dataclass(frozen=True)
class DeadLetterFilter:
    sector: str | None = None
    sectors: frozenset[str] | None = None  # a scope: only these sectors (a sector admin's own); None = all
    bundle_version: str | None = None  # "adapter and version": the sector names the adapter
    matter_code: str | None = None  # the case's matter
    case_no: str | None = None
    error_class: str | None = None
    created_from: datetime | None = None  # inclusive, UTC-aware
    created_to: datetime | None = None  # exclusive
    min_attempts: int | None = None
    max_attempts: int | None = None
    status: Status | None = "dead"  # None: any status
    ids: frozenset[int] | None = None  # explicit dead letter ids
    correlation_id: str | None = None  # of the request or job that wrote the letter's message (exact)
    cause: str | None = None  # the cause key (ops/causes.py), exact: one group
    text: str | None = None  # a part of the cause, any case (the error text itself is sealed)

    def public(self) -> dict[str, Any]:
        """The filter as JSON (the fields set), for audit records and the replay run's row."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                shown[f.name] = sorted(value)
            elif isinstance(value, datetime):
                shown[f.name] = value.isoformat()
            elif value is not None:
                shown[f.name] = value
        return shown


@dataclass(frozen=True)
class Page:
    items: list[DeadLetter]
    total: int  # how many match the filter, on every page
    next_cursor: str | None  # None: this is the last page


@dataclass(frozen=True)
class ReplayPlan:
    """The dry run of a bulk replay: how many would be replayed, and the first of them."""
    count: int
    sample: list[DeadLetter]


@dataclass(frozen=True)
class ReplayRun:
    id: int
    filter: dict[str, Any]
    reason: str
    mapping: Literal["original", "active"]
    requested_by: str
    status: Literal["running", "done", "cancelled"]
    total: int
    replayed: int
    skipped: int  # not replayed by it: discarded or replayed one by one meanwhile, or released by a cancel
    created_at: datetime
    finished_at: datetime | None  # done or cancelled
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    def public(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "created_at": self.created_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}


class DeadLetterDesk:
    def __init__(self, units: UnitsOfWork, clock: Clock, *, batch: int = 1000) -> None:
        if batch < 1:
            raise ValueError("a replay batch holds at least one dead letter")
        self.units = units  # one unit of work per read or change, each change committed explicitly
        self.clock = clock
        self.batch = batch  # letters per transaction of a bulk replay
        self._bundles = BundleStore(units.engine, clock)

    # -- reading ---------------------------------------------------------------------------------
    def page(self, f: DeadLetterFilter, *, sort: str = "-created_at", limit: int = 50,
             cursor: str | None = None) -> Page:
        """One page of the matching letters in `sort` order; `next_cursor` continues after its last one.
        The cursor holds the last letter's sort value and id, so letters added meanwhile never shift a page."""
        order = _sort(sort)
        if not 1 <= limit <= MAX_PAGE:
            raise BadInput(f"limit must be 1 to {MAX_PAGE}, not {limit}")
        where = conditions(f)
        try:
            seek = order.keyset.after(order.columns, order.keyset.decode(cursor))
        except InvalidCursor as refused:
            raise BadCursor(str(refused)) from None
        with self.units(read_only=True) as work:
            items = work.dead_letters.page([*where, *([] if seek is None else [seek])],
                                           order.keyset.order_by(order.columns), limit + 1)
            total = work.dead_letters.count(where)
        found = order.keyset.cut(items, limit, order.key_of)
        return Page(found.items, total, None if found.next_key is None else order.keyset.encode(found.next_key))

    def counts(self, f: DeadLetterFilter) -> list[tuple[str, str, int]]:
        """(sector, error class, count) of the matching letters, the largest first."""
        with self.units(read_only=True) as work:
            return work.dead_letters.counts(conditions(f))

    def count(self, f: DeadLetterFilter) -> int:
        with self.units(read_only=True) as work:
            return work.dead_letters.count(conditions(f))

    def causes(self, f: DeadLetterFilter) -> list[Cause]:
        """The matching letters grouped by cause (with sector and error class), the largest group first."""
        with self.units(read_only=True) as work:
            return [Cause(*row) for row in work.dead_letters.causes(conditions(f))]

    def letters(self, f: DeadLetterFilter, *, batch: int = MAX_PAGE) -> Iterator[DeadLetter]:
        """Every matching letter, oldest first, read `batch` at a time (one short read each, uncounted: a long
        export holds no transaction open)."""
        order, where, after = _sort("created_at"), conditions(f), None
        while True:
            seek = order.keyset.after(order.columns, after)
            with self.units(read_only=True) as work:
                found = work.dead_letters.page([*where, *([] if seek is None else [seek])],
                                               order.keyset.order_by(order.columns), batch)
            yield from found
            if len(found) < batch:
                return
            after = order.key_of(found[-1])

    def get(self, dead_letter_id: int, scope: frozenset[str] | None = None) -> DeadLetter:
        """One letter whole; outside `scope` (a sector admin's sectors) it does not exist."""
        with self.units(read_only=True) as work:
            letter = work.dead_letters.get(dead_letter_id)
        if letter is None or (scope is not None and letter.sector not in scope):
            raise DeadLetterNotFound(dead_letter_id)
        return letter

    def timeline(self, case_no: str) -> list[CaseEvent]:
        """The case's events, oldest first (opened: mask them before showing them)."""
        with self.units(read_only=True) as work:
            return work.cases.events(case_no)

    # -- replaying one -----------------------------------------------------------------------------
    def replay(self, dead_letter_id: int, *, by: str, reason: str, mapping: str = "active",
               scope: frozenset[str] | None = None) -> DeadLetter:
        """Deliver one letter's message again (same idempotency key). Refused, changing nothing, for a
        letter not dead (replayed, discarded), one naming no message, or a pinned version gone."""
        reason, pinned = check_reason(reason), _mapping(mapping) == "original"
        letter = self.get(dead_letter_id, scope)
        if letter.outbox_id is None or letter.status != DEAD:
            raise NotReplayable(f"死信 {dead_letter_id} 的状态为 {letter.status}"
                                + ("" if letter.outbox_id is not None else "，且没有对应的待发消息")
                                + "：只有 dead 状态的死信可以重放")
        if pinned:
            self._check_registered([(letter.sector, letter.bundle_version)])
        now = self.clock.now()
        with self.units() as work:
            if not work.dead_letters.mark_replayed(letter.id, by, now, reason):  # someone else was quicker
                raise NotReplayable(f"死信 {dead_letter_id} 刚被他人重放或丢弃")
            work.outbox.reopen([letter.outbox_id], now, letter.bundle_version if pinned else None)
            work.commit()
        return replace(letter, status=DeadLetterRepository.REPLAYED, replayed_at=now, replayed_by=by,
                       replay_reason=reason)

    # -- replaying many ------------------------------------------------------------------------------
    def plan(self, f: DeadLetterFilter) -> ReplayPlan:
        """The dry run: what `start_replay(f)` would take now (dead, naming a message, in no other run)."""
        where = _replayable(f)
        with self.units(read_only=True) as work:
            return ReplayPlan(work.dead_letters.count(where),
                              work.dead_letters.page(where, [t.dead_letters.c.id], SAMPLE))

    def start_replay(self, f: DeadLetterFilter, *, by: str, reason: str, mapping: str = "active") -> ReplayRun:
        """Record a run and freeze its letters, in one transaction; `continue_replay` does the work."""
        reason, chosen = check_reason(reason), _mapping(mapping)
        where = _replayable(f)
        if chosen == "original":  # refused before anything changes
            with self.units(read_only=True) as work:
                self._check_registered(work.dead_letters.versions(where))
        with self.units() as work:
            runs = _ReplayRuns(work.conn)
            run_id = runs.add(f.public(), reason, chosen, by, self.clock.now())
            runs.set_total(run_id, work.dead_letters.join_run(where, run_id))
            work.commit()
        return self.run(run_id)

    def continue_replay(self, run_id: int, progress: Callable[[ReplayRun], None] | None = None, *,
                        max_batches: int | None = None) -> ReplayRun:
        """Replay the run's letters batch by batch until none is left (or `max_batches` ran); a run that is
        done stays done. `progress` is told the run after each batch."""
        run = self.run(run_id)
        batches = 0
        while run.status == RUNNING and (max_batches is None or batches < max_batches):
            run = self._replay_batch(run)
            batches += 1
            if progress is not None:
                progress(run)
        return run

    def resume_unfinished(self, max_batches: int = 5) -> int:
        """The scheduled job `replay-runs`: carry on every unfinished run a little (a run started through the
        API completes though the process that started it died). Returns the letters replayed."""
        return sum(self.continue_replay(run.id, max_batches=max_batches).replayed - run.replayed
                   for run in self.unfinished_runs())

    def cancel_replay(self, run_id: int, *, by: str, reason: str) -> tuple[ReplayRun, int]:
        """Stop a running bulk replay: its letters not yet replayed are released (stay dead, in no run, replayable
        again) and the run ends `cancelled`, in one transaction; returns the run and how many were released.
        NotCancellable for a run that has ended. The letters are released before the run row is touched, in the
        order a batch takes its locks (letters, then the run), so a batch racing this one is waited for, never
        deadlocked: what it replayed stays replayed and is not released."""
        reason = check_reason(reason)
        self.run(run_id)  # ReplayRunNotFound first
        now = self.clock.now()
        with self.units() as work:
            released = work.dead_letters.leave_run(run_id)
            cancelled = _ReplayRuns(work.conn).cancel(run_id, by, reason, now)
            if cancelled:
                work.commit()  # else nothing is kept: the run had ended
        run = self.run(run_id)
        if not cancelled:
            raise NotCancellable(f"重放批次 {run_id} 已{_ENDED.get(run.status, '结束')}，不能取消")
        return run, released

    def unfinished_runs(self) -> list[ReplayRun]:
        with self.units(read_only=True) as work:
            return _ReplayRuns(work.conn).listed(status=RUNNING)

    def run(self, run_id: int) -> ReplayRun:
        with self.units(read_only=True) as work:
            found = _ReplayRuns(work.conn).get(run_id)
        if found is None:
            raise ReplayRunNotFound(run_id)
        return found

    def runs(self, limit: int = 50, before_id: int | None = None) -> list[ReplayRun]:
        """The newest runs first; `before_id` pages on (keyset)."""
        with self.units(read_only=True) as work:
            return _ReplayRuns(work.conn).listed(limit=limit, before_id=before_id)

    # -- causes of letters written before causes existed -------------------------------------------------
    def fill_causes(self, batch: int = 500) -> int:
        """The scheduled job `dead-letter-causes`: give up to `batch` letters without a cause theirs (their error
        text is sealed, so the migration that added causes could not). Returns how many were filled; a tick with
        none to fill only reads."""
        without = [t.dead_letters.c.cause.is_(None)]
        with self.units(read_only=True) as work:
            letters = work.dead_letters.page(without, [t.dead_letters.c.id], batch)
        if letters:
            with self.units() as work:  # two processes filling one letter write the same cause
                for letter in letters:
                    work.dead_letters.set_cause(letter.id, cause_key(letter.error_class, letter.sector,
                                                                     letter.error_message))
                work.commit()
        return len(letters)

    # -- discarding ------------------------------------------------------------------------------------
    def discard(self, f: DeadLetterFilter, *, by: str, reason: str, case_outcome: str) -> Discarded:
        """Set the matching letters still dead aside for good, and give each one's case the way forward
        `case_outcome` (back_office | return | void, for a parallel case its task), in ONE transaction: no case
        is left accepted with nothing in flight. A letter whose case cannot take that way (say, returning a task
        of a case in a special procedure) stays dead and is reported in `kept`; a letter whose case or task has
        ended already is discarded with nothing to settle. No replay takes a discarded letter."""
        reason, way = check_reason(reason), case_outcome_of(case_outcome)
        actor = Actor(ActorKind.OPERATOR, by)
        now = self.clock.now()
        done = Discarded()
        with self.units() as work:
            for letter in work.dead_letters.still_dead(conditions(replace(f, status=DEAD))):
                why = _discard_one(work, letter, way, actor, reason, now)
                if why is None:
                    done.count += 1
                else:
                    done.kept.append((letter[0], why))
            work.commit()
        return done

    def discard_one(self, dead_letter_id: int, *, by: str, reason: str, case_outcome: str) -> DeadLetter:
        """`discard` of one letter: NotDiscardable, changing nothing, when it is not dead or its case cannot take
        the way forward chosen (the message says why)."""
        letter = self.get(dead_letter_id)
        if letter.status != DEAD:
            raise NotDiscardable(f"死信 {dead_letter_id} 的状态为 {letter.status}：只有 dead 状态的死信可以丢弃")
        done = self.discard(DeadLetterFilter(ids=frozenset({dead_letter_id})), by=by, reason=reason,
                            case_outcome=case_outcome)
        if done.kept:
            raise NotDiscardable(f"死信 {dead_letter_id} 未丢弃：{done.kept[0][1]}")
        if not done.count:  # someone else was quicker
            raise NotDiscardable(f"死信 {dead_letter_id} 的状态已变为 {self.get(dead_letter_id).status}")
        return self.get(dead_letter_id)

    # -- inside ----------------------------------------------------------------------------------------
    def _replay_batch(self, run: ReplayRun) -> ReplayRun:
        now = self.clock.now()
        with self.units() as work:
            letters = work.dead_letters.replay_batch(run.id, run.requested_by, run.reason, now, self.batch)
            for pin, outbox_ids in _by_pin(letters, pinned=run.mapping == "original"):
                work.outbox.reopen(outbox_ids, now, pin)
            if letters:
                _ReplayRuns(work.conn).add_replayed(run.id, len(letters))
            elif not work.dead_letters.still_dead_in_run(run.id):
                _ReplayRuns(work.conn).finish(run.id, now)
            # else: another process holds the rest (PostgreSQL, SKIP LOCKED); the next batch looks again
            work.commit()
        return self.run(run.id)

    def _check_registered(self, versions: Iterable[tuple[str, str | None]]) -> None:
        """Every version to pin must still be registered. A letter that died before any version was chosen
        (no active bundle) has none to pin: it goes to the active one."""
        for sector, version in sorted((s, v) for s, v in versions if v is not None):
            try:
                status = self._bundles.get(sector, version).status
            except UnknownBundle:
                status = "未注册"
            if status in (RETIRED, "未注册"):
                raise NotReplayable(f"{sector} 适配包版本 {version} {'已退役' if status == RETIRED else status}："
                                    "请改用当前启用的映射（mapping=active）重放")



@dataclass
class Discarded:
    """What a discard did: how many letters it set aside, and those it kept dead with the reason why."""

    count: int = 0
    kept: list[tuple[int, str]] = field(default_factory=list)


def case_outcome_of(outcome: str) -> WayForward:
    """A way forward an operator may choose when discarding (case.DISCARD_OUTCOMES); BadInput otherwise."""
    try:
        way = WayForward(outcome)
    except ValueError:
        way = None
    if way not in DISCARD_OUTCOMES:
        raise BadInput(f"case_outcome 应为以下之一：{'、'.join(DISCARD_OUTCOMES)}")
    return way


def _discard_one(work: UnitOfWork, letter: tuple[int, str, int | None], way: WayForward, actor: Actor, reason: str,
                 now: datetime) -> str | None:
    """Discard one letter and settle its task the chosen way; or return why its case cannot take that way (then
    nothing is written). The letter is set aside before the case is stored: storing a task's new round
    supersedes its other dead letters, and this one is discarded, not superseded."""
    letter_id, case_no, outbox_id = letter

    def set_aside() -> None:
        work.dead_letters.discard([t.dead_letters.c.id == letter_id], actor.id, reason, now, str(way))

    message = work.outbox.get(outbox_id) if outbox_id is not None else None
    case = work.cases.get(case_no) if message is not None else None
    if case is None or message is None or message.event_seq is not None or case.state in ENDED_STATES \
            or case.task(message.task_id).state.ended:
        # Nothing of a case waits on it (no message, a case event to a subscriber, or its case or task has ended):
        # nothing to settle.
        set_aside()
        return None
    before = task_snapshot(case)
    try:
        lifecycle.settle(case, message.task_id, way, actor, now, reason)
    except (ForbiddenTransition, CaseRuleViolation) as refused:
        return str(refused)
    set_aside()
    store_change(work, case, before, [], now)
    return None


class _ReplayRuns:
    """The `replay_runs` rows; counters change by increments, so two resumers of one run add up."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, public_filter: dict[str, Any], reason: str, mapping: str, by: str, now: datetime) -> int:
        row = {"filter": public_filter, "reason": reason, "mapping": mapping, "requested_by": by,
               "status": RUNNING, "total": 0, "replayed": 0, "skipped": 0, "created_at": now}
        key = self._conn.execute(insert(t.replay_runs).values(**row)).inserted_primary_key
        assert key is not None  # an INSERT of one row always has its key
        return int(key[0])

    def set_total(self, run_id: int, total: int) -> None:
        self._conn.execute(update(t.replay_runs).where(t.replay_runs.c.id == run_id).values(total=total))

    def add_replayed(self, run_id: int, count: int) -> None:
        r = t.replay_runs.c
        self._conn.execute(update(t.replay_runs).where(r.id == run_id).values(replayed=r.replayed + count))

    def cancel(self, run_id: int, by: str, reason: str, now: datetime) -> bool:
        """Cancelled, if still running: what it did not replay counts as skipped."""
        r = t.replay_runs.c
        result = self._conn.execute(update(t.replay_runs).where(r.id == run_id, r.status == RUNNING)
                                    .values(status=CANCELLED, finished_at=now, skipped=r.total - r.replayed,
                                            cancelled_by=by, cancel_reason=reason))
        return result.rowcount == 1

    def finish(self, run_id: int, now: datetime) -> None:
        """Done: whatever of its letters this run did not replay was discarded or replayed by hand meanwhile."""
        r = t.replay_runs.c
        self._conn.execute(update(t.replay_runs).where(r.id == run_id, r.status == RUNNING)
                           .values(status=DONE, finished_at=now, skipped=r.total - r.replayed))

    def get(self, run_id: int) -> ReplayRun | None:
        row = self._conn.execute(select(t.replay_runs).where(t.replay_runs.c.id == run_id)).mappings().first()
        return None if row is None else _run(row)

    def listed(self, *, status: str | None = None, limit: int | None = None,
               before_id: int | None = None) -> list[ReplayRun]:
        r = t.replay_runs.c
        query = select(t.replay_runs).order_by(r.id.desc() if status is None else r.id).limit(limit)
        if status is not None:
            query = query.where(r.status == status)
        if before_id is not None:
            query = query.where(r.id < before_id)
        return [_run(row) for row in self._conn.execute(query).mappings()]


_ENDED = {DONE: "完成", CANCELLED: "取消"}


def _run(row: RowMapping) -> ReplayRun:
    return ReplayRun(**{**row, "created_at": as_utc(row["created_at"]),
                        "finished_at": as_utc(row["finished_at"]) if row["finished_at"] else None})


def _by_pin(letters: Sequence[ReplayedLetter], *, pinned: bool) -> Iterator[tuple[str | None, list[int]]]:
    """The outbox rows to reopen, grouped by the version each is pinned to (None: the active one)."""
    def pin(letter: ReplayedLetter) -> str:
        return (letter.bundle_version or "") if pinned else ""

    for version, group in groupby(sorted(letters, key=pin), key=pin):
        yield version or None, [letter.outbox_id for letter in group]


# -- the filter as SQL -------------------------------------------------------------------------------------
def conditions(f: DeadLetterFilter) -> list[ColumnElement[bool]]:
    """The filter as conditions on `dead_letters` (raises BadInput for one that cannot be used)."""
    d = t.dead_letters.c
    equal = {d.sector: f.sector, d.bundle_version: f.bundle_version, d.case_no: f.case_no,
             d.error_class: f.error_class, d.status: _status(f.status)}
    where: list[ColumnElement[bool]] = [column == value for column, value in equal.items() if value is not None]
    if f.sectors is not None:
        where.append(d.sector.in_(sorted(f.sectors)))
    if f.ids is not None:
        where.append(d.id.in_(sorted(f.ids)))
    if f.matter_code is not None:
        where.append(d.case_no.in_(select(t.cases.c.case_no).where(t.cases.c.matter_code == f.matter_code)))
    if f.created_from is not None:
        where.append(d.created_at >= _utc("created_from", f.created_from))
    if f.created_to is not None:
        where.append(d.created_at < _utc("created_to", f.created_to))
    if f.min_attempts is not None:
        where.append(d.attempts >= _count("min_attempts", f.min_attempts))
    if f.max_attempts is not None:
        where.append(d.attempts <= _count("max_attempts", f.max_attempts))
    return [*where, *_searched(f)]


def _searched(f: DeadLetterFilter) -> list[ColumnElement[bool]]:
    """The conditions by correlation id, cause and a part of the cause."""
    d, o = t.dead_letters.c, t.outbox.c
    where: list[ColumnElement[bool]] = []
    if f.correlation_id is not None:  # the letter's own message carries it
        where.append(d.outbox_id.in_(select(o.id).where(o.correlation_id == f.correlation_id)))
    if f.cause is not None:
        where.append(d.cause == f.cause)
    if f.text is not None:
        if not f.text.strip() or len(f.text) > MAX_TEXT:
            raise BadInput(f"text 应为 1 到 {MAX_TEXT} 个字符的非空白文字")
        where.append(d.cause.icontains(f.text.strip(), autoescape=True))  # % and _ are literal
    return where


def _replayable(f: DeadLetterFilter) -> list[ColumnElement[bool]]:
    """What a replay filter takes: dead letters only (never a discarded one), naming a message to send, and
    not frozen into another unfinished run."""
    d = t.dead_letters.c
    return [*conditions(replace(f, status=DEAD)), d.outbox_id.is_not(None), d.replay_run_id.is_(None)]


def _status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise BadInput(f"status 应为以下之一：{'、'.join(STATUSES)}")
    return status


def _utc(name: str, instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise BadInput(f"{name} 应带时区（如 +08:00）")
    return instant.astimezone(UTC)  # stored in UTC; SQLite compares the text


def _count(name: str, value: int) -> int:
    if value < 0:
        raise BadInput(f"{name} 不能为负数")
    return value


def check_reason(reason: str | None) -> str:
    """The reason as a typed text is kept (gateway.domain.text); ReasonRequired when it is blank, too long,
    or holds what no record should (control characters, …)."""
    try:
        text = optional_text(reason, "原因", multiline=True)
    except UndeliverableText as refused:
        raise ReasonRequired(str(refused)) from None
    if not text:
        raise ReasonRequired(REASON_REQUIRED)
    if len(text) > MAX_REASON:
        raise ReasonRequired(f"原因最多 {MAX_REASON} 个字符")
    return text


def _mapping(mapping: str) -> MappingChoice:
    if mapping not in MAPPINGS:
        raise BadInput("mapping 应为 original（原映射）或 active（当前映射）")
    return cast(MappingChoice, mapping)


# -- sorting and the keyset cursor ------------------------------------------------------------------------
_KINDS: dict[str, type] = {"created_at": datetime, "attempts": int, "sector": str}


@dataclass(frozen=True)
class _Sort:
    """One of SORTS: the letters by a column, ties broken by id, each sort a list of its own for cursors."""

    name: str  # created_at | attempts | sector
    keyset: Keyset

    @property
    def columns(self) -> tuple[Any, Any]:
        return t.dead_letters.c[self.name], t.dead_letters.c.id

    def key_of(self, letter: DeadLetter) -> Key:
        return getattr(letter, self.name), letter.id


def _sort(sort: str) -> _Sort:
    if sort not in SORTS:
        raise BadInput(f"sort is one of {', '.join(SORTS)}, not {sort!r}")
    name = sort.lstrip("-")
    return _Sort(name, Keyset(f"dead-letters:{sort}", (_KINDS[name], int), descending=sort.startswith("-")))
