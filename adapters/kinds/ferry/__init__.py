"""The ferry adapter kind (`FERRY`): a sector behind an isolation gateway (网闸) or a one-way link, reached by files.

A ferry bundle carries the sector's own SOAP or REST bundle in a folder (`ferry.bundle`), which the far-side
agent (the `ferry` package, on the sector's front-end processor) delivers with; the gateway never calls the
sector. Its descriptor is its own (adapters/BUNDLE-FORMAT.md, "The ferry kind"): `format`, `sector`, `version`,
`kind: ferry`, `operations` (a list: the canonical operations that cross; never `query_status`, the agent polls
its sector itself) and the `ferry` block (channel, carried folder, mode, our certificate `sign` and the agent's
`peer`, cipher, answer deadline, resend and beacon periods, file naming, size limits). Everything else — title,
department, whom it serves, timeouts, retries, materials — is the carried bundle's, which must poll
(`results.mode: polling`): no callback crosses a gap.

What a ferry bundle is at the near side (`wrap`): the carried bundle with this bundle's version and operations,
no named queries (no synchronous path crosses a gap), no results of its own (decisions come back across the
ferry), no auth (the agent applies the carried bundle's). The adapter (`adapter.py`, `FerryAdapter`) hands each
message to the station of its channel (`station.py`), reached through one seam the composition root sets:
`use_stations`.

`batch.py` is the batch format (adapters/FERRY-FORMAT.md): seal and open one signed, enveloped file (`keys.py`:
what one side's certificate and key do for it); `folders.py` the link folders: atomic writes with a done marker,
the ready list, quarantine, naming and the text/XML wrappers an isolation gateway's content inspection accepts.

Imports adapters' own modules (auth, contract, descriptor, kind, kinds.common), certstore, mappings and
sqlalchemy; never another kind, never `gateway`, `ops` or `ferry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from adapters.auth import NO_AUTH, AuthForms
from adapters.canonical import OPERATIONS
from adapters.contract import Adapter, Operation
from adapters.descriptor import Bundle, PollingResults
from adapters.kind import BundleCredentials, CredentialReferences, KindOnly, KindSchema, MappingCheck, ProblemAt
from adapters.kinds.common import no_check
from adapters.kinds.ferry.adapter import FerryAdapter, use_stations
from certstore.credentials import reference_name
from mappings import CompiledMapping
from mappings.validate import MappingFile, Problem

__all__ = ["FERRY", "FerryKind", "FerryOptions", "FerryAdapter", "use_stations"]

CARRIED_KINDS = ("soap", "rest")  # what the agent delivers with; a ferry never carries a ferry
# The canonical operations that may cross: never query_status (the agent polls), never a callback (none crosses).
CROSSING = tuple(op for op in OPERATIONS if op not in (Operation.QUERY_STATUS, "callback"))
MODES = ("two_way", "one_way")
CIPHERS = ("sm4-gcm", "aes-256-gcm")
WRAPPERS = ("none", "text", "xml")
MiB = 1024 * 1024


@dataclass(frozen=True)
class FerryOptions:
    """A ferry bundle's own options (`Bundle.options`), defaults as adapters/BUNDLE-FORMAT.md says."""

    channel: str  # the link's name: channels <channel>.down (to the agent) and <channel>.up (back)
    folder: str  # the carried bundle's folder inside this one
    carried: Bundle  # the carried SOAP/REST bundle, checked
    sign: str  # our certificate and key in the gateway's store (signs, unwraps)
    peer: str  # the agent's certificate (verifies what it sends, receives our content keys)
    mode: str = "two_way"
    cipher: str = "sm4-gcm"
    answer_within_ms: int = 2 * 24 * 3600 * 1000  # a message unanswered this long is a dead letter (timeout)
    resend_after_ms: int = 5 * 60 * 1000  # two_way: an unreceipted batch is written again after this
    beacon_every_ms: int = 60 * 1000  # one_way: a beacon this often
    extension: str = ".ferry"  # of the batch files (what the isolation gateway's content inspection accepts)
    wrapper: str = "none"  # none | text (base64 lines) | xml
    batch_bytes: int = 16 * MiB
    message_bytes: int = 4 * MiB

    @property
    def send_channel(self) -> str:
        return f"{self.channel}.down"

    @property
    def receive_channel(self) -> str:
        return f"{self.channel}.up"


def _at_least(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum}


_FERRY = {
    "description": "ferry only: how the bundle's messages cross the gap (adapters/BUNDLE-FORMAT.md, The ferry kind)",
    "type": "object",
    "required": ["channel", "bundle", "sign", "peer"],
    "additionalProperties": False,
    "properties": {
        "channel": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,40}$",
                    "x-message": "{value!r} is not a channel name ([a-z][a-z0-9_]{{1,40}})"},
        "bundle": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
                   "x-message": "expected the name of a folder inside this bundle (no '/'), got {value!r}"},
        "mode": {"enum": list(MODES), "x-message": f"unknown mode {{value!r}} (known: {', '.join(MODES)})"},
        "sign": {"$ref": "#/$defs/certRef"},
        "peer": {"$ref": "#/$defs/certRef"},
        "cipher": {"enum": list(CIPHERS), "x-message": f"unknown cipher {{value!r}} (known: {', '.join(CIPHERS)})"},
        "answer_within_ms": _at_least(1000),
        "resend_after_ms": _at_least(1),
        "beacon_every_ms": _at_least(1),
        "naming": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "extension": {"type": "string", "pattern": "^\\.[A-Za-z0-9]{1,10}$",
                              "x-message": "expected a file extension such as .txt, got {value!r}"},
                "wrapper": {"enum": list(WRAPPERS),
                            "x-message": f"unknown wrapper {{value!r}} (known: {', '.join(WRAPPERS)})"},
            },
        },
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"batch_bytes": _at_least(1024), "message_bytes": _at_least(1)},
        },
    },
}
_OPERATIONS = {
    "type": "array",
    "minItems": 1,
    "uniqueItems": True,
    "contains": {"const": Operation.SUBMIT_CASE.value},
    "items": {"enum": list(CROSSING),
              "x-message": f"{{value!r}} does not cross a ferry (known: {', '.join(CROSSING)}; query_status never "
                           "does: the agent polls its sector)"},
    "x-message": "expected a list of the canonical operations that cross, each once, submit_case among them",
}


class FerryKind:
    """The ferry kind (`adapters.kind.AdapterKind` and `CarryingKind`)."""

    name = "ferry"
    auth_forms = AuthForms("ferry", frozenset({"none"}))  # the carried bundle's auth is the agent's to apply
    schema = KindSchema(properties={"ferry": _FERRY}, then={"properties": {"operations": _OPERATIONS}},
                        own_descriptor=("format", "sector", "version", "kind", "operations", "ferry"))
    kind_only: tuple[KindOnly, ...] = (KindOnly(("ferry",), "ferry bundles only"),)

    def read_options(self, doc: Mapping[str, Any]) -> FerryOptions:
        raise TypeError("a ferry bundle's options are read when it wraps its carried bundle")

    # ---------------------------------------------------------------- carrying

    def carried_folder(self, doc: Mapping[str, Any]) -> str:
        return str(doc["ferry"]["bundle"])

    def wrap(self, root: Path, doc: Mapping[str, Any], carried: Bundle, at: ProblemAt
             ) -> tuple[Bundle | None, list[Problem]]:
        problems = list(_carried_problems(doc, carried, at))
        spec = doc["ferry"]
        limits, naming = spec.get("limits") or {}, spec.get("naming") or {}
        defaults = FerryOptions("", "", carried, "", "")
        if limits.get("message_bytes", defaults.message_bytes) > limits.get("batch_bytes", defaults.batch_bytes):
            problems.append(at(["ferry", "limits", "message_bytes"], "must not exceed limits.batch_bytes"))
        if problems:
            return None, problems
        options = FerryOptions(
            channel=spec["channel"], folder=spec["bundle"], carried=carried, sign=reference_name(spec["sign"]),
            peer=reference_name(spec["peer"]), mode=spec.get("mode", defaults.mode),
            cipher=spec.get("cipher", defaults.cipher),
            answer_within_ms=spec.get("answer_within_ms", defaults.answer_within_ms),
            resend_after_ms=spec.get("resend_after_ms", defaults.resend_after_ms),
            beacon_every_ms=spec.get("beacon_every_ms", defaults.beacon_every_ms),
            extension=naming.get("extension", defaults.extension), wrapper=naming.get("wrapper", defaults.wrapper),
            batch_bytes=limits.get("batch_bytes", defaults.batch_bytes),
            message_bytes=limits.get("message_bytes", defaults.message_bytes))
        crossing = MappingProxyType({op: carried.operations[op] for op in doc["operations"]})
        return dataclasses.replace(
            carried, root=root.resolve(), version=doc["version"], kind=self.name, operations=crossing,
            queries=MappingProxyType({}), subscriptions=MappingProxyType({}), results=None, auth=NO_AUTH, tls=None,
            rehearsal=None, options=options,
            files=tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())),
        ), []

    def carried(self, bundle: Bundle) -> Bundle:
        return options_of(bundle).carried

    # ---------------------------------------------------------------- the kind

    def credential_references(self, bundle: Bundle) -> CredentialReferences:
        options = options_of(bundle)
        return {"ferry.sign": (options.sign, False), "ferry.peer": (options.peer, True)}  # the agent's: every one

    def check_service(self, bundle: Bundle, at: ProblemAt) -> tuple[list[Problem], MappingCheck]:
        """Nothing of its own: the carried bundle's service description is checked with it."""
        return [], no_check

    def preview(self, bundle: Bundle, mapping: MappingFile, message: Mapping[str, Any],
                endpoint: str) -> dict[str, Any]:
        """The note beside what the carried bundle's kind would render (`adapters.bundle.preview` adds it)."""
        options = options_of(bundle)
        return {"kind": self.name, "crosses": f"across the ferry: channel {options.send_channel} to the agent, "
                                              f"which sends this to {endpoint}; its answer comes back on "
                                              f"{options.receive_channel}"}

    def build(self, bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str,
              credentials: BundleCredentials) -> Adapter:
        options = options_of(bundle)
        return FerryAdapter.of(bundle, options.channel, options.answer_within_ms, options.resend_after_ms)


def _carried_problems(doc: Mapping[str, Any], carried: Bundle, at: ProblemAt) -> list[Problem]:
    """What a ferry needs of the bundle it carries: a kind the agent delivers with, the same sector, polling
    results, and every operation that crosses."""
    problems = []
    folder = doc["ferry"]["bundle"]
    if carried.kind not in CARRIED_KINDS:
        problems.append(at(["ferry", "bundle"], f"{folder}/ is a {carried.kind} bundle; a ferry carries "
                                                f"{' or '.join(CARRIED_KINDS)} bundles"))
    if carried.sector != doc["sector"]:
        problems.append(at(["sector"], f"{doc['sector']!r}, but {folder}/ is sector {carried.sector!r}"))
    if not isinstance(carried.results, PollingResults):
        problems.append(at(["ferry", "bundle"], f"{folder}/ must poll (results.mode: polling): the agent asks its "
                                                "sector for decisions, no callback crosses a gap"))
    for index, operation in enumerate(doc["operations"]):
        if operation not in carried.operations:
            problems.append(at(["operations", index], f"{folder}/ has no {operation}"))
    return problems


def options_of(bundle: Bundle) -> FerryOptions:
    if not isinstance(bundle.options, FerryOptions):  # a Bundle of another kind handed to this one
        raise TypeError(f"{bundle.sector}: not a ferry bundle ({bundle.kind})")
    return bundle.options


FERRY = FerryKind()
