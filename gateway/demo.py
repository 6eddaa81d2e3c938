"""`yiwang demo`: the whole path on the embedded default, as the online hall would see it.

Starts the social-security simulator on loopback, the gateway (SQLite under var/demo, in-process
dispatcher, real HTTP on an ephemeral port), submits sample cases over HTTP and prints each
case's timeline until it reaches the state it should. Part of the composition root.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.app import build_gateway, create_app
from gateway.config import Settings
from gateway.serving import serve_in_thread

DEMO_DIR = Path("var") / "demo"
UNEMPLOYMENT = "12150200MB1A00010L3000805001000"  # 失业保险金申领
PENSION_TRANSFER = "12150200MB1A00010L3000805002000"  # 职工基本养老保险关系转移接续


@dataclass(frozen=True)
class Sample:
    title: str
    body: dict[str, Any]
    expect_state: str
    expect_text: str  # must appear in the final view: the sector's decision or the missing material


SAMPLES = (
    Sample(
        "完整申请：失业保险金申领",
        {
            "matter_code": UNEMPLOYMENT,
            "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
            "materials": [{"name": "居民身份证"}, {"name": "解除或终止劳动合同证明"}, {"name": "本人银行账户"}],
            "form": {"insured_months": 36, "separation_date": "2026-10-31"},
            "channel": "online_pc",
        },
        "closed",
        "准予办理",
    ),
    Sample(
        "完整申请，部门不予办理：缴费不满一年",
        {
            "matter_code": UNEMPLOYMENT,
            "applicant": {"name": "李敏", "id_number": "150202197806054429", "phone": "13947200002"},
            "materials": [{"name": "居民身份证"}, {"name": "解除或终止劳动合同证明"}, {"name": "本人银行账户"}],
            "form": {"insured_months": 8, "separation_date": "2026-11-02"},
            "channel": "mobile",
        },
        "closed",
        "不满12个月",
    ),
    Sample(
        "缺少材料：职工基本养老保险关系转移接续",
        {
            "matter_code": PENSION_TRANSFER,
            "applicant": {"name": "张丽华", "id_number": "15020419901120152X", "phone": "15104720003"},
            "materials": [{"name": "居民身份证"}],
            "channel": "city_window",
        },
        "supplement_required",
        "参保缴费凭证",
    ),
)


def run_demo(console: Console, base: Settings, fresh: bool = True, timeout_s: float = 60) -> bool:
    if fresh:
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
    with SocialSecuritySimulator(decision_delay_ms=1500) as simulator:
        settings = replace(
            base,
            var_dir=DEMO_DIR,
            database_url=None,
            sector_endpoints={"social_security": simulator.url},
            poll_interval_ms=300,
        )
        gateway = build_gateway(settings)
        console.rule("[bold]Yiwang 一网 demo")
        console.print(f"database  {settings.db_url}\nsimulator {simulator.url} (人社 SOAP 1.1)")
        try:
            with serve_in_thread(create_app(gateway)) as base_url, httpx.Client(base_url=base_url) as hall:
                console.print(f"gateway   {base_url}\n")
                results = [_run_sample(console, hall, s, timeout_s) for s in SAMPLES]
        finally:
            gateway.close()
        console.print(f"simulator counters: {simulator.counters}")
    ok = all(results)
    console.rule("[green]demo succeeded" if ok else "[red]demo failed")
    return ok


def _run_sample(console: Console, hall: httpx.Client, sample: Sample, timeout_s: float) -> bool:
    answer = hall.post("/v1/cases", json=sample.body, headers={"Idempotency-Key": f"demo-{uuid.uuid4()}"})
    if answer.status_code != 201:
        console.print(f"[red]{sample.title}: submit failed {answer.status_code} {answer.text}")
        return False
    case_no = answer.json()["case_no"]
    view = _wait_for(hall, case_no, sample.expect_state, timeout_s)
    _print_timeline(console, sample.title, view, hall.get(f"/v1/cases/{case_no}/events").json())
    ok = view["state"] == sample.expect_state and sample.expect_text in str(view)
    if not ok:
        console.print(f"[red]expected state {sample.expect_state} mentioning {sample.expect_text!r}")
    return ok


def _wait_for(hall: httpx.Client, case_no: str, state: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view: dict[str, Any] = hall.get(f"/v1/cases/{case_no}").json()
        if view["state"] == state or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def _print_timeline(console: Console, title: str, view: dict[str, Any], events: list[dict[str, Any]]) -> None:
    table = Table("#", "Beijing time", "step", "state", "actor", "reason", title=f"{title}  {view['case_no']}",
                  title_justify="left")
    for e in events:
        table.add_row(str(e["seq"]), e["at"][11:23], e["trigger"], e["to_state"], e["actor"], e["reason"])
    console.print(table)
    facts = {k: view[k] for k in ("state_label", "receipt_no", "promised_by", "sector_ref", "opinion") if view[k]}
    if view["missing_materials"]:
        facts["missing"] = "、".join(view["missing_materials"])
    console.print(facts, "\n")
