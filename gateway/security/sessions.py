"""The operators' console's sessions: an identity signed in once, then known by a cookie, in the database.

`ConsoleSessions.open` is called after the console has authenticated an identity (by its API key or client
certificate): it makes a new random session id (a new one at every sign-in, so a session id planted before
sign-in is worth nothing), keeps only its SHA-256 with a CSRF token of its own, and returns the raw id for the
cookie. `find` admits a session until it is ended (sign-out, the identity revoked), idle past the policy's idle
timeout, or past its absolute lifetime; a session found in use is touched at most once a minute, so reading
pages costs no write each. Being in the database, a session opened on one node is honoured by every other, and
`gateway.security.api_keys.ApiKeyStore.revoke` ends the identity's sessions in the same transaction.

Failed sign-ins are counted per client address (`failed`); after `max_failures` within the lockout period the
address is refused until the period has passed (`locked_until`), whatever it presents, so guessing keys
through the console costs as much as the lockout says. A successful sign-in clears the address's count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from gateway.domain.clock import Clock, as_utc
from gateway.persistence.identity_tables import console_sessions, console_sign_in_failures
from gateway.persistence.uow import UnitsOfWork

__all__ = ["ConsoleSession", "ConsoleSessions", "SessionPolicy", "session_hash"]

TOUCH_EVERY = timedelta(minutes=1)  # how stale last_seen_at may be before a request writes it again


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta  # a session unused this long is over
    absolute: timedelta  # a session this old is over, however busy
    max_failures: int  # failed sign-ins from one address within `lockout` that lock it
    lockout: timedelta


@dataclass(frozen=True)
class ConsoleSession:
    identity_id: str
    csrf_token: str
    signed_in_with: str
    created_at: datetime
    expires_at: datetime

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


def session_hash(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode()).hexdigest()


class ConsoleSessions:
    def __init__(self, engine: Engine, clock: Clock, policy: SessionPolicy) -> None:
        self._units = UnitsOfWork(engine)
        self._clock = clock
        self.policy = policy

    # --- signing in and out ---------------------------------------------------------------------------

    def open(self, identity_id: str, client: str, signed_in_with: str) -> tuple[str, ConsoleSession]:
        """A new session for an identity the caller has authenticated; its raw id (for the cookie) and it."""
        raw_id = secrets.token_urlsafe(32)
        now = self._clock.now()
        session = ConsoleSession(identity_id, secrets.token_urlsafe(32), signed_in_with, now,
                                 now + self.policy.absolute)
        with self._units() as work:
            work.conn.execute(insert(console_sessions).values(
                id_hash=session_hash(raw_id), identity_id=identity_id, csrf_token=session.csrf_token,
                signed_in_with=signed_in_with, client=client[:64], created_at=now, last_seen_at=now,
                expires_at=session.expires_at))
            work.conn.execute(delete(console_sign_in_failures).where(console_sign_in_failures.c.client == client[:64]))
            work.commit()
        return raw_id, session

    def find(self, raw_id: str | None) -> ConsoleSession | None:
        """The live session with this id, or None (unknown, ended, idle too long, too old)."""
        if not raw_id:
            return None
        id_hash, now = session_hash(raw_id), self._clock.now()
        with self._units(read_only=True) as work:
            row = work.conn.execute(select(console_sessions)
                                    .where(console_sessions.c.id_hash == id_hash)).mappings().first()
        if row is None or row["ended_at"] is not None:
            return None
        last_seen, expires_at = as_utc(row["last_seen_at"]), as_utc(row["expires_at"])
        over = "expired" if now >= expires_at else "idle" if now - last_seen >= self.policy.idle else None
        if over is not None:
            self._end(id_hash, over)
            return None
        if now - last_seen >= TOUCH_EVERY:
            with self._units() as work:
                work.conn.execute(update(console_sessions).where(console_sessions.c.id_hash == id_hash,
                                                                 console_sessions.c.ended_at.is_(None))
                                  .values(last_seen_at=now))
                work.commit()
        return ConsoleSession(row["identity_id"], row["csrf_token"], row["signed_in_with"],
                              as_utc(row["created_at"]), expires_at)

    def end(self, raw_id: str, why: str = "signed-out") -> None:
        self._end(session_hash(raw_id), why)

    def _end(self, id_hash: str, why: str) -> None:
        with self._units() as work:
            work.conn.execute(update(console_sessions).where(console_sessions.c.id_hash == id_hash,
                                                             console_sessions.c.ended_at.is_(None))
                              .values(ended_at=self._clock.now(), ended_why=why))
            work.commit()

    # --- the lockout --------------------------------------------------------------------------------

    def locked_until(self, client: str) -> datetime | None:
        """When the address may try again, if it is locked out now."""
        with self._units(read_only=True) as work:
            row = work.conn.execute(select(console_sign_in_failures.c.locked_until).where(
                console_sign_in_failures.c.client == client[:64])).first()
        until = as_utc(row[0]) if row is not None and row[0] is not None else None
        return until if until is not None and until > self._clock.now() else None

    def failed(self, client: str) -> datetime | None:
        """Count a failed sign-in from the address; when it locks the address, until when."""
        now, client = self._clock.now(), client[:64]
        with self._units() as work:  # a writing unit: the read and the update are one under concurrent tries
            row = work.conn.execute(select(console_sign_in_failures).where(
                console_sign_in_failures.c.client == client)).mappings().first()
            if row is None or now - as_utc(row["first_at"]) >= self.policy.lockout:
                failures = 1  # a new window of failures
                work.conn.execute(delete(console_sign_in_failures).where(console_sign_in_failures.c.client == client))
                work.conn.execute(insert(console_sign_in_failures).values(client=client, failures=1, first_at=now))
            else:
                failures = row["failures"] + 1
                work.conn.execute(update(console_sign_in_failures).where(console_sign_in_failures.c.client == client)
                                  .values(failures=failures))
            locked = now + self.policy.lockout if failures >= self.policy.max_failures else None
            if locked is not None:
                work.conn.execute(update(console_sign_in_failures).where(console_sign_in_failures.c.client == client)
                                  .values(locked_until=locked, failures=0, first_at=now))
            work.commit()
        return locked
