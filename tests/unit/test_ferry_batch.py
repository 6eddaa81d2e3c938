"""The ferry's batch format (adapters/kinds/ferry/batch.py, adapters/FERRY-FORMAT.md): what one side seals the
other opens, with SM2 or RSA keys and either cipher; a changed byte, a stranger's key, an expired certificate,
a cut file, a file over the caps or of a content type not allowed, and hostile bytes are each refused with
their own code, never a crash and never a key in the message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.kinds.ferry.batch import (
    MAGIC,
    REFUSAL_CODES,
    Batch,
    BatchRefused,
    Entry,
    FerryKeys,
    Limits,
    check_keys,
    open_batch,
    peek,
    seal,
)
from adapters.kinds.ferry import keys as keyring
from adapters.kinds.ferry.batch import KeyUnfit
from certstore import Credential
from tests.support.pki import TestCA, new_key, sm2_credential

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CHANNEL = "public_security.down"
MESSAGE = Entry("7f3c", "message", b'{"operation": "submit_case", "message": {"name": "\xe7\x8e\x8b"}}',
                key="case-1:submit_case")
BUNDLE = Entry("8a41", "control", b"PK\x03\x04 a zip", content_type="application/zip")


@dataclass(frozen=True)
class Link:
    """Both sides' keys for one link: `near` seals, `far` opens (and the other way round)."""

    near: FerryKeys
    far: FerryKeys


def _sm2(name: str, days: float = 30, now: datetime = NOW) -> Credential:
    certificate, key = sm2_credential(name, days, now=now)
    return Credential(name, certificate, key)


def _rsa(name: str, ca: TestCA) -> Credential:
    issued = ca.issue(name, key=new_key("rsa"))
    return Credential(name, issued.cert_pem, issued.key_pem)


def _link(near: Credential, far: Credential) -> Link:
    return Link(FerryKeys(near, [_public(far)]), FerryKeys(far, [_public(near)]))


def _public(credential: Credential) -> Credential:
    return Credential(credential.name, credential.certificate_pem)


@pytest.fixture(scope="module")
def sm2_link() -> Link:
    return _link(_sm2("yiwang-ferry"), _sm2("public_security-ferry"))


@pytest.fixture(scope="module")
def rsa_link() -> Link:
    ca = TestCA(now=NOW)
    return _link(_rsa("yiwang-ferry", ca), _rsa("public_security-ferry", ca))


def _seal(keys: FerryKeys, *, seq: int = 1, previous: str = "", entries: tuple[Entry, ...] = (MESSAGE, BUNDLE),
          **options: Any) -> tuple[bytes, str]:
    return seal(channel=CHANNEL, seq=seq, previous=previous, entries=entries, keys=keys, sender="gateway",
                now=NOW, **options)


def _refused(data: bytes, keys: FerryKeys, **options: Any) -> BatchRefused:
    with pytest.raises(BatchRefused) as caught:
        open_batch(data, keys=keys, now=options.pop("now", NOW), **options)
    for secret in (keys.own.private_key_pem or b"").splitlines()[1:-1]:
        assert secret.decode() not in str(caught.value)
    return caught.value


def _lines(data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    manifest, signature, payload = data[len(MAGIC):].split(b"\n", 2)
    return json.loads(manifest), json.loads(signature), payload


def _file(manifest: dict[str, Any], signature: dict[str, Any], payload: bytes) -> bytes:
    def line(document: dict[str, Any]) -> bytes:
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + line(manifest) + b"\n" + line(signature) + b"\n" + payload


@pytest.mark.parametrize("cipher", ["sm4-gcm", "aes-256-gcm"])
@pytest.mark.parametrize("keys", ["sm2_link", "rsa_link"])
def test_what_one_side_seals_the_other_opens(keys: str, cipher: str, request: pytest.FixtureRequest) -> None:
    link: Link = request.getfixturevalue(keys)
    data, digest = _seal(link.near, cipher=cipher)
    batch = open_batch(data, keys=link.far, now=NOW, channel=CHANNEL)
    assert batch == Batch(channel=CHANNEL, seq=1, previous="", digest=digest, sender="gateway",
                          entries=(MESSAGE, BUNDLE), signal=None, signer=link.near.own.fingerprint,
                          sealed_at="2026-12-07T12:00:00+00:00")
    assert [e.body for e in batch.entries] == [MESSAGE.body, BUNDLE.body]
    manifest, signature, payload = _lines(data)
    assert digest == hashlib.sha256(data.split(b"\n")[1]).hexdigest()  # the canonical manifest line
    assert manifest["envelope"]["cipher"] == cipher
    assert signature["algorithm"] == ("sm2-sm3" if keys == "sm2_link" else "rsa-pss-sha256")
    assert MESSAGE.body not in data and b"submit_case\"" not in payload  # the bodies travel enveloped


def test_the_far_side_answers_the_same_way(sm2_link: Link) -> None:
    answer = Entry("c0de", "answer", b'{"message": "7f3c", "outcome": "ok"}', key="case-1:submit_case")
    data, _ = seal(channel="public_security.up", seq=1, previous="", entries=[answer], keys=sm2_link.far,
                   sender="far", now=NOW)
    assert open_batch(data, keys=sm2_link.near, now=NOW).entries == (answer,)


def test_batches_chain_by_the_previous_digest(sm2_link: Link) -> None:
    _, first = _seal(sm2_link.near)
    data, second = _seal(sm2_link.near, seq=2, previous=first)
    batch = open_batch(data, keys=sm2_link.far, now=NOW)
    assert (batch.seq, batch.previous, batch.digest) == (2, first, second)


def test_a_signal_carries_receipts_or_a_beacon_and_no_entries(sm2_link: Link) -> None:
    receipts = {"counter": 4, "receipts": [[1, 3], [5, 5]]}
    beacon = {"counter": 5, "beacon": {"last_seq": 9, "last_digest": "ab" * 32}}
    data, _ = _seal(sm2_link.near, seq=0, entries=(), signal={"counter": 1, "receipts": [(1, 2)]})  # tuples
    assert open_batch(data, keys=sm2_link.far, now=NOW).signal == {"counter": 1, "receipts": [[1, 2]]}
    for signal in (receipts, beacon):
        data, _ = _seal(sm2_link.near, seq=0, entries=(), signal=signal)
        batch = open_batch(data, keys=sm2_link.far, now=NOW)
        assert (batch.seq, batch.previous, batch.entries, batch.signal) == (0, "", (), signal)
    for mistake in ({"receipts": [[1, 2]]}, {"counter": 1}, {"counter": 1, "receipts": [[3, 2]]},
                    {"counter": 1, "beacon": {"last_seq": -1, "last_digest": ""}}, {"counter": 1, "beacon": {1, 2}},
                    {"counter": True, "receipts": []}):
        with pytest.raises(ValueError, match="cannot seal"):
            _seal(sm2_link.near, seq=0, entries=(), signal=mistake)
    with pytest.raises(ValueError, match="no entries"):
        _seal(sm2_link.near, seq=0, signal=receipts)


@pytest.mark.parametrize(("seq", "previous"), [(0, ""), (2, ""), (1, "ab" * 32), (-1, ""), (2, "not hex")])
def test_sequencing_mistakes_are_the_callers(sm2_link: Link, seq: int, previous: str) -> None:
    with pytest.raises(ValueError, match="cannot seal"):
        _seal(sm2_link.near, seq=seq, previous=previous)


def test_entry_mistakes_are_the_callers(sm2_link: Link) -> None:
    for entries in ((MESSAGE, MESSAGE), (replace(MESSAGE, type="query_status"),), (replace(MESSAGE, id=""),)):
        with pytest.raises(ValueError, match="cannot seal"):
            _seal(sm2_link.near, entries=entries)
    with pytest.raises(ValueError, match="cipher"):
        _seal(sm2_link.near, cipher="des")


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _signature_flipped(data: bytes) -> bytes:
    manifest, signature, payload = _lines(data)
    raw = bytearray(base64.b64decode(signature["value"]))
    raw[len(raw) // 2] ^= 0x01
    return _file(manifest, {**signature, "value": base64.b64encode(bytes(raw)).decode()}, payload)


def _manifest_changed(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def changed(data: bytes) -> bytes:
        manifest, signature, payload = _lines(data)
        change(manifest)
        return _file(manifest, signature, payload)
    return changed


def _payload_swapped(data: bytes) -> bytes:
    """Another ciphertext, its digest put into the manifest: the signature no longer covers it."""
    manifest, signature, payload = _lines(data)
    other = _flip(payload, 0)
    manifest["payload"]["digest"] = hashlib.sha256(other).hexdigest()
    return _file(manifest, signature, other)


@pytest.mark.parametrize(("tamper", "code"), [
    (lambda data: _flip(data, len(data) - 1), "digest_mismatch"),  # the last byte of the ciphertext
    (_payload_swapped, "bad_signature"),
    (_signature_flipped, "bad_signature"),
    (_manifest_changed(lambda m: m.update(seq=2, previous="ab" * 32)), "bad_signature"),
    (_manifest_changed(lambda m: m["entries"][0].update(key="case-2:submit_case")), "bad_signature"),
    (_manifest_changed(lambda m: m["envelope"].update(cipher="aes-256-gcm")), "bad_signature"),
    (lambda data: _flip(data, len(MAGIC) + 3), "unreadable"),  # a byte of the manifest's JSON syntax
], ids=["ciphertext", "ciphertext-and-digest", "signature", "seq", "idempotency-key", "cipher", "manifest-byte"])
@pytest.mark.parametrize("keys", ["sm2_link", "rsa_link"])
def test_one_changed_byte_is_refused(keys: str, tamper: Callable[[bytes], bytes], code: str,
                                     request: pytest.FixtureRequest) -> None:
    link: Link = request.getfixturevalue(keys)
    data, _ = _seal(link.near)
    assert _refused(tamper(data), link.far).code == code


@pytest.mark.parametrize("keys", ["sm2_link", "rsa_link"])
def test_a_stranger_signing_is_an_unknown_signer_and_a_forger_a_bad_signature(keys: str,
                                                                              request: pytest.FixtureRequest) -> None:
    link: Link = request.getfixturevalue(keys)
    stranger = FerryKeys(_sm2("stranger"), link.near.peer)
    data, _ = _seal(stranger)
    assert _refused(data, link.far).code == "unknown_signer"
    manifest, signature, payload = _lines(data)
    forged = _file(manifest, {**signature, "signer": link.near.own.fingerprint}, payload)  # names the near side
    assert _refused(forged, link.far).code == "bad_signature"


def test_a_batch_wrapped_to_another_certificate_does_not_open(sm2_link: Link) -> None:
    data, _ = _seal(sm2_link.near)
    third = FerryKeys(_sm2("third"), sm2_link.far.peer)  # trusts the near side, but is not the recipient
    assert _refused(data, third).code == "bad_envelope"
    manifest, signature, payload = _lines(data)
    wrapped = bytearray(base64.b64decode(manifest["envelope"]["key"]))
    wrapped[-1] ^= 0x01
    manifest["envelope"]["key"] = base64.b64encode(bytes(wrapped)).decode()
    assert _refused(_file(manifest, signature, payload), sm2_link.far).code == "bad_signature"  # signed too


def test_a_changed_content_key_is_a_bad_envelope_even_when_signed(sm2_link: Link, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    wrap = keyring.wrap
    monkeypatch.setattr(keyring, "wrap", lambda recipient, key: wrap(recipient, bytes(len(key))))
    data, _ = _seal(sm2_link.near)  # signed, but the key inside the envelope is not the one that sealed
    assert _refused(data, sm2_link.far).code == "bad_envelope"


def test_an_envelope_moved_under_another_manifest_does_not_open(sm2_link: Link) -> None:
    """Even one who holds the near side's signing key, but not the content key, cannot put batch 1's payload
    under batch 2's manifest: the manifest is the cipher's associated data."""
    first, first_digest = _seal(sm2_link.near)
    second, _ = _seal(sm2_link.near, seq=2, previous=first_digest)
    manifest, _, _ = _lines(second)
    moved, _, payload = _lines(first)
    manifest.update(envelope=moved["envelope"], payload=moved["payload"])
    line = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    algorithm, signature = keyring.sign(sm2_link.near.own, line)
    resigned = {"algorithm": algorithm, "signer": sm2_link.near.own.fingerprint,
                "value": base64.b64encode(signature).decode()}
    assert _refused(_file(manifest, resigned, payload), sm2_link.far).code == "bad_envelope"


def test_an_expired_certificate_is_refused_beyond_the_tolerance(sm2_link: Link) -> None:
    old = _sm2("yiwang-ferry-2025", days=30, now=NOW - timedelta(days=30))  # expired an hour before NOW
    near = FerryKeys(old, sm2_link.near.peer)
    data, _ = _seal(near)
    far = FerryKeys(sm2_link.far.own, [_public(old)], tolerance=timedelta(hours=24))
    assert open_batch(data, keys=far, now=NOW).signer == old.fingerprint  # an hour late: within tolerance
    refused = _refused(data, replace(far, tolerance=timedelta(minutes=30)))
    assert refused.code == "expired_key" and "expired" in refused.reason
    assert _refused(data, far, now=NOW + timedelta(days=1)).code == "expired_key"


def test_a_certificate_not_yet_valid_is_refused_beyond_the_tolerance(sm2_link: Link) -> None:
    future = _sm2("yiwang-ferry-2027", days=30, now=NOW + timedelta(hours=10))  # valid from 9 hours ahead
    data, _ = _seal(FerryKeys(future, sm2_link.near.peer))
    far = FerryKeys(sm2_link.far.own, [_public(future)], tolerance=timedelta(hours=24))
    assert open_batch(data, keys=far, now=NOW).seq == 1  # the far side's clock is behind: tolerated
    assert _refused(data, replace(far, tolerance=timedelta(hours=1))).code == "expired_key"


def test_any_trusted_certificate_verifies(sm2_link: Link) -> None:
    rotated = _sm2("yiwang-ferry-next")
    data, _ = _seal(FerryKeys(rotated, sm2_link.near.peer))
    far = FerryKeys(sm2_link.far.own, [*sm2_link.far.peer, _public(rotated)])  # the overlap window
    assert open_batch(data, keys=far, now=NOW).signer == rotated.fingerprint


def test_after_our_rotation_what_was_wrapped_to_our_previous_certificate_still_opens(sm2_link: Link) -> None:
    data, _ = _seal(sm2_link.near)  # the near side has not yet heard of the far side's new certificate
    rotated = _sm2("public_security-ferry-next")
    far = FerryKeys(rotated, sm2_link.far.peer, own_previous=[sm2_link.far.own])
    assert open_batch(data, keys=far, now=NOW).entries == (MESSAGE, BUNDLE)
    assert _refused(data, replace(far, own_previous=())).code == "bad_envelope"


def test_a_batch_for_another_channel_is_refused(sm2_link: Link) -> None:
    data, _ = _seal(sm2_link.near)
    assert _refused(data, sm2_link.far, channel="public_security.up").code == "wrong_channel"


@pytest.mark.parametrize("where", ["empty", "magic", "after-magic", "manifest", "signature", "payload", "last"])
def test_a_cut_file_is_truncated(sm2_link: Link, where: str) -> None:
    data, _ = _seal(sm2_link.near)
    manifest_end = data.index(b"\n", len(MAGIC))
    signature_end = data.index(b"\n", manifest_end + 1)
    cut = {"empty": 0, "magic": 5, "after-magic": len(MAGIC), "manifest": manifest_end - 7,
           "signature": signature_end - 3, "payload": signature_end + 20, "last": len(data) - 1}[where]
    assert _refused(data[:cut], sm2_link.far).code == "truncated"


def test_the_caps_refuse_when_sealing_and_when_opening(sm2_link: Link) -> None:
    small = Limits(batch_bytes=1000, message_bytes=100)
    big = replace(MESSAGE, body=b"x" * 101)
    with pytest.raises(BatchRefused) as caught:
        _seal(sm2_link.near, entries=(big,), limits=small)
    assert caught.value.code == "too_large"
    many = tuple(Entry(f"e{i}", "message", b"y" * 100) for i in range(11))
    with pytest.raises(BatchRefused, match="batch cap"):
        _seal(sm2_link.near, entries=many, limits=small)
    data, _ = _seal(sm2_link.near, entries=(big,))
    assert _refused(data, sm2_link.far, limits=small).code == "too_large"
    assert _refused(b"x" * (5 * 1024 * 1024 + 2000), sm2_link.far, limits=small).code == "too_large"


def test_only_allowed_content_types_cross(sm2_link: Link) -> None:
    executable = Entry("e1", "control", b"MZ", content_type="application/x-msdownload")
    with pytest.raises(BatchRefused) as caught:
        _seal(sm2_link.near, entries=(executable,))
    assert caught.value.code == "content_type"
    data, _ = _seal(sm2_link.near)  # JSON and a zip: allowed when sealed
    json_only = Limits(content_types=("application/json",))
    assert _refused(data, sm2_link.far, limits=json_only).code == "content_type"


def _hostile(sm2_link: Link) -> dict[str, bytes]:
    data, _ = _seal(sm2_link.near)
    manifest, signature, payload = _lines(data)
    first, rest = data[len(MAGIC):].split(b"\n", 1)

    def with_manifest(**fields: Any) -> bytes:
        return _file({**manifest, **fields}, signature, payload)
    return {
        "empty-ish": b"\x00" * 64,
        "not-ours": b'{"channel": "x"}',
        "utf16": MAGIC + "{}".encode("utf-16") + b"\n{}\n",
        "not-json": MAGIC + b"{nope\n{}\n",
        "a-list": MAGIC + b"[1,2]\n{}\n",
        "spaced": MAGIC + json.dumps(manifest).encode() + b"\n" + rest,
        "duplicate-key": MAGIC + b'{"seq":1,' + first[1:] + b"\n" + rest,
        "seq-text": with_manifest(seq="1"),
        "seq-bool": with_manifest(seq=True),
        "seq-huge": with_manifest(seq=2**64),
        "seq-float": MAGIC + first.replace(b'"seq":1,', b'"seq":1.0,') + b"\n" + rest,
        "deep": MAGIC + b"[" * 100_000 + b"]" * 100_000 + b"\n{}\n",
        "number-digits": MAGIC + b'{"seq":' + b"9" * 5000 + b"}\n{}\n",
        "entries-not-list": with_manifest(entries={"id": 1}),
        "entry-size-negative": with_manifest(entries=[{**manifest["entries"][0], "size": -1}]),
        "entry-size-huge": with_manifest(entries=[{**manifest["entries"][0], "size": 10**30}]),
        "entry-type": with_manifest(entries=[{**manifest["entries"][0], "type": "query_status"}]),
        "envelope-missing": with_manifest(envelope=None),
        "cipher-unknown": with_manifest(envelope={**manifest["envelope"], "cipher": "rot13"}),
        "payload-size": with_manifest(payload={**manifest["payload"], "size": 3}),
        "format": with_manifest(format="yiwang-ferry/2"),
        "signature-not-json": MAGIC + first + b"\nnope\n" + payload,
        "signature-value": _file(manifest, {**signature, "value": "***"}, payload),
        "trailing-bytes": data + b"more",
        "channel-path": with_manifest(channel="../../etc"),
    }


def test_hostile_bytes_are_unreadable_never_a_crash(sm2_link: Link) -> None:
    for name, data in _hostile(sm2_link).items():
        refused = _refused(data, sm2_link.far)
        assert refused.code == "unreadable", (name, refused)
        assert refused.code in REFUSAL_CODES and refused.reason


def test_every_refusal_code_is_stable_and_named() -> None:
    with pytest.raises(ValueError):
        BatchRefused("something_else", "no")
    assert str(BatchRefused("truncated", "cut")) == "truncated: cut"


def test_peek_names_channel_and_seq_unverified(sm2_link: Link) -> None:
    data, _ = _seal(sm2_link.near, seq=1)
    assert peek(data) == (CHANNEL, 1)
    assert peek(b"garbage") is None and peek(MAGIC + b"{") is None


@pytest.mark.parametrize("keys", ["sm2_link", "rsa_link"])
def test_usable_keys_are_checked_before_any_batch(keys: str, request: pytest.FixtureRequest) -> None:
    link: Link = request.getfixturevalue(keys)
    check_keys(link.near)
    check_keys(link.far)
    mismatched = Credential("mixed", link.near.own.certificate_pem, link.far.own.private_key_pem)
    with pytest.raises(KeyUnfit, match="does not belong to its certificate"):
        check_keys(FerryKeys(mismatched, link.near.peer))
    with pytest.raises(KeyUnfit, match="no peer certificate"):
        check_keys(FerryKeys(link.near.own, []))
    with pytest.raises(KeyUnfit, match="no private key"):
        check_keys(FerryKeys(_public(link.near.own), link.near.peer))
    ec = TestCA(now=NOW).issue("p-256")
    with pytest.raises(KeyUnfit, match="SM2 or RSA"):
        check_keys(FerryKeys(link.near.own, [Credential("p256", ec.cert_pem)]))


def test_a_key_the_ferry_cannot_use_is_said(sm2_link: Link) -> None:
    ec = TestCA(now=NOW).issue("p-256")
    with pytest.raises(KeyUnfit, match="SM2 or RSA"):
        _seal(FerryKeys(Credential("p256", ec.cert_pem, ec.key_pem), sm2_link.near.peer))
    with pytest.raises(KeyUnfit, match="no private key"):
        _seal(FerryKeys(_public(sm2_link.near.own), sm2_link.near.peer))


def test_no_changed_or_cut_file_opens_or_crashes(sm2_link: Link) -> None:
    """Seeded: 400 files each with a few bytes changed, dropped or doubled, or cut: every one refused."""
    rng = random.Random(19)
    data, _ = _seal(sm2_link.near)
    codes = set()
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            if not mutated:
                break
            at = rng.randrange(len(mutated))
            match rng.randrange(4):
                case 0:
                    mutated[at] ^= 1 << rng.randrange(8)
                case 1:
                    del mutated[at]
                case 2:
                    mutated.insert(at, mutated[at])
                case _:
                    del mutated[at:]
        if bytes(mutated) != data:
            codes.add(_refused(bytes(mutated), sm2_link.far).code)
    assert codes <= set(REFUSAL_CODES) and {"unreadable", "truncated", "bad_signature"} <= codes
