"""The ferry's batch: one immutable file, sealed by one side and opened by the other (adapters/FERRY-FORMAT.md).

`seal(...)` makes a batch's bytes and digest: the entries' bodies enveloped under a fresh content key (SM4-GCM or
AES-256-GCM) wrapped to the peer's certificate, and a manifest (channel, seq, previous digest, sender, each
entry's id, type, idempotency key, content type, size and digest, the payload's size and digest, a signal's
content) signed with our key. `open_batch(...)` checks a file in the order the format document gives and returns
a `Batch`, or raises `BatchRefused(code, reason)`: a stable snake_case code for quarantine and metrics, and a
sentence for a person, never key material nor a body. Hostile bytes (not ours, cut short, wrong types, numbers
too large) are refused, never a crash.

`keys_from_store(store, own, peer)` reads a side's keys from its certificate store; `check_keys(keys)` says early
whether the credentials can seal and open at all (`KeyUnfit`).

Clocks: `now` decides only whether the signer's certificate is valid (with `FerryKeys.tolerance` for drift)
and is written as an informative `sealed_at`; sequencing, chaining and duplicates never read a clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from adapters.kinds.ferry import keys as keyring
from adapters.kinds.ferry.keys import KeyUnfit
from certstore.algorithms import NONCE_BYTES, TAG_BYTES, AesGcm, CryptoError, FieldCipher, Sm4Gcm
from certstore.credentials import Credential, CredentialSource
from mappings import strict_json

FORMAT = "yiwang-ferry/1"
MAGIC = FORMAT.encode("ascii") + b"\n"  # the file's first line: what it is, and which version of the format
MANIFEST_BYTES = 4 * 1024 * 1024  # the manifest line's cap (about 10 000 entries), apart from the payload cap
SIGNATURE_BYTES = 16 * 1024  # the signature line's cap (an RSA-8192 signature is 1.4 KB of base64)
MAX_COUNT = 2**63 - 1  # seq, sizes, counters: what a BIGINT column holds
ENTRY_TYPES = ("message", "control", "answer", "decision")
CIPHERS: Mapping[str, FieldCipher] = {c.name: c for c in (Sm4Gcm(), AesGcm())}
REFUSAL_CODES = ("unreadable", "truncated", "too_large", "content_type", "unknown_signer", "bad_signature",
                 "expired_key", "bad_envelope", "digest_mismatch", "wrong_channel")
ENVELOPE_BYTES = NONCE_BYTES + TAG_BYTES  # what the cipher adds to the entries' bodies
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # channels and senders: they end up in file names
_TEXT_MAX = 512  # ids, keys, content types
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    id: str  # message id, unique per sender (uuid4 hex)
    type: str  # one of ENTRY_TYPES
    body: bytes = field(repr=False)  # usually UTF-8 JSON; may hold personal data: never logged
    key: str | None = None  # the idempotency key (messages, answers)
    content_type: str = "application/json"


@dataclass(frozen=True)
class Batch:
    """What `open_batch` returns: verified, opened, every body checked against its digest."""

    channel: str
    seq: int  # 0 for a signal
    previous: str  # previous batch's digest on the channel ("" for seq 1 and for signals)
    digest: str  # this batch's digest (hex SHA-256 of its canonical manifest)
    sender: str  # the sending side's name
    entries: tuple[Entry, ...]
    signal: Mapping[str, Any] | None  # {"receipts": [[from, to], ...]} or {"beacon": {...}}, + "counter"
    signer: str  # fingerprint of the certificate that verified it
    sealed_at: str = ""  # the sender's clock when sealing (ISO 8601): for people, never for ordering


@dataclass(frozen=True)
class FerryKeys:
    own: Credential  # WITH private key: signs, unwraps content keys
    peer: Sequence[Credential]  # the other side's trusted certificates: verify (any), wrap to peer[0]
    tolerance: timedelta = timedelta(hours=24)  # clock drift allowed when checking validity
    # Our earlier credentials (with keys) still in their rotation overlap: the other side may wrap to one of
    # them until it has our new certificate, so content keys wrapped to them still unwrap. Never sign with them.
    own_previous: Sequence[Credential] = ()


def keys_from_store(credentials: CredentialSource, own: str, peer: str) -> FerryKeys:
    """One side's keys from its certificate store: our current credential, our earlier ones still in their
    rotation overlap (their keys unwrap what the other side still wraps to them), and the peer's trusted
    certificates. Read at each use (the store caches): a rotation on either side takes effect at once."""
    ours = credentials.trusted(own)  # the current first, then those still in their overlap
    return FerryKeys(own=credentials.current(own), peer=tuple(credentials.trusted(peer)),
                     own_previous=tuple(c for c in ours[1:] if c.private_key_pem is not None))


@dataclass(frozen=True)
class Limits:
    batch_bytes: int = 16 * 1024 * 1024  # the entries' bodies together
    message_bytes: int = 4 * 1024 * 1024  # one entry's body
    content_types: tuple[str, ...] = ("application/json", "application/zip", "application/xml", "text/plain")


class BatchRefused(Exception):
    """A batch not sealed or not opened: `code` (one of REFUSAL_CODES) and `reason` (a sentence)."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class _Facts:
    """One entry as the manifest describes it."""

    id: str
    type: str
    key: str | None
    content_type: str
    size: int
    digest: str


@dataclass(frozen=True)
class _Manifest:
    channel: str
    seq: int
    previous: str
    sender: str
    sealed_at: str
    signal: Mapping[str, Any] | None
    entries: tuple[_Facts, ...]
    cipher: str
    recipient: str
    wrap: str
    wrapped_key: bytes
    payload_size: int
    payload_digest: str


def _canonical(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only: one text per manifest, so one digest, and never a newline inside."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_keys(keys: FerryKeys) -> None:
    """`KeyUnfit` naming what is wrong, before any batch is sealed (a kind's check, an agent's start): our
    credential holds an SM2 or RSA key belonging to its certificate, and every peer certificate is SM2 or RSA."""
    keyring.check_pair(keys.own)
    if not keys.peer:
        raise KeyUnfit("no peer certificate to wrap content keys to and verify signatures with")
    for peer in keys.peer:
        keyring.family(peer)


# --- sealing -------------------------------------------------------------------------------------------------


def seal(*, channel: str, seq: int, previous: str, entries: Sequence[Entry], keys: FerryKeys, sender: str,
         cipher: str = "sm4-gcm", limits: Limits = Limits(), signal: Mapping[str, Any] | None = None,
         now: datetime) -> tuple[bytes, str]:
    """The batch file's bytes (before any wrapper) and its digest.

    `BatchRefused` (too_large, content_type) for entries the limits refuse; `ValueError` for a caller's mistake
    (an unknown cipher, a signal with a seq, a batch without one, an entry type not in ENTRY_TYPES...);
    `KeyUnfit` for a credential the ferry cannot use."""
    chosen = _chosen_cipher(cipher)
    signal = _plain(signal)
    _check_sequence(channel, seq, previous, sender, entries, signal)
    _within_limits([(e.content_type, len(e.body)) for e in entries], limits)
    if not keys.peer:
        raise KeyUnfit("no peer certificate to wrap the content key to")
    recipient = keys.peer[0]
    content_key = os.urandom(chosen.key_bytes)
    wrap_method, wrapped = keyring.wrap(recipient, content_key)
    header: dict[str, Any] = {
        "format": FORMAT, "channel": channel, "seq": seq, "previous": previous, "sender": sender,
        "sealed_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "signal": signal,
        "entries": [{"id": e.id, "type": e.type, "key": e.key, "content_type": e.content_type,
                     "size": len(e.body), "digest": _sha256(e.body)} for e in entries],
        "envelope": {"cipher": chosen.name, "recipient": recipient.fingerprint, "wrap": wrap_method,
                     "key": _b64(wrapped)},
    }
    payload = chosen.seal(content_key, b"".join(e.body for e in entries), _canonical(header))
    manifest = _canonical({**header, "payload": {"size": len(payload), "digest": _sha256(payload)}})
    algorithm, signature = keyring.sign(keys.own, manifest)
    signature_line = _canonical({"algorithm": algorithm, "signer": keys.own.fingerprint, "value": _b64(signature)})
    return MAGIC + manifest + b"\n" + signature_line + b"\n" + payload, _sha256(manifest)


def _plain(signal: Mapping[str, Any] | None) -> Any:
    """The signal as the receiver will read it (tuples become lists), so both sides check the same thing."""
    if signal is None:
        return None
    try:
        plain = json.loads(json.dumps(signal, allow_nan=False))
    except (TypeError, ValueError):
        raise ValueError("cannot seal this batch: a signal holds only JSON values") from None
    return plain


def _chosen_cipher(name: str) -> FieldCipher:
    try:
        return CIPHERS[name]
    except KeyError:
        raise ValueError(f"unknown ferry cipher {name!r}; choose one of {', '.join(CIPHERS)}") from None


def _check_sequence(channel: str, seq: int, previous: str, sender: str, entries: Sequence[Entry],
                    signal: Mapping[str, Any] | None) -> None:
    problem = (_shape_problem(channel, seq, previous, sender, signal)
               or _entries_problem([(e.id, e.type, e.key, e.content_type) for e in entries], signal is not None))
    if problem:
        raise ValueError(f"cannot seal this batch: {problem}")


def _within_limits(items: Sequence[tuple[str, int]], limits: Limits) -> None:
    """BatchRefused unless every (content type, size) is allowed and the sizes fit the caps."""
    for content_type, size in items:
        if content_type not in limits.content_types:
            raise BatchRefused("content_type", f"content type {content_type[:80]!r} is not on the allow-list")
        if size > limits.message_bytes:
            raise BatchRefused("too_large", f"an entry of {size} bytes is over the cap of {limits.message_bytes}")
    total = sum(size for _, size in items)
    if total > limits.batch_bytes:
        raise BatchRefused("too_large", f"{total} bytes of entries are over the batch cap of {limits.batch_bytes}")


def _shape_problem(channel: Any, seq: Any, previous: Any, sender: Any, signal: Any) -> str | None:
    """What is wrong with a batch's sequencing fields, or None. Shared by seal (a caller's mistake) and open
    (a file that is not ours)."""
    if not isinstance(channel, str) or not _NAME.fullmatch(channel):
        return "the channel is not a name of letters, digits, '_', '.', '-'"
    if not isinstance(sender, str) or not _NAME.fullmatch(sender):
        return "the sender is not a name of letters, digits, '_', '.', '-'"
    if not _is_count(seq):
        return "the seq is not a whole number in range"
    if not isinstance(previous, str) or not (previous == "" or _HEX64.fullmatch(previous)):
        return "the previous digest is not a hex SHA-256"
    if signal is None:
        if seq < 1:
            return "a batch has a seq of 1 or more"
        if seq == 1 and previous:
            return "the first batch on a channel has no previous digest"
        if seq > 1 and not previous:
            return "a batch after the first names the previous batch's digest"
        return None
    if seq != 0 or previous:
        return "a signal has seq 0 and no previous digest"
    return _signal_problem(signal)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _signal_problem(signal: Any) -> str | None:
    if not isinstance(signal, Mapping):
        return "a signal is an object"
    if not _is_count(signal.get("counter")) or signal["counter"] < 1:
        return "a signal carries a counter of 1 or more"
    if ("receipts" in signal) == ("beacon" in signal):
        return "a signal carries either receipts or a beacon"
    if "receipts" in signal:
        receipts = signal["receipts"]
        if not isinstance(receipts, list) or not all(_is_range(r) for r in receipts):
            return "receipts are a list of [from, to] seq ranges"
        return None
    beacon = signal["beacon"]
    if not isinstance(beacon, Mapping) or not _is_count(beacon.get("last_seq")):
        return "a beacon names its last_seq"
    last_digest = beacon.get("last_digest")
    if not isinstance(last_digest, str) or not (last_digest == "" or _HEX64.fullmatch(last_digest)):
        return "a beacon names its last_digest (hex SHA-256, or empty before the first batch)"
    return None


def _is_range(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(_is_count(v) for v in value)
            and 1 <= value[0] <= value[1])


def _entries_problem(entries: Sequence[tuple[Any, Any, Any, Any]], is_signal: bool) -> str | None:
    """(id, type, key, content type) of each entry: what is wrong, or None."""
    if is_signal and entries:
        return "a signal carries no entries"
    ids = [entry_id for entry_id, *_ in entries]
    for entry_id, entry_type, key, content_type in entries:
        if not _is_text(entry_id) or not entry_id:
            return "an entry id is a non-empty text of at most 512 characters"
        if entry_type not in ENTRY_TYPES:
            return f"an entry type is one of {', '.join(ENTRY_TYPES)}"
        if key is not None and not _is_text(key):
            return "an idempotency key is a text of at most 512 characters"
        if not _is_text(content_type) or not content_type:
            return "a content type is a non-empty text"
    if len(set(ids)) != len(ids):
        return "entry ids are unique within a batch"
    return None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= _TEXT_MAX and value.isprintable()


# --- opening -------------------------------------------------------------------------------------------------


def open_batch(data: bytes, *, keys: FerryKeys, limits: Limits = Limits(), now: datetime,
               channel: str | None = None) -> Batch:
    """The verified, opened batch in `data` (unwrapped bytes); `BatchRefused` with the first check it fails:
    layout (too_large, truncated, unreadable), limits (too_large, content_type), signer (unknown_signer,
    bad_signature, expired_key), channel (wrong_channel), payload (digest_mismatch), envelope (bad_envelope)."""
    manifest_bytes, signature_bytes, payload = _split(data, limits)
    manifest = _read_manifest(manifest_bytes)
    _within_limits([(f.content_type, f.size) for f in manifest.entries], limits)
    if len(payload) < manifest.payload_size:
        raise BatchRefused("truncated", f"the payload has {len(payload)} of its {manifest.payload_size} bytes")
    if len(payload) > manifest.payload_size:
        raise BatchRefused("unreadable", "there are bytes after the payload")
    signer = _verified_signer(manifest_bytes, signature_bytes, keys, now)
    if channel is not None and manifest.channel != channel:
        raise BatchRefused("wrong_channel", f"a batch of channel {manifest.channel!r} arrived on {channel!r}")
    if _sha256(payload) != manifest.payload_digest:
        raise BatchRefused("digest_mismatch", "the payload does not match the digest its manifest names")
    plaintext = _opened_payload(manifest_bytes, manifest, payload, keys)
    return Batch(channel=manifest.channel, seq=manifest.seq, previous=manifest.previous,
                 digest=_sha256(manifest_bytes), sender=manifest.sender, entries=_entries(manifest, plaintext),
                 signal=manifest.signal, signer=signer.fingerprint, sealed_at=manifest.sealed_at)


def peek(data: bytes) -> tuple[str, int] | None:
    """(channel, seq) as the manifest of `data` names them, NOT verified: for a file's name and wrapper, and
    for tests that must know which batch a file is. None if `data` does not read as a batch."""
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MANIFEST_BYTES)
    try:
        doc = strict_json.loads(data[len(MAGIC):end]) if end > 0 else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or _shape_problem(doc.get("channel"), doc.get("seq"), doc.get("previous"),
                                                   doc.get("sender"), doc.get("signal")):
        return None
    return doc["channel"], doc["seq"]


def _split(data: bytes, limits: Limits) -> tuple[bytes, bytes, bytes]:
    """(manifest line, signature line, payload); too_large, truncated or unreadable before any parsing."""
    if len(data) > len(MAGIC) + MANIFEST_BYTES + SIGNATURE_BYTES + limits.batch_bytes + ENVELOPE_BYTES:
        raise BatchRefused("too_large", f"a file of {len(data)} bytes is over the batch cap")
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise BatchRefused("truncated", "the file ends before its first line")
        raise BatchRefused("unreadable", f"not a ferry batch (it does not start with {FORMAT!r})")
    manifest, rest = _line(data[len(MAGIC):], MANIFEST_BYTES, "manifest")
    signature, payload = _line(rest, SIGNATURE_BYTES, "signature")
    return manifest, signature, payload


def _line(data: bytes, cap: int, what: str) -> tuple[bytes, bytes]:
    end = data.find(b"\n", 0, cap + 1)
    if end < 0:
        if len(data) <= cap:
            raise BatchRefused("truncated", f"the file ends inside its {what} line")
        raise BatchRefused("too_large", f"the {what} line is longer than {cap} bytes")
    return data[:end], data[end + 1:]


def _json_object(line: bytes, what: str) -> dict[str, Any]:
    try:
        document = strict_json.loads(line)
    except (ValueError, RecursionError):  # JsonRefused and JSONDecodeError are ValueErrors
        raise BatchRefused("unreadable", f"the {what} is not JSON as the format writes it") from None
    if not isinstance(document, dict):
        raise BatchRefused("unreadable", f"the {what} is not a JSON object")
    if _canonical(document) != line:  # one text per manifest: its digest names it alone
        raise BatchRefused("unreadable", f"the {what} is not in canonical form (sorted keys, no spaces, ASCII)")
    return document


def _read_manifest(line: bytes) -> _Manifest:
    doc = _json_object(line, "manifest")
    if doc.get("format") != FORMAT:
        raise BatchRefused("unreadable", f"the manifest's format is not {FORMAT!r}")
    signal, envelope, payload = doc.get("signal"), doc.get("envelope"), doc.get("payload")
    sealed_at = doc.get("sealed_at")
    problem = _shape_problem(doc.get("channel"), doc.get("seq"), doc.get("previous"), doc.get("sender"), signal)
    if problem:
        raise _unreadable(problem)
    facts = _entry_facts(doc.get("entries"), signal is not None)
    problem = _envelope_problem(envelope) or _payload_problem(payload, facts)
    if problem or not isinstance(envelope, dict) or not isinstance(payload, dict):
        raise _unreadable(problem or "the envelope and the payload are objects")
    return _Manifest(channel=doc["channel"], seq=doc["seq"], previous=doc["previous"], sender=doc["sender"],
                     sealed_at=sealed_at if isinstance(sealed_at, str) else "", signal=signal, entries=facts,
                     cipher=envelope["cipher"], recipient=envelope["recipient"], wrap=envelope["wrap"],
                     wrapped_key=base64.b64decode(envelope["key"]), payload_size=payload["size"],
                     payload_digest=payload["digest"])


def _unreadable(problem: str) -> BatchRefused:
    return BatchRefused("unreadable", f"the manifest is not one the format allows: {problem}")


def _entry_facts(raw: Any, is_signal: bool) -> tuple[_Facts, ...]:
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise _unreadable("the entries are a list of objects")
    problem = _entries_problem([(e.get("id"), e.get("type"), e.get("key"), e.get("content_type")) for e in raw],
                               is_signal)
    if problem:
        raise _unreadable(problem)
    facts = []
    for entry in raw:
        size, digest = entry.get("size"), entry.get("digest")
        if not _is_count(size) or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _unreadable("an entry names its size and its digest (hex SHA-256)")
        facts.append(_Facts(entry["id"], entry["type"], entry.get("key"), entry["content_type"], size, digest))
    return tuple(facts)


def _envelope_problem(envelope: Any) -> str | None:
    if not isinstance(envelope, dict):
        return "the envelope is an object"
    if envelope.get("cipher") not in CIPHERS or envelope.get("wrap") not in keyring.WRAPS.values():
        return "the envelope names a cipher and a wrap method the format knows"
    recipient, key = envelope.get("recipient"), envelope.get("key")
    if not isinstance(recipient, str) or not _HEX64.fullmatch(recipient):
        return "the envelope's recipient is a certificate fingerprint"
    if not isinstance(key, str) or len(key) > 4096 or not _decodes(key):
        return "the envelope's key is base64"
    return None


def _decodes(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _payload_problem(payload: Any, facts: Sequence[_Facts]) -> str | None:
    if not isinstance(payload, dict) or not _is_count(payload.get("size")):
        return "the payload names its size"
    if not isinstance(payload.get("digest"), str) or not _HEX64.fullmatch(payload["digest"]):
        return "the payload names its digest (hex SHA-256)"
    if payload["size"] != sum(f.size for f in facts) + ENVELOPE_BYTES:
        return "the payload's size is not the entries' sizes and the cipher's nonce and tag"
    return None


def _verified_signer(manifest: bytes, signature_line: bytes, keys: FerryKeys, now: datetime) -> Credential:
    doc = _json_object(signature_line, "signature line")
    algorithm, fingerprint, value = doc.get("algorithm"), doc.get("signer"), doc.get("value")
    if not (isinstance(algorithm, str) and isinstance(fingerprint, str) and isinstance(value, str)
            and _decodes(value)):
        raise BatchRefused("unreadable", "the signature line names an algorithm, a signer and a base64 value")
    signer = next((peer for peer in keys.peer if peer.fingerprint == fingerprint), None)
    if signer is None:
        raise BatchRefused("unknown_signer", f"signed by certificate {fingerprint[:16]!r}…, not one we trust")
    if not keyring.verifies(signer, algorithm, manifest, base64.b64decode(value)):
        raise BatchRefused("bad_signature", f"the signature does not verify with certificate {signer.name!r}")
    _check_validity(signer, keys.tolerance, now)
    return signer


def _check_validity(signer: Credential, tolerance: timedelta, now: datetime) -> None:
    certificate = signer.certificate
    at = now if now.tzinfo else now.replace(tzinfo=UTC)
    if certificate.not_valid_after_utc + tolerance < at:
        raise BatchRefused("expired_key", f"certificate {signer.name!r} expired at "
                           f"{certificate.not_valid_after_utc.isoformat()} (tolerance {tolerance})")
    if certificate.not_valid_before_utc - tolerance > at:
        raise BatchRefused("expired_key", f"certificate {signer.name!r} is valid only from "
                           f"{certificate.not_valid_before_utc.isoformat()} (tolerance {tolerance})")


def _opened_payload(manifest_bytes: bytes, manifest: _Manifest, payload: bytes, keys: FerryKeys) -> bytes:
    recipient = next((own for own in (keys.own, *keys.own_previous) if own.fingerprint == manifest.recipient),
                     None)
    if recipient is None:
        raise BatchRefused("bad_envelope", "the content key is wrapped to another certificate than ours")
    content_key = keyring.unwrap(recipient, manifest.wrap, manifest.wrapped_key)
    cipher = CIPHERS[manifest.cipher]
    if content_key is None or len(content_key) != cipher.key_bytes:
        raise BatchRefused("bad_envelope", "the content key does not unwrap with our key")
    header = json.loads(manifest_bytes)
    del header["payload"]  # the associated data is the manifest as it was before the payload was known
    try:
        return cipher.open(content_key, payload, _canonical(header))
    except CryptoError:
        raise BatchRefused("bad_envelope", "the payload does not open with its content key") from None


def _entries(manifest: _Manifest, plaintext: bytes) -> tuple[Entry, ...]:
    entries, at = [], 0
    for facts in manifest.entries:
        body = plaintext[at:at + facts.size]
        at += facts.size
        if len(body) != facts.size or _sha256(body) != facts.digest:
            raise BatchRefused("digest_mismatch", f"entry {facts.id!r} does not match its digest")
        entries.append(Entry(id=facts.id, type=facts.type, body=body, key=facts.key,
                             content_type=facts.content_type))
    if at != len(plaintext):
        raise BatchRefused("digest_mismatch", "the payload holds more than its entries")
    return tuple(entries)
