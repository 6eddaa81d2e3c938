"""`/v1/webhooks`: the online hall subscribes to case events (gateway/notifications/hall.py).

Only `hall_client` subscribes. A subscription is a firehose: every case's number and state changes, in
the whole city. The hall's systems are one trusted integration; window terminals (down to village agency
points) are many and already read the cases they handle by number, so they get no feed of all the others.

Each identity sees and deletes its own subscriptions only: another's is a 404, as if it did not exist.
Subscribing and deleting are written to the audit log by the `AuditTrail` middleware (every changing /v1
request is). The secret that signs the deliveries is in the creation answer only; it is kept sealed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.roles import Identity, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.http.schemas import BeijingTime, DeliveryOut
from gateway.notifications.hall import MAX_URL, Delivery, Subscription, UnknownWebhook, WebhookRefused, Webhooks
from gateway.persistence.keyset import Keyset

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=JsonBodyRoute)
Hall = Annotated[Identity, Depends(require(Role.HALL_CLIENT))]
# Subscriptions oldest first (an identity holds a few; in memory); deliveries newest first (by id, in SQL).
WEBHOOKS = Keyset("webhooks", (datetime, str))
DELIVERIES = Keyset("webhook-deliveries", (int,), descending=True)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=MAX_URL, description="https:// to a public host")
    events: list[str] = Field(min_length=1, max_length=64, description='case triggers, e.g. ["accept", "approve"], '
                                                                       'or ["*"] for every one')
    description: str | None = Field(default=None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    created_at: BeijingTime
    deactivated_at: BeijingTime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="signs every delivery (Yiwang-Signature); shown in this answer only")


def _webhooks(request: Request) -> Webhooks:
    return cast(Webhooks, request.app.state.webhooks)  # set by gateway.bootstrap.app


def _view(s: Subscription) -> dict[str, Any]:
    return {"id": s.id, "url": s.url, "events": s.events, "description": s.description, "active": s.active,
            "created_at": s.created_at, "deactivated_at": s.deactivated_at}


def _delivery_view(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "case_no": d.case_no, "seq": d.seq, "event": d.event, "status": d.status,
            "attempts": d.attempts, "next_at": d.next_at, "last_status": d.last_status, "last_error": d.last_error,
            "created_at": d.created_at, "delivered_at": d.delivered_at}


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, responses=problem_doc(401, 403, 422),
             summary="订阅办件事件")
def subscribe(body: WebhookIn, request: Request, identity: Hall) -> dict[str, Any]:
    """网上大厅订阅办件事件的回调地址（webhook）；每个事件以 POST 推送，带 `Yiwang-Signature` 签名头。
    签名密钥只在这次应答中出现。不是幂等操作：每次调用新建一个订阅。返回 201。"""
    subscription, secret = _webhooks(request).subscribe(identity, body.url, body.events, body.description)
    return {**_view(subscription), "secret": secret}


@router.get("/webhooks", response_model=Page[WebhookOut], responses=problem_doc(401, 403, 422),
            summary="我的订阅")
def list_webhooks(request: Request, identity: Hall, paging: Paged) -> dict[str, Any]:
    """调用方自己的订阅，包括已删除的（不含签名密钥）。只读。"""
    subscriptions = _webhooks(request).of_owner(identity.id)
    page = WEBHOOKS.seek(subscriptions, lambda s: (s.created_at, s.id), paging.after(WEBHOOKS), paging.limit)
    return answer(WEBHOOKS, page, _view, len(subscriptions))


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryOut],
            responses=problem_doc(401, 403, 404, 422), summary="订阅的推送记录")
def list_deliveries(webhook_id: str, request: Request, identity: Hall, paging: Paged) -> dict[str, Any]:
    """一个订阅最近的推送及其结果，新的在前。只读。"""
    order = DELIVERIES.of(webhook_id)
    found = _webhooks(request).deliveries(identity.id, webhook_id, paging.limit + 1, paging.after_id(order))
    return answer(order, order.cut(found, paging.limit, lambda d: (d.id,)), _delivery_view)


@router.delete("/webhooks/{webhook_id}", response_model=WebhookOut, responses=problem_doc(401, 403, 404),
               summary="删除订阅")
def unsubscribe(webhook_id: str, request: Request, identity: Hall) -> dict[str, Any]:
    """删除（停用）一个订阅，未送出的推送随之取消。幂等：再次删除返回同样的结果。"""
    return _view(_webhooks(request).unsubscribe(identity.id, webhook_id))


def install_webhook_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (WebhookRefused, 422, "invalid-webhook", "订阅不符合规则"),
        (UnknownWebhook, 404, "unknown-webhook", "没有该订阅"),
    ])
