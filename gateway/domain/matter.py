"""A matter (事项): one entry of the standard service catalogue.

The skeleton keeps the fields a case needs: its codes and name, who implements it, which
sector system handles it, its materials list and its promised time limit. The full GB/T 39046
guide is the catalogue issue's work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class Material:
    """A material the applicant must (or may) hand in."""

    name: str
    mandatory: bool = True


@dataclass(frozen=True)
class Matter:
    implementation_code: str  # 实施编码, 31 characters
    name: str
    type: MatterType
    department: str  # implementing body, e.g. 包头市社会保险事业服务中心
    sector: str  # which sector system decides it, e.g. "social_security"
    materials: tuple[Material, ...]
    promised_working_days: int  # 承诺办结时限; 0 means on the spot (即办)
    result_name: str = ""

    def missing_materials(self, submitted: Iterable[str]) -> list[Material]:
        """Every mandatory material not handed in, all at once (一次性告知), in catalogue order."""
        handed_in = {name.strip() for name in submitted}
        return [m for m in self.materials if m.mandatory and m.name not in handed_in]

    def knows_material(self, name: str) -> bool:
        return any(m.name == name for m in self.materials)
