"""How a REST adapter authenticates: the descriptor's `auth` (`adapters.auth`) as httpx auth flows.

Flows are `httpx.Auth` subclasses so they run on the request httpx is about to send: a signing recipe
(`RecipeAuth`: `signature`, and the `hmac` and `rsa_signature` forms read as recipes) signs the exact body
bytes on the wire, OAuth2 can see a 401 and retry that very request. Imports `adapters.auth`,
`adapters.signing`, `adapters.kinds.common`; never another kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.auth import (
    AuthSpec,
    AuthSpecError,
    BasicAuthSpec,
    BearerAuthSpec,
    NoAuth,
    OAuth2Spec,
    Recipe,
    resolve_text,
)
from adapters.contract import UnsendableRequest
from adapters.kinds.common import BodyTooLarge, basic_header, read_capped
from adapters.secrets import Secret
from adapters.signing import (
    PlacementError,
    Signed,
    SigningKey,
    SigningKeyError,
    WireRequest,
    sign_request,
    signing_key,
)
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


def wire_request(request: httpx.Request) -> WireRequest:
    """`request` as the signer sees it: the path as on the wire (percent-escapes kept), the decoded query."""
    return WireRequest(request.method, request.url.raw_path.partition(b"?")[0].decode("ascii"),
                       tuple(request.url.params.multi_items()), dict(request.headers), request.content)


SIGNED = "yiwang.signed"  # the request extension holding what was signed (`Signed`), for an `auth` dead letter


class RecipeAuth(httpx.Auth):
    """Signs every request with a recipe (`adapters.signing`): companions and signature in headers, query or a
    body field (the request is rebuilt when the query or the body changes). What was signed is kept on the
    sent request (`request.extensions[SIGNED]`) so a refused call can show it."""

    requires_request_body = True  # the body is signed as the exact bytes httpx sends

    def __init__(self, recipe: Recipe, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        self.recipe, self._key, self._clock = recipe, key, clock

    def now(self) -> float:
        return self._clock()

    def sign(self, request: WireRequest) -> Signed:
        return sign_request(self.recipe, self._key, request, now=self._clock())

    def auth_flow(self, request: httpx.Request) -> Flow:
        try:
            signed = self.sign(wire_request(request))
        except PlacementError as exc:  # e.g. a body field for a body that is no JSON object: nothing is sent
            raise UnsendableRequest(f"cannot be signed as the recipe says: {exc}") from exc
        yield _rebuilt(request, signed)


def _rebuilt(request: httpx.Request, signed: Signed) -> httpx.Request:
    wire = signed.request
    headers = dict(wire.headers)
    if wire.body != request.content:  # a body field was placed: the length changed with it
        headers.pop("content-length", None)
        headers.pop("Content-Length", None)
    url = request.url
    if wire.query != tuple(url.params.multi_items()):  # a query placement: otherwise the query stays as encoded
        url = url.copy_with(query=None).copy_merge_params(list(wire.query))
    return httpx.Request(request.method, url, headers=headers,
                         content=wire.body if wire.body or request.content else None,
                         extensions={**request.extensions, SIGNED: signed})


def signed_of(request: httpx.Request | None) -> Signed | None:
    """What `RecipeAuth` signed for `request` (None: not recipe-signed)."""
    found: Any = None if request is None else request.extensions.get(SIGNED)
    return found if isinstance(found, Signed) else None


def rest_auth(spec: AuthSpec, client: httpx.Client, signing: Credential | None = None) -> httpx.Auth | None:
    """The httpx auth flow for `spec`, secrets resolved now (`SecretRefError` if one is missing).

    `client` is the adapter's client: OAuth2 fetches its tokens through it, relative token paths
    are relative to its base URL. `signing` is the credential a recipe's `key` names, as the
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
    if isinstance(spec, Recipe):
        try:
            return RecipeAuth(spec, signing_key(spec, signing))
        except SigningKeyError as exc:
            raise AuthSpecError(str(exc)) from None
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
    if isinstance(auth, Recipe):
        place = auth.place
        found = {place.signature: REDACTED, place.timestamp: AT_SEND_TIME,
                 place.nonce: AT_SEND_TIME if auth.needs_nonce() else None,
                 place.app_id: _app_id_preview(auth)}
        return {where.name: value for where, value in found.items()
                if where is not None and value is not None and where.where == "header"}
    return {}


def _app_id_preview(recipe: Recipe) -> str | None:
    if recipe.app_id_is_fingerprint:
        return AT_SEND_TIME  # the signing certificate's fingerprint
    if recipe.app_id is None:
        return None
    return recipe.app_id if isinstance(recipe.app_id, str) else REDACTED
