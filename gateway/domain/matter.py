"""A matter (事项): one entry of the standard service catalogue, one version of its guide.

The fields follow the GB/T 39046-2020 matter set (DOMAIN.md). One published version serves every
level — city and county windows, township counters, village agency points — so nothing here is
per-window. A case keeps the version it was accepted under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class MatterType(StrEnum):
    """事项类型 (GB/T 39046), the codes kept as values."""

    LICENCE = "01"  # 行政许可
    PENALTY = "02"  # 行政处罚
    ENFORCEMENT = "03"  # 行政强制
    LEVY = "04"  # 行政征收
    BENEFIT = "05"  # 行政给付
    INSPECTION = "06"  # 行政检查
    CONFIRMATION = "07"  # 行政确认
    REWARD = "08"  # 行政奖励
    RULING = "09"  # 行政裁决
    OTHER_POWER = "10"  # 其他行政权力
    PUBLIC_SERVICE = "20"  # 公共服务


class Level(IntEnum):
    """行使层级."""

    NATIONAL = 1
    PROVINCE = 2
    CITY = 3
    COUNTY = 4
    TOWNSHIP = 5
    VILLAGE = 6


class BodyNature(StrEnum):
    """实施主体性质."""

    STATUTORY = "1"  # 法定机关
    AUTHORISED = "2"  # 授权组织
    ENTRUSTED = "3"  # 受委托组织
    OTHER = "9"


class ServiceObject(StrEnum):
    """服务对象."""

    NATURAL_PERSON = "1"
    ENTERPRISE = "2"
    PUBLIC_INSTITUTION = "3"
    SOCIAL_ORGANISATION = "4"
    GOVERNMENT_BODY = "5"
    OTHER = "6"


class HandlingForm(StrEnum):
    """办理形式."""

    WINDOW = "1"
    ONLINE = "2"
    MOBILE = "3"
    EXPRESS = "4"
    OTHER = "9"


class TimeUnit(StrEnum):
    WORKING_DAYS = "working_days"  # 工作日
    CALENDAR_DAYS = "calendar_days"  # 自然日


@dataclass(frozen=True)
class TimeLimit:
    """法定/承诺办结时限. Zero means on the spot (即办)."""

    value: int
    unit: TimeUnit = TimeUnit.WORKING_DAYS
    note: str = ""


@dataclass(frozen=True)
class Department:
    """An implementing or co-implementing department, and how its part of a case reaches it.

    `sector` names the registered sector system (adapter bundle) that takes the department's task;
    None means the department decides through the back-office API (no system of its own yet).
    """

    name: str
    credit_code: str  # unified social credit code (GB 32100)
    sector: str | None = None
    nature: BodyNature = BodyNature.STATUTORY


@dataclass(frozen=True)
class Material:
    """A material the applicant hands in (申请材料)."""

    name: str
    mandatory: bool = True
    originals: int = 0  # 原件份数
    copies: int = 0  # 复印件份数
    issuer: str = ""  # 出具机构
    notes: str = ""


@dataclass(frozen=True)
class Fee:
    charged: bool = False
    basis: str = ""  # 收费依据
    standard: str = ""  # 收费标准


@dataclass(frozen=True)
class Faq:
    question: str
    answer: str


@dataclass(frozen=True)
class Matter:
    # identity
    basic_code: str  # 基本编码, 12 characters
    implementation_code: str  # 实施编码, 31 = implementing body's credit code + level + basic code
    name: str
    type: MatterType
    level: Level
    implementing_body: Department  # 实施主体; its `sector` takes the (lead) task
    materials: tuple[Material, ...]
    promised_limit: TimeLimit  # 承诺办结时限
    statutory_limit: TimeLimit  # 法定办结时限
    version: int = 1
    handling_item_code: str = ""  # 业务办理项编码, 33 characters, when the matter has handling items
    local_code: str = ""  # a city's own code, kept beside the national one
    handling_office: str = ""  # 承办机构
    co_departments: tuple[Department, ...] = ()  # 共同实施部门: a parallel matter when not empty
    legal_basis: str = ""  # 设定依据
    acceptance_conditions: str = ""  # 受理条件
    procedure: tuple[str, ...] = ()  # 办理流程
    quantity_limits: str = ""  # 数量限制
    fee: Fee = field(default_factory=Fee)
    result_name: str = ""  # 结果名称
    result_sample: str = ""  # 结果样本 (a file reference or URL)
    service_objects: tuple[ServiceObject, ...] = (ServiceObject.NATURAL_PERSON,)
    handling_forms: tuple[HandlingForm, ...] = (HandlingForm.WINDOW, HandlingForm.ONLINE)
    booking: bool = False  # 支持预约
    online_payment: bool = False
    express_delivery: bool = False
    fully_online: bool = False  # 全程网办
    cross_region_scope: str = ""  # 通办范围
    place: str = ""
    hours: str = ""
    enquiry_phone: str = ""
    complaint_phone: str = ""
    faq: tuple[Faq, ...] = ()
    form_schema: Mapping[str, Any] = field(default_factory=dict)  # JSON Schema of the matter's one form
    auto_accept: bool = True  # complete applications are accepted on the spot by the completeness check
    # The result is an electronic certificate its sector issues: once fetched from the sector, the gateway
    # issues it at unified issuing itself (actor system:gateway); the case then awaits delivery as usual.
    auto_issue_electronic: bool = False

    @property
    def is_parallel(self) -> bool:
        """并联审批: one form and one set of materials, one task per department."""
        return bool(self.co_departments)

    @property
    def departments(self) -> tuple[Department, ...]:
        """The lead department first, then the co-departments: one task each."""
        return (self.implementing_body, *self.co_departments)

    @property
    def on_the_spot(self) -> bool:
        """即办件 rather than 承诺件."""
        return self.promised_limit.value == 0

    def missing_materials(self, submitted: Iterable[str]) -> list[Material]:
        """Every mandatory material not handed in, all at once (一次性告知), in catalogue order."""
        handed_in = {name.strip() for name in submitted}
        return [m for m in self.materials if m.mandatory and m.name not in handed_in]

    def knows_material(self, name: str) -> bool:
        return any(m.name == name for m in self.materials)
