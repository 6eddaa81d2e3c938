"""How a REST adapter authenticates: the descriptor's `auth` (`adapters.auth`) as httpx auth flows.

Flows are `httpx.Auth` subclasses so they run on the request httpx is about to send: the HMAC signs the
exact body bytes on the wire, OAuth2 can see a 401 and retry that very request. `rsa_signature` signs the
`hmac` canonical string with our private key from the certificate store (`cert:NAME`): RSA PKCS#1 v1.5 or
PSS, always SHA-256. Imports `adapters.auth`, `adapters.kinds.common`; never another kind.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.auth import (
    AuthSpec,
    AuthSpecError,
    BasicAuthSpec,
    BearerAuthSpec,
    HmacSpec,
    NoAuth,
    OAuth2Spec,
    RsaSignatureSpec,
    canonical_string,
    hmac_signature,
    resolve_text,
)
from adapters.kinds.common import BodyTooLarge, basic_header, read_capped
from adapters.secrets import Secret
from certstore.credentials import Credential
from mappings import JsonAnswerError, parse_json

MAX_TOKEN_BYTES = 64 * 1024

Flow = Generator[httpx.Request, httpx.Response, None]


class HeaderAuth(httpx.Auth):
    """A fixed `Authorization` header (basic, bearer), kept as a `Secret` so no repr shows it."""

    def __init__(self, value: Secret) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._value.reveal()
        yield request


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
        self._client_auth = basic_header(client_id, client_secret)
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
        return HeaderAuth(basic_header(resolve_text(spec.username), spec.password.load()))
    if isinstance(spec, BearerAuthSpec):
        return HeaderAuth(Secret(f"Bearer {spec.token.load().reveal()}"))
    if isinstance(spec, OAuth2Spec):
        client_id, client_secret = resolve_text(spec.client_id), spec.client_secret.load()
        return OAuth2ClientCredentials(client, spec.token_path, client_id, client_secret, spec.scope)
    if isinstance(spec, HmacSpec):
        return HmacAuth(spec, spec.secret.load())
    if isinstance(spec, RsaSignatureSpec):
        if signing is None:
            raise AuthSpecError(f"auth.key: no credential given for cert:{spec.key}")
        return RsaSignatureAuth(spec, signing)
    raise AuthSpecError(f"auth.type: {spec.type} is not a REST authentication")


# --------------------------------------------------------------------------- preview

REDACTED = "<redacted>"
AT_SEND_TIME = "<set when sent>"


def preview_headers(auth: AuthSpec) -> dict[str, str]:
    """The headers `auth` adds, with every secret (and everything derived from one) redacted."""
    if isinstance(auth, BasicAuthSpec):
        return {"Authorization": f"Basic {REDACTED}"}
    if isinstance(auth, BearerAuthSpec | OAuth2Spec):
        return {"Authorization": f"Bearer {REDACTED}"}
    if isinstance(auth, HmacSpec | RsaSignatureSpec):
        h = auth.headers
        headers = {h.timestamp: AT_SEND_TIME, h.nonce: AT_SEND_TIME, h.signature: REDACTED}
        if isinstance(auth, RsaSignatureSpec) and not auth.key_id:
            return headers | {h.key_id: AT_SEND_TIME}  # the signing certificate's fingerprint
        return headers | ({h.key_id: auth.key_id} if auth.key_id else {})
    return {}
