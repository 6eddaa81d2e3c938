"""The README's list of named queries is the shipped bundles' (issue 18): every query with its sector and the
parameters its mapping declares, nothing more, nothing less."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from adapters.queries import declared_parameters
from adapters.registry import default_bundles_dir

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| (.*) \|$")


def shipped() -> dict[str, tuple[str, str]]:
    """query -> (sector, its parameters as the README writes them)."""
    found = {}
    for descriptor in sorted(default_bundles_dir().glob("*/bundle.yaml")):
        bundle = yaml.safe_load(descriptor.read_text(encoding="utf-8"))
        for name, file in (bundle.get("queries") or {}).items():
            doc = yaml.safe_load((descriptor.parent / file).read_text(encoding="utf-8"))
            parameters = declared_parameters(doc)
            assert parameters is not None, f"{bundle['sector']} {name} declares no parameters"
            found[name] = (bundle["sector"], ", ".join(
                f"`{p.name}` ({p.type}, {'required' if p.required else 'optional'}"
                + (f", pattern `{p.pattern}`" if p.pattern else "") + ")" for p in parameters))
    return found


def listed() -> dict[str, tuple[str, str]]:
    section = README.read_text(encoding="utf-8").split("## Named queries\n", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines()]
    return {m.group(1): (m.group(2), m.group(3)) for m in rows if m}


def test_the_readme_lists_each_shipped_query_with_its_parameters() -> None:
    assert listed() == shipped()
    assert len(shipped()) == 7  # five sectors' queries and the licence library's two
