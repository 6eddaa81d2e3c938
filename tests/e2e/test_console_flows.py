"""The operators' console in chromium, end to end against a served gateway whose dispatcher runs: a dead letter
made by a real sector outage found, read and replayed until its case is approved; a bulk replay of a dozen letters
confirmed with the count shown, left and returned to mid-run while its progress updates in place, finished with
every letter replayed once; what each role may not do (the auditor, another sector's administrator, a sector
administrator's missing discard, a change without the CSRF token); and no page showing an ID number in full
unless the operator asked for it — audited first. The pages of these flows pass `check_page` (axe, no sideways
scroll, no console error or CSP violation) and give the dead-letter screenshots.

PostgreSQL only: the bulk run is held mid-way by a row lock the test takes on one letter's outbox message — a
real second writer, as a process continuing the same run would be — which SQLite, locking its whole file, cannot
hold without stopping every page too. The pages themselves are toured on SQLite by test_console_browser.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit.ledger import AUDIT, Filters
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from tests.support.browser import LiveGateway, PageLog, served_gateway
from tests.support.console_browser import CONSOLE, check_page, document_error, sign_in
from tests.support.gateways import COMPLETE_APPLICATION

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from adapters.simulators.base import SimulatorBase

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("live_db", ["postgres"], indirect=True)]

LETTERS, RUNS = CONSOLE + "/dead-letters", CONSOLE + "/replays"
ID_NUMBER = COMPLETE_APPLICATION["applicant"]["id_number"]
SECTOR = "social_security"
BULK = 12
BATCH = 2  # letters per transaction of a bulk run: several steps to watch
HELD = 7  # the run stops before this letter (1-based, by id) while the test holds its message
REASON_LABEL = "原因（必填，记入审计日志）"


@pytest.fixture(scope="module")
def live(live_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """The module's served gateway with its dispatcher running, as `yiwang serve` runs it: deliveries, retries
    and dead letters happen while the pages are open. One attempt per delivery: the outages' failures in a row
    stay under the sector's circuit-breaker threshold (5), whatever order the tests run in. Replay runs go in
    small batches (the desk's `batch`). The scheduled jobs tick once, at the start: `replay-runs` would carry a
    held run on past the held letter, and the run's page must show where the run stands."""
    with served_gateway(live_db, tmp_path_factory.mktemp("live-var"), retry_attempts=1,
                        clock_interval_ms=3_600_000) as served:
        served.gateway.dead_letters.batch = BATCH
        served.gateway.start_dispatcher()  # stopped by the gateway's close
        yield served


def eventually(what: str, condition: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not in {seconds} s: {what}"
        time.sleep(0.05)
    return found


def api(live: LiveGateway, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    answer = httpx.get(f"{live.url}{path}", params=params, headers=headers or live.keys.operator)
    assert answer.status_code == 200, answer.text
    return answer.json()


def submitted(live: LiveGateway, count: int = 1) -> list[str]:
    cases = []
    for _ in range(count):
        answer = httpx.post(f"{live.url}/v1/cases", json=COMPLETE_APPLICATION, headers=live.keys.hall)
        assert answer.status_code == 201, answer.text
        cases.append(answer.json()["case_no"])
    return cases


def dead_letters_of(live: LiveGateway, cases: list[str]) -> list[dict[str, Any]]:
    """The dead letters of `cases` (one each), once the running dispatcher has made them; by id."""
    def made() -> list[dict[str, Any]] | None:
        found = [item for case in cases for item in api(live, "/v1/ops/dead-letters", case_no=case)["items"]]
        return sorted(found, key=lambda letter: letter["id"]) if len(found) == len(cases) else None
    return list(eventually(f"{len(cases)} dead letters", made))


def outage(live: LiveGateway, count: int = 1, mode: str = "fail") -> list[dict[str, Any]]:
    """`count` cases sent to a social-security system that is down (`fail`: a dead load balancer's 503 — real
    calls over HTTP; the retries exhaust) or answers garbage (`malformed`, which trips no circuit breaker: many
    letters at once); their dead letters. The system is back afterwards."""
    simulator: SimulatorBase = live.simulators[SECTOR]
    simulator.set_fault(mode)
    try:
        return dead_letters_of(live, submitted(live, count))
    finally:
        simulator.set_fault(None)


def case_state(live: LiveGateway, case_no: str) -> str:
    return str(api(live, f"/v1/cases/{case_no}", live.keys.window)["state"])


def unmasked_reads(live: LiveGateway, letter_id: int) -> list[str]:
    """The audit records of an unmasked read of the letter: their actors."""
    ledger = live.gateway.ledger
    return [r.actor for r in ledger.records(Filters(AUDIT), 5000)
            if r.action == "read unmasked dead letter" and r.subject == f"dead_letter:{letter_id}"]


def shows_no_id_number(page: Page) -> None:
    """Neither the page's text nor its markup (hidden fields, attributes) holds an ID number in full."""
    assert ID_NUMBER not in page.content(), f"{page.url} shows {ID_NUMBER} in full"


def filter_by(page: Page, base_url: str, label: str, value: str) -> None:
    page.goto(f"{base_url}{LETTERS}")
    page.get_by_label(label, exact=True).fill(value)
    with page.expect_navigation():
        page.get_by_role("button", name="筛选", exact=True).click()


def listed_ids(page: Page) -> list[int]:
    links = page.locator("table.wide tbody td[data-label='编号'] a").all_inner_texts()
    return [int(text) for text in links]


# --- 1. a real outage, found, read, replayed ---------------------------------------------------------------


def test_a_dead_letter_from_an_outage_is_found_replayed_and_its_case_approved(
        live: LiveGateway, page: Page, page_log: PageLog) -> None:
    [letter] = outage(live)
    assert letter["error_class"] == "sector_fault" and letter["status"] == "dead"
    sign_in(page, live.url, live.key(Role.OPERATOR, name="值班员 王芳"))

    filter_by(page, live.url, "办件编号", letter["case_no"])
    assert listed_ids(page) == [letter["id"]]
    assert page.locator("#total").inner_text() == "1"
    shows_no_id_number(page)
    check_page(page, page_log, "dead-letters")

    with page.expect_navigation():
        page.get_by_role("link", name=str(letter["id"]), exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"死信 {letter['id']}"
    assert page.get_by_text("503").first.is_visible()  # the sector's own answer, as it came
    shows_no_id_number(page)
    check_page(page, page_log, "dead-letter")

    replay = page.locator("form[action$='/replay']")
    replay.get_by_label(REASON_LABEL).fill("社保系统已恢复，重新投递")
    replay.get_by_label("当前启用的映射版本").check()
    with page.expect_navigation(url=re.compile(r"\?done=replayed$")):
        replay.get_by_role("button", name="重放").click()
    assert page.get_by_role("status").inner_text().startswith("已重放")
    shows_no_id_number(page)

    eventually("the case approved", lambda: case_state(live, letter["case_no"]) == "approved")
    [after] = api(live, "/v1/ops/dead-letters", case_no=letter["case_no"], status="any")["items"]
    assert after["status"] == "replayed" and after["replay_reason"] == "社保系统已恢复，重新投递"
    assert page_log.problems() == []


# --- 2. a bulk replay, left and returned to mid-run ------------------------------------------------------


def test_a_bulk_replay_runs_on_while_the_operator_is_away_and_loses_nothing(
        live: LiveGateway, page: Page, page_log: PageLog) -> None:
    letters = outage(live, BULK, mode="malformed")
    error_class = letters[0]["error_class"]
    assert {x["error_class"] for x in letters} == {error_class} and error_class != "sector_fault"
    sign_in(page, live.url, live.key(Role.OPERATOR, name="值班员 王芳"))
    filter_by(page, live.url, "错误类别", error_class)
    assert page.locator("#total").inner_text() == str(BULK)

    with page.expect_navigation():
        page.get_by_role("button", name="重放全部符合条件的").click()
    assert page.get_by_role("heading", level=1).inner_text() == "确认批量重放"
    assert page.locator("#count").inner_text() == str(BULK)
    shows_no_id_number(page)
    check_page(page, page_log, "replay-plan")

    with held_message(live, letters[HELD - 1]["id"]) as release:
        page.get_by_label(REASON_LABEL).fill("格式错误已由部门修复")
        with page.expect_navigation(url=re.compile(r"/console/replays/\d+$")):
            page.get_by_role("button", name=f"确认重放 {BULK} 条").click()
        run_id = int(page.url.rsplit("/", 1)[1])
        progress = page.locator("#run-progress")
        done_before = (HELD - 1) // BATCH * BATCH
        progress.get_by_text(f"已重放 {done_before} 条，跳过 0 条，共 {BULK} 条").wait_for()
        assert progress.get_by_role("heading").inner_text() == "进度：进行中"
        shows_no_id_number(page)
        check_page(page, page_log, "replay-run")

        with page.expect_navigation():  # away: the runs list, where it is still going
            page.get_by_role("link", name="全部批量重放").click()
        row = page.locator("tbody tr", has=page.get_by_role("link", name=str(run_id), exact=True))
        assert row.locator("td[data-label='状态']").inner_text() == "进行中"
        shows_no_id_number(page)
        check_page(page, page_log, "replays")
        with page.expect_navigation():  # and back
            row.get_by_role("link", name=str(run_id), exact=True).click()
        progress.get_by_text(f"已重放 {done_before} 条").wait_for()
        page.evaluate("() => { window.__stayed = true; }")  # gone if the page were loaded again
        release()

    # htmx brings the rest in place, the page never reloaded
    progress.get_by_role("heading", name="进度：已完成").wait_for(timeout=20_000)
    assert progress.get_by_text(f"已重放 {BULK} 条，跳过 0 条，共 {BULK} 条").is_visible()
    assert page.evaluate("() => window.__stayed") is True

    run = api(live, f"/v1/ops/replays/{run_id}")
    assert (run["status"], run["replayed"], run["skipped"], run["total"]) == ("done", BULK, 0, BULK)
    replayed = api(live, "/v1/ops/dead-letters", error_class=error_class, status="replayed", limit=100)
    assert sorted(x["id"] for x in replayed["items"]) == [x["id"] for x in letters]
    assert api(live, "/v1/ops/dead-letters", error_class=error_class, status="dead")["total"] == 0
    with live.gateway.engine.connect() as conn:  # each message reopened once, none twice
        replays = conn.execute(select(t.outbox.c.replays).where(
            t.outbox.c.operation == "submit_case",
            t.outbox.c.case_no.in_([x["case_no"] for x in letters]))).scalars().all()
    assert sorted(replays) == [1] * BULK
    assert page_log.problems() == []


class held_message:  # noqa: N801 - used as a context manager, named as the state it makes
    """A second writer holding one dead letter's outbox message (SELECT … FOR UPDATE) until released: a replay
    batch reaching that letter waits for it, as it would for another process continuing the same run."""

    def __init__(self, live: LiveGateway, letter_id: int) -> None:
        self.outbox_id = live.gateway.dead_letters.get(letter_id).outbox_id
        self.conn = live.gateway.engine.connect()  # a session of its own, apart from every unit of work

    def __enter__(self) -> Callable[[], None]:
        self.conn.begin()
        self.conn.execute(select(t.outbox.c.id).where(t.outbox.c.id == self.outbox_id).with_for_update())
        return self.release

    def release(self) -> None:
        if self.conn.in_transaction():
            self.conn.rollback()

    def __exit__(self, *_: object) -> None:
        self.release()
        self.conn.close()


# --- 3. what each role may not do -----------------------------------------------------------------------


def test_each_role_is_kept_from_what_it_may_not_do(live: LiveGateway, page: Page, page_log: PageLog) -> None:
    [letter] = outage(live)
    story = f"{live.url}{LETTERS}/{letter['id']}"

    sign_in(page, live.url, live.key(Role.AUDITOR, name="审计员 赵敏"))
    answer = page.goto(f"{live.url}{LETTERS}")
    assert answer is not None and answer.status == 403
    assert page.get_by_role("heading", level=1).inner_text() == "“死信”不对该角色开放"

    page.context.clear_cookies()
    sign_in(page, live.url, live.key(Role.SECTOR_ADMIN, name="公积金 管理员", sector="housing_fund"))
    answer = page.goto(story)
    assert answer is not None and answer.status == 404
    assert page.get_by_text(str(letter["case_no"])).count() == 0

    page.context.clear_cookies()
    sign_in(page, live.url, live.key(Role.SECTOR_ADMIN, name="社保 管理员", sector=SECTOR))
    answer = page.goto(story)
    assert answer is not None and answer.status == 200
    assert page.locator("form[action$='/replay']").count() == 1
    assert page.locator("form[action$='/discard']").count() == 0
    assert page.get_by_role("button", name="丢弃", exact=True).count() == 0

    page.context.clear_cookies()
    sign_in(page, live.url, live.key(Role.OPERATOR, name="值班员 王芳"))
    page.goto(story)
    # a forged change: the page's own cookie, no token (as another site's form would post it)
    forged = page.request.post(f"{story}/replay", form={"reason": "伪造", "mapping": "active"})
    assert forged.status == 403
    # the page's form with its token taken out
    replay = page.locator("form[action$='/replay']")
    replay.locator("input[name='csrf']").evaluate("field => field.remove()")
    replay.get_by_label(REASON_LABEL).fill("没有令牌")
    with page.expect_navigation() as answered:
        replay.get_by_role("button", name="重放").click()
    assert answered.value is not None and answered.value.status == 403
    assert page.get_by_role("heading", level=1).count() == 1
    after = api(live, f"/v1/ops/dead-letters/{letter['id']}")
    assert after["status"] == "dead" and after["replayed_at"] is None
    assert [e for e in page_log.console_errors if not e.startswith(document_error(403))
            and not e.startswith(document_error(404))] == []
    assert page_log.csp_violations == [] and page_log.uncaught == []


# --- 4. no ID number in full without an audit record ------------------------------------------------------


def test_no_page_shows_an_id_number_in_full_unless_asked_and_audited(
        live: LiveGateway, page: Page, page_log: PageLog) -> None:
    [letter] = outage(live)
    story = f"{live.url}{LETTERS}/{letter['id']}"
    sign_in(page, live.url, live.key(Role.OPERATOR, name="值班员 王芳"))
    for path in (CONSOLE, LETTERS, f"{LETTERS}?case_no={letter['case_no']}", f"{LETTERS}?status=any",
                 f"{LETTERS}/{letter['id']}", RUNS):
        page.goto(f"{live.url}{path}")
        shows_no_id_number(page)
    page.goto(f"{live.url}{LETTERS}?case_no={letter['case_no']}")
    with page.expect_navigation():
        page.get_by_role("button", name="重放所选").click()  # nothing chosen: refused, on a page of its own
    shows_no_id_number(page)
    page.goto(f"{live.url}{LETTERS}?case_no={letter['case_no']}")
    page.get_by_label(f"选择死信 {letter['id']}").check()
    with page.expect_navigation():
        page.get_by_role("button", name="重放所选").click()
    assert page.locator("#count").inner_text() == "1"
    shows_no_id_number(page)

    page.goto(story)
    assert unmasked_reads(live, letter["id"]) == []
    with page.expect_navigation():
        page.get_by_role("link", name="显示明文").click()
    assert ID_NUMBER in page.content()
    readers = unmasked_reads(live, letter["id"])
    assert len(readers) == 1 and readers[0].startswith("identity:")
    with page.expect_navigation():
        page.get_by_role("link", name="隐去个人信息").click()
    shows_no_id_number(page)
    assert len(unmasked_reads(live, letter["id"])) == 1
    assert [e for e in page_log.console_errors if not e.startswith(document_error(422))] == []
