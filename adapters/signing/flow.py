"""Signing one request, verifying one (a callback, an answer), and showing what was signed with secrets masked.

Signing, in the order RECIPE-SPEC.md fixes: make the timestamp (and nonce); place app id / timestamp / nonce;
build the text from the request as it now is; sign; place the signature. Verifying rebuilds the same text from
what arrived and checks, in order: companions present, app id, timestamp within `max_skew_s`, the signature,
and only then the nonce, so a forged request cannot burn one. `shown` is what a person may read: the text
(a keyed digest's secret as `<secret>`), the values added where, the signature and what it was computed with.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.signing.algorithms import SECRET_MARK, SigningKey, VerifyingKeys, keyed_text, sign, verify
from adapters.signing.model import Place, Placement, Recipe, SignedText
from adapters.signing.text import PlacementError, WireRequest, place, read, signed_text, without


class SignatureError(Exception):
    """A signed request or answer that must be refused; the message says why (never the expected signature)."""


class NonceStore(Protocol):
    """Where seen nonces are remembered (a `set` will do for one process).

    Nonces only need keeping for the skew window: older requests fail the timestamp check anyway.
    A store shared by several workers should make `add` atomic with the membership test.
    """

    def __contains__(self, nonce: object) -> bool: ...

    def add(self, nonce: str) -> None: ...


@dataclass(frozen=True)
class Signed:
    """One signed request: the request as it goes on the wire, the text signed, the signature, what was added."""

    request: WireRequest
    text: str
    signature: str
    added: tuple[tuple[Place, str], ...]  # (where, value), the signature last


def _timestamp(now: float, unit: str) -> str:
    return str(int(now * 1000) if unit == "ms" else int(now))


def sign_request(recipe: Recipe, key: SigningKey, request: WireRequest, *, now: float,
                 nonce: str | None = None) -> Signed:
    """`request` signed per `recipe` at epoch seconds `now` (`nonce`: a fixed one, for samples and tests)."""
    companions: dict[str, str] = {"timestamp": _timestamp(now, recipe.timestamp)}
    if recipe.needs_nonce():
        companions["nonce"] = nonce or uuid.uuid4().hex
    if key.app_id:
        companions["app_id"] = key.app_id
    added: list[tuple[Place, str]] = []
    for name, value in companions.items():
        where = recipe.place.companion(name)
        if where is not None:
            request = place(request, where, value)
            added.append((where, value))
    text = signed_text(recipe.text, request, companions, recipe.body_digest)
    signature = sign(recipe, key, text)
    added.append((recipe.place.signature, signature))
    return Signed(place(request, recipe.place.signature, signature), text, signature, tuple(added))


_DIGITS = re.compile(r"[0-9]{1,16}")


def verify_request(recipe: Recipe, keys: VerifyingKeys, request: WireRequest, *, now: float,
                   seen_nonces: NonceStore, app_id: str | None = None, text: SignedText | None = None,
                   placement: Placement | None = None, unit: str | None = None) -> None:
    """Accept `request` signed per `recipe`, or raise `SignatureError`.

    `app_id`: the app id it must carry (None: not checked). `text`, `placement`, `unit` override the recipe's
    (an answer's own, `AnswerCheck`). For an answer, `request` holds the method, path and query of the request
    it answers and the answer's own headers and body.
    """
    try:
        _verify(recipe, keys, request, now=now, seen_nonces=seen_nonces, app_id=app_id, text=text or recipe.text,
                placement=placement or recipe.place, unit=unit or recipe.timestamp)
    except PlacementError as exc:  # a body field in a body that is no JSON object: unsigned, as far as we can tell
        raise SignatureError(str(exc)) from None


def _verify(recipe: Recipe, keys: VerifyingKeys, request: WireRequest, *, now: float, seen_nonces: NonceStore,
            app_id: str | None, text: SignedText, placement: Placement, unit: str) -> None:
    arrived: dict[str, str] = {}
    for name in ("timestamp", "nonce", "signature", "app_id"):
        where = placement.signature if name == "signature" else placement.companion(name)
        if where is None or (name == "app_id" and app_id is None and "app_id" not in text.names()):
            continue
        value = read(request, where)
        if value is None:
            raise SignatureError(f"missing {where}")
        arrived[name] = value
    if app_id is not None and placement.app_id is not None and arrived.get("app_id") != app_id:
        raise SignatureError(f"unknown app id in {placement.app_id.name}")
    if "app_id" not in arrived and app_id is not None:
        arrived["app_id"] = app_id
    if placement.timestamp is not None:
        _check_skew(arrived["timestamp"], placement.timestamp, unit, now, recipe.max_skew_s)
    signed = signed_text(text, without(request, placement.signature), arrived, recipe.body_digest)
    if not verify(recipe, keys, signed, arrived["signature"]):
        raise SignatureError("signature does not match")
    nonce = arrived.get("nonce")
    if nonce is not None:
        if nonce in seen_nonces:
            raise SignatureError(f"{placement.nonce.name if placement.nonce else 'nonce'} already used "
                                 "(replayed request)")
        seen_nonces.add(nonce)


def _check_skew(timestamp: str, where: Place, unit: str, now: float, max_skew_s: int) -> None:
    if not _DIGITS.fullmatch(timestamp):
        raise SignatureError(f"{where.name} is not epoch {'milliseconds' if unit == 'ms' else 'seconds'}")
    seconds = int(timestamp) / 1000 if unit == "ms" else int(timestamp)
    if abs(now - seconds) > max_skew_s:
        raise SignatureError(f"{where.name} is more than {max_skew_s} s away from our clock")


_SHOWN_AS = {"header": "headers", "query": "query", "body": "body"}  # where a value goes -> its key in `added`


def _computed_with(recipe: Recipe) -> str:
    if recipe.symmetric:
        return f"the shared secret {recipe.secret.ref if recipe.secret else ''}".rstrip()
    return f"our private key cert:{recipe.key}"


def show(recipe: Recipe, signed: Signed) -> dict[str, Any]:
    """The signing as a person may read it: `algorithm`, `text` (a keyed digest's secret shown as `<secret>`),
    `added` ({"headers"|"query"|"body": {name: value}}), `signature`, `computed_with` (the secret's or key's
    reference: the signature was computed from it and shows nothing of it)."""
    text = signed.text
    if recipe.keyed_digest and recipe.secret_in_text is not None:
        text = keyed_text(text, SECRET_MARK, recipe.secret_in_text)
    added: dict[str, dict[str, str]] = {"headers": {}, "query": {}, "body": {}}
    for where, value in signed.added:
        added[_SHOWN_AS[where.where]][where.name] = value
    return {"algorithm": recipe.algorithm, "encoding": recipe.encoding, "text": text,
            "added": {k: v for k, v in added.items() if v}, "signature": signed.signature,
            "computed_with": _computed_with(recipe)}


WITHHELD = "<computed when sent>"


def withheld(shown: Mapping[str, Any], recipe: Recipe) -> dict[str, Any]:
    """`shown` without the signature (a preview: a valid signature there could be replayed within the skew)."""
    where = recipe.place.signature
    added = {k: dict(v) for k, v in shown["added"].items()}
    added[_SHOWN_AS[where.where]][where.name] = WITHHELD
    return {**shown, "added": added, "signature": WITHHELD}
