"""The bundle schema (JSON Schema draft 2020-12): the common descriptor, and each registered kind's fragment.

`bundle_schema(kinds)` puts them together: the `kind` enum, the `auth` forms, the ways of carrying the
idempotency key and each kind's own options and requirements come from the kinds (`adapters.kinds.KINDS`),
so a kind is described in one place, its folder. `adapters.bundle` validates descriptors against the schema
of the kinds registered now; `adapters/bundle.schema.json` is the published copy for sector teams' editors,
written by `make bundle-schema` (`python -m adapters.bundle_schema --write`), and a test keeps it current.
Keys starting with `x-` word the error messages (`adapters.bundle`); validators ignore them.

Imports `adapters.auth`, `adapters.signing.model` (its names of parts, algorithms, encodings), `adapters.kind`
and `adapters.kinds`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.auth import FORM_TYPES
from adapters.canonical import EVENTS, OPERATIONS
from adapters.contract import Operation
from adapters.kind import AdapterKind
from adapters.kinds import KINDS
from adapters.signing.model import ALGORITHMS, COMPANIONS, ENCODINGS, SIMPLE_PARTS

PUBLISHED = Path(__file__).with_name("bundle.schema.json")
GENERATED = None  # filled from the kinds by `bundle_schema`
# Each auth form's definition in `$defs` below.
AUTH_DEFS = {"none": "authNone", "basic": "authBasic", "bearer": "authBearer",
             "oauth2_client_credentials": "authOauth2", "hmac": "authHmac", "rsa_signature": "authRsaSignature",
             "wsse_username_token": "authWsse", "signature": "authSignature"}

_COMMON: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://yiwang.local/schemas/bundle.schema.json",
    "title": "Yiwang adapter bundle descriptor (bundle.yaml), format 1",
    "description": "See adapters/BUNDLE-FORMAT.md. Keys starting with x- are read by adapters/bundle.py to word error"
                   " messages; validators ignore them.",
    "type": "object",
    "required": [
        "format",
        "sector",
        "version",
        "title",
        "department",
        "kind",
        "service_description",
        "endpoints",
        "timeout_ms",
        "retry",
        "auth",
    ],  # and, unless it only subscribes to case events, serves, operations (submit_case) and results: _TAKES_CASES
    "additionalProperties": False,
    "properties": {
        "format": {"const": 1, "x-message": "{value!r} is not a bundle format this gateway reads (expected 1)"},
        "sector": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]{1,40}$",
            "x-message": "{value!r} is not a sector name ([a-z][a-z0-9_]{{1,40}})",
        },
        "version": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "x-message": "expected a non-empty string (quote numbers), got {value!r}",
        },
        "title": {"type": "string", "minLength": 1},
        "department": {
            "type": "object",
            "required": ["name", "credit_code"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "credit_code": {"$ref": "#/$defs/creditCode"},
            },
        },
        "kind": GENERATED,
        "service_description": {"$ref": "#/$defs/file"},
        "endpoints": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": "^[a-z][a-z0-9_-]{0,31}$",
                "x-message": "{value!r} is not an environment name ([a-z][a-z0-9_-]*)",
            },
            "additionalProperties": {
                "type": "string",
                "pattern": "^https?://[^\\s/@]+(/\\S*)?$",
                "x-message": "expected an http(s) URL without credentials (user:password@ is a literal secret)",
            },
        },
        "serves": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "departments": {"type": "array", "items": {"$ref": "#/$defs/creditCode"}, "uniqueItems": True},
                "matters": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
            },
            "anyOf": [
                {"required": ["departments"], "properties": {"departments": {"minItems": 1}}},
                {"required": ["matters"], "properties": {"matters": {"minItems": 1}}},
            ],
            "x-message": "expected at least one department (credit code) or matter (implementation code)",
        },
        "operations": {
            "type": "object",
            "additionalProperties": False,
            "x-unknown-key": "not a canonical operation",
            "properties": {operation: {"$ref": "#/$defs/file"} for operation in OPERATIONS},
        },
        "queries": {
            "type": "object",
            "propertyNames": {
                "pattern": "^[a-z][a-z0-9_]*$",
                "x-message": "{value!r} is not a query name ([a-z][a-z0-9_]*)",
            },
            "additionalProperties": {"$ref": "#/$defs/file"},
        },
        "rehearsal": {"$ref": "#/$defs/file",
                      "description": "sample cases and queries with the outcomes the sector team expects "
                                     "(`yiwang adapters rehearse`; BUNDLE-FORMAT.md \"Rehearsal files\")"},
        "subscriptions": {
            "description": "Case events this sector receives, each a guaranteed delivery through the mapping named.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "x-unknown-key": "not a case event one may subscribe to",
            "properties": {event: {"$ref": "#/$defs/file"} for event in EVENTS},
        },
        "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 600000},
        "retry": {
            "type": "object",
            "required": ["attempts", "initial_ms", "max_ms"],
            "additionalProperties": False,
            "properties": {
                "attempts": {"type": "integer", "minimum": 1, "maximum": 20},
                "initial_ms": {"type": "integer", "minimum": 0},
                "max_ms": {"type": "integer", "minimum": 0},
                "max_wait_ms": {"type": "integer", "minimum": 0, "maximum": 604800000},
            },
        },
        "circuit_breaker": {
            "type": "object",
            "required": ["failure_threshold", "reset_after_ms"],
            "additionalProperties": False,
            "properties": {
                "failure_threshold": {"type": "integer", "minimum": 1},
                "reset_after_ms": {"type": "integer", "minimum": 1},
            },
        },
        "rate_limit": {
            "type": "object",
            "required": ["per_second", "burst"],
            "additionalProperties": False,
            "properties": {
                "per_second": {"type": "number", "exclusiveMinimum": 0},
                "burst": {"type": "integer", "minimum": 1},
            },
        },
        "auth": GENERATED,
        "tls": {
            "description": "mTLS and trust for calling the sector; credentials are names in the certificate store.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {"client_certificate": {"$ref": "#/$defs/certRef"}, "trust": {"$ref": "#/$defs/certRef"}},
            "x-message": "expected client_certificate and/or trust, each cert:NAME",
        },
        "idempotency": GENERATED,
        "materials": {
            "type": "object",
            "required": ["transport"],
            "additionalProperties": False,
            "properties": {
                "transport": {
                    "enum": ["inline_base64", "mtom", "signed_url"],
                    "x-message": "unknown materials transport {value!r} (known: inline_base64, mtom, signed_url)",
                },
            },
        },
        "results": {
            "x-discriminator": "mode",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["mode", "interval_ms"],
                    "additionalProperties": False,
                    "properties": {
                        "mode": {"const": "polling"},
                        "interval_ms": {"type": "integer", "minimum": 1},
                        "max_bad_answers": {
                            "description": "status answers in a row that cannot be read before polling gives up "
                                           "(a dead letter); default 5",
                            "type": "integer", "minimum": 1, "maximum": 100,
                        },
                    },
                },
                {
                    "type": "object",
                    "required": ["mode", "callback_auth"],
                    "additionalProperties": False,
                    "properties": {"mode": {"const": "callback"}, "callback_auth": {
                        "x-discriminator": "type",
                        "oneOf": [{"$ref": "#/$defs/authHmac"}, {"$ref": "#/$defs/authSignature"}],
                    }},
                },
            ],
        },
    },
    "$defs": {
        "file": {
            "type": "string",
            "minLength": 1,
            "pattern": "^[^/\\\\:]([^\\\\:]*[^/\\\\:])?$",
            "x-message": "expected a file name inside the bundle (relative, '/' separated), got {value!r}",
        },
        "creditCode": {
            "type": "string",
            "pattern": "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$",
            "x-message": "{value!r} is not a unified social credit code (18 characters)",
        },
        "headerName": {
            "type": "string",
            "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
            "x-message": "{value!r} is not an HTTP header name",
        },
        "secretRef": {
            "x-secret": True,
            "type": "object",
            "required": ["secret"],
            "additionalProperties": False,
            "properties": {
                "secret": {
                    "type": "string",
                    "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\\S+|vault:[A-Za-z0-9_.\\-]{1,128})$",
                    "x-message": "not a secret reference: write env:NAME, file:/absolute/path or vault:NAME",
                },
            },
        },
        "identity": {
            "anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/secretRef"}],
            "x-message": "expected a string or {{secret: env:NAME}}",
        },
        "authNone": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {"type": {"const": "none"}},
        },
        "authBasic": {
            "type": "object",
            "required": ["type", "username", "password"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "basic"},
                "username": {"$ref": "#/$defs/identity"},
                "password": {"$ref": "#/$defs/secretRef"},
            },
        },
        "authBearer": {
            "type": "object",
            "required": ["type", "token"],
            "additionalProperties": False,
            "properties": {"type": {"const": "bearer"}, "token": {"$ref": "#/$defs/secretRef"}},
        },
        "authOauth2": {
            "type": "object",
            "required": ["type", "token_path", "client_id", "client_secret"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "oauth2_client_credentials"},
                "token_path": {
                    "type": "string",
                    "pattern": "^(/\\S*|https?://[^\\s/@]+(/\\S*)?)$",
                    "x-message": "expected a path relative to the endpoint (/...) or an http(s) URL, got {value!r}",
                },
                "client_id": {"$ref": "#/$defs/identity"},
                "client_secret": {"$ref": "#/$defs/secretRef"},
                "scope": {"type": "string"},
            },
        },
        "authHmac": {
            "description": "Defaults as adapters/auth.py: algorithm sha256, the X-Ca-* headers, canonical"
                           " method/path/timestamp/nonce/body_sha256.",
            "type": "object",
            "required": ["type", "secret"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "hmac"},
                "key_id": {"type": "string", "minLength": 1},
                "secret": {"$ref": "#/$defs/secretRef"},
                "algorithm": {
                    "enum": ["sha256", "sha384", "sha512"],
                    "x-message": "unknown algorithm {value!r} (known: sha256, sha384, sha512)",
                },
                "headers": {"$ref": "#/$defs/signatureHeaders"},
                "canonical": {"$ref": "#/$defs/canonicalParts"},
                "max_skew_s": {"type": "integer", "minimum": 1, "maximum": 3600},
            },
        },
        "signatureHeaders": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "key_id": {"$ref": "#/$defs/headerName"},
                "timestamp": {"$ref": "#/$defs/headerName"},
                "nonce": {"$ref": "#/$defs/headerName"},
                "signature": {"$ref": "#/$defs/headerName"},
            },
        },
        "canonicalParts": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {
                "enum": ["method", "path", "timestamp", "nonce", "body_sha256"],
                "x-message": "{value!r} is not a canonical part (known: method, path, timestamp, nonce, body_sha256)",
            },
        },
        "certRef": {
            "type": "string",
            "pattern": "^cert:[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
            "x-message": "expected a credential reference cert:NAME (letters, digits, _ . : -), got {value!r}",
        },
        "authRsaSignature": {
            "description": "The hmac scheme's headers and canonical string, signed with our RSA key from the"
                           " certificate store (SHA-256; key_id default: the certificate's SHA-256 fingerprint).",
            "type": "object",
            "required": ["type", "key"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "rsa_signature"},
                "key": {"$ref": "#/$defs/certRef"},
                "key_id": {"type": "string", "minLength": 1},
                "algorithm": {
                    "enum": ["rsa-sha256", "rsa-pss-sha256"],
                    "x-message": "unknown algorithm {value!r} (known: rsa-sha256, rsa-pss-sha256)",
                },
                "headers": {"$ref": "#/$defs/signatureHeaders"},
                "canonical": {"$ref": "#/$defs/canonicalParts"},
            },
        },
        "authSignature": {
            "description": "A signing recipe (BUNDLE-FORMAT.md, Signing recipes); adapters/signing checks the rest.",
            "type": "object",
            "required": ["type", "algorithm", "text", "place"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "signature"},
                "app_id": {"oneOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/secretRef"}]},
                "secret": {"$ref": "#/$defs/secretRef"},
                "key": {"$ref": "#/$defs/certRef"},
                "text": {"$ref": "#/$defs/signedText"},
                "timestamp": {"enum": ["s", "ms"]},
                "body_digest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"algorithm": {"enum": ["sha256", "sm3"]}, "encoding": {"enum": ["hex", "base64"]}},
                },
                "algorithm": {"enum": list(ALGORITHMS),
                              "x-message": f"unknown algorithm {{value!r}} (known: {', '.join(ALGORITHMS)})"},
                "secret_in_text": {"oneOf": [
                    {"enum": ["prefix", "suffix"]},
                    {"type": "object", "required": ["field"], "additionalProperties": False,
                     "properties": {"field": {"type": "string", "minLength": 1}}},
                ]},
                "legacy": {"type": "boolean"},
                "sm2": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"id": {"type": "string", "minLength": 1}, "z": {"type": "boolean"},
                                   "signature": {"enum": ["der", "raw"]}},
                },
                "encoding": {"enum": list(ENCODINGS),
                             "x-message": f"unknown encoding {{value!r}} (known: {', '.join(ENCODINGS)})"},
                "place": {"$ref": "#/$defs/signaturePlaces"},
                "max_skew_s": {"type": "integer", "minimum": 1, "maximum": 3600},
                "answers": {
                    "type": "object",
                    "required": ["verify"],
                    "additionalProperties": False,
                    "properties": {
                        "verify": {"oneOf": [{"const": "secret"}, {"$ref": "#/$defs/certRef"}]},
                        "text": {"$ref": "#/$defs/signedText"},
                        "place": {"$ref": "#/$defs/signaturePlaces"},
                        "timestamp": {"enum": ["s", "ms"]},
                    },
                },
            },
        },
        "signedText": {
            "type": "object",
            "required": ["parts"],
            "additionalProperties": False,
            "properties": {
                "parts": {"type": "array", "minItems": 1, "items": {"oneOf": [
                    {"enum": list(SIMPLE_PARTS),
                     "x-message": f"unknown part {{value!r}} (known: {', '.join(SIMPLE_PARTS)}, {{header: N}},"
                                  " {literal: S})"},
                    {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
                     "properties": {"header": {"$ref": "#/$defs/headerName"}, "literal": {"type": "string"}}},
                ]}},
                "joiner": {"type": "string"},
            },
        },
        "signaturePlaces": {
            "type": "object",
            "required": ["signature"],
            "additionalProperties": False,
            "properties": {name: {"$ref": "#/$defs/signaturePlace"} for name in ("signature", *COMPANIONS)},
        },
        "signaturePlace": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {"header": {"$ref": "#/$defs/headerName"}, "query": {"type": "string", "minLength": 1},
                           "body": {"type": "string", "minLength": 1}},
        },
        "authWsse": {
            "type": "object",
            "required": ["type", "username", "password"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "wsse_username_token"},
                "username": {"$ref": "#/$defs/identity"},
                "password": {"$ref": "#/$defs/secretRef"},
                "digest": {"type": "boolean"},
            },
        },
    },
}


# A bundle that takes cases (every bundle but one that only subscribes to case events) says whom it serves, how
# it takes a case (submit_case) and how its decisions come back.
_TAKES_CASES: Mapping[str, Any] = {
    "if": {"not": {"required": ["subscriptions"]}},
    "then": {"required": ["serves", "operations", "results"],
             "properties": {"operations": {"required": [Operation.SUBMIT_CASE.value]}}},
}


def bundle_schema(kinds: Iterable[AdapterKind] | None = None) -> dict[str, Any]:
    """The schema of descriptors of `kinds` (default: every registered kind), in registry order."""
    chosen = list(KINDS.values() if kinds is None else kinds)
    generated = {"kind": _kind(chosen), "auth": _auth(chosen), "idempotency": _idempotency(chosen)}
    properties = {key: generated.get(key, value) for key, value in _COMMON["properties"].items()}
    for kind in chosen:  # the kinds' own options follow the common ones
        properties |= kind.schema.properties
    schema = {**_COMMON, "properties": properties}
    conditions = [{"if": {"properties": {"kind": {"const": kind.name}}, "required": ["kind"]},
                   "then": dict(kind.schema.then)} for kind in chosen if kind.schema.then is not None]
    schema["allOf"] = [dict(_TAKES_CASES), *conditions]
    carrying = [kind for kind in chosen if kind.schema.own_descriptor is not None]
    return _with_own_descriptors(schema, carrying) if carrying else schema


def _with_own_descriptors(schema: dict[str, Any], carrying: Sequence[AdapterKind]) -> dict[str, Any]:
    """The schema when some kinds' descriptors are their own (a bundle carrying another, `ferry`): the common
    requirements hold for the other kinds only; each carrying kind requires its own keys, refuses the common keys
    the bundle it carries says, and lists its operations (the calls that cross) instead of mapping them to files."""
    names = [kind.name for kind in carrying]
    others = {"properties": {"kind": {"not": {"enum": names}}}}
    common_required = list(_COMMON["required"])
    everyone = [key for key in common_required if all(key in (k.schema.own_descriptor or ()) for k in carrying)]
    operations = dict(schema["properties"]["operations"])
    operations |= {"type": ["object", "array"],
                   "x-message": f"expected a mapping of canonical operation -> mapping file ({', '.join(names)}: "
                                f"a list of the operations that cross)"}
    takes_cases = {**_TAKES_CASES, "if": {**_TAKES_CASES["if"], **others}}
    conditions = [
        {"if": others, "then": {"required": [key for key in common_required if key not in everyone],
                                "properties": {"operations": {"type": "object", "x-message": "expected a mapping "
                                                              "of canonical operation -> mapping file"}}}},
        *(_own_descriptor(kind, schema["properties"]) for kind in carrying),
    ]
    allof = [takes_cases if item == _TAKES_CASES else item for item in schema["allOf"]]
    carried = {f"{kind.name}Carried": {"not": {}, "x-message": f"not in a {kind.name} bundle: the bundle it "
                                                                "carries says it"} for kind in carrying}
    return {**schema, "required": everyone, "properties": {**schema["properties"], "operations": operations},
            "allOf": [*allof, *conditions], "$defs": {**schema["$defs"], **carried}}


def _own_descriptor(kind: AdapterKind, properties: Mapping[str, Any]) -> dict[str, Any]:
    """A carrying kind's keys required, and every other key refused: the bundle it carries says them."""
    own = set(kind.schema.own_descriptor or ()) | set(kind.schema.properties)
    refused = {key: {"$ref": f"#/$defs/{kind.name}Carried"} for key in properties if key not in own}
    return {"if": {"properties": {"kind": {"const": kind.name}}, "required": ["kind"]},
            "then": {"required": list(kind.schema.own_descriptor or ()), "properties": refused}}


def _kind(kinds: Sequence[AdapterKind]) -> dict[str, Any]:
    names = [kind.name for kind in kinds]
    return {"enum": names, "x-message": f"unknown adapter kind {{value!r}} (known: {', '.join(names)})"}


def _auth(kinds: Sequence[AdapterKind]) -> dict[str, Any]:
    accepted = {form for kind in kinds for form in kind.auth_forms.types}
    forms = [{"$ref": f"#/$defs/{AUTH_DEFS[form]}"} for form in FORM_TYPES if form in accepted]
    return {"x-discriminator": "type", "oneOf": forms}


def _idempotency(kinds: Sequence[AdapterKind]) -> dict[str, Any]:
    carriers = sorted(((kind.name, kind.schema.idempotency) for kind in kinds if kind.schema.idempotency),
                      key=lambda named: named[1].key)
    travels = " or ".join(f"{carrier.description} ({name})" for name, carrier in carriers)
    expected = " or ".join(f"{carrier.key} ({name}: {carrier.hint})" for name, carrier in carriers)
    return {
        "description": f"Where the message's idempotency key travels: {travels}.",
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {carrier.key: carrier.schema for _, carrier in carriers},
        "x-message": f"expected one of {expected}",
    }


# --------------------------------------------------------------------------- the published copy

_WIDTH = 116  # a line of the published file, as far as a value allows


def published_text(schema: Mapping[str, Any] | None = None) -> str:
    """The schema as `adapters/bundle.schema.json` holds it: JSON, a value on one line when it fits."""
    return _render(bundle_schema() if schema is None else schema, 0) + "\n"


def _render(value: Any, indent: int) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    if indent + len(flat) <= _WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(key, ensure_ascii=False)}: {_render(item, indent + 2)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(pad + _render(item, indent + 2) for item in value) + "\n" + " " * indent + "]"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PUBLISHED.write_text(published_text(), encoding="utf-8")
    else:
        sys.stdout.write(published_text())
