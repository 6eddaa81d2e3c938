"""The bundle registry's record: register, test, activate, roll back and retire sector bundle versions.

Sector IT teams hand over a bundle (a folder or a zip; no code). Registering validates it whole
(`adapters.bundle.validate_bundle`) and stores it as an archive; nothing invalid is stored. Activating a
version is one row's status: every process picks it up through `gateway.sectors.live_registry` without a restart.
Activation is gated on the version's last test (`yiwang adapters test`) and last rehearsal (`yiwang adapters
rehearse`, `gateway.sectors.rehearsals`): a version whose last test did not end `accepted` and whose last rehearsal
did not pass (or that was never tried) is activated only with `force` (`VersionUntested` otherwise); rolling back to
a version that was active before is not gated.
A sector administrator acts only on their own sector's bundles (the API checks; the CLI is the
operator's local tool).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters import Bundle
from gateway.domain.clock import Clock, as_utc, beijing_text, instants_as_beijing_text
from gateway.persistence.bundle_tables import (
    ACCEPTED,
    ACTIVE,
    INACTIVE,
    PASSED,
    REGISTERED,
    RETIRED,
    bundle_versions,
)
from gateway.persistence.uow import UnitsOfWork


class BundleInvalid(ValueError):
    """The bundle breaks the format; `problems` lists every finding as `file:line: field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s): " + "; ".join(problems[:3]))
        self.problems = problems


class BundleConflict(ValueError):
    """The operation does not fit the version's status (activating a retired version, …)."""


class VersionUntested(Exception):
    """Activating a version whose last test did not end `accepted` (or that was never tested), without force."""

    def __init__(self, sector: str, version: str, outcome: str | None, rehearsal: str | None = None) -> None:
        said = "从未测试" if outcome is None else f"最近一次测试的结果为 {outcome}"
        rehearsed = "" if rehearsal is None else f"，最近一次预演 {rehearsal}"
        super().__init__(f"{sector} {version} {said}{rehearsed}：请先测试（yiwang adapters test）或预演"
                         "（yiwang adapters rehearse），或确认后强制启用")
        self.sector, self.version, self.outcome, self.rehearsal = sector, version, outcome, rehearsal


class UnknownBundle(LookupError):
    def __init__(self, sector: str, version: str) -> None:
        super().__init__(f"部门 {sector} 没有 {version} 版适配包")


@dataclass(frozen=True)
class BundleVersion:
    sector: str
    version: str
    status: str
    kind: str
    sha256: str
    summary: dict[str, Any]
    test_result: dict[str, Any] | None
    registered_at: datetime
    registered_by: str
    activated_at: datetime | None
    row_id: int = 0  # bundle_versions.id: the order registered, which a sector's listing keeps
    test_outcome: str | None = None  # of the last test: unreachable | refused | accepted; None: never tested
    rehearsal_outcome: str | None = None  # of the last rehearsal: passed | failed; None: never rehearsed
    rehearsal_result: dict[str, Any] | None = None  # its report (`gateway.sectors.rehearsals`)

    @property
    def tried(self) -> bool:
        """Whether activation may go ahead without force: an accepted test or a passed rehearsal."""
        return self.test_outcome == ACCEPTED or self.rehearsal_outcome == PASSED

    def forced(self) -> str | None:
        """What activating this version now would go past, as the audit record's outcome says it ("forced, last
        test refused, last rehearsal failed"); None when it needs no force (tried, or active already)."""
        if self.tried or self.status == ACTIVE:
            return None
        rehearsal = f", last rehearsal {self.rehearsal_outcome}" if self.rehearsal_outcome else ""
        return f"forced, last test {self.test_outcome or 'never run'}{rehearsal}"

    def last_rehearsal(self) -> dict[str, Any] | None:
        """The last rehearsal in brief: {outcome, at (Beijing time), passed, total}; None: never rehearsed."""
        report = self.rehearsal_result
        if report is None:
            return None
        return {"outcome": self.rehearsal_outcome, "at": instants_as_beijing_text(report["at"]),
                "passed": report["passed"], "total": report["total"]}

    def public(self) -> dict[str, Any]:
        return {"sector": self.sector, "version": self.version, "status": self.status, "kind": self.kind,
                "sha256": self.sha256, "summary": self.summary,
                "test_result": instants_as_beijing_text(self.test_result),  # its `at` is kept in UTC
                "test_outcome": self.test_outcome, "rehearsal": self.last_rehearsal(),
                "registered_at": beijing_text(self.registered_at), "registered_by": self.registered_by,
                "activated_at": beijing_text(self.activated_at) if self.activated_at else None}


def pack_folder(folder: Path) -> bytes:
    """A bundle folder as a zip, entries sorted and timestamps fixed: the same folder, the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def read_archive(source: Path) -> bytes:
    """A folder is packed; a file is taken as the zip it should be."""
    return pack_folder(source) if source.is_dir() else source.read_bytes()


class BundleStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.units = UnitsOfWork(engine)  # one unit of work per change or read, committed explicitly
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------------
    def versions(self, sector: str | None = None) -> list[BundleVersion]:
        query = select(*_columns()).order_by(bundle_versions.c.sector, bundle_versions.c.id)
        if sector is not None:
            query = query.where(bundle_versions.c.sector == sector)
        with self._reading() as conn:
            return [_version(r) for r in conn.execute(query).mappings()]

    def get(self, sector: str, version: str) -> BundleVersion:
        with self._reading() as conn:
            row = conn.execute(select(*_columns()).where(_key(sector, version))).mappings().first()
        if row is None:
            raise UnknownBundle(sector, version)
        return _version(row)

    def active(self) -> list[tuple[str, str, str]]:
        """(sector, version, sha256) of every active version: the cheap query every process polls."""
        query = select(bundle_versions.c.sector, bundle_versions.c.version, bundle_versions.c.sha256).where(
            bundle_versions.c.status == ACTIVE)
        with self._reading() as conn:
            return [(r.sector, r.version, r.sha256) for r in conn.execute(query)]

    def subscribers(self, event: str) -> tuple[str, ...]:
        """The sectors whose active version subscribes to this case event, from the versions' summaries (for a
        process without a live registry: `yiwang ops`, whose discards may close a case)."""
        query = select(bundle_versions.c.sector, bundle_versions.c.summary).where(bundle_versions.c.status == ACTIVE)
        with self._reading() as conn:
            return tuple(sorted(r.sector for r in conn.execute(query) if event in r.summary.get("subscriptions", ())))

    def archive(self, sector: str, version: str) -> bytes:
        with self._reading() as conn:
            data = conn.execute(select(bundle_versions.c.archive).where(_key(sector, version))).scalar()
        if data is None:
            raise UnknownBundle(sector, version)
        return bytes(data)

    # -- changing ----------------------------------------------------------------------------------
    def register(self, archive: bytes, actor: str, *, may_act_for: Callable[[str], bool] = lambda s: True
                 ) -> BundleVersion:
        """Validate the whole bundle and store it as `registered`; refuse (storing nothing) if invalid."""
        # With the adapter kinds (zeep, lxml): only what registers needs them.
        from adapters import bundle_warnings, validate_bundle

        with unpacked(archive) as bundle:
            problems = [str(p) for p in validate_bundle(bundle)]
            if problems:
                raise BundleInvalid(problems)
            if not may_act_for(bundle.sector):
                raise PermissionError(f"不是部门 {bundle.sector} 的管理员")
            # Kept with the version, so whoever tests or activates it later still sees them (a legacy algorithm).
            warnings = [str(w) for w in bundle_warnings(bundle)]
            row: dict[str, Any] = {
                "sector": bundle.sector, "version": bundle.version, "status": REGISTERED, "kind": bundle.kind,
                "archive": archive, "sha256": hashlib.sha256(archive).hexdigest(),
                "summary": summary(bundle) | {"warnings": warnings},
                "registered_at": self.clock.now(), "registered_by": actor}
        try:
            with self.units() as uow:
                conn = uow.conn
                conn.execute(insert(bundle_versions).values(**row))
                uow.commit()
        except IntegrityError as exc:
            raise BundleConflict(f"{row['sector']} version {row['version']} is already registered") from exc
        return self.get(row["sector"], row["version"])

    def record_test(self, sector: str, version: str, result: dict[str, Any]) -> BundleVersion:
        """Keep a test's result; its `outcome` (unreachable | refused | accepted) is what activation reads."""
        with self.units() as uow:
            conn = uow.conn
            conn.execute(update(bundle_versions).where(_key(sector, version))
                         .values(test_result=result, test_outcome=result["outcome"]))
            uow.commit()
        return self.get(sector, version)

    def record_rehearsal(self, sector: str, version: str, report: dict[str, Any]) -> BundleVersion:
        """Keep a rehearsal's report; its `outcome` (passed | failed) is what activation reads."""
        with self.units() as uow:
            uow.conn.execute(update(bundle_versions).where(_key(sector, version))
                             .values(rehearsal_result=report, rehearsal_outcome=report["outcome"]))
            uow.commit()
        return self.get(sector, version)

    def activate(self, sector: str, version: str, actor: str, *, force: bool = False) -> BundleVersion:
        """Make `version` the one every process uses; the one before stays as `inactive` for rollback.

        Refused when another sector's active bundle already takes one of its departments: a department's
        tasks (and its applicants' data) go to one system, not to whichever sector claims it last; and,
        without `force`, when its last test did not end `accepted` nor its last rehearsal pass (`VersionUntested`)."""
        return self._activate(sector, version, actor, tested_or_forced=force)

    def _activate(self, sector: str, version: str, actor: str, *, tested_or_forced: bool) -> BundleVersion:
        with self.units() as uow:
            conn = uow.conn
            status = _activatable(conn, sector, version, force=tested_or_forced)
            if status != ACTIVE:
                conn.execute(update(bundle_versions).where(and_(bundle_versions.c.sector == sector,
                                                                 bundle_versions.c.status == ACTIVE))
                             .values(status=INACTIVE))
                conn.execute(update(bundle_versions).where(_key(sector, version))
                             .values(status=ACTIVE, activated_at=self.clock.now(), activated_by=actor))
            uow.commit()
        return self.get(sector, version)

    def check_activatable(self, sector: str, version: str, *, force: bool = False) -> None:
        """Raise what `activate` would raise now, changing nothing (a four-eyes request is checked first)."""
        with self._reading() as conn:
            _activatable(conn, sector, version, force=force)

    def rollback(self, sector: str, actor: str) -> BundleVersion:
        """Back to the version active before the current one."""
        with self._reading() as conn:
            previous = conn.execute(
                select(bundle_versions.c.version)
                .where(bundle_versions.c.sector == sector, bundle_versions.c.status == INACTIVE)
                .order_by(bundle_versions.c.activated_at.desc()).limit(1)
            ).scalar()
        if previous is None:
            raise BundleConflict(f"{sector} 没有更早启用过的版本可以回退")
        # It was active before: going back is the way out of a bad version, not a new one's first use.
        return self._activate(sector, previous, actor, tested_or_forced=True)

    def retire(self, sector: str, version: str, actor: str) -> BundleVersion:
        with self.units() as uow:
            conn = uow.conn
            if _status(conn, sector, version) == ACTIVE:
                raise BundleConflict(f"{sector} {version} 正在启用：请先启用另一版本")
            conn.execute(update(bundle_versions).where(_key(sector, version))
                         .values(status=RETIRED, retired_at=self.clock.now(), retired_by=actor))
            uow.commit()
        return self.get(sector, version)

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self.units(read_only=True) as uow:
            yield uow.conn


@contextmanager
def unpacked(archive: bytes) -> Iterator[Bundle]:
    """The archive unpacked safely into a temporary folder and read; the folder is removed after."""
    # Imported here: reading a bundle loads the adapter kinds (zeep, lxml, httpx), which a `yiwang` command
    # that only lists versions or dead letters does not need (the CLI's start time).
    from adapters import BundleError, load_bundle, unpack_bundle

    with tempfile.TemporaryDirectory(prefix="yiwang-bundle-") as tmp:
        try:
            folder = unpack_bundle(archive, Path(tmp) / "bundle")
            yield load_bundle(folder)
        except BundleError as exc:
            raise BundleInvalid([str(p) for p in exc.problems]) from exc


def summary(bundle: Bundle) -> dict[str, Any]:
    """What operators and the routing need to know without unpacking the archive."""
    from adapters import read_rehearsal  # with the bundle: checked already by validate_bundle
    return {
        "title": bundle.title,
        "department": {"name": bundle.department.name, "credit_code": bundle.department.credit_code},
        "serves": {"departments": list(bundle.serves.departments), "matters": list(bundle.serves.matters)},
        "operations": sorted(str(o) for o in bundle.operations),
        "queries": sorted(bundle.queries),
        "results": None if bundle.results is None else {"mode": bundle.results.mode,
                                                        "interval_ms": getattr(bundle.results, "interval_ms", None)},
        "subscriptions": sorted(bundle.subscriptions),
        "rehearsal_items": len(read_rehearsal(bundle)),
    }


def _columns() -> list[Any]:
    c = bundle_versions.c
    return [c.sector, c.version, c.status, c.kind, c.sha256, c.summary, c.test_result, c.registered_at,
            c.registered_by, c.activated_at, c.id, c.test_outcome, c.rehearsal_outcome, c.rehearsal_result]


def _version(r: Any) -> BundleVersion:
    return BundleVersion(r["sector"], r["version"], r["status"], r["kind"], r["sha256"], r["summary"],
                         r["test_result"], as_utc(r["registered_at"]), r["registered_by"],
                         as_utc(r["activated_at"]) if r["activated_at"] else None, r["id"], r["test_outcome"],
                         r["rehearsal_outcome"], r["rehearsal_result"])


def _key(sector: str, version: str) -> Any:
    return and_(bundle_versions.c.sector == sector, bundle_versions.c.version == version)


def _departments(summary: dict[str, Any]) -> set[str]:
    """The departments whose tasks a bundle takes (none named: its own; none at all if it only subscribes to case
    events)."""
    if "submit_case" not in summary["operations"]:
        return set()
    named = summary["serves"]["departments"]
    return set(named) if named else {summary["department"]["credit_code"]}


def _matters(summary: dict[str, Any]) -> frozenset[str]:
    """The matters a bundle takes in its departments (empty: all of them, department-wide)."""
    return frozenset(summary["serves"]["matters"])


def _shared_matters(mine: frozenset[str], theirs: frozenset[str]) -> frozenset[str] | None:
    """What two bundles on one department both take: None when nothing (a matter-specific bundle beside a
    department-wide one, or disjoint matters: routing tells them apart); empty when both are department-wide."""
    if not mine and not theirs:
        return frozenset()
    if not mine or not theirs:
        return None
    return (mine & theirs) or None


def _check_no_overlap(conn: Any, sector: str, version: str) -> None:
    """Two active sectors may share a department only split by matter (issue 18): refuse one that would take a
    task another already takes."""
    mine = conn.execute(select(bundle_versions.c.summary).where(_key(sector, version))).scalar_one()
    others = conn.execute(select(bundle_versions.c.sector, bundle_versions.c.summary).where(
        bundle_versions.c.status == ACTIVE, bundle_versions.c.sector != sector))
    for other, summary in sorted(others):
        shared = _departments(mine) & _departments(summary)
        matters = _shared_matters(_matters(mine), _matters(summary))
        if shared and matters is not None:
            which = f"事项 {'、'.join(sorted(matters))}" if matters else "全部事项"
            raise BundleConflict(f"{sector} 声明的部门 {sorted(shared)[0]} 的{which}已由 {other} 服务"
                                 "（同一部门可由多个适配包按事项分担：serves.matters 不得重叠）")


def _activatable(conn: Any, sector: str, version: str, *, force: bool) -> str:
    """The version's status, if it may be activated; else UnknownBundle, BundleConflict or VersionUntested.
    The active version itself passes: activating it again changes nothing."""
    status = _status(conn, sector, version)
    if status == RETIRED:
        raise BundleConflict(f"{sector} {version} 已退役")
    _check_no_overlap(conn, sector, version)
    outcome, rehearsal = conn.execute(select(bundle_versions.c.test_outcome, bundle_versions.c.rehearsal_outcome)
                                      .where(_key(sector, version))).one()
    if not force and status != ACTIVE and outcome != ACCEPTED and rehearsal != PASSED:
        raise VersionUntested(sector, version, outcome, rehearsal)
    return status


def _status(conn: Any, sector: str, version: str) -> str:
    status = conn.execute(select(bundle_versions.c.status).where(_key(sector, version))).scalar()
    if status is None:
        raise UnknownBundle(sector, version)
    return str(status)
