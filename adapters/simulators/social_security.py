"""人社/社保 (social-security) sector simulator: a real SOAP 1.1 service on 127.0.0.1.

Why it exists: the gateway's SOAP adapter, the demo and the tests need a sector system that
behaves like the real one (document/literal SOAP 1.1, business codes inside 200 envelopes,
Faults with HTTP 500, idempotent submission keyed by the gateway's ``qqlsh``, a decision that
arrives later) and that can be told to misbehave on demand (dead load balancer, Server fault,
slow answers, truncated XML, hostile entity-expansion documents, rate limiting).

It speaks over real HTTP so the gateway exercises its actual transport code, and it imports
nothing from the rest of the project so it can never share a bug with it. The contract is
``social_security.wsdl`` next to this file (a byte-identical copy ships in the bundle); this
module never changes it. No credentials: the sector trusts its private network.

Operations: SubmitCase, QueryCaseStatus, QueryContributionRecord (synchronous query).

Refusals it answers (the bundle declares them under `business_error`): fhdm 3001 (final) when an application
lacks a material the sector insists on for its matter (`INSISTED_MATERIALS`: a social security card needs 近期免冠照片),
naming them in qscl; fhdm 9001 (retryable, "系统繁忙") while the fault mode "busy" is armed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from lxml import etree

from adapters.simulators.base import (
    BEIJING,
    COMMON_FAULT_MODES,
    MAX_BODY_BYTES,
    Case,
    Decider,
    FaultPlan,
    Reply,
    missing_fields,
    person_seed,
    recent_months,
    run_cli,
    serve_forever,
)
from adapters.simulators.soap import SOAP11, Fields, SoapContract, SoapSimulator

__all__ = [
    "ENDPOINT_PATH",
    "FAULT_MODES",
    "MAX_BODY_BYTES",
    "TNS",
    "Decider",
    "SocialSecuritySimulator",
    "default_decide",
    "serve",
]

TNS: Final = "http://hrss.sim.yiwang.local/case/v1"
ENDPOINT_PATH: Final = "/shebao/case"
WSDL_FILE: Final = Path(__file__).with_name("social_security.wsdl")
DEFAULT_PORT: Final = 8801

FAULT_MODES: Final = COMMON_FAULT_MODES | {"busy"}
# What the sector insists on beyond the province's list, per matter (the code's last 12 digits, its basic code):
# a social security card is made with the applicant's photo, which the window may take later (optional there).
INSISTED_MATERIALS: Final = {"000805004000": ("近期免冠照片",)}
REQUIRED_SUBMIT_FIELDS: Final = ("qqlsh", "sxbm", "bjbh", "sqrxm", "zjlx", "zjhm", "slsj")

# Return codes (fhdm) and statuses (blzt) as the sector publishes them.
FHDM_OK: Final = "0000"
FHDM_MISSING_FIELD: Final = "1001"
FHDM_UNKNOWN_CASE: Final = "2001"
FHDM_UNKNOWN_PERSON: Final = "2002"
FHDM_MATERIAL_MISSING: Final = "3001"  # final: the sector will not take the case without the materials in qscl
FHDM_BUSY: Final = "9001"  # not now: the same request later may be taken (fault mode "busy")
BLZT_PROCESSING: Final = "02"
BLZT_APPROVED: Final = "03"
BLZT_DENIED: Final = "04"

# Contribution rates of the made-up records: employer 16 %, employee 8 % of the base.
_EMPLOYER_RATE: Final = Decimal("0.16")
_EMPLOYEE_RATE: Final = Decimal("0.08")
_CENTS: Final = Decimal("0.01")


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """The demo's rule: fewer than 12 insured months (bdsj JSON) is denied, anything else approved."""
    months = _insured_months(fields.get("bdsj"))
    if months is not None and months < 12:
        return False, "累计缴费不满12个月，不符合申领条件"
    return True, "材料齐全，符合条件，准予办理"


def _insured_months(bdsj: object) -> int | None:
    """Read ``insured_months`` from the form JSON; anything unreadable counts as absent."""
    if not isinstance(bdsj, str) or not bdsj.strip():
        return None
    try:
        form = json.loads(bdsj)
    except ValueError:
        return None
    months = form.get("insured_months") if isinstance(form, dict) else None
    return months if isinstance(months, int) and not isinstance(months, bool) else None


def _lacking(fields: dict[str, Any]) -> list[str]:
    """The materials the sector insists on for the application's matter (`INSISTED_MATERIALS`) that it lacks."""
    insisted = INSISTED_MATERIALS.get(str(fields.get("sxbm", ""))[-12:], ())
    given = {item.get("clmc") for item in fields.get("cllb") or [] if isinstance(item, dict)}  # cllb: the cl items
    return [name for name in insisted if name not in given]


# --------------------------------------------------------------------------- contribution records


def contribution_records(seed: int) -> list[dict[str, str]]:
    """A person's made-up monthly records, newest first: 6 to 48 months on one base; every fifth
    person owes the latest month (zt "0")."""
    base = Decimal(3000 + seed % 50 * 100).quantize(_CENTS)
    owes_latest = seed % 5 == 0
    records = []
    for index, (year, month) in enumerate(recent_months(6 + seed % 43)):
        records.append(
            {
                "ny": f"{year:04d}{month:02d}",
                "jfjs": str(base),
                "dwjf": str((base * _EMPLOYER_RATE).quantize(_CENTS)),
                "grjf": str((base * _EMPLOYEE_RATE).quantize(_CENTS)),
                "zt": "0" if owes_latest and index == 0 else "1",
            }
        )
    return records


# --------------------------------------------------------------------------- the simulator


class SocialSecuritySimulator(SoapSimulator):
    """The 社保 case service over SOAP 1.1 on a local port.

    Counters (see ``counters``): ``raw_requests`` counts every HTTP request before any parsing,
    ``cases_created`` counts applied effects; the others explain the difference.
    Faulted requests (``set_fault``) count as raw requests but never create a case, except
    "slow", which answers normally after the delay: the case *is* applied even if the client
    has already timed out, exactly the situation idempotent retries must survive.
    """

    label = "social-security"
    sector = "social_security"
    server_version = "SheBaoSim/1.0"
    reference_prefix = "SB"
    contract = SoapContract(
        SOAP11, TNS, ENDPOINT_PATH, WSDL_FILE,
        sample_response=("SubmitCaseResponse", (("fhdm", FHDM_OK), ("fhxx", "受理成功"), ("ywlsh", "SB000000000000"))),
        server_error="社保业务系统内部错误，请稍后重试（模拟故障）",
    )

    fault_modes = SoapSimulator.fault_modes | {"busy"}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        decision_delay_ms: int = 200,
        decide: Decider | None = None,
    ) -> None:
        super().__init__(host, port, decision_delay_ms, decide or default_decide)

    def _operations(self) -> dict[str, Any]:
        return {
            "SubmitCaseRequest": self._submit_case,
            "QueryCaseStatusRequest": self._query_case_status,
            "QueryContributionRecordRequest": self._query_contributions,
        }

    # ----- SubmitCase

    def _submit_case(self, operation: etree._Element) -> Reply:
        """Apply a case once per qqlsh; a rejected request leaves no trace to replay against."""
        self._counters.bump("submits_received")
        fields = self._read(operation, lists=frozenset({"cllb"}))
        missing = missing_fields(fields, REQUIRED_SUBMIT_FIELDS)
        if missing:
            self._counters.bump("business_errors")
            return self._submit_reply(FHDM_MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}", None)
        if self._faults.take(frozenset({"busy"})) is not None:
            self._counters.bump("business_errors")
            return self._submit_reply(FHDM_BUSY, "系统繁忙，请稍后重试", None)
        lacking = _lacking(fields)
        if lacking:
            self._counters.bump("business_errors")
            return self._respond("SubmitCaseResponse", [("fhdm", FHDM_MATERIAL_MISSING),
                                                        ("fhxx", f"申请材料不全，请补充：{'、'.join(lacking)}"),
                                                        ("qscl", "、".join(lacking))])
        case, created = self._book.apply(fields["qqlsh"], fields)
        message = "受理成功" if created else "重复提交，返回原业务流水号"
        return self._submit_reply(FHDM_OK, message, case.reference)

    def _submit_reply(self, fhdm: str, fhxx: str, ywlsh: str | None) -> Reply:
        return self._respond("SubmitCaseResponse", [("fhdm", fhdm), ("fhxx", fhxx), ("ywlsh", ywlsh)])

    # ----- QueryCaseStatus

    def _query_case_status(self, operation: etree._Element) -> Reply:
        """02 while the decision delay runs, then 03/04 with 审批意见 and 办结时间."""
        self._counters.bump("queries_received")
        ywlsh = self._read(operation).get("ywlsh", "")
        case = self._book.get(ywlsh) if ywlsh else None
        if case is None:
            self._counters.bump("business_errors")
            if not ywlsh:
                return self._status_reply(FHDM_MISSING_FIELD, "缺少必填项：ywlsh")
            return self._status_reply(FHDM_UNKNOWN_CASE, f"业务流水号不存在：{ywlsh}")
        return self._status_of(case)

    def _status_of(self, case: Case) -> Reply:
        decision = self._book.decision(case)
        if decision is None:
            return self._status_reply(FHDM_OK, "查询成功", case.reference, BLZT_PROCESSING)
        approved, opinion = decision
        blzt = BLZT_APPROVED if approved else BLZT_DENIED
        bjsj = case.decided_at.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")
        return self._status_reply(FHDM_OK, "查询成功", case.reference, blzt, opinion, bjsj)

    def _status_reply(self, fhdm: str, fhxx: str, *values: str) -> Reply:
        """QueryCaseStatusResponse with its fields in the WSDL's sequence order."""
        names = ("ywlsh", "blzt", "spyj", "bjsj")
        fields: Fields = [("fhdm", fhdm), ("fhxx", fhxx), *zip(names, values, strict=False)]
        return self._respond("QueryCaseStatusResponse", fields)

    # ----- QueryContributionRecord

    def _query_contributions(self, operation: etree._Element) -> Reply:
        """缴费记录 of a person: every month's base, both shares and whether it was paid."""
        self._counters.bump("queries_received")
        zjhm = self._read(operation).get("zjhm", "")
        seed = person_seed(zjhm)
        if seed is None:
            self._counters.bump("business_errors")
            if not zjhm:
                return self._contributions_reply(FHDM_MISSING_FIELD, "缺少必填项：zjhm")
            return self._contributions_reply(FHDM_UNKNOWN_PERSON, f"未查询到参保缴费信息：{zjhm}")
        records = contribution_records(seed)
        jfjl: Fields = [("jl", tuple(record.items())) for record in records]
        paid = sum(1 for record in records if record["zt"] == "1")
        return self._contributions_reply(FHDM_OK, "查询成功", jfjl, str(paid))

    def _contributions_reply(self, fhdm: str, fhxx: str, jfjl: Fields | None = None, ljys: str | None = None) -> Reply:
        fields: Fields = [("fhdm", fhdm), ("fhxx", fhxx), ("jfjl", jfjl), ("ljys", ljys)]
        return self._respond("QueryContributionRecordResponse", fields)


# --------------------------------------------------------------------------- foreground use


def serve(port: int = DEFAULT_PORT, decision_delay_ms: int = 200, fault: FaultPlan | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C (for the CLI and manual poking)."""
    serve_forever(SocialSecuritySimulator(port=port, decision_delay_ms=decision_delay_ms), "社保 (SOAP 1.1)", fault)


if __name__ == "__main__":
    run_cli("人社/社保 SOAP 1.1 sector simulator", serve, DEFAULT_PORT, SocialSecuritySimulator.fault_modes)
