"""`yiwang demo`: the whole path on the embedded default, as the hall, windows, departments and sector IT
teams see it.

Starts the four sector simulators on loopback (social security SOAP 1.1; housing fund REST + OAuth2;
civil affairs SOAP 1.2 + WS-Security; public security REST + HMAC, answering by callback; electronic
licence REST + SM2, for scene 11), registers and
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
and two synchronous queries (housing-fund balance, marriage record); then
  7. an outage of the social-security system: retries run out, a dead letter for operators;
  8. a correction (更正) at the window of a case whose message died: the dead letter is superseded and the
     corrected case goes to the sector again under a new round's key;
  9. a dead letter discarded with `--case-outcome back_office`: the department's clerk decides the task
     through the back-office API;
  10. the social-security sector moves to mutual TLS and WS-Security signing: our keys made in the
     certificate store (`yiwang certs csr`), the sector's CA signs them, `yiwang certs import`, its next
     bundle version registered and activated, and a case decided over the new channel;
  11. the electronic licence sector joins with SM2 (国密): our SM2 key and certificate and the sector's
     certificate imported with `yiwang certs import`, its bundle registered, tested and activated (while the
     scenes before play: CLI processes are the slow part), a licence case decided, every request signed with
     our SM2 key and every answer checked against the sector's certificate; the signed text of one request;
  12. (played after scene 6) a sector refusal reaching the window as a supplement request: the social-security
     system refuses a card application without a photo (its code declared final, way `supplement`), the case
     is back at the window listing what the sector said is missing, the window supplements and it is approved.
  13. a certificate fetched from a sector and filled in at unified issuing: the licence sector's status answer
     names the licence it issued, the gateway fetches it (`fetch_certificate`) and prefills it (待出证), the
     issuing window issues it without typing it; the timeline shows the sector's time beside ours.
  14. the province's service-rating platform (好差评), a bundle subscribed to the case event `evaluated`: an
     evaluation at a self-service terminal is delivered to it as a guaranteed delivery, and the platform shows
     the rating it received (level 3 of 5, channel 5, the case and matter).
  15. the province's electronic licence library (电子证照库), subscribed to `certificate_issued`: every certificate
     the scenes issued was filed there as a guaranteed delivery; an applicant then cites her 居民身份证 from the library
     instead of uploading it, and the case shows it `authoritative` with its provenance.
  16. civil affairs behind an isolation gateway (网闸): the ferry. Folders under var/demo/ferry/ stand for the two
     sides, a small thread for the isolation gateway between them (gateway/bootstrap/demo_link.py); the agent of
     the sector's 前置机 is initialised (`yiwang ferry init`), certificates are imported both ways and the agent is
     started (`yiwang ferry serve`) while the scenes before play; the ferry bundle is activated, its carried
     bundle crosses as a signed control batch, and a case is approved across the gap. Then the link loses one
     batch: the agent names the gap (`yiwang ferry state`), an operator resends it (`yiwang ferry resend`), and
     that case is approved too. Last, civil affairs's direct bundle is activated again.
  17. the operators' console: a case's message is left dead (social security was down; it is back), an operator's
     key is issued and the console's address printed, to sign in, find the letter, replay it and see the case
     approved; `yiwang demo --stay` keeps the gateway and the simulators up after the scenes for that.
Part of the composition root. The demo plays the sector teams too, so it names sectors, as no product module
may (tests/unit/test_sectors_stay_out_of_the_product.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from ipaddress import ip_address
from pathlib import Path
from typing import Any, cast

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.console import Console
from rich.table import Table

import ferry
from adapters import default_bundles_dir, load_bundle
from adapters.simulators.base import ServerTls
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.e_licence import ELicenceSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.licence_library import Licence, LicenceLibrarySimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.rating_platform import RatingPlatformSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from adapters.simulators.wssec import MessageSigning
from certstore import sm2_self_signed
from gateway.bootstrap.app import Gateway, build_gateway, create_app
from gateway.bootstrap.demo_link import FolderLink
from gateway.bootstrap.serving import serve_in_thread
from gateway.config import Settings
from gateway.domain.roles import Role
from gateway.persistence.repository import DeadLetter

DEMO_DIR = Path("var") / "demo"
SECTOR_PKI = DEMO_DIR / "social_security-pki"  # the sector's side of scene 10: its CA, server and signing files
MTLS_BUNDLE = ("upgrades", "social_security_mtls")  # under the shipped bundles: social security's next version
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
UNEMPLOYMENT = "12150200MB1A00010L3000805001000"  # 失业保险金申领
PENSION_TRANSFER = "12150200MB1A00010L3000805002000"  # 职工基本养老保险关系转移接续
RETIREMENT = "12150200MB1A00010L3000805005000"  # 职工退休一件事 (parallel: social security + housing fund)
SUBSISTENCE = "11150204MB0C00050L4000113002000"  # 最低生活保障审批 (青山区民政局)
SUBSISTENCE_MATERIALS = ("最低生活保障申请书", "居民身份证", "居民户口簿", "家庭收入和财产状况声明",
                         "家庭经济状况核对授权书")
ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领 (昆都仑区分局)
LICENCE = "11150200MB0H00130B3000116001000"  # 就业创业证电子证照签发 (政务服务和数据管理局): the e_licence sector
LICENCE_PKI = DEMO_DIR / "e_licence-pki"  # scene 11: our SM2 pair and the sector's, as files to import
UNEMPLOYMENT_MATERIALS = [{"name": "居民身份证"}, {"name": "解除或终止劳动合同证明"}, {"name": "本人银行账户"}]
SOCIAL_SECURITY_CARD = "12150200MB1A00010L3000805004000"  # 社会保障卡申领: the sector insists on a photo
SOCIAL_SECURITY_AGENCY = "12150200MB1A00010L"  # 包头市社会保险事业服务中心
FERRY_DIR = DEMO_DIR / "ferry"  # scene 16: near/ is the gateway's YIWANG_FERRY_DIR, far/ the sector's 前置机
FERRY_BUNDLE = ("upgrades", "civil_affairs_ferry")  # under the shipped bundles: civil affairs behind a ferry
FERRY_CHANNEL = "civil_affairs"
BATCH_SEQ = re.compile(r"_(?P<seq>[0-9]{10})_[0-9a-f]{8}")  # a batch file's seq (folders.Naming's pattern)


class DemoFailed(Exception):
    pass


@dataclass
class Desk:
    """One HTTP client per role, each with its own API key."""

    hall: httpx.Client
    window: httpx.Client
    issuing: httpx.Client
    clerk: httpx.Client  # a clerk of the social-security agency (its back office)

    def close(self) -> None:
        for client in (self.hall, self.window, self.issuing, self.clerk):
            client.close()


SECRETS = {  # the simulators' default credentials, as a deployment would provide them (never in bundles)
    "YIWANG_SECRET_GJJ_CLIENT_ID": "yiwang",
    "YIWANG_SECRET_GJJ_CLIENT_SECRET": "s3cret",
    "YIWANG_SECRET_MZ_PASSWORD": "mz-secret",
    "YIWANG_SECRET_GA_HMAC": "ga-secret",
    "YIWANG_SECRET_RATING_PLATFORM_TOKEN": "hcp-token",
    "YIWANG_SECRET_LICENCE_LIBRARY_TOKEN": "dzzzk-token",
}
SECTORS = ("social_security", "housing_fund", "civil_affairs", "public_security")


def run_demo(console: Console, base: Settings, fresh: bool = True, timeout_s: float = 60, *, stay: bool = False,
             port: int = 0) -> bool:
    """Play every scene; `stay`: then keep the gateway (its console) and the simulators up until Ctrl-C."""
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
        licence = LicencePki(LICENCE_PKI)  # scene 11's keys: the simulator needs ours (certificate) and its own
        systems["e_licence"] = stack.enter_context(licence.simulator())
        systems["rating_platform"] = stack.enter_context(RatingPlatformSimulator())  # scene 12
        systems["licence_library"] = stack.enter_context(LicenceLibrarySimulator())  # scene 15
        console.rule("[bold]Yiwang 一网 demo")
        endpoints = {s: sim.url for s, sim in systems.items()}  # the deployment's YIWANG_SECTOR_ENDPOINTS
        _register_bundles(console, endpoints)
        # It only subscribes to evaluations: no harmless call to test it with, so it is activated with --force.
        _register(console, default_bundles_dir() / "rating_platform", endpoints, force=True)
        _register(console, default_bundles_dir() / "licence_library", endpoints, force=True)  # the same
        settings = replace(base, var_dir=DEMO_DIR, database_url=None, poll_interval_ms=200,
                           sector_endpoints=endpoints, ferry_dir=FERRY_DIR / "near", ferry_interval_ms=200)
        gateway = build_gateway(settings)
        stack.callback(gateway.close)
        base_url = stack.enter_context(serve_in_thread(create_app(gateway), port=port))
        systems["public_security"].callback_url = f"{base_url}/callbacks/public_security"
        for sector, sim in systems.items():
            console.print(f"{sector:16} {sim.url}")
        console.print(f"{'gateway':16} {base_url}   database {settings.db_url}\n")
        desk = _desk(console, gateway, base_url)
        stack.callback(desk.close)
        # Scene 11's five `yiwang` commands (seconds each) run while scenes 1-10 play; it shows what they said.
        joining = stack.enter_context(ThreadPoolExecutor(1)).submit(_licence_joins, licence, systems["e_licence"].url)
        # Scene 16's set-up (the agent's init, certificates both ways, the bundle registered) likewise.
        site = FerrySite(FERRY_DIR)
        link = stack.enter_context(site.link())
        ferrying = stack.enter_context(ThreadPoolExecutor(1)).submit(site.set_up, systems["civil_affairs"].url)
        stack.callback(site.stop_agent)
        ok = _play(console, desk, timeout_s)
        ok = _outage(console, gateway, systems["social_security"], desk, timeout_s) and ok
        for scene in (_correction, _back_office):
            ok = scene(console, gateway, systems["social_security"], desk, timeout_s) and ok
        # Before scene 10 replaces the social-security system by one that wants TLS: the letter's replay goes here.
        ok = _left_for_the_console(console, gateway, systems["social_security"], desk, base_url, timeout_s) and ok
        ok = _mutual_tls(console, gateway, endpoints, desk, stack, timeout_s) and ok
        ok = _electronic_licence(console, gateway, systems["e_licence"], desk, joining, timeout_s) and ok
        ok = _certificate_prefilled(console, systems["e_licence"], desk, timeout_s) and ok
        ok = _rated(console, systems["rating_platform"], desk, timeout_s) and ok
        ok = _licence_cited(console, systems["licence_library"], desk, timeout_s) and ok
        ok = _behind_a_ferry(console, site, link, desk, ferrying, timeout_s) and ok
        ok = _logs_intact(console, gateway) and ok
        console.print({s: sim.counters["cases_created"] for s, sim in systems.items()}, "cases applied per sector")
        if stay:
            _stay(console, base_url)
    console.rule("[green]demo succeeded" if ok else "[red]demo failed")
    return ok


def _register_bundles(console: Console, endpoints: dict[str, str]) -> None:
    """As a sector IT team would: the public command, once per shipped bundle."""
    for sector in SECTORS:
        _register(console, default_bundles_dir() / sector, endpoints)


def _register(console: Console, folder: Path, endpoints: dict[str, str], *, force: bool = False) -> str:
    """`yiwang adapters register`, `test` (against the sector's system, at `endpoints`) and `activate` one
    bundle folder (`force`: without a passing test, for a bundle that has no harmless call); its version."""
    bundle = load_bundle(folder)
    _yiwang("adapters", "register", str(folder))
    activate = ("adapters", "activate", bundle.sector, bundle.version, *(("--force",) if force else ()))
    if not force:
        _yiwang("adapters", "test", bundle.sector, bundle.version,
                YIWANG_SECTOR_ENDPOINTS=",".join(f"{sector}={url}" for sector, url in endpoints.items()))
    _yiwang(*activate)
    tested = "" if force else f" && yiwang adapters test {bundle.sector} {bundle.version}"
    console.print(f"$ yiwang adapters register {_shown(folder)}{tested} && yiwang {shlex.join(activate)}",
                  highlight=False)
    return bundle.version


def _yiwang(*args: str, **settings: str) -> str:
    """The public command, in its own process, on the demo's var dir (as the people the demo plays would)."""
    env = {**os.environ, "YIWANG_VAR_DIR": str(DEMO_DIR), "YIWANG_FERRY_DIR": str(FERRY_DIR / "near"),
           "YIWANG_LOG_LEVEL": "warning", **settings}
    env.pop("YIWANG_DATABASE_URL", None)
    yiwang = str(Path(sys.executable).with_name("yiwang"))
    done = subprocess.run([yiwang, *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DemoFailed(f"yiwang {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def _shown(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _desk(console: Console, gateway: Gateway, base_url: str) -> Desk:
    table = Table("role", "identity", "API key", title="API keys issued for the demo (shown once)",
                  title_justify="left")
    clients = []
    for name, role, scope in (("online hall", Role.HALL_CLIENT, {}), ("city window", Role.WINDOW, {}),
                              ("issuing window", Role.ISSUING_WINDOW, {}),
                              ("social-security clerk", Role.CLERK, {"department": SOCIAL_SECURITY_AGENCY})):
        identity, key = gateway.keys.issue(f"demo {name}", [role], **scope)
        table.add_row(name, identity.id, key)
        # An idle connection is dropped after 2 s, before uvicorn closes it after 5: reusing one the server is
        # closing at that moment fails a POST with "server disconnected" (seen once on a loaded machine).
        clients.append(httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                                    limits=httpx.Limits(keepalive_expiry=2.0)))
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
        ("12 部门系统退回补正：社保卡缺少照片 → 社保系统拒收（3001）→ 窗口补正 → 继续办理 → 准予", _sector_refusal),
    ]
    ok = True
    for title, scene in scenes:
        try:
            case_no = scene(desk, timeout_s)
        except (DemoFailed, httpx.HTTPError, KeyError) as exc:
            console.print(f"[red]{title}: {exc}")
            ok = False
            continue
        _show_case(console, title, desk, case_no)
    return _queries(console, desk) and ok


def _approved_and_delivered(desk: Desk, timeout_s: float) -> str:
    case = _unemployment(desk.hall, "online_pc", {"name": "王建国", "id_number": "150203198503120039",
                                                  "phone": "13847100001"}, 36, "2026-10-31")
    case = _wait(desk.hall, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "王建国"})
    _post(desk.hall, case["case_no"], "evaluation", {"level": "very_satisfied", "channel": "mobile",
                                                     "text": "全程网办，很方便"})
    return str(case["case_no"])


def _denied(desk: Desk, timeout_s: float) -> str:
    case = _unemployment(desk.hall, "mobile", {"name": "李敏", "id_number": "150202197806054429"}, 8, "2026-11-02")
    case = _wait(desk.hall, case["case_no"], "closed", timeout_s)
    _expect("不满12个月" in (case["opinion"] or ""), f"expected the sector's reason, got {case['opinion']!r}")
    return str(case["case_no"])


def _supplement_round(desk: Desk, timeout_s: float) -> str:
    case = _submit(desk.window, {"matter_code": PENSION_TRANSFER, "channel": "city_window",
                                 "applicant": {"name": "张丽华", "id_number": "15020419901120152X"},
                                 "materials": [{"name": "居民身份证"}],
                                 "form": {"from_region": "150102",
                                          "from_agency": "呼和浩特市新城区社会保险事业服务中心"}})
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
                                 "form": {"retirement_date": "2026-04-15",
                                          "employer_name": "包头钢铁（集团）有限责任公司",
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
                                 "materials": [{"name": n} for n in SUBSISTENCE_MATERIALS]})
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


def _sector_refusal(desk: Desk, timeout_s: float) -> str:
    """12: the sector refuses a social security card application without a photo (fhdm 3001, declared final with
    the way `supplement` in its bundle): the case comes back to the window as a supplement request listing what
    the sector said is missing, with its own message on the timeline; the window supplements, the case goes on
    and the sector, asked again under a new round's key, approves it."""
    case = _submit(desk.window, {"matter_code": SOCIAL_SECURITY_CARD, "channel": "city_window",
                                 "applicant": {"name": "孙玉梅", "id_number": "150205199203150049",
                                               "phone": "13847100012"},
                                 "materials": [{"name": "居民身份证"}]})
    case = _wait(desk.window, case["case_no"], "supplement_required", timeout_s)
    _expect(case["missing_materials"] == ["近期免冠照片"], f"the sector's list is {case['missing_materials']}")
    events = desk.window.get(f"/v1/cases/{case['case_no']}/events").json()["items"]
    sent_back = next(e for e in events if e["trigger"] == "send_back")
    _expect(sent_back["data"].get("sector_code") == "3001", f"the send-back says {sent_back['data']}")
    _post(desk.window, case["case_no"], "supplement", {"materials": [{"name": "近期免冠照片"}]})
    case = _wait(desk.window, case["case_no"], "approved", timeout_s)
    _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "孙玉梅"})
    return str(case["case_no"])


def _outage(console: Console, gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk,
            timeout_s: float) -> bool:
    """7: the social security system is down for longer than its retry policy: the message becomes a
    dead letter kept for operators, and the case stays accepted; nothing is lost. The sector comes back,
    an operator replays the letter by id, and the case goes on."""
    title = "7 部门系统故障：社保系统宕机 → 重试用尽 → 死信（案件保持已受理）→ 恢复后运维重放 → 办结"
    sector.set_fault("fail")
    created_before = sector.counters["cases_created"]
    try:
        case = _unemployment(desk.hall, "mobile", {"name": "孙晓东", "id_number": "15020519921212001X",
                                                   "phone": "13514720007"}, 20, "2026-11-10")
        letters = _wait_for_dead_letter(gateway, case["case_no"], timeout_s)
        state = desk.hall.get(f"/v1/cases/{case['case_no']}").json()["state"]
        sector.set_fault(None)
        replayed = " ".join(_yiwang("ops", "replay", str(letters[0].id), "--reason", "社保系统已恢复").split())
        after = _wait(desk.hall, case["case_no"], "approved", timeout_s)
    except DemoFailed as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    finally:
        sector.set_fault(None)
    table = Table("id", "sector", "operation", "class", "attempts", "error", title=f"{title}\n{case['case_no']}",
                  title_justify="left")
    for d in letters:
        table.add_row(str(d.id), d.sector, d.operation, d.error_class, str(d.attempts), d.error_message[:60])
    console.print(table, f"case state while the sector was down: {state}   (`yiwang ops dead-letters`)",
                  f"the sector is back; an operator: `yiwang ops replay {letters[0].id} --reason 社保系统已恢复` → "
                  f"{replayed.strip()}",
                  f"case state after the replay: {after['state']} (sent with the idempotency key of every earlier "
                  f"attempt: the sector applied it {sector.counters['cases_created'] - created_before} time)\n",
                  sep="\n")
    return True


def _correction(console: Console, gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk,
                timeout_s: float) -> bool:
    """8: a case's message died while the sector was down; the window finds the applicant's phone number was
    typed wrong and corrects it (更正) with a reason. The dead letter is superseded, and once the sector is back
    it gets the corrected case under a new round's key (`…:r1`): a new request, not a repeat."""
    title = "8 窗口更正：报送失败的办件 → 窗口更正申请人电话 → 原死信作废 → 以新一轮幂等键重新报送 → 准予"
    try:
        case, letters = _dead_while_down(gateway, sector, desk, {"name": "吴秀英", "id_number": "150207198108080028",
                                                                 "phone": "13514720099"}, timeout_s)
        corrected = _post(desk.window, case["case_no"], "correction",
                          {"reason": "申请人联系电话录入错误", "applicant": {"phone": "13514720009"}})
        after = _wait(desk.window, case["case_no"], "approved", timeout_s)
        letter = _dead_letter(gateway, letters[0].id)
        _expect(letter.status == "superseded", f"dead letter {letter.id} is {letter.status}, not superseded")
    except DemoFailed as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"dead letter {letter.id} ({letter.idempotency_key}) is {letter.status}; the corrected case went "
                  f"out as round {corrected['tasks'][0]['round']}: "
                  f"{letter.idempotency_key}:r{corrected['tasks'][0]['round']}", highlight=False)
    _print_timeline(console, title, after, desk.window.get(f"/v1/cases/{case['case_no']}/events").json()["items"])
    return True


def _back_office(console: Console, gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk,
                 timeout_s: float) -> bool:
    """9: the sector stays down; an operator discards the dead letter and, in the same step, hands the task to
    the department's back office (`--case-outcome back_office`): its clerk decides through the back-office API
    and the case goes on to the issuing window. No case is left accepted with nothing in flight."""
    title = "9 死信转后台：社保系统长期停机 → 运维丢弃死信并转部门后台办理 → 经办人后台审批 → 出证"
    try:
        case, letters = _dead_while_down(gateway, sector, desk, {"name": "郑志刚", "id_number": "150206197702140010",
                                                                 "phone": "13614720010"}, timeout_s)
        command = ("ops", "discard", str(letters[0].id), "--reason", "社保系统停机检修一周，转人工办理",
                   "--case-outcome", "back_office")
        said = " ".join(_yiwang(*command).split())
        handed = desk.clerk.get(f"/v1/cases/{case['case_no']}").json()
        _expect(handed["tasks"][0]["via"] == "back_office", f"the task is {handed['tasks'][0]}")
        approved = _post(desk.clerk, case["case_no"], "tasks/1/decision",
                         {"decision": "approved", "opinion": "经后台审核，符合申领条件"})
        _issue_and_deliver(desk, approved, {"method": "pickup", "received_by": "郑志刚"})
    except DemoFailed as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"$ yiwang {shlex.join(command)}\n  → {said}", highlight=False)
    _show_case(console, title, desk, case['case_no'])
    return True


def _left_for_the_console(console: Console, gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk,
                          base_url: str, timeout_s: float) -> bool:
    """17: the operators' console. A case's message dies while social security is down and is left dead; the
    sector is back. An operator's key is issued: sign in to the console, find the letter, read its story, replay
    it, and watch the case approved (`yiwang demo --stay` keeps everything up after the scenes for that)."""
    title = "17 运维控制台：留下一封死信 → 登录控制台查找、查看原委、重放 → 办件准予"
    try:
        # Scene 9 left the sector's circuit open (its last calls failed): a case decided first closes it, so the
        # next message fails its retries and dies instead of waiting for the circuit.
        decided = _unemployment(desk.hall, "online_pc", {"name": "冯志明", "id_number": "15020419880505001X",
                                                        "phone": "13614720016"}, 24, "2026-11-18")
        _wait(desk.hall, decided["case_no"], "approved", timeout_s)
        case, letters = _dead_while_down(gateway, sector, desk, {"name": "冯丽娟", "id_number": "150204199002020022",
                                                                 "phone": "13614720017"}, timeout_s)
    except DemoFailed as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    identity, key = gateway.keys.issue("demo operator 值班员", [Role.OPERATOR])
    console.print(f"[bold]{title}", f"operators' console: {base_url}/console   (sign in with the key below)",
                  f"operator {identity.id} key: {key}",
                  f"dead letter {letters[0].id} of case {case['case_no']} ({letters[0].error_class}) is waiting; "
                  "the sector is back, so a replay approves the case.",
                  "the console is served while the demo runs: `yiwang demo --stay --port 8000` keeps it (and the "
                  "sector simulators) up after the scenes, at http://127.0.0.1:8000/console\n", sep="\n",
                  highlight=False)
    return True


def _stay(console: Console, base_url: str) -> None:
    console.print(f"[bold]serving {base_url}/console until Ctrl-C", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping")


def _dead_while_down(gateway: Gateway, sector: SocialSecuritySimulator, desk: Desk, applicant: dict[str, str],
                     timeout_s: float) -> tuple[dict[str, Any], list[DeadLetter]]:
    """A case submitted while the sector is down, until its message is a dead letter; the sector comes back
    (a scene that needs it down longer sets the fault again)."""
    sector.set_fault("fail")
    try:
        case = _unemployment(desk.hall, "online_pc", applicant, 30, "2026-11-16")
        return case, _wait_for_dead_letter(gateway, case["case_no"], timeout_s)
    finally:
        sector.set_fault(None)


def _dead_letter(gateway: Gateway, letter_id: int) -> DeadLetter:
    with gateway.service.units(read_only=True) as uow:
        letter = uow.dead_letters.get(letter_id)
    if letter is None:
        raise DemoFailed(f"no dead letter {letter_id}")
    return letter


def _mutual_tls(console: Console, gateway: Gateway, endpoints: dict[str, str], desk: Desk, stack: ExitStack,
                timeout_s: float) -> bool:
    """10: the social-security sector moves to mutual TLS and WS-Security signing. Our security administrator
    makes the keys in the store (they never leave it), the sector's CA signs the CSRs, the certificates are
    imported, the sector's IT team registers and activates its next bundle version, and a case is decided
    over the new channel: the sector saw our client certificate and an RSA-SHA256 signature."""
    title = "10 社保系统改用双向TLS + WS-Security签名：证书库生成密钥和CSR → 部门CA签发 → 导入 → 新版本包激活 → 办件"
    console.print(f"[bold]{title}")
    try:
        sector = stack.enter_context(_sector_goes_secure(console))
        # The deployment's endpoint for social_security now names the sector's HTTPS service. A deployment
        # changes YIWANG_SECTOR_ENDPOINTS and restarts; the demo edits its mapping in place, before the new
        # version's adapter is built (the running version's adapter keeps the endpoint it was built with).
        endpoints["social_security"] = sector.url
        version = _register(console, default_bundles_dir().joinpath(*MTLS_BUNDLE), endpoints)
        gateway.registry.refresh()
        active = gateway.registry.health().get("social_security", {})
        _expect(active.get("version") == version, f"social_security did not become {version}: {active}")
        case = _unemployment(desk.hall, "online_pc", {"name": "周海燕", "id_number": "150202198907230027",
                                                      "phone": "13947100008"}, 48, "2026-11-20")
        case = _wait(desk.hall, case["case_no"], "approved", timeout_s)
        ours = gateway.certs.current("social_security-client").fingerprint
        _expect(ours in sector.client_fingerprints,
                f"the sector saw client certificates {sector.client_fingerprints}, not ours ({ours})")
        _expect(RSA_SHA256 in sector.last_request.decode(), "the request on the wire was not signed RSA-SHA256")
    except (DemoFailed, httpx.HTTPError, KeyError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    _print_certificates(console, gateway)
    console.print(f"the sector saw our client certificate sha256 {ours[:16]}…; its last request was signed "
                  "rsa-sha256 (WS-Security, SHA-256 digests, a Timestamp), and so were its answers", highlight=False)
    _show_case(console, title, desk, case['case_no'])
    return True


def _sector_goes_secure(console: Console) -> SocialSecuritySimulator:
    """Keys and CSRs made in the store with `yiwang certs csr`, signed by the sector's CA, imported with
    `yiwang certs import` (with the sector's CA and signing certificate as trust); the sector's new HTTPS
    service demanding our client certificate, checking our signatures and signing its answers."""
    ca = SectorCA(SECTOR_PKI)
    signed: dict[str, Path] = {}
    for name, algorithm, usage in (("social_security-client", "ec-p256", ExtendedKeyUsageOID.CLIENT_AUTH),
                                   ("social_security-signing", "rsa-2048", None)):  # RSA: rsa-sha256 signatures
        csr = SECTOR_PKI / f"{name}.csr"
        _certs(console, "csr", name, "--cn", f"yiwang {name}", "--o", "包头市政务服务中心",
               "--algorithm", algorithm, "--out", str(csr))
        signed[name] = ca.sign_csr(csr, usage)  # the sector's side
    for name, pem in (("social_security-ca", ca.cert_file), ("social_security-sector", ca.signing_file),
                      *signed.items()):
        _certs(console, "import", name, str(pem))  # a signed certificate finds its pending key by public key
    signing = MessageSigning(trusted=(signed["social_security-signing"].read_bytes(),),
                             key_pem=ca.signing_key_pem, certificate_pem=ca.signing_file.read_bytes())
    return SocialSecuritySimulator(decision_delay_ms=800).serve_tls(ca.server_tls).use_signing(signing)


def _certs(console: Console, *args: str) -> None:
    _yiwang("certs", *args, "--sector", "social_security")
    console.print(f"$ yiwang certs {shlex.join(args)} --sector social_security", highlight=False)


def _print_certificates(console: Console, gateway: Gateway) -> None:
    table = Table("name", "v", "status", "subject", "not after (UTC)", "sha256", "key in store",
                  title="certificate store: social_security (`yiwang certs list --sector social_security`)",
                  title_justify="left")
    for v in gateway.certs.versions():
        if v.sector == "social_security" and v.facts is not None:
            table.add_row(v.name, str(v.version), v.status, v.facts.subject, f"{v.facts.not_after:%Y-%m-%d}",
                          v.facts.sha256[:16] + "…", "yes (sealed)" if v.has_private_key else "")
    console.print(table)


class SectorCA:
    """THE SECTOR'S SIDE, not the gateway's: the social-security sector's certificate authority. It signs
    the sector's HTTPS server and answer-signing certificates and the CSRs our security administrator sends.
    A sector runs its own PKI; these few lines of `cryptography` stand in for it. Its files go to `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name("Baotou HRSS Sector CA")
        self.cert_file = self._write("ca.crt", self._sign(self.name, self.key.public_key(), ca=True))
        server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_tls = ServerTls(
            self._write("server.crt", self._sign(_name("127.0.0.1"), server_key.public_key(),
                                                 usage=ExtendedKeyUsageOID.SERVER_AUTH, ip="127.0.0.1")),
            self._write("server.key", _key_pem(server_key)), client_ca=self.cert_file)
        signing_key = rsa.generate_private_key(65537, 2048)
        self.signing_key_pem = _key_pem(signing_key)  # stays on the sector's side: never imported by us
        self.signing_file = self._write("sector-signing.crt", self._sign(_name("Baotou HRSS answer signing"),
                                                                          signing_key.public_key()))

    def sign_csr(self, csr_file: Path, usage: x509.ObjectIdentifier | None) -> Path:
        csr = x509.load_pem_x509_csr(csr_file.read_bytes())
        _expect(csr.is_signature_valid, f"{csr_file.name}: the CSR's signature does not verify")
        return self._write(csr_file.with_suffix(".crt").name, self._sign(csr.subject, csr.public_key(), usage=usage))

    def _sign(self, subject: x509.Name, public_key: Any, *, ca: bool = False,
              usage: x509.ObjectIdentifier | None = None, ip: str | None = None) -> bytes:
        now = datetime.now(UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
                   .not_valid_after(now + timedelta(days=3650 if ca else 365))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if ip is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(ip))]),
                                            critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class LicencePki:
    """Scene 11's SM2 material, as files in `folder`: ours (key and the certificate we registered with the
    electronic licence sector) and THE SECTOR'S (its answer-signing key stays on its side; its certificate is
    what it hands us). Self-signed, as the sector accepts for a registered app."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ours = self._pair("yiwang-gateway", "包头市政务服务中心", "ours")
        self.theirs = self._pair("e-licence-sector", "包头市政务服务和数据管理局", "sector")

    def _pair(self, common_name: str, organization: str, stem: str) -> tuple[Path, Path]:
        certificate, key = sm2_self_signed(common_name, 365, organization=organization)
        files = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        files[0].write_bytes(certificate)
        files[1].write_bytes(key)
        return files

    def simulator(self) -> ELicenceSimulator:
        """The sector's service: verifies requests with our certificate, signs answers with its own key."""
        return ELicenceSimulator(decision_delay_ms=800, client_certificate_pem=self.ours[0].read_bytes(),
                                 key_pem=self.theirs[1].read_bytes(), certificate_pem=self.theirs[0].read_bytes())


def _licence_joins(pki: LicencePki, url: str) -> tuple[str, str]:
    """Scene 11's commands, run by our security administrator and the sector's IT team: the SM2 pairs into the
    store (ours with its key as `e_licence-signing`, the sector's certificate as `e_licence-sector`, the names
    its bundle uses), then its bundle registered, tested against `url` and activated. (What they printed, the
    version.)"""
    shown = Console(file=StringIO(), width=200, highlight=False)
    for name, certificate, key in (("e_licence-signing", *pki.ours), ("e_licence-sector", pki.theirs[0], None)):
        args = ("import", name, str(certificate), *(("--key", str(key)) if key else ()), "--sector", "e_licence")
        _yiwang("certs", *args)
        shown.print(f"$ yiwang certs {shlex.join(args)}")
    version = _register(shown, default_bundles_dir() / "e_licence", {"e_licence": url})
    return cast(StringIO, shown.file).getvalue(), version


def _electronic_licence(console: Console, gateway: Gateway, sector: ELicenceSimulator, desk: Desk,
                        joining: Future[tuple[str, str]], timeout_s: float) -> bool:
    """11: the electronic licence sector signs with SM2. Its bundle joined while the other scenes played
    (`_licence_joins`); a licence case is decided: the sector verified each request against our certificate,
    and we each of its answers against its certificate. Then the signed text of one request, as
    `yiwang adapters sign` shows it."""
    title = "11 电子证照：国密SM2签名（SM3，ID 1234567812345678）→ 证书导入证书库 → 包注册、测试、激活 → 办件，应答验签"
    console.print(f"[bold]{title}")
    try:
        commands, version = joining.result(timeout=timeout_s)
        console.print(commands, end="", highlight=False)
        gateway.registry.refresh()
        case = _submit(desk.window, {"matter_code": LICENCE, "channel": "city_window",
                                     "applicant": {"name": "王建国", "id_number": "150203198503120039"},
                                     "materials": [{"name": "居民身份证"}, {"name": "纸质就业创业证"}],
                                     "form": {"licence_no": "2026020300000800", "issue_date": "2025-03-18",
                                              "issuing_authority": "包头市就业服务中心"}})
        case = _wait(desk.window, case["case_no"], "approved", timeout_s)
        _expect(sector.counters["answers_signed"] > 0, "the sector signed none of its answers")
        reference = case["tasks"][0]["sector_ref"]
        sample = {"method": "GET", "path": f"/dzzz/api/v1/issuance/{reference}"}
        shown = gateway.sector_calls.sign_sample("e_licence", version, sample)
    except (DemoFailed, httpx.HTTPError, KeyError, ValueError, TimeoutError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"the sector verified {sector.counters['submits_received'] + sector.counters['queries_received']} "
                  f"requests against our certificate; we verified its {sector.counters['answers_signed']} signed "
                  f"answers against e_licence-sector", highlight=False)
    console.print(f"$ yiwang adapters sign e_licence {version} --sample status.json   # {json.dumps(sample)}\n"
                  f"  signed text: {shown['text']}\n  {shown['algorithm']} → X-SM2-Signature: "
                  f"{shown['signature'][:24]}… (randomised: a new one each time)", highlight=False)
    _show_case(console, title, desk, case['case_no'])
    return True


def _certificate_prefilled(console: Console, sector: ELicenceSimulator, desk: Desk, timeout_s: float) -> bool:
    """13: the licence the sector issued reaches unified issuing filled in. Its status answer named the licence
    number and validity; the gateway fetched the licence (its bundle's `fetch_certificate`) and prefilled it
    (`certificate_draft`, 待出证); the issuing window issues it with no body — nothing typed — and hands it over."""
    title = "13 部门签发证照 → 网关获取证照（fetch_certificate）→ 统一出证窗口待出证、直接出证 → 窗口领取"
    try:
        case = _submit(desk.window, {"matter_code": LICENCE, "channel": "city_window",
                                     "applicant": {"name": "李秀英", "id_number": "150203198503120039"},
                                     "materials": [{"name": "居民身份证"}, {"name": "纸质就业创业证"}],
                                     "form": {"licence_no": "2026020300000812", "issue_date": "2025-04-02",
                                              "issuing_authority": "包头市就业服务中心"}})
        case = _wait_for(desk.window, case["case_no"], lambda c: c["certificate_draft"] is not None, timeout_s,
                         "a prefilled certificate")
        draft = case["certificate_draft"]
        issued = desk.issuing.post(f"/v1/cases/{case['case_no']}/certificate")  # no body: the one prefilled
        _expect(issued.status_code == 200, f"issuing failed {issued.status_code} {issued.text}")
        _expect(issued.json()["certificate"]["number"] == draft["number"], "another number was issued")
        _post(desk.issuing, case["case_no"], "delivery", {"method": "pickup", "received_by": "李秀英"})
    except (DemoFailed, httpx.HTTPError, KeyError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"待出证 from {draft['sector']}: {draft['name']} No. {draft['number']}, issued by {draft['issuer']}, "
                  f"valid until {draft['valid_until']} (the sector served {sector.counters['licences_fetched']} "
                  "licences)", highlight=False)
    _show_case(console, title, desk, case['case_no'])
    return True


def _rated(console: Console, platform: RatingPlatformSimulator, desk: Desk, timeout_s: float) -> bool:
    """14: an evaluation goes to the province's rating platform (好差评), the sector subscribed to `evaluated`:
    a guaranteed delivery of its own (outbox row, retries, dead letter, replay), the case unchanged by it. The
    platform's own API then shows the rating it received."""
    title = "14 好差评：办件评价作为有保证的投递送达省好差评系统（订阅 evaluated 事件，一事一评）"
    console.print(f"[bold]{title}")
    try:
        case = _unemployment(desk.hall, "mobile", {"name": "赵淑芬", "id_number": "150204196802143326"}, 24,
                             "2026-10-15")
        case = _wait(desk.window, case["case_no"], "approved", timeout_s)
        _issue_and_deliver(desk, case, {"method": "pickup", "received_by": "赵淑芬"})
        _post(desk.hall, case["case_no"], "evaluation", {"level": "basically_satisfied", "channel": "hall_terminal",
                                                           "text": "窗口排队时间稍长"})
        deadline = time.monotonic() + timeout_s
        while not any(r.case_no == case["case_no"] for r in platform.ratings):
            _expect(time.monotonic() < deadline, f"the rating platform did not receive {case['case_no']}'s rating")
            time.sleep(0.1)
        shown = httpx.get(f"{platform.url}/hcp/v1/ratings/{case['case_no']}",
                          headers={"Authorization": f"Bearer {SECRETS['YIWANG_SECRET_RATING_PLATFORM_TOKEN']}"})
        _expect(shown.status_code == 200, f"the platform shows no rating: {shown.status_code} {shown.text}")
        rating = shown.json()["data"]
        _expect((rating["level"], rating["channel"]) == ("3", "5"), f"the platform holds {rating}")
    except (DemoFailed, httpx.HTTPError, KeyError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"GET {platform.url}/hcp/v1/ratings/{case['case_no']} → {json.dumps(rating, ensure_ascii=False)} "
                  f"(基本满意 = 3, 自助终端 = 5); the platform holds {len(platform.ratings)} ratings, one per "
                  "evaluated case, scene 1's too", highlight=False)
    _show_case(console, title, desk, case['case_no'])
    return True


def _licence_cited(console: Console, library: LicenceLibrarySimulator, desk: Desk, timeout_s: float) -> bool:
    """15: the electronic licence library, subscribed to `certificate_issued`, holds the scenes' certificates (each
    a guaranteed delivery); an applicant cites her ID card from the library instead of uploading it, and the case
    keeps it as authoritative, with where it came from."""
    title = "15 电子证照库：出证后证照归集入库（订阅 certificate_issued）；引用库中证照代替上传，材料可信"
    console.print(f"[bold]{title}")
    applicant = {"name": "钱桂兰", "id_number": "150203197905183628"}
    library.shelve(Licence("GA-150203-2016-0042", "居民身份证", applicant["name"], "111", applicant["id_number"],
                           "包头市公安局昆都仑区分局", date(2036, 5, 18), "2016-05-18T02:00:00+00:00"))
    try:
        filed = _filed(library, timeout_s)
        materials = [{"name": "居民身份证", "licence": {"number": "GA-150203-2016-0042"}},
                     *(m for m in UNEMPLOYMENT_MATERIALS if m["name"] != "居民身份证")]
        case = _submit(desk.hall, {"matter_code": UNEMPLOYMENT, "channel": "online_pc", "applicant": applicant,
                                   "materials": materials,
                                   "form": {"insured_months": 30, "separation_date": "2026-10-20"}})
        cited = case["materials"][0]
        _expect(cited["trust"] == "authoritative", f"the cited licence is {cited['trust']}")
        _wait(desk.window, case["case_no"], "approved", timeout_s)  # decided before the sectors stop
    except (DemoFailed, httpx.HTTPError, KeyError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    console.print(f"the library holds {sum(1 for lic in library.shelf() if lic.case_no)} certificates the cases issued "
                  f"(delivered on certificate_issued), e.g. {filed.name} {filed.number} of case {filed.case_no}; case "
                  f"{case['case_no']} cites a licence: {json.dumps(cited, ensure_ascii=False)}", highlight=False)
    return True


class FerrySite:
    """Scene 16's two sides of an isolation gateway, as folders under `root`: `near/` is the gateway's
    YIWANG_FERRY_DIR (`civil_affairs/outgoing`, `civil_affairs/incoming`), `far/` the sector's 前置机 — the agent's
    configuration, state, master key and its two link folders. Our SM2 pair for the ferry is made here (the
    security administrator's part; files under `near/pki/`)."""

    def __init__(self, root: Path) -> None:
        self.near, self.far = root / "near" / FERRY_CHANNEL, root / "far"
        self.config = self.far / "agent.yaml"
        self.agent: subprocess.Popen[bytes] | None = None
        self.said: list[str] = []  # the commands run, as shown

    def link(self) -> FolderLink:
        """The isolation gateway: down from our outgoing to the agent's incoming, up the other way."""
        return FolderLink({"down": (self.near / "outgoing", self.far / "incoming"),
                           "up": (self.far / "outgoing", self.near / "incoming")})

    def set_up(self, sector_url: str) -> str:
        """What the sector's 前置机 operators and our security administrator do once: the agent's configuration
        and `yiwang ferry init`, our ferry key pair and the agent's certificate into our store, ours into the
        agent's, the ferry bundle registered (activated in the scene), and the agent started. The version."""
        for folder in (self.far / "incoming", self.far / "outgoing"):
            folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({  # YAML's superset: the agent reads it as YAML
            "name": "civil_affairs-agent", "channel": FERRY_CHANNEL, "state": "agent.sqlite",
            "master_key_file": "master.key", "incoming": "incoming", "outgoing": "outgoing",
            "own_certificate": "civil_affairs-ferry", "near_certificate": "yiwang-ferry",
            "naming": {"extension": ".txt", "wrapper": "text"}, "interval_ms": 100, "endpoint": sector_url,
            "poll_interval_ms": 200}, indent=2), encoding="utf-8")
        pki = self.near.parent / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ours, key = pki / "yiwang-ferry.pem", pki / "yiwang-ferry.key"
        certificate_pem, key_pem = sm2_self_signed("yiwang-ferry")
        ours.write_bytes(certificate_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        theirs = self.far / "civil_affairs-ferry.pem"
        for args in (("ferry", "init", "--config", str(self.config), "--out", str(theirs)),
                     ("certs", "import", "civil_affairs-ferry", str(theirs)),
                     ("certs", "import", "yiwang-ferry", str(ours), "--key", str(key)),
                     ("certs", "import", "--agent", str(self.config), "yiwang-ferry", "--cert", str(ours)),
                     ("adapters", "register", str(_shown(default_bundles_dir().joinpath(*FERRY_BUNDLE))))):
            _yiwang(*args)
            self.said.append(f"$ yiwang {shlex.join(args)}")
        with (self.far / "agent.log").open("wb") as log:  # the child keeps its own copy of the descriptor
            self.agent = subprocess.Popen(  # the one command of the 前置机, in its own process
                [str(Path(sys.executable).with_name("yiwang")), "ferry", "serve", "--config", str(self.config)],
                env={**os.environ, "YIWANG_LOG_LEVEL": "warning"}, stdout=subprocess.DEVNULL, stderr=log)
        self.said.append(f"$ yiwang ferry serve --config {self.config}   # the agent, pid {self.agent.pid}")
        return load_bundle(default_bundles_dir().joinpath(*FERRY_BUNDLE)).version

    def agent_state(self) -> dict[str, Any]:
        """What `yiwang ferry state` shows, read here (the scene waits on it: a process a look is too slow)."""
        return ferry.agent_state(ferry.load_config(self.config))

    def stop_agent(self) -> None:
        """SIGTERM: the agent finishes the pass in hand and exits."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.agent.kill()


def _behind_a_ferry(console: Console, site: FerrySite, link: FolderLink, desk: Desk, setting_up: Future[str],
                    timeout_s: float) -> bool:
    """16: civil affairs behind an isolation gateway. The ferry bundle is activated; its carried SOAP bundle
    crosses first (a signed control batch the agent installs); a 最低生活保障审批 crosses as a batch, the agent
    delivers it and polls the sector, and the decision comes back as a batch: approved. Then the link loses the
    next batch down: a second case's message. The next batch (a third case) makes the agent name the gap; an
    operator resends the missing batch from the gateway's kept copy, and the second case is approved as well.
    Last, the direct bundle is active again, so a later run starts as this one did."""
    title = "16 网闸隔离：民政前置机摆渡代理（签名加密的批次文件）→ 跨网闸办件 → 丢失批次 → 代理指出缺口 → 重发 → 办结"
    console.print(f"[bold]{title}")
    direct = load_bundle(default_bundles_dir() / "civil_affairs").version
    try:
        version = setting_up.result(timeout=timeout_s)
        console.print("\n".join(site.said), highlight=False)
        _yiwang("adapters", "activate", FERRY_CHANNEL, version, "--force")  # a ferry has no harmless call to test
        console.print(f"$ yiwang adapters activate {FERRY_CHANNEL} {version} --force", highlight=False)
        _until(lambda: any(b.get("active") for b in site.agent_state()["bundles"]), timeout_s,
               "the agent to install the carried bundle")
        first = _wait(desk.window, _subsistence(desk, "郭文秀", "15020419560812002X")["case_no"], "approved",
                      timeout_s)
        link.lose_next_batch("down")
        lost = _subsistence(desk, "白玉兰", "150204196203150022")
        _until(lambda: bool(link.lost), timeout_s, "the link to lose a batch")
        seq = int(_expect_match(BATCH_SEQ.search(link.lost[0]), link.lost[0])["seq"])
        after = _subsistence(desk, "韩建军", "150204197011020017")  # its batch shows the agent the gap
        _until(lambda: _gaps(site.agent_state()) > 0, timeout_s, f"the agent to name batch {seq} missing")
        named = next(c for c in site.agent_state()["channels"] if c["direction"] == "receive")
        resend = ("ferry", "resend", FERRY_CHANNEL, str(seq), str(seq), "--reason", "网闸丢失批次，按代理缺口重发")
        said = " ".join(_yiwang(*resend).split())
        for case in (lost, after):
            _wait(desk.window, case["case_no"], "approved", timeout_s)
    except (DemoFailed, httpx.HTTPError, KeyError, ValueError, TimeoutError) as exc:
        console.print(f"[red]{title}: {exc}")
        return False
    finally:
        try:
            _yiwang("adapters", "activate", FERRY_CHANNEL, direct)  # tested at the start: scene 5 ran on it
        except DemoFailed as exc:
            console.print(f"[red]civil affairs's direct bundle {direct} is not active again: {exc}")
    console.print(f"the link carried {len(link.carried['down'])} batches down (a batch of one message: "
                  f"{link.carried['down'][-1]:,} bytes as text) and {len(link.carried['up'])} up; it lost "
                  f"{link.lost[0]}", highlight=False)
    console.print(f"$ yiwang ferry state --config {site.config}\n  → {named['channel']}: last batch "
                  f"{named['last_seq']}, applied without a hole up to {named['applied_seq']}, {named['gaps']} gap "
                  f"(batch {seq} missing)\n$ yiwang {shlex.join(resend)}\n  → {said}\n"
                  f"$ yiwang adapters activate {FERRY_CHANNEL} {direct}   # the direct bundle again", highlight=False)
    _show_case(console, title, desk, first["case_no"])
    _show_case(console, "16 (the lost batch's case, after the resend)", desk, lost["case_no"])
    return True


def _subsistence(desk: Desk, name: str, id_number: str) -> dict[str, Any]:
    """A 最低生活保障审批 at the city window with every material: the civil-affairs sector approves it."""
    return _submit(desk.window, {"matter_code": SUBSISTENCE, "channel": "city_window",
                                 "applicant": {"name": name, "id_number": id_number, "phone": "13614720016"},
                                 "materials": [{"name": n} for n in SUBSISTENCE_MATERIALS]})


def _gaps(state: dict[str, Any]) -> int:
    """How many gaps the agent's state names open on the channel it receives."""
    return sum(int(channel["gaps"]) for channel in state["channels"] if channel["direction"] == "receive")


def _expect_match(found: re.Match[str] | None, text: str) -> re.Match[str]:
    if found is None:
        raise DemoFailed(f"not a batch file name: {text}")
    return found


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        _expect(time.monotonic() < deadline, f"waited {timeout_s} s for {what}")
        time.sleep(0.2)


def _filed(library: LicenceLibrarySimulator, timeout_s: float) -> Licence:
    """The first certificate a case's subscription filed in the library."""
    deadline = time.monotonic() + timeout_s
    while True:
        filed = [lic for lic in library.shelf() if lic.case_no]
        if filed:
            return filed[0]
        _expect(time.monotonic() < deadline, "no issued certificate reached the licence library")
        time.sleep(0.1)


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
        with gateway.service.units(read_only=True) as uow:
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
    number = f"BT{case['case_no'][19:]}"  # basic code, date, sequence: one number per case (the licence library
    # files each certificate once and refuses a number another case already registered)
    _post(desk.issuing, case["case_no"], "certificate", {"name": "办理结果通知书", "number": number,
                                                         "issuer": "包头市政务服务中心统一出证窗口"})
    _post(desk.issuing, case["case_no"], "delivery", delivery)


def _unemployment(client: httpx.Client, channel: str, applicant: dict[str, str], insured_months: int,
                  separated_on: str) -> dict[str, Any]:
    """A 失业保险金申领 with every material: the sector decides on the months insured."""
    return _submit(client, {"matter_code": UNEMPLOYMENT, "channel": channel, "applicant": applicant,
                            "materials": UNEMPLOYMENT_MATERIALS,
                            "form": {"insured_months": insured_months, "separation_date": separated_on}})


def _submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/cases", json=body, headers={"Idempotency-Key": f"demo-{uuid.uuid4()}"})
    _expect(answer.status_code == 201, f"submit failed {answer.status_code} {answer.text}")
    return cast(dict[str, Any], answer.json())


def _post(client: httpx.Client, case_no: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/v1/cases/{case_no}/{action}", json=body)
    _expect(answer.status_code == 200, f"{action} failed {answer.status_code} {answer.text}")
    return cast(dict[str, Any], answer.json())


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


def _show_case(console: Console, title: str, desk: Desk, case_no: str) -> None:
    """The case as the window sees it now: its timeline and facts."""
    _print_timeline(console, title, desk.window.get(f"/v1/cases/{case_no}").json(),
                    desk.window.get(f"/v1/cases/{case_no}/events").json()["items"])


def _print_timeline(console: Console, title: str, view: dict[str, Any], events: list[dict[str, Any]]) -> None:
    table = Table("#", "Beijing time", "sector's time", "step", "state", "actor", "reason",
                  title=f"{title}\n{view['case_no']}", title_justify="left")
    for e in events:  # the sector's own time of a decision beside ours (when we learnt it)
        table.add_row(str(e["seq"]), e["at"][11:23], (e.get("sector_at") or "")[11:23], e["trigger"], e["to_state"],
                      e["actor"], e["reason"])
    console.print(table)
    facts = {k: view[k] for k in ("state_label", "receipt_no", "promised_by", "green_channel", "opinion",
                                  "completion", "evaluation") if view[k]}
    facts["tasks"] = [f"{t['department']}({'牵头' if t['lead'] else '协办'}): {t['state']}" for t in view["tasks"]]
    console.print(facts, "\n")
