"""The auth forms a bundle may name (`auth`, `results.callback_auth`), and checking a sector's signed callbacks.

The descriptor's `auth` mapping (BUNDLE-FORMAT.md) is parsed once by `parse_auth` into an `AuthSpec`: a
plain, frozen description holding secret *references*, so a bundle can be validated on a machine without the
secrets. Which forms a bundle accepts is its kind's (`AdapterKind.auth_forms`); how a form is applied on the
wire is the kind's too (`adapters/kinds/<kind>/auth.py`), secrets resolved when its adapter is built.

`signature` is a signing recipe (`adapters.signing`, RECIPE-SPEC.md); the older `hmac` and `rsa_signature`
forms are read into recipes too (`old_form_recipe`), so every signature takes one path. `verify_callback` is
the other direction: the gateway's callback endpoint checks a sector's signature (`CALLBACK_FORMS`).
Imports `adapters.spec_fields`, `adapters.signing`; no HTTP or SOAP library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from adapters.signing import (
    RECIPE_KEYS,
    NonceStore,
    Recipe,
    SignatureError,
    WireRequest,
    old_form_recipe,
    parse_recipe,
    verify_request,
    verifying_keys,
)
from adapters.spec_fields import AuthSpecError, Fields, SecretRef, Text, resolve_text
from certstore.credentials import Credential

# --------------------------------------------------------------------------- specs


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


RSA_ALGORITHMS = ("rsa-sha256", "rsa-pss-sha256")  # PKCS#1 v1.5 or PSS; never anything but SHA-256


@dataclass(frozen=True)
class WsseSpec:
    username: Text
    password: SecretRef
    digest: bool
    type: ClassVar[str] = "wsse_username_token"


# `hmac`, `rsa_signature` and `signature` are all read into a `Recipe` (its `form` says which was written).
AuthSpec = NoAuth | BasicAuthSpec | BearerAuthSpec | OAuth2Spec | Recipe | WsseSpec
NO_AUTH = NoAuth()


@dataclass(frozen=True)
class AuthForms:
    """The auth forms one side accepts (an adapter kind's `auth_forms`, or a sector's callbacks): a REST sector
    cannot take a WS-Security header, and so on. `side` names it in errors."""

    side: str
    types: frozenset[str]


CALLBACK_FORMS = AuthForms("callback", frozenset({"hmac", "signature"}))  # how a sector signs its callbacks to us

_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# --------------------------------------------------------------------------- parsing


def _basic(f: Fields) -> AuthSpec:
    return BasicAuthSpec(f.text_or_secret("username"), f.secret("password"))


def _bearer(f: Fields) -> AuthSpec:
    return BearerAuthSpec(f.secret("token"))


def _oauth2(f: Fields) -> AuthSpec:
    return OAuth2Spec(
        token_path=f.text("token_path"),
        client_id=f.text_or_secret("client_id"),
        client_secret=f.secret("client_secret"),
        scope=f.optional_text("scope"),
    )


def _hmac(f: Fields) -> AuthSpec:
    algorithm = f.optional_text("algorithm") or "sha256"
    if algorithm not in _ALGORITHMS:
        raise f.fail("algorithm", f"expected one of {', '.join(sorted(_ALGORITHMS))}, got {algorithm!r}")
    return old_form_recipe(form="hmac", algorithm=f"hmac-{algorithm}", canonical=_canonical(f),
                           headers=_hmac_headers(f), key_id=f.optional_text("key_id"), secret=f.secret("secret"),
                           max_skew_s=f.positive_int("max_skew_s", 300))


def _rsa_signature(f: Fields) -> AuthSpec:
    algorithm = f.optional_text("algorithm") or "rsa-sha256"
    if algorithm not in RSA_ALGORITHMS:
        raise f.fail("algorithm", f"expected one of {', '.join(RSA_ALGORITHMS)}, got {algorithm!r}")
    return old_form_recipe(form="rsa_signature", algorithm=algorithm, canonical=_canonical(f),
                           headers=_hmac_headers(f), key_id=f.optional_text("key_id"), key=f.credential("key"))


def _hmac_headers(f: Fields) -> dict[str, str]:
    spec = f.spec.get("headers") or {}
    names = [slot.name for slot in fields(HmacHeaders)]
    if not isinstance(spec, Mapping):
        raise f.fail("headers", f"expected a mapping of {', '.join(names)} -> header name")
    for key, name in spec.items():
        if key not in names:
            raise f.fail(f"headers.{key}", f"unknown key (allowed: {', '.join(names)})")
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise f.fail(f"headers.{key}", f"not a header name: {name!r}")
    return {slot.name: getattr(HmacHeaders(**spec), slot.name) for slot in fields(HmacHeaders)}


def _canonical(f: Fields) -> tuple[str, ...]:
    parts = f.spec.get("canonical", list(CANONICAL_PARTS))
    if not isinstance(parts, list) or not parts or len(set(map(str, parts))) != len(parts):
        raise f.fail("canonical", "expected a non-empty list of distinct parts")
    for part in parts:
        if part not in CANONICAL_PARTS:
            raise f.fail("canonical", f"unknown part {part!r} (known: {', '.join(CANONICAL_PARTS)})")
    return tuple(parts)


def _wsse(f: Fields) -> AuthSpec:
    return WsseSpec(f.text_or_secret("username"), f.secret("password"), f.flag("digest", False))


# type -> (its keys besides `type`, its reader)
_FORMS: Mapping[str, tuple[frozenset[str], Callable[[Fields], AuthSpec]]] = {
    "none": (frozenset(), lambda f: NO_AUTH),
    "basic": (frozenset({"username", "password"}), _basic),
    "bearer": (frozenset({"token"}), _bearer),
    "oauth2_client_credentials": (frozenset({"token_path", "client_id", "client_secret", "scope"}), _oauth2),
    "hmac": (frozenset({"key_id", "secret", "algorithm", "headers", "canonical", "max_skew_s"}), _hmac),
    "rsa_signature": (frozenset({"key", "key_id", "algorithm", "headers", "canonical"}), _rsa_signature),
    "signature": (RECIPE_KEYS, parse_recipe),
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
    return read(Fields(spec, where, keys))


# --------------------------------------------------------------------------- verifying callbacks


def verify_callback(recipe: Recipe, request: WireRequest, *, now: float, seen_nonces: NonceStore,
                    trusted: Sequence[Credential] = ()) -> None:
    """Accept a sector's callback signed per `recipe` (`results.callback_auth`), or raise `SignatureError`.

    `request` is the callback as received (the path apart, the query decoded); `now` is epoch seconds; `trusted`
    the sector's certificates (every trusted version of `key: cert:NAME`) for an asymmetric recipe. Checks,
    in order: companions present, app id (if the recipe names one), timestamp within `max_skew_s`, the
    signature, and only then the nonce. The secret is read on each call, which also picks up a rotated file.
    """
    app_id = None if recipe.app_id is None else resolve_text(recipe.app_id)
    verify_request(recipe, verifying_keys(recipe, trusted), request, now=now, seen_nonces=seen_nonces,
                   app_id=app_id)


__all__ = [
    "CALLBACK_FORMS", "FORM_TYPES", "NO_AUTH", "AuthForms", "AuthSpec", "AuthSpecError", "BasicAuthSpec",
    "BearerAuthSpec", "HmacHeaders", "NoAuth", "NonceStore", "OAuth2Spec", "Recipe", "SecretRef", "SignatureError",
    "Text", "WsseSpec", "parse_auth", "resolve_text", "verify_callback",
]  # fmt: skip
