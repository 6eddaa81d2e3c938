"""The certificate store: named credentials and secrets, each a list of versions, sealed at rest.

A name (what a bundle references as `cert:NAME` or `vault:NAME`) belongs to one sector (None: the
gateway's own) and holds versions. A certificate version moves through
    pending (a generated key awaiting its signed certificate) → staged → current → superseded → retired
Importing into a name without a current version makes the import current at once; otherwise it is staged
and `rotate` makes it current, leaving the one before trusted for an overlap window, so an adapter that
verifies with `trusted()` switches without a failed call. A secret's new value is current at once.

Private keys and secret values are stored only as envelopes (certstore.keyring): never plaintext, never
a password-protected PEM. The store implements `CredentialSource`, with a per-process cache refreshed
every `refresh_s`, so an adapter asking for `current(name)` on every call costs no database round trip.

The rows are SQLAlchemy tables the caller hands over (`CertTables`, made on the caller's metadata by
`certstore.tables.cert_tables`), so this package imports nothing of ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

from cryptography import x509
from sqlalchemy import Connection, Engine, RowMapping, Table, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from certstore.algorithms import CryptoError
from certstore.credentials import Credential, CredentialMissing
from certstore.keyring import Envelope, MasterKeyError, MasterKeys, open_envelope, rewrap, seal_envelope
from certstore.x509 import (
    CertificateError,
    CertificateFacts,
    PrivateKey,
    Subject,
    build_csr,
    certificate_key_algorithm,
    check_pair,
    der_to_pem,
    facts,
    generate_key,
    key_algorithm,
    key_fingerprint,
    key_to_der,
    read_certificates,
    read_pkcs12,
    read_private_key,
    to_pem,
)

PENDING, STAGED, CURRENT, SUPERSEDED, RETIRED = "pending", "staged", "current", "superseded", "retired"
CERTIFICATE, SECRET = "certificate", "secret"
MAX_OVERLAP_DAYS = 3650  # an overlap longer than any certificate's life is a typing error
T = TypeVar("T")
# Most severe first: an entry that reaches several at once is warned of the worst.
EXPIRY_THRESHOLDS: tuple[tuple[str, timedelta], ...] = (
    ("expired", timedelta(0)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))


class CertStoreError(CertificateError):
    """Bad input for the store (garbage, a mismatched key, an expired certificate, …): nothing was changed."""


class CertConflict(CertStoreError):
    """The request does not fit what is stored: a name of another sector or kind, nothing to rotate to, …"""


class UnknownEntry(LookupError):
    """No such name (or version) in the store."""


class SealedValueUnavailable(RuntimeError):
    """A stored envelope does not open with the configured master keys (a wrong or missing master key)."""


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class CertTables:
    """The three tables the store works on (columns as `certstore.tables.cert_tables` defines them)."""

    names: Table
    versions: Table
    warnings: Table


@dataclass(frozen=True)
class StoredVersion:
    """One version as people see it: never the private key or the secret value."""

    name: str
    sector: str | None
    kind: str
    version: int
    status: str
    has_private_key: bool
    key_algorithm: str | None
    facts: CertificateFacts | None
    trusted_until: datetime | None
    created_at: datetime
    created_by: str
    master_key_id: str | None
    csr_pem: str | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        shown = {"name": self.name, "sector": self.sector, "kind": self.kind, "version": self.version,
                 "status": self.status, "has_private_key": self.has_private_key,
                 "key_algorithm": self.key_algorithm, "trusted_until": _iso(self.trusted_until),
                 "created_at": _iso(self.created_at), "created_by": self.created_by,
                 "master_key_id": self.master_key_id}
        if self.facts is not None:
            f = self.facts
            shown.update(subject=f.subject, issuer=f.issuer, serial=f.serial, not_before=_iso(f.not_before),
                         not_after=_iso(f.not_after), sha256=f.sha256, sm3=f.sm3)
        return shown


@dataclass(frozen=True)
class ExpiryWarning:
    name: str
    sector: str | None
    version: int
    threshold: str  # 30d | 7d | expired
    not_after: datetime
    subject: str


@dataclass(frozen=True)
class _Usable:
    """A cached current or superseded version: the credential, and until when it is trusted."""

    credential: Credential
    status: str
    trusted_until: datetime | None


class CertStore:
    def __init__(self, engine: Engine, tables: CertTables, keys: MasterKeys, clock: Clock, *,
                 overlap: timedelta = timedelta(days=7), refresh_s: float = 2.0, cipher: str = "aes-256-gcm",
                 read_options: Mapping[str, Any] | None = None) -> None:
        self.engine = engine
        self.t = tables
        self.keys = keys
        self.clock = clock
        self.overlap = overlap
        self.refresh_s = refresh_s
        self.cipher = cipher
        self._read_options = dict(read_options or {})  # e.g. the gateway's "read-only: deferred BEGIN" flag
        self._cache: dict[str, tuple[float, list[_Usable]]] = {}
        self._secrets: dict[str, tuple[float, str]] = {}

    # -- reading ---------------------------------------------------------------------------------
    def versions(self, name: str | None = None) -> list[StoredVersion]:
        """Every version (of `name`, or of all names), by name and version number."""
        query = self._joined().order_by(self.t.versions.c.name, self.t.versions.c.version)
        if name is not None:
            query = query.where(self.t.versions.c.name == name)
        with self._reading() as conn:
            found = [_stored(r) for r in conn.execute(query).mappings()]
        if name is not None and not found:
            raise UnknownEntry(f"no certificate or secret named {name!r}")
        return found

    def owner(self, name: str) -> str | None:
        """The sector that owns `name` (None: the gateway's own); `UnknownEntry` if there is no such name."""
        with self._reading() as conn:
            row = conn.execute(select(self.t.names.c.sector).where(self.t.names.c.name == name)).first()
        if row is None:
            raise UnknownEntry(f"no certificate or secret named {name!r}")
        return cast(str | None, row.sector)

    # -- certificates in ---------------------------------------------------------------------------
    def import_pem(self, name: str, certificate_pem: bytes, key_pem: bytes | None = None, *,
                   password: bytes | None = None, sector: str | None = None, actor: str) -> StoredVersion:
        """A certificate (leaf first, then any chain) with its private key, or alone: to trust, or to
        complete a key generated by `request`."""
        certificates = read_certificates(certificate_pem)
        key = read_private_key(key_pem, password) if key_pem else None
        return self._add_certificate(name, sector, certificates, key, actor)

    def import_pkcs12(self, name: str, data: bytes, password: bytes | None, *, sector: str | None = None,
                      actor: str) -> StoredVersion:
        key, certificates = read_pkcs12(data, password)
        return self._add_certificate(name, sector, certificates, key, actor)

    def request(self, name: str, subject: Subject, algorithm: str = "rsa-2048", *, sector: str | None = None,
                actor: str) -> tuple[StoredVersion, bytes]:
        """Generate a key (kept here, sealed) and its CSR for a sector's onboarding; returns the CSR PEM.
        Importing the signed certificate later finds this key by its public key."""
        key = generate_key(algorithm)
        csr = build_csr(key, subject)
        row = {"status": PENDING, "csr_pem": csr.decode(), "key_algorithm": algorithm,
               "public_key_sha256": key_fingerprint(key)}
        with self.engine.begin() as conn:
            self._claim(conn, name, sector, CERTIFICATE, actor)
            version = self._insert(conn, name, row, actor, sealed=key_to_der(key))
        return self._get(name, version), csr

    def _add_certificate(self, name: str, sector: str | None, certificates: list[x509.Certificate],
                         key: PrivateKey | None, actor: str) -> StoredVersion:
        leaf = facts(certificates[0])
        if leaf.not_after <= self.clock.now():
            raise CertStoreError(f"the certificate expired on {leaf.not_after.isoformat()} ({leaf.subject})")
        if key is not None:
            key = check_pair(certificates[0], key)
        described = {"certificate_pem": to_pem(certificates).decode(), "subject": leaf.subject,
                     "issuer": leaf.issuer, "serial": leaf.serial, "not_before": leaf.not_before,
                     "not_after": leaf.not_after, "sha256": leaf.sha256, "sm3": leaf.sm3,
                     "public_key_sha256": leaf.public_key_sha256,
                     "key_algorithm": key_algorithm(key) if key else certificate_key_algorithm(certificates[0])}
        with self.engine.begin() as conn:
            self._claim(conn, name, sector, CERTIFICATE, actor)
            self._refuse_duplicate(conn, name, leaf)
            described["status"] = STAGED if self._current_id(conn, name) is not None else CURRENT
            pending = self._pending(conn, name)
            if key is None and pending:
                version = self._complete(conn, name, pending, leaf, described, actor)
            else:
                sealed = key_to_der(key) if key is not None else None
                version = self._insert(conn, name, described, actor, sealed=sealed)
        self._forget(name)
        return self._get(name, version)

    def _complete(self, conn: Connection, name: str, pending: Mapping[str, int], leaf: CertificateFacts,
                  described: dict[str, Any], actor: str) -> int:
        """The signed certificate for a key generated here: it takes that pending version."""
        version = pending.get(leaf.public_key_sha256)
        if version is None:
            raise CertStoreError(f"the certificate's public key matches none of the keys awaiting a certificate "
                                 f"under {name!r} (versions {', '.join(map(str, sorted(pending.values())))})")
        conn.execute(update(self.t.versions).where(self._version_key(name, version))
                     .values(**described, changed_at=self.clock.now(), changed_by=actor))
        return version

    # -- secrets --------------------------------------------------------------------------------
    def set_secret(self, name: str, value: str, *, sector: str | None = None, actor: str) -> StoredVersion:
        """A bundle secret (`vault:NAME`): the new value is current at once; the one before is retired."""
        if not value:
            raise CertStoreError("a secret's value may not be empty")
        with self.engine.begin() as conn:
            self._claim(conn, name, sector, SECRET, actor)
            conn.execute(update(self.t.versions).where(self._of(name, CURRENT))
                         .values(status=RETIRED, changed_at=self.clock.now(), changed_by=actor))
            version = self._insert(conn, name, {"status": CURRENT}, actor, sealed=value.encode())
        self._secrets.pop(name, None)
        return self._get(name, version)

    def secret(self, name: str) -> str:
        """The current value of a secret (cached for `refresh_s`); `CredentialMissing` if there is none."""
        hit = self._secrets.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.refresh_s:
            return hit[1]
        row = self._current_sealed(name, SECRET)
        value = self._open(row).decode()
        self._secrets[name] = (time.monotonic(), value)
        return value

    # -- lifecycle --------------------------------------------------------------------------------
    def rotate(self, name: str, actor: str, overlap: timedelta | None = None) -> StoredVersion:
        """Make the newest staged version current; the previous current stays trusted for `overlap`."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            staged = conn.execute(select(func.max(self.t.versions.c.version))
                                  .where(self._of(name, STAGED))).scalar()
            if staged is None:
                self._known(conn, name)
                raise CertConflict(f"{name!r} has no staged version to rotate to: import the new certificate first")
            until = now + (self.overlap if overlap is None else overlap)
            conn.execute(update(self.t.versions).where(self._of(name, CURRENT))
                         .values(status=SUPERSEDED, trusted_until=until, changed_at=now, changed_by=actor))
            conn.execute(update(self.t.versions).where(self._version_key(name, staged))
                         .values(status=CURRENT, changed_at=now, changed_by=actor))
        self._forget(name)
        return self._get(name, staged)

    def retire(self, name: str, actor: str, version: int | None = None) -> list[StoredVersion]:
        """Retire one version (not the current one: rotate first), or with no version the whole name."""
        with self.engine.begin() as conn:
            self._known(conn, name)
            which = self.t.versions.c.name == name
            if version is not None:
                status = conn.execute(select(self.t.versions.c.status)
                                      .where(self._version_key(name, version))).scalar()
                if status is None:
                    raise UnknownEntry(f"{name!r} has no version {version}")
                if status == CURRENT:
                    raise CertConflict(f"{name!r} version {version} is current: rotate to another version first, "
                                       "or retire the whole name")
                which = self._version_key(name, version)
            conn.execute(update(self.t.versions).where(which, self.t.versions.c.status != RETIRED)
                         .values(status=RETIRED, changed_at=self.clock.now(), changed_by=actor))
        self._forget(name)
        self._secrets.pop(name, None)
        return self.versions(name)

    def rewrap(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every envelope not under the current master key (after a master-key rotation); how many.
        Only the data keys are re-encrypted; once it has run, the old master key can leave the ring.
        `progress(done, total)` is told after each one."""
        sealed = self.t.versions.c.sealed
        query = select(self.t.versions.c.id, self.t.versions.c.name, self.t.versions.c.version, sealed).where(
            sealed.is_not(None), self.t.versions.c.master_key_id != self.keys.current_id)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
            for done, row in enumerate(rows, 1):
                moved = self._guarded(row, lambda r: rewrap(self.keys, Envelope.from_text(r.sealed)))
                conn.execute(update(self.t.versions).where(self.t.versions.c.id == row.id)
                             .values(sealed=moved.to_text(), master_key_id=moved.key_id))
                if progress is not None:
                    progress(done, len(rows))
        return len(rows)

    # -- expiry ---------------------------------------------------------------------------------
    def expiries(self) -> list[tuple[str, str | None, datetime]]:
        """(name, sector, not_after) of every current certificate: what the expiry gauge shows."""
        v = self.t.versions.c
        query = (select(v.name, self.t.names.c.sector, v.not_after).join(self.t.names, self.t.names.c.name == v.name)
                 .where(v.status == CURRENT, v.not_after.is_not(None)).order_by(v.name))
        with self._reading() as conn:
            return [(r.name, r.sector, _utc(r.not_after)) for r in conn.execute(query)]

    def check_expiry(self) -> list[ExpiryWarning]:
        """Warnings newly due for current certificates, at most one per certificate per threshold ever (the
        rows in the warnings table make that hold across processes and restarts)."""
        now = self.clock.now()
        v = self.t.versions.c
        query = (select(v.id, v.name, v.version, v.not_after, v.subject, self.t.names.c.sector)
                 .join(self.t.names, self.t.names.c.name == v.name)
                 .where(v.status == CURRENT, v.not_after.is_not(None), v.not_after <= now + EXPIRY_THRESHOLDS[-1][1]))
        with self._reading() as conn:
            due = conn.execute(query).all()
            emitted = select(self.t.warnings).where(self.t.warnings.c.version_id.in_([r.id for r in due]))
            done = {(r.version_id, r.threshold) for r in conn.execute(emitted)} if due else set()
        warnings = []
        for row in due:
            reached = [t for t, before in EXPIRY_THRESHOLDS if _utc(row.not_after) - now <= before]
            new = [t for t in reached if (row.id, t) not in done and self._record_warning(row.id, t, now)]
            if new:
                warnings.append(ExpiryWarning(row.name, row.sector, row.version, new[0], _utc(row.not_after),
                                              row.subject))
        return warnings

    def _record_warning(self, version_id: int, threshold: str, now: datetime) -> bool:
        """Whether this process is the one that records (and so emits) it."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(self.t.warnings).values(version_id=version_id, threshold=threshold,
                                                            emitted_at=now))
        except IntegrityError:
            return False  # another process emitted it first
        return True

    # -- CredentialSource ---------------------------------------------------------------------------
    def current(self, name: str) -> Credential:
        for usable in self._usable(name):
            if usable.status == CURRENT:
                return usable.credential
        raise CredentialMissing(f"no current certificate named {name!r}")

    def trusted(self, name: str) -> Sequence[Credential]:
        """The current certificate first, then those still in their rotation overlap window."""
        now = self.clock.now()
        return tuple(u.credential for u in self._usable(name)
                     if u.status == CURRENT or (u.trusted_until is not None and now < u.trusted_until))

    def _usable(self, name: str) -> list[_Usable]:
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.refresh_s:
            return hit[1]
        v = self.t.versions.c
        query = (select(v.name, v.version, v.status, v.certificate_pem, v.sealed, v.trusted_until)
                 .where(v.name == name, v.status.in_((CURRENT, SUPERSEDED)), v.certificate_pem.is_not(None))
                 .order_by(v.status == SUPERSEDED, v.version.desc()))  # current first, then newest
        with self._reading() as conn:
            rows = conn.execute(query).all()
        usable = [_Usable(Credential(name, r.certificate_pem.encode(),
                                     der_to_pem(self._open(r)) if r.sealed else None),
                          r.status, _utc(r.trusted_until) if r.trusted_until else None) for r in rows]
        self._cache[name] = (time.monotonic(), usable)
        return usable

    def _forget(self, name: str) -> None:
        """This process sees its own change at once; others within `refresh_s`."""
        self._cache.pop(name, None)

    # -- helpers --------------------------------------------------------------------------------
    def _claim(self, conn: Connection, name: str, sector: str | None, kind: str, actor: str) -> None:
        """The name for this sector and kind: taken now if new, refused if another sector's or kind's."""
        if not name or len(name) > 128 or any(c.isspace() or c == ":" for c in name):
            raise CertStoreError(f"invalid name {name!r}: up to 128 characters, no spaces or colons")
        row = conn.execute(select(self.t.names).where(self.t.names.c.name == name)).mappings().first()
        if row is None:
            conn.execute(insert(self.t.names).values(name=name, sector=sector, kind=kind,
                                                     created_at=self.clock.now(), created_by=actor))
        elif row["sector"] != sector:
            raise CertConflict(f"{name!r} belongs to {_owner(row['sector'])}, not to {_owner(sector)}")
        elif row["kind"] != kind:
            raise CertConflict(f"{name!r} holds a {row['kind']}, not a {kind}")

    def _known(self, conn: Connection, name: str) -> None:
        if conn.execute(select(self.t.names.c.name).where(self.t.names.c.name == name)).first() is None:
            raise UnknownEntry(f"no certificate or secret named {name!r}")

    def _refuse_duplicate(self, conn: Connection, name: str, leaf: CertificateFacts) -> None:
        version = conn.execute(select(self.t.versions.c.version).where(
            self.t.versions.c.name == name, self.t.versions.c.sha256 == leaf.sha256,
            self.t.versions.c.status != RETIRED)).scalar()
        if version is not None:
            raise CertConflict(f"this certificate is already {name!r} version {version}")

    def _pending(self, conn: Connection, name: str) -> dict[str, int]:
        """public-key fingerprint → version, of the keys under `name` awaiting their certificate."""
        rows = conn.execute(select(self.t.versions.c.public_key_sha256, self.t.versions.c.version)
                            .where(self._of(name, PENDING)))
        return {r.public_key_sha256: r.version for r in rows}

    def _current_id(self, conn: Connection, name: str) -> int | None:
        return conn.execute(select(self.t.versions.c.id).where(self._of(name, CURRENT))).scalar()

    def _insert(self, conn: Connection, name: str, row: dict[str, Any], actor: str, *,
                sealed: bytes | None) -> int:
        version = (conn.execute(select(func.max(self.t.versions.c.version))
                                .where(self.t.versions.c.name == name)).scalar() or 0) + 1
        if sealed is not None:
            envelope = seal_envelope(self.keys, sealed, _aad(name, version), self.cipher)
            row = {**row, "sealed": envelope.to_text(), "master_key_id": envelope.key_id}
        try:
            conn.execute(insert(self.t.versions).values(name=name, version=version, created_at=self.clock.now(),
                                                        created_by=actor, **row))
        except IntegrityError as exc:
            raise CertConflict(f"{name!r} was changed at the same moment by someone else: try again") from exc
        return version

    def _current_sealed(self, name: str, kind: str) -> Any:
        v = self.t.versions.c
        with self._reading() as conn:
            row = conn.execute(select(v.name, v.version, v.sealed).join(self.t.names, self.t.names.c.name == v.name)
                               .where(v.name == name, v.status == CURRENT, self.t.names.c.kind == kind)).first()
        if row is None:
            raise CredentialMissing(f"no current {kind} named {name!r}")
        return row

    def _open(self, row: Any) -> bytes:
        return self._guarded(row, lambda r: open_envelope(self.keys, Envelope.from_text(r.sealed),
                                                          _aad(r.name, r.version)))

    @staticmethod
    def _guarded(row: Any, step: Callable[[Any], T]) -> T:
        try:
            return step(row)
        except (CryptoError, MasterKeyError) as exc:
            raise SealedValueUnavailable(f"{row.name!r} version {row.version}: the sealed value does not open with "
                                         f"the configured master keys ({exc})") from exc

    def _get(self, name: str, version: int) -> StoredVersion:
        with self._reading() as conn:
            row = conn.execute(self._joined().where(self._version_key(name, version))).mappings().one()
        return _stored(row)

    def _joined(self) -> Any:
        return select(self.t.versions, self.t.names.c.sector, self.t.names.c.kind).join(
            self.t.names, self.t.names.c.name == self.t.versions.c.name)

    def _of(self, name: str, status: str) -> Any:
        return and_(self.t.versions.c.name == name, self.t.versions.c.status == status)

    def _version_key(self, name: str, version: int) -> Any:
        return and_(self.t.versions.c.name == name, self.t.versions.c.version == version)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(**self._read_options)
            with conn.begin():
                yield conn


def _stored(row: RowMapping) -> StoredVersion:
    described = None
    if row["certificate_pem"]:
        described = CertificateFacts(row["subject"], row["issuer"], row["serial"], _utc(row["not_before"]),
                                     _utc(row["not_after"]), row["sha256"], row["sm3"], row["public_key_sha256"])
    return StoredVersion(
        name=row["name"], sector=row["sector"], kind=row["kind"], version=row["version"], status=row["status"],
        has_private_key=row["kind"] == CERTIFICATE and row["sealed"] is not None,
        key_algorithm=row["key_algorithm"], facts=described,
        trusted_until=_utc(row["trusted_until"]) if row["trusted_until"] else None,
        created_at=_utc(row["created_at"]), created_by=row["created_by"], master_key_id=row["master_key_id"],
        csr_pem=row["csr_pem"])


def _aad(name: str, version: int) -> bytes:
    """Binds an envelope to its row: copied into another name or version, it does not open."""
    return f"yiwang certstore {name} {version}".encode()


def _owner(sector: str | None) -> str:
    return f"sector {sector!r}" if sector else "the gateway itself"


def _utc(instant: datetime) -> datetime:
    """Instants read back from SQLite are naive UTC."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant else None
