"""The console's causes, search, CSV export and cancel (ops/console/dead_letters.py on ops/letter_actions.py):
letters found by correlation id and by a part of their cause; letters differing only in their ids grouped into one
cause, linked to the list filtered by it; a group replayed through plan and confirmation, exactly that group; the
list exported as the API exports it (BOM, header, masked, audited once); a running run cancelled from its page,
its rest dead again. Every new change refused without the CSRF token; a sector administrator kept to their own.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from ops.console import dead_letters as console_letters
from ops.dead_letters import DeadLetterFilter
from tests.api.test_console_dead_letters import (
    ID_NUMBER,
    LETTERS,
    RUNS,
    Desk,
    listed,
    outage,
    outage_gateway,
    page_ok,
    run_of,
    until_done,
)
from tests.support.cases import outbox_statuses, submit
from tests.support.console import sign_in
from tests.support.gateways import drain

CAUSES, EXPORT = f"{LETTERS}/causes", f"{LETTERS}/export.csv"
SCRIPT = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
CAUSE_LINK = re.compile(r'<a href="(/console/dead-letters\?[^"]*cause=[^"]+)"><code>([^<]+)</code></a>')


@pytest.fixture
def desk(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Desk:
    gateway = outage_gateway(make_gateway, simulator)
    return Desk(gateway, create_app(gateway))


def two_causes(desk: Desk, simulator: SocialSecuritySimulator) -> tuple[list[int], list[int]]:
    """Two letters of one outage (a dead load balancer: they differ only in their case numbers and keys) and one
    of another fault: the first group's ids and the second's."""
    outage(desk.gateway, simulator, count=2)
    first = sorted(x.id for x in desk.gateway.dead_letters.page(DeadLetterFilter()).items)
    simulator.set_fault("malformed")
    submit(desk.gateway)
    drain(desk.gateway, lambda: outbox_statuses(desk.gateway) == [("submit_case", "dead")] * 3)
    every = {x.id for x in desk.gateway.dead_letters.page(DeadLetterFilter()).items}
    return first, sorted(every - set(first))


def unescaped(link: str) -> str:
    return link.replace("&amp;", "&")


def test_letters_are_found_by_correlation_id_and_by_a_part_of_their_cause(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    first, second = two_causes(desk, simulator)
    operator, _ = desk.client(Role.OPERATOR)
    with desk.gateway.engine.begin() as conn:
        outbox_id = conn.execute(select(t.dead_letters.c.outbox_id).where(t.dead_letters.c.id == first[1])).scalar()
        conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id).values(correlation_id="req-console-7"))
    html = page_ok(operator.get(LETTERS, params={"correlation_id": "req-console-7"}))
    assert listed(html) == [first[1]] and 'value="req-console-7"' in html
    cause = desk.gateway.dead_letters.get(second[0]).cause
    assert cause and cause not in desk.gateway.dead_letters.get(first[0]).cause  # type: ignore[operator]
    word = cause.split(": ", 1)[1][:12].upper()  # a part of the cause, in another case
    assert listed(page_ok(operator.get(LETTERS, params={"text": word}))) == second
    assert listed(page_ok(operator.get(LETTERS, params={"text": "no such words"}))) == []
    # The form says what the text searches, and a too-long text is a problem page.
    form = page_ok(operator.get(LETTERS))
    assert 'name="correlation_id"' in form and 'name="text"' in form and "归一化后的错误原因" in form
    assert operator.get(LETTERS, params={"text": "x" * 201}).status_code == 422


def test_the_causes_group_letters_differing_only_in_ids_and_link_to_them(
        desk: Desk, simulator: SocialSecuritySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_causes(desk, simulator)
    operator, _ = desk.client(Role.OPERATOR)
    html = page_ok(operator.get(CAUSES))
    assert 'id="total">2<' in html and ID_NUMBER not in html and "北京时间" in html
    links = CAUSE_LINK.findall(html)
    assert len(links) == 2
    (big_link, big_cause), (small_link, _) = links  # the largest group first
    assert big_cause.replace("&lt;", "<").replace("&gt;", ">") == desk.gateway.dead_letters.get(first[0]).cause
    assert sorted(listed(page_ok(operator.get(unescaped(big_link))))) == first
    assert sorted(listed(page_ok(operator.get(unescaped(small_link))))) == second
    assert f'href="/console/dead-letters/{first[0]}"' in html  # the group's sample: its oldest letter
    assert "重放这一组" in html and "丢弃这一组" in html
    # Paged as the API pages them (one a page here), and back.
    monkeypatch.setattr(console_letters, "PAGE_SIZE", 1)
    one = page_ok(operator.get(CAUSES))
    ahead = re.search(r'<a href="([^"]+)" rel="next">下一页</a>', one)
    assert ahead is not None and CAUSE_LINK.findall(one) == links[:1]
    two = page_ok(operator.get(unescaped(ahead[1])))
    assert CAUSE_LINK.findall(two) == links[1:] and 'rel="next"' not in two
    # The list links to the causes under its own filter.
    assert 'href="/console/dead-letters/causes?status=dead"' in page_ok(operator.get(LETTERS))


def test_a_group_is_replayed_through_plan_and_confirmation_exactly(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    first, second = two_causes(desk, simulator)
    operator, csrf = desk.client(Role.OPERATOR)
    cause = desk.gateway.dead_letters.get(first[0]).cause
    simulator.set_fault(None)
    plan = page_ok(operator.post(f"{RUNS}/plan", data={"csrf": csrf, "which": "all", "cause": cause}))
    assert 'id="count">2<' in plan and sorted(listed(plan)) == first and "确认重放 2 条" in plan
    assert f'name="cause" value="{cause}"'.replace("<", "&lt;").replace(">", "&gt;") in plan
    run_id = run_of(operator.post(RUNS, data={"csrf": csrf, "which": "all", "cause": cause,
                                              "reason": "负载均衡已恢复", "mapping": "active"},
                                  follow_redirects=False))
    until_done(operator, run_id)
    assert [desk.status(i) for i in first] == ["replayed", "replayed"]
    assert [desk.status(i) for i in second] == ["dead"]
    [(_, _, outcome, detail)] = desk.audit("ops replay many")
    assert outcome == f"run {run_id} started: 2 to replay" and detail["filter"]["cause"] == cause
    # A discard of a group goes through the same plan first.
    other = desk.gateway.dead_letters.get(second[0]).cause
    discard = page_ok(operator.post("/console/discards/plan", data={"csrf": csrf, "which": "all", "cause": other}))
    assert 'id="count">1<' in discard and listed(discard) == second


def test_the_list_is_exported_as_the_api_exports_it(desk: Desk, simulator: SocialSecuritySimulator) -> None:
    cases = outage(desk.gateway, simulator, count=2)
    operator, _ = desk.client(Role.OPERATOR)
    link = re.search(r'<a href="([^"]+)" download>导出 CSV</a>', page_ok(operator.get(LETTERS, params={
        "case_no": cases[0]})))
    assert link is not None and "case_no=" in link[1]
    answer = operator.get(unescaped(link[1]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="dead-letters.csv"'
    assert answer.content.startswith("\ufeff".encode())
    text = answer.content.decode("utf-8-sig")
    assert text.startswith("id,case_no,sector,operation,error_class,cause,error_message,")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["case_no"] for r in rows] == [cases[0]] and ID_NUMBER not in text
    [(actor, subject, outcome, detail)] = desk.audit("ops export dead letters")
    assert (subject, outcome, detail["filter"]["case_no"]) == ("dead_letters", "1 exported", cases[0])
    assert actor.startswith("identity:")
    bad = operator.get(EXPORT, params={"matter": "nope"})
    assert bad.status_code == 422 and len(desk.audit("ops export dead letters")) == 1


def running_run(desk: Desk, by: str = "identity:x") -> int:
    """A run of three letters, one replayed (one batch of one) and two waiting: a run caught mid-way."""
    letters = desk.gateway.dead_letters
    letters.batch = 1
    run = letters.start_replay(DeadLetterFilter(sector="social_security"), by=by, reason="mid-run")
    assert letters.continue_replay(run.id, max_batches=1).replayed == 1
    return run.id


def test_a_running_run_is_cancelled_from_its_page_its_rest_dead_again(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator, count=3)
    operator, csrf = desk.client(Role.OPERATOR)
    run_id = running_run(desk)
    page = page_ok(operator.get(f"{RUNS}/{run_id}"))
    assert f'action="/console/replays/{run_id}/cancel"' in page and "进度：进行中" in page
    blank = operator.post(f"{RUNS}/{run_id}/cancel", data={"csrf": csrf, "reason": " "})
    assert blank.status_code == 422 and desk.gateway.dead_letters.run(run_id).status == "running"
    cancelled = operator.post(f"{RUNS}/{run_id}/cancel", data={"csrf": csrf, "reason": "部门又不可用"},
                              follow_redirects=False)
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"{RUNS}/{run_id}?released=2"
    shown = page_ok(operator.get(cancelled.headers["location"]))
    assert "进度：已取消" in shown and "已重放 1 条，释放 2 条" in shown and "部门又不可用" in shown
    assert "every 1s" not in shown and "/cancel" not in shown  # ended: no refresh, no button
    run = desk.gateway.dead_letters.run(run_id)
    assert (run.status, run.replayed, run.skipped, run.total) == ("cancelled", 1, 2, 3)
    statuses = [x.status for x in desk.gateway.dead_letters.page(DeadLetterFilter(status=None)).items]
    assert sorted(statuses) == ["dead", "dead", "replayed"]  # replayed + released == total
    [(_, subject, outcome, detail)] = desk.audit("ops cancel replay")
    assert (subject, detail["reason"]) == (f"replay_run:{run_id}", "部门又不可用")
    assert outcome == f"run {run_id} cancelled: 1 replayed, 2 released of 3"
    assert "已取消" in page_ok(operator.get(RUNS))
    again = operator.post(f"{RUNS}/{run_id}/cancel", data={"csrf": csrf, "reason": "again"})
    assert again.status_code == 409 and len(desk.audit("ops cancel replay")) == 1
    # A done run shows no button: the released letters replayed again, to the end.
    letters = desk.gateway.dead_letters
    done = letters.continue_replay(letters.start_replay(DeadLetterFilter(), by="identity:x", reason="again").id)
    assert (done.status, done.replayed) == ("done", 2)
    assert "/cancel" not in page_ok(operator.get(f"{RUNS}/{done.id}"))


def test_a_cancel_without_the_csrf_token_is_refused_and_changes_nothing(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator, count=2)
    operator, _ = desk.client(Role.OPERATOR)
    run_id = running_run(desk)
    for token in (None, "forged"):
        data = {"reason": "x"} if token is None else {"reason": "x", "csrf": token}
        answer = operator.post(f"{RUNS}/{run_id}/cancel", data=data)
        assert answer.status_code == 403 and "csrf" in answer.text, token
    assert desk.gateway.dead_letters.run(run_id).status == "running" and desk.audit("ops cancel replay") == []


def test_a_sector_admin_sees_groups_exports_and_cancels_their_own_only(
        desk: Desk, simulator: SocialSecuritySimulator) -> None:
    outage(desk.gateway, simulator, count=2)
    me, own_key = desk.gateway.keys.issue("社保管理员", [Role.SECTOR_ADMIN], sector="social_security")
    own_id, own = me.id, TestClient(desk.app)
    own_csrf = sign_in(own, own_key)
    other, other_csrf = desk.client(Role.SECTOR_ADMIN, name="公积金管理员", sector="housing_fund")
    assert len(CAUSE_LINK.findall(page_ok(own.get(CAUSES)))) == 1
    assert "丢弃这一组" not in own.get(CAUSES).text  # replays yes, discards no
    assert CAUSE_LINK.findall(page_ok(other.get(CAUSES))) == []
    assert other.get(CAUSES, params={"sector": "social_security"}).status_code == 403
    assert len(list(csv.reader(io.StringIO(own.get(EXPORT).content.decode("utf-8-sig"))))) == 3
    assert len(list(csv.reader(io.StringIO(other.get(EXPORT).content.decode("utf-8-sig"))))) == 1  # header only
    assert other.get(EXPORT, params={"sector": "social_security"}).status_code == 403
    for role in (Role.AUDITOR, Role.SYSTEM_ADMIN):
        client, _ = desk.client(role, name=str(role))
        assert client.get(CAUSES).status_code == 403 and client.get(EXPORT).status_code == 403
    # Another's run: another sector's is unknown; the own sector's, started by someone else, is not theirs to stop.
    run_id = running_run(desk)
    assert other.post(f"{RUNS}/{run_id}/cancel", data={"csrf": other_csrf, "reason": "x"}).status_code == 404
    assert own.post(f"{RUNS}/{run_id}/cancel", data={"csrf": own_csrf, "reason": "x"}).status_code == 403
    assert desk.gateway.dead_letters.run(run_id).status == "running"
    desk.gateway.dead_letters.cancel_replay(run_id, by="identity:x", reason="released for the next")
    mine = running_run(desk, by=f"identity:{own_id}")
    cancelled = own.post(f"{RUNS}/{mine}/cancel", data={"csrf": own_csrf, "reason": SCRIPT}, follow_redirects=False)
    assert cancelled.status_code == 303 and desk.gateway.dead_letters.run(mine).status == "cancelled"
    shown = page_ok(own.get(cancelled.headers["location"]))
    assert SCRIPT not in shown and ESCAPED in shown  # what they typed is text, never markup


def test_a_cause_a_sector_wrote_is_shown_as_text(desk: Desk, simulator: SocialSecuritySimulator) -> None:
    [case_no] = outage(desk.gateway, simulator)
    with desk.gateway.engine.begin() as conn:  # as a sector's answer could make it: the cause keeps its words
        conn.execute(update(t.dead_letters).where(t.dead_letters.c.case_no == case_no).values(cause=SCRIPT))
    operator, _ = desk.client(Role.OPERATOR)
    for html in (page_ok(operator.get(CAUSES)), page_ok(operator.get(LETTERS, params={"cause": SCRIPT}))):
        assert SCRIPT not in html and ESCAPED in html
