"""Notifications to the hall: case events on the AMQP topic exchange and to webhook subscriptions.

Every case event leaves a `case_notifications` row, written in the event's own transaction. Two leased
scheduled jobs take it from there (`gateway.transport.scheduler`: one process at a time runs each):

- `CaseEventFanOut` ("case-notifications") takes the pending rows in id order, publishes each to the topic
  exchange `yiwang.case-events` with routing key `case.<matter_code>.<trigger>` (when a publisher is
  configured), then in ONE transaction adds a delivery per matching webhook subscription and marks the row
  published. A publish that fails stops the run there: that row and the later ones stay pending and go
  next run, in order. A crash between the broker's confirm and the commit publishes the event again
  (at least once: `event_id` tells a consumer it has seen it).
- `WebhookSender` ("webhooks") POSTs due deliveries, signed, in seq order per (subscription, case); a
  failure waits with exponential backoff and holds that case's later events back, never other cases'.
  After the last attempt the delivery is `failed` and the case's next events go on.

An event carries identifiers and states only, never personal data (DESIGN invariant 8); its `at` is Beijing
time (`beijing_text`), also for an event queued before that was so. A webhook URL must
be https to a public address (`check_target`: no loopback, private, link-local or reserved address, checked
when subscribing and again before every request, which then goes to the address checked — a name that
re-resolves elsewhere in between reaches nobody new); hosts in `WebhookPolicy.insecure_hosts` are exempt.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import re
import secrets
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import Engine, RowMapping, exists, func, insert, select, update

from certstore import FieldSealer
from gateway.domain.case import Trigger
from gateway.domain.clock import Clock, as_utc, beijing_text, instants_as_beijing_text
from gateway.domain.roles import Identity
from gateway.domain.text import UndeliverableText, optional_text
from gateway.persistence.notification_tables import (
    CANCELLED,
    DELIVERED,
    FAILED,
    PENDING,
    SECRET_AAD,
    webhook_deliveries,
    webhook_subscriptions,
)
from gateway.persistence.tables import case_notifications
from gateway.persistence.uow import UnitsOfWork

log = structlog.get_logger("yiwang.notifications")

EXCHANGE = "yiwang.case-events"  # a topic exchange: routing key case.<matter_code>.<trigger>
ALL_EVENTS = "*"
TRIGGERS = frozenset(str(t) for t in Trigger)
FAN_OUT_BATCH = 200  # notifications read per transaction
FAN_OUT_BATCHES = 10  # per run: the scheduler's thread is shared with dispatch
SEND_BATCH = 100  # (subscription, case) pairs started per run
SENDERS = 8  # cases delivered in parallel; one case's events one after another
RUN_BUDGET = timedelta(seconds=2)  # no new request starts after this (one in flight may take the timeout)
BACKOFF_CAP = timedelta(hours=1)
JITTER = 0.25  # a retry waits up to this fraction longer, so receivers coming back are not hit in step
MAX_ACTIVE_PER_OWNER = 20
MAX_URL = 2000
SIGNATURE_VERSION = "v1"
WEBHOOK_ID = re.compile(r"wh_[0-9a-f]{12}")


class Publisher(Protocol):
    """Where case events go to the broker (`gateway.transport.amqp.ConfirmedPublisher`): returns once the broker
    confirmed the message, raises when it did not."""

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any] | None = None) -> None: ...


class WebhookRefused(ValueError):
    """A subscription (or a request to its URL) breaks a rule; nothing is stored, nothing sent."""


class UnknownWebhook(LookupError):
    """No subscription by that id belongs to the caller."""


@dataclass(frozen=True)
class WebhookPolicy:
    timeout: timedelta = timedelta(seconds=5)
    max_attempts: int = 10
    backoff: timedelta = timedelta(seconds=1)  # the first retry's delay
    insecure_hosts: frozenset[str] = frozenset()  # allowed over http and on private or loopback addresses


@dataclass(frozen=True)
class Subscription:
    id: str
    owner_id: str
    owner_name: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    id: int
    subscription_id: str
    case_no: str
    seq: int
    event: dict[str, Any]
    status: str
    attempts: int
    next_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


# --- the event ---------------------------------------------------------------------------------------------


def case_event(row: RowMapping) -> dict[str, Any]:
    """A `case_notifications` row as the hall receives it: identifiers and states only, `at` in Beijing time."""
    return {"event_id": f"{row['case_no']}:{row['seq']}", "case_no": row["case_no"], "seq": row["seq"],
            "trigger": row["trigger"], "from_state": row["from_state"], "to_state": row["to_state"],
            "matter_code": row["matter_code"], "at": beijing_text(row["at"])}


def event_body(event: Mapping[str, Any]) -> bytes:
    """The bytes sent (and signed): one canonical encoding for the broker and every webhook. An event stored
    before times left in Beijing time (its `at` in UTC) is sent in Beijing time too: one format on the wire."""
    shown = {**event, "at": instants_as_beijing_text(event["at"])} if "at" in event else event
    return json.dumps(shown, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def routing_key(event: Mapping[str, Any]) -> str:
    return f"case.{event['matter_code']}.{event['trigger']}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`: the timestamp is signed so an old request cannot be
    replayed as new."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def matches(events: Iterable[str], trigger: str) -> bool:
    return any(e in (ALL_EVENTS, trigger) for e in events)


def chosen_events(events: Sequence[str]) -> list[str]:
    """Triggers to subscribe to, deduplicated and sorted; `*` alone stands for every one."""
    if not events:
        raise WebhookRefused("请至少列出一个办件触发事件，或用 \"*\" 订阅全部")
    unknown = [e for e in events if e != ALL_EVENTS and e not in TRIGGERS]
    if unknown:
        raise WebhookRefused(f"events 只能是办件触发事件或 \"*\"；触发事件有：{'、'.join(sorted(TRIGGERS))}")
    return [ALL_EVENTS] if ALL_EVENTS in events else sorted(set(events))


# --- where a webhook may go (SSRF) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: the request goes to `url` (the checked address in place of the host name),
    with `host` as its Host header and `server_name` as the name the TLS certificate must carry."""

    url: str
    host: str
    server_name: str


def check_target(url: str, insecure_hosts: frozenset[str] = frozenset()) -> Target:
    """Where a request to `url` may go, or WebhookRefused. Messages never repeat the URL (the caller's)."""
    if len(url) > MAX_URL or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        raise WebhookRefused("url 含有空白或控制字符，或过长")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise WebhookRefused("url 不是合法的 URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookRefused("url 应为指明主机的 https:// 地址")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("url 不能携带用户名或密码：推送请求以签名密钥签名")
    trusted = host in insecure_hosts
    if parts.scheme == "http" and not trusted:
        raise WebhookRefused("url 应使用 https（只有 YIWANG_WEBHOOK_INSECURE_HOSTS 中的主机可用 http）")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not trusted and not all(_public(a) for a in addresses):
        raise WebhookRefused("url 的主机是回环、私有、链路本地或保留地址；推送只发往公网主机"
                             "（或 YIWANG_WEBHOOK_INSECURE_HOSTS 中的主机）")
    address = addresses[0]
    netloc = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    return Target(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), parts.netloc, host)


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookRefused("url 的主机名无法解析") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


# --- subscriptions (the API's side) ------------------------------------------------------------------------


class Webhooks:
    """The hall's subscriptions: each identity sees and changes its own only."""

    def __init__(self, engine: Engine, sealer: FieldSealer, clock: Clock, insecure_hosts: frozenset[str] = frozenset()
                 ) -> None:
        self.units, self.sealer, self.clock, self.insecure_hosts = UnitsOfWork(engine), sealer, clock, insecure_hosts

    def subscribe(self, owner: Identity, url: str, events: Sequence[str], description: str | None = None
                  ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (shown this once: only its sealed form is kept)."""
        chosen = chosen_events(events)
        try:
            description = optional_text(description, "订阅说明")
        except UndeliverableText as refused:
            raise WebhookRefused(str(refused)) from None
        check_target(url, self.insecure_hosts)
        secret = "whsec_" + secrets.token_urlsafe(32)
        row = {"id": f"wh_{secrets.token_hex(6)}", "owner_id": owner.id, "owner_name": owner.name, "url": url,
               "secret": self.sealer.seal(secret, SECRET_AAD), "events": chosen, "description": description,
               "active": True, "created_at": self.clock.now(), "deactivated_at": None}
        s = webhook_subscriptions
        with self.units() as uow:  # count and insert under one write lock (SQLite) or close enough (PG)
            conn = uow.conn
            active = conn.execute(select(func.count()).select_from(s)
                                  .where(s.c.owner_id == owner.id, s.c.active)).scalar_one()
            if active >= MAX_ACTIVE_PER_OWNER:
                raise WebhookRefused(f"每个身份最多持有 {MAX_ACTIVE_PER_OWNER} 个有效订阅")
            conn.execute(insert(s).values(row))
            uow.commit()
        return _subscription(row), secret

    def of_owner(self, owner_id: str) -> list[Subscription]:
        s = webhook_subscriptions
        rows = self._read(select(s).where(s.c.owner_id == owner_id).order_by(s.c.created_at, s.c.id))
        return [_subscription(r) for r in rows]

    def get(self, owner_id: str, webhook_id: str) -> Subscription:
        s = webhook_subscriptions
        rows = self._read(select(s).where(s.c.id == webhook_id, s.c.owner_id == owner_id)) \
            if WEBHOOK_ID.fullmatch(webhook_id) else []
        if not rows:  # another identity's subscription is as unknown as one that never was
            raise UnknownWebhook("你没有这个推送订阅")
        return _subscription(rows[0])

    def deliveries(self, owner_id: str, webhook_id: str, limit: int = 50,
                   before_id: int | None = None) -> list[Delivery]:
        """The subscription's most recent deliveries, newest first; `before_id` pages on (keyset)."""
        self.get(owner_id, webhook_id)
        d = webhook_deliveries
        older = [] if before_id is None else [d.c.id < before_id]
        rows = self._read(select(d).where(d.c.subscription_id == webhook_id, *older).order_by(d.c.id.desc())
                          .limit(limit))
        return [_delivery(r) for r in rows]

    def unsubscribe(self, owner_id: str, webhook_id: str) -> Subscription:
        """Deactivate; its pending deliveries are cancelled with it (at most a request in flight still lands)."""
        subscription = self.get(owner_id, webhook_id)
        if subscription.active:
            now, s, d = self.clock.now(), webhook_subscriptions, webhook_deliveries
            with self.units() as uow:
                conn = uow.conn
                # The fan-out holds the subscription's row (FOR SHARE) while it adds deliveries: this update
                # waits for it, so the cancelling below sees every delivery it added.
                conn.execute(update(s).where(s.c.id == webhook_id, s.c.owner_id == owner_id)
                             .values(active=False, deactivated_at=now))
                conn.execute(update(d).where(d.c.subscription_id == webhook_id, d.c.status == PENDING)
                             .values(status=CANCELLED, last_error="the subscription was deleted"))
                uow.commit()
        return self.get(owner_id, webhook_id)

    def _read(self, query: Any) -> list[RowMapping]:
        with self.units(read_only=True) as uow:
            return list(uow.conn.execute(query).mappings())


def _subscription(r: Mapping[str, Any] | RowMapping) -> Subscription:  # a row, or one as written
    return Subscription(r["id"], r["owner_id"], r["owner_name"], r["url"], list(r["events"]), r["description"],
                        bool(r["active"]), as_utc(r["created_at"]),
                        as_utc(r["deactivated_at"]) if r["deactivated_at"] else None)


def _delivery(r: RowMapping) -> Delivery:
    return Delivery(r["id"], r["subscription_id"], r["case_no"], r["seq"], dict(r["event"]), r["status"],
                    r["attempts"], as_utc(r["next_at"]), r["last_status"], r["last_error"], as_utc(r["created_at"]),
                    as_utc(r["delivered_at"]) if r["delivered_at"] else None)


# --- failed deliveries (the operators' side) ---------------------------------------------------------------


class UnknownDelivery(LookupError):
    """No webhook delivery by that id."""


class NotRedeliverable(ValueError):
    """The delivery has not failed for good (it is pending, delivered or cancelled), or its subscription is gone."""


@dataclass(frozen=True)
class FailedDelivery:
    delivery: Delivery
    owner_id: str  # the hall identity that subscribed
    owner_name: str


class WebhookFailures:
    """Deliveries that failed for good, across every subscription, and sending one of them again.

    A delivery sent again keeps its event (so its `event_id`: the hall deduplicates) and gets the whole retry
    policy afresh; the sender takes it like any other pending delivery."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.units, self.clock = UnitsOfWork(engine), clock

    def failed(self, *, subscription_id: str | None = None, owner_id: str | None = None,
               since: datetime | None = None, until: datetime | None = None, before_id: int | None = None,
               limit: int = 50) -> list[FailedDelivery]:
        """Newest first; `since`/`until` bound when the delivery was made, `before_id` pages on."""
        d, s = webhook_deliveries, webhook_subscriptions
        conditions = [d.c.status == FAILED]
        for column, value in ((d.c.subscription_id, subscription_id), (s.c.owner_id, owner_id)):
            if value is not None:
                conditions.append(column == value)
        if since is not None:
            conditions.append(d.c.created_at >= since)
        if until is not None:
            conditions.append(d.c.created_at < until)
        if before_id is not None:
            conditions.append(d.c.id < before_id)
        query = (select(d, s.c.owner_id, s.c.owner_name).join(s, s.c.id == d.c.subscription_id)
                 .where(*conditions).order_by(d.c.id.desc()).limit(limit))
        return [FailedDelivery(_delivery(r), r["owner_id"], r["owner_name"]) for r in self._read(query)]

    def redeliver(self, delivery_id: int) -> FailedDelivery:
        """Pending again, due now, attempts from zero; NotRedeliverable unless it failed and its subscription is
        active (one conditional update: two operators redelivering at once send it once)."""
        d, s = webhook_deliveries, webhook_subscriptions
        active = exists().where(s.c.id == d.c.subscription_id, s.c.active)
        with self.units() as uow:
            conn = uow.conn
            changed = conn.execute(update(d).where(d.c.id == delivery_id, d.c.status == FAILED, active)
                                   .values(status=PENDING, attempts=0, next_at=self.clock.now())).rowcount
            uow.commit()
        found = self._read(select(d, s.c.owner_id, s.c.owner_name, s.c.active)
                           .join(s, s.c.id == d.c.subscription_id).where(d.c.id == delivery_id))
        if not found:
            raise UnknownDelivery(f"没有编号为 {delivery_id} 的推送记录")
        row = found[0]
        if not changed:
            why = f"状态为 {row['status']}" if row["status"] != FAILED else "已失败，但其订阅已删除"
            raise NotRedeliverable(f"推送记录 {delivery_id} {why}，只有失败且订阅仍有效的推送可以重发")
        return FailedDelivery(_delivery(row), row["owner_id"], row["owner_name"])

    def _read(self, query: Any) -> list[RowMapping]:
        with self.units(read_only=True) as uow:
            return list(uow.conn.execute(query).mappings())


# --- fan-out: notifications → the broker and webhook deliveries --------------------------------------------


class CaseEventFanOut:
    """The "case-notifications" job. `connect` builds the broker publisher on first use (None: no broker);
    a publisher that failed is dropped and built again next run."""

    def __init__(self, engine: Engine, clock: Clock, connect: Callable[[], Publisher] | None = None,
                 batch: int = FAN_OUT_BATCH) -> None:
        self.units, self.clock, self.connect, self.batch = UnitsOfWork(engine), clock, connect, batch
        self._publisher: Publisher | None = None

    def run(self) -> int:
        """Fan out pending notifications; returns how many were published. Raises (after settling the ones
        before it) when a publish fails: the scheduler records the error, the rest waits for the next run."""
        done = 0
        for _ in range(FAN_OUT_BATCHES):
            published = self._run_batch()
            done += published
            if published < self.batch:
                break
        return done

    def _run_batch(self) -> int:
        n = case_notifications
        with self.units(read_only=True) as uow:
            conn = uow.conn
            rows = list(conn.execute(select(n).where(n.c.status == "pending").order_by(n.c.id)
                                     .limit(self.batch)).mappings())
        published: list[tuple[int, dict[str, Any]]] = []
        try:
            for row in rows:
                event = case_event(row)
                self._publish(event)
                published.append((row["id"], event))
        finally:  # what the broker confirmed is settled even when a later publish failed
            if published:
                self._settle(published)
        return len(published)

    def _publish(self, event: dict[str, Any]) -> None:
        if self.connect is None:
            return
        try:
            if self._publisher is None:
                self._publisher = self.connect()
            self._publisher.publish(EXCHANGE, routing_key(event), event_body(event), {"event_id": event["event_id"]})
        except Exception:
            self._drop_publisher()
            raise

    def _drop_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        close = getattr(publisher, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - it is broken already; a fresh one is built next run
                log.debug("closing a failed publisher failed", exc_info=True)

    def _settle(self, published: list[tuple[int, dict[str, Any]]]) -> None:
        """One transaction: a delivery per matching subscription, and the notifications marked published."""
        now, s, n = self.clock.now(), webhook_subscriptions, case_notifications
        with self.units() as uow:
            conn = uow.conn
            subscriptions = conn.execute(select(s.c.id, s.c.events).where(s.c.active)
                                         .with_for_update(read=True)).all()  # see Webhooks.unsubscribe
            deliveries = [{"subscription_id": sub_id, "case_no": e["case_no"], "seq": e["seq"], "event": e,
                           "status": PENDING, "attempts": 0, "next_at": now, "created_at": now}
                          for _, e in published for sub_id, events in subscriptions if matches(events, e["trigger"])]
            if deliveries:
                conn.execute(insert(webhook_deliveries), deliveries)
            conn.execute(update(n).where(n.c.id.in_([i for i, _ in published]), n.c.status == "pending")
                         .values(status="published", published_at=now))
            uow.commit()


# --- sending ---------------------------------------------------------------------------------------------


class WebhookSender:
    """The "webhooks" job: due deliveries POSTed, in seq order per (subscription, case), cases in parallel."""

    def __init__(self, engine: Engine, sealer: FieldSealer, clock: Clock, policy: WebhookPolicy,
                 jitter: Callable[[], float] = random.random, budget: timedelta = RUN_BUDGET) -> None:
        self.units, self.sealer, self.clock, self.policy = UnitsOfWork(engine), sealer, clock, policy
        self.jitter, self.budget = jitter, budget

    def run(self) -> int:
        """Send what is due now; returns how many requests were made."""
        heads = self._due_heads()
        if not heads:
            return 0
        deadline = time.monotonic() + self.budget.total_seconds()
        clients = _Clients(self.policy.timeout)
        try:
            if len(heads) == 1:
                return self._follow(clients, *heads[0], deadline)
            with ThreadPoolExecutor(min(SENDERS, len(heads)), thread_name_prefix="webhook") as pool:
                futures = [pool.submit(self._follow, clients, sub_id, case_no, deadline) for sub_id, case_no in heads]
                return sum(f.result() for f in futures)
        finally:
            clients.close()

    def _due_heads(self) -> list[tuple[str, str]]:
        """(subscription, case) pairs whose earliest pending delivery is due: one row per pair, since a later
        delivery with an earlier one still pending is not a head."""
        d, s, earlier = webhook_deliveries, webhook_subscriptions, webhook_deliveries.alias("earlier")
        waiting = exists().where(earlier.c.subscription_id == d.c.subscription_id, earlier.c.case_no == d.c.case_no,
                                 earlier.c.status == PENDING, earlier.c.seq < d.c.seq)
        query = (select(d.c.subscription_id, d.c.case_no).join(s, s.c.id == d.c.subscription_id)
                 .where(d.c.status == PENDING, d.c.next_at <= self.clock.now(), s.c.active, ~waiting)
                 .order_by(d.c.next_at, d.c.id).limit(SEND_BATCH))
        with self.units(read_only=True) as uow:
            return [(r[0], r[1]) for r in uow.conn.execute(query)]

    def _follow(self, clients: _Clients, subscription_id: str, case_no: str, deadline: float) -> int:
        """Send one (subscription, case)'s due deliveries one after another, until one must wait."""
        sent = 0
        while time.monotonic() < deadline:
            head = self._head(subscription_id, case_no)
            if head is None:
                break
            sent += 1
            if not self._send(clients, head):
                break  # retried later; the case's later events wait for it
        return sent

    def _head(self, subscription_id: str, case_no: str) -> RowMapping | None:
        d, s = webhook_deliveries, webhook_subscriptions
        query = (select(d.c.id, d.c.subscription_id, d.c.case_no, d.c.seq, d.c.event, d.c.attempts, d.c.next_at,
                        s.c.url, s.c.secret)
                 .join(s, s.c.id == d.c.subscription_id)
                 .where(d.c.subscription_id == subscription_id, d.c.case_no == case_no, d.c.status == PENDING,
                        s.c.active)
                 .order_by(d.c.seq).limit(1))
        with self.units(read_only=True) as uow:
            row = uow.conn.execute(query).mappings().first()
        return row if row is not None and as_utc(row["next_at"]) <= self.clock.now() else None

    def _send(self, clients: _Clients, head: RowMapping) -> bool:
        """POST one delivery and record the outcome; True when it is settled (delivered or failed for good)."""
        body = event_body(head["event"])
        timestamp = int(self.clock.now().timestamp())
        status: int | None = None
        try:
            target = check_target(head["url"], self.policy.insecure_hosts)
            secret = self.sealer.open(head["secret"], SECRET_AAD)
            headers = {"Host": target.host, "Content-Type": "application/json",
                       "Yiwang-Event-Id": head["event"]["event_id"], "Yiwang-Timestamp": str(timestamp),
                       "Yiwang-Signature": signature(secret, timestamp, body)}
            response = clients.get(target.server_name).post(target.url, content=body, headers=headers,
                                                            extensions={"sni_hostname": target.server_name})
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status} {response.reason_phrase}".strip()
        except (httpx.HTTPError, WebhookRefused) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        return self._record(head, status, error)

    def _record(self, head: RowMapping, status: int | None, error: str | None) -> bool:
        now, attempts, d = self.clock.now(), head["attempts"] + 1, webhook_deliveries
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if error is None:
            values.update(status=DELIVERED, delivered_at=now)
        elif attempts >= self.policy.max_attempts:
            values.update(status=FAILED)
        else:
            values.update(next_at=now + self._delay(attempts))
        with self.units() as uow:
            conn = uow.conn
            # Only a pending row: a subscription deleted meanwhile has cancelled it, and that stays.
            conn.execute(update(d).where(d.c.id == head["id"], d.c.status == PENDING).values(values))
            uow.commit()
        bound = log.bind(subscription_id=head["subscription_id"], case_no=head["case_no"], seq=head["seq"],
                         attempts=attempts)
        if error is None:
            bound.debug("webhook delivered")
        elif values.get("status") == FAILED:
            bound.warning("webhook failed for good; the case's next events go on", error=error)
        else:
            bound.info("webhook will be retried", error=error, next_at=values["next_at"].isoformat())
        return values.get("status") in (DELIVERED, FAILED)

    def _delay(self, attempts: int) -> timedelta:
        """backoff × 2^(attempts − 1), capped, and up to JITTER longer (never shorter)."""
        base: timedelta = min(self.policy.backoff * 2 ** min(attempts - 1, 32), BACKOFF_CAP)
        return base * (1 + JITTER * self.jitter())


class _Clients:
    """One HTTP client per host name for a run. Pooled connections are keyed by address, and a TLS
    connection verified for one name must not carry requests meant for another name at that address."""

    def __init__(self, timeout: timedelta) -> None:
        self._timeout = timeout.total_seconds()
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def get(self, server_name: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(server_name)
            if client is None:  # no redirects (they could lead anywhere), no proxies from the environment
                client = httpx.Client(timeout=self._timeout, follow_redirects=False, trust_env=False)
                self._clients[server_name] = client
            return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
