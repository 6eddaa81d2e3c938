"""Adapters: how the gateway reaches sector systems — the adapter contract, bundles, the adapter registry.

Public API (what `__all__` names, importable from `adapters` itself; the gateway uses nothing else):
- the contract every adapter keeps: `Adapter`, `Operation`, the case events a bundle may subscribe to
  (`CaseEventType`), `CanonicalMessage`/`CanonicalResult`,
  `DeliveryError` with its `FailureClass`, `UnsendableRequest`, `SectorRefusal` (a final business refusal),
  `AnswerPending` (the message is on its way across a gap: ask again later);
  what the canonical message carries (`MATERIALS_SENT_WITH`);
- bundles: the checked descriptor (`Bundle`, `CallbackResults`, `PollingResults`, `DESCRIPTOR`), reading,
  unpacking, validating and previewing them (`load_bundle`, `unpack_bundle`, `validate_bundle`, `bundle_warnings`,
  `preview`; the bundle a ferry bundle carries, `carried_bundle`;
  `BundleError` with its `Problem`s); rehearsal files (`read_rehearsal` -> `RehearsalItem`s, `judge` of an
  `Answer`, `RehearsalInvalid`);
- ready adapters: `build_adapter` -> `RegisteredAdapter` (resilience as the bundle says: `RetryPolicy`, the
  breakers `DELIVERY_BREAKER`/`QUERY_BREAKER`), `Registry`, `default_bundles_dir`; what a named query takes
  (`QueryParameter`s: its declared contract, `RegisteredAdapter.queries` and `.parameter_errors`, or what its
  mapping reads, `query_parameters`);
- secrets and callbacks: `SecretRef`, `SecretRefError`, `use_vault`, `verify_callback`/`SignatureError`;
- personal data in text a sector or a person wrote, masked (`mask_text`, `mask_value`): one rule for the logs,
  the views and the far-side agent;
- the adapter kinds: `AdapterKind` and their registry `KINDS` (`adapters/kinds/<kind>/`);
- the ferry (adapters/kinds/ferry, adapters/FERRY-FORMAT.md), for the gateway's near side and the far-side agent
  (`ferry`): a ferry bundle's options (`FerryOptions`), batches (`Batch`, `Entry`, `FerryKeys`, `Limits`,
  `BatchRefused`; `keys_from_store`: a side's keys from its certificate store), link folders (`LinkFolder`,
  `Naming`, `FolderFull`), one side of a link (`Station`, `StationConfig`, `ReceiveReport`, `ChannelStatus`;
  `crash_point`, the test-only crash points a link folder is handed) and its tables (`ferry_tables` ->
  `FerryTables`).
The modules behind it, the kinds' own modules and the simulators (`adapters.simulators`, which only the
composition root and the simulators' command group start) are not for the gateway to import.
Imports `mappings` and `certstore`, never `gateway` or `ops`.
Importing the package is cheap: each name is imported from its module on first use (PEP 562 `__getattr__`), so
`from adapters import FailureClass` does not load the adapter kinds (zeep, lxml, httpx). A `yiwang` command
that only reads the database starts in a fraction of the time it would take with the kinds loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and readers see them; at run time `__getattr__` imports them on first use
    from adapters.auth import SecretRef, SignatureError, verify_callback
    from adapters.bundle import (
        BundleError,
        Problem,
        bundle_warnings,
        carried_bundle,
        load_bundle,
        preview,
        unpack_bundle,
        validate_bundle,
    )
    from adapters.canonical import MATERIALS_SENT_WITH
    from adapters.contract import (
        Adapter,
        AnswerPending,
        CanonicalMessage,
        CanonicalResult,
        DeliveryError,
        FailureClass,
        Operation,
        SectorRefusal,
        UnsendableRequest,
    )
    from adapters.descriptor import DESCRIPTOR, Bundle, CallbackResults, PollingResults
    from adapters.kind import AdapterKind
    from adapters.kinds import KINDS
    from adapters.kinds.ferry import FerryOptions
    from adapters.kinds.ferry.batch import Batch, BatchRefused, Entry, FerryKeys, Limits, keys_from_store
    from adapters.kinds.ferry.folders import FolderFull, LinkFolder, Naming
    from adapters.kinds.ferry.station import ChannelStatus, ReceiveReport, Station, StationConfig, crash_point
    from adapters.kinds.ferry.tables import FerryTables, ferry_tables
    from adapters.masking import mask_text, mask_value
    from adapters.queries import QueryParameter, query_parameters
    from adapters.registry import RegisteredAdapter, Registry, build_adapter, default_bundles_dir
    from adapters.rehearsal import Answer, RehearsalInvalid, RehearsalItem, judge, read_rehearsal
    from adapters.resilience import DELIVERY_BREAKER, QUERY_BREAKER, RetryPolicy
    from adapters.secrets import SecretRefError, use_vault

# Where each public name lives.
_MODULE_OF = {
    "SecretRef": "auth", "SignatureError": "auth", "verify_callback": "auth",
    "BundleError": "bundle", "Problem": "bundle", "load_bundle": "bundle", "preview": "bundle",
    "unpack_bundle": "bundle", "validate_bundle": "bundle", "bundle_warnings": "bundle",
    "carried_bundle": "bundle",
    "MATERIALS_SENT_WITH": "canonical",
    "Adapter": "contract", "AnswerPending": "contract", "CanonicalMessage": "contract",
    "CanonicalResult": "contract", "DeliveryError": "contract",
    "FailureClass": "contract", "Operation": "contract", "SectorRefusal": "contract",
    "UnsendableRequest": "contract", "CaseEventType": "contract",
    "DESCRIPTOR": "descriptor", "Bundle": "descriptor", "CallbackResults": "descriptor", "PollingResults": "descriptor",
    "AdapterKind": "kind",
    "KINDS": "kinds",
    "FerryOptions": "kinds.ferry", "Batch": "kinds.ferry.batch", "BatchRefused": "kinds.ferry.batch",
    "Entry": "kinds.ferry.batch", "FerryKeys": "kinds.ferry.batch", "Limits": "kinds.ferry.batch",
    "keys_from_store": "kinds.ferry.batch",
    "FolderFull": "kinds.ferry.folders", "LinkFolder": "kinds.ferry.folders", "Naming": "kinds.ferry.folders",
    "ChannelStatus": "kinds.ferry.station", "ReceiveReport": "kinds.ferry.station", "Station": "kinds.ferry.station",
    "StationConfig": "kinds.ferry.station", "crash_point": "kinds.ferry.station",
    "FerryTables": "kinds.ferry.tables", "ferry_tables": "kinds.ferry.tables",
    "mask_text": "masking", "mask_value": "masking",
    "QueryParameter": "queries", "query_parameters": "queries",
    "Answer": "rehearsal", "RehearsalInvalid": "rehearsal", "RehearsalItem": "rehearsal", "judge": "rehearsal",
    "read_rehearsal": "rehearsal",
    "RegisteredAdapter": "registry", "Registry": "registry", "build_adapter": "registry",
    "default_bundles_dir": "registry",
    "DELIVERY_BREAKER": "resilience", "QUERY_BREAKER": "resilience", "RetryPolicy": "resilience",
    "SecretRefError": "secrets", "use_vault": "secrets",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"adapters.{module}"), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "DELIVERY_BREAKER", "DESCRIPTOR", "KINDS", "MATERIALS_SENT_WITH", "QUERY_BREAKER",
    "Adapter", "AdapterKind", "Answer", "AnswerPending", "Batch", "BatchRefused", "Bundle", "BundleError",
    "CallbackResults", "CanonicalMessage", "CanonicalResult", "CaseEventType", "ChannelStatus", "DeliveryError",
    "Entry", "FailureClass", "FerryKeys", "FerryOptions", "FerryTables", "FolderFull", "Limits", "LinkFolder",
    "Naming", "Operation", "PollingResults", "Problem", "QueryParameter", "ReceiveReport", "RegisteredAdapter",
    "Registry", "RehearsalInvalid", "RehearsalItem", "RetryPolicy", "SecretRef", "SecretRefError", "SectorRefusal",
    "SignatureError", "Station", "StationConfig", "UnsendableRequest",
    "build_adapter", "bundle_warnings", "carried_bundle", "crash_point", "default_bundles_dir", "ferry_tables",
    "judge", "keys_from_store", "load_bundle", "mask_text", "mask_value", "preview", "query_parameters",
    "read_rehearsal", "unpack_bundle", "use_vault", "validate_bundle", "verify_callback",
]  # fmt: skip
