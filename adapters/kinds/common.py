"""Helpers shared by the adapter kinds, so that no kind imports another (`adapters/kinds/<kind>/`).

What every kind's adapter does alike: keep the sector's raw answer for a dead letter (`RawAnswer`), find and
fail a mapping (`mapping_for`, `mapping_failure`: a business refusal by its declared kind — retryable, final
with its way forward (`SectorRefusal`), or left to an operator), tell a refused certificate from a broken
connection (`certificate_refused`), read a capped body (`read_capped`), build an HTTP Basic header (`basic_header`);
and for checking bundles: `no_check` when a service description could not be read.

Imports `adapters.contract`, `adapters.secrets` and `mappings`; never a kind.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import httpx

from adapters.contract import DeliveryError, FailureClass, Operation, SectorRefusal
from adapters.secrets import Secret
from mappings import BusinessError, CompiledMapping, MappingError
from mappings.validate import Expectations, MappingFile, Problem

# --------------------------------------------------------------------------- the sector's raw answer

LAST_RESPONSE_MAX_BYTES = 64 * 1024  # of a failed call's answer kept for the dead letter
# Headers that help diagnose a failure and carry no credential or session (no Set-Cookie).
_KEPT_HEADERS = ("Content-Type", "Content-Length", "Retry-After", "WWW-Authenticate", "Date", "Server")
_CHARSET = re.compile(r";\s*charset=\"?([\w.:-]+)", re.IGNORECASE)


class RawAnswer:
    """The sector's latest raw answer within one call, held by reference (nothing is copied while the
    call goes well); `last_response()` makes `DeliveryError.last_response` of it when the call fails. A kind
    sets `signing` when the sector refused a signed request (an `auth` dead letter shows what was signed).
    """

    def __init__(self) -> None:
        self.sent = False  # a request left for the sector: a failure before it is the request's own
        self.status: int | None = None
        self.headers: Mapping[str, str] = {}
        self.body = b""
        self.signing: dict[str, Any] | None = None  # what was signed, masked (`adapters.signing.show`)

    def keep(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers, body

    def last_response(self) -> dict[str, Any] | None:
        """{"status", "headers" (the diagnostic few), "body" (text, cut at 64 KiB)}; None if no answer came."""
        if self.status is None:
            return None
        headers = {name: str(self.headers[name]) for name in _KEPT_HEADERS if self.headers.get(name) is not None}
        kept = {"status": self.status, "headers": headers, "body": _text(self.body, headers.get("Content-Type"))}
        # The signed text may hold personal data: it rides in last_response, sealed and masked like the body.
        return kept | ({"signing": self.signing} if self.signing is not None else {})


def _text(body: bytes, content_type: str | None) -> str:
    """The body as text in its declared charset (sectors still send GBK), UTF-8 otherwise; never raises."""
    declared = _CHARSET.search(content_type or "")
    cut = body[:LAST_RESPONSE_MAX_BYTES]  # a character cut in two becomes U+FFFD
    try:
        return cut.decode(declared.group(1) if declared else "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return cut.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- mappings


def mapping_for(mappings: Mapping[str, CompiledMapping], name: Operation | str, owner: str) -> CompiledMapping:
    """The mapping of an operation or query name; `DeliveryError` (MAPPING) if the bundle has none."""
    try:
        return mappings[str(name)]
    except KeyError:
        raise DeliveryError(FailureClass.MAPPING, f"{owner} has no mapping for {name}") from None


def mapping_failure(exc: MappingError | BusinessError) -> DeliveryError:
    """The `DeliveryError` for a mapping that failed, or for an answer its mapping reads as a refusal."""
    if isinstance(exc, BusinessError) and exc.auth:  # a code the mapping lists under business_error.auth
        return DeliveryError(FailureClass.AUTH, f"business error {exc}: the sector refused our credentials",
                             retryable=False, business_code=exc.code)
    if isinstance(exc, BusinessError) and exc.retryable:  # business_error.retryable: the sector is busy, ask again
        return DeliveryError(FailureClass.SECTOR_FAULT, f"business error {exc} (retryable)", retryable=True,
                             business_code=exc.code)
    if isinstance(exc, BusinessError) and exc.way is not None:  # final, with the way forward its mapping declares
        return SectorRefusal(exc.code, exc.message, exc.way, exc.missing)
    if isinstance(exc, BusinessError):
        # A business refusal is the sector's considered answer: asking again gets the same one.
        return DeliveryError(FailureClass.SECTOR_FAULT, f"business error {exc}", retryable=False,
                             business_code=exc.code)
    return DeliveryError(FailureClass.MAPPING, str(exc))


# --------------------------------------------------------------------------- transport


class BodyTooLarge(ValueError):
    """An answer bigger than we are willing to hold in memory."""


def read_capped(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's decoded body, refusing (`BodyTooLarge`) past `limit` bytes.

    Counting decoded bytes, not wire bytes, also stops a small gzip bomb.
    """
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def basic_header(username: str, password: Secret) -> Secret:
    """The value of an HTTP Basic `Authorization` header, kept a `Secret` so no repr shows it."""
    pair = f"{username}:{password.reveal()}".encode()
    return Secret("Basic " + base64.b64encode(pair).decode("ascii"))


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


# --------------------------------------------------------------------------- checking bundles


def no_check(mapping: MappingFile, expected: Expectations) -> list[Problem]:
    """The mapping check when the service description could not be read: its problem is already said."""
    return []
