"""The model of a checked bundle descriptor (`bundle.yaml`, adapters/BUNDLE-FORMAT.md): plain frozen data.

`adapters.bundle` makes a `Bundle` of a descriptor it has checked; the adapter kinds (`adapters/kinds/`) read
one to build, check and preview. What is one kind's own (SOAP's `soap_version`...) is in `Bundle.options`,
as that kind reads it. Imports `adapters.auth` and `adapters.resilience` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from adapters.auth import AuthSpec, Recipe
from adapters.resilience import RetryPolicy

DESCRIPTOR = "bundle.yaml"


@dataclass(frozen=True)
class Department:
    name: str
    credit_code: str


@dataclass(frozen=True)
class Serves:
    departments: tuple[str, ...] = ()
    matters: tuple[str, ...] = ()


@dataclass(frozen=True)
class CircuitBreaker:
    failure_threshold: int
    reset_after_ms: int


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int


@dataclass(frozen=True)
class PollingResults:
    interval_ms: int
    # Status answers in a row that cannot be read (mapping, validation) before polling gives up: a dead letter.
    max_bad_answers: int = 5
    mode: ClassVar[str] = "polling"


@dataclass(frozen=True)
class CallbackResults:
    callback_auth: Recipe  # how the sector signs its callbacks (`hmac` or `signature`)
    mode: ClassVar[str] = "callback"


Results = PollingResults | CallbackResults


@dataclass(frozen=True)
class TlsSpec:
    """The descriptor's `tls`: credential names (from `cert:NAME`), resolved when an adapter is built."""

    client_certificate: str | None = None  # ours, presented to the sector (mTLS)
    trust: str | None = None  # the sector's CA or server certificate; None: the system's trust store


@dataclass(frozen=True)
class Bundle:
    """A checked descriptor; file paths are absolute, inside `root`."""

    root: Path
    format: int
    sector: str
    version: str
    title: str
    department: Department
    kind: str  # a name in `adapters.kinds.KINDS`
    service_description: Path
    endpoints: Mapping[str, str]  # environment -> base URL (soap: the service address)
    serves: Serves
    operations: Mapping[str, Path]  # canonical operation -> mapping file
    queries: Mapping[str, Path]  # named query -> mapping file
    timeout_ms: int
    retry: RetryPolicy
    circuit_breaker: CircuitBreaker | None
    rate_limit: RateLimit | None
    auth: AuthSpec  # `adapters.auth`: secret references only, resolved when an adapter is built
    materials_transport: str
    results: Results | None  # None: a bundle that only subscribes to case events takes no cases to answer for
    code_tables: Path | None  # code_tables.yaml, if the bundle has one
    files: tuple[str, ...] = field(default=())  # every file of the bundle, relative, '/'-separated
    tls: TlsSpec | None = None
    options: Any = None  # the kind's own options, as its `read_options` made them (e.g. `SoapOptions`)
    rehearsal: Path | None = None  # the rehearsal file (`adapters.rehearsal`), if the bundle ships one
    subscriptions: Mapping[str, Path] = field(default_factory=dict)  # case event -> mapping file (`subscriptions:`)

    @property
    def takes_cases(self) -> bool:
        """Whether the sector takes tasks (it has submit_case); one that only subscribes serves no department."""
        return "submit_case" in self.operations

    def mapping(self, name: str) -> tuple[Path, bool]:
        """The mapping file of a canonical operation, subscribed case event or named query, and whether it is a
        query."""
        found = self.mapping_files().get(name)
        if found is not None:
            return found
        known = ", ".join(self.mapping_files())
        raise KeyError(f"{self.sector} version {self.version} has no mapping for {name!r} (has: {known})")

    def endpoint(self, environment: str | None = None) -> str:
        """The base URL for `environment` (default: the first one the descriptor lists)."""
        if environment is None:
            return next(iter(self.endpoints.values()))
        try:
            return self.endpoints[environment]
        except KeyError:
            raise KeyError(f"{self.sector} has no endpoint for environment {environment!r}") from None

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def mapping_files(self) -> dict[str, tuple[Path, bool]]:
        """Every mapping file by name (canonical operations, subscribed case events, then named queries), and
        whether it is a query. The descriptor's check keeps the names apart (no query named like an event)."""
        found = {name: (path, False) for name, path in [*self.operations.items(), *self.subscriptions.items()]}
        return found | {name: (path, True) for name, path in self.queries.items()}


def file_inside(root: Path, name: str) -> Path | None:
    """The file `name` of the bundle in `root`, if it is one and stays inside it (no `..`, no symlink out)."""
    path = (root / name).resolve()
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None
