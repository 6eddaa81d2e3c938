"""The registry of sector bundles: descriptor + service description + mappings, no Python code.

`Registry.load` reads every `<bundles_dir>/*/bundle.yaml`, validates it (errors name the file and
the key), compiles its mappings once, builds the adapter of its `kind` and wraps it with the
bundle's retry policy. Adding an adapter kind means one module plus one line in `_KINDS`.

Descriptor (`bundle.yaml`)::

    sector: social_security           # unique across bundles
    title: ...                        # optional, for people
    kind: soap                        # a key of _KINDS
    version: "1"
    service_description: service.wsdl
    endpoint: http://...              # default; `endpoints` overrides it per deployment
    timeout_ms: 5000
    retry: {attempts: 4, initial_ms: 100, max_ms: 2000}
    poll_interval_ms: 1000
    operations: {submit_case: submit_case.mapping.yaml, ...}   # canonical operation -> mapping file
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from adapters.contract import Adapter, Operation
from adapters.resilience import RetryPolicy, with_retries
from adapters.soap import SoapAdapter
from mappings import CompiledMapping, MappingError, compile_mapping

DESCRIPTOR = "bundle.yaml"


class BundleError(ValueError):
    """A bundle that cannot be registered; the message names the file and the key."""


def default_bundles_dir() -> Path:
    """The bundles shipped with the gateway (`adapters/bundles`)."""
    return Path(__file__).resolve().parent / "bundles"


@dataclass(frozen=True)
class Bundle:
    """A validated descriptor, paths resolved against the bundle's folder."""

    sector: str
    title: str
    kind: str
    version: str
    service_description: Path
    endpoint: str
    timeout_ms: int
    retry: RetryPolicy
    poll_interval_ms: int
    operations: Mapping[Operation, Path]


@dataclass(frozen=True)
class RegisteredAdapter:
    sector: str
    version: str
    adapter: Adapter  # already wrapped with the bundle's retries
    poll_interval_ms: int


AdapterFactory = Callable[[Bundle, Mapping[Operation, CompiledMapping]], Adapter]


def _soap(bundle: Bundle, mappings: Mapping[Operation, CompiledMapping]) -> Adapter:
    timeout_s = bundle.timeout_ms / 1000
    return SoapAdapter(bundle.sector, bundle.version, bundle.service_description, bundle.endpoint, mappings, timeout_s)


_KINDS: Mapping[str, AdapterFactory] = {"soap": _soap}

_REQUIRED = (
    "sector", "kind", "version", "service_description", "endpoint",
    "timeout_ms", "retry", "poll_interval_ms", "operations",
)  # fmt: skip
_OPTIONAL = ("title",)


class _Reader:
    """Validates one descriptor; every error says `<file>: <key>: <problem>`."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.doc = self._load()

    def fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{self.name}: {key}: {problem}")

    def _load(self) -> Mapping[str, Any]:
        try:
            doc = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise BundleError(f"{self.name}: cannot read: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise BundleError(f"{self.name}: expected a mapping of keys")
        unknown = sorted(str(k) for k in doc if k not in _REQUIRED + _OPTIONAL)
        if unknown:
            raise self.fail(unknown[0], "unknown key")
        missing = [k for k in _REQUIRED if k not in doc]
        if missing:
            raise self.fail(missing[0], "required")
        return doc

    def text(self, key: str) -> str:
        value = self.doc.get(key, "")
        if not isinstance(value, str) or (key in _REQUIRED and not value):
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def url(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith(("http://", "https://")):
            raise self.fail(key, f"expected an http(s) URL, got {value!r}")
        return value

    def positive_int(self, key: str) -> int:
        value = self.doc[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"expected a positive whole number, got {value!r}")
        return value

    def file(self, key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a file name, got {value!r}")
        path = (self.path.parent / value).resolve()
        # A bundle is self-contained: its files may not point outside its folder.
        if self.path.parent.resolve() not in path.parents or not path.is_file():
            raise self.fail(key, f"file {value!r} not found in the bundle")
        return path

    def retry(self) -> RetryPolicy:
        spec = self.doc["retry"]
        if not isinstance(spec, Mapping) or set(spec) != {"attempts", "initial_ms", "max_ms"}:
            raise self.fail("retry", "expected {attempts, initial_ms, max_ms}")
        try:
            return RetryPolicy(**{k: self._whole(f"retry.{k}", v) for k, v in spec.items()})
        except ValueError as exc:
            raise self.fail("retry", str(exc)) from exc

    def _whole(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {value!r}")
        return value

    def operations(self) -> dict[Operation, Path]:
        spec = self.doc["operations"]
        if not isinstance(spec, Mapping) or not spec:
            raise self.fail("operations", "expected a mapping of operation -> mapping file")
        known = {op.value: op for op in Operation}
        for name in spec:
            if name not in known:
                raise self.fail(f"operations.{name}", f"unknown operation (known: {', '.join(known)})")
        return {known[name]: self.file(f"operations.{name}", file) for name, file in spec.items()}

    def bundle(self) -> Bundle:
        kind = self.text("kind")
        if kind not in _KINDS:
            raise self.fail("kind", f"unknown adapter kind {kind!r} (known: {', '.join(_KINDS)})")
        return Bundle(
            sector=self.text("sector"),
            title=self.text("title"),
            kind=kind,
            version=self.text("version"),
            service_description=self.file("service_description", self.doc["service_description"]),
            endpoint=self.url("endpoint"),
            timeout_ms=self.positive_int("timeout_ms"),
            retry=self.retry(),
            poll_interval_ms=self.positive_int("poll_interval_ms"),
            operations=self.operations(),
        )


def read_bundle(descriptor: Path, name: str | None = None) -> Bundle:
    """Validate one `bundle.yaml`; `name` is what errors call it (default: its path)."""
    return _Reader(descriptor, name or str(descriptor)).bundle()


def _compile_all(bundle: Bundle, name: str) -> dict[Operation, CompiledMapping]:
    compiled = {}
    for operation, path in bundle.operations.items():
        try:
            compiled[operation] = compile_mapping(path, source_name=path.name)
        except MappingError as exc:
            raise BundleError(f"{name}: operations.{operation}: {exc}") from exc
    return compiled


def _register(bundle: Bundle, name: str, retry_override: RetryPolicy | None) -> RegisteredAdapter:
    mappings = _compile_all(bundle, name)
    try:
        adapter = _KINDS[bundle.kind](bundle, mappings)
    except (ValueError, OSError) as exc:
        raise BundleError(f"{name}: service_description: {exc}") from exc
    wrapped = with_retries(adapter, retry_override or bundle.retry)
    return RegisteredAdapter(bundle.sector, bundle.version, wrapped, bundle.poll_interval_ms)


class Registry:
    """The adapters of every registered sector, ready to call."""

    def __init__(self, adapters: Mapping[str, RegisteredAdapter]) -> None:
        self._adapters = dict(adapters)

    @classmethod
    def load(
        cls,
        bundles_dir: Path,
        endpoints: Mapping[str, str] | None = None,
        retry_override: RetryPolicy | None = None,
    ) -> Registry:
        """Register every `*/bundle.yaml` under `bundles_dir`; `BundleError` on the first bad one.

        `endpoints` overrides sectors' endpoints (per deployment; tests point at ephemeral ports);
        `retry_override` replaces every bundle's retry policy (tests shrink the delays).
        """
        endpoints = dict(endpoints or {})
        adapters: dict[str, RegisteredAdapter] = {}
        for descriptor in sorted(Path(bundles_dir).glob(f"*/{DESCRIPTOR}")):
            name = str(descriptor.relative_to(bundles_dir))
            bundle = read_bundle(descriptor, name)
            if bundle.sector in adapters:
                raise BundleError(f"{name}: sector: {bundle.sector!r} is already registered by another bundle")
            if bundle.sector in endpoints:
                bundle = replace(bundle, endpoint=endpoints.pop(bundle.sector))
            adapters[bundle.sector] = _register(bundle, name, retry_override)
        if endpoints:
            # A typo in a deployment's sector name would otherwise silently call the default endpoint.
            raise BundleError(f"endpoints: no bundle for sector {sorted(endpoints)[0]!r}")
        return cls(adapters)

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(sorted(self._adapters))

    def get(self, sector: str) -> RegisteredAdapter:
        try:
            return self._adapters[sector]
        except KeyError:
            raise KeyError(f"no adapter registered for sector {sector!r}") from None

