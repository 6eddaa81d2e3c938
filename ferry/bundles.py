"""The sector bundles installed on the agent, and the adapters built from them.

A bundle arrives only as a `control` entry of a batch the station opened — signed by the near side's key the
operator imported by hand — and is installed with the adapters' own checks: unpacked safely
(`adapters.unpack_bundle`), read and validated in full (`validate_bundle`), and refused unless it is a SOAP or REST
bundle (the agent talks to its sector directly; a ferry inside a ferry has no far side) and is what the entry
says (sector, version). A version is immutable: the same version with other content is refused. Per sector, the
bundle carried by the later batch is active, whatever order batches arrived in (sequence numbers, never clocks).
The archives live in the agent's state; each process unpacks the ones it uses into a folder of its own.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, insert, select, update

from adapters import BundleError, RegisteredAdapter, build_adapter, load_bundle, unpack_bundle, validate_bundle
from certstore import CredentialSource
from ferry.tables import AgentTables, utc

DIRECT_KINDS = ("soap", "rest")
log = structlog.get_logger("ferry.bundles")


class BundleRefused(ValueError):
    """A bundle the agent will not install: the reason says why, for the log and `yiwang ferry state`."""


@dataclass(frozen=True)
class InstalledBundle:
    sector: str
    version: str
    sha256: str
    batch_seq: int
    installed_at: datetime
    active: bool
    problem: str | None


class Bundles:
    def __init__(self, engine: Engine, tables: AgentTables, credentials: CredentialSource,
                 endpoint: str | None = None) -> None:
        self.engine = engine
        self.t = tables.bundles
        self.credentials = credentials  # `cert:` references of a bundle: the agent's certificate store
        self.endpoint = endpoint  # the configuration's override of every bundle's own endpoint
        self._folder = Path(tempfile.mkdtemp(prefix="yiwang-ferry-bundles-"))
        self._adapters: dict[tuple[str, str, str], RegisteredAdapter] = {}

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def install(self, sector: str, version: str, archive: bytes, batch_seq: int, now: datetime) -> InstalledBundle:
        """Check and store the bundle; active unless a later batch's bundle of the sector is. A refused one is
        stored too (inactive, with its reason) and `BundleRefused` raised."""
        sha256 = hashlib.sha256(archive).hexdigest()
        with self.engine.begin() as conn:
            known = conn.execute(select(self.t).where(self.t.c.sector == sector, self.t.c.version == version)
                                 ).mappings().first()
        if known is not None and known["problem"] is None and known["sha256"] != sha256:
            raise BundleRefused(f"{sector} {version} is installed already with other content: a version never "
                                "changes, send a new one")
        problem = None if known is not None and known["sha256"] == sha256 else self._problem(sector, version, archive)
        with self.engine.begin() as conn:
            if known is None:
                conn.execute(insert(self.t).values(sector=sector, version=version, archive=archive, sha256=sha256,
                                                   batch_seq=batch_seq, installed_at=now, active=False,
                                                   problem=problem))
            elif known["problem"] is not None or batch_seq > known["batch_seq"]:
                # refused before: this copy is judged afresh; the same one sent again: a rollback to it
                conn.execute(update(self.t).where(self.t.c.sector == sector, self.t.c.version == version)
                             .values(archive=archive, sha256=sha256, batch_seq=max(batch_seq, known["batch_seq"]),
                                     installed_at=now, problem=problem))
            if problem is None:
                self._activate_latest(conn, sector, version, batch_seq)
        if problem is not None:
            raise BundleRefused(problem)
        return next(b for b in self.listed() if (b.sector, b.version) == (sector, version))

    def _activate_latest(self, conn: Any, sector: str, version: str, batch_seq: int) -> None:
        active = conn.execute(select(self.t.c.version, self.t.c.batch_seq)
                              .where(self.t.c.sector == sector, self.t.c.active)).first()
        if active is not None and active.batch_seq > batch_seq:
            return  # a bundle carried later is active already: this one came late
        conn.execute(update(self.t).where(self.t.c.sector == sector).values(active=self.t.c.version == version))
        if active is None or active.version != version:
            log.info("bundle active", sector=sector, version=version, batch_seq=batch_seq)

    def _problem(self, sector: str, version: str, archive: bytes) -> str | None:
        """Why the archive cannot be installed as `sector` `version`, or None."""
        with tempfile.TemporaryDirectory(prefix="yiwang-ferry-check-") as scratch:
            try:
                bundle = load_bundle(unpack_bundle(archive, Path(scratch) / "bundle"))
            except BundleError as exc:
                return f"not a readable bundle: {exc}"
            if bundle.kind not in DIRECT_KINDS:
                return f"a {bundle.kind} bundle: the agent delivers with {' or '.join(DIRECT_KINDS)} bundles only"
            if (bundle.sector, bundle.version) != (sector, version):
                return (f"the control entry says {sector} {version}, the bundle is {bundle.sector} "
                        f"{bundle.version}")
            problems = validate_bundle(bundle)
            return "; ".join(str(p) for p in problems) if problems else None

    def adapter(self, sector: str) -> RegisteredAdapter | None:
        """The active bundle's adapter for `sector`, built once per version (None: nothing installed)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(self.t.c.version, self.t.c.sha256, self.t.c.archive)
                               .where(self.t.c.sector == sector, self.t.c.active)).first()
        if row is None:
            return None
        known = (sector, row.version, row.sha256)
        if known not in self._adapters:
            folder = unpack_bundle(row.archive, self._folder / sector / f"{row.version}-{row.sha256[:12]}")
            self._adapters[known] = build_adapter(load_bundle(folder), endpoint=self.endpoint,
                                                  credentials=self.credentials)
        return self._adapters[known]

    def only_sector(self) -> str | None:
        """The one sector with an active bundle, if there is exactly one (a message that names none is for it)."""
        with self.engine.begin() as conn:
            sectors = conn.execute(select(self.t.c.sector).where(self.t.c.active)).scalars().all()
        return sectors[0] if len(sectors) == 1 else None

    def listed(self) -> list[InstalledBundle]:
        with self.engine.begin() as conn:
            rows = conn.execute(select(self.t).order_by(self.t.c.sector, self.t.c.batch_seq)).mappings().all()
        return [InstalledBundle(r["sector"], r["version"], r["sha256"], r["batch_seq"], _utc(r["installed_at"]),
                                bool(r["active"]), r["problem"]) for r in rows]


def _utc(value: datetime) -> datetime:
    found = utc(value)
    assert found is not None  # installed_at is NOT NULL
    return found
