"""Materials travel to a sector as its bundle declares (`materials.transport`, adapters/BUNDLE-FORMAT.md).

`MaterialTransport.attach` adds to each material of a canonical message that has a `file_ref` its stored
description (`media_type`, `sha256`, `size`) and then either
- `content_base64`: the file itself (inline_base64), read through the store and checked against the hash
  taken at upload, all the message's files together at most `max_inline_bytes`; or
- `url`: a signed link the sector fetches from `GET /material-links/{ref}` (signed_url; and mtom, which
  the SOAP kind does not package yet, so an MTOM sector gets the same links for now).
A file altered or gone on disk, an unknown ref, or too much to inline: `MaterialNotSendable`; retrying
cannot help, so the dispatcher makes it a dead letter and sends nothing.

A link is `{public_url}/material-links/{ref}?expires=<epoch s>&sig=<base64url HMAC-SHA256>&sector=<sector>`,
the HMAC taken over "ref\\nexpires\\nsector" under a per-install key (`var/material-link.key`, made like the
blind-index key, or YIWANG_MATERIAL_LINK_KEY). The signature is the credential: no API key is involved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from gateway.domain.clock import Clock
from gateway.materials.store import (
    REF_PATTERN,
    AlteredMaterial,
    MaterialStore,
    StoredMaterial,
    UnknownMaterial,
)

INLINE_BASE64, SIGNED_URL, MTOM = "inline_base64", "signed_url", "mtom"
LINKS_PATH = "/material-links"
DEFAULT_MAX_INLINE_BYTES = 10 * 1024 * 1024
DEFAULT_TTL_S = 3600
_SECTOR = re.compile(r"^[a-z][a-z0-9_]{1,40}$")  # as the bundle schema admits a sector name
_EXPIRES = re.compile(r"^[0-9]{1,12}$")


class MaterialNotSendable(Exception):
    """A material that cannot go to the sector as its bundle declares; the message says why, for operators."""


class MaterialLinkRefused(Exception):
    """A link that is not ours, was altered, is for another sector, or has expired (403)."""


class MaterialLinkNotFound(Exception):
    """A correctly signed link whose material is not (or no longer, as uploaded) here (404)."""


class MaterialLinks:
    """Signs links to materials for one sector, and checks them when the sector comes to fetch."""

    def __init__(self, key: bytes, public_url: str, clock: Clock, ttl_s: int = DEFAULT_TTL_S) -> None:
        if len(key) < 16:
            raise ValueError("the material-link key must be at least 16 bytes")
        if ttl_s <= 0:
            raise ValueError("a material link must stay valid for a positive time")
        self._key = key
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.ttl_s = ttl_s

    def url(self, ref: str, sector: str) -> str:
        """A link to `ref` that `sector` may use until `ttl_s` from now."""
        expires = int(self.clock.now().timestamp()) + self.ttl_s
        query = urlencode({"expires": expires, "sig": self._signature(ref, str(expires), sector), "sector": sector})
        return f"{self.public_url}{LINKS_PATH}/{quote(ref)}?{query}"

    def check(self, ref: str, expires: str | None, sig: str | None, sector: str | None) -> None:
        """Raise MaterialLinkRefused unless this is a link we signed, unexpired, for that ref and sector."""
        if expires is None or sig is None or sector is None:
            raise MaterialLinkRefused("the link lacks expires, sig or sector")
        if not (REF_PATTERN.match(ref) and _EXPIRES.match(expires) and _SECTOR.match(sector) and sig.isascii()):
            raise MaterialLinkRefused("the link is not one the gateway signed")
        expected = self._signature(ref, expires, sector)
        if not hmac.compare_digest(expected.encode("ascii"), sig.rstrip("=").encode("ascii")):
            raise MaterialLinkRefused("the link is not one the gateway signed")
        if int(expires) < self.clock.now().timestamp():
            raise MaterialLinkRefused("the link has expired")

    def _signature(self, ref: str, expires: str, sector: str) -> str:
        digest = hmac.new(self._key, f"{ref}\n{expires}\n{sector}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class MaterialTransport:
    """Adds the materials' files to a canonical message, as the sector's bundle declares."""

    def __init__(self, store: MaterialStore, links: MaterialLinks,
                 max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES) -> None:
        self.store = store
        self.links = links
        self.max_inline_bytes = max_inline_bytes

    def attach(self, message: Mapping[str, Any], transport: str, sector: str) -> dict[str, Any]:
        """`message` with its materials' files attached (a new dict; `message` is left as it was).
        Raises MaterialNotSendable."""
        materials: list[Mapping[str, Any]] = list(message["case"]["materials"])
        if not any(m.get("file_ref") for m in materials):
            return dict(message)
        if transport == INLINE_BASE64:
            sent = self._inline(materials)
        elif transport in (SIGNED_URL, MTOM):
            # MTOM packaging (XOP attachments in the SOAP envelope) is not done yet: an mtom sector gets
            # the same signed links as signed_url, so its mapping reads `url` for now.
            sent = self._linked(materials, sector)
        else:  # the bundle schema admits no other; a newer bundle format must not go out half-understood
            raise MaterialNotSendable(f"unknown materials transport {transport!r}")
        return {**message, "case": {**message["case"], "materials": sent}}

    def _inline(self, materials: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        stored = {ref: self._stored(ref) for ref in _refs(materials)}
        total = sum(stored[m["file_ref"]].size for m in materials if m.get("file_ref"))
        if total > self.max_inline_bytes:  # decided from the recorded sizes, before any file is read
            raise MaterialNotSendable(
                f"the materials to send inline total {total} bytes, over the limit of {self.max_inline_bytes} "
                "(YIWANG_MAX_INLINE_MATERIAL_BYTES); ask the sector to take signed_url links instead")
        content = {ref: base64.b64encode(self._read(ref)).decode("ascii") for ref in stored}
        return [_described(m, stored, content_base64=content[m["file_ref"]]) if m.get("file_ref") else dict(m)
                for m in materials]

    def _linked(self, materials: list[Mapping[str, Any]], sector: str) -> list[dict[str, Any]]:
        stored = {ref: self._stored(ref) for ref in _refs(materials)}
        for ref in stored:  # a file already altered is not offered; the link checks again when fetched
            self._check(ref)
        return [_described(m, stored, url=self.links.url(m["file_ref"], sector)) if m.get("file_ref") else dict(m)
                for m in materials]

    def _stored(self, ref: str) -> StoredMaterial:
        material = self.store.get(ref)
        if material is None:
            raise MaterialNotSendable(f"material {ref} is not stored")
        return material

    def _read(self, ref: str) -> bytes:
        try:
            return self.store.read_verified(ref)[1]
        except (AlteredMaterial, UnknownMaterial) as error:
            raise MaterialNotSendable(f"{error}；未发送任何内容") from error

    def _check(self, ref: str) -> None:
        try:
            intact = self.store.verify(ref)
        except UnknownMaterial as error:
            raise MaterialNotSendable(f"{error}；未发送任何内容") from error
        if not intact:
            raise MaterialNotSendable(f"{AlteredMaterial(ref)}；未发送任何内容")


def _refs(materials: list[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(m["file_ref"] for m in materials if m.get("file_ref")))


def _described(material: Mapping[str, Any], stored: Mapping[str, StoredMaterial], **extra: Any) -> dict[str, Any]:
    found = stored[material["file_ref"]]
    return {**material, "media_type": found.media_type, "sha256": found.sha256, "size": found.size, **extra}
