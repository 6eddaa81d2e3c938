"""`yiwang demo`: the whole path on the embedded default, as the hall, windows, departments and sector IT
teams see it.

Starts the four sector simulators on loopback (social security SOAP 1.1; housing fund REST + OAuth2;
civil affairs SOAP 1.2 + WS-Security; public security REST + HMAC, answering by callback), registers and
activates their shipped bundles with the public command (`yiwang adapters register/activate`), starts the
gateway (SQLite under var/demo, in-process dispatcher, real HTTP on an ephemeral port), issues API keys for
each role and prints them, then plays cases over HTTP and prints each timeline:
  1. a complete application decided by the social-security system, issued, picked up and evaluated;
  2. one that system denies;
  3. an incomplete one: a supplement notice, a supplement round, then accepted and decided;
  4. a parallel-approval matter (职工退休一件事) decided by two sector systems, social security and the
     housing provident fund, for an applicant aged 60 on the green channel; the result sent by express;
  5. a civil-affairs case (最低生活保障审批) over SOAP 1.2;
  6. a public-security case (居民身份证换领) whose decision comes back by a signed callback;
and two synchronous queries (housing-fund balance, marriage record).
Part of the composition root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from adapters.bundle import load_bundle
from adapters.registry import default_bundles_dir
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.app import Gateway, build_gateway, create_app
from gateway.auth import Role
from gateway.config import Settings
from gateway.persistence.repository import DeadLetter
from gateway.persistence.uow import UnitOfWork
from gateway.serving import serve_in_thread

DEMO_DIR = Path("var") / "demo"
UNEMPLOYMENT = "12150200MB1A00010L3000805001000"  # 失业保险金申领
PENSION_TRANSFER = "12150200MB1A00010L3000805002000"  # 职工基本养老保险关系转移接续
RETIREMENT = "12150200MB1A00010L3000805005000"  # 职工退休一件事 (parallel: social security + housing fund)
SUBSISTENCE = "11150204MB0C00050L4000113002000"  # 最低生活保障审批 (青山区民政局)
ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领 (昆都仑区分局)
UNEMPLOYMENT_MATERIALS = [{"name": "居民身份证"}, {"name": "解除或终止劳动合同证明"}, {"name": "本人银行账户"}]


class DemoFailed(Exception):
    pass


@dataclass
class Desk:
    """One HTTP client per role, each with its own API key."""

    hall: httpx.Client
    window: httpx.Client
    issuing: httpx.Client

    def close(self) -> None:
        for client in (self.hall, self.window, self.issuing):
            client.close()


SECRETS = {  # the simulators' default credentials, as a deployment would provide them (never in bundles)
    "YIWANG_SECRET_GJJ_CLIENT_ID": "yiwang",
    "YIWANG_SECRET_GJJ_CLIENT_SECRET": "s3cret",
    "YIWANG_SECRET_MZ_PASSWORD": "mz-secret",
    "YIWANG_SECRET_GA_HMAC": "ga-secret",
}
SECTORS = ("social_security", "housing_fund", "civil_affairs", "public_security")


def run_demo(console: Console, base: Settings, fresh: bool = True, timeout_s: float = 60) -> bool:
    if fresh:
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
    for name, value in SECRETS.items():
        os.environ.setdefault(name, value)
    with ExitStack() as stack:
        systems: dict[str, Any] = {
            "social_security": stack.enter_context(SocialSecuritySimulator(decision_delay_ms=800)),
            "housing_fund": stack.enter_context(HousingFundSimulator(decision_delay_ms=800)),
            "civil_affairs": stack.enter_context(CivilAffairsSimulator(decision_delay_ms=800)),
            "public_security": stack.enter_context(PublicSecuritySimulator(decision_delay_ms=800)),
        }
        console.rule("[bold]Yiwang 一网 demo")
        _register_bundles(console, base)
        settings = replace(base, var_dir=DEMO_DIR, database_url=None, poll_interval_ms=200,
                           sector_endpoints={s: sim.url for s, sim in systems.items()})
        gateway = build_gateway(settings)
        stack.callback(gateway.close)
        base_url = stack.enter_context(serve_in_thread(create_app(gateway)))
        systems["public_security"].callback_url = f"{base_url}/callbacks/public_security"
        for sector, sim in systems.items():
            console.print(f"{sector:16} {sim.url}")
        console.print(f"{'gateway':16} {base_url}   database {settings.db_url}\n")
        desk = _desk(console, gateway, base_url)
        stack.callback(desk.close)
        ok = _play(console, desk, timeout_s)
        ok = _outage(console, gateway, systems["social_security"], desk, timeout_s) and ok
        ok = _logs_intact(console, gateway) and ok
        console.print({s: sim.counters["cases_created"] for s, sim in systems.items()}, "cases applied per sector")
    console.rule("[green]demo succeeded" if ok else "[red]demo failed")
    return ok


def _register_bundles(console: Console, base: Settings) -> None:
    """As a sector IT team would: the public command, once per shipped bundle."""
    env = {**os.environ, "YIWANG_VAR_DIR": str(DEMO_DIR), "YIWANG_LOG_LEVEL": "warning"}
    env.pop("YIWANG_DATABASE_URL", None)
    yiwang = str(Path(sys.executable).with_name("yiwang"))
    for sector in SECTORS:
        folder = default_bundles_dir() / sector
        version = load_bundle(folder).version
        for args in (["register", str(folder)], ["activate", sector, version]):
            done = subprocess.run([yiwang, "adapters", *args], env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise DemoFailed(f"yiwang adapters {' '.join(args)}: {done.stderr or done.stdout}")
        console.print(f"$ yiwang adapters register {folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder} && yiwang adapters activate {sector} {version}")


def _desk(console: Console, gateway: Gateway, base_url: str) -> Desk:
    table = Table("role", "identity", "API key", title="API keys issued for the demo (shown once)",
                  title_justify="left")
    clients = []
    for name, role in (("online hall", Role.HALL_CLIENT), ("city window", Role.WINDOW),
                       ("issuing window", Role.ISSUING_WINDOW)):
        identity, key = gateway.keys.issue(f"demo {name}", [role])
        table.add_row(name, identity.id, key)
        clients.append(httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30))
    console.print(table, "")
    return Desk(*clients)


def _play(console: Console, desk: Desk, timeout_s: float) -> bool:
    scenes: list[tuple[str, Callable[[Desk, float], str]]] = [
        ("1 完整申请：失业保险金申领 → 部门系统准予 → 统一出证 → 窗口领取 → 好差评", _approved_and_delivered),
        ("2 部门系统不予办理：累计缴费不满一年", _denied),
        ("3 缺少材料 → 补齐补正告知 → 补正一轮 → 受理 → 准予 → 窗口领取", _supplement_round),
        ("4 并联审批：职工退休一件事（社保 SOAP + 公积金 REST 两个部门系统），绿色通道，快递送达", _parallel_approval),
        ("5 民政：最低生活保障审批（SOAP 1.2 + WS-Security）", _civil_affairs),
        ("6 公安：居民身份证换领（HMAC 签名，部门系统回调办理结果）", _public_security),
    ]
    ok = True
    for title, scene in scenes:
        try:
            case_no = scene(desk, timeout_s)
        except (DemoFailed, httpx.HTTPError, KeyError) as exc:
            console.print(f"[red]{title}: {exc}")
            ok = False
            continue
        _print_timeline(console, title, desk.window.get(f"/v1/cases/{case_no}").json(),
                        desk.window.get(f"/v1/cases/{case_no}/events").json())
    return _queries(console, desk) and ok


def _approved_and_delivered(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.hall, {"matter_code": UNEMPLOYMENT, "channel": "online_pc",
                               "applicant": {"name": "王建国", "id_number": "150203198503120039",
                                             "phone": "13847100001"},
                               "materials": UNEMPLOYMENT_MATERIALS,
                               "form": {"insured_months": 36, "separation_date": "2026-10-31"}})
    case = _wait(desk.hall, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "王建国"})
    _post(desk.hall, case["case_no"], "evaluation", {"level": "very_satisfied", "channel": "mobile",
                                                     "text": "全程网办，很方便"})
    return str(case["case_no"])


def _denied(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.hall, {"matter_code": UNEMPLOYMENT, "channel": "mobile",
                               "applicant": {"name": "李敏", "id_number": "150202197806054429"},
                               "materials": UNEMPLOYMENT_MATERIALS,
                               "form": {"insured_months": 8, "separation_date": "2026-11-02"}})
    case = _wait(desk.hall, case["case_no"], "closed", timeout_s)
    _expect("不满12个月" in (case["opinion"] or ""), f"expected the sector's reason, got {case['opinion']!r}")
    return str(case["case_no"])


def _supplement_round(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.window, {"matter_code": PENSION_TRANSFER, "channel": "city_window",
                                 "applicant": {"name": "张丽华", "id_number": "15020419901120152X"},
                                 "materials": [{"name": "居民身份证"}],
                                 "form": {"from_region": "150102", "from_agency": "呼和浩特市新城区社会保险事业服务中心"}})
    _expect(case["state"] == "supplement_required" and case["missing_materials"] == ["参保缴费凭证"],
            f"expected a supplement notice for 参保缴费凭证, got {case['state']} {case['missing_materials']}")
    notice = desk.window.get(f"/v1/cases/{case['case_no']}/documents/supplement_notice").json()
    _expect(notice["missing_materials"] == ["参保缴费凭证"], f"the notice lists {notice['missing_materials']}")
    _post(desk.window, case["case_no"], "supplement", {"materials": [{"name": "参保缴费凭证"}]})
    case = _wait(desk.window, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "张丽华"})
    return str(case["case_no"])


def _parallel_approval(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.window, {"matter_code": RETIREMENT, "channel": "city_window",
                                 "applicant": {"name": "赵桂兰", "id_number": "150203196604150035",
                                               "phone": "13904720004"},
                                 "materials": [{"name": "居民身份证"}, {"name": "本人人事档案"},
                                               {"name": "本人银行账户"}],
                                 "form": {"retirement_date": "2026-04-15", "employer_name": "包头钢铁（集团）有限责任公司",
                                          "withdraw_provident_fund": True}})
    _expect(case["green_channel"] == ["aged_60_plus"], f"expected the green channel, got {case['green_channel']}")
    _expect([t["via"] for t in case["tasks"]] == ["sector_system", "sector_system"],
            f"expected two sector systems' tasks, got {case['tasks']}")
    case = _wait(desk.window, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "express", "tracking_no": "EMS9876543210"})
    return str(case["case_no"])


def _civil_affairs(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.window, {"matter_code": SUBSISTENCE, "channel": "city_window",
                                 "applicant": {"name": "刘志强", "id_number": "150204198809210041",
                                               "phone": "13614720005"},
                                 "materials": [{"name": n} for n in ("最低生活保障申请书", "居民身份证", "居民户口簿",
                                                                     "家庭收入和财产状况声明", "家庭经济状况核对授权书")]})
    case = _wait(desk.window, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "刘志强"})
    return str(case["case_no"])


def _public_security(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.window, {"matter_code": ID_CARD_RENEWAL, "channel": "city_window",
                                 "applicant": {"name": "王建国", "id_number": "150203198503120039"},
                                 "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]})
    case = _wait(desk.window, case["case_no"], "approved", timeout_s)  # decided by the sector's callback
    _issue_and_deliver(desk, case, {"method": "express", "tracking_no": "SF5550001111"})
    return str(case["case_no"])


def _outage(console: Console, gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk,
            timeout_s: float) -> bool:
    """7: the social security system is down for longer than its retry policy: the message becomes a
    dead letter kept for operators, and the case stays accepted; nothing is lost."""
    title = "7 部门系统故障：社保系统宕机 → 重试用尽 → 死信（运维可见，案件保持已受理）"
    sector.set_fault("fail")
    try:
        case = _submit(desk.hall, {"matter_code": UNEMPLOYMENT, "channel": "mobile",
                                   "applicant": {"name": "孙晓东", "id_number": "15020519921212001X",
                                                 "phone": "13514720007"},
                                   "materials": UNEMPLOYMENT_MATERIALS,
                                   "form": {"insured_months": 20, "separation_date": "2026-11-10"}})
        letters = _wait_for_dead_letter(gateway, case["case_no"], timeout_s)
    except DemoFailed as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    finally:
        sector.set_fault(None)
    table = Table("id", "sector", "operation", "class", "attempts", "error", title=f"{title}\n{case['case_no']}",
                  title_justify="left")
    for d in letters:
        table.add_row(str(d.id), d.sector, d.operation, d.error_class, str(d.attempts), d.error_message[:60])
    state = desk.hall.get(f"/v1/cases/{case['case_no']}").json()["state"]
    console.print(table, f"case state: {state}   (operators list dead letters: `yiwang ops dead-letters`)\n")
    return True


def _logs_intact(console: Console, gateway: Gateway) -> bool:
    """What `yiwang audit verify` checks: every record of the audit and message logs still as written."""
    gateway.ledger.checkpoint()
    report = gateway.ledger.verify()
    colour = "green" if report.intact else "red"
    console.print(f"[{colour}]audit and message logs: {report.records} records in {report.chains} hash chains, "
                  f"{report.checkpoints} signed checkpoints, {'intact' if report.intact else report.problems}[/]")
    return report.intact


def _wait_for_dead_letter(gateway: Gateway, case_no: str, timeout_s: float) -> list[DeadLetter]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
            letters = list(uow.dead_letters.list(case_no=case_no))
        if letters:
            return letters
        time.sleep(0.1)
    raise DemoFailed(f"{case_no}: no dead letter after {timeout_s} s")


def _queries(console: Console, desk: Desk) -> bool:
    ok = True
    for name, params in (("housing_fund_balance", {"id_number": "150203196604150035"}),
                         ("marriage_record", {"id_number": "150203198503120039"})):
        answer = desk.hall.post(f"/v1/queries/{name}", json={"params": params})
        console.print(f"query {name}: {answer.status_code} {answer.json().get('result', answer.json())}")
        ok = ok and answer.status_code == 200
    return ok


def _issue_and_deliver(desk: Desk, case: dict[str, Any], delivery: dict[str, Any]) -> None:
    number = f"BT{case['case_no'][-14:]}"
    _post(desk.issuing, case["case_no"], "certificate", {"name": "办理结果通知书", "number": number,
                                                         "issuer": "包头市政务服务中心统一出证窗口"})
    _post(desk.issuing, case["case_no"], "delivery", delivery)


def _submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/cases", json=body, headers={"Idempotency-Key": f"demo-{uuid.uuid4()}"})
    _expect(answer.status_code == 201, f"submit failed {answer.status_code} {answer.text}")
    return answer.json()  # type: ignore[no-any-return]


def _post(client: httpx.Client, case_no: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/v1/cases/{case_no}/{action}", json=body)
    _expect(answer.status_code == 200, f"{action} failed {answer.status_code} {answer.text}")
    return answer.json()  # type: ignore[no-any-return]


def _wait(client: httpx.Client, case_no: str, state: str, timeout_s: float) -> dict[str, Any]:
    return _wait_for(client, case_no, lambda c: c["state"] == state, timeout_s, f"state {state}")


def _wait_for(client: httpx.Client, case_no: str, done: Callable[[dict[str, Any]], bool], timeout_s: float,
              what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        case: dict[str, Any] = client.get(f"/v1/cases/{case_no}").json()
        if done(case):
            return case
        if time.monotonic() > deadline:
            raise DemoFailed(f"{case_no} did not reach {what} (it is {case['state']})")
        time.sleep(0.1)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


def _print_timeline(console: Console, title: str, view: dict[str, Any], events: list[dict[str, Any]]) -> None:
    table = Table("#", "Beijing time", "step", "state", "actor", "reason", title=f"{title}\n{view['case_no']}",
                  title_justify="left")
    for e in events:
        table.add_row(str(e["seq"]), e["at"][11:23], e["trigger"], e["to_state"], e["actor"], e["reason"])
    console.print(table)
    facts = {k: view[k] for k in ("state_label", "receipt_no", "promised_by", "green_channel", "opinion",
                                  "completion", "evaluation") if view[k]}
    facts["tasks"] = [f"{t['department']}({'牵头' if t['lead'] else '协办'}): {t['state']}" for t in view["tasks"]]
    console.print(facts, "\n")
