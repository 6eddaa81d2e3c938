"""Dead letters at volume: one filtered page of the operators' list, and a bulk replay of all of them.

On SQLite and on PostgreSQL (a database of the run's own, dropped afterwards), `seed_dead_letters`
bulk-inserts 100000 dead letters (10000 with --quick) spread over 4 sectors, 5 error classes and 30 days,
each with its dead outbox row and its case, sealed like real ones. Then:

- `<database>.list_page_ms`: one page of 50 (`DeadLetterDesk.page`) filtered by sector and error class,
  newest first, with its total; the median of several is the p50 (target ≤ 200 ms);
- `<database>.requeue_s`: a whole bulk replay, `start_replay` + `continue_replay` until done, every
  letter marked replayed and every outbox row reopened (target ≤ 60 s).

`list_page_ms` and `requeue_s` at the top are the slower database's figures; `met` needs both targets on
both databases.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from bench import Options, figure
from bench.harness import postgres_database
from certstore.keyring import FieldSealer, MasterKeys
from gateway.domain.causes import cause_key
from gateway.domain.clock import SystemClock
from gateway.persistence import tables as t
from gateway.persistence.blind_index import BlindIndex
from gateway.persistence.engine import make_engine
from gateway.persistence.personal_data import SEALED_COLUMNS, PersonalData
from gateway.persistence.repository import idempotency_key
from gateway.persistence.uow import UnitsOfWork, create_schema
from ops.dead_letters import DeadLetterDesk, DeadLetterFilter

SECTORS = ("social_security", "housing_fund", "civil_affairs", "public_security")
ERROR_CLASSES = ("transport", "timeout", "sector_fault", "mapping", "validation")
MATTERS = ("12150200MB1A00010L3000805001000", "12150200MB1A00010L3000805002000", "11150200MB0X0000083000301000")
LETTERS_PER_CASE = 50
DAYS = 30
CHUNK = 5000
TARGET_REQUEUE_S = 60.0
TARGET_PAGE_MS = 200.0


def run(options: Options) -> dict[str, Any]:
    count = 10_000 if options.quick else 100_000
    pages = 5 if options.quick else 15
    entry: dict[str, Any] = {"dead_letters": count}
    for name, database in (("sqlite", sqlite_database), ("postgresql", postgres_database)):
        with database() as url:
            engine = make_engine(url)
            try:
                page_ms, requeue_s = measure(engine, count, pages)
            finally:
                engine.dispose()
        entry[f"{name}.list_page_ms"] = figure(page_ms, "ms")
        entry[f"{name}.requeue_s"] = figure([requeue_s], "s")
    for key in ("list_page_ms", "requeue_s"):
        entry[key] = max((entry[f"{name}.{key}"] for name in ("sqlite", "postgresql")), key=lambda f: f["median"])
    entry["target"] = f"requeue ≤ {TARGET_REQUEUE_S:.0f} s, page ≤ {TARGET_PAGE_MS:.0f} ms"
    entry["met"] = entry["requeue_s"]["median"] <= TARGET_REQUEUE_S and \
        entry["list_page_ms"]["median"] <= TARGET_PAGE_MS
    return entry


def measure(engine: Engine, count: int, pages: int) -> tuple[list[float], float]:
    create_schema(engine)
    personal = bench_personal_data()
    seed_dead_letters(engine, personal, count, SystemClock().now())
    desk = DeadLetterDesk(UnitsOfWork(engine, personal), SystemClock())
    wanted = DeadLetterFilter(sector=SECTORS[1], error_class=ERROR_CLASSES[2])
    desk.page(wanted)  # warm-up: caches, the first sealed value opened
    page_ms = []
    for _ in range(pages):
        started = time.perf_counter()
        desk.page(wanted)
        page_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    run = desk.start_replay(DeadLetterFilter(), by="bench", reason="bench: the sectors are back")
    done = desk.continue_replay(run.id)
    requeue_s = time.perf_counter() - started
    if done.replayed != count:
        raise AssertionError(f"the bulk replay reopened {done.replayed} of {count}")
    return page_ms, requeue_s


@contextmanager
def sqlite_database() -> Iterator[str]:
    with TemporaryDirectory(prefix="yiwang-bench-replay-") as folder:
        yield f"sqlite:///{Path(folder) / 'yiwang.db'}"


def bench_personal_data() -> PersonalData:
    """Throw-away keys: the figures include opening sealed values, as an operator's list does."""
    return PersonalData(BlindIndex(b"b" * 32), FieldSealer(MasterKeys.parse("bench:" + "B" * 43 + "=")))


def seed_dead_letters(engine: Engine, personal: PersonalData, count: int, now: datetime, *,
                      sectors: tuple[str, ...] = SECTORS, bundle_version: str = "1.0.0") -> list[int]:
    """`count` dead letters with their dead outbox rows and cases, in bulk: spread evenly over the sectors,
    error classes, matters and the last 30 days, 1 to 5 attempts. Returns the dead letters' ids.

    Sealed values are sealed once per error class and reused: a token is bound to its column, not its row."""
    sealed = {error: {c: personal.seal(_failure(error)[c], f"dead_letters.{c}")
                      for c in SEALED_COLUMNS["dead_letters"][1]} for error in ERROR_CLASSES}
    prefix = f"SEED{uuid.uuid4().hex[:8]}"  # a second seeding in one database adds cases of its own
    applicant = personal.seal(SEED_APPLICANT, "cases.applicant")  # one sealed value for every seeded case
    with engine.begin() as conn:
        first_outbox_id = int(conn.execute(select(func.coalesce(func.max(t.outbox.c.id), 0))).scalar_one()) + 1
        cases = [_case_row(f"{prefix}{n:07d}", MATTERS[n % len(MATTERS)], now, applicant)
                 for n in range(-(-count // LETTERS_PER_CASE))]
        for start in range(0, len(cases), CHUNK):
            conn.execute(insert(t.cases), cases[start:start + CHUNK])
        for start in range(0, count, CHUNK):
            numbers = range(start, min(count, start + CHUNK))
            outbox = [_outbox_row(first_outbox_id + n, cases[n // LETTERS_PER_CASE]["case_no"], n,
                                  sectors[n % len(sectors)], now) for n in numbers]
            conn.execute(insert(t.outbox), outbox)  # ids given: no RETURNING, which costs a round trip a row
            conn.execute(insert(t.case_tasks), [_task_row(row) for row in outbox])  # a task a letter: it names one
            letters = [{**row, **_letter_row(n, count, now, sealed), "outbox_id": row["id"],
                        "bundle_version": bundle_version} for n, row in zip(numbers, outbox, strict=True)]
            for letter in letters:  # as the repository writes it with the letter
                letter["cause"] = cause_key(letter["error_class"], letter["sector"],
                                            _failure(letter["error_class"])["error_message"])
            conn.execute(insert(t.dead_letters), [_only_dead_letter_columns(row) for row in letters])
        if conn.dialect.name == "postgresql":  # the sequence goes on after the ids given
            conn.execute(text("SELECT setval(pg_get_serial_sequence('outbox', 'id'), (SELECT max(id) FROM outbox))"))
        ids = list(conn.execute(select(t.dead_letters.c.id).where(t.dead_letters.c.case_no.startswith(prefix))
                                .order_by(t.dead_letters.c.id)).scalars())
    return ids


SEED_APPLICANT = {"name": "王建国", "id_type": "111", "id_number": "150203198503120039", "phone": None,
                  "address": None, "legal_representative": None}


def _failure(error: str) -> dict[str, Any]:
    return {"error_message": f"{error}: the sector did not take the message",
            "rendered_request": {"body": "<rendered request>"},
            "canonical_payload": {"case": {"applicant": {"id_number": "150203198503120039"}}},
            "last_response": {"status": 503, "body": "Service Unavailable"},
            "history": [{"at": "2026-11-01T00:00:00+00:00", "failure": error, "elapsed_ms": 12}]}


def _case_row(case_no: str, matter_code: str, now: datetime, applicant: Any) -> dict[str, Any]:
    return {"case_no": case_no, "matter_code": matter_code, "matter_version": 1, "state": "accepted",
            "channel": "online_pc", "region_code": "150200", "applicant": applicant, "applicant_index": "seed",
            "green_channel": {}, "materials": [], "form": {}, "missing_materials": [], "supplement_rounds": 0,
            "version": 1, "created_at": now, "updated_at": now}


def _task_row(outbox: dict[str, Any]) -> dict[str, Any]:
    """The task a seeded letter's message was for, still pending at its sector (as a dead submission leaves it)."""
    return {"case_no": outbox["case_no"], "task_id": outbox["task_id"], "department": "种子部门",
            "credit_code": "12150200MB1A00010L", "sector": outbox["sector"], "lead": outbox["task_id"] == "1",
            "state": "pending", "round": 0}


def _outbox_row(outbox_id: int, case_no: str, n: int, sector: str, now: datetime) -> dict[str, Any]:
    task_id = str(n % LETTERS_PER_CASE + 1)
    return {"id": outbox_id, "case_no": case_no, "sector": sector, "operation": "submit_case", "task_id": task_id,
            "idempotency_key": idempotency_key(case_no, task_id, "submit_case"), "priority": 0, "status": "dead",
            "deliveries": 1, "available_at": now, "created_at": now, "done_at": now, "replays": 0}


def _letter_row(n: int, count: int, now: datetime, sealed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    error = ERROR_CLASSES[n // len(SECTORS) % len(ERROR_CLASSES)]  # every sector sees every class
    return {**sealed[error], "error_class": error, "attempts": n % 5 + 1, "status": "dead",
            "created_at": now - timedelta(days=DAYS) * (count - n) / count}


def _only_dead_letter_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key in t.dead_letters.c and key != "id"}
