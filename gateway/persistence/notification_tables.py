"""Notifications to the hall: webhook subscriptions and their deliveries
(read and written in `gateway.notifications.hall`).

A subscription belongs to one identity (the hall's systems) and names the case triggers it wants. The
fan-out job turns each pending `case_notifications` row into one delivery per matching subscription; the
webhook job sends them, in seq order per (subscription, case). Deliveries are kept after they settle:
they are what the hall reads back when it wonders what it missed.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.persistence.personal_data import SEALED_COLUMNS
from gateway.persistence.tables import metadata

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
SECRET_AAD = "webhook_subscriptions.secret"  # the sealed secret opens in this column only

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(20), primary_key=True),  # "wh_" + 12 hex
    Column("owner_id", String(20), nullable=False, index=True),  # the identity that subscribed
    Column("owner_name", String(128), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("secret", Text, nullable=False),  # the signing secret, sealed (aad SECRET_AAD)
    Column("events", JSON, nullable=False),  # case triggers, or ["*"]
    Column("description", String(500)),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deactivated_at", DateTime(timezone=True)),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", String(20),
           ForeignKey("webhook_subscriptions.id", name="fk_webhook_deliveries_subscription"), nullable=False),
    Column("case_no", String(50), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event", JSON, nullable=False),  # identifiers and states only (see gateway.notifications.case_event)
    Column("status", String(16), nullable=False),  # pending | delivered | failed | cancelled (subscription deleted)
    Column("attempts", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("last_status", Integer),  # the receiver's last HTTP status; None: no answer (transport error)
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    # One delivery per event and subscription: a fan-out run repeated after a crash adds nothing.
    # It also serves "the earlier deliveries of this case" and a subscription's own listing.
    UniqueConstraint("subscription_id", "case_no", "seq", name="uq_webhook_deliveries_subscription_case_seq"),
)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_at)

# Master-key rotation (`reseal_all`) re-seals the secrets with the personal data.
SEALED_COLUMNS["webhook_subscriptions"] = (("id",), ("secret",))
