"""Adapter bundles (adapters/BUNDLE-FORMAT.md): reading, safe unpacking, validation, preview.

- `load_bundle(dir)` reads and checks `bundle.yaml` against the bundle schema (`adapters.bundle_schema`) plus
  the rules a schema cannot say (files inside the bundle, options of another kind), and returns a typed
  `Bundle` (`adapters.descriptor`).
- `unpack_bundle(zip, dest)` extracts an uploaded bundle, refusing anything that could escape `dest`
  or exhaust the disk, all or nothing.
- `validate_bundle(dir_or_bundle)` runs every check, mappings against the canonical model and the
  service description and the rehearsal file's items (`adapters.rehearsal`) included, and returns the problems.
- `preview(bundle, operation, message)` renders what would be sent, without sending it.
- A bundle of a carrying kind (`ferry`, `adapters.kind.CarryingKind`) carries another bundle in a folder: that
  one is read, validated and previewed as any bundle, and the carrying kind wraps it.
- `bundle_warnings(bundle)`: what is allowed but should be changed (a legacy signing algorithm, a named query
  without a parameter contract or declaring one its mapping never reads): no refusal.

What differs by kind (its options, auth forms, service description, preview) is asked of the bundle's kind
(`adapters.kinds.KINDS`); this module never names one. Every problem reads `file:line: field: message`
(`Problem`); `BundleError` carries them all. Secrets are references (`{secret: env:NAME}` /
`{secret: file:/path}`); a literal one is refused.
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import jsonschema

from adapters import canonical
from adapters.auth import CALLBACK_FORMS, AuthForms, AuthSpecError, Recipe, parse_auth
from adapters.bundle_schema import bundle_schema
from adapters.descriptor import (
    DESCRIPTOR,
    Bundle,
    CallbackResults,
    CircuitBreaker,
    Department,
    PollingResults,
    RateLimit,
    Results,
    Serves,
    TlsSpec,
    file_inside,
)
from adapters.kind import AdapterKind, CarryingKind
from adapters.kinds import KINDS
from adapters.queries import contract_problems
from adapters.rehearsal import RehearsalInvalid, read_rehearsal
from adapters.resilience import RetryPolicy
from adapters.secrets import LITERAL_REFUSED
from adapters.signing import legacy_warning
from certstore.credentials import reference_name
from mappings import CompiledMapping
from mappings.positions import Positions, YamlProblem, load_yaml
from mappings.validate import Expectations, Problem, Shape, check_canonical, load_mapping

CODE_TABLES = "code_tables.yaml"  # optional: code tables every mapping of the bundle may name
MiB = 1024 * 1024

__all__ = [
    "BundleError", "Problem", "carried_bundle", "compile_mappings", "load_bundle", "preview", "schema", "unpack_bundle",
    "validate_bundle",
]  # fmt: skip


class BundleError(ValueError):
    """A bundle that cannot be registered; `problems` says every reason, one `file:line: field: message` each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _fail(file: str, field: str, message: str, line: int | None = None) -> BundleError:
    return BundleError([Problem(file, line, field, message)])


# --------------------------------------------------------------------------- the schema, worded


def schema() -> Mapping[str, Any]:
    """The descriptor's JSON Schema (draft 2020-12) for the kinds registered now (`adapters.bundle_schema`)."""
    return _schema_of(tuple(KINDS.values()))


@cache
def _schema_of(kinds: tuple[AdapterKind, ...]) -> Mapping[str, Any]:
    return bundle_schema(kinds)


def _dotted(path: Sequence[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _deref(node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    return schema()["$defs"][ref.rsplit("/", 1)[1]] if isinstance(ref, str) else node


@dataclass(frozen=True)
class _Worder:
    """Turns jsonschema errors into `Problem`s with words for people and the line of the key."""

    file: str
    positions: Positions

    def problem(self, path: Sequence[Any], message: str) -> Problem:
        return Problem(self.file, self.positions.line(path), _dotted(path), message)

    def word(self, error: jsonschema.ValidationError) -> list[Problem]:
        path, node = list(error.absolute_path), error.schema if isinstance(error.schema, Mapping) else {}
        if error.validator == "oneOf" and "x-discriminator" in node:
            return self._branch(error, path, node)
        if "propertyNames" in error.schema_path:  # the key itself is wrong: point at it
            return [self.problem([*path, error.instance], self._text(error, node))]
        # `required` and `additionalProperties` report on objects only, `required`'s value is the schema's list.
        keys = error.instance if isinstance(error.instance, Mapping) else {}
        if error.validator == "required":
            listed = error.validator_value if isinstance(error.validator_value, list) else []
            missing = [k for k in listed if k not in keys]
            text = node.get("x-required-message", "required")
            return [Problem(self.file, self.positions.line(path), _dotted([*path, k]), text) for k in missing]
        if error.validator == "additionalProperties":
            known = ", ".join(sorted(node.get("properties", {})))
            what = node.get("x-unknown-key", "unknown key")
            extra = sorted(str(k) for k in keys if k not in node.get("properties", {}))
            return [self.problem([*path, k], f"{what} (known: {known})") for k in extra]
        return [self.problem(path, self._text(error, node))]

    def _text(self, error: jsonschema.ValidationError, node: Mapping[str, Any]) -> str:
        if node.get("x-secret") and not isinstance(error.instance, Mapping):
            # Never echo the value: it is the secret itself.
            return LITERAL_REFUSED
        template = node.get("x-message")
        return template.format(value=error.instance) if template else error.message

    def _branch(self, error: jsonschema.ValidationError, path: list[Any], node: Mapping[str, Any]) -> list[Problem]:
        """A oneOf chosen by a discriminating key (auth.type, results.mode): report the chosen branch only."""
        key, instance = node["x-discriminator"], error.instance
        branches = [_deref(b)["properties"][key]["const"] for b in node["oneOf"]]
        if not isinstance(instance, Mapping):
            return [self.problem(path, f"expected a mapping with {key}: one of {', '.join(branches)}")]
        if key not in instance:
            return [Problem(self.file, self.positions.line(path), _dotted([*path, key]), "required")]
        if instance[key] not in branches:
            text = f"unknown {_dotted(path)} {key} {instance[key]!r} (known: {', '.join(branches)})"
            return [self.problem([*path, key], text)]
        index = branches.index(instance[key])
        chosen = [e for e in error.context or [] if e.relative_schema_path and e.relative_schema_path[0] == index]
        return [p for e in chosen for p in self.word(e)]


def _schema_problems(doc: Any, worder: _Worder) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = [p for error in validator.iter_errors(doc) for p in worder.word(error)]
    return sorted(set(problems), key=lambda p: (p.line or 0, p.field))


# --------------------------------------------------------------------------- reading a descriptor


def _semantic_problems(doc: Mapping[str, Any], worder: _Worder) -> Iterator[Problem]:
    """What the schema cannot say: cross-key rules, and options of another kind than the bundle's."""
    retry = doc["retry"]
    if retry["initial_ms"] > retry["max_ms"]:
        yield worder.problem(["retry", "initial_ms"], f"must not exceed max_ms ({retry['max_ms']})")
    mode, operations, kind = (doc.get("results") or {}).get("mode"), doc.get("operations") or {}, doc["kind"]
    if "submit_case" not in operations and operations:  # the schema let it pass: it subscribes to case events
        yield worder.problem(["operations", "submit_case"], "required with other operations (a bundle without"
                                                            " it only subscribes to case events)")
    for name in set(doc.get("queries") or {}) & set(canonical.EVENTS):
        yield worder.problem(["queries", name], "a case event's name, not a query's (subscribe with subscriptions)")
    if mode == "polling" and "query_status" not in operations:
        yield worder.problem(["operations", "query_status"], "required when results.mode is polling")
    if mode == "callback" and "callback" not in operations:
        yield worder.problem(["operations", "callback"], "required when results.mode is callback")
    if mode != "callback" and "callback" in operations:
        yield worder.problem(["operations", "callback"], "only with results.mode callback")
    for other in KINDS.values():  # an option of another kind: say whose it is
        if other.name != kind:
            yield from (worder.problem(list(only.path), only.message) for only in other.kind_only if only.used_in(doc))


def _file_problems(doc: Mapping[str, Any], root: Path, worder: _Worder) -> Iterator[Problem]:
    """Every file the descriptor names exists inside the bundle (no `..`, no symlink out)."""
    named = [(["service_description"], doc["service_description"])]
    for key in ("operations", "subscriptions", "queries"):
        named += [([key, k], v) for k, v in (doc.get(key) or {}).items()]
    named += [(["rehearsal"], doc["rehearsal"])] if "rehearsal" in doc else []
    for path, name in named:
        if file_inside(root, name) is None:
            yield worder.problem(path, f"file {name!r} not found in the bundle")


def _read_descriptor(root: Path) -> tuple[Mapping[str, Any], list[Problem]]:
    descriptor = root / DESCRIPTOR
    try:
        doc, positions = load_yaml(descriptor.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [Problem(DESCRIPTOR, None, "", f"cannot read: {exc.strerror or exc}")]
    except YamlProblem as exc:
        return {}, [Problem(DESCRIPTOR, exc.line, "", exc.message)]
    worder = _Worder(DESCRIPTOR, positions)
    problems = _schema_problems(doc, worder)
    if problems:
        return {}, problems
    if isinstance(KINDS[doc["kind"]], CarryingKind):  # the rest is the carried bundle's, checked when it is read
        return doc, []
    problems = [*_semantic_problems(doc, worder), *_auth_problems(doc, worder), *_file_problems(doc, root, worder)]
    return doc, problems + _code_table_problems(root)


def _code_table_problems(root: Path) -> list[Problem]:
    try:
        _read_code_tables(root)
    except BundleError as exc:
        return list(exc.problems)
    return []


def _read_code_tables(root: Path) -> dict[str, Any]:
    """The bundle's shared code tables (`code_tables.yaml`: name -> {code: value}), or {}."""
    path = root / CODE_TABLES
    if not path.is_file():
        return {}
    try:
        doc, positions = load_yaml(path.read_text(encoding="utf-8"))
    except YamlProblem as exc:
        raise _fail(CODE_TABLES, "", exc.message, exc.line) from exc
    if not isinstance(doc, Mapping):
        raise _fail(CODE_TABLES, "", "expected a mapping of table name -> {code: value}", 1)
    for name, table in doc.items():
        if not isinstance(table, Mapping):
            raise _fail(CODE_TABLES, str(name), "expected a mapping of code -> value", positions.line([str(name)]))
    return dict(doc)


def _auth_problems(doc: Mapping[str, Any], worder: _Worder) -> list[Problem]:
    """The auth forms each side accepts (the kind's `auth_forms`: no WS-Security over REST...; callbacks: hmac)."""
    specs: list[tuple[Any, str, AuthForms]] = [(doc["auth"], "auth", KINDS[doc["kind"]].auth_forms)]
    if (doc.get("results") or {}).get("mode") == "callback":
        specs.append((doc["results"]["callback_auth"], "results.callback_auth", CALLBACK_FORMS))
    problems = []
    for spec, where, accepted in specs:
        try:
            parse_auth(spec, where, accepted=accepted)
        except AuthSpecError as exc:
            field, _, message = str(exc).partition(": ")
            problems.append(Problem(DESCRIPTOR, worder.positions.line(field.split(".")), field, message))
    return problems


def _results(spec: Mapping[str, Any] | None) -> Results | None:
    if spec is None:  # a bundle that only subscribes to case events: no decisions come back
        return None
    if spec["mode"] == "callback":
        auth = parse_auth(spec["callback_auth"], "results.callback_auth", accepted=CALLBACK_FORMS)
        assert isinstance(auth, Recipe)  # the only forms a callback takes, hmac and signature (checked before)
        return CallbackResults(auth)
    return PollingResults(spec["interval_ms"], spec.get("max_bad_answers", PollingResults.max_bad_answers))


def _optional(cls: Any, spec: Mapping[str, Any] | None) -> Any:
    return None if spec is None else cls(**spec)


def _build(root: Path, doc: Mapping[str, Any]) -> Bundle:
    """The model of a descriptor that passed every check (so every key here exists and is well typed)."""
    def files(spec: Mapping[str, str]) -> Mapping[str, Path]:
        return MappingProxyType({name: (root / file).resolve() for name, file in spec.items()})

    serves = doc.get("serves") or {}
    return Bundle(
        root=root.resolve(),
        format=doc["format"],
        sector=doc["sector"],
        version=doc["version"],
        title=doc["title"],
        department=Department(**doc["department"]),
        kind=doc["kind"],
        service_description=(root / doc["service_description"]).resolve(),
        endpoints=MappingProxyType(dict(doc["endpoints"])),
        serves=Serves(tuple(serves.get("departments", ())), tuple(serves.get("matters", ()))),
        operations=files(doc.get("operations") or {}),
        queries=files(doc.get("queries") or {}),
        subscriptions=files(doc.get("subscriptions") or {}),
        timeout_ms=doc["timeout_ms"],
        retry=RetryPolicy(**doc["retry"]),
        circuit_breaker=_optional(CircuitBreaker, doc.get("circuit_breaker")),
        rate_limit=_optional(RateLimit, doc.get("rate_limit")),
        auth=parse_auth(doc["auth"], "auth", accepted=KINDS[doc["kind"]].auth_forms),
        materials_transport=(doc.get("materials") or {}).get("transport", "inline_base64"),
        results=_results(doc.get("results")),
        code_tables=(root / CODE_TABLES).resolve() if (root / CODE_TABLES).is_file() else None,
        files=tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())),
        tls=_tls(doc.get("tls")),
        options=KINDS[doc["kind"]].read_options(doc),
        rehearsal=(root / doc["rehearsal"]).resolve() if "rehearsal" in doc else None,
    )


def _tls(spec: Mapping[str, str] | None) -> TlsSpec | None:
    if spec is None:
        return None
    return TlsSpec(*(reference_name(spec[key]) if key in spec else None for key in ("client_certificate", "trust")))


def load_bundle(path: Path) -> Bundle:
    """Read and check the descriptor of the bundle in directory `path`; `BundleError` lists every problem."""
    root = Path(path)
    if not (root / DESCRIPTOR).is_file():
        raise _fail(DESCRIPTOR, "", f"not found in {root}")
    doc, problems = _read_descriptor(root)
    if problems:
        raise BundleError(problems)
    kind = KINDS[doc["kind"]]
    if isinstance(kind, CarryingKind):
        return _carrying(kind, root, doc)
    return _build(root, doc)


def _carrying(kind: CarryingKind, root: Path, doc: Mapping[str, Any]) -> Bundle:
    """A bundle carrying another in a folder (`ferry`): the carried one read and checked as any bundle (its
    problems named by their place in the carrying bundle), then wrapped by the kind."""
    folder = kind.carried_folder(doc)
    worder = _Worder(DESCRIPTOR, _descriptor_positions_of(root))
    inner = root / folder
    if file_inside(root, f"{folder}/{DESCRIPTOR}") is None:
        raise BundleError([worder.problem([kind.name, "bundle"], f"no bundle in folder {folder!r} "
                                                                  f"(no {folder}/{DESCRIPTOR})")])
    try:
        carried = load_bundle(inner)
    except BundleError as exc:
        raise BundleError(_inside(folder, exc.problems)) from exc
    bundle, problems = kind.wrap(root, doc, carried, worder.problem)
    if bundle is None or problems:
        raise BundleError(problems)
    return bundle


def carried_bundle(bundle: Bundle) -> Bundle | None:
    """The bundle a bundle of a carrying kind carries (a ferry's SOAP/REST bundle); None for any other."""
    kind = KINDS[bundle.kind]
    return kind.carried(bundle) if isinstance(kind, CarryingKind) else None


def _inside(folder: str, problems: Sequence[Problem]) -> list[Problem]:
    """A carried bundle's problems, their files named from the carrying bundle's root."""
    return [Problem(f"{folder}/{p.file}", p.line, p.field, p.message) for p in problems]


# --------------------------------------------------------------------------- unpacking a zip

_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 64 * 1024


def unpack_bundle(
    zip_path_or_bytes: str | Path | bytes,
    dest: Path,
    *,
    max_bytes: int = 20 * MiB,
    max_files: int = 200,
    max_ratio: int = 200,
) -> Path:
    """Extract a zipped bundle into `dest` (which must not exist) and return the folder holding `bundle.yaml`.

    All or nothing: entries go to a temporary sibling of `dest`, renamed into place only when every
    entry is extracted and checked. Refused: absolute paths, `..`, drive letters, backslashes,
    symlinks and other special files, duplicate names, encrypted entries, more than `max_files`
    entries, more than `max_bytes` declared or actually decompressed, and entries compressed more
    than `max_ratio` to 1 (a zip bomb).
    """
    name = "bundle.zip" if isinstance(zip_path_or_bytes, bytes) else Path(zip_path_or_bytes).name
    dest = Path(dest)
    if dest.exists():
        raise _fail(name, "", f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
    try:
        source = io.BytesIO(zip_path_or_bytes) if isinstance(zip_path_or_bytes, bytes) else zip_path_or_bytes
        with zipfile.ZipFile(source) as archive:
            members = _checked_members(archive, name, max_bytes, max_files, max_ratio)
            _extract(archive, members, staging, name, max_bytes)
        inner = _bundle_folder(staging, name).relative_to(staging)
        staging.rename(dest)  # atomic: dest appears complete or not at all
        return dest / inner
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as exc:
        raise _fail(name, "", f"not a usable zip archive: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a no-op after the rename


def _checked_members(
    archive: zipfile.ZipFile, name: str, max_bytes: int, max_files: int, max_ratio: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise _fail(name, "", f"{len(infos)} entries, more than the {max_files} allowed")
    seen: set[str] = set()
    declared = 0
    members = []
    for info in infos:
        relative = _safe_name(info, name)
        key = relative.as_posix().casefold()  # "A.yaml" and "a.yaml" are one file on some disks
        if key in seen:
            raise _fail(name, info.filename, "duplicate entry")
        seen.add(key)
        declared += info.file_size
        if declared > max_bytes:
            raise _fail(name, info.filename, f"the archive unpacks to more than {max_bytes} bytes")
        if info.file_size > max_ratio * max(info.compress_size, 1):
            raise _fail(name, info.filename, f"compressed more than {max_ratio}:1 (a zip bomb?)")
        members.append((info, relative))
    return members


def _safe_name(info: zipfile.ZipInfo, name: str) -> PurePosixPath:
    """The entry's path if it stays inside the bundle and is a plain file or folder."""
    entry = info.filename
    if "\\" in entry or "\x00" in entry:
        raise _fail(name, entry, "backslashes and NUL are not allowed in entry names")
    if entry.startswith("/") or _DRIVE.match(entry):
        raise _fail(name, entry, "absolute path")
    parts = entry.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _fail(name, entry, "path leaves the bundle (or has empty, '.' or '..' parts)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _fail(name, entry, "symbolic links are not allowed")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _fail(name, entry, "only plain files and folders are allowed")
    if info.flag_bits & 0x1:
        raise _fail(name, entry, "encrypted entries are not allowed")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _fail(name, entry, "only stored or deflated entries are allowed")
    return PurePosixPath(*parts)


def _extract(
    archive: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    staging: Path,
    name: str,
    max_bytes: int,
) -> None:
    total = 0
    for info, relative in members:
        target = staging.joinpath(*relative.parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # Counted while writing: the sizes in the archive are the sender's word, not a fact.
        with archive.open(info) as src, open(target, "xb") as out:
            written = 0
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                if written > info.file_size or total > max_bytes:
                    raise _fail(name, info.filename, "decompresses to more than its declared size or the limit")
                out.write(chunk)


def _bundle_folder(staging: Path, name: str) -> Path:
    """Where `bundle.yaml` is: at the top, or in the archive's single top folder (a zip of a folder)."""
    if (staging / DESCRIPTOR).is_file():
        return staging
    tops = list(staging.iterdir())
    if len(tops) == 1 and (tops[0] / DESCRIPTOR).is_file():
        return tops[0]
    raise _fail(name, "", f"no {DESCRIPTOR} at the top of the archive")


# --------------------------------------------------------------------------- compiling for the adapters


def compile_mappings(bundle: Bundle) -> dict[str, CompiledMapping]:
    """Every mapping of the bundle (operations and queries by name), compiled with the bundle's code tables.

    Compile only: `validate_bundle` is what checks them against the canonical model and the sector.
    """
    tables = _tables_of(bundle)
    compiled, problems = {}, []
    for name, (path, _) in bundle.mapping_files().items():
        mf, found = load_mapping(path, name=bundle.relative(path), code_tables=tables)
        problems += found
        if mf is not None:
            compiled[name] = mf.compiled
    if problems:
        raise BundleError(problems)
    return compiled


# --------------------------------------------------------------------------- validating everything


def validate_bundle(path_or_bundle: str | Path | Bundle) -> list[Problem]:
    """Every problem of a bundle (descriptor, files, mappings, canonical paths, service description)."""
    if isinstance(path_or_bundle, Bundle):
        bundle = path_or_bundle
    else:
        try:
            bundle = load_bundle(Path(path_or_bundle))
        except BundleError as exc:
            return list(exc.problems)
    worder = _Worder(DESCRIPTOR, _descriptor_positions(bundle))
    problems, check = KINDS[bundle.kind].check_service(bundle, worder.problem)
    kind = KINDS[bundle.kind]
    if isinstance(kind, CarryingKind):  # the carried bundle, whole (its rehearsal file included)
        carried = kind.carried(bundle)
        problems += _inside(carried.root.relative_to(bundle.root).as_posix(), validate_bundle(carried))
    try:
        tables = _tables_of(bundle)
    except BundleError as exc:  # a Bundle built by hand may have skipped load_bundle's check
        return _ordered(problems + list(exc.problems))
    for name, (path, query) in bundle.mapping_files().items():
        mf, found = load_mapping(path, name=bundle.relative(path), code_tables=tables)
        problems += found
        if mf is not None:
            expected = _expectations(name, query)
            problems += check_canonical(mf, expected)
            problems += contract_problems(mf)[0] if query else []
            # A callback is the sector calling us: its body is in no WSDL operation or OpenAPI route of theirs.
            problems += check(mf, expected) if name != "callback" else []
    try:
        read_rehearsal(bundle)
    except RehearsalInvalid as exc:
        problems += exc.problems
    return _ordered(problems)


def bundle_warnings(bundle: Bundle) -> list[Problem]:
    """What a valid bundle should still change, worded like its problems: a signing recipe on a legacy
    algorithm (`legacy: true`, MD5 or SHA-1)."""
    positions = _descriptor_positions(bundle)
    recipes: list[tuple[str, Any]] = [("auth", bundle.auth)]
    if isinstance(bundle.results, CallbackResults):
        recipes.append(("results.callback_auth", bundle.results.callback_auth))
    warnings = []
    for where, recipe in recipes:
        said = legacy_warning(recipe, where) if isinstance(recipe, Recipe) else None
        if said is not None:
            field, _, message = said.partition(": ")
            warnings.append(Problem(DESCRIPTOR, positions.line(field.split(".")), field, message))
    return warnings + _query_warnings(bundle)


def _query_warnings(bundle: Bundle) -> list[Problem]:
    """Each named query's contract: none declared, or a declared parameter its mapping never reads."""
    tables = _tables_of(bundle)
    warnings = []
    for path in bundle.queries.values():
        mf, _ = load_mapping(path, name=bundle.relative(path), code_tables=tables)
        warnings += contract_problems(mf)[1] if mf is not None else []
    return warnings


def _ordered(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file != DESCRIPTOR, p.file, p.line or 0, p.field))


def _descriptor_positions(bundle: Bundle) -> Positions:
    return _descriptor_positions_of(bundle.root)


def _descriptor_positions_of(root: Path) -> Positions:
    return load_yaml((root / DESCRIPTOR).read_text(encoding="utf-8"))[1]


def _tables_of(bundle: Bundle) -> dict[str, Any]:
    """The code tables the bundle's mappings may name: its own, or (a carrying bundle) the carried one's."""
    return _read_code_tables(bundle.code_tables.parent if bundle.code_tables is not None else bundle.root)


def _expectations(name: str, query: bool) -> Expectations:
    tree = canonical.message_tree(name, query=query)
    return Expectations(name, Shape.from_data(tree), canonical.result_spec(name, query=query), query)


def preview(
    bundle: Bundle, operation: str, message: Mapping[str, Any], *, environment: str | None = None
) -> dict[str, Any]:
    """What `operation` (a canonical operation or named query) would send for `message`; nothing is sent.

    As the bundle's kind shows it (`AdapterKind.preview`): SOAP {"kind", "operation", "endpoint", "soap_version",
    "request", "envelope"}; REST {"kind", "method", "path", "query", "headers" (secrets redacted), "url", "body"}.
    Raises `MappingError` if the message does not fit the mapping, `BundleError` if the mapping is broken.
    """
    path, _ = bundle.mapping(operation)
    mf, problems = load_mapping(path, name=bundle.relative(path), code_tables=_tables_of(bundle))
    if mf is None or problems:
        raise BundleError(problems)
    kind = KINDS[bundle.kind]
    shown = kind.preview(bundle, mf, message, bundle.endpoint(environment))
    if isinstance(kind, CarryingKind):  # what the carried bundle's kind would send, behind the gap, and how it goes
        carried = kind.carried(bundle)
        return {**preview(carried, operation, message, environment=environment), **shown,
                "carried_kind": carried.kind}
    return shown
