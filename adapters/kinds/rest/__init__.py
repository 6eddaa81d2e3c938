"""The REST adapter kind (`REST`): sectors reached over HTTP with JSON bodies, through httpx.

Its descriptor option: `idempotency.header` (the HTTP header carrying the idempotency key). Auth forms: none,
basic, bearer, oauth2_client_credentials, hmac, rsa_signature, signature (`auth.py`). Service description: an OpenAPI 3
document each mapping's `http` block is checked against. The adapter: `adapter.py`. Imports
`adapters.kinds.common`, never another kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from adapters.auth import AuthForms, Recipe
from adapters.contract import Adapter
from adapters.descriptor import Bundle
from adapters.kind import (
    BundleCredentials,
    CredentialReferences,
    IdempotencyCarrier,
    KindOnly,
    KindSchema,
    MappingCheck,
    ProblemAt,
)
from adapters.kinds.common import no_check
from adapters.kinds.rest.adapter import RestAdapter
from adapters.kinds.rest.auth import preview_headers
from mappings import CompiledMapping
from mappings.validate import MappingFile, OpenApi, Problem, TargetError, check_rest


@dataclass(frozen=True)
class RestOptions:
    """A REST bundle's own options (`Bundle.options`)."""

    idempotency_header: str | None = None  # the HTTP header carrying the idempotency key


class RestKind:
    """The REST kind (`adapters.kind.AdapterKind`)."""

    name = "rest"
    auth_forms = AuthForms("rest", frozenset({"none", "basic", "bearer", "oauth2_client_credentials", "hmac",
                                              "rsa_signature", "signature"}))
    schema = KindSchema(
        idempotency=IdempotencyCarrier("header", {"$ref": "#/$defs/headerName"}, "an HTTP header name",
                                       "an HTTP header"),
    )
    kind_only: tuple[KindOnly, ...] = (
        KindOnly(("idempotency", "header"),
                 "rest bundles only (soap: idempotency.soap_header, or map idempotency_key into the body)"),
    )

    def read_options(self, doc: Mapping[str, Any]) -> RestOptions:
        return RestOptions(idempotency_header=(doc.get("idempotency") or {}).get("header"))

    def credential_references(self, bundle: Bundle) -> CredentialReferences:
        found: dict[str, tuple[str, bool]] = {}
        if isinstance(bundle.auth, Recipe) and bundle.auth.key is not None:
            found["auth.key"] = (bundle.auth.key, False)
        if isinstance(bundle.auth, Recipe) and bundle.auth.answers is not None and bundle.auth.answers.verify:
            found["auth.answers.verify"] = (bundle.auth.answers.verify, True)  # every trusted version counts
        return found

    def check_service(self, bundle: Bundle, at: ProblemAt) -> tuple[list[Problem], MappingCheck]:
        described = bundle.relative(bundle.service_description)
        try:
            api = OpenApi.load(bundle.service_description, described)
        except TargetError as exc:
            if exc.line is not None:  # where in the document itself, like a mapping's problems
                return [Problem(described, exc.line, "", str(exc))], no_check
            return [at(["service_description"], f"{described}: {exc}")], no_check
        headers, query, body = _provided_headers(bundle), _placed(bundle, "query"), _placed(bundle, "body")
        return [], lambda mf, expected: check_rest(mf, api, expected, provided_headers=headers,
                                                   provided_query=query, provided_body=body)

    def preview(self, bundle: Bundle, mapping: MappingFile, message: Mapping[str, Any],
                endpoint: str) -> dict[str, Any]:
        """{"kind", "method", "path", "query", "headers" (secrets redacted), "url", "body" (the JSON body, None
        without one)}."""
        rendered = mapping.compiled.render_http(message)
        query = dict(rendered.query)
        paging = mapping.http.paging if mapping.http is not None else None
        if paging is not None:  # the first page; the adapter asks for the next ones
            query |= paging.params(0)
        headers = dict(rendered.headers)
        header = _options(bundle).idempotency_header
        if header and message.get("idempotency_key") is not None:
            headers[header] = str(message["idempotency_key"])
        headers |= preview_headers(bundle.auth)
        if rendered.body is not None and mapping.http is not None:
            headers["Content-Type"] = mapping.http.content_type
        url = endpoint.rstrip("/") + rendered.path + (f"?{urlencode(query)}" if query else "")
        return {"kind": self.name, "method": rendered.method, "path": rendered.path, "query": query,
                "headers": headers, "url": url, "body": rendered.body}

    def build(self, bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str,
              credentials: BundleCredentials) -> Adapter:
        return RestAdapter(bundle.sector, bundle.version, endpoint, mappings, bundle.timeout_ms / 1000, bundle.auth,
                           _options(bundle).idempotency_header, ssl_context=credentials.ssl_context(bundle.tls),
                           signing=credentials.current("auth.key"),
                           answer_keys=credentials.trusted("auth.answers.verify"))


def _options(bundle: Bundle) -> RestOptions:
    if not isinstance(bundle.options, RestOptions):  # a Bundle of another kind handed to this one
        raise TypeError(f"{bundle.sector}: not a rest bundle ({bundle.kind})")
    return bundle.options


def _provided_headers(bundle: Bundle) -> list[str]:
    """Headers the gateway sets itself, so an OpenAPI document may require them without a mapping rule."""
    header = _options(bundle).idempotency_header
    return ["Content-Type", "Accept"] + ([header] if header else []) + list(preview_headers(bundle.auth))


def _placed(bundle: Bundle, where: str) -> list[str]:
    """Query parameters or body fields a signing recipe fills (signature, app id, timestamp, nonce)."""
    if not isinstance(bundle.auth, Recipe):
        return []
    place = bundle.auth.place
    return [p.name for p in (place.signature, place.app_id, place.timestamp, place.nonce)
            if p is not None and p.where == where]


REST = RestKind()
