"""The algorithms and output encodings of a recipe, and the keys they sign and verify with.

`SigningKey` holds what one side signs with (the shared secret, or our RSA / SM2 private key) and the app id
it sends; `VerifyingKeys` what a signature is checked against (the shared secret, or the public keys of every
trusted version of a certificate). HMAC and keyed digests compare the encoded signature in constant time;
RSA and SM2 verify against each public key. SM2 goes through `certstore.sm2` (GmSSL); SM3 and HMAC-SM3
through `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hmac import HMAC

from adapters.secrets import Secret
from adapters.signing.model import Recipe, SecretInText
from adapters.signing.text import as_bytes
from adapters.spec_fields import resolve_text
from certstore.credentials import Credential
from certstore.sm2 import Sm2Key, is_sm2_certificate, is_sm2_key, sm2_key, sm2_public_key, sm2_sign, sm2_verify

SECRET_MARK = "<secret>"  # what a shown text has where a keyed digest's secret goes


class SigningKeyError(ValueError):
    """The key a recipe names cannot sign or verify (no private key, the wrong kind of key)."""


@dataclass(frozen=True)
class SigningKey:
    secret: Secret | None = None
    rsa: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    sm2: Sm2Key | None = field(default=None, repr=False)
    app_id: str | None = None


@dataclass(frozen=True)
class VerifyingKeys:
    secret: Secret | None = None
    public: tuple[rsa.RSAPublicKey | bytes, ...] = ()  # RSA keys, SM2 points (64 bytes)


def private_key(recipe: Recipe, credential: Credential, where: str = "auth.key") -> rsa.RSAPrivateKey | Sm2Key:
    """Our private key of `credential`, of the kind the recipe's algorithm needs."""
    pem = credential.private_key_pem
    if pem is None:
        raise SigningKeyError(f"{where}: credential {credential.name!r} has no private key to sign with")
    if recipe.algorithm == "sm2-sm3":
        if not is_sm2_key(pem):
            raise SigningKeyError(f"{where}: credential {credential.name!r} is not an SM2 key")
        ours = sm2_key(pem)
        # The Z value covers our public key: a PKCS#8 file without it takes it from the certificate.
        return ours if ours.public else Sm2Key(ours.private, sm2_public_key(credential.certificate_pem))
    key = None if is_sm2_key(pem) else serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"{where}: credential {credential.name!r} is not an RSA key")
    return key


def public_keys(credentials: Sequence[Credential]) -> tuple[rsa.RSAPublicKey | bytes, ...]:
    """The public key of each certificate (RSA or SM2); others (EC P-256...) cannot check a recipe's signature."""
    found: list[rsa.RSAPublicKey | bytes] = []
    for credential in credentials:
        if is_sm2_certificate(credential.certificate_pem):
            found.append(sm2_public_key(credential.certificate_pem))
            continue
        key = x509.load_pem_x509_certificates(credential.certificate_pem)[0].public_key()
        if isinstance(key, rsa.RSAPublicKey):
            found.append(key)
    return tuple(found)


def encode(raw: bytes, encoding: str) -> str:
    if encoding == "hex":
        return raw.hex()
    if encoding == "hex_upper":
        return raw.hex().upper()
    if encoding == "base64url":
        return base64.urlsafe_b64encode(raw).decode("ascii")
    return base64.b64encode(raw).decode("ascii")


def decode(text: str, encoding: str) -> bytes | None:
    """The signature's bytes, or None if `text` is not in `encoding` (hex either case, base64url unpadded too)."""
    try:
        if encoding in ("hex", "hex_upper"):
            return bytes.fromhex(text)
        if encoding == "base64url":
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


def keyed_text(text: str, secret: str, where: SecretInText) -> str:
    """What a keyed digest hashes: the text with the secret before, after, or as a trailing `&field=` field."""
    if where.position == "prefix":
        return secret + text
    if where.position == "suffix":
        return text + secret
    return f"{text}&{where.field}={secret}"


def _digest(name: str, data: bytes) -> bytes:
    if name == "sm3":
        hasher = hashes.Hash(hashes.SM3())
        hasher.update(data)
        return hasher.finalize()
    return hashlib.new(name, data).digest()


def _symmetric(recipe: Recipe, secret: Secret, text: str) -> bytes:
    key, data = secret.reveal().encode("utf-8"), as_bytes(text)
    if recipe.algorithm == "hmac-sm3":
        mac = HMAC(key, hashes.SM3())
        mac.update(data)
        return mac.finalize()
    if recipe.algorithm.startswith("hmac-"):
        return hmac.new(key, data, recipe.algorithm.removeprefix("hmac-")).digest()
    assert recipe.secret_in_text is not None  # parse gives every keyed digest one
    return _digest(recipe.algorithm, as_bytes(keyed_text(text, secret.reveal(), recipe.secret_in_text)))


def _rsa_padding(algorithm: str) -> padding.AsymmetricPadding:
    # PSS with a digest-length salt, as most verifiers expect.
    if algorithm == "rsa-pss-sha256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def _signer_id(recipe: Recipe) -> bytes | None:
    return recipe.sm2.id.encode("ascii") if recipe.sm2.z else None


def sign(recipe: Recipe, key: SigningKey, text: str) -> str:
    """The encoded signature of `text`."""
    if recipe.symmetric:
        if key.secret is None:
            raise SigningKeyError("auth.secret: no secret to sign with")
        raw = _symmetric(recipe, key.secret, text)
    elif recipe.algorithm == "sm2-sm3":
        if key.sm2 is None:
            raise SigningKeyError("auth.key: no SM2 key to sign with")
        raw = sm2_sign(key.sm2, as_bytes(text), signer_id=_signer_id(recipe), encoding=recipe.sm2.signature)
    else:
        if key.rsa is None:
            raise SigningKeyError("auth.key: no RSA key to sign with")
        raw = key.rsa.sign(as_bytes(text), _rsa_padding(recipe.algorithm), hashes.SHA256())
    return encode(raw, recipe.encoding)


def verify(recipe: Recipe, keys: VerifyingKeys, text: str, signature: str) -> bool:
    """Whether `signature` is the recipe's signature of `text` by one of `keys`."""
    if recipe.symmetric:
        if keys.secret is None:
            return False
        expected = encode(_symmetric(recipe, keys.secret, text), recipe.encoding)
        if recipe.encoding in ("hex", "hex_upper"):  # hex compares in either case
            expected, signature = expected.lower(), signature.lower()
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
    raw = decode(signature, recipe.encoding)
    if raw is None:
        return False
    return any(_verify_one(recipe, public, as_bytes(text), raw) for public in keys.public)


def _verify_one(recipe: Recipe, public: rsa.RSAPublicKey | bytes, data: bytes, raw: bytes) -> bool:
    if recipe.algorithm == "sm2-sm3":
        return isinstance(public, bytes) and sm2_verify(public, data, raw, signer_id=_signer_id(recipe),
                                                        encoding=recipe.sm2.signature)
    if isinstance(public, bytes):
        return False
    try:
        public.verify(raw, data, _rsa_padding(recipe.algorithm), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signing_key(recipe: Recipe, credential: Credential | None, where: str = "auth") -> SigningKey:
    """What `recipe` signs with, secrets read now (`SecretRefError` if one is missing): the shared secret, or
    the private key of `credential` (the one `recipe.key` names, as the certificate store gives it now)."""
    app_id = None if recipe.app_id is None else resolve_text(recipe.app_id)
    if recipe.symmetric:
        if recipe.secret is None:
            raise SigningKeyError(f"{where}.secret: required")
        return SigningKey(secret=recipe.secret.load(), app_id=app_id)
    if credential is None:
        raise SigningKeyError(f"{where}.key: no credential given for cert:{recipe.key}")
    if recipe.app_id_is_fingerprint:
        app_id = credential.fingerprint
    key = private_key(recipe, credential, f"{where}.key")
    if isinstance(key, Sm2Key):
        return SigningKey(sm2=key, app_id=app_id)
    return SigningKey(rsa=key, app_id=app_id)


def verifying_keys(recipe: Recipe, trusted: Sequence[Credential] = ()) -> VerifyingKeys:
    """What a signature by the other side is checked against: the shared secret (read now), or the public keys
    of every trusted version of their certificate."""
    if recipe.symmetric:
        return VerifyingKeys(secret=None if recipe.secret is None else recipe.secret.load())
    return VerifyingKeys(public=public_keys(trusted))
