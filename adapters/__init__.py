"""Adapters: how the gateway reaches sector systems — the adapter contract, bundles, the adapter registry.

Public API (what `__all__` names, importable from `adapters` itself; the gateway uses nothing else):
- the contract every adapter keeps: `Adapter`, `Operation`, `CanonicalMessage`/`CanonicalResult`,
  `DeliveryError` with its `FailureClass`, `UnsendableRequest`; what the canonical message carries
  (`MATERIALS_SENT_WITH`);
- bundles: the checked descriptor (`Bundle`, `CallbackResults`, `PollingResults`, `DESCRIPTOR`), reading,
  unpacking, validating and previewing them (`load_bundle`, `unpack_bundle`, `validate_bundle`, `preview`;
  `BundleError` with its `Problem`s);
- ready adapters: `build_adapter` -> `RegisteredAdapter` (resilience as the bundle says: `RetryPolicy`, the
  breakers `DELIVERY_BREAKER`/`QUERY_BREAKER`), `Registry`, `default_bundles_dir`; what a named query's
  mapping reads (`query_parameters` -> `QueryParameter`s);
- secrets and callbacks: `SecretRef`, `SecretRefError`, `use_vault`, `verify_hmac`/`SignatureError`;
- the adapter kinds: `AdapterKind` and their registry `KINDS` (`adapters/kinds/<kind>/`).
The modules behind it, the kinds' own modules and the simulators (`adapters.simulators`, which only the
composition root and the simulators' command group start) are not for the gateway to import.
Imports `mappings` and `certstore`, never `gateway` or `ops`.
"""

from adapters.auth import SecretRef, SignatureError, verify_hmac
from adapters.bundle import BundleError, Problem, load_bundle, preview, unpack_bundle, validate_bundle
from adapters.canonical import MATERIALS_SENT_WITH
from adapters.contract import (
    Adapter,
    CanonicalMessage,
    CanonicalResult,
    DeliveryError,
    FailureClass,
    Operation,
    UnsendableRequest,
)
from adapters.descriptor import DESCRIPTOR, Bundle, CallbackResults, PollingResults
from adapters.kind import AdapterKind
from adapters.kinds import KINDS
from adapters.queries import QueryParameter, query_parameters
from adapters.registry import RegisteredAdapter, Registry, build_adapter, default_bundles_dir
from adapters.resilience import DELIVERY_BREAKER, QUERY_BREAKER, RetryPolicy
from adapters.secrets import SecretRefError, use_vault

__all__ = [
    "DELIVERY_BREAKER", "DESCRIPTOR", "KINDS", "MATERIALS_SENT_WITH", "QUERY_BREAKER",
    "Adapter", "AdapterKind", "Bundle", "BundleError", "CallbackResults", "CanonicalMessage", "CanonicalResult",
    "DeliveryError", "FailureClass", "Operation", "PollingResults", "Problem", "QueryParameter", "RegisteredAdapter",
    "Registry", "RetryPolicy", "SecretRef", "SecretRefError", "SignatureError", "UnsendableRequest",
    "build_adapter", "default_bundles_dir", "load_bundle", "preview", "query_parameters", "unpack_bundle", "use_vault",
    "validate_bundle", "verify_hmac",
]  # fmt: skip
