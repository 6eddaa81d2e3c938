"""A toy adapter kind, registered by a test to show that adding a kind is one folder and one entry in `KINDS`.

Everything a kind is, in one small module (`adapters.kind.AdapterKind`): one option of its own
(`toy_prefix`, the start of every reference the toy sector gives), two auth forms, a service description
(`toy.json`: the operations the toy sector offers) that each mapping's `operation` is checked against,
a preview, and an adapter that keeps what it is sent in memory and answers at once: a case is received,
then approved on the first status query. A test registers it with `monkeypatch.setitem(KINDS, "toy",
ToyKind())`, which is undone when the test ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.auth import AuthForms
from adapters.contract import Adapter, CanonicalMessage, CanonicalResult, Operation
from adapters.descriptor import Bundle
from adapters.kind import BundleCredentials, CredentialReferences, KindOnly, KindSchema, MappingCheck, ProblemAt
from adapters.kinds.common import mapping_for, no_check
from mappings import CompiledMapping
from mappings.validate import Expectations, MappingFile, Problem

# What the toy sector answers, by the operation a mapping names (its "wire format").
ANSWERS = {"submit": lambda sent, n: {"ref": f"{sent['prefix']}{n}"},
           "status": lambda sent, n: {"state": "OK", "note": "toy approves"}}


@dataclass(frozen=True)
class ToyOptions:
    prefix: str


@dataclass
class ToyAdapter:
    """One toy bundle version: renders with the mapping, records what it would send, answers as the toy sector."""

    sector: str
    version: str
    prefix: str
    mappings: Mapping[str, CompiledMapping]
    sent: list[tuple[str, dict[str, Any]]]

    def render(self, operation: Operation | str, message: CanonicalMessage) -> dict[str, Any]:
        return self._mapping(operation).render_request(message) | {"prefix": self.prefix}

    def call(self, operation: Operation | str, message: CanonicalMessage) -> CanonicalResult:
        mapping = self._mapping(operation)
        request = self.render(operation, message)
        self.sent.append((mapping.operation, request))
        return mapping.read_response(ANSWERS[mapping.operation](request, len(self.sent)))

    def _mapping(self, operation: Operation | str) -> CompiledMapping:
        return mapping_for(self.mappings, operation, f"{self.sector} version {self.version}")


@dataclass(eq=False)
class ToyKind:
    """The toy kind; `sent` is everything its adapters were asked to send, as (operation, request)."""

    name: str = "toy"
    auth_forms: AuthForms = AuthForms("toy", frozenset({"none", "bearer"}))
    schema: KindSchema = KindSchema(properties={"toy_prefix": {"type": "string", "minLength": 1}})
    kind_only: tuple[KindOnly, ...] = (KindOnly(("toy_prefix",), "toy bundles only"),)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def read_options(self, doc: Mapping[str, Any]) -> ToyOptions:
        return ToyOptions(doc.get("toy_prefix", "TOY-"))

    def credential_references(self, bundle: Bundle) -> CredentialReferences:
        return {}

    def check_service(self, bundle: Bundle, at: ProblemAt) -> tuple[list[Problem], MappingCheck]:
        described = bundle.relative(bundle.service_description)
        try:
            offered = json.loads(bundle.service_description.read_text(encoding="utf-8"))["operations"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return [at(["service_description"], f"{described}: not a toy service description ({exc})")], no_check

        def check(mapping: MappingFile, expected: Expectations) -> list[Problem]:
            operation = mapping.compiled.operation
            if operation in offered:
                return []
            return [Problem(mapping.name, mapping.positions.line(["operation"]), "operation",
                            f"{described} offers no operation {operation!r}")]

        return [], check

    def preview(self, bundle: Bundle, mapping: MappingFile, message: Mapping[str, Any],
                endpoint: str) -> dict[str, Any]:
        return {"kind": self.name, "operation": mapping.compiled.operation, "endpoint": endpoint,
                "request": mapping.compiled.render_request(message)}

    def build(self, bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str,
              credentials: BundleCredentials) -> Adapter:
        return ToyAdapter(bundle.sector, bundle.version, bundle.options.prefix, mappings, self.sent)
