"""Key files made once: when several processes start together on a fresh folder, they agree on one key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_once(path: Path, text: str) -> str:
    """The file's text: `text` if this process created it, else what the process that won wrote.

    The whole text goes to a file of a unique name (O_EXCL, 0600) that is then linked into place: the
    link fails if another process won, and nobody ever reads a half-written key (creating `path` itself
    with O_EXCL and writing after would let a reader see it empty)."""
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.link(scratch, path)
    except FileExistsError:
        return path.read_text()  # the other process's key stands
    finally:
        scratch.unlink(missing_ok=True)
    return text
