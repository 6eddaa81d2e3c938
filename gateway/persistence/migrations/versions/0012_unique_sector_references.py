"""one task per reference of a sector: a partial unique index on case_tasks(sector, sector_ref)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:00:00

A sector's answer finds its task by the sector's reference (gateway/domain/answers.py), so a reference may be
held by one task of that sector only, whatever the bundle version; tasks not yet answered hold none (NULL,
hence partial). It replaces the plain index ix_case_tasks_sector_ref, which it covers.

A database that already holds a reference twice (a sector that reissued references, e.g. after a restart)
loses nothing: in each such group the task of the earliest case (then the lowest case number and task id)
keeps the reference; every later holder gives it up (NULL) and gets a `validation` dead letter, as a clashing
submit answer does now, naming both cases and the reference. The reference also stays in the task's
`task_started` event. Operators settle these with the sector (docs/sectors.md, "Callbacks and polled answers").
Downgrading restores the plain index; references given up stay with their dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_NULL = sa.text("sector_ref IS NOT NULL")
cases = sa.table("cases", sa.column("case_no"), sa.column("created_at"))
tasks = sa.table("case_tasks", sa.column("case_no"), sa.column("task_id"), sa.column("sector"),
                 sa.column("sector_ref"))
dead_letters = sa.table(
    "dead_letters", sa.column("outbox_id"), sa.column("case_no"), sa.column("sector"), sa.column("operation"),
    sa.column("idempotency_key"), sa.column("error_class"), sa.column("error_message"), sa.column("attempts"),
    sa.column("last_response", sa.JSON), sa.column("deliveries"), sa.column("status"), sa.column("created_at"))


def upgrade() -> None:
    set_aside_repeated_references(op.get_bind())
    op.drop_index('ix_case_tasks_sector_ref', table_name='case_tasks')
    op.create_index('uq_case_tasks_sector_ref', 'case_tasks', ['sector', 'sector_ref'], unique=True,
                    sqlite_where=NOT_NULL, postgresql_where=NOT_NULL)


def downgrade() -> None:
    op.drop_index('uq_case_tasks_sector_ref', table_name='case_tasks')
    op.create_index('ix_case_tasks_sector_ref', 'case_tasks', ['sector_ref'], unique=False)


def set_aside_repeated_references(conn: sa.Connection) -> None:
    """Every holder of a repeated reference but the first gives it up, with a dead letter saying so."""
    repeated = (sa.select(tasks.c.sector, tasks.c.sector_ref).where(tasks.c.sector_ref.is_not(None))
                .group_by(tasks.c.sector, tasks.c.sector_ref).having(sa.func.count() > 1).subquery())
    holders = conn.execute(
        sa.select(tasks.c.sector, tasks.c.sector_ref, tasks.c.case_no, tasks.c.task_id)
        .join(repeated, sa.and_(tasks.c.sector == repeated.c.sector, tasks.c.sector_ref == repeated.c.sector_ref))
        .join(cases, cases.c.case_no == tasks.c.case_no)
        .order_by(tasks.c.sector, tasks.c.sector_ref, cases.c.created_at, tasks.c.case_no, tasks.c.task_id)).all()
    first: dict[tuple[str, str], tuple[str, str]] = {}
    now = datetime.now(UTC)
    for sector, reference, case_no, task_id in holders:
        keeper = first.setdefault((sector, reference), (case_no, task_id))
        if keeper == (case_no, task_id):
            continue
        conn.execute(sa.update(tasks).where(tasks.c.case_no == case_no, tasks.c.task_id == task_id)
                     .values(sector_ref=None))
        conn.execute(sa.insert(dead_letters).values(
            outbox_id=None, case_no=case_no, sector=sector, operation="submit_case",
            idempotency_key=f"{case_no}:{task_id}:submit_case", error_class="validation", attempts=0, deliveries=0,
            error_message=(f"{sector} gave case {case_no} task {task_id} the reference {reference!r} that case "
                           f"{keeper[0]} task {keeper[1]} already held; set aside by migration 0012, which made "
                           "references unique (the first holder keeps it)"),
            last_response={"sector_ref": reference}, status="dead", created_at=now))
