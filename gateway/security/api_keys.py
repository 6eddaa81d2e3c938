"""API keys and the identities holding them: issue, revoke, list, and authenticate without a query.

`ApiKeyStore` is the production `KeyStore` (`gateway.domain.roles`). It keeps every active identity in memory,
keyed by the SHA-256 of its key, so a request costs a hash and a dict lookup. The map is reloaded
(one query) when older than `refresh_s`, and — rate-limited — when a key is missing from it, since
another process may have issued that key a moment ago. Changes made through this instance update the
map at once; changes made by other processes are seen within `refresh_s`.

Separation of duties (`gateway.domain.roles.DUTIES`) is checked when an identity is issued or changed, and
again when the map is loaded: a row that somehow holds two duties (written by hand, or by an older
version) authenticates as nobody.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Connection, Engine, RowMapping, insert, select, update

from gateway.domain.clock import Clock, SystemClock, as_utc, beijing_text
from gateway.domain.codes import is_valid_credit_code
from gateway.domain.roles import Identity, Role, separation_breach
from gateway.domain.text import UndeliverableText, typed_text
from gateway.persistence.identity_tables import console_sessions, identities
from gateway.persistence.uow import UnitsOfWork

KEY_PREFIX = "yw_"
CERT_ENTRY = "cert:"  # the in-memory map holds bound certificates as "cert:" + fingerprint
KEY_PREFIX_SHOWN = 10  # characters of the raw key kept for display ("yw_" + 7)
MISS_RELOAD_S = 1.0
log = structlog.get_logger("yiwang.identities")


class IdentityError(ValueError):
    """A request to issue, change or revoke that breaks a rule; the message is meant for people."""


class SeparationOfDuties(IdentityError):
    """The roles would give one identity two of the system, security and audit duties."""


class UnknownIdentity(IdentityError, LookupError):
    """No identity has that id."""


class AlreadyRevoked(IdentityError):
    """The identity's key was revoked before."""


@dataclass(frozen=True)
class IssuedIdentity:
    """An identity as administrators see it: never the key or its hash, only the key's first characters."""

    identity: Identity
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(raw_key: str) -> str:
    # A plain, unsalted SHA-256 is right here: keys are 256 random bits from `secrets`, so there is no
    # dictionary to precompute and no brute force to slow down — salts and slow hashes (bcrypt,
    # argon2) defend low-entropy passwords. Being deterministic, the hash is also the lookup key.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_role(text: str | Role) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise IdentityError(f"没有角色 {text}；角色有：{'、'.join(Role)}") from None


def _checked_roles(roles: Iterable[Role | str], department: str | None, sector: str | None) -> frozenset[Role]:
    """The rules an identity's roles and scope obey; the first broken one raises IdentityError."""
    checked = frozenset(parse_role(r) for r in roles)
    if not checked:
        raise IdentityError("身份至少需要一个角色")
    if (breach := separation_breach(checked)) is not None:
        raise SeparationOfDuties(breach)
    _check_scope(checked, Role.CLERK, "department", department)
    _check_scope(checked, Role.SECTOR_ADMIN, "sector", sector)
    if department is not None and not is_valid_credit_code(department):
        raise IdentityError(f"department {department} 不是有效的统一社会信用代码（GB 32100）")
    return checked


def _check_scope(roles: frozenset[Role], role: Role, scope: str, value: str | None) -> None:
    """A scoped role needs its scope, and a scope means nothing without its role."""
    if role in roles and not value:
        raise IdentityError(f"{role} 角色须指定 {scope}")
    if role not in roles and value is not None:
        raise IdentityError(f"只有 {role} 角色可以指定 {scope}")


def _admissible(identity: Identity) -> bool:
    """Defence in depth: an identity row holding two duties is denied, however it got into the table."""
    breach = separation_breach(identity.roles)
    if breach is not None:
        log.warning("identity denied", identity=identity.id, reason=breach)
    return breach is None


def _entries(row: RowMapping) -> tuple[str, ...]:
    """What the in-memory map finds an identity row by: its key's hash, and its bound certificate."""
    fingerprint = row.get("cert_fingerprint")
    return (row["key_hash"], CERT_ENTRY + fingerprint) if fingerprint else (row["key_hash"],)


def _identity_from_row(row: RowMapping) -> Identity:
    return Identity(
        id=row["id"],
        name=row["name"],
        roles=frozenset(Role(r) for r in row["roles"]),
        department=row["department"],
        sector=row["sector"],
    )


def _issued_from_row(row: RowMapping) -> IssuedIdentity:
    revoked_at = row["revoked_at"]
    return IssuedIdentity(
        identity=_identity_from_row(row),
        key_prefix=row["key_prefix"],
        created_at=as_utc(row["created_at"]),
        revoked_at=as_utc(revoked_at) if revoked_at is not None else None,
    )


class ApiKeyStore:
    def __init__(
        self,
        engine: Engine,
        refresh_s: float = 5.0,
        *,
        miss_reload_s: float = MISS_RELOAD_S,
        clock: Clock | None = None,
        timer: Callable[[], float] = time.monotonic,  # tests pass a hand-moved one
    ) -> None:
        self._units = UnitsOfWork(engine)  # one unit of work per change or read, committed explicitly
        self._refresh_s = refresh_s
        self._miss_reload_s = miss_reload_s
        self._clock = clock or SystemClock()
        self._timer = timer
        self._lock = threading.Lock()
        # Replaced or changed only under the lock; readers take the reference without it.
        self._by_hash: dict[str, Identity] = {}
        self._loaded_at = float("-inf")  # nothing loaded: the first use loads

    # --- the KeyStore protocol -------------------------------------------------------------------

    def authenticate(self, raw_key: str) -> Identity | None:
        if not raw_key.startswith(KEY_PREFIX):  # not one of ours: not worth a reload
            return None
        return self._lookup(hash_key(raw_key))

    def authenticate_certificate(self, fingerprint: str) -> Identity | None:
        """The identity an mTLS client certificate (its SHA-256) is bound to, if any."""
        return self._lookup(CERT_ENTRY + fingerprint.lower())

    def _lookup(self, entry: str) -> Identity | None:
        self._reload_if_older_than(self._refresh_s)
        identity = self._by_hash.get(entry)
        if identity is None and self._reload_if_older_than(self._miss_reload_s):
            identity = self._by_hash.get(entry)  # perhaps issued by another process just now
        return identity

    # --- administration --------------------------------------------------------------------------

    def issue(
        self, name: str, roles: Iterable[Role], *, department: str | None = None, sector: str | None = None
    ) -> tuple[Identity, str]:
        """A new identity and its raw key — returned this once, stored only as a hash."""
        if not name.strip():
            raise IdentityError("身份须有持有人名称")
        try:
            name = typed_text(name, "持有人名称")  # it shows in audit records and operators' answers
        except UndeliverableText as refused:
            raise IdentityError(str(refused)) from None
        identity = Identity(
            id="id_" + secrets.token_hex(6),
            name=name,
            roles=_checked_roles(roles, department, sector),
            department=department,
            sector=sector,
        )
        raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_key(raw_key)
        with self._units() as uow:
            conn = uow.conn
            conn.execute(insert(identities).values(
                id=identity.id, name=identity.name, key_hash=key_hash,
                key_prefix=raw_key[:KEY_PREFIX_SHOWN], roles=sorted(identity.roles),
                department=department, sector=sector, created_at=self._clock.now(),
            ))
            uow.commit()
        self._remember(identity, key_hash)
        return identity, raw_key

    def revoke(self, identity_id: str) -> Identity:
        # BEGIN IMMEDIATE (a writing unit of work) holds the write lock from the read to the update.
        with self._units() as uow:
            conn = uow.conn
            row = self._active_row(conn, identity_id)
            now = self._clock.now()
            conn.execute(update(identities).where(identities.c.id == identity_id).values(revoked_at=now))
            # Its console sessions end with it, on every node (gateway/security/sessions.py).
            conn.execute(update(console_sessions).where(console_sessions.c.identity_id == identity_id,
                                                        console_sessions.c.ended_at.is_(None))
                         .values(ended_at=now, ended_why="revoked"))
            uow.commit()
        self._forget(*_entries(row))  # after the commit: a concurrent reload cannot bring it back (see _forget)
        return _identity_from_row(row)

    def bind_certificate(self, identity_id: str, certificate_pem: bytes) -> str:
        """Let an mTLS client certificate stand for the identity (as its key does); returns its SHA-256.
        One certificate per identity: binding another replaces it."""
        try:
            fingerprint = certificate_fingerprint(certificate_pem)
        except ValueError as exc:
            raise IdentityError(f"不是 PEM 格式的证书（诊断：{exc}）") from None
        with self._units() as uow:
            conn = uow.conn
            row = self._active_row(conn, identity_id)
            holder = conn.execute(select(identities.c.id).where(identities.c.cert_fingerprint == fingerprint)).scalar()
            if holder not in (None, identity_id):
                raise IdentityError(f"该证书已绑定到身份 {holder}")
            conn.execute(update(identities).where(identities.c.id == identity_id).values(cert_fingerprint=fingerprint))
            uow.commit()
        self._forget(*_entries(row))
        self._remember(_identity_from_row(row), row["key_hash"], CERT_ENTRY + fingerprint)
        return fingerprint

    def change(
        self, identity_id: str, roles: Iterable[Role], *, department: str | None = None, sector: str | None = None
    ) -> Identity:
        """Give an active identity new roles and scope (its key stays); the same rules as issuing."""
        checked = _checked_roles(roles, department, sector)
        with self._units() as uow:
            conn = uow.conn
            row = self._active_row(conn, identity_id)
            conn.execute(update(identities).where(identities.c.id == identity_id)
                         .values(roles=sorted(checked), department=department, sector=sector))
            uow.commit()
        changed = Identity(id=identity_id, name=row["name"], roles=checked, department=department, sector=sector)
        self._remember(changed, *_entries(row))
        return changed

    def _active_row(self, conn: Connection, identity_id: str) -> RowMapping:
        row = conn.execute(select(identities).where(identities.c.id == identity_id)).mappings().first()
        if row is None:
            raise UnknownIdentity(f"没有身份 {identity_id}")
        if row["revoked_at"] is not None:
            self._forget(*_entries(row))  # revoked elsewhere: stop admitting it here now too
            raise AlreadyRevoked(f"身份 {identity_id} 已于 {beijing_text(row['revoked_at'])} 吊销")
        return row

    def get(self, identity_id: str) -> IssuedIdentity | None:
        rows = self._read(select(identities).where(identities.c.id == identity_id))
        return _issued_from_row(rows[0]) if rows else None

    def list(self) -> builtins.list[IssuedIdentity]:
        return [_issued_from_row(r) for r in self._read(select(identities).order_by(identities.c.created_at))]

    # --- the in-memory map -----------------------------------------------------------------------

    def _reload_if_older_than(self, age_s: float) -> bool:
        """Reload the map if it is older than `age_s`; True if this call reloaded it."""
        if self._timer() - self._loaded_at < age_s:
            return False  # the common case: no lock, no query
        with self._lock:
            if self._timer() - self._loaded_at < age_s:
                return False  # another thread reloaded while we waited for the lock
            started = self._timer()  # taken before the query: the map is at least this fresh
            rows = self._read(select(identities).where(identities.c.revoked_at.is_(None)))
            self._by_hash = {entry: i for r in rows if _admissible(i := _identity_from_row(r)) for entry in _entries(r)}
            self._loaded_at = started
            return True

    def _remember(self, identity: Identity, *entries: str) -> None:
        with self._lock:
            self._by_hash = {**self._by_hash, **dict.fromkeys(entries, identity)}

    def _forget(self, *entries: str) -> None:
        # Reloads query and install under the lock, so one that read the row before our commit has
        # installed its map before we get the lock, and we remove the key from that map.
        with self._lock:
            self._by_hash = {h: i for h, i in self._by_hash.items() if h not in entries}

    def _read(self, query: Any) -> builtins.list[RowMapping]:
        """Run a read-only query in a deferred transaction (no write lock taken)."""
        with self._units(read_only=True) as uow:
            return builtins.list(uow.conn.execute(query).mappings())


def certificate_fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER, hex; ValueError when it is no PEM certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
