"""From a bundle to a ready adapter: the kind's adapter, wrapped in the bundle's resilience.

`build_adapter(bundle)` compiles the bundle's mappings once, builds the adapter of its `kind` and wraps
it as the descriptor says: retries (outermost) → circuit breaker → rate limit → health → the kind, with one
breaker for deliveries and one for named queries, both as the descriptor's `circuit_breaker` says.

Certificates (`tls`, `ws_security`, auth `rsa_signature`) come from a `CredentialSource` (the certificate
store) by name. A bundle naming any is built on the credentials current now (`BundleCredentials`), behind a
`RotatingAdapter` that compares their fingerprints before each call: on a rotation it builds the kind afresh,
lets calls in flight finish on the old one and closes that after a grace period, so no call fails.
The kind's adapter is built by the bundle's kind (`adapters.kinds.KINDS`). Where bundles come from — the
database's registered versions in a running gateway (`gateway.sectors.live_registry`), or a folder of bundles
(`Registry.load`, for tools and tests) — is not this module's business.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.auth import NonceStore, verify_callback
from adapters.bundle import BundleError, compile_mappings, load_bundle
from adapters.contract import Adapter, CanonicalMessage, CanonicalResult, DeliveryError, FailureClass, Operation
from adapters.descriptor import DESCRIPTOR, Bundle, CallbackResults, PollingResults, TlsSpec
from adapters.health import AdapterHealth
from adapters.kind import BundleCredentials, CredentialReferences
from adapters.kinds import KINDS
from adapters.queries import QueryParameter, parameter_errors, query_contract
from adapters.resilience import CircuitBreaker, RateLimiter, ResilientAdapter, RetryPolicy, resilient
from adapters.secrets import SecretRefError
from adapters.signing import WireRequest, sample_request
from certstore.credentials import Credential, CredentialMissing, CredentialSource
from mappings import CompiledMapping
from mappings.positions import load_yaml
from mappings.validate import Problem

CALLBACK = "callback"


def default_bundles_dir() -> Path:
    """The bundles shipped with the gateway (`adapters/bundles`)."""
    return Path(__file__).resolve().parent / "bundles"


@dataclass(frozen=True)
class RegisteredAdapter:
    """One bundle version of one sector, ready to call."""

    bundle: Bundle
    adapter: ResilientAdapter
    mappings: Mapping[str, CompiledMapping]
    # The sector's certificates its callbacks are signed with (`results.callback_auth.key`), read when asked.
    callback_credentials: Callable[[], tuple[Credential, ...]] = tuple
    # Named query -> its parameters as callers see them, and whether declared (`adapters.queries.query_contract`).
    queries: Mapping[str, tuple[tuple[QueryParameter, ...], bool]] = field(default_factory=dict)

    def parameter_errors(self, query: str, params: Mapping[str, Any]) -> list[dict[str, str]]:
        """What is wrong with a caller's parameters of `query` under its declared contract (none declared:
        nothing is checked here, the sector's interface decides)."""
        parameters, declared = self.queries.get(query, ((), False))
        return parameter_errors(parameters, params) if declared else []

    @property
    def sector(self) -> str:
        return self.bundle.sector

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def poll_interval_ms(self) -> int | None:
        """How often to ask for a decision; None when the sector calls back instead."""
        return getattr(self.bundle.results, "interval_ms", None)

    @property
    def max_bad_answers(self) -> int:
        """Unreadable status answers in a row before polling gives up (`results.max_bad_answers`)."""
        return getattr(self.bundle.results, "max_bad_answers", PollingResults.max_bad_answers)

    def health_snapshot(self) -> dict[str, Any]:
        return self.adapter.health.snapshot()

    def verify_callback(self, method: str, path: str, headers: Mapping[str, str], body: bytes, *, now: float,
                        seen_nonces: NonceStore, query: Sequence[tuple[str, str]] = ()) -> None:
        """Accept a callback signed as `results.callback_auth` says, or raise `SignatureError` (a polling
        bundle takes no callbacks: `ValueError`). A certificate-signed one is checked against every trusted
        version of the sector's certificate (`key: cert:NAME`), read from the store now."""
        results = self.bundle.results
        if not isinstance(results, CallbackResults):
            raise ValueError(f"{self.sector} {self.version} does not answer by callback")
        verify_callback(results.callback_auth, WireRequest(method, path, tuple(query), dict(headers), body), now=now,
                        seen_nonces=seen_nonces, trusted=self.callback_credentials())

    def show_signing(self, sample: Any) -> dict[str, Any] | None:
        """For a sample request (`adapters.signing.sample_request`: `ValueError` if malformed), what the bundle's
        signing recipe signs, adds and computes, secrets masked; None when its auth is no recipe."""
        shown = getattr(_kind_adapter(self.adapter), "show_signing", None)
        return None if shown is None else shown(sample_request(sample), with_signature=True)

    def preview_signing(self, operation: str, message: CanonicalMessage) -> dict[str, Any] | None:
        """What would be signed for `message` (the signature itself withheld); None when nothing is signed."""
        previewed = getattr(_kind_adapter(self.adapter), "preview_signing", None)
        return None if previewed is None else previewed(operation, message)

    def read_callback(self, answer: Any) -> CanonicalResult:
        """A sector's callback body, read with the bundle's `callback` mapping into the canonical status."""
        return self.mappings[CALLBACK].read_response(answer)


def _kind_adapter(adapter: Any) -> Any:
    """The kind's own adapter inside the resilience and rotation wrappers (each holds the next as `inner`)."""
    while hasattr(adapter, "inner"):
        adapter = adapter.inner
    return adapter


log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- credentials


class CredentialProblem(LookupError):
    """A credential a bundle names that cannot be had; `field` is where the bundle names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def credential_references(bundle: Bundle) -> CredentialReferences:
    """Where the bundle names a credential -> (its name, whether every trusted one counts, not the current):
    its `tls`, then what its kind's options and auth name."""
    tls = bundle.tls or TlsSpec()
    named = {"tls.client_certificate": (tls.client_certificate, False), "tls.trust": (tls.trust, True)}
    found = {where: (name, trusted) for where, (name, trusted) in named.items() if name is not None}
    results = bundle.results
    if isinstance(results, CallbackResults) and results.callback_auth.key is not None:
        found["results.callback_auth.key"] = (results.callback_auth.key, True)  # the sector's: every trusted one
    return found | dict(KINDS[bundle.kind].credential_references(bundle))


def resolve_credentials(bundle: Bundle, source: CredentialSource | None) -> BundleCredentials:
    """The bundle's credentials from `source` now; `CredentialProblem` names the field of one it cannot have."""
    found: dict[str, Any] = {}
    for where, (name, trusted) in credential_references(bundle).items():
        if source is None:
            raise CredentialProblem(where, f"cert:{name} needs the certificate store, and none was given")
        try:
            found[where] = tuple(source.trusted(name)) if trusted else source.current(name)
        except CredentialMissing as exc:
            raise CredentialProblem(where, f"{exc} in the certificate store") from None
        if trusted and not found[where]:
            raise CredentialProblem(where, f"no trusted certificate named {name!r} in the certificate store")
    return BundleCredentials(found)


ROTATION_GRACE_S = 120.0  # longer than any call holding the old adapter can still take


class RotatingAdapter:
    """A kind adapter rebuilt whenever a credential it was built with is rotated.

    Before each call the credentials are read again (the store caches them) and their fingerprints
    compared; a change builds the kind afresh for the calls that start from now. A call already holding
    the old adapter finishes on it, and the old one is closed `grace_s` later.
    """

    def __init__(self, build: Callable[[BundleCredentials], Adapter], resolve: Callable[[], BundleCredentials],
                 *, grace_s: float = ROTATION_GRACE_S) -> None:
        self._build, self._resolve, self._grace_s = build, resolve, grace_s
        credentials = resolve()
        self._fingerprints, self.inner = credentials.fingerprints(), build(credentials)
        self.sector, self.version = self.inner.sector, self.inner.version
        self._lock = threading.Lock()

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        return self._current().call(operation, message)

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.inner.render(operation, message)

    def close(self) -> None:
        _close(self.inner)

    def _current(self) -> Adapter:
        try:
            credentials = self._resolve()
            fingerprints = credentials.fingerprints()
            if fingerprints == self._fingerprints:
                return self.inner
            with self._lock:
                if fingerprints != self._fingerprints:
                    old, self.inner = self.inner, self._build(credentials)
                    self._fingerprints = fingerprints
                    log.info("%s %s: credentials rotated, adapter rebuilt", self.sector, self.version)
                    _close_later(old, self._grace_s)
            return self.inner
        except (CredentialProblem, ValueError, OSError) as exc:  # retired, or a new key that does not fit
            raise DeliveryError(FailureClass.AUTH, f"{self.sector}: credentials not usable: {exc}") from exc

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if name.startswith("_") or inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def _close(adapter: Adapter) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        close()


def _close_later(adapter: Adapter, grace_s: float) -> None:
    timer = threading.Timer(grace_s, _close, args=(adapter,))
    timer.daemon = True
    timer.start()


def query_contracts(bundle: Bundle, mappings: Mapping[str, CompiledMapping]
                    ) -> dict[str, tuple[tuple[QueryParameter, ...], bool]]:
    """Each named query's parameters, read from its mapping file's `parameters:` block (or its reads)."""
    found = {}
    for name, path in bundle.queries.items():
        doc = load_yaml(path.read_text(encoding="utf-8"))[0]  # compiled just before: it reads
        found[name] = query_contract(doc, mappings[name])
    return found


def build_adapter(bundle: Bundle, *, environment: str | None = None, endpoint: str | None = None,
                  retry_override: RetryPolicy | None = None, credentials: CredentialSource | None = None,
                  rotation_grace_s: float = ROTATION_GRACE_S) -> RegisteredAdapter:
    """The bundle's adapter, against `endpoint` (default: the descriptor's for `environment`).

    `credentials` is the certificate store, needed when the bundle names a `cert:` reference; a missing
    credential is a `BundleError` naming the field (e.g. `tls.client_certificate: no credential named ...`).
    """
    mappings = compile_mappings(bundle)
    sendable = {name: m for name, m in mappings.items() if name != CALLBACK}  # a callback is read, not sent
    target = endpoint or bundle.endpoint(environment)

    def build(resolved: BundleCredentials) -> Adapter:
        return KINDS[bundle.kind].build(bundle, sendable, target, resolved)

    try:
        if credential_references(bundle):
            inner: Adapter = RotatingAdapter(build, lambda: resolve_credentials(bundle, credentials),
                                             grace_s=rotation_grace_s)
        else:
            inner = build(BundleCredentials())
    except SecretRefError as exc:
        raise _error("auth", str(exc)) from exc
    except CredentialProblem as exc:
        raise _error(exc.field, exc.message) from exc
    except (ValueError, OSError, KeyError) as exc:
        raise _error("", str(exc)) from exc
    breaker_spec, limit = bundle.circuit_breaker, bundle.rate_limit
    breaker = CircuitBreaker(breaker_spec.failure_threshold if breaker_spec else 5,
                             (breaker_spec.reset_after_ms if breaker_spec else 30_000) / 1000)
    wrapped = resilient(inner, retry=retry_override or bundle.retry, breaker=breaker,
                        limiter=RateLimiter(limit.per_second, limit.burst) if limit else None,
                        health=AdapterHealth(), timeout_s=bundle.timeout_ms / 1000)
    def callback_credentials() -> tuple[Credential, ...]:
        if not isinstance(bundle.results, CallbackResults) or bundle.results.callback_auth.key is None:
            return ()
        return resolve_credentials(bundle, credentials).trusted("results.callback_auth.key")

    return RegisteredAdapter(bundle, wrapped, mappings, callback_credentials, query_contracts(bundle, mappings))


class Registry:
    """Adapters built from a folder of bundle folders: for offline tools and tests (the gateway keeps
    its registered versions in the database instead)."""

    def __init__(self, adapters: Mapping[str, RegisteredAdapter]) -> None:
        self._adapters = dict(adapters)

    @classmethod
    def load(cls, bundles_dir: Path, endpoints: Mapping[str, str] | None = None,
             retry_override: RetryPolicy | None = None, environment: str | None = None,
             credentials: CredentialSource | None = None) -> Registry:
        endpoints = dict(endpoints or {})
        adapters: dict[str, RegisteredAdapter] = {}
        for descriptor in sorted(Path(bundles_dir).glob(f"*/{DESCRIPTOR}")):
            bundle = load_bundle(descriptor.parent)
            if bundle.sector in adapters:
                raise _error("sector", f"{bundle.sector!r} is already registered by another bundle")
            adapters[bundle.sector] = build_adapter(bundle, environment=environment,
                                                    endpoint=endpoints.pop(bundle.sector, None),
                                                    retry_override=retry_override, credentials=credentials)
        if endpoints:
            # A typo in a deployment's sector name would otherwise silently call the default endpoint.
            raise _error("endpoints", f"no bundle for sector {sorted(endpoints)[0]!r}")
        return cls(adapters)

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(sorted(self._adapters))

    def get(self, sector: str) -> RegisteredAdapter:
        try:
            return self._adapters[sector]
        except KeyError:
            raise KeyError(f"no adapter registered for sector {sector!r}") from None


def _error(field: str, message: str) -> BundleError:
    return BundleError([Problem(DESCRIPTOR, None, field, message)])
