"""A calendar, matters and cases for the lifecycle rule tests, on a pinned clock."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.catalogue.calendar_file import load_calendar
from gateway.domain import lifecycle
from gateway.domain.case import (
    Actor,
    ActorKind,
    Applicant,
    Case,
    SubmittedMaterial,
)
from gateway.domain.matter import Department, Level, Material, Matter, MatterType, TimeLimit, TimeUnit

CAL = load_calendar()


MONDAY_10AM = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


PERSON = Actor(ActorKind.APPLICANT, "hall")


WINDOW = Actor(ActorKind.WINDOW, "clerk-1")


SOCIAL = Department("包头市社会保险事业服务中心", "12150200MB1A00010L", "social_security")


FUND = Department("包头市住房公积金管理中心", "12150200MB0P0100X3", None)


def matter(*co: Department, days: int = 5, unit: TimeUnit = TimeUnit.WORKING_DAYS, auto: bool = True) -> Matter:
    return Matter(
        basic_code="000805001000", implementation_code="12150200MB1A00010L3000805001000", name="测试事项",
        type=MatterType.BENEFIT, level=Level.CITY, implementing_body=SOCIAL,
        materials=(Material("居民身份证"), Material("本人银行账户"), Material("近期免冠照片", mandatory=False)),
        promised_limit=TimeLimit(days, unit), statutory_limit=TimeLimit(20), co_departments=co, auto_accept=auto)


def new_case(m: Matter, *materials: str, at: datetime = MONDAY_10AM, id_number: str = "150203198503120039") -> Case:
    case = Case("C1" + "0" * 17 + "000805001000" + "20261123000001", m.implementation_code, m.version,
                Applicant("王建国", "111", id_number), tuple(SubmittedMaterial(n) for n in materials), {})
    lifecycle.submit(case, m, PERSON, at, CAL)
    return case


def triggers(case: Case) -> list[str]:
    return [e.trigger.value for e in case.events]
