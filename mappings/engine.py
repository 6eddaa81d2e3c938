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
      business_error: {code: fhdm, ok: ["0000"], message: fhxx}   # optional; message is optional
      fields:                             # canonical result field -> rule, read from the answer
        sector_ref: {from: ywlsh}

Rules (the key present says which kind; any other key is a compile error):

- ``{from: PATH, optional: BOOL, convert: NAME, code_table: NAME}`` copies a value. ``convert``
  runs first, then ``code_table``.
- ``{value: CONST}`` a constant.
- ``{for_each: PATH, map: {FIELD: RULE, ...}, optional: BOOL}`` a list, one item per element.
- ``{FIELD: RULE, ...}`` a nested group.

PATH is dotted keys through nested dicts (``case.applicant.name``). A value that is absent or
None is *missing*: for a required rule that is a `MappingError` naming the file and the field;
for an optional one the field is left out of a request (zeep then omits the element) and is None
in a result (a canonical result always carries all its keys). A request group whose fields are
all left out is itself left out.

Code tables look codes up by their text (booleans as "true"/"false", numbers as written), so
quote codes such as "01" in YAML. An unmapped code is a `MappingError`. Converters are the
functions in `CONVERTERS`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import yaml

from mappings.errors import BusinessError, MappingError

# --------------------------------------------------------------------------- converters

SHANGHAI = ZoneInfo("Asia/Shanghai")
_COMPACT = "%Y%m%d%H%M%S"

Converter = Callable[[Any], Any]


def _aware(value: Any) -> datetime:
    """An instant from a datetime or ISO-8601 text; a naive one is refused because it is ambiguous."""
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if instant.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return instant


def _iso_utc(instant: datetime) -> str:
    spec = "milliseconds" if instant.microsecond else "seconds"
    return instant.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _no_bool(value: Any) -> Any:
    # bool is an int in Python; a flag arriving where a number is expected is a mistake, not 0/1.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def code_text(value: Any) -> str:
    """The text a code is known by: booleans as YAML and JSON write them, everything else as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_json(value: Any) -> str:
    """Compact, stable JSON text (sorted keys, Chinese kept as is)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def datetime_compact_shanghai(value: Any) -> str:
    """ISO-8601 instant -> yyyyMMddHHmmss in Beijing time."""
    return _aware(value).astimezone(SHANGHAI).strftime(_COMPACT)


def compact_shanghai_to_iso_utc(value: Any) -> str:
    """yyyyMMddHHmmss in Beijing time -> ISO-8601 UTC ("...Z")."""
    text = str(value)
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"{value!r} is not yyyyMMddHHmmss")
    return _iso_utc(datetime.strptime(text, _COMPACT).replace(tzinfo=SHANGHAI))


def date_compact(value: Any) -> str:
    """A date (or an instant, taken as its Beijing date) -> yyyyMMdd."""
    if isinstance(value, datetime) or (not isinstance(value, date) and len(str(value)) > 10):
        day = _aware(value).astimezone(SHANGHAI).date()
    else:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return day.strftime("%Y%m%d")


def to_int(value: Any) -> int:
    if isinstance(_no_bool(value), float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def epoch_ms_to_iso_utc(value: Any) -> str:
    """Milliseconds since the Unix epoch -> ISO-8601 UTC."""
    return _iso_utc(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=to_int(value)))


CONVERTERS: Mapping[str, Converter] = {
    "json": to_json,
    "datetime_compact_shanghai": datetime_compact_shanghai,
    "compact_shanghai_to_iso_utc": compact_shanghai_to_iso_utc,
    "date_compact": date_compact,
    "str": code_text,
    "int": to_int,
    "epoch_ms_to_iso_utc": epoch_ms_to_iso_utc,
}

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
        if not isinstance(source, Mapping) or key not in source:
            return None
        source = source[key]
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
    convert: str | None
    table: _CodeTable | None

    def apply(self, source: Any, where: str) -> Any:
        value = _fetch(source, self.path, self.optional, where)
        if value is _OMIT:
            return value
        if self.convert is not None:
            try:
                value = CONVERTERS[self.convert](value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _Problem(where, f"{self.convert} cannot convert {value!r}: {exc}") from exc
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


@dataclass(frozen=True)
class _BusinessCheck:
    code: tuple[str, ...]
    ok: frozenset[str]
    message: tuple[str, ...] | None

    def check(self, answer: Any) -> None:
        code = _fetch(answer, self.code, False, "response.business_error.code")
        if code_text(code) in self.ok:
            return
        text = _lookup(answer, self.message) if self.message else None
        raise BusinessError(code_text(code), "" if text is None else str(text))


@contextmanager
def _named(source_name: str) -> Iterator[None]:
    try:
        yield
    except _Problem as exc:
        # Keep the converter's own exception (if any) as the cause; the _Problem itself is noise.
        raise MappingError(f"{source_name}: {exc}") from exc.__cause__


@dataclass(frozen=True)
class CompiledMapping:
    """One operation's mapping, compiled: render requests and read answers without re-parsing."""

    source_name: str
    operation: str
    request: _Group
    response: _Group
    business_error: _BusinessCheck | None

    def render_request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The sector request (the dict zeep takes) for a canonical message."""
        with _named(self.source_name):
            return self.request.build(message, "request")

    def read_response(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical result of a sector answer; `BusinessError` if the answer refuses the request."""
        with _named(self.source_name):
            if self.business_error is not None:
                self.business_error.check(answer)
            return self.response.build(answer, "response.fields")


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
            self.converter(spec.get("convert"), where),
            self.table(spec.get("code_table"), where),
        )

    def group(self, spec: Mapping[str, Any], where: str, *, allow_empty: bool = False) -> _Group:
        if not spec and not allow_empty:
            raise _Problem(where, "needs at least one field")
        fields = {_field_name(name, where): self.rule(rule, f"{where}.{name}") for name, rule in spec.items()}
        return _Group(fields, self.keep_missing)

    def converter(self, name: Any, where: str) -> str | None:
        if name is not None and name not in CONVERTERS:
            raise _Problem(where, f"unknown converter {name!r}")
        return name

    def table(self, name: Any, where: str) -> _CodeTable | None:
        if name is None:
            return None
        if name not in self.tables:
            raise _Problem(where, f"unknown code table {name!r}")
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
        codes = _mapping(codes, f"code_tables.{name}")
        tables[name] = _CodeTable(name, {code_text(code): value for code, value in codes.items()})
    return tables


def _business_check(spec: Any) -> _BusinessCheck | None:
    if spec is None:
        return None
    where = "response.business_error"
    _only_keys(_mapping(spec, where), frozenset({"code", "ok", "message"}), where)
    ok = spec.get("ok")
    if not isinstance(ok, list) or not ok:
        raise _Problem(f"{where}.ok", "expected a non-empty list of success codes")
    message = spec.get("message")
    return _BusinessCheck(
        _path(spec.get("code"), f"{where}.code"),
        frozenset(code_text(code) for code in ok),
        None if message is None else _path(message, f"{where}.message"),
    )


def _compile(doc: Any, source_name: str) -> CompiledMapping:
    top_keys = frozenset({"operation", "code_tables", "request", "response"})
    _only_keys(_mapping(doc, "(top level)"), top_keys, "(top level)")
    operation = doc.get("operation")
    if not isinstance(operation, str) or not operation:
        raise _Problem("operation", "required: the sector's operation name")
    tables = _code_tables(doc.get("code_tables") or {})
    request = _Compiler(tables, keep_missing=False).group(_mapping(doc.get("request"), "request"), "request")
    response = _mapping(doc.get("response") or {}, "response")
    _only_keys(response, frozenset({"business_error", "fields"}), "response")
    fields = _mapping(response.get("fields") or {}, "response.fields")
    # A mapping may read nothing back (an acknowledgement-only operation), hence allow_empty.
    result = _Compiler(tables, keep_missing=True).group(fields, "response.fields", allow_empty=True)
    return CompiledMapping(source_name, operation, request, result, _business_check(response.get("business_error")))


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
