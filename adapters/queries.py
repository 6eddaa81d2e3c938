"""What a named query takes: the parameters its mapping reads, for the gateway's OpenAPI document.

A bundle declares a named query by its mapping file alone (`queries: {name: file}`); the caller's parameters
arrive as the canonical message `{"query": {...}}`, and the mapping reads them with `from: query.<name>`
(in `request` or, for REST, in `http` path, query and header fields). Those reads are the query's parameters:
required unless every rule reading one is `optional`; a scalar when read whole, an object when the mapping
reads inside it, a list when a `for_each` walks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings import CompiledMapping
from mappings.engine import RuleInfo, describe

QUERY_ROOT = "query"


@dataclass(frozen=True)
class QueryParameter:
    name: str
    required: bool
    shape: str  # "scalar" | "object" | "list"
    sector_fields: tuple[str, ...]  # where the sector's request takes it ("zjhm", "path_params.idCardNo")

    @property
    def description(self) -> str:
        return "送往部门字段 " + "、".join(f"`{f}`" for f in self.sector_fields)


def query_parameters(mapping: CompiledMapping) -> tuple[QueryParameter, ...]:
    """The parameters a named query's compiled mapping reads, by name."""
    reads: dict[str, list[RuleInfo]] = {}
    for rule in describe(mapping):
        if _reads_a_parameter(rule):
            reads.setdefault(rule.source[1], []).append(rule)  # type: ignore[index]  # checked just above
    return tuple(_parameter(name, rules) for name, rules in sorted(reads.items()))


def _reads_a_parameter(rule: RuleInfo) -> bool:
    return (rule.section in ("request", "http") and rule.kind in ("from", "for_each") and not rule.for_each
            and rule.source is not None and len(rule.source) >= 2 and rule.source[0] == QUERY_ROOT)


def _parameter(name: str, rules: list[RuleInfo]) -> QueryParameter:
    if any(r.kind == "for_each" and len(r.source or ()) == 2 for r in rules):
        shape = "list"
    elif any(len(r.source or ()) > 2 for r in rules):
        shape = "object"
    else:
        shape = "scalar"
    return QueryParameter(name, not all(r.optional for r in rules), shape,
                          tuple(dict.fromkeys(".".join(r.target) for r in rules)))
