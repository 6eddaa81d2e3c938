"""Declarative mappings between canonical messages and a sector's requests and answers.

A mapping is a YAML file, compiled once by `compile_mapping` into a `CompiledMapping`; every
mistake in the file is reported then, so a bundle is rejected at registration, not at 3 a.m.
No code lives in the YAML: rules only name paths, constants, converters and code tables.

File format::

    operation: SubmitCase                 # required: the sector's operation (WSDL operation name)
    code_tables:                          # optional: table name -> {code: value}
      yes_no: {"true": "Y", "false": "N"}
    request:                              # required: target field -> rule; builds the dict zeep takes
      qqlsh: {from: idempotency_key}
      lxdh: {from: case.applicant.phone, optional: true}
      slsj: {from: case.accepted_at, convert: datetime_compact_shanghai}
      cllb:                               # a group: a mapping of fields that is not itself a rule
        cl:
          for_each: case.materials        # one output item per list element ...
          map:                            # ... whose paths are relative to that element
            clmc: {from: name}
            sfsj: {from: received, code_table: yes_no}
      fixed: {value: "CONST"}
    response:                             # optional
      business_error: {code: fhdm, ok: ["0000"], message: fhxx, auth: ["40001"]}   # optional; message, auth optional
      # ... and optionally: retryable: [BUSY]; final: {CODE: {way: supplement, missing: PATH}}; otherwise: WAY
      fields:                             # canonical result field -> rule, read from the answer
        sector_ref: {from: ywlsh}

Rules (the key present says which kind; any other key is a compile error):

- ``{from: PATH, optional: BOOL, convert: NAME | [NAME, ...], code_table: NAME}`` copies a value. The
  converters run first, in the order listed (a chain), then ``code_table``.
- ``{value: CONST}`` a constant.
- ``{for_each: PATH, map: {FIELD: RULE, ...}, optional: BOOL}`` a list, one item per element.
- ``{FIELD: RULE, ...}`` a nested group.

PATH is dotted keys through nested dicts (``case.applicant.name``). A value that is absent or
None is *missing*: for a required rule that is a `MappingError` naming the file and the field;
for an optional one the field is left out of a request (zeep then omits the element) and is None
in a result (a canonical result always carries all its keys). A request group whose fields are
all left out is itself left out.

Code tables look codes up by their text (booleans as "true"/"false", numbers as written), so
quote codes such as "01" in YAML. An unmapped code is a `MappingError`. A table named ``std.NAME`` is
one of the built-in standard tables (`mappings.standard_tables`); the ``std.`` prefix is reserved. Converters
are the functions in `CONVERTERS` (`mappings.converters`, where each is declared with an example).

A refusal (a code not under ``ok``) raises `BusinessError`. Its kind is the code's: ``auth`` (our credentials),
``retryable`` (the sector is busy: ask again), or final, with the way forward ``final`` names for the code
(``supplement`` with ``missing``, a path to a list of names or a text split on 、,; ``return``, ``back_office``)
or else ``otherwise`` (default ``back_office``). A mapping declaring neither ``final`` nor ``otherwise`` names no
way (`BusinessError.way` None): its refusals are left to an operator. A code listed under two kinds is a compile
error.

REST mappings (BUNDLE-FORMAT.md) add an ``http`` block; its presence makes the mapping a REST one,
for which ``operation`` is optional (default ``"METHOD /path"``) and ``request``, the JSON body,
is optional too (and refused for GET)::

    http:
      method: GET                                  # GET | POST | PUT | DELETE
      path: /api/v2/accounts/{idCardNo}/deposits   # {name} placeholders, filled by path_params
      path_params: {idCardNo: {from: query.id_number}}   # each value escaped as one path segment
      query: {channel: {value: web}}               # name -> {from:} or {value:} rule, single values
      headers: {X-Priority: {from: case.green_channel, code_table: priority}}
      success: [200]                               # default: any 2xx
      body: form                                   # json (default) | form: request as x-www-form-urlencoded
      paging: {page_param: page, size_param: pageSize, size: 50, items: data.items,
               total: data.total, max_pages: 20, first_page: 1}   # total, max_pages, first_page optional

With ``body: form`` the request is a flat set of fields, each a ``{from:}`` or ``{value:}`` rule holding one
value (a group, a list or an object is a compile error), sent as ``application/x-www-form-urlencoded``
(`HttpSpec.encode_body`). `CompiledMapping.render_http` renders an `HttpRequest`; `read_page` and `merge_pages` let the
adapter gather every page's items into one answer that `read_response` then reads.

`parse_json` is the hardened JSON reader for answers (the counterpart of `mappings.xml.parse_xml`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, urlencode

import yaml

from mappings.converters import CONVERTERS, code_text, to_int
from mappings.errors import BusinessError, MappingError
from mappings.standard_tables import STANDARD_TABLES, STD_PREFIX

# --------------------------------------------------------------------------- converters
# The converters themselves live in mappings/converters.py (one registry, `SPECS`, with their examples).

# --------------------------------------------------------------------------- hardened JSON

MAX_JSON_DEPTH = 200


class JsonAnswerError(ValueError):
    """An answer that is not JSON, or JSON we refuse (nested too deep, NaN/Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_at_most(value: Any, limit: int) -> bool:
    # Iterative: the answer may be deeper than Python's recursion limit allows walking recursively.
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def parse_json(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from bytes (UTF-8/16/32), refusing malformed text and nesting deeper than `max_depth`.

    The size cap is the reader's job (it must stop reading, not parse and then complain). Python's
    parser recurses once per level and raises RecursionError on a hostile 100 000-deep answer:
    that is caught here; shallower but still absurd nesting is refused by the depth walk.
    """
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonAnswerError("JSON nested too deep to parse") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError; neither quotes the text
        raise JsonAnswerError(f"malformed JSON: {exc}") from None
    if isinstance(value, dict | list) and not _depth_at_most(value, max_depth):
        raise JsonAnswerError(f"JSON nested deeper than {max_depth} levels")
    return value


# --------------------------------------------------------------------------- compiled rules


class _Problem(Exception):
    """A problem at a location in the mapping; turned into a MappingError naming the file."""

    def __init__(self, where: str, text: str) -> None:
        super().__init__(f"{where}: {text}")


class _Omit:
    """Marks a missing optional value: left out of requests, None in results."""


_OMIT = _Omit()


def _lookup(source: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        # Plain dicts (nearly every message) first: isinstance against the Mapping ABC is slow on a hot path.
        if type(source) is dict:
            source = source.get(key)
            if source is None:
                return None
        elif isinstance(source, Mapping) and key in source:
            source = source[key]
        else:
            return None
    return source


def _fetch(source: Any, path: tuple[str, ...], optional: bool, where: str) -> Any:
    """The value at `path`; `_OMIT` if it is missing and optional, a problem if it is missing and required."""
    value = _lookup(source, path)
    if value is None and not optional:
        raise _Problem(where, f"{'.'.join(path)} is missing")
    return _OMIT if value is None else value


@dataclass(frozen=True)
class _CodeTable:
    name: str
    codes: Mapping[str, Any]

    def lookup(self, value: Any, where: str) -> Any:
        key = code_text(value)
        if key not in self.codes:
            raise _Problem(where, f"code {key!r} is not in code table {self.name!r}")
        return self.codes[key]


class _Rule(Protocol):
    def apply(self, source: Any, where: str) -> Any:
        """The target value, or _OMIT."""
        ...


@dataclass(frozen=True)
class _From:
    path: tuple[str, ...]
    optional: bool
    convert: tuple[str, ...]  # converters applied in order (a chain); () copies the value as is
    table: _CodeTable | None

    def apply(self, source: Any, where: str) -> Any:
        value = _fetch(source, self.path, self.optional, where)
        if value is _OMIT:
            return value
        for name in self.convert:
            try:
                value = CONVERTERS[name](value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _Problem(where, f"{name} cannot convert {value!r}: {exc}") from exc
        return value if self.table is None else self.table.lookup(value, where)


@dataclass(frozen=True)
class _Value:
    value: Any

    def apply(self, source: Any, where: str) -> Any:
        # A copy: callers may change the request they get, and must not change the compiled mapping.
        return copy.deepcopy(self.value)


@dataclass(frozen=True)
class _Group:
    fields: Mapping[str, _Rule]
    keep_missing: bool  # results keep every key (None); requests drop what is missing

    def build(self, source: Any, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, rule in self.fields.items():
            value = rule.apply(source, f"{where}.{name}")
            if value is not _OMIT:
                out[name] = value
            elif self.keep_missing:
                out[name] = None
        return out

    def apply(self, source: Any, where: str) -> Any:
        return self.build(source, where) or _OMIT


@dataclass(frozen=True)
class _ForEach:
    path: tuple[str, ...]
    item: _Group
    optional: bool

    def apply(self, source: Any, where: str) -> Any:
        items = _fetch(source, self.path, self.optional, where)
        if items is _OMIT:
            return items
        if not isinstance(items, list | tuple):
            raise _Problem(where, f"{'.'.join(self.path)} is not a list")
        return [self.item.build(item, f"{where}[{i}]") for i, item in enumerate(items)]


# The ways forward a final refusal may name (the gateway's WayForward, less `void`, which is an operator's call).
FINAL_WAYS = ("supplement", "return", "back_office")
_MISSING_SEPARATORS = re.compile(r"[、,，;；\n]")


@dataclass(frozen=True)
class _Final:
    """A final refusal code: its way forward and, for `supplement`, where the answer lists what is missing."""

    way: str
    missing: tuple[str, ...] | None = None

    def missing_in(self, answer: Any) -> tuple[str, ...]:
        """The names the answer lists at `missing`: a list, or one text split on 、,; (empty when absent)."""
        found = None if self.missing is None else _lookup(answer, self.missing)
        items = found if isinstance(found, list | tuple) else _MISSING_SEPARATORS.split(str(found or ""))
        names = (code_text(item).strip() for item in items if item is not None)
        return tuple(dict.fromkeys(name for name in names if name))  # in order, each once


@dataclass(frozen=True)
class _BusinessCheck:
    code: tuple[str, ...]
    ok: frozenset[str]
    message: tuple[str, ...] | None
    auth: frozenset[str] = frozenset()  # codes that mean our credentials were refused
    retryable: frozenset[str] = frozenset()  # codes that mean "not now": retried under the bundle's policy
    final: Mapping[str, _Final] = dataclass_field(default_factory=dict)  # code -> its way forward
    otherwise: str | None = None  # the way of any other refusal code; None: no ways declared (an operator's call)

    def check(self, answer: Any) -> None:
        code = code_text(_fetch(answer, self.code, False, "response.business_error.code"))
        if code in self.ok:
            return
        found = _lookup(answer, self.message) if self.message else None
        text = "" if found is None else str(found)
        if code in self.auth or code in self.retryable:
            raise BusinessError(code, text, auth=code in self.auth, retryable=code in self.retryable)
        final = self.final.get(code)
        if final is None:
            raise BusinessError(code, text, way=self.otherwise)
        raise BusinessError(code, text, way=final.way, missing=final.missing_in(answer))


@contextmanager
def _named(source_name: str) -> Iterator[None]:
    try:
        yield
    except _Problem as exc:
        # Keep the converter's own exception (if any) as the cause; the _Problem itself is noise.
        raise MappingError(f"{source_name}: {exc}") from exc.__cause__


# --------------------------------------------------------------------------- HTTP (REST mappings)

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_ANY_2XX = frozenset(range(200, 300))
JSON_BODY, FORM_BODY = "json", "form"
BODY_TYPES = {JSON_BODY: "application/json; charset=utf-8", FORM_BODY: "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class HttpRequest:
    """One rendered REST request; `path` is filled, escaped and relative to the sector's endpoint."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None  # the JSON body, or a form body's fields as text; None sends none


@dataclass(frozen=True)
class _Scalars:
    """name -> {from:}/{value:} rule, each rendering one value as text (path params, query, headers)."""

    fields: Mapping[str, _Rule]

    def render(self, source: Any, where: str) -> dict[str, str]:
        out = {}
        for name, rule in self.fields.items():
            here = f"{where}.{name}"
            value = rule.apply(source, here)
            if value is _OMIT:
                continue
            if isinstance(value, Mapping | list | tuple):
                raise _Problem(here, f"expected a single value, got {type(value).__name__}")
            out[name] = code_text(value)
        return out


def _form_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """A form body's fields as text; a field holding an object or a list (a code table's value) cannot be sent."""
    fields = {}
    for name, value in body.items():
        if isinstance(value, Mapping | list | tuple):
            raise _Problem(f"request.{name}", f"a form field holds a single value, got {type(value).__name__}")
        fields[name] = code_text(value)
    return fields


def _segment(params: Mapping[str, str], name: str) -> str:
    """One path segment, escaped so a value cannot add segments, a query or a fragment."""
    where = f"http.path_params.{name}"
    if name not in params:
        raise _Problem(where, "is missing: a path placeholder cannot be left out")
    value = params[name]
    if value in ("", ".", ".."):  # would collapse or climb the path after URL normalisation
        raise _Problem(where, f"{value!r} cannot be a path segment")
    return quote(value, safe="")


@dataclass(frozen=True)
class Paging:
    """How a query's answer is spread over pages, and where each page keeps its items."""

    page_param: str
    size_param: str
    size: int
    items: tuple[str, ...]
    total: tuple[str, ...] | None
    max_pages: int
    first_page: int

    def params(self, index: int) -> dict[str, str]:
        """The query parameters asking for the `index`-th page (0-based)."""
        return {self.page_param: str(self.first_page + index), self.size_param: str(self.size)}

    def items_in(self, answer: Any) -> list[Any]:
        items = _fetch(answer, self.items, False, "http.paging.items")
        if not isinstance(items, list):
            raise _Problem("http.paging.items", f"{'.'.join(self.items)} is not a list")
        return items

    def total_in(self, answer: Any) -> int | None:
        total = None if self.total is None else _lookup(answer, self.total)
        try:
            return None if total is None else to_int(total)
        except (ValueError, TypeError) as exc:
            raise _Problem("http.paging.total", f"{'.'.join(self.total or ())} is not a count: {total!r}") from exc


def _with_value(answer: Any, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `answer` with `value` at `path`, copying only the dicts along the path."""
    out = dict(answer) if isinstance(answer, Mapping) else {}
    out[path[0]] = value if len(path) == 1 else _with_value(out.get(path[0]), path[1:], value)
    return out


@dataclass(frozen=True)
class HttpSpec:
    """A REST mapping's compiled `http` block."""

    method: str
    path: str  # the template, placeholders unfilled: safe to quote in messages (no personal data)
    path_params: _Scalars
    query: _Scalars
    headers: _Scalars
    success: frozenset[int]
    paging: Paging | None
    body: str = JSON_BODY  # how `request` goes on the wire: json | form

    @property
    def content_type(self) -> str:
        """The Content-Type of the request body this block sends."""
        return BODY_TYPES[self.body]

    def encode_body(self, body: Mapping[str, Any]) -> bytes:
        """The rendered body as sent: JSON in UTF-8 as is (not \\u escapes: smaller, and what the sectors' own
        clients send), or form fields in the mapping's order, UTF-8 percent-encoded with `+` for a space.
        ValueError or TypeError for a value JSON cannot carry (NaN, a date object)."""
        if self.body == FORM_BODY:
            return urlencode(body).encode("ascii")
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def render(self, message: Any, body: dict[str, Any] | None) -> HttpRequest:
        if body is not None and self.body == FORM_BODY:
            body = _form_fields(body)
        params = self.path_params.render(message, "http.path_params")
        path = _PLACEHOLDER.sub(lambda match: _segment(params, match.group(1)), self.path)
        headers = self.headers.render(message, "http.headers")
        for name, value in headers.items():
            if any(char in value for char in "\r\n\0"):  # header injection
                raise _Problem(f"http.headers.{name}", "a header value cannot hold line breaks")
        return HttpRequest(self.method, path, self.query.render(message, "http.query"), headers, body)


@dataclass(frozen=True)
class CompiledMapping:
    """One operation's mapping, compiled: render requests and read answers without re-parsing."""

    source_name: str
    operation: str
    request: _Group | None  # None: a REST mapping that sends no body
    response: _Group
    business_error: _BusinessCheck | None
    http: HttpSpec | None = None  # REST mappings only

    def render_request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The sector request (the dict zeep takes, or a REST JSON body) for a canonical message."""
        with _named(self.source_name):
            return {} if self.request is None else self.request.build(message, "request")

    def render_http(self, message: Mapping[str, Any]) -> HttpRequest:
        """The REST request for a canonical message: method, filled path, query, headers and body."""
        with _named(self.source_name):
            http = self._http()
            body = None if self.request is None else self.request.build(message, "request")
            return http.render(message, body)

    def check_business(self, answer: Mapping[str, Any]) -> None:
        """Raise `BusinessError` if the answer refuses the request (a no-op without `business_error`)."""
        with _named(self.source_name):
            if self.business_error is not None:
                self.business_error.check(answer)

    def read_response(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical result of a sector answer; `BusinessError` if the answer refuses the request."""
        self.check_business(answer)
        with _named(self.source_name):
            return self.response.build(answer, "response.fields")

    def read_page(self, answer: Mapping[str, Any]) -> tuple[list[Any], int | None]:
        """One page's items and its declared total (None if the mapping declares none).

        The business check runs first: an error envelope has no items, and must say so as itself.
        """
        self.check_business(answer)
        with _named(self.source_name):
            paging = self._paging()
            return paging.items_in(answer), paging.total_in(answer)

    def merge_pages(self, first: Mapping[str, Any], items: list[Any]) -> dict[str, Any]:
        """The first page's answer with every page's items in place of its own."""
        with _named(self.source_name):
            return _with_value(first, self._paging().items, items)

    def _http(self) -> HttpSpec:
        if self.http is None:
            raise _Problem("http", "not a REST mapping (no http block)")
        return self.http

    def _paging(self) -> Paging:
        paging = self._http().paging
        if paging is None:
            raise _Problem("http.paging", "this mapping declares no paging")
        return paging


# --------------------------------------------------------------------------- compiler

_RULE_KEYS: Mapping[str, frozenset[str]] = {
    "from": frozenset({"from", "optional", "convert", "code_table"}),
    "value": frozenset({"value"}),
    "for_each": frozenset({"for_each", "map", "optional"}),
}


@dataclass(frozen=True)
class _Compiler:
    tables: Mapping[str, _CodeTable]
    keep_missing: bool

    def rule(self, spec: Any, where: str) -> _Rule:
        spec = _mapping(spec, where, "a rule or a group of fields")
        kind = next((k for k in _RULE_KEYS if k in spec), None)
        if kind is None:
            return self.group(spec, where)
        _only_keys(spec, _RULE_KEYS[kind], where, "rule key")
        if kind == "value":
            return _Value(spec["value"])
        optional = _flag(spec.get("optional", False), f"{where}.optional")
        if kind == "for_each":
            item = self.group(_mapping(spec.get("map"), f"{where}.map"), f"{where}.map")
            return _ForEach(_path(spec["for_each"], f"{where}.for_each"), item, optional)
        return _From(
            _path(spec["from"], f"{where}.from"),
            optional,
            self.converters(spec.get("convert"), where),
            self.table(spec.get("code_table"), where),
        )

    def group(self, spec: Mapping[str, Any], where: str, *, allow_empty: bool = False) -> _Group:
        if not spec and not allow_empty:
            raise _Problem(where, "needs at least one field")
        fields = {_field_name(name, where): self.rule(rule, f"{where}.{name}") for name, rule in spec.items()}
        return _Group(fields, self.keep_missing)

    def scalars(self, spec: Any, where: str, *, headers: bool = False) -> _Scalars:
        fields: dict[str, _Rule] = {}
        for name, rule_spec in _mapping(spec, where).items():
            here = f"{where}.{_field_name(name, where)}"
            if headers and not _HEADER_NAME.fullmatch(name):
                raise _Problem(here, "not a valid header name")
            rule = self.rule(rule_spec, here)
            if not isinstance(rule, _From | _Value):
                raise _Problem(here, "expected a {from: ...} or {value: ...} rule (a single value)")
            fields[name] = rule
        return _Scalars(fields)

    def converters(self, spec: Any, where: str) -> tuple[str, ...]:
        """`convert: NAME` or `convert: [NAME, ...]` (applied in order), each one of CONVERTERS."""
        names = [spec] if isinstance(spec, str) else spec
        if spec is None:
            return ()
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise _Problem(f"{where}.convert", f"expected a converter's name or a list of them, got {spec!r}")
        for name in names:
            if name not in CONVERTERS:
                raise _Problem(where, f"unknown converter {name!r} (known: {', '.join(sorted(CONVERTERS))})")
        return tuple(names)

    def table(self, name: Any, where: str) -> _CodeTable | None:
        if name is None:
            return None
        if isinstance(name, str) and name in STANDARD_TABLES:
            return _CodeTable(name, STANDARD_TABLES[name])
        if name not in self.tables:
            standard = ", ".join(sorted(STANDARD_TABLES)) if str(name).startswith(STD_PREFIX) else ""
            raise _Problem(where, f"unknown code table {name!r}" + (f" (standard: {standard})" if standard else ""))
        return self.tables[name]


def _mapping(spec: Any, where: str, what: str = "a mapping") -> Mapping[Any, Any]:
    if not isinstance(spec, Mapping):
        raise _Problem(where, f"expected {what}, got {type(spec).__name__} {spec!r}")
    return spec


def _only_keys(spec: Mapping[Any, Any], allowed: frozenset[str], where: str, what: str = "key") -> None:
    unknown = sorted(code_text(k) for k in spec if k not in allowed)
    if unknown:
        raise _Problem(where, f"unknown {what} {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _field_name(name: Any, where: str) -> str:
    # YAML 1.1 reads unquoted on/off/yes/no as booleans: a field called "on" needs quotes.
    if not isinstance(name, str) or not name:
        raise _Problem(where, f"field name {name!r} must be a non-empty string (quote it in YAML)")
    return name


def _path(text: Any, where: str) -> tuple[str, ...]:
    parts = tuple(text.split(".")) if isinstance(text, str) else ()
    if not parts or not all(parts):
        raise _Problem(where, f"{text!r} is not a dotted path")
    return parts


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Problem(where, f"expected true or false, got {value!r}")
    return value


def _code_tables(spec: Any) -> dict[str, _CodeTable]:
    tables = {}
    for name, codes in _mapping(spec, "code_tables").items():
        if str(name).startswith(STD_PREFIX):  # reserved: `std.` always names the same built-in table
            raise _Problem(f"code_tables.{name}", f"the prefix {STD_PREFIX!r} is reserved for the standard tables")
        codes = _mapping(codes, f"code_tables.{name}")
        tables[name] = _CodeTable(name, {code_text(code): value for code, value in codes.items()})
    return tables


_BUSINESS_KEYS = frozenset({"code", "ok", "message", "auth", "retryable", "final", "otherwise"})


def _codes(spec: Mapping[Any, Any], key: str, where: str, what: str) -> frozenset[str]:
    """A list of codes under `key` (absent: none); an empty list is a mistake, not a way of saying none."""
    codes = spec.get(key, [])
    if not isinstance(codes, list) or (key in spec and not codes):
        raise _Problem(f"{where}.{key}", f"expected a non-empty list of {what}")
    return frozenset(code_text(code) for code in codes)


def _way(value: Any, where: str) -> str:
    if value not in FINAL_WAYS:
        raise _Problem(where, f"expected one of {', '.join(FINAL_WAYS)}, got {value!r}")
    return cast(str, value)


def _finals(spec: Any, where: str) -> dict[str, _Final]:
    finals = {}
    for code, entry in _mapping(spec, where).items():
        here = f"{where}.{code_text(code)}"
        _only_keys(_mapping(entry, here, "{way: ..., missing: ...}"), frozenset({"way", "missing"}), here)
        way = _way(entry.get("way"), f"{here}.way")
        missing = entry.get("missing")
        if (missing is None) == (way == "supplement"):  # a supplement request lists what to hand in; nothing else does
            raise _Problem(f"{here}.missing", "required for a supplement (the answer's list of what is missing)"
                           if missing is None else "only a supplement names what is missing")
        finals[code_text(code)] = _Final(way, None if missing is None else _path(missing, f"{here}.missing"))
    if not finals:
        raise _Problem(where, "expected at least one code: code -> {way: supplement | return | back_office}")
    return finals


def _business_check(spec: Any) -> _BusinessCheck | None:
    if spec is None:
        return None
    where = "response.business_error"
    _only_keys(_mapping(spec, where), _BUSINESS_KEYS, where)
    ok = spec.get("ok")
    if not isinstance(ok, list) or not ok:
        raise _Problem(f"{where}.ok", "expected a non-empty list of success codes")
    kinds = {
        "ok": frozenset(code_text(code) for code in ok),
        "auth": _codes(spec, "auth", where, "the codes that mean our credentials were refused"),
        "retryable": _codes(spec, "retryable", where, "the codes worth asking again (the sector is busy)"),
    }
    final = _finals(spec["final"], f"{where}.final") if "final" in spec else {}
    kinds["final"] = frozenset(final)
    # A code means one thing: listed under two kinds, which one wins would be a guess.
    for later, earlier in (("auth", "ok"), ("retryable", "ok"), ("retryable", "auth"), ("final", "ok"),
                           ("final", "auth"), ("final", "retryable")):
        both = sorted(kinds[later] & kinds[earlier])
        if both:
            raise _Problem(f"{where}.{later}", f"{both[0]!r} is listed under {earlier} too")
    otherwise = spec.get("otherwise")
    if otherwise == "supplement":
        raise _Problem(f"{where}.otherwise", "cannot be supplement: only a code under final can say where the "
                                             "answer lists what is missing")
    declared = "final" in spec or "otherwise" in spec
    message = spec.get("message")
    return _BusinessCheck(
        _path(spec.get("code"), f"{where}.code"),
        kinds["ok"],
        None if message is None else _path(message, f"{where}.message"),
        kinds["auth"],
        kinds["retryable"],
        final,
        _way(otherwise, f"{where}.otherwise") if otherwise is not None else "back_office" if declared else None,
    )


def _count(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Problem(where, f"expected a whole number of at least {minimum}, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Problem(where, f"expected a non-empty name, got {value!r}")
    return value


def _path_template(path: Any) -> frozenset[str]:
    """The placeholder names of an `http.path`, checking its shape."""
    where = "http.path"
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "?# \t\r\n"):
        raise _Problem(where, f"expected an absolute path without query or spaces, got {path!r}")
    names = _PLACEHOLDER.findall(path)
    rest = _PLACEHOLDER.sub("", path)
    if "{" in rest or "}" in rest:
        raise _Problem(where, f"unbalanced braces in {path!r}")
    for name in names:
        if not _PARAM_NAME.fullmatch(name):
            raise _Problem(where, f"placeholder {{{name}}} is not a name")
    return frozenset(names)


def _success(spec: Any) -> frozenset[int]:
    if spec is None:
        return _ANY_2XX
    where = "http.success"
    if not isinstance(spec, list) or not spec:
        raise _Problem(where, "expected a non-empty list of HTTP statuses")
    statuses = frozenset(_count(status, where, 100) for status in spec)
    beyond = sorted(status for status in statuses if status > 599)
    if beyond:
        raise _Problem(where, f"{beyond[0]} is not an HTTP status")
    return statuses


_PAGING_KEYS = frozenset({"page_param", "size_param", "size", "items", "total", "max_pages", "first_page"})


def _paging(spec: Any) -> Paging | None:
    if spec is None:
        return None
    where = "http.paging"
    _only_keys(_mapping(spec, where), _PAGING_KEYS, where)
    total = spec.get("total")
    return Paging(
        page_param=_name(spec.get("page_param"), f"{where}.page_param"),
        size_param=_name(spec.get("size_param"), f"{where}.size_param"),
        size=_count(spec.get("size"), f"{where}.size", 1),
        items=_path(spec.get("items"), f"{where}.items"),
        total=None if total is None else _path(total, f"{where}.total"),
        max_pages=_count(spec.get("max_pages", 20), f"{where}.max_pages", 1),
        first_page=_count(spec.get("first_page", 1), f"{where}.first_page", 0),
    )


_HTTP_KEYS = frozenset({"method", "path", "path_params", "query", "headers", "success", "paging", "body"})


def _body_encoding(spec: Any) -> str:
    if spec not in BODY_TYPES:
        raise _Problem("http.body", f"expected one of {', '.join(BODY_TYPES)}, got {spec!r}")
    return cast(str, spec)


def _flat_form(request: _Group) -> None:
    """`body: form` sends one value per field: no group, no list, no object constant."""
    for name, rule in request.fields.items():
        single = isinstance(rule, _From) or (isinstance(rule, _Value) and not isinstance(rule.value, Mapping | list))
        if not single:
            raise _Problem(f"request.{name}", "a form body (http.body: form) is flat: expected a {from: ...} or "
                                              "{value: ...} rule holding a single value, not a group, list or object")


def _http(spec: Any, compiler: _Compiler, has_body: bool) -> HttpSpec:
    _only_keys(_mapping(spec, "http"), _HTTP_KEYS, "http")
    method = spec.get("method")
    if method not in HTTP_METHODS:
        raise _Problem("http.method", f"expected one of {', '.join(HTTP_METHODS)}, got {method!r}")
    if method == "GET" and has_body:
        raise _Problem("request", "a GET sends no body: leave request out")
    placeholders = _path_template(spec.get("path"))
    params = compiler.scalars(spec.get("path_params") or {}, "http.path_params")
    unfilled, unused = sorted(placeholders - set(params.fields)), sorted(set(params.fields) - placeholders)
    if unfilled:
        raise _Problem("http.path_params", f"no rule for placeholder {{{unfilled[0]}}} of http.path")
    if unused:
        raise _Problem(f"http.path_params.{unused[0]}", "is not a placeholder of http.path")
    return HttpSpec(
        method=method,
        path=spec["path"],
        path_params=params,
        query=compiler.scalars(spec.get("query") or {}, "http.query"),
        headers=compiler.scalars(spec.get("headers") or {}, "http.headers", headers=True),
        success=_success(spec.get("success")),
        paging=_paging(spec.get("paging")),
        body=_body_encoding(spec.get("body", JSON_BODY)),
    )


_TOP_KEYS = frozenset({"operation", "code_tables", "request", "response"})


def _compile(doc: Any, source_name: str) -> CompiledMapping:
    # The http block makes a REST mapping; SOAP mappings keep their exact set of keys.
    rest = isinstance(doc, Mapping) and "http" in doc
    _only_keys(_mapping(doc, "(top level)"), (_TOP_KEYS | {"http"}) if rest else _TOP_KEYS, "(top level)")
    operation = doc.get("operation")
    if not rest and (not isinstance(operation, str) or not operation):
        raise _Problem("operation", "required: the sector's operation name")
    tables = _code_tables(doc.get("code_tables") or {})
    compiler = _Compiler(tables, keep_missing=False)
    has_body = doc.get("request") is not None
    http = _http(doc["http"], compiler, has_body) if rest else None
    if http is not None:
        operation = _name(operation or f"{http.method} {http.path}", "operation")
    # A REST mapping without `request` sends no body; a SOAP one always has a request.
    request = compiler.group(_mapping(doc.get("request"), "request"), "request") if has_body or not rest else None
    if http is not None and http.body == FORM_BODY and request is not None:
        _flat_form(request)
    response = _mapping(doc.get("response") or {}, "response")
    _only_keys(response, frozenset({"business_error", "fields"}), "response")
    fields = _mapping(response.get("fields") or {}, "response.fields")
    # A mapping may read nothing back (an acknowledgement-only operation), hence allow_empty.
    result = _Compiler(tables, keep_missing=True).group(fields, "response.fields", allow_empty=True)
    business = _business_check(response.get("business_error"))
    return CompiledMapping(source_name, operation, request, result, business, http)


def _load_yaml(path: Path, source_name: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{source_name}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"{source_name}: invalid YAML: {exc}") from exc


def compile_mapping(path_or_dict: str | Path | Mapping[str, Any], *, source_name: str | None = None) -> CompiledMapping:
    """Compile a mapping file (or an already-loaded dict); raise `MappingError` naming file and field.

    `source_name` is what errors call the mapping; it defaults to the file's name.
    """
    if isinstance(path_or_dict, Mapping):
        name = source_name or "<mapping>"
        doc: Any = path_or_dict
    else:
        name = source_name or Path(path_or_dict).name
        doc = _load_yaml(Path(path_or_dict), name)
    with _named(name):
        return _compile(doc, name)


# --------------------------------------------------------------------------- introspection (read-only)


@dataclass(frozen=True)
class RuleInfo:
    """One rule of a compiled mapping, as validators and tools see it (`describe`)."""

    section: str  # "request" | "http" (path_params, query, headers) | "response.fields" | "response.business_error"
    location: tuple[str, ...]  # keys from the top of the file: ("request", "cllb", "cl", "map", "clmc")
    target: tuple[str, ...]  # the field it fills within its section, for_each "map" left out: ("cllb", "cl", "clmc")
    kind: str  # "from" | "value" | "for_each" | "group" (or the class name of a rule kind added later)
    source: tuple[str, ...] | None = None  # the path read (from / for_each), relative to the innermost for_each item
    optional: bool = False
    converters: tuple[str, ...] = ()  # `convert`, applied in order
    code_table: str | None = None
    codes: Mapping[str, Any] | None = None  # the code table's entries
    value: Any = None  # a `value` rule's constant
    for_each: tuple[tuple[str, ...], ...] = ()  # enclosing for_each source paths, outermost first

    @property
    def field(self) -> str:
        """The dotted location, as compile errors name it (`request.cllb.cl.map.clmc`)."""
        return ".".join(self.location)


def describe(compiled: CompiledMapping) -> list[RuleInfo]:
    """Every rule of `compiled`, section by section; groups and for_each come before their fields."""
    rules = [] if compiled.request is None else _describe_group(compiled.request, "request", ("request",), (), ())
    if compiled.http is not None:
        for part in ("path_params", "query", "headers"):
            scalars: _Scalars = getattr(compiled.http, part)
            for name, rule in scalars.fields.items():
                rules += _describe_rule(rule, "http", ("http", part, name), (part, name), ())
    rules += _describe_group(compiled.response, "response.fields", ("response", "fields"), (), ())
    check = compiled.business_error
    if check is not None:
        where = ("response", "business_error")
        rules.append(RuleInfo("response.business_error", where + ("code",), ("code",), "from", check.code))
        if check.message is not None:
            rules.append(RuleInfo("response.business_error", where + ("message",), ("message",), "from", check.message))
        for code, final in check.final.items():
            if final.missing is not None:  # read from the answer: checked against what the sector answers
                rules.append(RuleInfo("response.business_error", where + ("final", code, "missing"),
                                      ("final", code, "missing"), "from", final.missing, optional=True))
    return rules


def _describe_group(
    group: _Group, section: str, location: tuple[str, ...], target: tuple[str, ...], loops: tuple[tuple[str, ...], ...]
) -> list[RuleInfo]:
    rules: list[RuleInfo] = []
    for name, rule in group.fields.items():
        rules += _describe_rule(rule, section, location + (name,), target + (name,), loops)
    return rules


def _describe_rule(
    rule: _Rule, section: str, location: tuple[str, ...], target: tuple[str, ...], loops: tuple[tuple[str, ...], ...]
) -> list[RuleInfo]:
    if isinstance(rule, _From):
        name, codes = (None, None) if rule.table is None else (rule.table.name, dict(rule.table.codes))
        return [RuleInfo(section, location, target, "from", rule.path, rule.optional, rule.convert, name, codes,
                         for_each=loops)]  # fmt: skip
    if isinstance(rule, _Value):
        return [RuleInfo(section, location, target, "value", value=copy.deepcopy(rule.value), for_each=loops)]
    if isinstance(rule, _ForEach):
        head = RuleInfo(section, location, target, "for_each", rule.path, rule.optional, for_each=loops)
        return [head, *_describe_group(rule.item, section, location + ("map",), target, loops + (rule.path,))]
    if isinstance(rule, _Group):
        head = RuleInfo(section, location, target, "group", for_each=loops)
        return [head, *_describe_group(rule, section, location, target, loops)]
    return [RuleInfo(section, location, target, type(rule).__name__, for_each=loops)]
