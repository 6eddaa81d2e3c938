"""Every sector simulator by the sector's name: its class, how it runs in the foreground, its usual port.

Why here and not in the command line: `yiwang simulators` (gateway/cli/simulators.py) offers whatever is on
this roster, so a sector's simulator joins by a line in this folder and the gateway's code names no sector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters.simulators import (
    civil_affairs,
    e_licence,
    employment,
    housing_fund,
    licence_library,
    public_security,
    rating_platform,
    social_assistance,
    social_security,
)
from adapters.simulators.base import SimulatorBase

__all__ = ["ROSTER", "Sector"]


@dataclass(frozen=True)
class Sector:
    """One simulator as the command line knows it."""

    simulator: type[SimulatorBase]
    serve: Callable[..., None]
    default_port: int
    calls_back: bool = False

    @property
    def modes(self) -> list[str]:
        return sorted(self.simulator.fault_modes)


ROSTER: Mapping[str, Sector] = MappingProxyType({
    "social_security": Sector(social_security.SocialSecuritySimulator, social_security.serve,
                              social_security.DEFAULT_PORT),
    "housing_fund": Sector(housing_fund.HousingFundSimulator, housing_fund.serve, housing_fund.DEFAULT_PORT),
    "civil_affairs": Sector(civil_affairs.CivilAffairsSimulator, civil_affairs.serve, civil_affairs.DEFAULT_PORT),
    "public_security": Sector(public_security.PublicSecuritySimulator, public_security.serve,
                              public_security.DEFAULT_PORT, calls_back=True),
    "employment": Sector(employment.EmploymentSimulator, employment.serve, employment.DEFAULT_PORT),
    "e_licence": Sector(e_licence.ELicenceSimulator, e_licence.serve, e_licence.DEFAULT_PORT),
    "social_assistance": Sector(social_assistance.SocialAssistanceSimulator, social_assistance.serve,
                                social_assistance.DEFAULT_PORT),
    "licence_library": Sector(licence_library.LicenceLibrarySimulator, licence_library.serve,
                              licence_library.DEFAULT_PORT),
    "rating_platform": Sector(rating_platform.RatingPlatformSimulator, rating_platform.serve,
                              rating_platform.DEFAULT_PORT),
})  # fmt: skip
