"""The console's dead-letter and replay pages (ops/console/dead_letters.py): a real dead letter made by a
sector outage, found through the filter form, read whole (masked; plain only where the role may, audited
first), replayed one by one or in bulk after a plan page shows the count, discarded with a reason and the
case's outcome, its case corrected at the window — each through the desk or the case service, with the API's
audit records; every change refused without the CSRF token; each role kept to what the API lets it do.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from ops.console import dead_letters as console_letters
from ops.dead_letters import DeadLetterFilter
from tests.support.cases import outbox_statuses, state, submit
from tests.support.console import key_of, sign_in
from tests.support.gateways import COMPLETE_APPLICATION, drain

LETTERS, RUNS = "/console/dead-letters", "/console/replays"
ID_NUMBER = COMPLETE_APPLICATION["applicant"]["id_number"]
LETTER_LINK = re.compile(r'href="/console/dead-letters/(\d+)"')
RUN_PATH = re.compile(r"^/console/replays/(\d+)$")


@dataclass
class Desk:
    """A gateway and a signed-in console client (with its CSRF token) per role."""

    gateway: Gateway
    app: Any

    def client(self, *roles: Role, name: str = "值班员", **scope: str) -> tuple[TestClient, str]:
        client = TestClient(self.app)
        return client, sign_in(client, key_of(self.gateway, *roles, name=name, **scope))

    def audit(self, action: str) -> list[tuple[str, str | None, str | None, Any]]:
        ledger = self.gateway.ledger
        return [(r.actor, r.subject, r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT), 5000)
                if r.action == action]

    def status(self, letter_id: int) -> str:
        return self.gateway.dead_letters.get(letter_id).status


def outage_gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    """A gateway sending social security's messages to the simulator, one attempt per delivery: the dead letters
    stay under the sector's circuit-breaker threshold (5)."""
    return make_gateway(sector_endpoints={"social_security": simulator.url}, retry_attempts=1)


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    return outage_gateway(make_gateway, simulator)


@pytest.fixture
def desk(gateway: Gateway) -> Desk:
    return Desk(gateway, create_app(gateway))


def outage(gateway: Gateway, simulator: SocialSecuritySimulator, count: int = 1) -> list[str]:
    """`count` cases whose submission died at a failing social-security system: their case numbers."""
    simulator.set_fault("fail")
    cases = [submit(gateway) for _ in range(count)]
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")] * count)
    return cases


def listed(html: str) -> list[int]:
    """The dead letters a list page links to, in order, once each."""
    return list(dict.fromkeys(int(x) for x in LETTER_LINK.findall(html)))


def page_ok(answer: Any) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.text)


def run_of(answer: Any) -> int:
    """The run a confirmed bulk replay redirected to."""
    assert answer.status_code == 303, answer.text
    found = RUN_PATH.match(answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return int(found[1])


def until_done(client: TestClient, run_id: int) -> str:
    """The run's page once it says it is done (the thread the confirmation started finishes it)."""
    deadline = time.monotonic() + 20
    while "进度：已完成" not in (html := page_ok(client.get(f"{RUNS}/{run_id}"))):
        assert time.monotonic() < deadline, html
        time.sleep(0.05)
    return html


# --- finding ------------------------------------------------------------------------------------------------


def test_the_list_filters_counts_and_pages_masked(desk: Desk, simulator: SocialSecuritySimulator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cases = outage(desk.gateway, simulator, count=3)
    operator, _ = desk.client(Role.OPERATOR)
    html = page_ok(operator.get(LETTERS))
    everyone = listed(html)
    assert len(everyone) == 3 and 'id="total">3<' in html
    assert ID_NUMBER not in html and 'data-label="错误类别"' in html and 'name="ids"' in html
    # The counts link to the filter they count.
    count_link = "/console/dead-letters?status=dead&amp;sector=social_security&amp;error_class=sector_fault"
    assert f'<a href="{count_link}">3<' in html
    assert listed(page_ok(operator.get(count_link.replace("&amp;", "&")))) == everyone
    for params, expected in [({"case_no": cases[1]}, 1), ({"sector": "housing_fund"}, 0),
                             ({"error_class": "sector_fault", "sector": "social_security"}, 3),
                             ({"status": "replayed"}, 0), ({"since": "2000-01-01T00:00", "until": ""}, 3),
                             ({"until": "2000-01-01T00:00"}, 0), ({"sector": "", "version": ""}, 3)]:
        assert len(listed(page_ok(operator.get(LETTERS, params=params)))) == expected, params
    # A bad filter is a problem page, changing nothing.
    bad = operator.get(LETTERS, params={"matter": "nope"})
    assert bad.status_code == 422 and "invalid-request" in bad.text

    # Paged by the desk's cursor (two a page here): 下一页 and back with 上一页.
    monkeypatch.setattr(console_letters, "PAGE_SIZE", 2)
    first = page_ok(operator.get(LETTERS))
    ahead = re.search(r'<a href="([^"]+)" rel="next">下一页</a>', first)
    assert ahead is not None and 'rel="prev"' not in first
    second = page_ok(operator.get(ahead[1].replace("&amp;", "&")))
    assert listed(first) + listed(second) == everyone and 'rel="next"' not in second
    back = re.search(r'<a href="([^"]+)" rel="prev">上一页</a>', second)
    assert back is not None
    assert listed(page_ok(operator.get(back[1].replace("&amp;", "&")))) == listed(first)


def test_one_letter_whole_masked_then_plain_audited_first(desk: Desk, simulator: SocialSecuritySimulator) -> None:
    [case_no] = outage(desk.gateway, simulator)
    [letter_id] = [x.id for x in desk.gateway.dead_letters.page(DeadLetterFilter()).items]
    own, _ = desk.client(Role.SECTOR_ADMIN, name="社保管理员", sector="social_security")
    other, _ = desk.client(Role.SECTOR_ADMIN, name="公积金管理员", sector="housing_fund")
    auditor, _ = desk.client(Role.AUDITOR, name="审计员")

    html = page_ok(own.get(f"{LETTERS}/{letter_id}"))
    assert ID_NUMBER not in html and ID_NUMBER[:4] in html
    for part in ("规范消息", "渲染后的请求", "部门最后的应答", "每次尝试", "办件时间线", "sector_fault", "503"):
        assert part in html, part
    assert f'href="/console/cases/{case_no}"' in html and "?unmasked=1" in html
    assert "丢弃" not in html.split("<h2>处理</h2>")[1].split("</form>")[1]  # a sector admin has no discard form
    assert desk.audit("read unmasked dead letter") == []

    assert other.get(f"{LETTERS}/{letter_id}").status_code == 404
    assert other.get(f"{LETTERS}/{letter_id}", params={"unmasked": 1}).status_code == 404
    assert auditor.get(f"{LETTERS}/{letter_id}").status_code == 403
    assert auditor.get(LETTERS).status_code == 403
    assert desk.audit("read unmasked dead letter") == []

    plain = page_ok(own.get(f"{LETTERS}/{letter_id}", params={"unmasked": 1}))
    assert ID_NUMBER in plain
    [(actor, subject, outcome, detail)] = desk.audit("read unmasked dead letter")
    assert (subject, outcome, detail["name"]) == (f"dead_letter:{letter_id}", "shown", "社保管理员")
    assert "canonical_payload" in detail["fields"] and actor.startswith("identity:")


# --- putting right ------------------------------------------------------------------------------------------


def test_replay_one_then_the_case_proceeds_once_the_sector_is_back(desk: Desk,
                                                                  simulator: SocialSecuritySimulator) -> None:
    [case_no] = outage(desk.gateway, simulator)
    operator, csrf = desk.client(Role.OPERATOR)
    [letter_id] = listed(page_ok(operator.get(LETTERS)))
    simulator.set_fault(None)

    blank = operator.post(f"{LETTERS}/{letter_id}/replay", data={"csrf": csrf, "reason": "  "})
    assert blank.status_code == 422 and "reason-required" in blank.text
    assert desk.status(letter_id) == "dead"
    done = operator.post(f"{LETTERS}/{letter_id}/replay",
                         data={"csrf": csrf, "reason": "社保恢复（INC-7）", "mapping": "original"},
                         follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{LETTERS}/{letter_id}?done=replayed"
    assert "已重放" in page_ok(operator.get(done.headers["location"]))
    drain(desk.gateway, lambda: state(desk.gateway, case_no) == "approved")
    assert simulator.counters["cases_created"] == 1
    [(_, subject, outcome, detail)] = desk.audit("ops replay dead letter")
    assert (subject, outcome, detail["reason"], detail["mapping"]) == \
        (f"dead_letter:{letter_id}", "replayed", "社保恢复（INC-7）", "original")
    assert detail["idempotency_key"] == f"{case_no}:1:submit_case"
    again = operator.post(f"{LETTERS}/{letter_id}/replay", data={"csrf": csrf, "reason": "again"})
    assert again.status_code == 409 and "not-replayable" in again.text


def test_a_selection_shows_its_count_then_a_run_replays_it_with_live_progress(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    cases = outage(desk.gateway, simulator, count=3)
    operator, csrf = desk.client(Role.OPERATOR)
    letters = listed(page_ok(operator.get(LETTERS)))
    chosen = sorted(letters)[:2]
    simulator.set_fault(None)

    plan = operator.post(f"{RUNS}/plan", data={"csrf": csrf, "which": "selected", "ids": chosen})
    assert 'id="count">2<' in page_ok(plan) and ID_NUMBER not in plan.text and "确认重放 2 条" in plan.text
    assert sorted(listed(plan.text)) == chosen
    assert [x for x in desk.audit("ops replay dry run")][0][2] == "2 would be replayed"
    assert outbox_statuses(desk.gateway) == [("submit_case", "dead")] * 3  # a plan changes nothing
    nothing = operator.post(f"{RUNS}/plan", data={"csrf": csrf, "which": "selected"})
    assert nothing.status_code == 422

    hidden = dict(re.findall(r'<input type="hidden" name="(which)" value="([^"]+)"', plan.text))
    assert hidden == {"which": "selected"}
    run_id = run_of(operator.post(RUNS, data={"csrf": csrf, "which": "selected", "ids": chosen,
                                              "reason": "恢复后重放所选", "mapping": "active"},
                                  follow_redirects=False))
    html = until_done(operator, run_id)
    assert '<progress id="run-bar" max="2" value="2">' in html and "已重放 2 条" in html
    assert "every 1s" not in html  # done: the partial no longer asks again
    partial = page_ok(operator.get(f"{RUNS}/{run_id}", headers={"HX-Request": "true"}))
    assert "<html" not in partial and 'id="run-progress"' in partial
    assert sorted(desk.status(i) for i in letters) == ["dead", "replayed", "replayed"]
    [(_, subject, outcome, detail)] = desk.audit("ops replay many")
    assert (subject, outcome) == (f"replay_run:{run_id}", f"run {run_id} started: 2 to replay")
    assert sorted(detail["filter"]["ids"]) == chosen and detail["reason"] == "恢复后重放所选"
    assert f'href="/console/replays/{run_id}"' in page_ok(operator.get(RUNS))
    drain(desk.gateway, lambda: sorted(state(desk.gateway, c) for c in cases).count("approved") == 2)


def test_a_running_run_refreshes_itself_and_a_sector_admin_sees_only_their_own_runs(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator, count=2)
    operator, _ = desk.client(Role.OPERATOR)
    own, own_csrf = desk.client(Role.SECTOR_ADMIN, name="社保管理员", sector="social_security")
    other, _ = desk.client(Role.SECTOR_ADMIN, name="公积金管理员", sector="housing_fund")
    # A run recorded but not yet continued: what a page shows mid-run (frozen, nothing replayed yet).
    frozen = desk.gateway.dead_letters.start_replay(DeadLetterFilter(sector="social_security"),
                                                        by="identity:x", reason="mid-run", mapping="active")
    html = page_ok(own.get(f"{RUNS}/{frozen.id}"))
    assert f'hx-get="/console/replays/{frozen.id}"' in html and 'hx-trigger="every 1s"' in html
    assert "进度：进行中" in html and '<progress id="run-bar" max="2" value="0">' in html
    partial = page_ok(own.get(f"{RUNS}/{frozen.id}", headers={"HX-Request": "true"}))
    assert "<html" not in partial and 'hx-trigger="every 1s"' in partial
    assert other.get(f"{RUNS}/{frozen.id}").status_code == 404
    assert f"/console/replays/{frozen.id}" in page_ok(own.get(RUNS))
    assert f"/console/replays/{frozen.id}" not in page_ok(other.get(RUNS))
    desk.gateway.dead_letters.continue_replay(frozen.id)
    done = page_ok(operator.get(f"{RUNS}/{frozen.id}", headers={"HX-Request": "true"}))
    assert "every 1s" not in done and "进度：已完成" in done
    # A sector admin may start a run of their own sector (not of another).
    refused = own.post(f"{RUNS}/plan", data={"csrf": own_csrf, "sector": "housing_fund"})
    assert refused.status_code == 403


def test_discard_with_reason_and_outcome_changes_the_case_as_the_api_would(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    cases = outage(desk.gateway, simulator, count=3)
    operator, csrf = desk.client(Role.OPERATOR)
    first, second, third = sorted(listed(page_ok(operator.get(LETTERS))))
    no_outcome = operator.post(f"{LETTERS}/{first}/discard", data={"csrf": csrf, "reason": "x"})
    assert no_outcome.status_code == 422 and desk.status(first) == "dead"
    done = operator.post(f"{LETTERS}/{first}/discard",
                         data={"csrf": csrf, "reason": "申请人已撤回", "case_outcome": "void"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{LETTERS}/{first}?done=discarded"
    assert desk.status(first) == "discarded"
    [(_, subject, outcome, detail)] = desk.audit("ops discard dead letter")
    assert (subject, outcome, detail["reason"], detail["case_outcome"]) == \
        (f"dead_letter:{first}", "discarded", "申请人已撤回", "void")

    # In bulk: the plan's count, then the discard and its result.
    plan = operator.post("/console/discards/plan", data={"csrf": csrf, "which": "all", "sector": "social_security"})
    assert 'id="count">2<' in page_ok(plan) and "确认丢弃 2 条" in plan.text
    result = operator.post("/console/discards", data={"csrf": csrf, "which": "all", "sector": "social_security",
                                                      "reason": "重复提交", "case_outcome": "return"})
    assert 'id="count">2<' in page_ok(result)
    assert [desk.status(i) for i in (second, third)] == ["discarded", "discarded"]
    completions = [str(desk.gateway.service.get(c).completion) for c in cases]
    assert sorted(completions) == ["作废办结", "退回办结", "退回办结"]
    [(_, subject, outcome, detail)] = desk.audit("ops discard many")
    assert (subject, outcome, detail["reason"], detail["case_outcome"]) == \
        ("dead_letters", "2 discarded, 0 kept", "重复提交", "return")


def test_a_window_identity_corrects_the_case_with_the_case_service(desk: Desk,
                                                                   simulator: SocialSecuritySimulator) -> None:
    [case_no] = outage(desk.gateway, simulator)
    operator, operator_csrf = desk.client(Role.OPERATOR)
    [letter_id] = listed(page_ok(operator.get(LETTERS)))
    assert "在窗口更正办件" not in page_ok(operator.get(f"{LETTERS}/{letter_id}"))
    window, csrf = desk.client(Role.OPERATOR, Role.WINDOW, name="窗口值班员")
    assert "在窗口更正办件" in page_ok(window.get(f"{LETTERS}/{letter_id}"))
    refused = operator.post(f"{LETTERS}/{letter_id}/correction",
                            data={"csrf": operator_csrf, "reason": "x", "phone": "13800000002"})
    assert refused.status_code == 403 and "forbidden" in refused.text  # no window role: nothing changes
    before = desk.gateway.service.get(case_no).version
    done = window.post(f"{LETTERS}/{letter_id}/correction",
                       data={"csrf": csrf, "reason": "电话号码有误", "phone": "13800000002"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{LETTERS}/{letter_id}?done=corrected"
    case = desk.gateway.service.get(case_no)
    assert case.applicant.phone == "13800000002" and case.version > before
    assert any(e.reason == "电话号码有误" for e in desk.gateway.dead_letters.timeline(case_no))


# --- refusals -----------------------------------------------------------------------------------------------


def test_every_change_without_the_csrf_token_is_refused_and_changes_nothing(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator)
    operator, _ = desk.client(Role.OPERATOR, Role.WINDOW)
    [letter_id] = listed(page_ok(operator.get(LETTERS)))
    for path, data in [(f"{LETTERS}/{letter_id}/replay", {"reason": "x"}),
                       (f"{LETTERS}/{letter_id}/discard", {"reason": "x", "case_outcome": "void"}),
                       (f"{LETTERS}/{letter_id}/correction", {"reason": "x", "phone": "13800000002"}),
                       (f"{RUNS}/plan", {"which": "all"}), (RUNS, {"which": "all", "reason": "x"}),
                       ("/console/discards/plan", {"which": "all"}),
                       ("/console/discards", {"which": "all", "reason": "x", "case_outcome": "void"})]:
        for token in (None, "forged"):
            answer = operator.post(path, data=data if token is None else {**data, "csrf": token})
            assert answer.status_code == 403 and "csrf" in answer.text, (path, token)
    assert desk.status(letter_id) == "dead" and desk.gateway.dead_letters.runs() == []
    for action in ("ops replay dead letter", "ops discard dead letter", "ops replay many", "ops discard many",
                   "ops replay dry run", "ops discard dry run"):
        assert desk.audit(action) == [], action


def test_each_role_does_only_what_the_api_lets_it(desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator)
    own, own_csrf = desk.client(Role.SECTOR_ADMIN, name="社保管理员", sector="social_security")
    [letter_id] = listed(page_ok(own.get(LETTERS)))
    assert "丢弃全部符合条件的" not in own.get(LETTERS).text
    for path, data in [(f"{LETTERS}/{letter_id}/discard", {"reason": "x", "case_outcome": "void"}),
                       ("/console/discards/plan", {"which": "all"}),
                       ("/console/discards", {"which": "all", "reason": "x", "case_outcome": "void"})]:
        assert own.post(path, data={**data, "csrf": own_csrf}).status_code == 403, path
    assert desk.status(letter_id) == "dead"
    for role in (Role.AUDITOR, Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN):
        client, csrf = desk.client(role, name=str(role))
        for path in (LETTERS, f"{LETTERS}/{letter_id}", RUNS):
            assert client.get(path).status_code == 403, (role, path)
        for path, data in [(f"{LETTERS}/{letter_id}/replay", {"reason": "x"}), (f"{RUNS}/plan", {"which": "all"}),
                           (RUNS, {"which": "all", "reason": "x"})]:
            answer = client.post(path, data={**data, "csrf": csrf})
            assert answer.status_code == 403 and "控制台" in answer.text, (role, path)
    assert desk.status(letter_id) == "dead" and desk.audit("ops replay dead letter") == []
    # The sector admin replays their own; what they typed is shown as text, never as markup.
    script = '<script>alert("本部门恢复")</script>'
    replayed = own.post(f"{LETTERS}/{letter_id}/replay", data={"csrf": own_csrf, "reason": script},
                        follow_redirects=False)
    assert replayed.status_code == 303 and desk.status(letter_id) == "replayed"
    shown = page_ok(own.get(replayed.headers["location"]))
    assert script not in shown and "&lt;script&gt;alert(&#34;本部门恢复&#34;)&lt;/script&gt;" in shown


def test_the_runs_page_newest_first_and_back(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [desk.gateway.dead_letters.start_replay(DeadLetterFilter(ids=frozenset({999})), by="identity:x",
                                                   reason=f"run {n}").id for n in range(3)]
    operator, _ = desk.client(Role.OPERATOR)
    monkeypatch.setattr(console_letters, "PAGE_SIZE", 2)
    run_links = re.compile(r'href="/console/replays/(\d+)"')
    first = page_ok(operator.get(RUNS))
    assert [int(x) for x in run_links.findall(first)] == runs[:0:-1] and 'rel="prev"' not in first
    ahead = re.search(r'<a href="([^"]+)" rel="next">下一页</a>', first)
    assert ahead is not None
    second = page_ok(operator.get(ahead[1].replace("&amp;", "&")))
    assert [int(x) for x in run_links.findall(second)] == runs[:1] and 'rel="next"' not in second
    back = re.search(r'<a href="([^"]+)" rel="prev">上一页</a>', second)
    assert back is not None and run_links.findall(page_ok(operator.get(back[1].replace("&amp;", "&")))) == \
        run_links.findall(first)
