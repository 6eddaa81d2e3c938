"""The matter catalogue (事项目录): its file format, its rules, and its versioned store.

File format: a YAML or JSON document `{matters: [...]}`; each entry mirrors `Matter`'s fields in
snake_case, nested dataclasses as mappings, tuples as lists and enums by their code values
(type "05", level 3, service_objects ["1"]). Fields with a default in `Matter` may be left out.
The conversion is driven by `Matter`'s type hints, so a field added to the model (with a default)
is understood by files, the database and the API without touching this module.

Store: every version of a guide is an immutable row of `matter_versions`; a version is drafted,
validated, published (the previous one retires) — and stays readable, because a case keeps the
version it was accepted under.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.catalogue.forms import unchecked_formats
from gateway.domain.clock import Clock, SystemClock, as_utc
from gateway.domain.codes import credit_code_check_char, is_valid_credit_code
from gateway.domain.matter import Department, Level, Matter, MatterType, ServiceObject
from gateway.persistence.catalogue_tables import DRAFT, PUBLISHED, RETIRED, matter_versions
from gateway.persistence.uow import UnitsOfWork

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# libyaml's safe loader when PyYAML has it (the same safe constructors as yaml.safe_load): every process
# parses the seed catalogue at start-up, and the pure-Python parser takes ~50 ms of it, libyaml ~6 ms.
SAFE_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SEED_ACTOR = "seed"

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")  # what _decode_dataclass builds


class CatalogueError(ValueError):
    """A catalogue document or file is not usable; the message names the file, the entry and the field."""


class InvalidMatter(CatalogueError):
    """Matters break the catalogue's rules; `problems` holds one readable sentence per problem."""

    def __init__(self, summary: str, problems: Sequence[str]) -> None:
        super().__init__(f"{summary}: " + "; ".join(problems))
        self.summary = summary
        self.problems = list(problems)


class VersionConflict(Exception):
    """The version is not in a state that allows the change (only a draft can be published)."""


class MatterNotFound(LookupError):
    """No such matter, or no such version of it."""


# --- the file format ------------------------------------------------------------------------------


class _BadField(Exception):
    """Raised deep in decoding; turned into a CatalogueError once the entry's location is known."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def matter_from_document(doc: Any, where: str) -> Matter:
    """One catalogue entry → Matter. `where` names the entry in errors (file and index, or request)."""
    try:
        return _decode_dataclass(Matter, doc, "")
    except _BadField as exc:
        raise CatalogueError(f"{where}: {exc}") from None


def matter_to_document(m: Matter) -> dict[str, Any]:
    """Matter → a plain JSON/YAML document; `matter_from_document` gives back an equal Matter."""
    document: dict[str, Any] = _encode(m)
    return document


def load_catalogue_file(path: Path | str) -> list[Matter]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=SAFE_YAML_LOADER)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("matters"), list):
        raise CatalogueError(f"{path}: expected a mapping with a list under 'matters'")
    return [matter_from_document(entry, _entry_label(path, i, entry)) for i, entry in enumerate(document["matters"])]


def dump_catalogue(matters: Iterable[Matter], fmt: Literal["yaml", "json"] = "yaml") -> str:
    document = {"matters": [matter_to_document(m) for m in matters]}
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120)
    raise ValueError(f"unknown catalogue format {fmt!r}: use yaml or json")


def _entry_label(path: Path, index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{path}: matters[{index}]" + (f" ({name})" if isinstance(name, str) else "")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_dataclass(cls: type[D], value: Any, path: str) -> D:
    if not isinstance(value, dict):
        raise _BadField(path or "entry", f"expected a mapping, got {_show(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields), key=str)
    if unknown:
        raise _BadField(path or "entry", f"unknown field(s) {', '.join(map(str, unknown))}")
    missing = [n for n, f in fields.items() if n not in value and _is_required(f)]
    if missing:
        raise _BadField(path or "entry", f"missing required field(s) {', '.join(missing)}")
    hints = _hints(cls)
    prefix = f"{path}." if path else ""
    return cls(**{k: _decode(hints[k], v, prefix + k) for k, v in value.items()})


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _decode(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a hint is a class, never an instance
        return _decode_dataclass(hint, value, path)
    if origin in (types.UnionType, typing.Union):  # `X | None`
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _decode(inner, value, path)
    if origin is tuple:  # `tuple[X, ...]`
        if not isinstance(value, list):
            raise _BadField(path, f"expected a list, got {_show(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_decode(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        return _json_object(value, path)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum(hint, value, path)
    return _scalar(hint, value, path)


def _enum(cls: type[Enum], value: Any, path: str) -> Enum:
    codes = [m.value for m in cls]
    # bool is an int in Python, but `true` is never a level
    if isinstance(value, bool) or not isinstance(value, type(codes[0])):
        raise _BadField(path, f"expected one of {_choices(codes)}, got {_show(value)}"
                        + (" (quote codes in YAML)" if isinstance(codes[0], str) else ""))
    try:
        return cls(value)
    except ValueError:
        raise _BadField(path, f"{value!r} is not one of {_choices(codes)}") from None


def _scalar(hint: Any, value: Any, path: str) -> Any:
    expected = {str: "text", int: "a whole number", bool: "true or false"}.get(hint, hint.__name__)
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
        raise _BadField(path, f"expected {expected}, got {_show(value)}")
    return value


def _json_object(value: Any, path: str) -> dict[str, Any]:
    """A copy of a JSON object, so the Matter shares nothing mutable with the caller's document."""
    if not isinstance(value, dict):
        raise _BadField(path, f"expected a mapping, got {_show(value)}")
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise _BadField(path, f"must be plain JSON data (quote dates in YAML): {exc}") from None
    return copied


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _choices(codes: Sequence[Any]) -> str:
    return ", ".join(repr(c) for c in codes)


# --- the rules ------------------------------------------------------------------------------------

# The seed plan forbids catch-all wording in materials lists: the applicant must know exactly what to bring.
CATCH_ALL_WORDS = ("等", "其他", "有关", "相关")
REQUIRED_TEXTS = ("name", "legal_basis", "acceptance_conditions", "place", "enquiry_phone", "complaint_phone",
                  "result_name")
_CODE_CHARS = re.compile(r"[0-9A-Z]+")
_SECTOR_NAME = re.compile(r"[a-z][a-z0-9_]*")
IMPLEMENTATION_CODE_LENGTH = 31
MAX_TIME_LIMIT = 3650  # days of either unit: ten years and more, beyond any statutory limit


def validate_matter(m: Matter) -> list[str]:
    """Every problem with the guide, each a sentence naming the field; empty when it may be published."""
    checks: tuple[Callable[[Matter], Iterator[str]], ...] = (
        _code_problems, _department_problems, _material_problems, _limit_problems, _text_problems,
        _form_problems, _choice_problems,
    )
    return [problem for check in checks for problem in check(m)]


def validate_catalogue(matters: Sequence[Matter]) -> list[str]:
    """Problems of a whole file or import, each prefixed with the matter's code (and duplicates found)."""
    problems: list[str] = []
    seen: set[str] = set()
    for m in matters:
        label = m.implementation_code or m.name
        if m.implementation_code in seen:
            problems.append(f"{label}: implementation_code is listed more than once")
        seen.add(m.implementation_code)
        problems.extend(f"{label}: {p}" for p in validate_matter(m))
    return problems


def _code_problems(m: Matter) -> Iterator[str]:
    if len(m.basic_code) != 12 or not _CODE_CHARS.fullmatch(m.basic_code):
        yield f"basic_code {m.basic_code!r} must be 12 digits or capital letters"
    code, credit, level = m.implementation_code, m.implementing_body.credit_code, str(int(m.level))
    if len(code) != IMPLEMENTATION_CODE_LENGTH:
        yield _length_problem(code)
    else:
        if code[:18] != credit:
            yield f"implementation_code {code!r} must begin with implementing_body.credit_code {credit!r}"
        if code[18] != level:
            yield f"implementation_code's level digit {code[18]!r} must equal level {level}"
        if code[19:] != m.basic_code:
            yield f"implementation_code must end with basic_code {m.basic_code!r}, not {code[19:]!r}"
    item = m.handling_item_code
    if item and not (len(item) == 33 and item.startswith(code) and _CODE_CHARS.fullmatch(item[31:])):
        yield (f"handling_item_code {item!r} must be the implementation code followed by 2 digits or "
               "capital letters (33 characters)")


def _length_problem(code: str) -> str:
    return (f"implementation_code {code!r} must have 31 characters (implementing body's credit code 18 + "
            f"level 1 + basic code 12), not {len(code)}")


def _department_problems(m: Matter) -> Iterator[str]:
    labelled = [("implementing_body", m.implementing_body)]
    labelled += [(f"co_departments[{i}]", d) for i, d in enumerate(m.co_departments)]
    for label, department in labelled:
        yield from _one_department_problems(label, department)
    seen = {m.implementing_body.credit_code}
    for label, department in labelled[1:]:
        if department.credit_code == m.implementing_body.credit_code:
            yield f"{label} ({department.name}) is the implementing body; the lead cannot also co-implement"
        elif department.credit_code in seen:
            yield f"{label} ({department.name}) is listed more than once"
        seen.add(department.credit_code)


def _one_department_problems(label: str, d: Department) -> Iterator[str]:
    if not d.name.strip():
        yield f"{label}.name must not be empty"
    if d.sector is not None and not _SECTOR_NAME.fullmatch(d.sector):
        yield f"{label}.sector {d.sector!r} must be null or a registered sector name such as 'social_security'"
    if is_valid_credit_code(d.credit_code):
        return
    try:
        expected = credit_code_check_char(d.credit_code[:17]) if len(d.credit_code) == 18 else None
    except ValueError:  # a character outside the GB 32100 character set
        expected = None
    if expected is None:
        yield (f"{label}.credit_code {d.credit_code!r} must be 18 characters of digits and capital letters "
               "other than I, O, S, V, Z")
    else:
        yield (f"{label}.credit_code {d.credit_code!r} has check character {d.credit_code[17]!r}; "
               f"GB 32100 requires {expected!r}")


def _material_problems(m: Matter) -> Iterator[str]:
    if not m.materials:
        yield "materials must list at least one material (the one-time notification needs the complete list)"
    seen: set[str] = set()
    for i, material in enumerate(m.materials):
        label, name = f"materials[{i}]", material.name
        if not name.strip():
            yield f"{label}.name must not be empty"
        catch_all = [w for w in CATCH_ALL_WORDS if w in name]
        if catch_all:
            yield f"{label}.name {name!r} is a catch-all (contains {'、'.join(catch_all)}); name each material exactly"
        if name in seen:
            yield f"{label}.name {name!r} is listed more than once"
        seen.add(name)
        for count in ("originals", "copies"):
            if getattr(material, count) < 0:
                yield f"{label}.{count} must not be negative"


def _limit_problems(m: Matter) -> Iterator[str]:
    promised, statutory = m.promised_limit, m.statutory_limit
    for label, limit in (("promised_limit", promised), ("statutory_limit", statutory)):
        if limit.value < 0:
            yield f"{label}.value must not be negative, not {limit.value}"
        elif limit.value > MAX_TIME_LIMIT:  # a deadline past the calendar's end would fail every submission
            yield f"{label}.value must not exceed {MAX_TIME_LIMIT}, not {limit.value}"
    if promised.unit == statutory.unit and promised.value > statutory.value:
        yield (f"promised_limit ({promised.value} {promised.unit}) must not exceed "
               f"statutory_limit ({statutory.value} {statutory.unit})")


def _text_problems(m: Matter) -> Iterator[str]:
    for name in REQUIRED_TEXTS:
        if not getattr(m, name).strip():
            yield f"{name} must not be empty"
    if m.fee.charged and not (m.fee.basis.strip() and m.fee.standard.strip()):
        yield "fee.basis and fee.standard must both be given when fee.charged is true"
    for i, faq in enumerate(m.faq):
        if not (faq.question.strip() and faq.answer.strip()):
            yield f"faq[{i}] needs both a question and an answer"


def _form_problems(m: Matter) -> Iterator[str]:
    if not m.form_schema:
        return
    try:
        Draft202012Validator.check_schema(dict(m.form_schema))
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        yield f"form_schema is not a valid JSON Schema: {exc.message} (at {where})"
        return
    if m.form_schema.get("type") != "object":
        yield "form_schema must describe an object (\"type\": \"object\")"
    for name in unchecked_formats(m.form_schema):  # a format intake could not enforce would be a mere note
        yield f"form_schema declares format {name!r}, which the gateway does not check; use a pattern instead"


def _choice_problems(m: Matter) -> Iterator[str]:
    if not m.service_objects:
        yield "service_objects must name at least one service object"
    if not m.handling_forms:
        yield "handling_forms must name at least one handling form"
    if m.version < 1:
        yield f"version must be 1 or more, not {m.version}"


# --- the versioned store --------------------------------------------------------------------------

_mv = matter_versions.c
_CACHE_LIMIT = 10_000  # codes kept by `published()`; a catalogue has hundreds of matters


class Catalogue:
    """The matter catalogue in the database: versions, publication, and a cache for the hot path.

    `published()` serves case submission on every request, so its answer (also "no such matter") is
    kept for `cache_ttl_s`: another process's publication shows within that time, this process's at once.
    Stored versions never change their document, so `version()` keeps what it decoded for good.
    """

    def __init__(self, engine: Engine, cache_ttl_s: float = 2.0, *, clock: Clock | None = None) -> None:
        self.units = UnitsOfWork(engine)  # one unit of work per change or read, committed explicitly
        self._ttl = cache_ttl_s
        self._clock = clock or SystemClock()
        self._published: dict[str, tuple[float, Matter | None]] = {}  # code → (expires, matter)
        self._decoded: dict[tuple[str, int], Matter] = {}  # bounded by the table itself
        self._lock = threading.Lock()

    # -- reads ------------------------------------------------------------------------------------
    def published(self, code: str) -> Matter | None:
        now = time.monotonic()
        hit = self._published.get(code)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._reading() as conn:
            row = conn.execute(self._rows().where(_mv.code == code, _mv.status == PUBLISHED)).one_or_none()
        matter = None if row is None else self._matter(row)
        with self._lock:
            if len(self._published) >= _CACHE_LIMIT:  # misses are cached too: random codes must not grow it
                self._published.clear()
            self._published[code] = (now + self._ttl, matter)
        return matter

    def version(self, code: str, version: int) -> Matter | None:
        if (known := self._decoded.get((code, version))) is not None:
            return known
        with self._reading() as conn:
            row = conn.execute(self._rows().where(_mv.code == code, _mv.version == version)).one_or_none()
        return None if row is None else self._matter(row)

    def export(self) -> list[Matter]:
        """Every published matter, by code."""
        with self._reading() as conn:
            rows = conn.execute(self._rows().where(_mv.status == PUBLISHED).order_by(_mv.code)).all()
        return [self._matter(r) for r in rows]

    def search(self, *, department: str | None = None, level: Level | int | None = None,
               type: MatterType | str | None = None, service_object: ServiceObject | str | None = None,
               text: str | None = None) -> list[Matter]:
        """Published matters matching every filter given (a catalogue is hundreds of matters: filter in memory)."""
        tests = _search_tests(department, level, type, service_object, text)
        return [m for m in self.export() if all(test(m) for test in tests)]

    def versions(self, code: str) -> list[dict[str, Any]]:
        columns = (_mv.version, _mv.status, _mv.created_at, _mv.created_by, _mv.published_at, _mv.published_by,
                   _mv.retired_at, _mv.retired_by)
        with self._reading() as conn:
            rows = conn.execute(select(*columns).where(_mv.code == code).order_by(_mv.version)).mappings().all()
        return [{k: as_utc(v) if k.endswith("_at") and v is not None else v for k, v in r.items()} for r in rows]

    def validate(self, code: str, version: int) -> list[str]:
        return validate_matter(self._existing(code, version))

    # -- writes -----------------------------------------------------------------------------------
    def draft(self, matter: Matter, actor: str) -> Matter:
        """Store the guide as the matter's next version, a draft; problems are reported by `validate`."""
        if len(matter.implementation_code) != IMPLEMENTATION_CODE_LENGTH:
            raise InvalidMatter("草稿无法保存", [_length_problem(matter.implementation_code)])
        return self._retrying(lambda: self._write([matter], actor, DRAFT))[0]

    def publish(self, code: str, version: int, actor: str) -> Matter:
        try:
            with self.units() as uow:
                conn = uow.conn
                matter = self._publishable(conn, code, version)
                now = self._clock.now()
                self._retire_published(conn, code, actor, now)  # first: one published version at a time
                done = conn.execute(update(matter_versions)
                                    .where(_mv.code == code, _mv.version == version, _mv.status == DRAFT)
                                    .values(status=PUBLISHED, published_at=now, published_by=actor))
                if done.rowcount != 1:
                    raise VersionConflict(f"事项 {code} 第 {version} 版刚被他人修改")
                uow.commit()
        except IntegrityError:
            raise VersionConflict(f"事项 {code} 的另一版本同时发布了") from None
        self._forget([code])
        return matter

    def check_publishable(self, code: str, version: int) -> None:
        """Raise what `publish` would raise now, changing nothing (a four-eyes request is checked first)."""
        with self._reading() as conn:
            self._publishable(conn, code, version)

    def import_matters(self, matters: Iterable[Matter], actor: str, publish: bool = True,
                       progress: Callable[[int], None] | None = None) -> list[Matter]:
        """Each matter becomes its next version; any problem refuses the whole import and stores nothing.
        `progress` is told how many matters are written so far (in the one transaction)."""
        matters = _checked(list(matters), "the import was refused; nothing was stored")
        return self._retrying(lambda: self._write(matters, actor, PUBLISHED if publish else DRAFT,
                                                  progress=progress))

    def seed_if_empty(self, path: Path | str) -> list[Matter]:
        """Publish the file as version 1 of each matter when the catalogue is empty (at start-up)."""
        matters = _checked(load_catalogue_file(path), f"{path}: the catalogue cannot be seeded")
        try:
            return self._write(matters, SEED_ACTOR, PUBLISHED, only_if_empty=True)
        except IntegrityError:  # another process seeded first (PostgreSQL; SQLite serialises the writers)
            return []

    # -- internals --------------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        # A read-only unit: on SQLite a deferred BEGIN, so readers never take the write lock.
        with self.units(read_only=True) as uow:
            yield uow.conn

    @staticmethod
    def _rows() -> Any:
        return select(_mv.code, _mv.version, _mv.document)

    def _matter(self, row: Any) -> Matter:
        key = (row.code, row.version)
        if (known := self._decoded.get(key)) is None:
            known = matter_from_document(row.document, f"matter_versions {row.code} version {row.version}")
            with self._lock:
                self._decoded[key] = known
        return known

    def _existing(self, code: str, version: int) -> Matter:
        matter = self.version(code, version)
        if matter is None:
            raise MatterNotFound(f"事项 {code} 没有第 {version} 版")
        return matter

    def _publishable(self, conn: Connection, code: str, version: int) -> Matter:
        query = self._rows().add_columns(_mv.status).where(_mv.code == code, _mv.version == version)
        row = conn.execute(query).one_or_none()
        if row is None:
            raise MatterNotFound(f"事项 {code} 没有第 {version} 版")
        if row.status != DRAFT:
            raise VersionConflict(f"事项 {code} 第 {version} 版的状态为 {row.status}：只有草稿（draft）可以发布")
        matter = self._matter(row)
        problems = validate_matter(matter)
        if problems:
            raise InvalidMatter(f"事项 {code} 第 {version} 版不能发布", problems)
        return matter

    def _write(self, matters: Sequence[Matter], actor: str, status: str, only_if_empty: bool = False,
               progress: Callable[[int], None] | None = None) -> list[Matter]:
        with self.units() as uow:
            conn = uow.conn
            if only_if_empty and conn.scalar(select(_mv.id).limit(1)) is not None:
                return []
            stored = []
            for m in matters:
                stored.append(self._insert(conn, m, actor, status))
                if progress is not None:
                    progress(len(stored))
            uow.commit()
        self._forget(m.implementation_code for m in stored)
        return stored

    def _insert(self, conn: Connection, matter: Matter, actor: str, status: str) -> Matter:
        code, now = matter.implementation_code, self._clock.now()
        latest = conn.scalar(select(func.max(_mv.version)).where(_mv.code == code))
        stored = dataclasses.replace(matter, version=(latest or 0) + 1)
        if status == PUBLISHED:
            self._retire_published(conn, code, actor, now)
        published = status == PUBLISHED
        conn.execute(insert(matter_versions).values(
            code=code, version=stored.version, status=status, document=matter_to_document(stored),
            created_at=now, created_by=actor,
            published_at=now if published else None, published_by=actor if published else None,
        ))
        return stored

    @staticmethod
    def _retire_published(conn: Connection, code: str, actor: str, now: Any) -> None:
        conn.execute(update(matter_versions).where(_mv.code == code, _mv.status == PUBLISHED)
                     .values(status=RETIRED, retired_at=now, retired_by=actor))

    @staticmethod
    def _retrying(write: Callable[[], T], attempts: int = 3) -> T:
        # Two writers may number the same next version (PostgreSQL, read committed): the unique
        # constraint refuses the second, which simply numbers again.
        for _ in range(attempts - 1):
            try:
                return write()
            except IntegrityError:
                pass
        try:
            return write()
        except IntegrityError:
            raise VersionConflict("事项目录正被同时修改，请重试") from None

    def _forget(self, codes: Iterable[str]) -> None:
        with self._lock:
            for code in codes:
                self._published.pop(code, None)


def _checked(matters: list[Matter], summary: str) -> list[Matter]:
    problems = validate_catalogue(matters)
    if problems:
        raise InvalidMatter(summary, problems)
    return matters


def _search_tests(department: str | None, level: Level | int | None, matter_type: MatterType | str | None,
                  service_object: ServiceObject | str | None, text: str | None) -> list[Callable[[Matter], bool]]:
    tests: list[Callable[[Matter], bool]] = []
    if department:
        tests.append(functools.partial(_has_department, department.strip()))
    if level is not None:
        tests.append(lambda m: m.level == level)
    if matter_type is not None:
        tests.append(lambda m: m.type == matter_type)
    if service_object is not None:
        tests.append(lambda m: service_object in m.service_objects)
    if text:
        tests.append(functools.partial(_mentions, text.strip().casefold()))
    return tests


def _has_department(wanted: str, m: Matter) -> bool:
    """Lead or co-department, by (part of) its name or by its exact credit code."""
    return any(wanted in d.name or d.credit_code == wanted.upper() for d in m.departments)


def _mentions(needle: str, m: Matter) -> bool:
    return any(needle in s.casefold() for s in _searchable(m))


def _searchable(m: Matter) -> Iterator[str]:
    yield from (m.name, m.basic_code, m.implementation_code)
    yield from (material.name for material in m.materials)
