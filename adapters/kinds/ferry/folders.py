"""A link folder: where one side writes batch files for the isolation gateway, or reads what it delivered.

Writing is atomic for any reader: the wrapped bytes go to a hidden temporary name (`.<name>.<random>.tmp`),
are fsynced, renamed to `<name>`, the directory fsynced, and only then an empty done marker `<name>.done` is
made (and the directory fsynced again). `ready()` lists only regular files whose marker exists (never a
symlink), so a half-written or half-copied file is never read. A full disk or quota (ENOSPC, EDQUOT) raises
`FolderFull` with the temporary file removed: nothing half-written stays behind, and the caller writes the
same batch again later. A crash leaves at most a hidden temporary file, removed by a later write of the
same name once it is an hour old (the clock here only ages leftovers; it never orders anything).

Names come from `Naming` (a pattern, an extension the isolation gateway's content inspection accepts) and
bytes may be wrapped: "none" (the batch as is), "text" (base64 in lines of 76) or "xml" (a small document
carrying the base64). A refused file is moved to `<folder>/quarantine/` beside `<name>.reason.json`
({code, reason, at}). Everything is in adapters/FERRY-FORMAT.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import glob
import json
import os
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.kinds.ferry.batch import FORMAT, BatchRefused, peek

WRAPPERS = ("none", "text", "xml")
MARKER = ".done"  # the done marker's suffix: `<name>.done`
REASON = ".reason.json"  # beside a quarantined file: `<name>.reason.json`
QUARANTINE = "quarantine"
TEXT_LINE = 76  # base64 line length of the text and XML wrappers (RFC 2045's)
MAX_FILE_BYTES = 64 * 1024 * 1024  # larger files are refused unread: a batch is 16 MiB, base64 adds a third
STALE_TEMPORARY = timedelta(hours=1)  # a temporary file this old is a crash's leftover, not a write in progress
_FULL = (errno.ENOSPC, errno.EDQUOT)
_EXTENSION = re.compile(r"(\.[A-Za-z0-9]{1,16})?")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
# The XML wrapper is read back by this exact shape, not a general parser: no DTD, entity or namespace can be in
# it, and a 20 MB text node (beyond libxml2's limit without huge_tree) reads all the same.
_XML = re.compile(
    rb'<\?xml version="1\.0" encoding="UTF-8"\?>\s*<ferry-batch format="(?P<format>[a-z0-9./-]{1,40})" '
    rb'channel="[A-Za-z0-9_.-]{0,100}" seq="[0-9]{1,19}">\s*<data>(?P<data>[A-Za-z0-9+/=\s]*)</data>\s*'
    rb"</ferry-batch>\s*")
_PATTERN_FIELDS = {"channel", "seq", "digest8", "digest", "counter"}


@dataclass(frozen=True)
class Naming:
    extension: str = ".ferry"  # what the isolation gateway's content inspection accepts (".txt", ".xml")
    wrapper: str = "none"  # "none" | "text" (base64 lines) | "xml" (<ferry-batch> with base64 text)
    pattern: str = "{channel}_{seq:010d}_{digest8}"  # plus extension
    signal_pattern: str = "{channel}_sig_{counter:010d}_{digest8}"  # plus extension

    def __post_init__(self) -> None:
        if self.wrapper not in WRAPPERS:
            raise ValueError(f"naming.wrapper is one of {', '.join(WRAPPERS)}, got {self.wrapper!r}")
        if not _EXTENSION.fullmatch(self.extension):
            raise ValueError(f"naming.extension is a dot and up to 16 letters or digits, got {self.extension!r}")
        for pattern, needed in ((self.pattern, "seq"), (self.signal_pattern, "counter")):
            fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
            if not fields <= _PATTERN_FIELDS or needed not in fields or "channel" not in fields:
                raise ValueError(f"naming pattern {pattern!r} names {{channel}} and {{{needed}}}, and only "
                                 f"fields of {', '.join(sorted(_PATTERN_FIELDS))}")


class FolderFull(OSError):
    """ENOSPC/EDQUOT while writing: nothing half-written is left behind; write the same batch again later."""


class LinkFolder:
    def __init__(self, path: Path, naming: Naming = Naming(), *,
                 crash_at: Callable[[str], None] | None = None, max_bytes: int = MAX_FILE_BYTES) -> None:
        """`crash_at(point)` is called at "before_rename" (a test-only crash point: the caller may end the
        process there); `max_bytes` the largest file `read` takes."""
        self.path, self.naming = path, naming
        self._crash_at, self._max_bytes = crash_at, max_bytes
        path.mkdir(parents=True, exist_ok=True)

    @property
    def quarantine_path(self) -> Path:
        return self.path / QUARANTINE

    def name_for(self, channel: str, seq: int, digest: str, *, counter: int | None = None) -> str:
        """The file name of a batch (or, with `counter`, of a signal) by the naming rule, extension included."""
        pattern = self.naming.pattern if counter is None else self.naming.signal_pattern
        name = pattern.format(channel=channel, seq=seq, digest8=digest[:8], digest=digest, counter=counter or 0)
        return _checked_name(name + self.naming.extension)

    def write(self, name: str, data: bytes) -> Path:
        """Wrap `data` and write it as `name` (see the module docstring); `FolderFull` when the disk is."""
        target = self.path / _checked_name(name)
        marker = _marker(target)
        # A name of its own per write: an operator's resend may write the same batch while the job does.
        temporary = self.path / f".{target.name}.{secrets.token_hex(4)}.tmp"
        _write_synced(temporary, self._wrap(data))
        if self._crash_at is not None:
            self._crash_at("before_rename")
        os.replace(temporary, target)
        _sync_directory(self.path)
        self._sweep_temporaries(target.name)
        try:
            _write_synced(marker, b"")
        except FolderFull:
            target.unlink(missing_ok=True)  # never a file without its marker lying about: it would never be read
            raise
        _sync_directory(self.path)
        return target

    def _sweep_temporaries(self, name: str) -> None:
        """Remove what a crash left of earlier writes of `name`: hidden, never read, only taking space. One
        younger than STALE_TEMPORARY may be another process's write in progress, and stays."""
        for leftover in self.path.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - leftover.stat().st_mtime > STALE_TEMPORARY.total_seconds():
                    leftover.unlink()

    def ready(self) -> list[Path]:
        """Files with a done marker, sorted by name; never a temporary file, a marker, or the quarantine."""
        names = {entry.name for entry in os.scandir(self.path) if entry.is_file(follow_symlinks=False)}
        return [self.path / name for name in sorted(names)
                if not name.startswith(".") and not name.endswith(MARKER) and name + MARKER in names]

    def read(self, path: Path) -> bytes:
        """The unwrapped bytes of a ready file; `BatchRefused` (too_large, unreadable) if the wrapper is broken."""
        with path.open("rb") as file:
            data = file.read(self._max_bytes + 1)  # never more than the cap into memory, however large the file
        if len(data) > self._max_bytes:
            raise BatchRefused("too_large", f"the file is over the cap of {self._max_bytes} bytes")
        return self._unwrap(data)

    def remove(self, path: Path) -> None:
        """The file and its marker (the marker first: a reader never sees a marked file that is going)."""
        _marker(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        _sync_directory(self.path)

    def quarantine(self, path: Path, reason: str, code: str, *, at: datetime | None = None) -> Path:
        """Move `path` into the quarantine folder beside `<name>.reason.json` ({code, reason, at}); its marker
        goes. A second file of the same name gets a numbered name; nothing in quarantine is overwritten."""
        self.quarantine_path.mkdir(exist_ok=True)
        target = _free_name(self.quarantine_path, path.name)
        _marker(path).unlink(missing_ok=True)
        os.replace(path, target)
        when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
        note = json.dumps({"code": code, "reason": reason, "at": when}, ensure_ascii=False, indent=2)
        _write_synced(target.with_name(target.name + REASON), note.encode("utf-8") + b"\n")
        _sync_directory(self.quarantine_path)
        _sync_directory(self.path)
        return target

    def _wrap(self, data: bytes) -> bytes:
        if self.naming.wrapper == "none":
            return data
        text = _base64_lines(data)
        if self.naming.wrapper == "text":
            return text
        channel, seq = peek(data) or ("", 0)
        return (f'{_XML_HEAD}<ferry-batch format="{FORMAT}" channel="{channel}" seq="{seq}"><data>\n'
                ).encode("ascii") + text + b"</data></ferry-batch>\n"

    def _unwrap(self, data: bytes) -> bytes:
        if self.naming.wrapper == "none":
            return data
        if self.naming.wrapper == "text":
            return _from_base64(data, "text")
        document = _XML.fullmatch(data)
        if document is None:
            raise BatchRefused("unreadable", "the file is not a <ferry-batch> XML wrapper as the format writes it")
        if document["format"] != FORMAT.encode("ascii"):
            raise BatchRefused("unreadable", f"the XML wrapper is not of format {FORMAT!r}")
        return _from_base64(document["data"], "XML")


def _checked_name(name: str) -> str:
    """A plain file name: no directory, not hidden (hidden names are temporary), no marker or reason suffix."""
    if not _FILE_NAME.fullmatch(name) or name.endswith((MARKER, REASON, ".tmp")):
        raise ValueError(f"not a batch file name: {name[:80]!r}")
    return name


def _marker(path: Path) -> Path:
    return path.with_name(path.name + MARKER)


def _free_name(folder: Path, name: str) -> Path:
    candidate, number = folder / name, 1
    while candidate.exists() or candidate.with_name(candidate.name + REASON).exists():
        candidate, number = folder / f"{name}.{number}", number + 1
    return candidate


def _write_synced(path: Path, data: bytes) -> None:
    """Write `path` whole and fsync it; FolderFull (and no file) when the disk or the quota is full."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    except OSError as exc:
        raise _full_or(exc, path) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _full_or(exc, path) from None
    finally:
        os.close(fd)


def _full_or(error: OSError, path: Path) -> OSError:
    """`FolderFull` for a full disk or quota, the error itself otherwise."""
    if error.errno not in _FULL:
        return error
    return FolderFull(error.errno, f"the link folder {path.parent} is full ({os.strerror(error.errno)}); "
                      "nothing was left half-written")


def _sync_directory(path: Path) -> None:
    """fsync the directory: a rename or a new name is on disk, not only in the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i:i + TEXT_LINE] + b"\n" for i in range(0, len(encoded), TEXT_LINE))


def _from_base64(text: bytes, wrapper: str) -> bytes:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BatchRefused("unreadable", f"the {wrapper} wrapper does not hold base64") from None
