"""The signing recipe as data: frozen, holding secret and certificate *references* only (RECIPE-SPEC.md).

A `Recipe` says which parts make the signed text and how they are joined, the algorithm and its key, the
output encoding, and where the signature and its companions (app id, timestamp, nonce) go. `parse.py` makes
one from a descriptor; nothing here touches a secret or the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from adapters.spec_fields import SecretRef, Text

SIMPLE_PARTS = ("method", "path", "query", "app_id", "timestamp", "nonce", "body", "body_digest", "form")
KEYED_PARTS = ("header", "literal")  # written as a one-key mapping: {header: Content-Type}, {literal: "v1"}

HMAC_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sm3")
DIGEST_ALGORITHMS = ("sha256", "sm3")  # a digest over the text with the secret in it (`secret_in_text`)
KEY_ALGORITHMS = ("rsa-sha256", "rsa-pss-sha256", "sm2-sm3")  # our private key from the certificate store
LEGACY_ALGORITHMS = ("hmac-md5", "hmac-sha1", "md5", "sha1")  # only with `legacy: true`
ALGORITHMS = HMAC_ALGORITHMS + DIGEST_ALGORITHMS + KEY_ALGORITHMS + LEGACY_ALGORITHMS
ENCODINGS = ("hex", "hex_upper", "base64", "base64url")
PLACES = ("header", "query", "body")
COMPANIONS = ("app_id", "timestamp", "nonce")

Where = Literal["header", "query", "body"]


@dataclass(frozen=True)
class Part:
    """One part of the signed text: a bare name (`method`), or `header`/`literal` with its argument."""

    name: str
    argument: str | None = None


@dataclass(frozen=True)
class SignedText:
    parts: tuple[Part, ...]
    joiner: str = "\n"

    def names(self) -> frozenset[str]:
        return frozenset(part.name for part in self.parts)


@dataclass(frozen=True)
class Place:
    """Where one value goes: a header, a query parameter, or a body field (JSON top level or form field)."""

    where: Where
    name: str

    def __str__(self) -> str:
        return {"header": "header", "query": "query parameter", "body": "body field"}[self.where] + f" {self.name}"


@dataclass(frozen=True)
class Placement:
    signature: Place
    app_id: Place | None = None
    timestamp: Place | None = None
    nonce: Place | None = None

    def companion(self, name: str) -> Place | None:
        place: Place | None = getattr(self, name)
        return place


@dataclass(frozen=True)
class BodyDigest:
    algorithm: str = "sha256"  # sha256 | sm3
    encoding: str = "hex"  # hex | base64


@dataclass(frozen=True)
class SecretInText:
    """Where a keyed digest puts the secret: before the text, after it, or as a trailing `&<field>=` field."""

    position: Literal["prefix", "suffix", "field"]
    field: str = "key"


@dataclass(frozen=True)
class Sm2Options:
    id: str = "1234567812345678"  # the distinguishing ID hashed into Z
    z: bool = True  # False: the text is hashed alone (no Z pre-hash)
    signature: Literal["der", "raw"] = "der"


@dataclass(frozen=True)
class AnswerCheck:
    """How the sector signs its answers: the recipe's text, placement and timestamp unless overridden."""

    verify: str | None  # the sector's certificate name (`cert:NAME`); None: the shared secret (`verify: secret`)
    text: SignedText
    place: Placement
    timestamp: Literal["s", "ms"]


@dataclass(frozen=True)
class Recipe:
    """A signing recipe; `form` is the descriptor form it was written in (`signature`, `hmac`, `rsa_signature`)."""

    algorithm: str
    text: SignedText
    place: Placement
    app_id: Text | None = None
    secret: SecretRef | None = None
    key: str | None = None  # the certificate-store name of our private key (rsa-*, sm2-sm3)
    timestamp: Literal["s", "ms"] = "ms"
    body_digest: BodyDigest = field(default_factory=BodyDigest)
    secret_in_text: SecretInText | None = None
    legacy: bool = False
    sm2: Sm2Options = field(default_factory=Sm2Options)
    encoding: str = "base64"
    max_skew_s: int = 300
    answers: AnswerCheck | None = None
    form: str = "signature"
    app_id_is_fingerprint: bool = False  # rsa_signature without key_id: our certificate's SHA-256 fingerprint
    type: ClassVar[str] = "signature"

    @property
    def symmetric(self) -> bool:
        """Signed with the shared secret (HMAC or keyed digest), not a private key."""
        return self.algorithm not in KEY_ALGORITHMS

    @property
    def keyed_digest(self) -> bool:
        return self.algorithm in ("sha256", "sm3", "md5", "sha1")

    def needs_nonce(self) -> bool:
        return self.place.nonce is not None or "nonce" in self.text.names()
