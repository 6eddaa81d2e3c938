"""The request as the signer sees it (`WireRequest`), where values are placed in it, and the signed text.

A `WireRequest` is what goes on the wire: the method, the path as sent (percent-escapes kept), the query as
decoded pairs, the headers and the body bytes. Placing a value (`place`) gives a new request; a body field
is a form field when the Content-Type is application/x-www-form-urlencoded (appended, the rest of the body
kept byte for byte), otherwise a top-level field of the JSON object (the body re-serialised as the REST kind
writes it). `signed_text` builds the text from the recipe's parts, leaving the signature's own place out.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode

from cryptography.hazmat.primitives import hashes

from adapters.signing.model import BodyDigest, Place, SignedText

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class PlacementError(ValueError):
    """A value cannot be placed or read where the recipe says (a body field in a body that is no JSON object)."""


@dataclass(frozen=True)
class WireRequest:
    method: str
    path: str  # as on the wire, without the query
    query: tuple[tuple[str, str], ...] = ()  # decoded, in the order sent
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    @property
    def is_form(self) -> bool:
        media_type = (self.header("Content-Type") or "").partition(";")[0].strip().lower()
        return media_type == FORM_MEDIA_TYPE


def sample_request(sample: Any) -> WireRequest:
    """A sample request a sector team writes (`yiwang adapters sign --sample`): `{method, path, query?, headers?,
    body? (a JSON object or a string), form? (a mapping: the form-encoded body)}`; `ValueError` says what is
    wrong. A JSON body gets Content-Type application/json, a form application/x-www-form-urlencoded, unless the
    sample's headers name one."""
    if not isinstance(sample, Mapping):
        raise ValueError("sample: expected a JSON object {method, path, query?, headers?, body?, form?}")
    unknown = sorted(set(sample) - {"method", "path", "query", "headers", "body", "form"})
    if unknown:
        raise ValueError(f"sample.{unknown[0]}: unknown key (allowed: body, form, headers, method, path, query)")
    method, path = sample.get("method"), sample.get("path")
    if not isinstance(method, str) or not method.isalpha():
        raise ValueError(f"sample.method: expected an HTTP method, got {method!r}")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path:
        raise ValueError("sample.path: expected a path starting with / (the query goes in `query`)")
    query, headers = sample.get("query") or {}, sample.get("headers") or {}
    for key, value in (("query", query), ("headers", headers)):
        if not isinstance(value, Mapping) or not all(isinstance(v, str | int | float) for v in value.values()):
            raise ValueError(f"sample.{key}: expected an object of names to strings")
    if "body" in sample and "form" in sample:
        raise ValueError("sample: give `body` or `form`, not both")
    body, media_type = b"", None
    if isinstance(sample.get("form"), Mapping):
        body, media_type = urlencode({k: str(v) for k, v in sample["form"].items()}).encode(), FORM_MEDIA_TYPE
    elif "form" in sample:
        raise ValueError("sample.form: expected an object of field names to values")
    elif isinstance(sample.get("body"), Mapping):
        body, media_type = _json_bytes(sample["body"]), "application/json"
    elif isinstance(sample.get("body"), str):
        body = sample["body"].encode("utf-8")
    elif sample.get("body") is not None:
        raise ValueError("sample.body: expected a JSON object or a string")
    found = {str(k): str(v) for k, v in headers.items()}
    if media_type and not any(k.lower() == "content-type" for k in found):
        found["Content-Type"] = media_type
    return WireRequest(method.upper(), path, tuple((str(k), str(v)) for k, v in query.items()), found, body)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise PlacementError(f"{what}: the body is not a JSON object")
    return document


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")  # as the REST kind sends


def place(request: WireRequest, where: Place, value: str) -> WireRequest:
    """`request` with `value` put at `where` (a header or query parameter replaced, a body field set)."""
    if where.where == "header":
        headers = {k: v for k, v in request.headers.items() if k.lower() != where.name.lower()}
        return replace(request, headers={**headers, where.name: value})
    if where.where == "query":
        return replace(request, query=(*((k, v) for k, v in request.query if k != where.name), (where.name, value)))
    if request.is_form:
        rest = _without_form_field(request.body, where.name)
        pair = f"{quote_plus(where.name)}={quote_plus(value)}".encode("ascii")
        return replace(request, body=rest + b"&" + pair if rest else pair)
    return replace(request, body=_json_bytes({**_json_object(request.body, str(where)), where.name: value}))


def read(request: WireRequest, where: Place) -> str | None:
    """The value at `where` as it arrived (None when absent or empty)."""
    if where.where == "header":
        value = request.header(where.name)
    elif where.where == "query":
        value = next((v for k, v in reversed(request.query) if k == where.name), None)
    elif request.is_form:
        value = next((v for k, v in reversed(form_pairs(request.body)) if k == where.name), None)
    else:
        found = _json_object(request.body, str(where)).get(where.name)
        value = None if found is None else str(found)
    return value or None


def without(request: WireRequest, where: Place) -> WireRequest:
    """`request` without the value at `where`: what was signed before the signature was put there."""
    if where.where == "header":
        return replace(request, headers={k: v for k, v in request.headers.items() if k.lower() != where.name.lower()})
    if where.where == "query":
        return replace(request, query=tuple((k, v) for k, v in request.query if k != where.name))
    if request.is_form:
        return replace(request, body=_without_form_field(request.body, where.name))
    document = _json_object(request.body, str(where))
    document.pop(where.name, None)
    return replace(request, body=_json_bytes(document))


def _without_form_field(body: bytes, name: str) -> bytes:
    # Filter the raw `k=v` segments so the other fields keep their exact bytes.
    kept = [s for s in body.split(b"&") if s and unquote_plus(s.partition(b"=")[0].decode("ascii", "replace")) != name]
    return b"&".join(kept)


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", "surrogateescape"), keep_blank_values=True)


def rfc3986(value: str) -> str:
    """Percent-encoding of RFC 3986: unreserved characters kept, everything else %XX with upper-case hex."""
    return quote(value, safe="-_.~")


def sorted_query(pairs: tuple[tuple[str, str], ...]) -> str:
    """The query part: each key and value RFC 3986-encoded, sorted by key then value, `k=v` joined with `&`."""
    return "&".join(f"{k}={v}" for k, v in sorted((rfc3986(k), rfc3986(v)) for k, v in pairs))


def sorted_form(body: bytes) -> str:
    """The form part: the form parameters sorted by key (values decoded, not re-encoded), `k=v` joined with `&`."""
    return "&".join(f"{k}={v}" for k, v in sorted(form_pairs(body), key=lambda pair: pair[0]))


def body_digest(spec: BodyDigest, body: bytes) -> str:
    if spec.algorithm == "sm3":
        hasher = hashes.Hash(hashes.SM3())
        hasher.update(body)
        raw = hasher.finalize()
    else:
        raw = hashlib.sha256(body).digest()
    return raw.hex() if spec.encoding == "hex" else base64.b64encode(raw).decode("ascii")


def body_text(body: bytes) -> str:
    # surrogateescape: a body that is not UTF-8 still signs its exact bytes (`as_bytes` gives them back).
    return body.decode("utf-8", "surrogateescape")


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def signed_text(text: SignedText, request: WireRequest, companions: Mapping[str, str], digest: BodyDigest) -> str:
    """The text to sign: each part of `text` from `request` (already without the signature) and `companions`
    (app_id, timestamp, nonce as sent), joined with the joiner."""
    def one(name: str, argument: str | None) -> str:
        if name == "method":
            return request.method.upper()
        if name == "path":
            return request.path
        if name == "query":
            return sorted_query(request.query)
        if name == "header":
            return request.header(argument or "") or ""
        if name == "literal":
            return argument or ""
        if name == "body":
            return body_text(request.body)
        if name == "body_digest":
            return body_digest(digest, request.body)
        if name == "form":
            return sorted_form(request.body)
        return companions.get(name, "")  # app_id, timestamp, nonce

    return text.joiner.join(one(part.name, part.argument) for part in text.parts)
