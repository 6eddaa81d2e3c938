"""The REST adapter kind: a sector reached over HTTP with JSON (or form-encoded) bodies, through httpx.

One `httpx.Client` per adapter (one registered bundle version), reused for every call so
connections and TLS sessions are pooled; the bundle's timeout, no redirects (a redirect from a
sector is a misconfiguration, never something to follow with our credentials), and our own
`ssl.SSLContext` (httpx 0.28 wants one). Each call renders its mapping's `http` block
(`CompiledMapping.render_http`), sends the body (JSON, or `application/x-www-form-urlencoded` with the
mapping's `http.body: form`) and reads the JSON answer with the mapping.

`call(name, message)` takes a canonical `Operation` or, as a plain string, the name of a named
query (BUNDLE-FORMAT.md: the message is `{"query": {...}}`): both are just mappings by name.

Every failure leaves as a classified `DeliveryError`; see `classify` and `_status_error`:

    connect, read, protocol errors -> TRANSPORT          timeouts -> TIMEOUT
    HTTP 5xx, 429                  -> SECTOR_FAULT, retryable, `retry_after_s` from Retry-After
    HTTP 401/403, token endpoint   -> AUTH (the token endpoint unreachable or 5xx: retryable)
    a certificate refused in the TLS handshake (theirs or ours) -> AUTH
    other 4xx                      -> SECTOR_FAULT, not retryable
    non-JSON, malformed, too big or too deep JSON, unexpected 1xx-3xx -> VALIDATION
    business error in the answer   -> SECTOR_FAULT by the code's declared kind: `retryable` retried; `final` (or
                                      `otherwise`) a `SectorRefusal` carrying the way forward; undeclared not
                                      retryable (AUTH for a `business_error.auth` code)
    mapping problems               -> MAPPING
    a request that cannot be rendered or built (nothing sent) -> MAPPING, `UnsendableRequest`

When the sector answered, the error carries its last answer (`last_response`: status, a few headers,
the body cut at 64 KiB; `adapters.kinds.common.RawAnswer`), kept by reference while the call goes well.
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpx

from adapters.auth import NO_AUTH, AuthSpec
from adapters.contract import (
    CanonicalMessage,
    CanonicalResult,
    DeliveryError,
    FailureClass,
    Operation,
    UnsendableRequest,
    correlation_headers,
)
from adapters.kinds.common import (
    LAST_RESPONSE_MAX_BYTES,
    BodyTooLarge,
    RawAnswer,
    certificate_refused,
    mapping_failure,
    mapping_for,
    read_capped,
)
from adapters.kinds.rest.auth import RecipeAuth, TokenError, rest_auth, signed_of, wire_request
from adapters.signing import SignatureError, WireRequest, show, verify_request, verifying_keys, withheld
from certstore.credentials import Credential
from mappings import (
    BusinessError,
    CompiledMapping,
    HttpRequest,
    HttpSpec,
    JsonAnswerError,
    MappingError,
    Paging,
    parse_json,
)

MAX_ANSWER_BYTES = 10 * 1024 * 1024
_JSON_MEDIA_TYPES = ("application/json", "text/json")  # plus any application/*+json


@cache
def system_trust() -> ssl.SSLContext:
    """The system's trust store, loaded once per process and shared by every adapter without `tls` (loading
    it took ~40 ms per REST bundle at start-up); an SSLContext is safe to share between clients."""
    return ssl.create_default_context()


class _RestAnswer(RawAnswer):
    """`RawAnswer` and the request that got it, as sent: its signature is shown if the sector refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.request: httpx.Request | None = None


class RetryAfterError(DeliveryError):
    """A retryable sector fault (429, 5xx) that may say when to come back.

    `retry_after_s` is the sector's Retry-After in seconds (None if it gave none): the resilience
    layer should wait at least that long instead of its own backoff.
    """

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(FailureClass.SECTOR_FAULT, message, retryable=True)
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date; None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RestAdapter:
    """One REST sector bundle version, ready to call (implements `adapters.contract.Adapter`).

    `mappings` is keyed by canonical operation and by query name; every one needs an `http` block.
    `auth` is the descriptor's parsed `auth` (its secrets are resolved here: `SecretRefError` if
    one is missing); `idempotency_header` carries the message's `idempotency_key` on every request.
    `ssl_context` is mTLS and trust (`certstore.tls`; default: the system's trust store); `signing` the
    credential a recipe's `key` signs with; `answer_keys` the sector's certificates (every trusted version)
    its signed answers are checked with (`auth.answers.verify: cert:NAME`).
    """

    def __init__(
        self,
        sector: str,
        version: str,
        endpoint: str,
        mappings: Mapping[str, CompiledMapping],
        timeout_s: float,
        auth: AuthSpec = NO_AUTH,
        idempotency_header: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        signing: Credential | None = None,
        answer_keys: tuple[Credential, ...] = (),
    ) -> None:
        self.sector = sector
        self.version = version
        self.endpoint = endpoint
        self._mappings = {str(name): mapping for name, mapping in mappings.items()}
        for mapping in self._mappings.values():
            _http(mapping)
        self._idempotency_header = idempotency_header
        self.client = httpx.Client(
            base_url=endpoint,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            verify=ssl_context or system_trust(),
        )
        self._auth = rest_auth(auth, self.client, signing)
        # What signed answers are checked against, read once like our own signing key: a rotated credential
        # gives a new adapter (`adapters.registry`), so nothing here goes stale.
        self._answer_keys = None if not isinstance(self._auth, RecipeAuth) or self._auth.recipe.answers is None \
            else verifying_keys(self._auth.recipe, answer_keys)
        self._answer_nonces = RecentNonces()  # a signed answer replayed within the skew window is refused

    def close(self) -> None:
        self.client.close()

    def render(self, operation: Operation | str, message: CanonicalMessage) -> HttpRequest:
        """The request this message becomes (headers without credentials), without sending it."""
        return self._render(self._mapping(operation), message)

    def show_signing(self, request: WireRequest, *, with_signature: bool) -> dict[str, Any] | None:
        """What our recipe signs for `request` and where it puts what (`adapters.signing.show`: secrets masked);
        without the signature unless `with_signature`. None when the bundle's auth is no signing recipe."""
        if not isinstance(self._auth, RecipeAuth):
            return None
        shown = show(self._auth.recipe, self._auth.sign(request))
        return shown if with_signature else withheld(shown, self._auth.recipe)

    def preview_signing(self, operation: Operation | str, message: CanonicalMessage) -> dict[str, Any] | None:
        """`show_signing` of the request this message becomes, signature withheld; nothing is sent."""
        mapping = self._mapping(operation)
        built = self._build(mapping, self._render(mapping, message))
        return self.show_signing(wire_request(built), with_signature=False)

    def call(self, operation: Operation | str, message: CanonicalMessage) -> CanonicalResult:
        """Call a canonical operation, or a named query given as a str (message `{"query": {...}}`)."""
        mapping = self._mapping(operation)
        answer = _RestAnswer()  # the latest page's answer: what a dead letter shows if this call fails
        try:
            request = self._render(mapping, message)
            paging = _http(mapping).paging
            if paging is None:
                return mapping.read_response(self._exchange(mapping, request, answer))
            return self._gather(mapping, paging, request, answer)
        except Exception as exc:  # the contract: nothing raw escapes; classify() knows every kind we expect
            error = classify(exc)
            if error.failure is FailureClass.AUTH:  # a 401/403, or a refusal code inside a 200 (business_error.auth)
                self._show_signing(answer)
            error.last_response = answer.last_response()
            raise error from exc

    def _mapping(self, operation: Operation | str) -> CompiledMapping:
        return mapping_for(self._mappings, operation, f"{self.sector} version {self.version}")

    def _render(self, mapping: CompiledMapping, message: CanonicalMessage) -> HttpRequest:
        try:
            request = mapping.render_http(message)
        except MappingError as exc:
            raise UnsendableRequest(str(exc)) from exc
        key = message.get("idempotency_key")
        if self._idempotency_header and key:
            request.headers[self._idempotency_header] = str(key)
        return request

    def _gather(self, mapping: CompiledMapping, paging: Paging, request: HttpRequest,
                answer: _RestAnswer) -> CanonicalResult:
        """Follow the pages (up to `max_pages`); the mapping reads the first page's answer holding
        every page's items. The result's `items` are the raw items unless the mapping maps them."""
        first: dict[str, Any] = {}
        items: list[Any] = []
        for index in range(paging.max_pages):
            page = replace(request, query={**request.query, **paging.params(index)})
            page_answer = self._exchange(mapping, page, answer)
            page_items, total = mapping.read_page(page_answer)
            first = first or page_answer
            items.extend(page_items)
            # A short or empty page is the last; so is reaching the declared total.
            if len(page_items) < paging.size or (total is not None and len(items) >= total):
                break
        result = mapping.read_response(mapping.merge_pages(first, items))
        return result if "items" in result else {**result, "items": items}

    def _exchange(self, mapping: CompiledMapping, request: HttpRequest, answer: _RestAnswer) -> dict[str, Any]:
        """Send one request, check its status, return its JSON object; `answer` keeps the raw answer."""
        http = _http(mapping)
        built = self._build(mapping, request)
        # Streamed, so the size cap stops reading instead of complaining after a huge body is in memory.
        response = self.client.send(built, auth=self._auth, stream=True)
        answer.request = response.request  # as sent: signed, if the bundle signs
        try:
            where = f"{http.method} {http.path}"  # the template: a filled path may hold an ID number
            answer.keep(response.status_code, response.headers)  # even if the body cannot be read
            if response.status_code not in http.success:
                answer.keep(response.status_code, response.headers, _head(response))
                raise _status_error(response, where)
            body = read_capped(response, MAX_ANSWER_BYTES)
            answer.keep(response.status_code, response.headers, body)
        finally:
            response.close()
        self._verify_answer(response, body, where)
        return _json_object(response, body, where)

    def _show_signing(self, answer: _RestAnswer) -> None:
        """On a refusal of our credentials, what we signed (masked) goes with the answer into the dead letter."""
        signed = None if answer.request is None else signed_of(answer.request)
        if signed is not None and isinstance(self._auth, RecipeAuth):
            answer.signing = show(self._auth.recipe, signed)

    def _verify_answer(self, response: httpx.Response, body: bytes, where: str) -> None:
        """A sector that signs its answers (`auth.answers`): a bad or missing signature is VALIDATION, not retried.
        The text is rebuilt from the method, path and query of our request and the answer's headers and body."""
        if self._answer_keys is None or not isinstance(self._auth, RecipeAuth) or self._auth.recipe.answers is None:
            return
        recipe, check = self._auth.recipe, self._auth.recipe.answers
        sent = wire_request(response.request)
        arrived = WireRequest(sent.method, sent.path, sent.query, dict(response.headers), body)
        try:
            verify_request(recipe, self._answer_keys, arrived, now=self._auth.now(),
                           seen_nonces=self._answer_nonces, text=check.text, placement=check.place,
                           unit=check.timestamp)
        except (SignatureError, ValueError) as exc:
            raise DeliveryError(FailureClass.VALIDATION, f"answer from {where} refused: {exc}",
                                retryable=False) from exc


    def _build(self, mapping: CompiledMapping, request: HttpRequest) -> httpx.Request:
        """The HTTP request; `UnsendableRequest` if a value cannot go on the wire (an URL too long, a character
        no URL or header can carry): nothing is sent."""
        headers = {"Accept": "application/json", **correlation_headers(), **request.headers}
        content = None if request.body is None else _body(mapping, request.body)
        if content is not None:
            headers["Content-Type"] = _http(mapping).content_type  # JSON, or a form (`http.body: form`)
        try:
            return self.client.build_request(
                request.method, request.path, params=request.query, headers=headers, content=content
            )
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise UnsendableRequest(f"{mapping.source_name}: request cannot be sent: {_brief(exc)}") from exc


class RecentNonces:
    """The nonces of the last `size` signed answers (an `adapters.signing.NonceStore` for one adapter, thread-safe):
    enough to refuse a replay within the skew window at any plausible rate."""

    def __init__(self, size: int = 10_000) -> None:
        self._order: deque[str] = deque()
        self._seen: set[str] = set()
        self._size, self._lock = size, threading.Lock()

    def __contains__(self, nonce: object) -> bool:
        with self._lock:
            return nonce in self._seen

    def add(self, nonce: str) -> None:
        with self._lock:
            self._order.append(nonce)
            self._seen.add(nonce)
            if len(self._order) > self._size:
                self._seen.discard(self._order.popleft())


def _http(mapping: CompiledMapping) -> HttpSpec:
    if mapping.http is None:  # refused in RestAdapter.__init__; kept for the type checker
        raise ValueError(f"{mapping.source_name}: a REST mapping needs an http block")
    return mapping.http


def _body(mapping: CompiledMapping, body: dict[str, Any]) -> bytes:
    try:
        return _http(mapping).encode_body(body)
    except (TypeError, ValueError) as exc:  # a value JSON cannot carry (NaN, a date object): nothing is sent
        raise UnsendableRequest(f"{mapping.source_name}: request body is not JSON: {exc}") from exc


def _head(response: httpx.Response) -> bytes:
    """The first `LAST_RESPONSE_MAX_BYTES` of a refused answer's body, for the dead letter: only what we keep
    is read. Best effort: the status already says what went wrong, the body only tells more."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= LAST_RESPONSE_MAX_BYTES:
                break
    except httpx.HTTPError:
        pass
    return b"".join(chunks)[:LAST_RESPONSE_MAX_BYTES]


def _status_error(response: httpx.Response, where: str) -> DeliveryError:
    status = response.status_code
    text = f"HTTP {status} from {where}"
    if status in (401, 403):
        return DeliveryError(FailureClass.AUTH, f"{text}: the sector refused our credentials")
    if status == 429 or status >= 500:
        return RetryAfterError(text, parse_retry_after(response.headers.get("Retry-After")))
    if status >= 400:
        return DeliveryError(FailureClass.SECTOR_FAULT, text, retryable=False)
    # 1xx/2xx/3xx the mapping does not expect (redirects are not followed): not an answer we can read.
    return DeliveryError(FailureClass.VALIDATION, f"unexpected {text}")


def _json_object(response: httpx.Response, body: bytes, where: str) -> dict[str, Any]:
    if response.status_code == 204 and not body:
        return {}
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media_type and not (media_type in _JSON_MEDIA_TYPES or media_type.endswith("+json")):
        raise DeliveryError(FailureClass.VALIDATION, f"answer from {where} is {media_type}, not JSON")
    answer = parse_json(body)
    if not isinstance(answer, dict):
        raise DeliveryError(FailureClass.VALIDATION, f"answer from {where} is not a JSON object")
    return answer


def _brief(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "…"


def classify(exc: BaseException) -> DeliveryError:
    """The `DeliveryError` a failed REST exchange stands for (see the module's table)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, BusinessError | MappingError):
        return mapping_failure(exc)
    if isinstance(exc, TokenError):
        return DeliveryError(FailureClass.AUTH, str(exc), retryable=exc.retryable)
    if isinstance(exc, httpx.TimeoutException):  # before TransportError: timeouts are transport errors too
        return DeliveryError(FailureClass.TIMEOUT, f"no answer in time: {_brief(exc)}")
    if isinstance(exc, httpx.TransportError) and certificate_refused(exc):
        return DeliveryError(FailureClass.AUTH, f"TLS handshake refused a certificate: {_brief(exc)}")
    if isinstance(exc, httpx.TransportError):
        return DeliveryError(FailureClass.TRANSPORT, _brief(exc))
    if isinstance(exc, JsonAnswerError | BodyTooLarge | httpx.DecodingError):
        return DeliveryError(FailureClass.VALIDATION, f"answer refused: {_brief(exc)}")
    # Anything else came out of handling an answer we could not make sense of.
    return DeliveryError(FailureClass.VALIDATION, f"unexpected {_brief(exc)}")
