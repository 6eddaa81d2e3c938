"""The schema, in SQLAlchemy Core. Rows are translated to domain objects in `repository.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()
MAX_ROW_ID = 2**31 - 1  # Integer columns (ids, version numbers) are 32-bit in PostgreSQL: a larger one names nothing


def _utc(name: str, **kw: Any) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), **kw)


cases = Table(
    "cases",
    metadata,
    Column("case_no", String(50), primary_key=True),
    Column("matter_code", String(31), nullable=False, index=True),
    Column("matter_version", Integer, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("region_code", String(12), nullable=False),
    Column("applicant", JSON, nullable=False),
    Column("applicant_index", String(64), nullable=False, index=True),  # keyed blind index of the ID number
    Column("agent", JSON(none_as_null=True)),
    Column("green_channel", JSON, nullable=False),
    Column("materials", JSON, nullable=False),
    Column("form", JSON, nullable=False),
    Column("receipt_no", String(40)),
    Column("deadline", JSON(none_as_null=True)),
    Column("deadline_due", Date, index=True),  # copied out of `deadline` so the clock can query it
    Column("missing_materials", JSON, nullable=False),
    Column("supplement_rounds", Integer, nullable=False),
    Column("opinion", Text),
    Column("certificate", JSON(none_as_null=True)),
    Column("certificate_draft", JSON(none_as_null=True)),  # 待出证: a sector's certificate, fetched (results.py)
    Column("delivery", JSON(none_as_null=True)),
    Column("evaluation", JSON(none_as_null=True)),
    Column("completion", String(16)),
    Column("version", Integer, nullable=False),
    _utc("created_at", nullable=False),
    _utc("updated_at", nullable=False),
)

case_tasks = Table(
    "case_tasks",
    metadata,
    Column("case_no", String(50), ForeignKey("cases.case_no"), primary_key=True),
    Column("task_id", String(8), primary_key=True),
    Column("department", String(100), nullable=False),
    Column("credit_code", String(18), nullable=False, index=True),
    Column("sector", String(64)),
    Column("lead", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("sector_ref", String(64)),
    Column("opinion", Text),
    Column("round", Integer, nullable=False, default=0, server_default="0"),  # corrections send a task again
    Column("sector_told", Boolean),  # a cancelled task: None its sector never had it, False telling, True told
    Column("result", JSON(none_as_null=True)),  # what the sector's decision said: its time, certificate, document
    # One task per reference of a sector, across all its bundle versions: a sector's answer finds its task by it
    # (gateway/domain/answers.py). Partial: tasks the sector has not answered yet hold none.
    Index("uq_case_tasks_sector_ref", "sector", "sector_ref", unique=True,
          sqlite_where=text("sector_ref IS NOT NULL"), postgresql_where=text("sector_ref IS NOT NULL")),
)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(50), ForeignKey("cases.case_no"), nullable=False),
    Column("seq", Integer, nullable=False),
    _utc("at", nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("data", JSON, nullable=False),
    UniqueConstraint("case_no", "seq"),
)

# Daily sequence behind case numbers: read-then-write, the update SQLite must not lose.
case_counters = Table(
    "case_counters",
    metadata,
    Column("scope", String(40), primary_key=True),  # implementation code + Shanghai date
    Column("last_seq", Integer, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(50), ForeignKey("cases.case_no"), nullable=False, index=True),
    Column("sector", String(64), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("task_id", String(8), nullable=False),
    Column("idempotency_key", String(160), nullable=False),
    Column("priority", Integer, nullable=False, default=0),  # green channel first
    # pending (due at available_at) | queued (the broker confirmed it; a worker will take it) | done | dead |
    # superseded (its task started a new round or ended before it was settled)
    Column("status", String(16), nullable=False, index=True),
    Column("deliveries", Integer, nullable=False, default=0),  # times a dispatcher or worker took it
    _utc("available_at", nullable=False, index=True),
    Column("lease_owner", String(80)),
    _utc("lease_until"),
    _utc("created_at", nullable=False),
    _utc("published_at"),  # when the broker last confirmed it (RabbitMQ transport)
    _utc("done_at"),
    # A replay "with the original mapping" pins the bundle version the message died with; None: the active one.
    Column("bundle_version", String(64)),
    Column("replays", Integer, nullable=False, default=0, server_default="0"),  # times reopened from a dead letter
    Column("correlation_id", String(64)),  # of the request or job that wrote it (gateway/observability/correlation.py)
    Column("round", Integer, nullable=False, default=0, server_default="0"),  # the task's round it belongs to
    # When a delivery first met the sector's open circuit breaker; the bundle's retry.max_wait_ms bounds the wait.
    _utc("circuit_wait_since"),
    # A status poll's answers in a row that could not be read; the bundle's results.max_bad_answers ends the polling.
    Column("bad_answers", Integer, nullable=False, default=0, server_default="0"),
    # A ferry's answer arriving makes the message waiting for it due now (CaseService.answer_arrived), by its key.
    Index("ix_outbox_idempotency_key", "idempotency_key"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # None: a message the broker dead-lettered that names no outbox row we know (recorded, not dropped)
    Column("outbox_id", Integer, ForeignKey("outbox.id"), nullable=True, index=True),
    Column("case_no", String(50), nullable=False, index=True),
    Column("sector", String(64), nullable=False),  # indexed with status below
    Column("operation", String(32), nullable=False),
    Column("idempotency_key", String(160), nullable=False),
    Column("error_class", String(32), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("rendered_request", JSON),
    Column("canonical_payload", JSON),  # the canonical message as it was built for the sector (sealed)
    Column("last_response", JSON),  # the sector's last raw answer, if any (sealed)
    Column("history", JSON),  # every call made: at, failure class, message, elapsed_ms (sealed)
    Column("deliveries", Integer, nullable=False, default=0, server_default="0"),  # times taken before it died
    Column("bundle_version", String(64)),  # as long as a bundle's version
    Column("status", String(16), nullable=False),  # dead | replayed | discarded | superseded
    _utc("created_at", nullable=False),
    _utc("replayed_at"),
    Column("replayed_by", String(128)),
    Column("replay_reason", Text),
    Column("replay_run_id", Integer),  # the bulk replay it belongs to (frozen at its start)
    _utc("discarded_at"),
    Column("discarded_by", String(128)),
    Column("discard_reason", Text),
    Column("case_outcome", String(16)),  # what discarding it did to the case: back_office | return | void
    _utc("superseded_at"),  # its task was sent again in a new round (a correction) or ended
    # `sector/error_class: error text normalised` (gateway/domain/causes.py), plain: it holds no personal data.
    # None: written before causes existed and sealed (the desk's `fill_causes` job fills it).
    Column("cause", String(200)),  # causes.MAX_CAUSE
    # The operators' filters, each as (what it narrows to, status, newest first, id): one filtered page of
    # 100000 dead letters reads an index range, not the table. Few on purpose: a bulk replay rewrites every
    # index holding `status` for each letter (other sorts sort the filtered rows).
    Index("ix_dead_letters_status_created", "status", "created_at", "id"),
    Index("ix_dead_letters_sector_status_created", "sector", "status", "created_at", "id"),
    Index("ix_dead_letters_class_status_created", "error_class", "status", "created_at", "id"),
    Index("ix_dead_letters_run_status", "replay_run_id", "status", "id"),  # a run's next batch
    Index("ix_dead_letters_cause_status_created", "cause", "status", "created_at", "id"),
)

# A bulk replay: the filter, the reason and who asked, and its progress. Its dead letters are the ones
# carrying its id (`dead_letters.replay_run_id`), chosen once at its start.
replay_runs = Table(
    "replay_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("filter", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("mapping", String(16), nullable=False),  # original (the version it died with) | active
    Column("requested_by", String(128), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # running | done | cancelled
    Column("total", Integer, nullable=False),
    Column("replayed", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),  # discarded (or replayed one by one) after the run started
    _utc("created_at", nullable=False),
    _utc("finished_at"),  # done or cancelled
    Column("cancelled_by", String(128)),
    Column("cancel_reason", Text),
)

# Scheduled jobs (deadline clock, certificate expiry, outbox sweep, webhooks) run under a lease: each
# job runs in one process at a time across every process sharing the database.
job_leases = Table(
    "job_leases",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("owner", String(80)),
    _utc("lease_until"),
    _utc("last_started_at"),
    _utc("last_finished_at"),
    Column("runs", Integer, nullable=False, default=0, server_default="0"),
    Column("last_error", Text),
)

# Case events to tell the hall about (webhooks, the AMQP topic), written in the event's own transaction:
# an id sequence read after commit would skip events whose transaction committed late.
case_notifications = Table(
    "case_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(50), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("matter_code", String(31), nullable=False),
    _utc("at", nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending | published
    _utc("published_at"),
    UniqueConstraint("case_no", "seq", name="uq_case_notifications_case_seq"),
)

# An Idempotency-Key belongs to the identity that sent it: another identity's same key is another request.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(128), primary_key=True),  # the identity's id (`Actor.id` of the submission)
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("case_no", String(50), ForeignKey("cases.case_no"), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    _utc("created_at", nullable=False),
)
