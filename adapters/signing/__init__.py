"""Signing recipes (issue 17, RECIPE-SPEC.md): how a sector wants a request signed, as data a bundle declares.

The contract: a `Recipe` (frozen, secret and certificate *references* only) names the parts of the signed
text and their joiner, the algorithm (HMAC-SHA256/384/512, HMAC-SM3, SHA-256/SM3 keyed digests, RSA-SHA256,
RSA-PSS-SHA256, SM2-SM3; MD5/SHA-1 only with `legacy: true`), the output encoding, and where the signature
and its companions (app id, timestamp, nonce) go: headers, query parameters or a body field. The same recipe
verifies what a sector signs (callbacks, answers). The old `hmac` and `rsa_signature` forms are recipes too
(`old_form_recipe`), so every signature goes through this package.

Public API:
- `parse_recipe(fields)` / `old_form_recipe(...)` -> `Recipe`; `legacy_warning(recipe, where)`;
- `WireRequest` (what goes on the wire) and `sign_request(recipe, key, request, now=...)` -> `Signed`;
- `verify_request(recipe, keys, request, now=..., seen_nonces=...)`, raising `SignatureError`;
- `signing_key(recipe, credential)` -> `SigningKey`, `verifying_keys(recipe, trusted)` -> `VerifyingKeys`;
- `show(recipe, signed)`: the signing with secrets masked (CLI `adapters sign`, dead letters); `withheld(shown,
  recipe)` the same without the signature (a preview); `sample_request(json)`: a sector team's sample request.
Imports `adapters.spec_fields`, `adapters.secrets`, `certstore` (SM2 from `certstore.sm2`); no HTTP library.
"""

from adapters.signing.algorithms import (
    SECRET_MARK,
    SigningKey,
    SigningKeyError,
    VerifyingKeys,
    signing_key,
    verifying_keys,
)
from adapters.signing.flow import (
    WITHHELD,
    NonceStore,
    SignatureError,
    Signed,
    show,
    sign_request,
    verify_request,
    withheld,
)
from adapters.signing.model import ALGORITHMS, ENCODINGS, AnswerCheck, Part, Place, Placement, Recipe, SignedText
from adapters.signing.parse import RECIPE_KEYS, legacy_warning, old_form_recipe, parse_recipe
from adapters.signing.text import FORM_MEDIA_TYPE, PlacementError, WireRequest, sample_request

__all__ = [
    "ALGORITHMS", "ENCODINGS", "FORM_MEDIA_TYPE", "RECIPE_KEYS", "SECRET_MARK", "WITHHELD",
    "AnswerCheck", "NonceStore", "Part", "Place", "Placement", "PlacementError", "Recipe", "SignatureError",
    "Signed", "SignedText", "SigningKey", "SigningKeyError", "VerifyingKeys", "WireRequest",
    "legacy_warning", "old_form_recipe", "parse_recipe", "sample_request", "show", "sign_request", "signing_key",
    "verify_request", "verifying_keys", "withheld",
]  # fmt: skip
