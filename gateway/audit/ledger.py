"""The tamper-evident audit log and message log (issue 5).

Each process appends to chains of its own — `audit:<writer>` and `message:<writer>`, the writer being
`<host>:<pid>:<random>` — so appends never wait on another process; a lock per chain keeps this
process's threads in seq order. A record's hash is a digest (`YIWANG_DIGEST`, named in the stored hash:
`sha256:…`) over a canonical encoding of all its stored fields and the previous record's hash. Bodies are
stored sealed (`FieldSealer`), and the hash covers the sealed token, so verifying needs no key but the
public one. Every `checkpoint_every` records, every `checkpoint_ms` and at close, the writer signs
(chain, seq, head hash) with the gateway's Ed25519 key: removing the newest records of a chain, or
rewriting a chain and re-hashing it, then no longer matches a signed checkpoint.

`verify()` reads every chain and checkpoint and names each problem: a changed record (its hash does not
match its fields), removed records (a gap in seq, or a checkpoint naming a record that is gone or differs),
reordered records (a broken prev_hash link, or ids out of seq order) and forged checkpoints (a signature
that does not verify, or made with a key we do not know). Records after a chain's last checkpoint can be
cut off unseen: that window is what the checkpoint settings bound.

`verify(anchors)` takes anchors kept outside the database (`anchors()`: each checkpoint with its time, key
and signature). A chain with a signed anchor whose signature holds is read only from its newest such anchor
on — the record there must still hash to the anchor, the rest must link to it — so a regular check need
not read a long log whole; a rewrite before the anchor changes the anchored record's hash and is caught
there. The `ledger checkpoint` log lines carry the same fields, so shipped logs serve as anchors too. An
anchor whose signature fails is a problem; an unsigned one (chain, seq and head hash only, as older log
lines have them) is checked against the chain read in full. A chain the anchors name that is gone
entirely is a problem too.

Retention (`purge`, run by gateway/audit/retention.py): a chain's oldest records are removed in batches, each in
one transaction with a signed *retention marker* — "records up to seq S purged under the policy; the
record at S had hash H" — and the database refuses to delete any record no marker covers. `verify()`
then starts that chain at S+1 with prev_hash H, so a purge is no problem; a marker whose signature does
not verify (forged, altered, or signed with a key we do not know) is one, and is ignored, so the records
it claims were purged show as removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from itertools import groupby
from typing import Any, Literal, Protocol

import structlog
from sqlalchemy import ColumnElement, Engine, Select, and_, delete, func, insert, or_, select, true
from sqlalchemy.engine import Connection, RowMapping

from certstore import CryptoError, FieldSealer, Signer, decode_signature, digest, encode_signature
from gateway.domain.clock import Clock, SystemClock, as_utc, beijing_text
from gateway.persistence.ledger_tables import ledger_checkpoints, ledger_records, ledger_retention
from gateway.persistence.uow import UnitsOfWork

log = structlog.get_logger("yiwang.ledger")
AUDIT, MESSAGE = "audit", "message"
GENESIS = "genesis"  # the prev_hash of a chain's first record
HASHED = ("chain", "seq", "at", "kind", "actor", "action", "subject", "sector", "case_no", "outcome", "body",
          "prev_hash")
LIMITS = {"actor": 160, "action": 100, "subject": 300, "sector": 64, "case_no": 50, "outcome": 64}
Direction = Literal["sent", "received"]
LONGEST_TEXT = 64 * 1024  # characters of one string kept in a body
# One statement with bound parameters, for a batch of any size: `.values(row)` would build and cache-key
# a new statement per record (about 40% of an append's CPU).
_INSERT_RECORDS = insert(ledger_records).returning(ledger_records.c.id, sort_by_parameter_order=True)


class KeyedSigner(Signer, Protocol):
    """A signer that names its key (stored with each checkpoint)."""

    @property
    def key_id(self) -> str: ...  # read-only: signers compute it from their public key


@dataclass(frozen=True)
class LedgerRecord:
    id: int
    chain: str
    seq: int
    at: datetime
    kind: str
    actor: str
    action: str
    subject: str | None
    sector: str | None
    case_no: str | None
    outcome: str | None
    body: str | None  # the sealed token
    prev_hash: str
    hash: str

    def public(self) -> dict[str, Any]:
        """The record without its body (which callers open, and mask, as their reader may see it)."""
        fields = asdict(self)
        del fields["body"]
        return {**fields, "at": beijing_text(self.at), "has_body": self.body is not None}

    def archived(self) -> dict[str, Any]:
        """The record as a retention archive keeps it: every field, the body still sealed, so the archived
        part of a chain can still be checked link by link (`record_hash`)."""
        return {**asdict(self), "at": _instant(self.at)}


@dataclass(frozen=True)
class Anchor:
    """A checkpoint's (chain, seq, head hash) as kept outside the database: in shipped logs or a file. With
    the checkpoint's time, key and signature (`yiwang audit anchors` prints them) it is a starting point:
    `verify(anchors)` checks its signature and the record it names, and reads that chain only after it."""

    chain: str
    seq: int
    head_hash: str
    at: str | None = None  # the checkpoint's instant as signed (UTC, microseconds)
    key_id: str | None = None
    signature: str | None = None

    @property
    def signed(self) -> bool:
        return self.at is not None and self.key_id is not None and self.signature is not None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Anchor:
        data = json.loads(line)
        optional = {name: str(data[name]) for name in ("at", "key_id", "signature") if data.get(name) is not None}
        if "at" in optional:
            datetime.fromisoformat(optional["at"])  # a ValueError names a garbled line before anything is read
        return cls(str(data["chain"]), int(data["seq"]), str(data["head_hash"]), **optional)


@dataclass(frozen=True)
class Problem:
    kind: str  # changed | removed | reordered | forged_checkpoint | forged_retention
    chain: str
    seq: int | None
    record_id: int | None
    detail: str


@dataclass
class VerifyReport:
    chains: int = 0
    records: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)
    retention_markers: int = 0
    anchored: int = 0  # chains read only after a signed anchor kept outside the database

    @property
    def intact(self) -> bool:
        return not self.problems

    def public(self) -> dict[str, Any]:
        return {"intact": self.intact, "chains": self.chains, "records": self.records,
                "checkpoints": self.checkpoints, "retention_markers": self.retention_markers,
                "problems": [asdict(p) for p in self.problems]}


@dataclass(frozen=True)
class Purged:
    """Where a chain starts after a retention purge: its records up to `seq` are gone; `head` was the hash
    of the record at `seq`, the prev_hash of the first record kept."""

    seq: int
    head: str


Archive = Callable[[str, list[dict[str, Any]]], None]  # (table, rows): keeps them durably, or raises
Progress = Callable[[int, int], None]  # (records read, records to read)


@dataclass
class _Chain:
    name: str
    seq: int = 0
    head: str = GENESIS
    unsigned: int = 0  # records appended since the last checkpoint
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a batch is written or signed
    queued: list[_Queued] = field(default_factory=list)  # records waiting for the next batch
    queue_lock: threading.Lock = field(default_factory=threading.Lock)  # guards `queued` only


@dataclass
class _Queued:
    """One record waiting to be written by `Ledger._append`, then its outcome."""

    kind: str
    values: dict[str, Any]
    record: LedgerRecord | None = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.record is not None or self.error is not None


@dataclass(frozen=True)
class Filters:
    kind: str
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sector: str | None = None
    case_no: str | None = None
    after_id: int | None = None


class Ledger:
    def __init__(self, engine: Engine, sealer: FieldSealer, signer: KeyedSigner, *, digest_name: str = "sha256",
                 clock: Clock | None = None, writer: str | None = None, checkpoint_every: int = 1000,
                 checkpoint_ms: int = 60_000, verifiers: Sequence[KeyedSigner] = ()) -> None:
        self.units, self._sealer, self._signer = UnitsOfWork(engine), sealer, signer
        self._digest_name = digest(digest_name).name
        self._clock = clock or SystemClock()
        self.writer = writer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._chains = {kind: _Chain(f"{kind}:{self.writer}") for kind in (AUDIT, MESSAGE)}
        self._every, self._interval_s = checkpoint_every, checkpoint_ms / 1000
        # Keys whose checkpoints we accept: ours, and those of the past a deployment still trusts.
        self._verifiers = {s.key_id: s for s in (signer, *verifiers)}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    # --- writing ----------------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str | None, detail: Any = None, sector: str | None = None,
              *, outcome: str | None = None, case_no: str | None = None) -> LedgerRecord:
        """Record who did what to what. Raises when it cannot be stored: a caller that must not act unaudited
        (an unmasked read) relies on that."""
        return self._append(AUDIT, actor=actor, action=action, subject=subject, sector=sector, case_no=case_no,
                            outcome=outcome, body=detail)

    def message(self, sector: str, direction: Direction, operation: str, case_no: str | None,
                idempotency_key: str | None, body: Any, status: str) -> LedgerRecord | None:
        """Record what was sent to or received from a sector. Never raises: the exchange has happened, and a
        log that cannot be written must not undo a delivery (the failure is logged for operators)."""
        actor = "gateway" if direction == "sent" else f"sector:{sector}"
        try:
            return self._append(MESSAGE, actor=actor, action=direction, subject=operation, sector=sector,
                                case_no=case_no, outcome=status,
                                body={"idempotency_key": idempotency_key, "body": body})
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("message log write failed", sector=sector, operation=operation, direction=direction)
            return None

    def _append(self, kind: str, **values: Any) -> LedgerRecord:
        """Append one record to this writer's chain; returns once it is committed (or raises).

        Group commit: a chain is one sequence of hashes, so its records are written one batch at a time,
        under the chain's lock. A caller queues its record, then takes the lock; whoever holds it writes
        every record queued so far, its own and those of the callers waiting behind it, in one transaction,
        and those callers find theirs written when their turn comes. Under load (every POST is audited)
        this turns one transaction per record, taken in turn, into one per batch (bench: 31 of the API's
        41 threads were waiting for this lock)."""
        chain = self._chains[kind]
        request = _Queued(kind, values)
        with chain.queue_lock:
            chain.queued.append(request)
        with chain.lock:
            if not request.finished:
                with chain.queue_lock:
                    batch, chain.queued = chain.queued, []
                self._write(chain, batch)
            due = chain.unsigned >= self._every
        if due:
            self._sign(chain)
        if request.error is not None:
            raise request.error
        assert request.record is not None  # finished without an error
        return request.record

    def _write(self, chain: _Chain, batch: list[_Queued]) -> None:
        """Chain, seal and insert a batch in one transaction; each request gets its record or the error."""
        seq, head = chain.seq, chain.head
        rows: list[dict[str, Any]] = []
        written: list[_Queued] = []
        for request in batch:
            try:
                row = self._row(chain, request, seq + 1, head)
            except Exception as exc:  # noqa: BLE001 - this record's body could not be sealed: only it fails
                request.error = exc
                continue
            seq, head = row["seq"], row["hash"]
            rows.append(row)
            written.append(request)
        if not rows:
            return
        try:
            with self.units() as uow:
                conn = uow.conn
                ids = conn.execute(_INSERT_RECORDS, rows).scalars().all()
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - nothing of the batch is stored; every caller hears why
            for request in written:
                request.error = exc
            return
        chain.seq, chain.head = seq, head
        chain.unsigned += len(rows)
        for request, row, record_id in zip(written, rows, ids, strict=True):
            request.record = LedgerRecord(id=record_id, **row)

    def _row(self, chain: _Chain, request: _Queued, seq: int, prev_hash: str) -> dict[str, Any]:
        values = dict(request.values)
        body = values.pop("body")
        row = {name: _clip(name, value) for name, value in values.items()}
        row.update(chain=chain.name, seq=seq, at=as_utc(self._clock.now()), kind=request.kind, prev_hash=prev_hash,
                   body=None if body is None else self._sealer.seal_json(_jsonable(body), _aad(chain.name, seq)))
        row["hash"] = record_hash(row, self._digest_name)
        return row

    def checkpoint(self) -> int:
        """Sign the head of every chain with records not yet signed; returns how many checkpoints were made."""
        return sum(self._sign(chain) for chain in self._chains.values())

    def _sign(self, chain: _Chain) -> bool:
        with chain.lock:
            if not chain.unsigned:
                return False
            at = as_utc(self._clock.now())
            signature = encode_signature(self._signer.sign(_checkpoint_payload(chain.name, chain.seq, chain.head, at)))
            with self.units() as uow:
                conn = uow.conn
                conn.execute(insert(ledger_checkpoints).values(
                    chain=chain.name, seq=chain.seq, head_hash=chain.head, at=at,
                    signature=signature, key_id=self._signer.key_id))
                uow.commit()
            chain.unsigned = 0
            # The log line is an anchor outside the database (logs are shipped elsewhere); so is
            # `yiwang audit anchors`. Either catches a chain deleted together with its checkpoints, and, signed,
            # is where `verify --anchors` starts reading the chain.
            log.info("ledger checkpoint", **asdict(Anchor(chain.name, chain.seq, chain.head, _instant(at),
                                                          self._signer.key_id, signature)))
            return True

    def start(self) -> None:
        """Checkpoint every `checkpoint_ms` in a background thread, so a quiet chain's tail is signed too."""
        if self._timer is None:
            self._stop.clear()
            self._timer = threading.Thread(target=self._tick, name="ledger-checkpoints", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.checkpoint()
            except Exception:  # noqa: BLE001 - the database may be briefly away; the next tick tries again
                log.exception("ledger checkpoint failed")

    def close(self) -> None:
        """At a clean shutdown: stop the timer and sign what is unsigned."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
            self._timer = None
        try:
            self.checkpoint()
        except Exception:  # noqa: BLE001 - shutting down; the records themselves are stored
            log.exception("ledger checkpoint at shutdown failed")

    # --- retention --------------------------------------------------------------------------------------

    def purge(self, kind: str, before: datetime, archive: Archive | None = None, batch: int = 1000,
              batch_done: Callable[[int], None] | None = None) -> int:
        """Remove the records of `kind` older than `before`, every chain from its start, `batch` records per
        transaction: `archive` gets them first (bodies still sealed: the archive holds no clear personal
        data), then a signed retention marker and the deletion commit together. An interruption leaves
        whole batches done and the rest untouched. Returns how many records were removed; `batch_done` is
        told how many each batch removed."""
        with self._reading() as conn:
            chains = conn.execute(select(ledger_records.c.chain).where(
                ledger_records.c.kind == kind, ledger_records.c.at < as_utc(before)).distinct()).scalars().all()
        return sum(self._purge_chain(chain, before, archive, batch, batch_done) for chain in chains)

    def _purge_chain(self, chain: str, before: datetime, archive: Archive | None, batch: int,
                     batch_done: Callable[[int], None] | None) -> int:
        c = ledger_records.c
        with self._reading() as conn:
            # Only a prefix of the chain goes, fixed now: a record older than `before` after a younger one (a
            # clock set back) waits until every record before it is old enough too, and records the chain's
            # writer appends meanwhile are young.
            first_young, last = conn.execute(select(
                select(func.min(c.seq)).where(c.chain == chain, c.at >= as_utc(before)).scalar_subquery(),
                select(func.max(c.seq)).where(c.chain == chain).scalar_subquery())).one()
        end = first_young if first_young is not None else (last or 0) + 1  # the first seq that stays
        removed = 0
        while True:
            with self.units() as uow:
                conn = uow.conn
                rows = conn.execute(select(ledger_records).where(c.chain == chain, c.seq < end).order_by(c.seq)
                                    .limit(batch))
                records = [_record(r) for r in rows.mappings()]
                if not records:
                    return removed
                if archive is not None:
                    archive(ledger_records.name, [r.archived() for r in records])
                newest = records[-1]
                conn.execute(insert(ledger_retention).values(self._retention_marker(chain, newest, before)))
                conn.execute(delete(ledger_records).where(c.chain == chain, c.seq <= newest.seq))
                uow.commit()
            removed += len(records)
            log.info("ledger records purged", chain=chain, up_to_seq=newest.seq, records=len(records))
            if batch_done is not None:
                batch_done(len(records))

    def _retention_marker(self, chain: str, last: LedgerRecord, before: datetime) -> dict[str, Any]:
        at, before = as_utc(self._clock.now()), as_utc(before)
        signature = self._signer.sign(_retention_payload(chain, last.seq, last.hash, before, at))
        return {"chain": chain, "seq": last.seq, "head_hash": last.hash, "purged_before": before, "at": at,
                "signature": encode_signature(signature), "key_id": self._signer.key_id}

    # --- reading ----------------------------------------------------------------------------------------

    def records(self, filters: Filters, limit: int = 100) -> list[LedgerRecord]:
        """Oldest first, after `filters.after_id` (the paging cursor)."""
        query = _filtered(filters).order_by(ledger_records.c.id).limit(limit)
        with self._reading() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def tail(self, filters: Filters, count: int = 20) -> list[LedgerRecord]:
        """The newest `count` records, oldest of them first."""
        query = _filtered(filters).order_by(ledger_records.c.id.desc()).limit(count)
        with self._reading() as conn:
            return [_record(r) for r in reversed(conn.execute(query).mappings().all())]

    def get(self, record_id: int) -> LedgerRecord | None:
        with self._reading() as conn:
            row = conn.execute(select(ledger_records).where(ledger_records.c.id == record_id)).mappings().first()
        return _record(row) if row else None

    def open_body(self, record: LedgerRecord) -> Any:
        """The record's body in plain text: callers mask it, or audit the reading of it."""
        return None if record.body is None else self._sealer.open_json(record.body, _aad(record.chain, record.seq))

    # --- verifying --------------------------------------------------------------------------------------

    def anchors(self) -> list[Anchor]:
        """Every signed checkpoint, to keep outside the database (`yiwang audit anchors`)."""
        with self._reading() as conn:
            rows = conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.id)).mappings().all()
        return [Anchor(r["chain"], r["seq"], r["head_hash"], _instant(r["at"]), r["key_id"], r["signature"])
                for r in rows]

    def verify(self, anchors: Iterable[Anchor] = (), progress: Progress | None = None) -> VerifyReport:
        """Every chain, checkpoint and (if given) anchor kept outside the database, checked. A chain with a
        signed anchor whose signature holds is read only from the newest such anchor on: the record there
        must still hash to it, and what follows must link to it. `progress(read, total)` is told how far."""
        report = VerifyReport()
        heads: dict[tuple[str, int], LedgerRecord] = {}  # only the records checkpoints name: memory stays small
        anchors = list(anchors)
        with self._reading() as conn:
            purged = self._purged(conn, report)
            starts, forged = self._starting_points(anchors, purged, report)
            report.anchored = len(starts)
            checkpoints = [cp for cp in conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.id))
                           .mappings().all() if not _vouched(starts, cp["chain"], cp["seq"])]
            signed = {(cp["chain"], cp["seq"]) for cp in checkpoints} | {(a.chain, a.seq) for a in anchors}
            selections = _selections(starts)
            total = sum(conn.execute(select(func.count()).select_from(ledger_records).where(where)).scalar_one()
                        for where in selections) if progress else 0
            rows = (row for where in selections for row in conn.execute(
                select(ledger_records).where(where).order_by(ledger_records.c.chain, ledger_records.c.seq)
                .execution_options(yield_per=1000)).mappings())  # streamed: a long log is not held whole
            seen: set[str] = set()
            for chain, records in groupby((_record(r) for r in rows), key=lambda r: r.chain):
                report.chains += 1
                seen.add(chain)
                read = _counted(records, report, progress, total)
                begin = purged.get(chain)
                if (start := starts.get(chain)) is not None:
                    begin, read = _from_anchor(start, read, report.problems)
                for record in _check_chain(chain, read, report.problems, begin):
                    if (chain, record.seq) in signed:
                        heads[(chain, record.seq)] = record
        for missing in sorted(starts.keys() - seen):  # a whole chain deleted since its anchor was kept
            report.problems.extend(_check_anchor(starts[missing], heads))
        for checkpoint in checkpoints:
            report.checkpoints += 1
            problems = self._check_checkpoint(checkpoint, heads)
            report.problems.extend(_unless_purged(problems, purged.get(checkpoint["chain"]), checkpoint["seq"],
                                                  checkpoint["head_hash"]))
        for anchor in anchors:
            if anchor not in forged and not _vouched(starts, anchor.chain, anchor.seq):
                report.problems.extend(_unless_purged(_check_anchor(anchor, heads), purged.get(anchor.chain),
                                                      anchor.seq, anchor.head_hash))
        return report

    def _starting_points(self, anchors: list[Anchor], purged: Mapping[str, Purged],
                         report: VerifyReport) -> tuple[dict[str, Anchor], list[Anchor]]:
        """Each chain's newest signed anchor whose signature holds and which lies beyond the chain's retention
        marker (up to the marker, the marker vouches); and the anchors whose signature fails: each a problem,
        not believed (neither a starting point nor checked against the records)."""
        starts: dict[str, Anchor] = {}
        forged: list[Anchor] = []
        for anchor in anchors:
            if not anchor.signed or anchor.seq <= purged.get(anchor.chain, Purged(0, GENESIS)).seq:
                continue
            assert anchor.at is not None  # signed
            where = f"the anchor kept outside the database for {anchor.chain} at seq {anchor.seq}"
            payload = _checkpoint_payload(anchor.chain, anchor.seq, anchor.head_hash, datetime.fromisoformat(anchor.at))
            if (problem := self._forged(asdict(anchor), payload, where)) is not None:
                report.problems.append(problem)
                forged.append(anchor)
            elif anchor.chain not in starts or anchor.seq > starts[anchor.chain].seq:
                starts[anchor.chain] = anchor
        return starts, forged

    def _purged(self, conn: Connection, report: VerifyReport) -> dict[str, Purged]:
        """Where each purged chain starts: its newest retention marker whose signature holds. A marker that
        does not verify is reported and ignored (the records it claims were purged count as removed)."""
        purged: dict[str, Purged] = {}
        for marker in conn.execute(select(ledger_retention).order_by(ledger_retention.c.id)).mappings():
            report.retention_markers += 1
            payload = _retention_payload(marker["chain"], marker["seq"], marker["head_hash"],
                                         as_utc(marker["purged_before"]), as_utc(marker["at"]))
            where = f"retention marker {marker['id']} of {marker['chain']} up to seq {marker['seq']}"
            if (problem := self._forged(marker, payload, where)) is not None:
                report.problems.append(replace(problem, kind="forged_retention"))
            elif marker["seq"] > purged.get(marker["chain"], Purged(0, GENESIS)).seq:
                purged[marker["chain"]] = Purged(marker["seq"], marker["head_hash"])
        return purged

    def _forged(self, signed: Mapping[Any, Any], payload: bytes, where: str) -> Problem | None:
        """Why a checkpoint's or marker's signature cannot be believed, or None when it verifies."""
        signer = self._verifiers.get(signed["key_id"])
        if signer is None:
            return Problem("forged_checkpoint", signed["chain"], signed["seq"], None,
                           f"{where} is signed by key {signed['key_id']!r}, which this gateway does not know")
        try:
            signer.verify(payload, decode_signature(signed["signature"]))
        except CryptoError:
            return Problem("forged_checkpoint", signed["chain"], signed["seq"], None,
                           f"{where}: the signature does not match its chain, seq and head hash")
        return None

    def _check_checkpoint(self, cp: RowMapping, heads: Mapping[tuple[str, int], LedgerRecord]) -> Iterator[Problem]:
        where = f"checkpoint {cp['id']} of {cp['chain']} at seq {cp['seq']}"
        payload = _checkpoint_payload(cp["chain"], cp["seq"], cp["head_hash"], as_utc(cp["at"]))
        if (forged := self._forged(cp, payload, where)) is not None:
            yield forged
            return
        head = heads.get((cp["chain"], cp["seq"]))
        if head is None:
            yield Problem("removed", cp["chain"], cp["seq"], None,
                          f"{where} signed a record that is no longer there")
        elif head.hash != cp["head_hash"]:
            yield Problem("changed", cp["chain"], cp["seq"], head.id,
                          f"{where} signed another record than the one now there (id {head.id}): the chain "
                          "up to it was rewritten")

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.units(read_only=True) as uow:  # a deferred BEGIN on SQLite: no write lock
            yield uow.conn


def record_hash(row: Mapping[str, Any], digest_name: str) -> str:
    """`<digest>:<hex>` over the canonical encoding of the stored fields (JSON array in HASHED order)."""
    values = [_instant(row[name]) if name == "at" else row[name] for name in HASHED]
    canonical = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
    return f"{digest_name}:{digest(digest_name).digest(canonical).hex()}"


def _check_chain(chain: str, records: Iterable[LedgerRecord], problems: list[Problem],
                 purged: Purged | None = None) -> Iterator[LedgerRecord]:
    """Walk one chain in seq order, noting each problem; yields the records walked. A purged chain starts
    after its retention marker, linked to the hash the marker signed."""
    start = purged or Purged(0, GENESIS)
    expected, prev_hash, prev_id = start.seq + 1, start.head, 0
    for record in records:
        if record.seq <= start.seq:  # the marker vouches for these: their place is taken by its signed hash
            continue
        algorithm = record.hash.partition(":")[0]
        if record.hash != _rehash(record, algorithm):
            problems.append(Problem("changed", chain, record.seq, record.id,
                                    f"{chain} seq {record.seq} (id {record.id}): its fields do not match its hash"))
        if record.seq > expected:
            missing = f"seq {expected}" if record.seq == expected + 1 else f"seq {expected}–{record.seq - 1}"
            problems.append(Problem("removed", chain, expected, None,
                                    f"{chain}: {missing} missing before seq {record.seq} (id {record.id})"))
        elif record.prev_hash != prev_hash:
            problems.append(Problem("reordered", chain, record.seq, record.id,
                                    f"{chain} seq {record.seq} (id {record.id}) does not follow the record before "
                                    "it: records were reordered, or the one before was rewritten"))
        if record.id < prev_id:
            problems.append(Problem("reordered", chain, record.seq, record.id,
                                    f"{chain} seq {record.seq} has id {record.id}, written before id {prev_id} "
                                    f"at seq {record.seq - 1}: records were reordered"))
        expected, prev_hash, prev_id = record.seq + 1, record.hash, record.id
        yield record


def _rehash(record: LedgerRecord, algorithm: str) -> str | None:
    try:
        return record_hash(asdict(record), algorithm)
    except ValueError:  # an unknown digest name: the hash itself was altered
        return None


def _check_anchor(anchor: Anchor, heads: Mapping[tuple[str, int], LedgerRecord]) -> Iterator[Problem]:
    where = f"the anchor kept outside the database for {anchor.chain} at seq {anchor.seq}"
    head = heads.get((anchor.chain, anchor.seq))
    if head is None:
        yield Problem("removed", anchor.chain, anchor.seq, None, f"{where} names a record that is no longer there")
    elif head.hash != anchor.head_hash:
        yield Problem("changed", anchor.chain, anchor.seq, head.id,
                      f"{where} names another record than the one now there (id {head.id})")


def _from_anchor(anchor: Anchor, records: Iterator[LedgerRecord], problems: list[Problem]
                 ) -> tuple[Purged, Iterator[LedgerRecord]]:
    """Where an anchored chain's walk starts, and the records to walk: the first read must be the anchored
    record, unchanged (it hashes to the anchor, and its fields to its hash); the rest link to it. A record
    there that is not the anchored one is named once, and what follows is linked to it as found."""
    first = next(records, None)
    where = f"the anchor kept outside the database for {anchor.chain} at seq {anchor.seq}"
    if first is None or first.seq != anchor.seq:
        problems.append(Problem("removed", anchor.chain, anchor.seq, None,
                                f"{where} names a record that is no longer there"))
        return Purged(anchor.seq, anchor.head_hash), _preceded(first, records)
    if first.hash != anchor.head_hash:
        problems.append(Problem("changed", anchor.chain, anchor.seq, first.id,
                                f"{where} names another record than the one now there (id {first.id}): the "
                                "chain up to it was rewritten"))
    elif first.hash != _rehash(first, first.hash.partition(":")[0]):
        problems.append(Problem("changed", anchor.chain, anchor.seq, first.id,
                                f"{anchor.chain} seq {anchor.seq} (id {first.id}): its fields do not match its hash"))
    return Purged(anchor.seq, first.hash), records


def _preceded(first: LedgerRecord | None, rest: Iterator[LedgerRecord]) -> Iterator[LedgerRecord]:
    if first is not None:
        yield first
    yield from rest


def _counted(records: Iterable[LedgerRecord], report: VerifyReport, progress: Progress | None,
             total: int) -> Iterator[LedgerRecord]:
    for record in records:
        report.records += 1
        if progress is not None and report.records % 500 == 0:
            progress(report.records, total)
        yield record


def _selections(starts: Mapping[str, Anchor]) -> list[ColumnElement[bool]]:
    """Which records to read: every chain without a starting point whole, the others from their anchor on
    (in groups, so no statement grows too deep for the database's parser)."""
    c = ledger_records.c
    anchored = sorted(starts.values(), key=lambda a: a.chain)
    groups = [anchored[i:i + 100] for i in range(0, len(anchored), 100)]
    return [c.chain.notin_([a.chain for a in anchored]) if anchored else true(),
            *(or_(*(and_(c.chain == a.chain, c.seq >= a.seq) for a in group)) for group in groups)]


def _vouched(starts: Mapping[str, Anchor], chain: str, seq: int) -> bool:
    """Whether (chain, seq) lies at or before the chain's starting point: the anchor vouches for it (and its
    own record was checked against it), so no checkpoint or anchor there needs the records before."""
    return chain in starts and seq <= starts[chain].seq


def _checkpoint_payload(chain: str, seq: int, head: str, at: datetime) -> bytes:
    return json.dumps(["yiwang-ledger-checkpoint", chain, seq, head, _instant(at)], separators=(",", ":")).encode()


def _retention_payload(chain: str, seq: int, head: str, before: datetime, at: datetime) -> bytes:
    return json.dumps(["yiwang-ledger-retention", chain, seq, head, _instant(before), _instant(at)],
                      separators=(",", ":")).encode()


def _unless_purged(problems: Iterable[Problem], purged: Purged | None, seq: int, head_hash: str) -> Iterator[Problem]:
    """A checkpoint's or anchor's problems, except that a record purged under a retention marker is not
    "removed": a signed head within the purged part is checked against the marker where it can be (its
    seq), and otherwise vouched for by it."""
    for problem in problems:
        if purged is None or seq > purged.seq or problem.kind == "forged_checkpoint":
            yield problem
        elif seq == purged.seq and head_hash != purged.head:
            yield replace(problem, kind="changed", detail=f"{problem.detail}; the retention marker at that seq "
                                                          "signed another hash")


def _instant(at: datetime) -> str:
    """One spelling of an instant whatever the database returns (naive UTC on SQLite, aware on PostgreSQL)."""
    return as_utc(at).isoformat(timespec="microseconds")


def _aad(chain: str, seq: int) -> str:
    """A body opens only at its own place in its own chain."""
    return f"ledger:{chain}:{seq}"


def _clip(name: str, value: Any) -> Any:
    limit = LIMITS.get(name)
    return value[:limit] if limit and isinstance(value, str) else value


def _jsonable(value: Any) -> Any:
    """Bodies as JSON: what is not JSON by nature (bytes, dates, dataclasses) in a readable form."""
    return _elide(json.loads(json.dumps(value, ensure_ascii=False, default=_readable)))


def _elide(value: Any) -> Any:
    """Strings longer than LONGEST_TEXT (inline material files) as their length and SHA-256: the log proves
    what was sent without holding every file a second time."""
    if isinstance(value, str) and len(value) > LONGEST_TEXT:
        return f"[{len(value)} characters elided; sha256 {hashlib.sha256(value.encode()).hexdigest()}]"
    if isinstance(value, dict):
        return {k: _elide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_elide(v) for v in value]
    return value


def _readable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _filtered(f: Filters) -> Select[Any]:
    c = ledger_records.c
    query = select(ledger_records).where(c.kind == f.kind)
    for column, value in ((c.actor, f.actor), (c.action, f.action), (c.sector, f.sector), (c.case_no, f.case_no)):
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:  # SQLite stores instants as naive UTC text: compare in UTC
        query = query.where(c.at >= as_utc(f.since))
    if f.until is not None:
        query = query.where(c.at < as_utc(f.until))
    if f.after_id is not None:
        query = query.where(c.id > f.after_id)
    return query


def _record(row: RowMapping) -> LedgerRecord:
    return LedgerRecord(**{**row, "at": as_utc(row["at"])})
