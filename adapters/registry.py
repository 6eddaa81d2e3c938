"""From a bundle to a ready adapter: the kind's adapter, wrapped in the bundle's resilience.

`build_adapter(bundle)` compiles the bundle's mappings once, builds the adapter of its `kind` and wraps
it as the descriptor says: retries (outermost) → circuit breaker → rate limit → health → the kind.
Adding an adapter kind means one module plus one line in `_KINDS`. Where bundles come from — the
database's registered versions in a running gateway (`gateway.live_registry`), or a folder of bundles
(`Registry.load`, for tools and tests) — is not this module's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.bundle import Bundle, BundleError, compile_mappings, load_bundle, stylesheets
from mappings.validate import Problem
from adapters.contract import Adapter, CanonicalResult
from adapters.health import AdapterHealth
from adapters.resilience import CircuitBreaker, RateLimiter, ResilientAdapter, RetryPolicy, resilient
from adapters.rest import RestAdapter
from adapters.secrets import SecretRefError
from adapters.soap import SoapAdapter
from mappings import CompiledMapping

DESCRIPTOR = "bundle.yaml"
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

    def health_snapshot(self) -> dict[str, Any]:
        return self.adapter.health.snapshot()

    def read_callback(self, answer: Any) -> CanonicalResult:
        """A sector's callback body, read with the bundle's `callback` mapping into the canonical status."""
        return self.mappings[CALLBACK].read_response(answer)


AdapterFactory = Callable[[Bundle, Mapping[str, CompiledMapping], str], Adapter]


def _soap(bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str) -> Adapter:
    return SoapAdapter(bundle.sector, bundle.version, bundle.service_description, endpoint, mappings,
                       bundle.timeout_ms / 1000, soap_version=bundle.soap_version, auth=bundle.auth,
                       stylesheets=stylesheets(bundle))


def _rest(bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str) -> Adapter:
    return RestAdapter(bundle.sector, bundle.version, endpoint, mappings, bundle.timeout_ms / 1000, bundle.auth,
                       bundle.idempotency_header)


_KINDS: Mapping[str, AdapterFactory] = {"soap": _soap, "rest": _rest}


def build_adapter(bundle: Bundle, *, environment: str | None = None, endpoint: str | None = None,
                  retry_override: RetryPolicy | None = None) -> RegisteredAdapter:
    """The bundle's adapter, against `endpoint` (default: the descriptor's for `environment`)."""
    mappings = compile_mappings(bundle)
    sendable = {name: m for name, m in mappings.items() if name != CALLBACK}  # a callback is read, not sent
    try:
        inner = _KINDS[bundle.kind](bundle, sendable, endpoint or bundle.endpoint(environment))
    except SecretRefError as exc:
        raise _error("auth", str(exc)) from exc
    except (ValueError, OSError, KeyError) as exc:
        raise _error("", str(exc)) from exc
    breaker_spec, limit = bundle.circuit_breaker, bundle.rate_limit
    breaker = CircuitBreaker(breaker_spec.failure_threshold if breaker_spec else 5,
                             (breaker_spec.reset_after_ms if breaker_spec else 30_000) / 1000)
    wrapped = resilient(inner, retry=retry_override or bundle.retry, breaker=breaker,
                        limiter=RateLimiter(limit.per_second, limit.burst) if limit else None,
                        health=AdapterHealth(), timeout_s=bundle.timeout_ms / 1000)
    return RegisteredAdapter(bundle, wrapped, mappings)


class Registry:
    """Adapters built from a folder of bundle folders: for offline tools and tests (the gateway keeps
    its registered versions in the database instead)."""

    def __init__(self, adapters: Mapping[str, RegisteredAdapter]) -> None:
        self._adapters = dict(adapters)

    @classmethod
    def load(cls, bundles_dir: Path, endpoints: Mapping[str, str] | None = None,
             retry_override: RetryPolicy | None = None, environment: str | None = None) -> Registry:
        endpoints = dict(endpoints or {})
        adapters: dict[str, RegisteredAdapter] = {}
        for descriptor in sorted(Path(bundles_dir).glob(f"*/{DESCRIPTOR}")):
            bundle = load_bundle(descriptor.parent)
            if bundle.sector in adapters:
                raise _error("sector", f"{bundle.sector!r} is already registered by another bundle")
            adapters[bundle.sector] = build_adapter(bundle, environment=environment,
                                                    endpoint=endpoints.pop(bundle.sector, None),
                                                    retry_override=retry_override)
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
