"""This process's view of the active bundles: ready adapters, refreshed from the database.

Every process (API or worker) keeps the adapters of the active bundle versions. `get`, `route` and the
other readers first refresh when the view is older than `refresh_s`: one cheap query of (sector, version,
sha256) rows; only a changed row costs an unpack and an adapter build. So an activation reaches a process
within `refresh_s` of its next use, with no restart. A delivery that already holds an adapter finishes on
it: in-flight messages end on the version they started with.

`get_version` serves a replay pinned to the version a message died with (`outbox.bundle_version`): any
registered, not retired version, built on first use and kept for the life of the process.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from adapters import Bundle, RegisteredAdapter, carried_bundle, load_bundle, unpack_bundle
from gateway.persistence.bundle_tables import RETIRED
from gateway.sectors.bundle_records import BundleStore, UnknownBundle

log = structlog.get_logger("yiwang.registry")
Builder = Callable[[Bundle], RegisteredAdapter]


class NoActiveAdapter(LookupError):
    """No active bundle version for this sector (never registered, or not activated)."""


class UnknownVersion(LookupError):
    """The version a replay is pinned to is not (or no longer) registered for the sector."""


@dataclass(frozen=True)
class _Entry:
    version: str
    sha256: str
    registered: RegisteredAdapter


class LiveRegistry:
    def __init__(self, store: BundleStore, cache_dir: Path, build: Builder, refresh_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._cache_dir = cache_dir
        self._build = build
        self._refresh_s = refresh_s
        self._clock = clock
        self._entries: Mapping[str, _Entry] = {}
        self._broken: dict[str, tuple[str, str]] = {}  # sector -> (version, why it cannot be built here)
        self._pinned: dict[tuple[str, str], RegisteredAdapter] = {}  # (sector, version) -> a non-active one
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    # -- readers -------------------------------------------------------------------------------------
    def get(self, sector: str) -> RegisteredAdapter:
        entry = self._current().get(sector)
        if entry is None:
            broken = self._broken.get(sector)
            why = f"（{broken[0]} 版无法在此构建：{broken[1]}）" if broken else ""
            raise NoActiveAdapter(f"部门 {sector} 没有启用的适配包{why}")
        return entry.registered

    def get_version(self, sector: str, version: str) -> RegisteredAdapter:
        """The adapter of this registered version, active or not (a replay with the original mapping)."""
        entry = self._current().get(sector)
        if entry is not None and entry.version == version:
            return entry.registered
        with self._lock:
            pinned = self._pinned.get((sector, version))
            if pinned is None:
                try:
                    found = self._store.get(sector, version)
                except UnknownBundle as exc:
                    raise UnknownVersion(f"{sector} has no registered bundle version {version!r}") from exc
                if found.status == RETIRED:
                    raise UnknownVersion(f"{sector} bundle version {version!r} is retired")
                pinned = self._build(self._unpacked(sector, version, found.sha256))
                self._pinned[(sector, version)] = pinned
        return pinned

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(sorted(self._current()))

    def route(self, matter_code: str, credit_code: str) -> str | None:
        """The sector whose active bundle takes this department's task of this matter, if any.

        A bundle takes only departments it names (none named: its own department); `matters`, when given,
        narrows that to those matters. A bundle naming the matter wins over a department-wide one (one bureau's
        systems split by matter); activation refuses two that would both take one task, and ties (none after
        that check) go to the first sector by name.
        """
        takers = [(not entry.registered.bundle.serves.matters, sector)
                  for sector, entry in self._current().items()
                  if serves_task(entry.registered.bundle, matter_code, credit_code)]
        return min(takers)[1] if takers else None

    def subscribers(self, event: str) -> tuple[str, ...]:
        """The sectors whose active bundle subscribes to this case event (`subscriptions:`), by name."""
        return tuple(sector for sector, entry in sorted(self._current().items())
                     if event in entry.registered.bundle.subscriptions)

    def sector_for_query(self, name: str) -> str | None:
        for sector, entry in sorted(self._current().items()):
            if name in entry.registered.bundle.queries:
                return sector
        return None

    def sector_behind_a_gap(self, name: str) -> str | None:
        """The sector whose active bundle carries one declaring query `name` (a ferry's): no synchronous path
        crosses its gap, so the query cannot be asked."""
        for sector, entry in sorted(self._current().items()):
            carried = carried_bundle(entry.registered.bundle)
            if carried is not None and name in carried.queries:
                return sector
        return None

    def health(self) -> dict[str, Any]:
        healthy = {sector: {"version": e.version, **e.registered.health_snapshot()}
                   for sector, e in self._current().items()}
        broken = {sector: {"version": version, "error": error} for sector, (version, error) in self._broken.items()}
        return dict(sorted({**healthy, **broken}.items()))

    # -- refreshing ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the view in line with the database now."""
        with self._lock:
            self._reload()

    def _current(self) -> Mapping[str, _Entry]:
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh_s:
            with self._lock:
                if self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh_s:
                    self._reload()
        return self._entries

    def _reload(self) -> None:
        active = {sector: (version, sha) for sector, version, sha in self._store.active()}
        entries = dict(self._entries)
        for sector in set(entries) - set(active):
            gone = entries.pop(sector)
            log.info("bundle deactivated", sector=sector, version=gone.version)
            _close_later(gone.registered)
        broken: dict[str, tuple[str, str]] = {}
        for sector, (version, sha) in active.items():
            known = entries.get(sector)
            if known is not None and known.sha256 == sha:
                continue
            try:
                entries[sector] = _Entry(version, sha, self._build(self._unpacked(sector, version, sha)))
                if known is not None:
                    _close_later(known.registered)
            except Exception as exc:  # one sector that cannot be built here (a missing secret…) spoils no other
                entries.pop(sector, None)
                broken[sector] = (version, str(exc))
                log.error("bundle cannot be built", sector=sector, version=version, error=str(exc))
                continue
            log.info("bundle active", sector=sector, version=version)
        self._broken = broken
        self._entries = entries  # one assignment: readers see the old view or the new, never half
        self._loaded_at = self._clock()

    def _unpacked(self, sector: str, version: str, sha: str) -> Bundle:
        """Unpack once per process and machine; a folder named by content is never stale."""
        folder = self._cache_dir / sector / f"{_safe(version)}-{sha[:16]}"
        if not folder.exists():
            staging = folder.with_name(f".{folder.name}.{os.getpid()}.{threading.get_ident()}")
            unpack_bundle(self._store.archive(sector, version), staging)
            try:
                staging.rename(folder)
            except OSError:  # another process unpacked the same content first
                shutil.rmtree(staging, ignore_errors=True)
        # A zip may hold the bundle in a top folder of its own.
        return load_bundle(next(folder.rglob("bundle.yaml")).parent)


CLOSE_AFTER_S = 120.0  # longer than any delivery holding the old adapter can still take


def _close_later(registered: RegisteredAdapter) -> None:
    """Release a replaced adapter's connections once the deliveries that hold it have finished."""
    close = getattr(registered.adapter, "close", None)
    if callable(close):
        timer = threading.Timer(CLOSE_AFTER_S, close)
        timer.daemon = True
        timer.start()


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in version)


def serves_task(bundle: Bundle, matter_code: str, credit_code: str) -> bool:
    if not bundle.takes_cases:  # it only subscribes to case events
        return False
    departments = bundle.serves.departments or (bundle.department.credit_code,)
    return credit_code in departments and (not bundle.serves.matters or matter_code in bundle.serves.matters)
