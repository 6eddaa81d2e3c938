"""Validating mappings before anything is sent: what they read, what they write, what they must produce.

A mapping compiles when its rules are well formed; it *works* only if every path it reads exists in
the message it gets and every field it writes exists in what the sector accepts. This module checks
both, statically, and reports each problem as `Problem(file, line, field, message)`, rendered
`submit_case.mapping.yaml:12: request.sqrxm: 'case.applicant.nme' is not in the canonical message`.

Every message (canonical, WSDL types, OpenAPI schemas) is reduced to one `Shape` tree so a single
walker checks them all. This package knows nothing of bundles or of the canonical model: callers pass
the canonical message as a `Shape` and the result rules (see `adapters/canonical.py`).

REST mappings are checked through the engine's compiled `http` block (`HttpSpec`); `xslt` is read
here from the file, since it applies after the engine has rendered the request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import zeep
import zeep.exceptions as zx
from lxml import etree
from zeep import xsd
from zeep.transports import Transport
from zeep.wsdl.bindings.soap import Soap12Binding

from mappings import strict_json
from mappings.converters import CONVERTER_SPECS, DATE, INSTANT, SPECS
from mappings.engine import BODY_TYPES, FORM_BODY, CompiledMapping, HttpSpec, RuleInfo, compile_mapping, describe
from mappings.errors import MappingError
from mappings.positions import Positions, YamlProblem, load_yaml
from mappings.xslt import compile_xslt

# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a bundle, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class TargetError(ValueError):
    """A service description that cannot be used, or an operation it does not have; `line`: where in the
    description, when that is known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# --------------------------------------------------------------------------- shapes

OBJECT, LIST, SCALAR, ANYTHING = "object", "list", "scalar", "any"


@dataclass(frozen=True, eq=False)
class Shape:
    """What a message may hold at one place: an object's fields, a list's item, a scalar, or anything."""

    kind: str
    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    item: Shape | None = None  # LIST only
    extra: Shape | None = None  # OBJECT only: the shape of undeclared keys, None if they are refused
    type_name: str = ""

    def child(self, key: str) -> Shape | None:
        if self.kind == ANYTHING:
            return self
        if self.kind == OBJECT:
            return self.fields.get(key, self.extra)
        return None

    def resolve(self, path: Iterable[str]) -> Shape | None:
        shape: Shape | None = self
        for key in path:
            shape = None if shape is None else shape.child(key)
        return shape

    def items(self) -> Shape | None:
        """The item shape if this is a list (anything may be a list of anything), else None."""
        return self if self.kind == ANYTHING else self.item

    @staticmethod
    def from_data(tree: Any) -> Shape:
        """A shape from the plain-data notation of `adapters/canonical.py` (dict, [item], "*", "type")."""
        if isinstance(tree, Mapping):
            fields = {str(k): Shape.from_data(v) for k, v in tree.items()}
            return Shape(OBJECT, fields)
        if isinstance(tree, list):
            return Shape(LIST, item=Shape.from_data(tree[0]))
        return ANY if tree == "*" else Shape(SCALAR, type_name=str(tree))


ANY = Shape(ANYTHING)


def _union(shapes: Sequence[Shape]) -> Shape:
    """A shape accepting what any of `shapes` holds (oneOf, several 2xx answers); nothing is required."""
    if not shapes:
        return ANY
    if len(shapes) == 1:
        return shapes[0]
    if all(s.kind == OBJECT for s in shapes):
        fields: dict[str, Shape] = {}
        for shape in shapes:
            for key, sub in shape.fields.items():  # the same key in two answers: either shape may come
                fields[key] = _union([fields[key], sub]) if key in fields else sub
        extras = [s.extra for s in shapes if s.extra is not None]
        return Shape(OBJECT, fields, extra=extras[0] if extras else None)
    return ANY


# --------------------------------------------------------------------------- mapping files


class ResultRules(Protocol):
    """What an operation's `response.fields` must produce (`adapters.canonical.ResultSpec` is one)."""

    @property
    def required(self) -> frozenset[str]: ...
    @property
    def allowed(self) -> frozenset[str]: ...
    @property
    def values(self) -> Mapping[str, frozenset[Any]]: ...
    @property
    def open(self) -> bool: ...
    @property
    def times(self) -> Mapping[str, str]: ...  # result field -> INSTANT | DATE (mappings.converters)


@dataclass(frozen=True)
class Expectations:
    """The canonical side of one mapping: the message it reads and the result it must produce."""

    operation: str  # for messages: "submit_case", "housing_fund_balance"
    message: Shape
    results: ResultRules
    query: bool = False  # named queries may page


_OURS = ("xslt", "parameters")  # top-level keys the engine does not read: the stylesheet applied after it
# renders (read here); a named query's parameter contract (read by adapters.queries)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class MappingFile:
    """A mapping file, compiled, with where each of its rules is written."""

    path: Path
    name: str
    doc: Mapping[str, Any]
    positions: Positions
    compiled: CompiledMapping
    rules: tuple[RuleInfo, ...]  # `engine.describe`: request, http, response rules

    @property
    def has_request(self) -> bool:
        return self.compiled.request is not None

    @property
    def http(self) -> HttpSpec | None:
        return self.compiled.http

    def problem(self, location: Sequence[str | int], message: str) -> Problem:
        return Problem(self.name, self.positions.line(location), ".".join(map(str, location)), message)


def load_mapping(
    path: Path, *, name: str | None = None, code_tables: Mapping[str, Any] | None = None
) -> tuple[MappingFile | None, list[Problem]]:
    """Read and compile one mapping file; `code_tables` are the bundle's (the mapping's own win).

    Returns the file (None if it cannot be compiled) and the problems found reading it.
    """
    name = name or path.name
    try:
        doc, positions = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, [Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]
    except YamlProblem as exc:
        return None, [Problem(name, exc.line, "", exc.message)]
    if not isinstance(doc, Mapping):
        return None, [Problem(name, 1, "", "expected a mapping of keys")]
    engine_doc = {k: v for k, v in _with_tables(doc, code_tables or {}).items() if k not in _OURS}
    try:
        compiled = compile_mapping(engine_doc, source_name=name)
    except MappingError as exc:
        return None, [_compile_problem(exc, name, positions)]
    mf = MappingFile(path, name, doc, positions, compiled, tuple(describe(compiled)))
    return mf, _xslt_key(mf)


def _with_tables(doc: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    own = doc.get("code_tables")
    if not tables or (own is not None and not isinstance(own, Mapping)):
        return dict(doc)  # nothing to add, or malformed: let the engine say so
    return {**doc, "code_tables": {**tables, **(own or {})}}


_UNKNOWN_KEY = re.compile(r"unknown (?:rule )?key '([^']*)'")


def _compile_problem(exc: MappingError, name: str, positions: Positions) -> Problem:
    """A compile error (`name: where: text`) as a Problem on the line of `where`."""
    text = str(exc).removeprefix(f"{name}: ")
    where, _, message = text.partition(": ")
    location = [] if where == "(top level)" else where.split(".")
    unknown = _UNKNOWN_KEY.search(message)  # point at the offending key, not at its parent
    line_at = location + [unknown.group(1)] if unknown else location
    return Problem(name, positions.line(line_at), where, message)


def _xslt_key(mf: MappingFile) -> list[Problem]:
    value = mf.doc.get("xslt")
    if value is None or (isinstance(value, str) and value):
        return []
    return [mf.problem(["xslt"], f"expected a stylesheet file name, got {value!r}")]


# --------------------------------------------------------------------------- the canonical side


def check_canonical(mf: MappingFile, expected: Expectations) -> list[Problem]:
    """Every path the request (and http rules) read is in the canonical message; the result is right."""
    reads = [r for r in mf.rules if r.section in ("request", "http")]
    problems = _check_sources(mf, reads, expected.message, "the canonical message")
    return problems + _check_results(mf, expected)


def _check_sources(mf: MappingFile, rules: Iterable[RuleInfo], root: Shape, label: str) -> list[Problem]:
    """Each `from`/`for_each` path resolves in `root`; paths inside for_each resolve in its items."""
    items: dict[tuple[str, ...], Shape] = {}  # for_each location -> the shape of its items
    broken: set[tuple[str, ...]] = set()  # for_each locations that failed: their inner rules say nothing new
    problems = []
    for rule in rules:
        if rule.kind not in ("from", "for_each") or rule.source is None:
            continue
        loop = _enclosing_loop(rule, items, broken)
        if loop is None:
            broken.add(rule.location)
            continue
        base, prefix = (root, "") if loop == () else (items[loop], _display(rule.for_each))
        shape = base.resolve(rule.source)
        shown = prefix + ".".join(rule.source)
        if shape is None:
            problems.append(mf.problem(rule.location, f"'{shown}' is not in {label}"))
            broken.add(rule.location)
        elif rule.kind == "for_each":
            item = shape.items()
            if item is None:
                problems.append(mf.problem(rule.location, f"'{shown}' is not a list in {label}"))
                broken.add(rule.location)
            else:
                items[rule.location] = item
    return problems


def _enclosing_loop(
    rule: RuleInfo, items: Mapping[tuple[str, ...], Shape], broken: set[tuple[str, ...]]
) -> tuple[str, ...] | None:
    """The location of the innermost for_each around `rule` (() at top level); None if that one failed."""
    if not rule.for_each:
        return ()
    for depth in range(len(rule.location) - 1, 0, -1):
        candidate = rule.location[:depth]
        if candidate in broken:
            return None
        if candidate in items:
            return candidate
    return None


def _display(loops: Sequence[tuple[str, ...]]) -> str:
    return "".join(".".join(loop) + "[]." for loop in loops)


def _check_results(mf: MappingFile, expected: Expectations) -> list[Problem]:
    spec = expected.results
    top = [r for r in mf.rules if r.section == "response.fields" and len(r.target) == 1]
    required = f"is required in the result of {expected.operation}"
    problems = []
    for rule in top:
        key = rule.target[0]
        problems += _result_rule(mf, rule, expected)
        problems += _time_rule(mf, rule, spec.times.get(key))
        if key in spec.required and rule.optional:
            problems.append(mf.problem(rule.location, f"'{key}' {required}: it may not be optional"))
    produced = {r.target[0] for r in top}
    problems += [mf.problem(["response", "fields"], f"'{key}' {required}") for key in sorted(spec.required - produced)]
    return problems


def _result_rule(mf: MappingFile, rule: RuleInfo, expected: Expectations) -> list[Problem]:
    spec, key = expected.results, rule.target[0]
    if not spec.open and key not in spec.allowed:
        known = ", ".join(sorted(spec.allowed))
        return [mf.problem(rule.location, f"'{key}' is not a result of {expected.operation} (results: {known})")]
    if not spec.open and rule.kind not in ("from", "value"):
        return [mf.problem(rule.location, f"the result of {expected.operation} is flat: '{key}' must be one value")]
    allowed = spec.values.get(key)
    if allowed is None:
        return []
    if rule.kind == "value" and rule.value not in allowed:
        return [mf.problem(rule.location, f"{rule.value!r} is not a {key} ({_listing(allowed)})")]
    bad = {code: value for code, value in (rule.codes or {}).items() if value not in allowed}
    if bad:
        code, value = sorted(bad.items())[0]
        text = f"code table {rule.code_table!r} maps {code!r} to {value!r}, not a {key} ({_listing(allowed)})"
        return [mf.problem(rule.location, text)]
    return []


_SHOWN = {INSTANT: "an ISO-8601 UTC instant", DATE: "a date (yyyy-MM-dd)"}


def _time_rule(mf: MappingFile, rule: RuleInfo, kind: str | None) -> list[Problem]:
    """A canonical time is read through converters whose last one gives its kind (`kind`: INSTANT or DATE).

    Sound because each converter that gives a time reads the sector's value in a zone it declares: epochs are UTC,
    wall-clock texts are in the zone the converter's name says (Beijing or UTC), and an ISO/xsd text must carry
    its offset (a naive one is refused when the answer is read). A plain copy, a constant or a code table could
    hand on a naive wall-clock time that something later would have to guess at: those are refused here.
    """
    if kind is None:
        return []
    last = CONVERTER_SPECS[rule.converters[-1]] if rule.kind == "from" and rule.converters else None
    if last is not None and last.gives == kind and rule.code_table is None:
        return []
    fitting = ", ".join(spec.name for spec in SPECS if spec.gives == kind)
    key = rule.target[0]
    text = (f"'{key}' is {_SHOWN[kind]}: read it with a converter that declares the sector's zone, last in "
            f"`convert` and without a code table ({fitting}); a time is never guessed")
    return [mf.problem(rule.location, text)]


def _listing(values: Iterable[Any]) -> str:
    return ", ".join(sorted(str(v).lower() if isinstance(v, bool) else str(v) for v in values))


# --------------------------------------------------------------------------- the sector side


@dataclass(frozen=True)
class Target:
    """What one sector operation accepts (`request`, None: no body) and answers (`response`)."""

    request: Shape | None
    request_label: str
    response: Shape
    response_label: str


def check_target(mf: MappingFile, target: Target) -> list[Problem]:
    """Request fields exist in what the sector accepts; response paths exist in what it answers."""
    problems = _check_request_targets(mf, target) if target.request is not None and mf.has_request else []
    reads = [r for r in mf.rules if r.section.startswith("response")]
    return problems + _check_sources(mf, reads, target.response, target.response_label)


def _check_request_targets(mf: MappingFile, target: Target, provided: frozenset[str] = frozenset()) -> list[Problem]:
    """`provided`: top-level fields the gateway fills itself, required or not without a rule."""
    assert target.request is not None
    containers: dict[tuple[str, ...], Shape] = {(): target.request}  # target path -> shape its children go in
    covered: dict[tuple[str, ...], set[str]] = {(): set(provided)}
    problems = []
    for rule in (r for r in mf.rules if r.section == "request"):
        parent = containers.get(rule.target[:-1])
        if parent is None:
            continue  # under a field already reported
        covered.setdefault(rule.target[:-1], set()).add(rule.target[-1])
        shape = parent.child(rule.target[-1])
        problem = _target_problem(rule, shape, target.request_label)
        if problem:
            problems.append(mf.problem(rule.location, problem))
        elif shape is not None and rule.kind in ("group", "for_each"):
            inner = shape if rule.kind == "group" else shape.items()
            containers[rule.target] = inner if inner is not None else ANY
    return problems + list(_missing_required(mf, containers, covered, target.request_label))


def _target_problem(rule: RuleInfo, shape: Shape | None, label: str) -> str | None:
    shown = ".".join(rule.target)
    if shape is None:
        return f"'{shown}' is not in {label}"
    if rule.kind == "for_each" and shape.items() is None:
        return f"'{shown}' is not a list in {label}"
    if rule.kind == "group" and shape.kind not in (OBJECT, ANYTHING):
        return f"'{shown}' is not a group of fields in {label}"
    return None


def _missing_required(
    mf: MappingFile,
    containers: Mapping[tuple[str, ...], Shape],
    covered: Mapping[tuple[str, ...], set[str]],
    label: str,
) -> Iterator[Problem]:
    for path, shape in containers.items():
        for name in sorted(shape.required - covered.get(path, set())):
            location = _location_of(mf, path)
            yield mf.problem(location, f"required '{'.'.join((*path, name))}' of {label} has no rule")


def _location_of(mf: MappingFile, target: tuple[str, ...]) -> tuple[str, ...]:
    if not target:
        return ("request",)
    return next((r.location for r in mf.rules if r.section == "request" and r.target == target), ("request",))


# --------------------------------------------------------------------------- SOAP: the WSDL


class _BundleTransport(Transport):
    """Loads the WSDL and its XSDs from inside the bundle only: no network, no other files."""

    def __init__(self, root: Path) -> None:
        # zeep's Transport.__init__ is unannotated, and mypy's untyped_calls_exclude skips no super() call.
        super().__init__()  # type: ignore[no-untyped-call]
        self.root = root.resolve()

    def load(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            raise zx.ExternalReferenceForbidden(url)
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else os.path.expanduser(url)).resolve()
        if not path.is_relative_to(self.root):
            raise zx.ExternalReferenceForbidden(url)
        return path.read_bytes()


def load_wsdl(path: Path, root: Path | None = None) -> zeep.Client:
    """A zeep client for a WSDL kept in a bundle (strict, no DTDs, entities or external references)."""
    settings = zeep.Settings(
        strict=True, forbid_external=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False
    )
    try:
        return zeep.Client(str(path), settings=settings, transport=_BundleTransport(root or path.parent))
    except zx.ExternalReferenceForbidden as exc:
        raise TargetError(f"refers to {exc.url}: every WSDL and XSD file must be inside the bundle") from exc
    except (zx.Error, etree.LxmlError, OSError, ValueError) as exc:
        raise TargetError(f"not a usable WSDL: {_brief(str(exc))}") from exc


def _brief(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def soap_version_of(binding: Any) -> str:
    return "1.2" if isinstance(binding, Soap12Binding) else "1.1"


def select_binding(client: zeep.Client, soap_version: str, wsdl_name: str = "the WSDL") -> Any:
    """The binding of the first service port speaking `soap_version`; TargetError naming what there is."""
    found = [port.binding for service in client.wsdl.services.values() for port in service.ports.values()]
    if not found:
        raise TargetError("the WSDL declares no service port")
    for binding in found:
        if soap_version_of(binding) == soap_version:
            return binding
    binding = found[0]
    actual = f"binding {binding.name.localname} is SOAP {soap_version_of(binding)}"
    raise TargetError(f"{soap_version!r} does not match {wsdl_name}: {actual}")


def soap_target(binding: Any, operation: str, wsdl_name: str) -> Target:
    """The input and output of one WSDL operation as shapes; TargetError if the binding lacks it."""
    try:
        op = binding.get(operation)
    except ValueError:
        known = ", ".join(sorted(binding.all()))
        where = f"binding {binding.name.localname} in {wsdl_name}"
        raise TargetError(f"{operation!r} is not an operation of {where} (operations: {known})") from None
    inp, out = _body_element(op.input), _body_element(op.output)
    return Target(
        _element_type_shape(inp),
        f"{_name(inp)}, the input of {operation} in {wsdl_name}",
        _unwrapped(_element_type_shape(out), out),
        f"{_name(out)}, the output of {operation} in {wsdl_name}",
    )


def _body_element(message: Any) -> Any:
    return getattr(message, "body", None) if message is not None else None


def _name(element: Any) -> str:
    return getattr(element, "name", None) or "(empty body)"


def _element_type_shape(element: Any) -> Shape:
    if element is None:
        return Shape(OBJECT)
    return _type_shape(element.type, frozenset())


def _unwrapped(shape: Shape, element: Any) -> Shape:
    # zeep returns the single child's value instead of a wrapper holding only that child
    # (zeep.wsdl.messages.soap.SoapMessage.deserialize), so paths start below it.
    xsd_type = getattr(element, "type", None)
    if isinstance(xsd_type, xsd.ComplexType) and len(xsd_type.elements) == 1 and not xsd_type.attributes:
        only = next(iter(shape.fields.values()), None)
        return only if only is not None else shape
    return shape


def _type_shape(xsd_type: Any, seen: frozenset[Any]) -> Shape:
    if not isinstance(xsd_type, xsd.ComplexType):
        return Shape(SCALAR, type_name=getattr(xsd_type, "name", None) or "value")
    if xsd_type.qname is not None and xsd_type.qname in seen:
        return ANY  # a recursive type: deeper levels are not checked
    seen = seen | {xsd_type.qname} if xsd_type.qname is not None else seen
    fields: dict[str, Shape] = {}
    required: set[str] = set()
    open_ = _particles(xsd_type.elements_nested, True, fields, required, seen)
    for name, attribute in xsd_type.attributes:
        if isinstance(attribute, xsd.AnyAttribute):
            open_ = True
            continue
        fields[name] = Shape(SCALAR, type_name="attribute")
        if getattr(attribute, "required", False):
            required.add(name)
    return Shape(OBJECT, fields, frozenset(required), extra=ANY if open_ else None, type_name=str(xsd_type.qname or ""))


def _particles(
    nested: Iterable[tuple[str, Any]], must: bool, fields: dict[str, Shape], required: set[str], seen: frozenset[Any]
) -> bool:
    """Collect the elements of a content model; returns True if it admits any element (xsd:any)."""
    open_ = False
    for name, particle in nested:
        if isinstance(particle, xsd.Any):
            open_ = True
        elif isinstance(particle, xsd.Element):
            fields[name] = _element_shape(particle, seen)
            if must and particle.min_occurs >= 1:
                required.add(name)
        else:  # Sequence, All, Group keep their elements' minOccurs; of a Choice, no element is required
            transparent = isinstance(particle, xsd.Sequence | xsd.All | xsd.Group)
            keeps = must and transparent and getattr(particle, "min_occurs", 1) >= 1
            open_ |= _particles(_nested_of(particle), keeps, fields, required, seen)
    return open_


def _nested_of(particle: Any) -> list[tuple[str, Any]]:
    if isinstance(particle, xsd.Group):
        return [("", particle.child)]
    return [(getattr(child, "attr_name", None) or getattr(child, "name", None) or "", child) for child in particle]


def _element_shape(element: Any, seen: frozenset[Any]) -> Shape:
    shape = _type_shape(element.type, seen)
    many = element.max_occurs == "unbounded" or (isinstance(element.max_occurs, int) and element.max_occurs > 1)
    return Shape(LIST, item=shape) if many else shape


def check_soap(mf: MappingFile, binding: Any, wsdl_name: str, root: Path) -> list[Problem]:
    """A SOAP mapping: its operation is in the binding, its fields in the WSDL types, its xslt compiles."""
    problems = [mf.problem(["http"], "only rest bundles have an http block")] if mf.http is not None else []
    problems += _check_xslt(mf, root)
    try:
        target = soap_target(binding, mf.compiled.operation, wsdl_name)
    except TargetError as exc:
        return [*problems, mf.problem(["operation"], str(exc))]
    return problems + check_target(mf, target)


def _check_xslt(mf: MappingFile, root: Path) -> list[Problem]:
    name = mf.doc.get("xslt")
    if not isinstance(name, str) or not name:
        return []
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return [mf.problem(["xslt"], f"file {name!r} not found in the bundle")]
    try:
        compile_xslt(path, name=name)
    except MappingError as exc:
        return [mf.problem(["xslt"], str(exc))]
    return []


# --------------------------------------------------------------------------- REST: the OpenAPI document


@dataclass(frozen=True)
class OpenApi:
    """An OpenAPI 3 document kept in a bundle; `$ref`s resolve inside it only."""

    name: str
    doc: Mapping[str, Any]

    @staticmethod
    def load(path: Path, name: str | None = None) -> OpenApi:
        name = name or path.name
        try:
            text = path.read_text(encoding="utf-8")
            doc = strict_json.loads(text) if path.suffix == ".json" else load_yaml(text)[0]
        except (YamlProblem, strict_json.JsonRefused) as exc:  # a key written twice among them: say where
            raise TargetError(exc.message, exc.line) from exc
        except json.JSONDecodeError as exc:
            raise TargetError(f"invalid JSON: {exc.msg}", exc.lineno) from exc
        except (OSError, ValueError) as exc:
            raise TargetError(f"not a usable OpenAPI document: {exc}") from exc
        if not isinstance(doc, Mapping) or not str(doc.get("openapi", "")).startswith("3."):
            raise TargetError("not an OpenAPI 3 document (expected 'openapi: 3.x')")
        if not isinstance(doc.get("paths"), Mapping):
            raise TargetError("an OpenAPI document needs 'paths'")
        return OpenApi(name, doc)

    def deref(self, node: Any) -> Any:
        """`node`, or what its `$ref` points at (local references only: a bundle is self-contained)."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = str(node["$ref"])
            if not ref.startswith("#/") or ref in seen:
                raise TargetError(f"$ref {ref!r} must point inside {self.name} (and not in a circle)")
            seen.add(ref)
            node = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, Mapping) or part not in node:
                    raise TargetError(f"$ref {ref!r} points at nothing in {self.name}")
                node = node[part]
        return node

    def find(self, method: str, path: str) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
        """The OpenAPI path template matching `path`, its path item and the operation for `method`."""
        template = next((t for t in self.doc["paths"] if _same_template(str(t), path)), None)
        if template is None:
            raise TargetError(f"{path!r} is not a path in {self.name}")
        item = self.deref(self.doc["paths"][template])
        operation = item.get(method.lower()) if isinstance(item, Mapping) else None
        if not isinstance(operation, Mapping):
            raise TargetError(f"{method} is not an operation of {template} in {self.name}")
        return str(template), item, operation

    def parameters(
        self, item: Mapping[str, Any], operation: Mapping[str, Any]
    ) -> dict[tuple[str, str], Mapping[str, Any]]:
        """(in, name) -> parameter; the operation's override the path item's; header names lower-cased."""
        found: dict[tuple[str, str], Mapping[str, Any]] = {}
        for source in (item.get("parameters") or [], operation.get("parameters") or []):
            for raw in source:
                param = self.deref(raw)
                if not isinstance(param, Mapping):
                    continue
                where, name = str(param.get("in")), str(param.get("name"))
                found[(where, name.lower() if where == "header" else name)] = param
        return found

    def schema_shape(self, schema: Any, seen: frozenset[str] = frozenset()) -> Shape:
        """The shape a JSON schema describes. An object without `additionalProperties` accepts only its
        declared properties (what API documents mean, though JSON Schema would allow more)."""
        if isinstance(schema, Mapping) and "$ref" in schema:
            ref = str(schema["$ref"])
            return ANY if ref in seen else self.schema_shape(self.deref(schema), seen | {ref})
        if not isinstance(schema, Mapping):
            return ANY  # `true`, `{}`-like: anything
        if "allOf" in schema:
            return self._all_of(schema, seen)
        if "oneOf" in schema or "anyOf" in schema:
            return _union([self.schema_shape(s, seen) for s in schema.get("oneOf") or schema.get("anyOf") or []])
        kind = _json_type(schema)
        if kind == "array":
            return Shape(LIST, item=self.schema_shape(schema.get("items", {}), seen))
        if kind == "object" or "properties" in schema:
            return self._object(schema, seen)
        return ANY if kind is None else Shape(SCALAR, type_name=kind)

    def _object(self, schema: Mapping[str, Any], seen: frozenset[str]) -> Shape:
        props = schema.get("properties") or {}
        fields = {str(k): self.schema_shape(v, seen) for k, v in props.items()}
        extra_spec = schema.get("additionalProperties")
        if extra_spec is None:
            extra: Shape | None = None if fields else ANY
        elif extra_spec is False:
            extra = None
        else:
            extra = ANY if extra_spec is True else self.schema_shape(extra_spec, seen)
        required = frozenset(str(r) for r in schema.get("required") or [])
        return Shape(OBJECT, fields, required, extra=extra, type_name="object")

    def _all_of(self, schema: Mapping[str, Any], seen: frozenset[str]) -> Shape:
        parts = [self.schema_shape(s, seen) for s in schema["allOf"]]
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        if rest:
            parts.append(self.schema_shape(rest, seen))
        objects = [p for p in parts if p.kind == OBJECT]
        if not objects:
            return parts[0] if parts else ANY
        fields: dict[str, Shape] = {}
        for part in objects:
            fields.update(part.fields)
        required = frozenset().union(*(p.required for p in objects))
        return Shape(OBJECT, fields, required, extra=None if fields else ANY, type_name="object")

    def body_shape(self, operation: Mapping[str, Any], form: bool = False) -> tuple[Shape | None, bool]:
        """The request body's shape (None: no body declared) and whether it is required: the JSON body's, or with
        `form` the `application/x-www-form-urlencoded` one's."""
        body = self.deref(operation.get("requestBody"))
        if not isinstance(body, Mapping):
            return None, False
        schema = (_form_schema if form else _json_schema)(body.get("content"))
        if schema is None:  # another kind of body (binary, or form vs JSON): nothing this mapping can fill
            return None, False
        return self.schema_shape(schema), bool(body.get("required"))

    def response_shape(self, operation: Mapping[str, Any], statuses: Sequence[int] | None) -> Shape | None:
        """The union of the JSON schemas of the success answers (the listed statuses, else every 2xx)."""
        shapes = []
        for code, response in (operation.get("responses") or {}).items():
            code = str(code).upper()
            wanted = code in {str(s) for s in statuses} if statuses else (code.startswith("2"))
            response = self.deref(response)
            if (wanted or (statuses and code == "2XX")) and isinstance(response, Mapping):
                schema = _json_schema(response.get("content"))
                if schema is not None:
                    shapes.append(self.schema_shape(schema))
        return _union(shapes) if shapes else None


def _same_template(template: str, path: str) -> bool:
    """Whether two path templates name the same route (placeholders match placeholders, whatever their name)."""
    a, b = template.rstrip("/").split("/"), path.rstrip("/").split("/")
    if len(a) != len(b):
        return False
    return all(x == y or (_PLACEHOLDER.fullmatch(x) and _PLACEHOLDER.fullmatch(y)) for x, y in zip(a, b, strict=True))


def _json_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # 3.1: ["string", "null"]
        kind = next((k for k in kind if k != "null"), None)
    return None if kind is None else str(kind)


def _json_schema(content: Any) -> Any:
    """The schema of the JSON media type of a `content` map (application/json, application/*+json)."""
    if not isinstance(content, Mapping):
        return None
    for media, spec in content.items():
        media = str(media).split(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json") or media == "*/*":
            return spec.get("schema", {}) if isinstance(spec, Mapping) else {}
    return None


def _form_schema(content: Any) -> Any:
    """The schema of the `application/x-www-form-urlencoded` media type of a `content` map."""
    if not isinstance(content, Mapping):
        return None
    for media, spec in content.items():
        if str(media).split(";")[0].strip().lower() == BODY_TYPES[FORM_BODY]:
            return spec.get("schema", {}) if isinstance(spec, Mapping) else {}
    return None


def check_rest(
    mf: MappingFile, api: OpenApi, expected: Expectations, *, provided_headers: Iterable[str] = (),
    provided_query: Iterable[str] = (), provided_body: Iterable[str] = ()
) -> list[Problem]:
    """A REST mapping: its http block names a route of the OpenAPI document and parameters it declares,
    its body fits the request schema and its response paths the success answers' schema.

    `provided_headers`, `provided_query` and `provided_body` are headers, query parameters and top-level body
    fields the gateway sets itself (idempotency, a signing recipe's signature, app id, timestamp and nonce): a
    required one needs no rule.
    """
    http = mf.http
    if http is None:
        return [mf.problem(["http"], "required in a rest bundle's mapping (method, path, ...)")]
    problems = [mf.problem(["xslt"], "xslt is for soap bundles only")] if "xslt" in mf.doc else []
    if http.paging is not None and not expected.query:
        problems.append(mf.problem(["http", "paging"], "paging is for named queries only"))
    try:
        template, item, operation = api.find(http.method, http.path)
        route = f"{http.method} {template}"
        params = api.parameters(item, operation)
        have = {("header", h.lower()) for h in provided_headers} | {("query", q) for q in provided_query}
        problems += _check_params(mf, http, api.name, route, params, have)
        problems += _check_body(mf, api, route, operation, frozenset(provided_body))
        problems += _check_answer(mf, api, route, operation)
    except TargetError as exc:
        problems.append(mf.problem(["http", "path"], str(exc)))
    return problems


_IN = {"path_params": "path", "query": "query", "headers": "header"}  # http block part -> OpenAPI `in`


def _param_key(where: str, name: str) -> tuple[str, str]:
    return where, name.lower() if where == "header" else name  # header names are case-insensitive


def _check_params(
    mf: MappingFile,
    http: HttpSpec,
    api_name: str,
    route: str,
    params: Mapping[tuple[str, str], Any],
    provided: set[tuple[str, str]],
) -> list[Problem]:
    problems, have = [], set(provided)
    undeclared = f"parameter of {route} in {api_name}"
    for part, where in _IN.items():
        for name in getattr(http, part).fields:
            have.add(_param_key(where, name))
            if _param_key(where, name) not in params:
                problems.append(mf.problem(["http", part, name], f"'{name}' is not a {where} {undeclared}"))
    paging = http.paging
    for name in () if paging is None else (paging.page_param, paging.size_param):
        have.add(("query", name))
        if ("query", name) not in params:
            problems.append(mf.problem(["http", "paging"], f"'{name}' is not a query {undeclared}"))
    for (where, name), param in sorted(params.items()):
        if param.get("required") and (where, name) not in have:
            part = next((p for p, w in _IN.items() if w == where), where)
            text = f"required {where} parameter '{name}' of {route} has no rule in http.{part}"
            problems.append(mf.problem(["http"], text))
    return problems


def _check_body(mf: MappingFile, api: OpenApi, route: str, operation: Mapping[str, Any],
                provided: frozenset[str]) -> list[Problem]:
    form = mf.http is not None and mf.http.body == FORM_BODY
    shape, required = api.body_shape(operation, form)
    body = "form (application/x-www-form-urlencoded)" if form else "JSON"
    if mf.has_request and shape is None:
        return [mf.problem(["request"], f"{route} takes no {body} body in {api.name}; remove request")]
    if not mf.has_request and required:
        return [mf.problem(["http", "method"], f"{route} requires a {body} body in {api.name}; add request")]
    if shape is None:
        return []
    return _check_request_targets(mf, Target(shape, f"the request body of {route} in {api.name}", ANY, ""), provided)


def _check_answer(mf: MappingFile, api: OpenApi, route: str, operation: Mapping[str, Any]) -> list[Problem]:
    http = mf.http
    assert http is not None
    shape = api.response_shape(operation, sorted(http.success))
    reads = [r for r in mf.rules if r.section.startswith("response")]
    if shape is None:
        return [mf.problem(["response"], f"{route} declares no JSON success answer in {api.name}")] if reads else []
    label = f"the success answer of {route} in {api.name}"
    return _check_sources(mf, reads, shape, label) + _check_paging(mf, http, shape, label)


def _check_paging(mf: MappingFile, http: HttpSpec, shape: Shape, label: str) -> list[Problem]:
    if http.paging is None:
        return []
    problems = []
    for key, path in (("items", http.paging.items), ("total", http.paging.total)):
        if path is None:
            continue
        found, shown = shape.resolve(path), ".".join(path)
        if found is None:
            problems.append(mf.problem(["http", "paging", key], f"'{shown}' is not in {label}"))
        elif key == "items" and found.items() is None:
            problems.append(mf.problem(["http", "paging", key], f"'{shown}' is not a list in {label}"))
    return problems
