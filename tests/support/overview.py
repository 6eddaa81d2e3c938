"""A gateway whose operators' overview has something in every figure (ops/overview.py), for the API's and the
console's tests of it (tests/api/test_ops_overview.py, tests/api/test_console_overview.py).

The scene, on a pinned clock (Tuesday 2026-11-24 10:00 in Beijing, then eight days on): two cases to a failing
social-security system — the first's submission dies (a real dead letter), the second meets the circuit the
failures opened and waits — and a third withdrawn (closed); eight days later e-supervision flags the two open
ones overdue. Dead letters written through the repository spread over the last days (one just before and one
just after a Beijing midnight), one of them since discarded; a rehearsal's report kept for the social-security
version; certificates expiring in 2, 9, 19 and 400 days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.repository import Failure
from ops.overview import Overview
from tests.support.cases import outbox_statuses, submit
from tests.support.gateways import PINNED, Keys, drain
from tests.support.pki import TestCA

OVERVIEW = "/v1/ops/overview"
NOW = PINNED + timedelta(days=8)  # Wednesday 2026-12-02 10:00 in Beijing
SS, HF = "social_security", "housing_fund"
# sector, error class, Beijing time it died, its status now
LETTERS = [
    (SS, "timeout", "2026-11-20T12:00", "dead"),  # before the trend's week
    (HF, "mapping", "2026-11-29T15:00", "dead"),
    (SS, "auth", "2026-11-30T08:00", "discarded"),  # in the trend, no longer waiting
    (SS, "transport", "2026-12-01T23:30", "dead"),  # 15:30 UTC: still Tuesday in Beijing
    (HF, "timeout", "2026-12-02T00:10", "dead"),  # 16:10 UTC on the 1st: Wednesday in Beijing
    (HF, "timeout", "2026-12-02T09:00", "dead"),
]
TREND_DAYS = ["2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
TREND = [0, 0, 0, 1, 1, 1, 2]  # new dead letters on those days, every sector


@dataclass
class Scene:
    gateway: Gateway
    clock: FixedClock
    version: str  # the social-security bundle's active version
    app: Any

    def client(self, role: Role, **scope: str) -> TestClient:
        return TestClient(self.app, headers=Keys.of(self.gateway, role, **scope))

    def overview(self, role: Role = Role.OPERATOR, **scope: str) -> dict[str, Any]:
        answer = self.client(role, **scope).get(OVERVIEW)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


def overview_scene(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Scene:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, sector_endpoints={SS: simulator.url}, bundles=(SS, HF))
    simulator.set_fault("fail")
    first, _ = submit(gateway), submit(gateway)  # 2 deliveries x 3 attempts: past the breaker's threshold of 5
    drain(gateway, lambda: [s for _, s in outbox_statuses(gateway)] == ["dead", "pending"])
    withdrawn = submit(gateway)
    hall = TestClient(create_app(gateway), headers=Keys.issue(gateway).hall)
    assert hall.post(f"/v1/cases/{withdrawn}/withdraw", json={"reason": "不再需要"}).status_code == 200
    clock.advance(NOW - PINNED)
    assert gateway.service.tick() == 2  # the two accepted cases are past their deadline (Tuesday 12-01)
    with gateway.engine.begin() as conn:  # a worker is delivering the withdrawn case's message right now
        conn.execute(update(t.outbox).where(t.outbox.c.case_no == withdrawn)
                     .values(lease_owner="worker-1", lease_until=NOW + timedelta(seconds=30)))
    with gateway.service.uow() as uow:
        for sector, error_class, at, status in LETTERS:
            about = {"case_no": first, "sector": sector, "operation": "submit_case",
                     "idempotency_key": f"{first}:{at}"}
            letter_id = uow.dead_letters.add(None, Failure(error_class, "failed"), beijing(at), about=about)
            if status != "dead":
                uow.conn.execute(update(t.dead_letters).where(t.dead_letters.c.id == letter_id).values(status=status))
        uow.commit()
    version = next(v.version for v in gateway.bundles.versions(SS))
    gateway.bundles.record_rehearsal(SS, version, {"outcome": "failed", "at": "2026-12-02T01:00:00+00:00",
                                                   "run": "r1", "passed": 1, "total": 3, "unreachable": False,
                                                   "items": [], "cleanup": [], "note": None})
    ca = TestCA(now=NOW)
    for name, sector, days in (("gw-server", None, 2), ("ss-client", SS, 9), ("hf-client", HF, 19),
                               ("far", SS, 400)):
        issued = ca.issue(name, days=days + 1, not_before=NOW - timedelta(days=1))
        gateway.certs.import_pem(name, issued.cert_pem, issued.key_pem, sector=sector, actor="test")
    return Scene(gateway, clock, version, create_app(gateway))


def replace_parts(overview: Overview, **parts: Any) -> Overview:
    """The overview with some of its parts replaced (a ferry link's stations, a broker)."""
    kept = {"engine": overview.engine, "clock": overview.clock, "desk": overview.desk, "bundles": overview.bundles,
            "adapters": overview.adapters, "certs": overview.certs, "ferry": overview.ferry,
            "broker": overview.broker}
    return Overview(**{**kept, **parts})
