"""The console's administration pages (adapters, certificates, audit, approvals) through the app as served, on
both databases: each page admits exactly the roles of the API route it mirrors (the pages table against the
route table: the role matrix as data, proved), every change goes through the API's services and leaves the
same state, four-eyes included, and no change is made without the session's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.registry import default_bundles_dir
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.sectors.bundle_records import pack_folder
from ops.console.web import CONSOLE_ROLES, PAGES, Page
from tests.support.console import assert_accessible_and_csp_clean, key_of, sign_in
from tests.support.gateways import register_again
from tests.support.ledger import tamper
from tests.support.pki import TestCA, key_pem
from tests.support.routes import admitted_roles, app_routes, v1_routes

SECTOR, OTHER = "housing_fund", "social_security"
FIRST, SECOND = "2026.12.0", "2026.12.9"
ADMIN_PAGES = ("adapters", "certificates", "audit", "approvals")
BEIJING_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
NOT_FOR_YOU = "不对该角色开放"
CSRF_REFUSED = 'data-problem-type="urn:yiwang:problem:csrf"'


@pytest.fixture
def housing_fund() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator() as simulator:
        yield simulator


@pytest.fixture
def make(make_gateway: Callable[..., Gateway], housing_fund: HousingFundSimulator) -> Callable[..., Gateway]:
    """A gateway with social security active and the housing-fund bundle registered and tested, not active."""
    def made(**overrides: object) -> Gateway:
        gateway = make_gateway(bundles=(OTHER,), sector_endpoints={SECTOR: housing_fund.url}, **overrides)
        gateway.bundles.register(pack_folder(default_bundles_dir() / SECTOR), "test")
        assert gateway.sector_calls.test_version(SECTOR, FIRST).test_outcome == "accepted"
        return gateway
    return made


@pytest.fixture
def gateway(make: Callable[..., Gateway]) -> Gateway:
    return make()


def console(gateway: Gateway, *roles: Role, **scope: str) -> tuple[TestClient, str]:
    """A browser signed in to the console as a new identity holding `roles`; its CSRF token."""
    client = TestClient(create_app(gateway))
    return client, sign_in(client, key_of(gateway, *roles, **scope))


def scope_of(role: Role) -> dict[str, str]:
    return {"sector": SECTOR} if role is Role.SECTOR_ADMIN else {}


def status_of(gateway: Gateway, version: str) -> str:
    return gateway.bundles.get(SECTOR, version).status


def second_version(gateway: Gateway, tmp_path: Path) -> None:
    """The housing-fund bundle again, as another version."""
    register_again(gateway.bundles, SECTOR, SECOND, tmp_path / "second")


# --- the pages table against the route table ---------------------------------------------------------------


def console_routes(app: FastAPI, method: str = "GET") -> set[str]:
    return {route.path for route in app_routes(app) if route.path.startswith("/console") and method in route.methods}


@pytest.mark.parametrize("page", [p for p in PAGES if p.mirrors], ids=lambda p: p.name)
def test_a_page_admits_exactly_the_roles_of_the_api_route_it_mirrors(page: Page, gateway: Gateway) -> None:
    app = create_app(gateway)
    assert page.mirrors is not None
    method, path = page.mirrors
    mirrored = [r for r in v1_routes(app) if r.path == path and method in r.methods]
    if not mirrored and page.path not in console_routes(app):
        pytest.skip(f"neither {page.path} nor {method} {path} is built yet")
    assert mirrored, f"{page.name} mirrors {method} {path}, which the API does not serve"
    admitted = frozenset().union(*admitted_roles(mirrored[0].dependant))
    assert page.roles == admitted


@pytest.mark.parametrize("role", sorted(CONSOLE_ROLES))  # other roles cannot sign in (test_console_sessions)
def test_each_page_renders_for_its_roles_and_is_refused_for_every_other(role: Role, gateway: Gateway) -> None:
    client, _ = console(gateway, role, **scope_of(role))
    pages = {p.name: p for p in PAGES}
    paths = {"adapters": ["/console/adapters", f"/console/adapters/{SECTOR}"],
             "certificates": ["/console/certificates"], "audit": ["/console/audit", "/console/audit/verify"],
             "approvals": ["/console/approvals"]}
    for name in ADMIN_PAGES:
        for path in paths[name]:
            answer = client.get(path, follow_redirects=False)
            if role in pages[name].roles:
                assert answer.status_code == 200, (role, path, answer.text)
                assert NOT_FOR_YOU not in answer.text
                assert_accessible_and_csp_clean(answer.text)
            else:
                assert answer.status_code == 403, (role, path, answer.status_code)
                assert NOT_FOR_YOU in answer.text


# --- adapters ----------------------------------------------------------------------------------------------


def test_the_adapters_page_shows_each_sectors_active_version_health_and_versions(gateway: Gateway) -> None:
    client, _ = console(gateway, Role.SYSTEM_ADMIN)
    page = client.get("/console/adapters").text
    assert f'href="/console/adapters/{SECTOR}"' in page and f'href="/console/adapters/{OTHER}"' in page
    assert f"{FIRST}（registered）" in page and "未启用" in page  # housing fund: registered, none active
    health = gateway.registry.health()[OTHER]
    assert health["version"] in page
    detail = client.get(f"/console/adapters/{SECTOR}").text
    assert "accepted" in detail and "未预演" in detail
    assert re.search(r'<td data-label="注册">' + BEIJING_TIME.pattern, detail)  # as people read it, not ISO


def test_activation_under_four_eyes_waits_for_a_second_identity_who_approves_in_the_console(
        make: Callable[..., Gateway]) -> None:
    gateway = make(four_eyes=True)
    first, first_csrf = console(gateway, Role.SECTOR_ADMIN, sector=SECTOR)
    second, second_csrf = console(gateway, Role.SECTOR_ADMIN, sector=SECTOR)

    held = first.post(f"/console/adapters/{SECTOR}/versions/{FIRST}/activate", data={"csrf": first_csrf})
    assert held.status_code == 200 and "已提交审批，等待另一人批准" in held.text, held.text
    (pending,) = _pending(second)
    assert f'href="/console/approvals#approval-{pending}"' in held.text
    assert status_of(gateway, FIRST) == "registered"  # nothing happened yet

    own = first.post(f"/console/approvals/{pending}/approve", data={"csrf": first_csrf})
    assert own.status_code == 403 and 'data-problem-type="urn:yiwang:problem:own-request"' in own.text
    assert status_of(gateway, FIRST) == "registered"

    approved = second.post(f"/console/approvals/{pending}/approve", data={"csrf": second_csrf})
    assert approved.status_code == 200 and "已批准" in approved.text, approved.text
    assert status_of(gateway, FIRST) == "active"
    assert f"approval-{pending}" in approved.text  # listed among the approved
    assert BEIJING_TIME.search(approved.text) and "+08:00" not in approved.text
    assert _pending(second) == []
    records = gateway.ledger.records(Filters(AUDIT, action="POST /console/approvals/{approval_id}/approve"))
    assert [r.outcome for r in records] == ["403 refused", "303 ok"]


def _pending(client: TestClient) -> list[str]:
    return re.findall(r'<tr id="approval-([^"]+)"', client.get("/console/approvals").text)


def test_a_rejected_request_changes_nothing_and_keeps_its_reason(make: Callable[..., Gateway]) -> None:
    gateway = make(four_eyes=True)
    first, csrf = console(gateway, Role.OPERATOR)
    first.post(f"/console/adapters/{SECTOR}/versions/{FIRST}/activate", data={"csrf": csrf})
    (pending,) = _pending(first)
    reason = '版本号写错<script>alert(1)</script>"'
    rejected = first.post(f"/console/approvals/{pending}/reject", data={"csrf": csrf, "reason": reason})
    assert rejected.status_code == 200 and "理由：版本号写错&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in rejected.text
    assert "<script>alert" not in rejected.text
    assert status_of(gateway, FIRST) == "registered" and _pending(first) == []


def test_test_activate_roll_back_and_retire_in_the_console(gateway: Gateway, tmp_path: Path) -> None:
    client, csrf = console(gateway, Role.SYSTEM_ADMIN)
    base = f"/console/adapters/{SECTOR}"
    activated = client.post(f"{base}/versions/{FIRST}/activate", data={"csrf": csrf})
    assert activated.status_code == 200 and "版本已启用" in activated.text
    assert gateway.registry.get(SECTOR).version == FIRST

    second_version(gateway, tmp_path)
    untested = client.post(f"{base}/versions/{SECOND}/activate", data={"csrf": csrf})
    assert untested.status_code == 409 and "version-untested" in untested.text
    tested = client.post(f"{base}/versions/{SECOND}/test", data={"csrf": csrf})
    assert tested.status_code == 200 and "测试已完成" in tested.text
    assert gateway.bundles.get(SECTOR, SECOND).test_outcome == "accepted"
    client.post(f"{base}/versions/{SECOND}/activate", data={"csrf": csrf})
    assert (status_of(gateway, FIRST), status_of(gateway, SECOND)) == ("inactive", "active")

    rolled = client.post(f"{base}/rollback", data={"csrf": csrf})
    assert rolled.status_code == 200 and "已回退" in rolled.text
    assert (status_of(gateway, FIRST), status_of(gateway, SECOND)) == ("active", "inactive")
    retired = client.post(f"{base}/versions/{SECOND}/retire", data={"csrf": csrf})
    assert retired.status_code == 200 and status_of(gateway, SECOND) == "retired"
    refused = client.post(f"{base}/versions/{FIRST}/retire", data={"csrf": csrf})
    assert refused.status_code == 409 and "bundle-conflict" in refused.text and status_of(gateway, FIRST) == "active"
    actions = {r.action for r in gateway.ledger.records(Filters(AUDIT, sector=None), 1000)}
    assert {"POST /console/adapters/{sector}/rollback",
            "POST /console/adapters/{sector}/versions/{version}/retire"} <= actions


def test_a_rehearsal_in_the_console_runs_the_versions_rehearsal_file_and_shows_its_result(
        make_gateway: Callable[..., Gateway]) -> None:
    with CivilAffairsSimulator() as sector:
        gateway = make_gateway(bundles=(), sector_endpoints={"civil_affairs": sector.url})
        version = gateway.bundles.register(pack_folder(default_bundles_dir() / "civil_affairs"), "test").version
        client, csrf = console(gateway, Role.SECTOR_ADMIN, sector="civil_affairs")
        rehearsed = client.post(f"/console/adapters/civil_affairs/versions/{version}/rehearse", data={"csrf": csrf})
    assert rehearsed.status_code == 200 and "预演已完成" in rehearsed.text, rehearsed.text
    assert "<strong>passed</strong>（4/4 通过" in rehearsed.text
    assert gateway.bundles.get("civil_affairs", version).rehearsal_outcome == "passed"


def test_a_preview_renders_the_request_escaped_and_bad_json_changes_nothing(gateway: Gateway) -> None:
    client, csrf = console(gateway, Role.OPERATOR)
    base = f"/console/adapters/{SECTOR}"
    client.post(f"{base}/versions/{FIRST}/activate", data={"csrf": csrf})
    preview = client.post(f"{base}/preview", data={"csrf": csrf, "operation": "housing_fund_balance",
                                                   "params": '{"id_number": "<b>110101199003074514</b>"}'})
    assert preview.status_code == 200, preview.text
    shown = re.search(r'<pre class="preview">(.*?)</pre>', preview.text, re.S)
    assert shown is not None and "/api/v2/accounts/%3Cb%3E110101199003074514" in shown[1]
    assert "&#34;method&#34;: &#34;GET&#34;" in shown[1] and "<b>" not in preview.text  # escaped, all of it
    before = [v.public() for v in gateway.bundles.versions(SECTOR)]
    bad = client.post(f"{base}/preview", data={"csrf": csrf, "operation": "housing_fund_balance",
                                               "params": '{"id_number": '})
    assert bad.status_code == 422 and "不是有效的 JSON" in bad.text
    assert "{&#34;id_number&#34;: " in bad.text  # what was typed stays in the form, escaped
    assert [v.public() for v in gateway.bundles.versions(SECTOR)] == before


def test_a_sector_admin_sees_and_acts_on_their_own_sector_only(gateway: Gateway) -> None:
    client, csrf = console(gateway, Role.SECTOR_ADMIN, sector=OTHER)
    listing = client.get("/console/adapters").text
    assert f"/console/adapters/{OTHER}" in listing and f"/console/adapters/{SECTOR}" not in listing
    assert client.get(f"/console/adapters/{SECTOR}").status_code == 403
    for action in ("test", "activate", "retire"):
        answer = client.post(f"/console/adapters/{SECTOR}/versions/{FIRST}/{action}", data={"csrf": csrf})
        assert answer.status_code == 403 and 'urn:yiwang:problem:forbidden' in answer.text
    assert client.post(f"/console/adapters/{SECTOR}/rollback", data={"csrf": csrf}).status_code == 403
    assert status_of(gateway, FIRST) == "registered"


# --- certificates ------------------------------------------------------------------------------------------


def test_certificates_show_days_left_mark_the_nearing_and_rotate_after_confirming(gateway: Gateway) -> None:
    ca = TestCA()
    old, new = ca.issue("gjj client", days=10), ca.issue("gjj client", days=365)
    for issued in (old, new):
        gateway.certs.import_pem("gjj-client", issued.cert_pem, key_pem(issued.key), sector=SECTOR, actor="test")
    client, csrf = console(gateway, Role.SECURITY_ADMIN)
    listing = client.get("/console/certificates").text
    assert '<tr class="expiring">' in listing and "（即将到期）" in listing
    assert re.search(r"\b(9|10) 天", listing) and "PRIVATE KEY" not in listing
    assert re.search(r'<td data-label="到期">' + BEIJING_TIME.pattern + "</td>", listing)  # not ISO text

    confirm = client.get("/console/certificates/gjj-client/rotate")
    assert confirm.status_code == 200 and "确认轮换" in confirm.text
    rotated = client.post("/console/certificates/gjj-client/rotate", data={"csrf": csrf, "overlap_days": ""})
    assert rotated.status_code == 200 and "已轮换" in rotated.text, rotated.text
    assert [v.status for v in gateway.certs.versions("gjj-client")] == ["superseded", "current"]
    assert "（即将到期）" not in rotated.text

    theirs, their_csrf = console(gateway, Role.SECTOR_ADMIN, sector=OTHER)
    assert "gjj-client" not in theirs.get("/console/certificates").text
    assert theirs.post("/console/certificates/gjj-client/retire", data={"csrf": their_csrf}).status_code == 403
    assert client.get("/console/certificates/gjj-client/retire").status_code == 200
    retired = client.post("/console/certificates/gjj-client/retire", data={"csrf": csrf, "version": "1"})
    assert retired.status_code == 200, retired.text
    assert [v.status for v in gateway.certs.versions("gjj-client")] == ["retired", "current"]


# --- audit -------------------------------------------------------------------------------------------------


def test_the_audit_log_pages_and_filters_and_verify_shows_every_chain_intact(gateway: Gateway) -> None:
    for n in range(55):
        gateway.ledger.audit("identity:paging", "paging", f"row {n}", {"n": n}, SECTOR if n % 2 else None,
                             case_no=f"CASE{n}")
    client, _ = console(gateway, Role.AUDITOR)
    first = client.get("/console/audit", params={"action": "paging"})
    assert first.status_code == 200 and first.text.count("<tr>") == 50 + 1  # the header row, then 50
    following = re.search(r'<a href="/console/audit\?([^"]+)" rel="next">', first.text)
    assert following is not None
    rest = client.get("/console/audit?" + following[1].replace("&amp;", "&"))
    assert rest.text.count("<tr>") == 5 + 1 and "row 54" in rest.text and 'rel="next"' not in rest.text
    by_case = client.get("/console/audit", params={"case_no": "CASE7", "sector": SECTOR})
    assert "row 7" in by_case.text and "row 9" not in by_case.text
    bad = client.get("/console/audit", params={"since": "yesterday"})
    assert bad.status_code == 422 and "不是时间" in bad.text

    verified = client.get("/console/audit/verify")
    assert verified.status_code == 200 and "完好" in verified.text and "发现问题" not in verified.text

    changed = gateway.ledger.records(Filters(AUDIT, action="paging"))[2]
    tamper(gateway.engine, f"UPDATE ledger_records SET actor = 'identity:someone_else' WHERE id = {changed.id}")
    broken = client.get("/console/audit/verify").text
    assert "发现问题" in broken and f'<th scope="row" data-label="链">{changed.chain}</th>' in broken
    assert f"第 {changed.seq} 条（记录编号 {changed.id}）" in broken and "<code>changed</code>" in broken


# --- CSRF --------------------------------------------------------------------------------------------------


def test_every_change_without_the_csrf_token_is_refused_and_changes_nothing(make: Callable[..., Gateway]) -> None:
    gateway = make(four_eyes=True)
    requester, csrf = console(gateway, Role.SYSTEM_ADMIN)
    requester.post(f"/console/adapters/{SECTOR}/versions/{FIRST}/activate", data={"csrf": csrf})
    (pending,) = _pending(requester)
    ca = TestCA()
    for issued in (ca.issue("a"), ca.issue("b")):
        gateway.certs.import_pem("csrf-cert", issued.cert_pem, key_pem(issued.key), actor="test")
    values = {"sector": SECTOR, "version": FIRST, "name": "csrf-cert", "approval_id": pending}
    deciders = {"/console/certificates": Role.SECURITY_ADMIN}
    app = create_app(gateway)
    posts = sorted(p for p in console_routes(app, "POST") if p.startswith(tuple(f"/console/{n}" for n in ADMIN_PAGES)))
    assert len(posts) == 10
    state = (_statuses(gateway), [v.status for v in gateway.certs.versions()], _pending(requester))
    for path in posts:
        role = next((r for prefix, r in deciders.items() if path.startswith(prefix)), Role.SYSTEM_ADMIN)
        client, _ = console(gateway, role)
        target = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
        form = {"operation": "housing_fund_balance", "params": "{}", "reason": "x"}
        for data in (form, {**form, "csrf": "forged"}):
            answer = client.post(target, data=data, follow_redirects=False)
            assert answer.status_code == 403 and CSRF_REFUSED in answer.text, (path, answer.text)
    assert (_statuses(gateway), [v.status for v in gateway.certs.versions()], _pending(requester)) == state


def _statuses(gateway: Gateway) -> list[str]:
    return [v.status for v in gateway.bundles.versions()]
