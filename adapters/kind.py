"""What an adapter kind is: the `AdapterKind` protocol every kind implements, and the data it exchanges.

An adapter kind is one way of reaching a sector's system (SOAP through a WSDL, REST/JSON through an OpenAPI
document...). Everything about one kind lives in its folder, `adapters/kinds/<kind>/`, behind the one object
its `__init__.py` exports; `adapters.kinds.KINDS` lists them. The gateway never asks which kind a bundle
is: the bundle format (`adapters.bundle`) and the adapter registry (`adapters.registry`) ask the kind.

Adding a kind (the recipe; the toy kind in `tests/support/toy_kind.py` is a complete, small one):
1. `adapters/kinds/<kind>/__init__.py`: an object with the attributes and methods below, the adapter it builds
   beside it (one class implementing `adapters.contract.Adapter`: `call`, `render`, optionally `close`),
   its own auth flows if it applies auth forms on the wire. Helpers several kinds need go in
   `adapters/kinds/common.py`; a kind never imports another kind (import-linter checks).
2. Its entry in `KINDS` (`adapters/kinds/__init__.py`): the import of its object and one dict item.
3. Regenerate the published schema: `make bundle-schema` (a test fails until the copy is current).

A kind whose bundle carries another bundle in a folder of its own (`ferry`: the inner SOAP/REST bundle the agent
behind a gap delivers with) is also a `CarryingKind`: its descriptor is its own (`KindSchema.own_descriptor`: the
keys it requires instead of the common ones, and the common keys it takes from the carried bundle), and
`adapters.bundle` reads and checks the carried bundle first, then asks the kind to `wrap` it.

What a kind declares:
- `name`: the descriptor's `kind`; `auth_forms`: which `auth` forms (`adapters.auth.FORM_TYPES`) it takes;
- `schema`: its fragment of the bundle schema (`KindSchema`: its top-level options, its way of carrying the
  idempotency key, what its bundles must have) and `kind_only`: the options another kind's bundle must not use;
- `read_options(doc)`: its options as a typed value (`Bundle.options`), from a descriptor the schema passed;
- `credential_references(bundle)`: the certificate-store names its options and auth name (besides `tls`);
- `check_service(bundle, at)`: load the service description once, say its problems, and check each mapping
  against it; `preview(bundle, mapping, message, endpoint)`: what would be sent, nothing sent;
- `build(bundle, mappings, endpoint, credentials)`: the adapter, credentials resolved (`BundleCredentials`).

Imports `adapters.auth`, `adapters.contract`, `adapters.descriptor`, `certstore` and `mappings` only.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from adapters.auth import AuthForms
from adapters.contract import Adapter
from adapters.descriptor import Bundle, TlsSpec
from certstore.credentials import Credential
from certstore.tls import client_context
from mappings import CompiledMapping
from mappings.validate import Expectations, MappingFile, Problem

# Where in the descriptor (a key path such as ["soap_version"]) -> a `Problem` worded at that key's line.
ProblemAt = Callable[[Sequence[str | int], str], Problem]
# One mapping checked against the service description: its problems.
MappingCheck = Callable[[MappingFile, Expectations], list[Problem]]
# Where a bundle names a credential (e.g. "ws_security.sign") -> (its name, whether every trusted one counts).
CredentialReferences = Mapping[str, tuple[str, bool]]


@dataclass(frozen=True)
class IdempotencyCarrier:
    """One kind's way of carrying the message's idempotency key: a key of the descriptor's `idempotency`."""

    key: str  # e.g. "header"
    schema: Mapping[str, Any]  # JSON Schema of its value
    hint: str  # what the value is, in the schema's message: "an HTTP header name"
    description: str  # where the key travels, in the schema's description: "an HTTP header"


@dataclass(frozen=True)
class KindSchema:
    """A kind's fragment of the bundle schema (`adapters.bundle_schema` puts the fragments together)."""

    properties: Mapping[str, Any] = field(default_factory=dict)  # top-level descriptor keys it adds
    idempotency: IdempotencyCarrier | None = None
    then: Mapping[str, Any] | None = None  # what a bundle of this kind must also satisfy (JSON Schema)
    # A carrying kind's descriptor: the keys it requires instead of the common ones (None: the common descriptor).
    own_descriptor: tuple[str, ...] | None = None


@dataclass(frozen=True)
class KindOnly:
    """An option only bundles of its kind may use; another kind's bundle naming it gets `message`."""

    path: tuple[str, ...]  # e.g. ("idempotency", "soap_header")
    message: str
    value: Any = None  # when set, only this value is the kind's (materials.transport: mtom)

    def used_in(self, doc: Mapping[str, Any]) -> bool:
        found: Any = doc
        for key in self.path:
            if not isinstance(found, Mapping) or key not in found:
                return False
            found = found[key]
        return self.value is None or found == self.value


@dataclass(frozen=True)
class BundleCredentials:
    """The certificates one build of a bundle's adapter uses, as the store gives them now, by where the bundle
    names them (`tls.client_certificate`, `ws_security.verify`, `auth.key`...)."""

    found: Mapping[str, Credential | tuple[Credential, ...]] = field(default_factory=dict)

    def current(self, where: str) -> Credential | None:
        value = self.found.get(where)
        return value if isinstance(value, Credential) else None

    def trusted(self, where: str) -> tuple[Credential, ...]:
        value = self.found.get(where)
        return value if isinstance(value, tuple) else ()

    def fingerprints(self) -> tuple[Any, ...]:
        """What changes when any of them is rotated (or a sector certificate enters or leaves its overlap)."""
        def one(value: Credential | tuple[Credential, ...]) -> Any:
            return value.fingerprint if isinstance(value, Credential) else tuple(c.fingerprint for c in value)

        return tuple((where, one(value)) for where, value in sorted(self.found.items()))

    def ssl_context(self, tls: TlsSpec | None) -> ssl.SSLContext | None:
        """mTLS and trust as the descriptor's `tls` says; None without `tls` (the kind's default trust)."""
        if tls is None:
            return None
        return client_context(self.current("tls.client_certificate"), self.trusted("tls.trust") or None)


class AdapterKind(Protocol):
    """One adapter kind (see the module's recipe)."""

    name: str
    auth_forms: AuthForms
    schema: KindSchema
    kind_only: tuple[KindOnly, ...]

    def read_options(self, doc: Mapping[str, Any]) -> Any:
        """The kind's options of a descriptor the schema and every rule passed (`Bundle.options`)."""
        ...

    def credential_references(self, bundle: Bundle) -> CredentialReferences:
        """The credentials the kind's options and auth name (`tls` is everyone's: not here)."""
        ...

    def check_service(self, bundle: Bundle, at: ProblemAt) -> tuple[list[Problem], MappingCheck]:
        """The service description's problems, and the check of one mapping against it."""
        ...

    def preview(self, bundle: Bundle, mapping: MappingFile, message: Mapping[str, Any],
                endpoint: str) -> dict[str, Any]:
        """What `mapping` would send for `message` (`{"kind": name, ...}`); `MappingError` if it cannot."""
        ...

    def build(self, bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str,
              credentials: BundleCredentials) -> Adapter:
        """The adapter of one bundle version against `endpoint`; `ValueError`/`OSError` if it cannot be."""
        ...


@runtime_checkable
class CarryingKind(AdapterKind, Protocol):
    """A kind whose bundle carries another one in a folder (see the module's docstring)."""

    def carried_folder(self, doc: Mapping[str, Any]) -> str:
        """The folder, inside the bundle, of the bundle it carries (from a descriptor the schema passed)."""
        ...

    def wrap(self, root: Path, doc: Mapping[str, Any], carried: Bundle, at: ProblemAt
             ) -> tuple[Bundle | None, list[Problem]]:
        """The bundle of the descriptor `doc` in `root`, around the checked `carried` one; or its problems."""
        ...

    def carried(self, bundle: Bundle) -> Bundle:
        """The bundle a bundle of this kind carries."""
        ...
