"""How the gateway authenticates to a sector, and checks a sector's signed callbacks.

The descriptor's `auth` mapping (BUNDLE-FORMAT.md) is parsed once by `parse_auth` into an
`AuthSpec`: a plain, frozen description holding secret *references*, so a bundle can be validated
on a machine without the secrets. Secrets are resolved when an adapter is built: `rest_auth`
turns a spec into an `httpx.Auth` flow, `soap_auth` into zeep WS-Security and a requests auth.

REST flows are `httpx.Auth` subclasses so they run on the request httpx is about to send: the
HMAC signs the exact body bytes on the wire, OAuth2 can see a 401 and retry that very request.

`rsa_signature` signs the same canonical string as `hmac`, with our private key from the certificate
store (`cert:NAME`) instead of a shared secret: RSA PKCS#1 v1.5 or PSS, always SHA-256.

`verify_hmac` is the other direction: the gateway's callback endpoint checks a sector's signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

import httpx
import requests
from zeep.wsse.username import UsernameToken

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.secrets import LITERAL_REFUSED, REFERENCE_FORMS, Secret, is_reference, load
from certstore.credentials import Credential, reference_name
from mappings import JsonAnswerError, parse_json

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


def _text(value: Text) -> str:
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

# Which forms each side accepts: a REST sector cannot take a WS-Security header, and so on.
AUTH_TYPES: Mapping[str, frozenset[str]] = {
    "rest": frozenset({"none", "basic", "bearer", "oauth2_client_credentials", "hmac", "rsa_signature"}),
    "soap": frozenset({"none", "basic", "wsse_username_token"}),
    "callback": frozenset({"hmac"}),
}
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


def parse_auth(spec: Any, where: str = "auth", *, kind: str | None = None) -> AuthSpec:
    """The `AuthSpec` of a descriptor's `auth` mapping (None: no authentication).

    `kind` ("rest", "soap" or "callback") restricts the accepted forms. Raises `AuthSpecError`
    naming the field, e.g. `auth.client_secret: a literal secret is refused; ...`.
    """
    if spec is None:
        return NO_AUTH
    if not isinstance(spec, Mapping):
        raise AuthSpecError(f"{where}: expected a mapping with a type, got {type(spec).__name__}")
    known = AUTH_TYPES[kind] if kind else frozenset(_FORMS)
    auth_type = spec.get("type")
    if auth_type not in known:
        label = f" for {kind}" if kind else ""
        raise AuthSpecError(f"{where}.type: unknown auth type {auth_type!r}{label} (known: {', '.join(sorted(known))})")
    keys, read = _FORMS[auth_type]
    return read(_Fields(spec, where, keys))


# --------------------------------------------------------------------------- reading answers

MAX_TOKEN_BYTES = 64 * 1024


class BodyTooLarge(ValueError):
    """An answer bigger than we are willing to hold in memory."""


def read_capped(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's decoded body, refusing (`BodyTooLarge`) past `limit` bytes.

    Counting decoded bytes, not wire bytes, also stops a small gzip bomb. Shared by the token
    fetch here and `adapters.kinds.rest.adapter`, which depends on this module anyway.
    """
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- REST flows

Flow = Generator[httpx.Request, httpx.Response, None]


def _basic_header(username: str, password: Secret) -> Secret:
    pair = f"{username}:{password.reveal()}".encode()
    return Secret("Basic " + base64.b64encode(pair).decode("ascii"))


class HeaderAuth(httpx.Auth):
    """A fixed `Authorization` header (basic, bearer), kept as a `Secret` so no repr shows it."""

    def __init__(self, value: Secret) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._value.reveal()
        yield request


# OpenSSL's reasons for a handshake that refused a certificate: the sector's, which we could not verify, or ours,
# which the sector rejected or wanted and did not get (TLS 1.3 reports the sector's alert on the first read).
_CERTIFICATE_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                         "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
                         "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED")
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def certificate_refused(exc: BaseException) -> str | None:
    """The OpenSSL reason (e.g. `CERTIFICATE_VERIFY_FAILED`, `TLSV13_ALERT_CERTIFICATE_REQUIRED`) when a TLS
    handshake failed over a certificate, else None. Read from the text: httpx and requests/urllib3 wrap the
    `ssl.SSLError` differently, and all of them quote its reason. Such a failure is authentication (class
    `auth`): retrying cannot help and it says nothing about the sector's health."""
    for reason in _SSL_REASON.findall(str(exc)):
        if any(reason.endswith(refusal) for refusal in _CERTIFICATE_REFUSALS):
            return str(reason)
    return None


class TokenError(Exception):
    """The token endpoint did not give us a token; `retryable` when it may next time (down, 5xx)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class _Token:
    header: Secret
    refresh_at: float  # clock time after which we fetch a new one (inf: until the sector says 401)


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client credentials: a cached bearer token, refreshed before expiry and once on a 401.

    The token is fetched through the adapter's own client (same TLS, timeouts, no redirects), so
    the request is not part of this flow and a token-endpoint failure is told apart from the call's.
    """

    # The 401 retry sends the same request again: its body must be bytes in memory, not a spent stream.
    requires_request_body = True

    def __init__(
        self,
        client: httpx.Client,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        scope: str | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._token_url, self._scope, self._clock = client, token_url, scope, clock
        self._client_auth = _basic_header(client_id, client_secret)
        self._lock = threading.Lock()  # one fetch at a time: concurrent calls share the new token
        self._token: _Token | None = None

    def auth_flow(self, request: httpx.Request) -> Flow:
        token = self._current(stale=None)
        request.headers["Authorization"] = token.header.reveal()
        response = yield request
        if response.status_code == 401:
            # Revoked or expired early: one fresh token and one more try; a second 401 stands.
            request.headers["Authorization"] = self._current(stale=token).header.reveal()
            yield request

    def _current(self, stale: _Token | None) -> _Token:
        with self._lock:
            token = self._token
            # `stale` is the token the sector refused; another thread may already have replaced it.
            if token is None or token is stale or self._clock() >= token.refresh_at:
                token = self._token = self._fetch()
            return token

    def _fetch(self) -> _Token:
        form = {"grant_type": "client_credentials"} | ({"scope": self._scope} if self._scope else {})
        headers = {"Authorization": self._client_auth.reveal(), "Accept": "application/json"}
        request = self._client.build_request("POST", self._token_url, data=form, headers=headers)
        try:
            response = self._client.send(request, stream=True)
            try:
                status, body = response.status_code, read_capped(response, MAX_TOKEN_BYTES)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise TokenError(f"token endpoint unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
        except BodyTooLarge as exc:
            raise TokenError(f"token endpoint: {exc}", retryable=False) from exc
        if status != 200:
            # 400/401: our client credentials are wrong; 429/5xx: the token service has a bad moment.
            raise TokenError(f"token endpoint answered HTTP {status}", retryable=status == 429 or status >= 500)
        return self._token_from(body)

    def _token_from(self, body: bytes) -> _Token:
        try:
            payload = parse_json(body)
        except JsonAnswerError as exc:
            raise TokenError(f"token endpoint: {exc}", retryable=False) from exc
        access = payload.get("access_token") if isinstance(payload, dict) else None
        kind = payload.get("token_type", "bearer") if isinstance(payload, dict) else None
        if not isinstance(access, str) or not access or str(kind).lower() != "bearer":
            raise TokenError("token endpoint: answer has no bearer access_token", retryable=False)
        expires = payload.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None
        # Refresh a little early (a tenth of the lifetime, at most 30 s) so a token does not expire in flight.
        refresh_at = float("inf") if lifetime is None else self._clock() + lifetime - min(30.0, lifetime / 10)
        return _Token(Secret(f"Bearer {access}"), refresh_at)


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


def rsa_padding(algorithm: str) -> padding.AsymmetricPadding:
    """The padding of an `rsa_signature` algorithm (PSS with a digest-length salt, as most verifiers expect)."""
    if algorithm == "rsa-pss-sha256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def _wire_path(url: httpx.URL) -> str:
    # The path as it goes on the wire (percent-escapes kept), without the query string.
    return url.raw_path.partition(b"?")[0].decode("ascii")


class _SignedRequestAuth(httpx.Auth):
    """Signs every request: key id, epoch-ms timestamp, uuid4 nonce and the signature of the canonical string.

    The kinds differ only in `_signature` (HMAC with a shared secret, RSA with our private key)."""

    requires_request_body = True  # the body hash is over the exact bytes httpx sends

    def __init__(self, spec: HmacSpec | RsaSignatureSpec, key_id: str | None, clock: Callable[[], float]) -> None:
        self._spec, self._key_id, self._clock = spec, key_id, clock

    def _signature(self, canonical: str) -> str:
        raise NotImplementedError

    def auth_flow(self, request: httpx.Request) -> Flow:
        names = self._spec.headers
        timestamp, nonce = str(int(self._clock() * 1000)), uuid.uuid4().hex
        path = _wire_path(request.url)
        canonical = canonical_string(self._spec, request.method, path, timestamp, nonce, request.content)
        request.headers[names.timestamp] = timestamp
        request.headers[names.nonce] = nonce
        request.headers[names.signature] = self._signature(canonical)
        if self._key_id:
            request.headers[names.key_id] = self._key_id
        yield request


class HmacAuth(_SignedRequestAuth):
    """The `hmac` form: base64 HMAC of the canonical string with the shared secret."""

    def __init__(self, spec: HmacSpec, secret: Secret, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(spec, spec.key_id, clock)
        self._hmac_spec, self._secret = spec, secret

    def _signature(self, canonical: str) -> str:
        return hmac_signature(self._hmac_spec, self._secret, canonical)


class RsaSignatureAuth(_SignedRequestAuth):
    """The `rsa_signature` form: base64 RSA signature (SHA-256) of the canonical string with our private key.

    Built per credential: a rotated key gives a new adapter (`adapters.registry`), so the key is loaded once."""

    def __init__(self, spec: RsaSignatureSpec, credential: Credential, *,
                 clock: Callable[[], float] = time.time) -> None:
        if credential.private_key_pem is None:
            raise AuthSpecError(f"auth.key: credential {credential.name!r} has no private key to sign with")
        key = serialization.load_pem_private_key(credential.private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AuthSpecError(f"auth.key: credential {credential.name!r} is not an RSA key")
        super().__init__(spec, spec.key_id or credential.fingerprint, clock)
        self._key, self._padding = key, rsa_padding(spec.algorithm)

    def _signature(self, canonical: str) -> str:
        signature = self._key.sign(canonical.encode(), self._padding, hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")


def rest_auth(spec: AuthSpec, client: httpx.Client, signing: Credential | None = None) -> httpx.Auth | None:
    """The httpx auth flow for `spec`, secrets resolved now (`SecretRefError` if one is missing).

    `client` is the adapter's client: OAuth2 fetches its tokens through it, relative token paths
    are relative to its base URL. `signing` is the credential an `rsa_signature` spec names, as the
    certificate store gives it now.
    """
    if isinstance(spec, NoAuth):
        return None
    if isinstance(spec, BasicAuthSpec):
        return HeaderAuth(_basic_header(_text(spec.username), spec.password.load()))
    if isinstance(spec, BearerAuthSpec):
        return HeaderAuth(Secret(f"Bearer {spec.token.load().reveal()}"))
    if isinstance(spec, OAuth2Spec):
        client_id, client_secret = _text(spec.client_id), spec.client_secret.load()
        return OAuth2ClientCredentials(client, spec.token_path, client_id, client_secret, spec.scope)
    if isinstance(spec, HmacSpec):
        return HmacAuth(spec, spec.secret.load())
    if isinstance(spec, RsaSignatureSpec):
        if signing is None:
            raise AuthSpecError(f"auth.key: no credential given for cert:{spec.key}")
        return RsaSignatureAuth(spec, signing)
    raise AuthSpecError(f"auth.type: {spec.type} is not a REST authentication")


# --------------------------------------------------------------------------- SOAP


class _RequestsHeaderAuth(requests.auth.AuthBase):
    """requests' counterpart of `HeaderAuth`: the header value stays a `Secret`."""

    def __init__(self, value: Secret) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value.reveal()
        return request


@dataclass(frozen=True)
class SoapAuth:
    """What a SOAP adapter installs: a zeep WS-Security header and/or a requests session auth."""

    wsse: UsernameToken | None = None
    http: requests.auth.AuthBase | None = None


def soap_auth(spec: AuthSpec) -> SoapAuth:
    """zeep/requests authentication for `spec`, secrets resolved now (`SecretRefError` if one is missing)."""
    if isinstance(spec, NoAuth):
        return SoapAuth()
    if isinstance(spec, BasicAuthSpec):
        return SoapAuth(http=_RequestsHeaderAuth(_basic_header(_text(spec.username), spec.password.load())))
    if isinstance(spec, WsseSpec):
        # zeep makes a fresh Nonce and Created per message when digesting (replay protection on their side).
        token = UsernameToken(_text(spec.username), spec.password.load().reveal(), use_digest=spec.digest)
        return SoapAuth(wsse=token)
    raise AuthSpecError(f"auth.type: {spec.type} is not a SOAP authentication")


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
