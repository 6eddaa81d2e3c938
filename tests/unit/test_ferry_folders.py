"""The ferry's link folders (adapters/kinds/ferry/folders.py): a file is ready only when whole and marked, a full
disk leaves nothing half-written, names follow the naming rule, the text and XML wrappers give back the bytes
they wrap (and refuse what they did not write), and a refused file goes to quarantine with its reason.
"""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from adapters.kinds.ferry.batch import FORMAT, MAGIC, BatchRefused
from adapters.kinds.ferry.folders import WRAPPERS, FolderFull, LinkFolder, Naming

DIGEST = "0123456789abcdef" * 4
# A batch's first two lines are enough for the XML wrapper's channel and seq; the rest is opaque to a folder.
MANIFEST = json.dumps({"channel": "public_security.down", "previous": "ab" * 32, "sender": "gateway", "seq": 7,
                       "signal": None}, sort_keys=True, separators=(",", ":")).encode()
BATCH = MAGIC + MANIFEST + b"\n{}\n" + bytes(range(256)) * 3


def test_names_follow_the_naming_rule(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path / "out", Naming(extension=".txt"))
    assert folder.name_for("public_security.down", 7, DIGEST) == "public_security.down_0000000007_01234567.txt"
    assert folder.name_for("public_security.up", 0, DIGEST, counter=12) == (
        "public_security.up_sig_0000000012_01234567.txt")
    custom = LinkFolder(tmp_path / "out", Naming(extension=".xml", pattern="ps-{seq:06d}-{channel}"))
    assert custom.name_for("ps.down", 3, DIGEST) == "ps-000003-ps.down.xml"


@pytest.mark.parametrize(("options", "match"), [
    ({"wrapper": "zip"}, "wrapper"), ({"extension": "txt"}, "extension"), ({"extension": ".t/x"}, "extension"),
    ({"pattern": "{channel}_{digest8}"}, "seq"), ({"pattern": "{channel}_{seq}_{os}"}, "only fields"),
    ({"signal_pattern": "{channel}_sig"}, "counter"),
])
def test_a_naming_rule_that_cannot_work_is_said(options: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Naming(**options)


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a.done", "a.reason.json", "a.tmp", "", "a/b"])
def test_a_name_that_is_not_a_plain_batch_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a batch file name"):
        LinkFolder(tmp_path).write(name, BATCH)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_what_is_written_reads_back_through_its_wrapper(tmp_path: Path, wrapper: str) -> None:
    folder = LinkFolder(tmp_path / "out", Naming(extension=".txt", wrapper=wrapper))
    path = folder.write("b_0000000007.txt", BATCH)
    assert folder.ready() == [path] and path.with_name(path.name + ".done").exists()
    assert folder.read(path) == BATCH
    written = path.read_bytes()
    if wrapper == "text":
        lines = written.decode("ascii").splitlines()
        assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    if wrapper == "xml":
        assert written.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ferry-batch format="'
                                  + FORMAT.encode() + b'" channel="public_security.down" seq="7"><data>')


@pytest.mark.parametrize(("wrapper", "content"), [
    ("text", b"not base64 at all!"),
    ("text", "中文".encode()),
    ("xml", b"<ferry-batch><data>AAAA</data></ferry-batch>"),
    ("xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE x [<!ENTITY a "b">]><ferry-batch format="'
            b'yiwang-ferry/1" channel="c" seq="1"><data>&a;</data></ferry-batch>'),
    ("xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<ferry-batch format="yiwang-ferry/9" channel="c" '
            b'seq="1"><data>AAAA</data></ferry-batch>'),
    ("xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<ferry-batch format="yiwang-ferry/1" channel="c" '
            b'seq="1"><data>AAA</data></ferry-batch>'),  # base64 cut short
])
def test_a_broken_wrapper_is_unreadable(tmp_path: Path, wrapper: str, content: bytes) -> None:
    folder = LinkFolder(tmp_path, Naming(wrapper=wrapper))
    path = tmp_path / "x.ferry"
    path.write_bytes(content)
    with pytest.raises(BatchRefused) as caught:
        folder.read(path)
    assert caught.value.code == "unreadable"


def test_a_symlink_is_never_ready(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not for the far side")
    folder = LinkFolder(tmp_path / "in")
    (folder.path / "c_0000000001.ferry").symlink_to(secret)
    (folder.path / "c_0000000001.ferry.done").touch()
    assert folder.ready() == []


def test_a_file_over_the_cap_is_not_read(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path, max_bytes=100)
    path = folder.write("big.ferry", b"x" * 101)
    with pytest.raises(BatchRefused) as caught:
        folder.read(path)
    assert caught.value.code == "too_large"


def test_ready_lists_only_marked_files_in_name_order(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path)
    second = folder.write("c_0000000002.ferry", BATCH)
    first = folder.write("c_0000000001.ferry", BATCH)
    (tmp_path / ".c_0000000003.ferry.tmp").write_bytes(BATCH[:10])  # being written
    (tmp_path / "c_0000000004.ferry").write_bytes(BATCH)  # renamed, marker not yet made (or being copied in)
    (tmp_path / "c_0000000005.ferry.done").touch()  # a marker whose file is gone
    folder.quarantine(folder.write("c_0000000006.ferry", BATCH), "bad", "bad_signature")
    assert folder.ready() == [first, second]


def test_a_crash_before_the_rename_leaves_nothing_ready(tmp_path: Path) -> None:
    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        assert point == "before_rename"
        raise Crash

    folder = LinkFolder(tmp_path, crash_at=crash)
    with pytest.raises(Crash):
        folder.write("c_0000000001.ferry", BATCH)
    leftover, = tmp_path.iterdir()
    assert folder.ready() == [] and leftover.name.startswith(".c_0000000001.ferry.")
    LinkFolder(tmp_path).write("c_0000000001.ferry", BATCH)  # written again after the restart: whole
    assert [p.name for p in LinkFolder(tmp_path).ready()] == ["c_0000000001.ferry"]
    assert leftover.exists()  # young: it might be another process's write in progress
    os.utime(leftover, (leftover.stat().st_atime, leftover.stat().st_mtime - 3601))
    LinkFolder(tmp_path).write("c_0000000001.ferry", BATCH)
    assert not leftover.exists()  # an hour old: a crash's leftover, swept


@pytest.mark.parametrize("full", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_leaves_nothing_half_written(tmp_path: Path, full: int) -> None:
    folder = LinkFolder(tmp_path, Naming(wrapper="text"))
    real_write = os.write
    calls = []

    def write_then_fill(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:  # the first chunk lands, then the disk is full
            raise OSError(full, os.strerror(full))
        return real_write(fd, data[:100])

    with mock.patch("os.write", write_then_fill), pytest.raises(FolderFull) as caught:
        folder.write("c_0000000001.ferry", BATCH)
    assert caught.value.errno == full and "nothing was left half-written" in str(caught.value)
    assert list(tmp_path.iterdir()) == [] and folder.ready() == []
    folder.write("c_0000000001.ferry", BATCH)  # space again: the same batch written whole
    assert folder.read(folder.ready()[0]) == BATCH


def test_a_full_disk_at_the_marker_takes_the_file_back(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path)
    real_open = os.open

    def no_inodes_for_markers(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".done"):
            raise OSError(errno.ENOSPC, "no space")
        return real_open(path, flags, mode)

    with mock.patch("os.open", no_inodes_for_markers), pytest.raises(FolderFull):
        folder.write("c_0000000001.ferry", BATCH)
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_are_not_a_full_folder(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path)
    with mock.patch("os.write", side_effect=OSError(errno.EIO, "I/O error")), pytest.raises(OSError) as caught:
        folder.write("c_0000000001.ferry", BATCH)
    assert not isinstance(caught.value, FolderFull) and list(tmp_path.iterdir()) == []


def test_remove_takes_the_file_and_its_marker(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path)
    folder.remove(folder.write("c_0000000001.ferry", BATCH))
    assert list(tmp_path.iterdir()) == []


def test_quarantine_keeps_the_file_and_its_reason(tmp_path: Path) -> None:
    folder = LinkFolder(tmp_path / "incoming")
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    first = folder.quarantine(folder.write("c_0000000001.ferry", BATCH), "the signature does not verify",
                              "bad_signature", at=at)
    again = folder.quarantine(folder.write("c_0000000001.ferry", b"other"), "cut short", "truncated", at=at)
    assert first == tmp_path / "incoming" / "quarantine" / "c_0000000001.ferry"
    assert again == first.with_name("c_0000000001.ferry.1") and first.read_bytes() == BATCH
    reason = json.loads(first.with_name(first.name + ".reason.json").read_text())
    assert reason == {"code": "bad_signature", "reason": "the signature does not verify",
                      "at": "2026-12-07T12:00:00+00:00"}
    assert json.loads(again.with_name(again.name + ".reason.json").read_text())["code"] == "truncated"
    assert folder.ready() == [] and sorted(p.name for p in folder.path.iterdir()) == ["quarantine"]
