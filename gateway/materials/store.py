"""Application materials as files: uploaded first, then referenced by a case (`mat_…` refs).

Bytes are stored content-addressed under `root/<first two hex>/<sha256>`, so identical scans are kept
once while every upload gets its own ref and row. What a file *is* is decided from its bytes (magic
numbers), never from the name or the declared type alone: a renamed executable must not become an
"ID card scan" that a sector system later opens.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import Connection, Engine, RowMapping, select

from gateway.domain.clock import Clock, SystemClock
from gateway.persistence.material_tables import material_files
from gateway.persistence.uow import UnitsOfWork

PDF, JPEG, PNG, OFD = "application/pdf", "image/jpeg", "image/png", "application/ofd"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_ALLOWED = frozenset({PDF, JPEG, PNG, OFD})
MAX_FILENAME = 200
CHUNK = 64 * 1024
REF_PATTERN = re.compile(r"^mat_[0-9a-f]{32}$")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
)
_ZIP_MAGIC = b"PK\x03\x04"  # an OFD (GB/T 33190) package is a ZIP with OFD.xml at its root
_SNIFFABLE = frozenset({media_type for _, media_type in _MAGIC} | {OFD})
# Browsers send application/octet-stream for extensions they do not know (.ofd among them): it says
# nothing about the content, so it counts as "not declared" rather than as a disagreement.
_UNDECLARED = frozenset({"", "application/octet-stream"})
_ALIASES = {"image/jpg": JPEG, "image/pjpeg": JPEG}  # non-standard names some clients still send


class MaterialError(Exception):
    """A material the store refuses; the message is fit to show the applicant."""


class MaterialTooLarge(MaterialError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"文件超过上限 {max_bytes} 字节")
        self.max_bytes = max_bytes


class UnsupportedMaterial(MaterialError):
    """Content that is not one of the admitted types, or not what was declared."""


class EmptyMaterial(UnsupportedMaterial):
    def __init__(self) -> None:
        super().__init__("文件是空的")


class UnknownMaterial(LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"没有材料 {ref}")
        self.ref = ref


class AlteredMaterial(Exception):
    """A stored file that no longer hashes to what was uploaded (or is gone): it must not leave the gateway."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"材料 {ref} 上传后在磁盘上被改动或删除")
        self.ref = ref


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class StoredMaterial:
    ref: str
    sha256: str
    size: int
    media_type: str
    filename: str
    uploaded_by: str
    created_at: datetime


@dataclass(frozen=True)
class _Received:
    path: Path
    sha256: str
    size: int


class MaterialStore:
    def __init__(self, engine: Engine, root: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 allowed: frozenset[str] = DEFAULT_ALLOWED, clock: Clock | None = None) -> None:
        if unknown := allowed - _SNIFFABLE:  # a type we cannot recognise could never be admitted
            raise ValueError(f"cannot recognise {', '.join(sorted(unknown))} from content")
        self._units = UnitsOfWork(engine)  # one unit of work per change or read, committed explicitly
        self._root = root
        self._incoming = root / ".incoming"  # under root: same filesystem, so os.replace is atomic
        self._incoming.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.allowed = allowed
        self._clock = clock or SystemClock()

    def save(self, stream: Readable, declared_type: str | None, filename: str, uploaded_by: str) -> StoredMaterial:
        """Stream `stream` in, check it, keep it; on any refusal nothing stays behind."""
        received = self._receive(stream)
        try:
            material = StoredMaterial(
                ref="mat_" + secrets.token_hex(16),
                sha256=received.sha256,
                size=received.size,
                media_type=self._admit(received, declared_type),
                filename=sanitise_filename(filename),
                uploaded_by=uploaded_by,
                created_at=self._clock.now(),
            )
            # File placed inside the transaction: if placing fails the row is rolled back. If the commit
            # fails after placing, an unreferenced content file remains, which is harmless (a later
            # identical upload reuses it); a row pointing at no file would not be.
            with self._units() as uow:
                conn = uow.conn
                conn.execute(material_files.insert().values(**asdict(material)))
                self._place(received)
                uow.commit()
        finally:
            received.path.unlink(missing_ok=True)  # already moved when kept; the leftover when refused
        return material

    def get(self, ref: str) -> StoredMaterial | None:
        if not REF_PATTERN.match(ref):
            return None
        with self._reading() as conn:
            row = conn.execute(select(material_files).where(material_files.c.ref == ref)).mappings().first()
        return None if row is None else _material(row)

    def missing(self, refs: Iterable[str]) -> list[str]:
        """The refs among `refs` that name no stored material, in the order given, each once."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return []
        with self._reading() as conn:
            found = set(conn.scalars(select(material_files.c.ref).where(material_files.c.ref.in_(wanted))))
        return [ref for ref in wanted if ref not in found]

    def open(self, ref: str) -> BinaryIO:
        return self._path(self._known(ref).sha256).open("rb")

    def verify(self, ref: str) -> bool:
        """Does the file on disk still hash to what was uploaded? False when altered or gone."""
        material = self._known(ref)
        try:
            with self._path(material.sha256).open("rb") as f:
                sha256, size = _digest(f)
        except FileNotFoundError:
            return False
        return sha256 == material.sha256 and size == material.size

    def open_verified(self, ref: str) -> tuple[StoredMaterial, BinaryIO]:
        """The material and its file, opened and checked: the handle is hashed whole, then rewound, so what is
        read from it is what was verified. UnknownMaterial, or AlteredMaterial when altered or gone."""
        material = self._known(ref)
        try:
            f = self._path(material.sha256).open("rb")
        except FileNotFoundError:
            raise AlteredMaterial(ref) from None
        try:
            sha256, size = _digest(f)
            if sha256 != material.sha256 or size != material.size:
                raise AlteredMaterial(ref)
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return material, f

    def read_verified(self, ref: str) -> tuple[StoredMaterial, bytes]:
        """The material and its bytes, hashed as read: UnknownMaterial, or AlteredMaterial when altered or gone."""
        material = self._known(ref)
        try:
            with self._path(material.sha256).open("rb") as f:
                content = f.read(material.size + 1)  # a file grown on disk is not read whole to find out
        except FileNotFoundError:
            raise AlteredMaterial(ref) from None
        if len(content) != material.size or hashlib.sha256(content).hexdigest() != material.sha256:
            raise AlteredMaterial(ref)
        return material, content

    def _receive(self, stream: Readable) -> _Received:
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = _digest(stream, out, self.max_bytes)
                out.flush()
                os.fsync(out.fileno())  # so a crash cannot leave a renamed but empty content file
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _Received(path, sha256, size)

    def _admit(self, received: _Received, declared_type: str | None) -> str:
        if received.size == 0:
            raise EmptyMaterial()
        actual = sniff(received.path)
        if actual is None or actual not in self.allowed:
            raise UnsupportedMaterial(f"文件内容不是以下类型之一：{'、'.join(sorted(self.allowed))}")
        declared = _declared(declared_type)
        if declared is not None and declared != actual:
            raise UnsupportedMaterial(f"文件声明为 {declared}，但内容是 {actual}")
        return actual

    def _place(self, received: _Received) -> None:
        target = self._path(received.sha256)
        if target.exists():  # identical content already kept: the new row shares it
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.path, target)

    def _path(self, sha256: str) -> Path:
        return self._root / sha256[:2] / sha256

    def _known(self, ref: str) -> StoredMaterial:
        material = self.get(ref)
        if material is None:
            raise UnknownMaterial(ref)
        return material

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        # Read-only: on SQLite a plain BEGIN, not BEGIN IMMEDIATE, so lookups never queue for the write lock.
        with self._units(read_only=True) as uow:
            yield uow.conn


def sniff(path: Path) -> str | None:
    """The media type the file's bytes show, or None when they show none we know."""
    with path.open("rb") as f:
        head = f.read(len(_ZIP_MAGIC) * 2)
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    return OFD if head.startswith(_ZIP_MAGIC) and _is_ofd(path) else None


def _is_ofd(path: Path) -> bool:
    # Only the central directory is read: nothing is extracted, so zip bombs and hostile entry
    # names (../../etc) never matter here.
    try:
        with zipfile.ZipFile(path) as package:
            return any(info.filename == "OFD.xml" for info in package.infolist())
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return False


def sanitise_filename(raw: str | None) -> str:
    """The original name for display: last path segment (either separator), no control characters."""
    base = re.split(r"[/\\]", raw or "")[-1]
    clean = "".join(ch for ch in base if not unicodedata.category(ch).startswith("C")).strip()
    return clean[:MAX_FILENAME] if clean not in ("", ".", "..") else "unnamed"


def _declared(declared_type: str | None) -> str | None:
    base = (declared_type or "").split(";", 1)[0].strip().lower()
    return None if base in _UNDECLARED else _ALIASES.get(base, base)


def _digest(stream: Readable, sink: BinaryIO | None = None, limit: int | None = None) -> tuple[str, int]:
    """SHA-256 and size of `stream`, read in chunks (copied to `sink` if given); over `limit` raises."""
    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            raise MaterialTooLarge(limit)
        hasher.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return hasher.hexdigest(), size


def _material(row: RowMapping) -> StoredMaterial:
    return StoredMaterial(**{**row, "created_at": _as_utc(row["created_at"])})


def _as_utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; every instant we store is UTC (clock invariant).
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
