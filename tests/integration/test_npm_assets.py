"""deploy/fetch-npm-asset, as the Makefile runs it for the console's htmx and the tests' axe-core: the pinned
tarball's file lands at its destination; a tarball that does not match its pin (or lacks the file) fails the
step with a message naming both digests and leaves no file — not even an earlier copy. A registry of our own
on loopback stands in for registry.npmjs.org ($NPM_REGISTRY)."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_server import LocalServer, Reply, Seen
from tests.support.markdown import ROOT

SCRIPT = ROOT / "deploy" / "fetch-npm-asset"
CONTENT = b"/*! htmx 2.0.8 */ var htmx = {};\n"


def tarball(files: dict[str, bytes]) -> bytes:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return packed.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


TARBALL = tarball({"package.json": b"{}", "dist/htmx.min.js": CONTENT})


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalServer]:
    def answer(seen: Seen) -> Reply:
        if seen.path == "/htmx.org/-/htmx.org-2.0.8.tgz":
            return Reply(body=TARBALL, content_type="application/octet-stream")
        return Reply(404, b"not found", content_type="text/plain")

    with LocalServer(answer) as server:
        yield server


def fetch(registry: LocalServer, pin: str, inside: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "htmx.org", "2.0.8", pin, inside, str(dest)], capture_output=True,
                          text=True, timeout=30, env={"NPM_REGISTRY": registry.url, "PATH": "/usr/bin:/bin"})


def test_the_pinned_file_is_written(registry: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "static" / "vendor" / "htmx.min.js"
    done = fetch(registry, integrity(TARBALL), "dist/htmx.min.js", dest)
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == CONTENT
    assert dest.stat().st_mode & 0o777 == 0o644  # served and packaged like any other file
    assert [p.name for p in dest.parent.iterdir()] == ["htmx.min.js"]  # no temporary file left beside it


def test_a_checksum_mismatch_fails_and_leaves_no_file(registry: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "htmx.min.js"
    dest.write_bytes(b"an earlier pin's copy")
    wrong = integrity(TARBALL + b"tampered")
    done = fetch(registry, wrong, "dist/htmx.min.js", dest)
    assert done.returncode == 1
    assert f"checksum mismatch for htmx.org@2.0.8: pinned {wrong}, downloaded {integrity(TARBALL)}" in done.stderr
    assert "nothing written" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("pin", "inside", "said"), [
    ("sha256-" + base64.b64encode(hashlib.sha256(TARBALL).digest()).decode(), "dist/htmx.min.js", "not a sha512"),
    (integrity(TARBALL), "dist/htmx.js", "has no file dist/htmx.js"),
], ids=["a-sha256-pin", "a-file-not-in-the-tarball"])  # ids of our own: the tarball (and its digests) differs per xdist worker
def test_a_pin_that_cannot_be_checked_or_a_missing_file_fails(registry: LocalServer, tmp_path: Path, pin: str,
                                                               inside: str, said: str) -> None:
    done = fetch(registry, pin, inside, tmp_path / "htmx.min.js")
    assert done.returncode == 1 and said in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
