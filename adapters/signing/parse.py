"""Reading a descriptor's `auth: {type: signature, ...}` into a `Recipe`, and the old forms' translations.

Every error is an `AuthSpecError` naming the field (`auth.text.parts: unknown part 'x' (known: ...)`).
`hmac_recipe` and `rsa_recipe` state the `hmac` and `rsa_signature` forms as recipes (RECIPE-SPEC.md), so
there is one signing path. `legacy_warning` is the validation warning a legacy algorithm earns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from adapters.signing.model import (
    ALGORITHMS,
    COMPANIONS,
    DIGEST_ALGORITHMS,
    ENCODINGS,
    KEY_ALGORITHMS,
    KEYED_PARTS,
    LEGACY_ALGORITHMS,
    PLACES,
    SIMPLE_PARTS,
    AnswerCheck,
    BodyDigest,
    Part,
    Place,
    Placement,
    Recipe,
    SecretInText,
    SignedText,
    Sm2Options,
    Where,
)
from adapters.spec_fields import Fields, SecretRef, Text

RECIPE_KEYS = frozenset({"app_id", "secret", "key", "text", "timestamp", "body_digest", "algorithm", "secret_in_text",
                         "legacy", "sm2", "encoding", "place", "max_skew_s", "answers"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_NAME = re.compile(r"[^\s&=]+")


def _one_of(f: Fields, key: str, choices: tuple[str, ...], default: str) -> str:
    value = f.spec.get(key, default)
    if value not in choices:
        raise f.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


def _sub(f: Fields, key: str, allowed: frozenset[str]) -> Fields:
    value = f.spec.get(key)
    if not isinstance(value, Mapping):
        raise f.fail(key, f"expected a mapping with {', '.join(sorted(allowed))}")
    return _Sub(value, f"{f.where}.{key}", allowed)


class _Sub(Fields):
    """A sub-mapping: unknown keys refused like the top level's, but `type` is not special there."""

    def __init__(self, spec: Mapping[Any, Any], where: str, allowed: frozenset[str]) -> None:
        self.spec, self.where = spec, where
        unknown = sorted(str(k) for k in spec if k not in allowed)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _part(f: Fields, item: Any) -> Part:
    known = ", ".join((*SIMPLE_PARTS, *(f"{{{k}: ...}}" for k in KEYED_PARTS)))
    if isinstance(item, str):
        if item not in SIMPLE_PARTS:
            raise f.fail("parts", f"unknown part {item!r} (known: {known})")
        return Part(item)
    if isinstance(item, Mapping) and len(item) == 1:
        (name, argument), = item.items()
        if name not in KEYED_PARTS:
            raise f.fail("parts", f"unknown part {name!r} (known: {known})")
        if not isinstance(argument, str) or (name == "header" and not _HEADER_NAME.fullmatch(argument)):
            raise f.fail(f"parts.{name}", f"expected {'a header name' if name == 'header' else 'a string'}, "
                                          f"got {argument!r}")
        return Part(name, argument)
    raise f.fail("parts", f"expected a part name or a one-key mapping, got {item!r}")


def _text(f: Fields, default: SignedText | None = None) -> SignedText:
    if default is not None and "text" not in f.spec:
        return default
    text = _sub(f, "text", frozenset({"parts", "joiner"}))
    parts = text.spec.get("parts")
    if not isinstance(parts, list) or not parts:
        raise text.fail("parts", "expected a non-empty list of parts")
    joiner = text.spec.get("joiner", "\n")
    if not isinstance(joiner, str):
        raise text.fail("joiner", f"expected a string (\"\" allowed), got {joiner!r}")
    return SignedText(tuple(_part(text, item) for item in parts), joiner)


def _place(f: Fields, key: str) -> Place | None:
    value = f.spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) != 1:
        raise f.fail(key, f"expected one of {{header: N}}, {{query: N}}, {{body: N}}, got {value!r}")
    (where, name), = value.items()
    if where not in PLACES:
        raise f.fail(key, f"unknown place {where!r} (known: {', '.join(PLACES)})")
    pattern = _HEADER_NAME if where == "header" else _FIELD_NAME
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise f.fail(f"{key}.{where}", f"not a {where} name: {name!r}")
    return Place(cast(Where, where), name)


def _placement(f: Fields, text: SignedText, default: Placement | None = None) -> Placement:
    if default is not None and "place" not in f.spec:
        return default
    place = _sub(f, "place", frozenset({"signature", *COMPANIONS}))
    signature = _place(place, "signature")
    if signature is None:
        raise place.fail("signature", "required")
    placement = Placement(signature, *(_place(place, name) for name in COMPANIONS))
    for name in ("timestamp", "nonce"):  # the receiver must find what was signed
        if name in text.names() and placement.companion(name) is None:
            raise f.fail("text.parts", f"{name} is signed but place.{name} says nowhere it is sent")
    return placement


def _secret_in_text(f: Fields) -> SecretInText:
    value = f.spec.get("secret_in_text")
    if value in ("prefix", "suffix"):
        return SecretInText(value)
    if isinstance(value, Mapping) and set(value) == {"field"} and isinstance(value["field"], str) \
            and _FIELD_NAME.fullmatch(value["field"]):
        return SecretInText("field", value["field"])
    raise f.fail("secret_in_text", f"expected prefix, suffix or {{field: NAME}}, got {value!r}")


def _sm2(f: Fields) -> Sm2Options:
    if "sm2" not in f.spec:
        return Sm2Options()
    sm2 = _sub(f, "sm2", frozenset({"id", "z", "signature"}))
    ident = sm2.spec.get("id", Sm2Options.id)
    if not isinstance(ident, str) or not ident or not ident.isascii():
        raise sm2.fail("id", f"expected a non-empty ASCII string, got {ident!r}")
    return Sm2Options(ident, sm2.flag("z", True), cast(Any, _one_of(sm2, "signature", ("der", "raw"), "der")))


def _body_digest(f: Fields) -> BodyDigest:
    if "body_digest" not in f.spec:
        return BodyDigest()
    digest = _sub(f, "body_digest", frozenset({"algorithm", "encoding"}))
    return BodyDigest(_one_of(digest, "algorithm", ("sha256", "sm3"), "sha256"),
                      _one_of(digest, "encoding", ("hex", "base64"), "hex"))


def _answers(f: Fields, recipe: Recipe) -> AnswerCheck | None:
    if "answers" not in f.spec:
        return None
    answers = _sub(f, "answers", frozenset({"verify", "text", "place", "timestamp"}))
    verify = answers.spec.get("verify")
    if verify == "secret":
        if not recipe.symmetric:
            raise answers.fail("verify", f"{recipe.algorithm} answers are checked with the sector's certificate "
                                         "(cert:NAME), not a secret")
        name = None
    else:
        if recipe.symmetric:
            raise answers.fail("verify", f"{recipe.algorithm} answers are checked with `secret` (the shared secret)")
        name = answers.credential("verify")
    text = _text(answers, recipe.text)
    timestamp = _one_of(answers, "timestamp", ("s", "ms"), recipe.timestamp)
    return AnswerCheck(name, text, _placement(answers, text, recipe.place), cast(Any, timestamp))


def parse_recipe(f: Fields) -> Recipe:
    """The recipe of one `type: signature` mapping (`f` reads it, keys already checked against RECIPE_KEYS)."""
    algorithm = f.spec.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise f.fail("algorithm", f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    legacy = f.flag("legacy", False)
    if algorithm in LEGACY_ALGORITHMS and not legacy:
        raise f.fail("algorithm", f"{algorithm} is a legacy algorithm: refused unless `legacy: true` is set")
    if legacy and algorithm not in LEGACY_ALGORITHMS:
        raise f.fail("legacy", f"only for {', '.join(LEGACY_ALGORITHMS)}, not {algorithm}")
    keyed = algorithm in KEY_ALGORITHMS
    if keyed and "secret" in f.spec:
        raise f.fail("secret", f"{algorithm} signs with our private key (`key: cert:NAME`), not a secret")
    if not keyed and "key" in f.spec:
        raise f.fail("key", f"{algorithm} signs with the shared secret (`secret`), not a key")
    digest = algorithm in DIGEST_ALGORITHMS or algorithm in ("md5", "sha1")
    if "secret_in_text" in f.spec and not digest:
        raise f.fail("secret_in_text", "only for keyed digests (sha256, sm3, md5, sha1)")
    if "sm2" in f.spec and algorithm != "sm2-sm3":
        raise f.fail("sm2", "only for sm2-sm3")
    text = _text(f)
    app_id: Text | None = f.text_or_secret("app_id") if "app_id" in f.spec else None
    if "app_id" in text.names() and app_id is None:
        raise f.fail("text.parts", "app_id is signed but the recipe names no app_id")
    recipe = Recipe(
        algorithm=algorithm, text=text, place=_placement(f, text), app_id=app_id,
        secret=None if keyed else f.secret("secret"), key=f.credential("key") if keyed else None,
        timestamp=cast(Any, _one_of(f, "timestamp", ("s", "ms"), "ms")), body_digest=_body_digest(f),
        secret_in_text=_secret_in_text(f) if digest else None, legacy=legacy, sm2=_sm2(f),
        encoding=_one_of(f, "encoding", ENCODINGS, "base64"), max_skew_s=f.positive_int("max_skew_s", 300),
    )
    return replace(recipe, answers=_answers(f, recipe))


def legacy_warning(recipe: Recipe, where: str) -> str | None:
    """The validation warning of a recipe on a legacy algorithm (None for every other)."""
    if not recipe.legacy:
        return None
    return (f"{where}.algorithm: {recipe.algorithm} is a legacy algorithm (collisions are practical): accepted "
            "because `legacy: true` is set; ask the sector for hmac-sha256 or sm2-sm3")


# --------------------------------------------------------------------------- the old forms as recipes

_OLD_PARTS = {"method": Part("method"), "path": Part("path"), "timestamp": Part("timestamp"),
              "nonce": Part("nonce"), "body_sha256": Part("body_digest")}


def old_form_recipe(*, form: str, algorithm: str, canonical: tuple[str, ...], headers: Mapping[str, str],
                    key_id: Text | None, secret: SecretRef | None = None, key: str | None = None,
                    max_skew_s: int = 300) -> Recipe:
    """`hmac` / `rsa_signature` as a recipe: the canonical parts joined with newlines, epoch-ms timestamp,
    base64, the X-Ca-* headers (or those named), uuid4 nonce; `rsa_signature` without `key_id` sends our
    certificate's SHA-256 fingerprint."""
    place = Placement(Place("header", headers["signature"]), Place("header", headers["key_id"]),
                      Place("header", headers["timestamp"]), Place("header", headers["nonce"]))
    return Recipe(algorithm=algorithm, text=SignedText(tuple(_OLD_PARTS[name] for name in canonical), "\n"),
                  place=place, app_id=key_id, secret=secret, key=key, timestamp="ms",
                  encoding="base64", max_skew_s=max_skew_s, form=form,
                  app_id_is_fingerprint=form == "rsa_signature" and key_id is None)

