"""The auth forms a bundle may name (`auth`, `results.callback_auth`), and checking a sector's signed callbacks.

The descriptor's `auth` mapping (BUNDLE-FORMAT.md) is parsed once by `parse_auth` into an `AuthSpec`: a
plain, frozen description holding secret *references*, so a bundle can be validated on a machine without the
secrets. Which forms a bundle accepts is its kind's (`AdapterKind.auth_forms`); how a form is applied on the
wire is the kind's too (`adapters/kinds/<kind>/auth.py`), secrets resolved when its adapter is built.

`hmac` and `rsa_signature` sign one canonical string (`canonical_string`); `verify_hmac` is the other
direction: the gateway's callback endpoint checks a sector's signature (`CALLBACK_FORMS`).
Imports `adapters.secrets` and `certstore.credentials`; no HTTP or SOAP library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from adapters.secrets import LITERAL_REFUSED, REFERENCE_FORMS, Secret, is_reference, load
from certstore.credentials import reference_name

# --------------------------------------------------------------------------- specs


class AuthSpecError(ValueError):
    """A descriptor `auth` mapping that cannot be used; the message starts with the field, e.g. `auth.password`."""


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives (`env:NAME`, `file:/path` or `vault:NAME`); the reference itself is not secret."""

    ref: str

    def load(self) -> Secret:
        return load(self.ref)


# A non-secret field (a username, a client id) may be written literally or kept in the secret store.
Text = str | SecretRef


def resolve_text(value: Text) -> str:
    """The text itself, or the secret it refers to, read now."""
    return value if isinstance(value, str) else value.load().reveal()


@dataclass(frozen=True)
class NoAuth:
    type: ClassVar[str] = "none"


@dataclass(frozen=True)
class BasicAuthSpec:
    username: Text
    password: SecretRef
    type: ClassVar[str] = "basic"


@dataclass(frozen=True)
class BearerAuthSpec:
    token: SecretRef
    type: ClassVar[str] = "bearer"


@dataclass(frozen=True)
class OAuth2Spec:
    token_path: str  # relative to the endpoint, or an absolute URL
    client_id: Text
    client_secret: SecretRef
    scope: str | None
    type: ClassVar[str] = "oauth2_client_credentials"


@dataclass(frozen=True)
class HmacHeaders:
    """The header names carrying each part of a signature (defaults: the X-Ca-* dialect)."""

    key_id: str = "X-Ca-Key"
    timestamp: str = "X-Ca-Timestamp"
    nonce: str = "X-Ca-Nonce"
    signature: str = "X-Ca-Signature"


CANONICAL_PARTS = ("method", "path", "timestamp", "nonce", "body_sha256")


@dataclass(frozen=True)
class HmacSpec:
    secret: SecretRef
    key_id: str | None = None  # sent when set; checked by verify_hmac when set
    algorithm: str = "sha256"
    headers: HmacHeaders = field(default_factory=HmacHeaders)
    canonical: tuple[str, ...] = CANONICAL_PARTS
    max_skew_s: int = 300
    type: ClassVar[str] = "hmac"


RSA_ALGORITHMS = ("rsa-sha256", "rsa-pss-sha256")  # PKCS#1 v1.5 or PSS; never anything but SHA-256


@dataclass(frozen=True)
class RsaSignatureSpec:
    """The HMAC scheme's headers and canonical string, signed with our key `key` (a credential name)."""

    key: str  # the name in `cert:NAME`: resolved in the certificate store when the adapter is built
    key_id: str | None = None  # sent as is; None: the signing certificate's SHA-256 fingerprint
    algorithm: str = "rsa-sha256"
    headers: HmacHeaders = field(default_factory=HmacHeaders)
    canonical: tuple[str, ...] = CANONICAL_PARTS
    type: ClassVar[str] = "rsa_signature"


@dataclass(frozen=True)
class WsseSpec:
    username: Text
    password: SecretRef
    digest: bool
    type: ClassVar[str] = "wsse_username_token"


AuthSpec = NoAuth | BasicAuthSpec | BearerAuthSpec | OAuth2Spec | HmacSpec | RsaSignatureSpec | WsseSpec
NO_AUTH = NoAuth()


@dataclass(frozen=True)
class AuthForms:
    """The auth forms one side accepts (an adapter kind's `auth_forms`, or a sector's callbacks): a REST sector
    cannot take a WS-Security header, and so on. `side` names it in errors."""

    side: str
    types: frozenset[str]


CALLBACK_FORMS = AuthForms("callback", frozenset({"hmac"}))  # how a sector signs its callbacks to us

_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# --------------------------------------------------------------------------- parsing


class _Fields:
    """Reads one `auth` mapping; every error names `<where>.<key>` and never repeats a secret."""

    def __init__(self, spec: Mapping[Any, Any], where: str, allowed: frozenset[str]) -> None:
        self.spec, self.where = spec, where
        unknown = sorted(str(k) for k in spec if k not in allowed | {"type"})
        if unknown:
            raise self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def fail(self, key: str, problem: str) -> AuthSpecError:
        return AuthSpecError(f"{self.where}.{key}: {problem}")

    def text(self, key: str) -> str:
        value = self.spec.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.spec.get(key) is None else self.text(key)

    def secret(self, key: str) -> SecretRef:
        value = self.spec.get(key)
        if isinstance(value, Mapping) and set(value) == {"secret"}:
            if is_reference(value["secret"]):
                return SecretRef(value["secret"])
            raise self.fail(f"{key}.secret", f"expected {REFERENCE_FORMS}")
        if value is None:
            raise self.fail(key, "required")
        # Whatever is there is probably the secret itself: say so without repeating it.
        raise self.fail(key, LITERAL_REFUSED)

    def credential(self, key: str) -> str:
        """A `cert:NAME` reference -> NAME (the certificate store is asked when the adapter is built)."""
        try:
            return reference_name(self.text(key))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def text_or_secret(self, key: str) -> Text:
        return self.secret(key) if isinstance(self.spec.get(key), Mapping) else self.text(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.spec.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def positive_int(self, key: str, default: int) -> int:
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"expected a positive whole number, got {value!r}")
        return value


def _basic(f: _Fields) -> AuthSpec:
    return BasicAuthSpec(f.text_or_secret("username"), f.secret("password"))


def _bearer(f: _Fields) -> AuthSpec:
    return BearerAuthSpec(f.secret("token"))


def _oauth2(f: _Fields) -> AuthSpec:
    return OAuth2Spec(
        token_path=f.text("token_path"),
        client_id=f.text_or_secret("client_id"),
        client_secret=f.secret("client_secret"),
        scope=f.optional_text("scope"),
    )


def _hmac(f: _Fields) -> AuthSpec:
    algorithm = f.optional_text("algorithm") or "sha256"
    if algorithm not in _ALGORITHMS:
        raise f.fail("algorithm", f"expected one of {', '.join(sorted(_ALGORITHMS))}, got {algorithm!r}")
    return HmacSpec(
        secret=f.secret("secret"),
        key_id=f.optional_text("key_id"),
        algorithm=algorithm,
        headers=_hmac_headers(f),
        canonical=_canonical(f),
        max_skew_s=f.positive_int("max_skew_s", 300),
    )


def _rsa_signature(f: _Fields) -> AuthSpec:
    algorithm = f.optional_text("algorithm") or "rsa-sha256"
    if algorithm not in RSA_ALGORITHMS:
        raise f.fail("algorithm", f"expected one of {', '.join(RSA_ALGORITHMS)}, got {algorithm!r}")
    return RsaSignatureSpec(key=f.credential("key"), key_id=f.optional_text("key_id"), algorithm=algorithm,
                            headers=_hmac_headers(f), canonical=_canonical(f))


def _hmac_headers(f: _Fields) -> HmacHeaders:
    spec = f.spec.get("headers") or {}
    names = [slot.name for slot in fields(HmacHeaders)]
    if not isinstance(spec, Mapping):
        raise f.fail("headers", f"expected a mapping of {', '.join(names)} -> header name")
    for key, name in spec.items():
        if key not in names:
            raise f.fail(f"headers.{key}", f"unknown key (allowed: {', '.join(names)})")
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise f.fail(f"headers.{key}", f"not a header name: {name!r}")
    return HmacHeaders(**spec)


def _canonical(f: _Fields) -> tuple[str, ...]:
    parts = f.spec.get("canonical", list(CANONICAL_PARTS))
    if not isinstance(parts, list) or not parts or len(set(map(str, parts))) != len(parts):
        raise f.fail("canonical", "expected a non-empty list of distinct parts")
    for part in parts:
        if part not in CANONICAL_PARTS:
            raise f.fail("canonical", f"unknown part {part!r} (known: {', '.join(CANONICAL_PARTS)})")
    return tuple(parts)


def _wsse(f: _Fields) -> AuthSpec:
    return WsseSpec(f.text_or_secret("username"), f.secret("password"), f.flag("digest", False))


# type -> (its keys besides `type`, its reader)
_FORMS: Mapping[str, tuple[frozenset[str], Callable[[_Fields], AuthSpec]]] = {
    "none": (frozenset(), lambda f: NO_AUTH),
    "basic": (frozenset({"username", "password"}), _basic),
    "bearer": (frozenset({"token"}), _bearer),
    "oauth2_client_credentials": (frozenset({"token_path", "client_id", "client_secret", "scope"}), _oauth2),
    "hmac": (frozenset({"key_id", "secret", "algorithm", "headers", "canonical", "max_skew_s"}), _hmac),
    "rsa_signature": (frozenset({"key", "key_id", "algorithm", "headers", "canonical"}), _rsa_signature),
    "wsse_username_token": (frozenset({"username", "password", "digest"}), _wsse),
}
FORM_TYPES = tuple(_FORMS)  # every auth form, in the order the bundle schema lists them


def parse_auth(spec: Any, where: str = "auth", *, accepted: AuthForms | None = None) -> AuthSpec:
    """The `AuthSpec` of a descriptor's `auth` mapping (None: no authentication).

    `accepted` restricts the forms (default: every form of `FORM_TYPES`). Raises `AuthSpecError` naming the
    field, e.g. `auth.client_secret: a literal secret is refused; ...`.
    """
    if spec is None:
        return NO_AUTH
    if not isinstance(spec, Mapping):
        raise AuthSpecError(f"{where}: expected a mapping with a type, got {type(spec).__name__}")
    known = accepted.types if accepted else frozenset(_FORMS)
    auth_type = spec.get("type")
    if auth_type not in known:
        label = f" for {accepted.side}" if accepted else ""
        raise AuthSpecError(f"{where}.type: unknown auth type {auth_type!r}{label} (known: {', '.join(sorted(known))})")
    keys, read = _FORMS[auth_type]
    return read(_Fields(spec, where, keys))


def canonical_string(spec: HmacSpec | RsaSignatureSpec, method: str, path: str, timestamp: str, nonce: str,
                     body: bytes) -> str:
    """The text signed: the declared parts, in the declared order, joined with newlines."""
    parts = {
        "method": method.upper(),
        "path": path,
        "timestamp": timestamp,
        "nonce": nonce,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return "\n".join(parts[name] for name in spec.canonical)


def hmac_signature(spec: HmacSpec, secret: Secret, canonical: str) -> str:
    digest = hmac.new(secret.reveal().encode(), canonical.encode(), spec.algorithm).digest()
    return base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------- verifying callbacks


class SignatureError(Exception):
    """A signed request that must be refused; the message says why (never the expected signature)."""


class NonceStore(Protocol):
    """Where seen nonces are remembered (a `set` will do for one process).

    Nonces only need keeping for the skew window: older requests fail the timestamp check anyway.
    A store shared by several workers should make `add` atomic with the membership test.
    """

    def __contains__(self, nonce: object) -> bool: ...

    def add(self, nonce: str) -> None: ...


_EPOCH_MS = re.compile(r"[0-9]{1,16}")


def verify_hmac(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    spec: HmacSpec,
    *,
    now: float,
    seen_nonces: NonceStore,
) -> None:
    """Accept a request signed per `spec`, or raise `SignatureError`.

    `path` is the request path as received, without the query; `now` is epoch seconds. Checks, in
    order: headers present, key id (if the spec names one), timestamp within `max_skew_s`, the
    signature (constant-time), and only then the nonce, so a forged request cannot burn a nonce.
    The secret is resolved on each call, which also picks up a rotated file.
    """
    found = {name.lower(): value for name, value in headers.items()}
    names = spec.headers

    def header(name: str) -> str:
        value = found.get(name.lower())
        if not value:
            raise SignatureError(f"missing header {name}")
        return value

    timestamp, nonce, signature = header(names.timestamp), header(names.nonce), header(names.signature)
    if spec.key_id is not None and header(names.key_id) != spec.key_id:
        raise SignatureError(f"unknown key id in {names.key_id}")
    if not _EPOCH_MS.fullmatch(timestamp):
        raise SignatureError(f"{names.timestamp} is not epoch milliseconds")
    if abs(now * 1000 - int(timestamp)) > spec.max_skew_s * 1000:
        raise SignatureError(f"{names.timestamp} is more than {spec.max_skew_s} s away from our clock")
    expected = hmac_signature(spec, spec.secret.load(), canonical_string(spec, method, path, timestamp, nonce, body))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("signature does not match")
    if nonce in seen_nonces:
        raise SignatureError(f"{names.nonce} already used (replayed request)")
    seen_nonces.add(nonce)
