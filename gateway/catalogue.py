"""The matter catalogue, loaded from a file in the repository (or one the deployment names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.domain.codes import is_valid_implementation_code
from gateway.domain.matter import Material, Matter, MatterType

DEFAULT_CATALOGUE = Path(__file__).parent / "data" / "catalogue.yaml"


class CatalogueError(ValueError):
    """The catalogue file is not usable; the message names the file and the entry."""


@dataclass(frozen=True)
class Catalogue:
    matters: Mapping[str, Matter]

    def get(self, implementation_code: str) -> Matter | None:
        return self.matters.get(implementation_code)

    def __iter__(self) -> Iterator[Matter]:
        return iter(self.matters.values())

    def __len__(self) -> int:
        return len(self.matters)


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> Catalogue:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("matters"), list):
        raise CatalogueError(f"{path}: expected a mapping with a list under 'matters'")
    matters: dict[str, Matter] = {}
    for index, entry in enumerate(document["matters"]):
        matter = _matter(entry, f"{path}: matters[{index}]")
        if matter.implementation_code in matters:
            raise CatalogueError(f"{path}: matters[{index}]: duplicate code {matter.implementation_code}")
        matters[matter.implementation_code] = matter
    return Catalogue(matters)


def _matter(entry: Any, where: str) -> Matter:
    try:
        code = str(entry["implementation_code"])
        if not is_valid_implementation_code(code):
            raise CatalogueError(f"{where}: implementation_code {code!r} is not a valid 31-character code")
        return Matter(
            implementation_code=code,
            name=str(entry["name"]),
            type=MatterType(str(entry["type"])),
            department=str(entry["department"]),
            sector=str(entry["sector"]),
            materials=tuple(Material(str(m["name"]), bool(m.get("mandatory", True))) for m in entry["materials"]),
            promised_working_days=int(entry["promised_working_days"]),
            result_name=str(entry.get("result_name", "")),
        )
    except CatalogueError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(f"{where}: {type(exc).__name__}: {exc}") from exc
