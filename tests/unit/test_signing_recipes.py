"""Signing recipes (adapters.signing): every part, algorithm, encoding and placement against values computed
here independently (hashlib, hmac, cryptography, GmSSL directly), the three sector dialects of issue 17,
legacy refusal, parse errors, verification (skew, replay, wrong key) and what is shown with secrets masked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import gmssl_pyx
import pytest
from asn1crypto.algos import DSASignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hmac import HMAC

from adapters.auth import AuthSpecError, parse_auth, verify_callback
from adapters.bundle import bundle_warnings, load_bundle, validate_bundle
from adapters.registry import default_bundles_dir
from adapters.secrets import Secret
from adapters.signing import (
    SECRET_MARK,
    Recipe,
    SignatureError,
    SigningKey,
    VerifyingKeys,
    WireRequest,
    legacy_warning,
    show,
    sign_request,
    signing_key,
    verify_request,
)
from certstore.credentials import Credential
from certstore.sm2 import Sm2Key, sm2_key, sm2_public_key
from tests.support.gateways import legacy_signing_bundle
from tests.support.pki import TestCA, sm2_store_entry

SECRET = "s3cr3t-组合"
NOW = 1_795_000_000.25  # epoch seconds
TS_MS, TS_S = "1795000000250", "1795000000"
BODY = json.dumps({"name": "王五", "n": 1}, ensure_ascii=False).encode()
KEY = SigningKey(secret=Secret(SECRET), app_id="app-1")
KEYS = VerifyingKeys(secret=Secret(SECRET))


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_SIGN", SECRET)


def recipe(**spec: Any) -> Recipe:
    spec = {"secret": {"secret": "env:YIWANG_TEST_SIGN"}, "text": {"parts": ["method", "path"], "joiner": "&"},
            "place": {"signature": {"header": "X-Sign"}}, "algorithm": "hmac-sha256", **spec}
    parsed = parse_auth({"type": "signature", **{k: v for k, v in spec.items() if v is not None}})
    assert isinstance(parsed, Recipe)
    return parsed


def request(body: bytes = BODY, content_type: str = "application/json", **extra: Any) -> WireRequest:
    return WireRequest("post", "/v1/cases/a%2Fb", (("b", "2"), ("a", "x y"), ("a", "1"), ("c", "é/")),
                       {"Content-Type": content_type, **extra}, body)


def signed_text_of(parts: list[Any], req: WireRequest | None = None, **spec: Any) -> str:
    return sign_request(recipe(text={"parts": parts, "joiner": "|"}, **spec), KEY, req or request(), now=NOW,
                        nonce="n-1").text


# --------------------------------------------------------------------------- parts


@pytest.mark.parametrize(("part", "expected"), [
    ("method", "POST"),
    ("path", "/v1/cases/a%2Fb"),  # as on the wire: escapes kept
    ("query", "a=1&a=x%20y&b=2&c=%C3%A9%2F"),  # sorted by key then value, RFC 3986, upper-case hex, %20
    ({"header": "content-type"}, "application/json"),
    ({"header": "X-Absent"}, ""),
    ("app_id", "app-1"),
    ("timestamp", TS_MS),
    ("nonce", "n-1"),
    ("body", BODY.decode()),
    ("body_digest", hashlib.sha256(BODY).hexdigest()),
    ({"literal": "v1"}, "v1"),
])  # fmt: skip
def test_each_part_of_the_signed_text(part: Any, expected: str) -> None:
    place = {"signature": {"header": "X-Sign"}, "timestamp": {"header": "X-Ts"}, "nonce": {"header": "X-Nonce"}}
    assert signed_text_of([part], app_id="app-1", place=place) == expected


def test_parts_join_in_order_with_any_joiner_and_timestamp_in_seconds() -> None:
    place = {"signature": {"header": "X-Sign"}, "timestamp": {"header": "X-Ts"}}
    r = recipe(text={"parts": ["method", {"literal": "x"}, "timestamp"], "joiner": ""}, timestamp="s", place=place)
    assert sign_request(r, KEY, request(), now=NOW).text == f"POSTx{TS_S}"


def test_body_digest_sm3_base64_and_form_part() -> None:
    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(BODY)
    expected = base64.b64encode(sm3.finalize()).decode()
    assert signed_text_of(["body_digest"], body_digest={"algorithm": "sm3", "encoding": "base64"}) == expected
    form = request(b"b=2&a=%E7%8E%8B+%E4%BA%94&c=", "application/x-www-form-urlencoded")
    assert signed_text_of(["form"], form) == "a=王 五&b=2&c="  # sorted by key, values decoded


# --------------------------------------------------------------------------- algorithms and encodings

TEXT = "POST&/v1/cases/a%2Fb"


def _sm3(data: bytes) -> bytes:
    return bytes(gmssl_pyx.sm3_hash(data))


def _hmac_sm3(key: bytes, data: bytes) -> bytes:
    mac = HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


EXPECTED_RAW = {
    "hmac-sha256": hmac.new(SECRET.encode(), TEXT.encode(), hashlib.sha256).digest(),
    "hmac-sha384": hmac.new(SECRET.encode(), TEXT.encode(), hashlib.sha384).digest(),
    "hmac-sha512": hmac.new(SECRET.encode(), TEXT.encode(), hashlib.sha512).digest(),
    "hmac-sm3": _hmac_sm3(SECRET.encode(), TEXT.encode()),
    "hmac-md5": hmac.new(SECRET.encode(), TEXT.encode(), hashlib.md5).digest(),
    "hmac-sha1": hmac.new(SECRET.encode(), TEXT.encode(), hashlib.sha1).digest(),
}
KEYED = {
    ("sha256", "prefix"): hashlib.sha256((SECRET + TEXT).encode()).digest(),
    ("sha256", "suffix"): hashlib.sha256((TEXT + SECRET).encode()).digest(),
    ("sm3", "prefix"): _sm3((SECRET + TEXT).encode()),
    ("sm3", "suffix"): _sm3((TEXT + SECRET).encode()),
    ("md5", "suffix"): hashlib.md5((TEXT + SECRET).encode()).digest(),  # noqa: S324 (the legacy being tested)
    ("sha1", "prefix"): hashlib.sha1((SECRET + TEXT).encode()).digest(),  # noqa: S324
}


@pytest.mark.parametrize("algorithm", sorted(EXPECTED_RAW))
def test_hmac_algorithms(algorithm: str) -> None:
    r = recipe(algorithm=algorithm, legacy=True if algorithm in ("hmac-md5", "hmac-sha1") else None)
    signed = sign_request(r, KEY, request(), now=NOW)
    assert signed.text == TEXT and signed.signature == base64.b64encode(EXPECTED_RAW[algorithm]).decode()
    verify_request(r, KEYS, signed.request, now=NOW, seen_nonces=set())


@pytest.mark.parametrize(("algorithm", "where"), sorted(KEYED))
def test_keyed_digests_with_the_secret_before_or_after(algorithm: str, where: str) -> None:
    r = recipe(algorithm=algorithm, secret_in_text=where, encoding="hex",
               legacy=True if algorithm in ("md5", "sha1") else None)
    signed = sign_request(r, KEY, request(), now=NOW)
    assert signed.signature == KEYED[(algorithm, where)].hex()
    verify_request(r, KEYS, signed.request, now=NOW, seen_nonces=set())


def test_keyed_digest_with_the_secret_as_a_key_field_and_shown_masked() -> None:
    r = recipe(algorithm="sha256", secret_in_text={"field": "key"}, encoding="hex")
    signed = sign_request(r, KEY, request(), now=NOW)
    assert signed.signature == hashlib.sha256(f"{TEXT}&key={SECRET}".encode()).hexdigest()
    shown = show(r, signed)
    assert shown["text"] == f"{TEXT}&key={SECRET_MARK}" and SECRET not in json.dumps(shown, ensure_ascii=False)
    assert shown["computed_with"] == "the shared secret env:YIWANG_TEST_SIGN"


@pytest.mark.parametrize(("encoding", "expected"), [
    ("hex", EXPECTED_RAW["hmac-sha256"].hex()),
    ("hex_upper", EXPECTED_RAW["hmac-sha256"].hex().upper()),
    ("base64", base64.b64encode(EXPECTED_RAW["hmac-sha256"]).decode()),
    ("base64url", base64.urlsafe_b64encode(EXPECTED_RAW["hmac-sha256"]).decode()),
])  # fmt: skip
def test_output_encodings(encoding: str, expected: str) -> None:
    assert sign_request(recipe(encoding=encoding), KEY, request(), now=NOW).signature == expected


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-pss-sha256"])
def test_rsa_signatures_verify_with_the_public_key(rsa_key: rsa.RSAPrivateKey, algorithm: str) -> None:
    r = recipe(algorithm=algorithm, secret=None, key="cert:ours")
    signed = sign_request(r, SigningKey(rsa=rsa_key), request(), now=NOW)
    pad = (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH) if algorithm == "rsa-pss-sha256"
           else padding.PKCS1v15())
    rsa_key.public_key().verify(base64.b64decode(signed.signature), TEXT.encode(), pad, hashes.SHA256())
    verify_request(r, VerifyingKeys(public=(rsa_key.public_key(),)), signed.request, now=NOW, seen_nonces=set())
    other = rsa.generate_private_key(65537, 2048).public_key()
    with pytest.raises(SignatureError, match="does not match"):
        verify_request(r, VerifyingKeys(public=(other,)), signed.request, now=NOW, seen_nonces=set())


@pytest.fixture(scope="module")
def sm2() -> Credential:
    return sm2_store_entry("licence")


@pytest.mark.parametrize(("sm2_options", "signer_id"), [
    ({}, b"1234567812345678"), ({"id": "ALICE123@YAHOO.COM"}, b"ALICE123@YAHOO.COM"), ({"z": False}, None),
])  # fmt: skip
def test_sm2_signatures_verify_with_gmssl(sm2: Credential, sm2_options: dict[str, Any],
                                          signer_id: bytes | None) -> None:
    assert sm2.private_key_pem is not None
    key, public = sm2_key(sm2.private_key_pem), sm2_public_key(sm2.certificate_pem)
    r = recipe(algorithm="sm2-sm3", secret=None, key="cert:licence", sm2=sm2_options or None)
    signed = sign_request(r, SigningKey(sm2=key), request(), now=NOW)
    assert gmssl_pyx.sm2_verify(public, TEXT.encode(), base64.b64decode(signed.signature), signer_id=signer_id)
    verify_request(r, VerifyingKeys(public=(public,)), signed.request, now=NOW, seen_nonces=set())


def test_sm2_raw_signature_is_r_and_s(sm2: Credential) -> None:
    assert sm2.private_key_pem is not None
    key, public = sm2_key(sm2.private_key_pem), sm2_public_key(sm2.certificate_pem)
    r = recipe(algorithm="sm2-sm3", secret=None, key="cert:licence", sm2={"signature": "raw"}, encoding="hex")
    raw = bytes.fromhex(sign_request(r, SigningKey(sm2=Sm2Key(key.private, key.public)), request(), now=NOW).signature)
    assert len(raw) == 64
    der = DSASignature({"r": int.from_bytes(raw[:32], "big"), "s": int.from_bytes(raw[32:], "big")}).dump()
    assert gmssl_pyx.sm2_verify(public, TEXT.encode(), der, signer_id=b"1234567812345678")


# --------------------------------------------------------------------------- placement


def test_companions_and_signature_in_headers() -> None:
    r = recipe(place={"signature": {"header": "X-Sign"}, "app_id": {"header": "X-App"},
                      "timestamp": {"header": "X-Ts"}, "nonce": {"header": "X-Nonce"}},
               text={"parts": ["app_id", "timestamp", "nonce"], "joiner": ","}, app_id="app-1")
    signed = sign_request(r, KEY, request(), now=NOW, nonce="n-1")
    headers = signed.request.headers
    assert (headers["X-App"], headers["X-Ts"], headers["X-Nonce"]) == ("app-1", TS_MS, "n-1")
    assert headers["X-Sign"] == base64.b64encode(hmac.new(SECRET.encode(), f"app-1,{TS_MS},n-1".encode(),
                                                          hashlib.sha256).digest()).decode()


def test_signature_in_the_query_is_left_out_of_the_signed_query() -> None:
    r = recipe(place={"signature": {"query": "sign"}, "timestamp": {"query": "ts"}},
               text={"parts": ["query"], "joiner": "&"}, encoding="hex")
    signed = sign_request(r, KEY, request(), now=NOW)
    text = f"a=1&a=x%20y&b=2&c=%C3%A9%2F&ts={TS_MS}"
    assert signed.text == text
    assert dict(signed.request.query)["sign"] == hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    verify_request(r, KEYS, signed.request, now=NOW, seen_nonces=set())


def test_signature_as_a_top_level_json_field() -> None:
    r = recipe(place={"signature": {"body": "sign"}, "timestamp": {"body": "ts"}},
               text={"parts": ["body"], "joiner": ""}, encoding="hex")
    signed = sign_request(r, KEY, request(), now=NOW)
    unsigned = json.dumps({"name": "王五", "n": 1, "ts": TS_MS}, ensure_ascii=False)
    assert signed.text == unsigned
    sent = json.loads(signed.request.body)
    assert sent == {"name": "王五", "n": 1, "ts": TS_MS,
                    "sign": hmac.new(SECRET.encode(), unsigned.encode(), hashlib.sha256).hexdigest()}
    verify_request(r, KEYS, signed.request, now=NOW, seen_nonces=set())


def test_signature_as_a_form_field_keeps_the_other_fields_bytes() -> None:
    r = recipe(place={"signature": {"body": "sign"}, "app_id": {"body": "appId"}}, app_id="app-1",
               text={"parts": ["form"], "joiner": ""}, encoding="hex")
    form = request(b"name=%E7%8E%8B%E4%BA%94&n=1", "application/x-www-form-urlencoded; charset=utf-8")
    signed = sign_request(r, KEY, form, now=NOW)
    assert signed.text == "appId=app-1&n=1&name=王五"
    assert signed.request.body.startswith(b"name=%E7%8E%8B%E4%BA%94&n=1&appId=app-1&sign=")
    verify_request(r, KEYS, signed.request, now=NOW, seen_nonces=set(), app_id="app-1")


# --------------------------------------------------------------------------- the three dialects of issue 17


def test_employment_dialect_hex_upper_hmac_sha256() -> None:
    r = recipe(app_id="emp-app", timestamp="s", encoding="hex_upper", body_digest={"encoding": "base64"},
               text={"parts": ["method", "path", "query", "timestamp", "body_digest"], "joiner": "&"},
               place={"signature": {"header": "X-Sign"}, "app_id": {"header": "X-App-Key"},
                      "timestamp": {"header": "X-Timestamp"}})
    req = WireRequest("POST", "/api/v1/employment/cases", (("page", "1"), ("type", "a b")),
                      {"Content-Type": "application/json"}, BODY)
    signed = sign_request(r, SigningKey(secret=Secret(SECRET), app_id="emp-app"), req, now=NOW)
    text = "&".join(["POST", "/api/v1/employment/cases", "page=1&type=a%20b", TS_S,
                     base64.b64encode(hashlib.sha256(BODY).digest()).decode()])
    expected = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    assert dict(signed.request.headers) == {"Content-Type": "application/json", "X-Timestamp": TS_S,
                                            "X-App-Key": "emp-app", "X-Sign": expected}


def test_e_licence_dialect_sm2_over_app_id_timestamp_and_body(sm2: Credential) -> None:
    assert sm2.private_key_pem is not None
    r = recipe(algorithm="sm2-sm3", secret=None, key="cert:licence", app_id="lic-app",
               text={"parts": ["app_id", "timestamp", "body"], "joiner": "|"},
               place={"signature": {"header": "X-SM2-Signature"}, "app_id": {"header": "X-App-Id"},
                      "timestamp": {"header": "X-Timestamp"}})
    signed = sign_request(r, SigningKey(sm2=sm2_key(sm2.private_key_pem), app_id="lic-app"), request(), now=NOW)
    text = b"lic-app|" + TS_MS.encode() + b"|" + BODY
    signature = base64.b64decode(signed.request.headers["X-SM2-Signature"])
    assert signature[0] == 0x30  # DER SEQUENCE
    assert gmssl_pyx.sm2_verify(sm2_public_key(sm2.certificate_pem), text, signature, signer_id=b"1234567812345678")


def test_social_assistance_dialect_sm3_form_with_key_field() -> None:
    r = recipe(algorithm="sm3", secret_in_text={"field": "key"}, encoding="hex",
               text={"parts": ["form"], "joiner": ""},
               place={"signature": {"body": "sign"}, "timestamp": {"body": "timestamp"}})
    form = request(b"idCard=150202199001011234&applicant=%E7%8E%8B%E4%BA%94", "application/x-www-form-urlencoded")
    signed = sign_request(r, KEY, form, now=NOW)
    sorted_form = f"applicant=王五&idCard=150202199001011234&timestamp={TS_MS}"
    expected = _sm3(f"{sorted_form}&key={SECRET}".encode()).hex()
    assert dict(parse_qsl(signed.request.body.decode()))["sign"] == expected


# --------------------------------------------------------------------------- verification


def _callback_recipe(**extra: Any) -> Recipe:
    return recipe(app_id="cb-app", text={"parts": ["method", "path", "app_id", "timestamp", "nonce", "body"],
                                          "joiner": "\n"},
                  place={"signature": {"header": "X-Sign"}, "app_id": {"header": "X-App"},
                         "timestamp": {"header": "X-Ts"}, "nonce": {"header": "X-Nonce"}}, max_skew_s=60, **extra)


def _callback(r: Recipe, *, at: float = NOW, nonce: str = "n-1", secret: str = SECRET) -> WireRequest:
    req = WireRequest("POST", "/v1/callbacks/x", (), {"Content-Type": "application/json"}, BODY)
    return sign_request(r, SigningKey(secret=Secret(secret), app_id="cb-app"), req, now=at, nonce=nonce).request


def test_callback_verification_accepts_then_refuses_the_replay() -> None:
    r, seen = _callback_recipe(), set[str]()
    verify_callback(r, _callback(r), now=NOW + 30, seen_nonces=seen)
    assert seen == {"n-1"}
    with pytest.raises(SignatureError, match="X-Nonce already used"):
        verify_callback(r, _callback(r), now=NOW + 30, seen_nonces=seen)


@pytest.mark.parametrize(("build", "expected"), [
    (lambda r: _callback(r, at=NOW - 61), "X-Ts is more than 60 s away"),
    (lambda r: _callback(r, secret="wrong-signing-secret"), "signature does not match"),
    (lambda r: WireRequest("POST", "/v1/callbacks/x", (), {"X-Ts": TS_MS, "X-Nonce": "n"}, BODY),
     "missing header X-Sign"),
    (lambda r: WireRequest("POST", "/v1/callbacks/x", (), {**_callback(r).headers, "X-App": "other"}, BODY),
     "unknown app id in X-App"),
    (lambda r: WireRequest("POST", "/v1/callbacks/x", (), _callback(r).headers, BODY + b" "),
     "signature does not match"),
])  # fmt: skip
def test_callback_verification_refuses(build: Any, expected: str) -> None:
    r, seen = _callback_recipe(), set[str]()
    with pytest.raises(SignatureError, match=expected):
        verify_callback(r, build(r), now=NOW, seen_nonces=seen)
    assert seen == set()  # a refused callback burns no nonce


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("spec", "expected"), [
    ({"text": {"parts": ["method", "x"]}}, "auth.text.parts: unknown part 'x' (known: method, path, query"),
    ({"text": {"parts": [{"header": "bad name"}]}}, "auth.text.parts.header: expected a header name"),
    ({"text": {"parts": []}}, "auth.text.parts: expected a non-empty list"),
    ({"text": {"parts": ["method"], "joiner": 1}}, "auth.text.joiner: expected a string"),
    ({"text": {"parts": ["method"], "sep": "&"}}, "auth.text.sep: unknown key"),
    ({"algorithm": "md5", "secret_in_text": "suffix"}, "auth.algorithm: md5 is a legacy algorithm: refused unless"),
    ({"algorithm": "hmac-sha1"}, "auth.algorithm: hmac-sha1 is a legacy algorithm"),
    ({"algorithm": "hmac-sha256", "legacy": True}, "auth.legacy: only for hmac-md5, hmac-sha1, md5, sha1"),
    ({"algorithm": "rot13"}, "auth.algorithm: unknown algorithm 'rot13'"),
    ({"algorithm": "sha256"}, "auth.secret_in_text: expected prefix, suffix or {field: NAME}"),
    ({"secret_in_text": "prefix"}, "auth.secret_in_text: only for keyed digests"),
    ({"secret": "plain"}, "auth.secret: a literal secret is refused"),
    ({"algorithm": "sm2-sm3"}, "auth.secret: sm2-sm3 signs with our private key"),
    ({"algorithm": "sm2-sm3", "secret": None, "key": "licence"}, "auth.key: a credential reference is `cert:NAME`"),
    ({"algorithm": "sm2-sm3", "secret": None, "key": "cert:k", "sm2": {"signature": "asn1"}},
     "auth.sm2.signature: expected one of der, raw"),
    ({"sm2": {"z": False}}, "auth.sm2: only for sm2-sm3"),
    ({"encoding": "base32"}, "auth.encoding: expected one of hex, hex_upper, base64, base64url"),
    ({"timestamp": "us"}, "auth.timestamp: expected one of s, ms"),
    ({"place": {"signature": {"cookie": "s"}}}, "auth.place.signature: unknown place 'cookie'"),
    ({"place": {"app_id": {"header": "X"}}}, "auth.place.signature: required"),
    ({"text": {"parts": ["nonce"]}}, "auth.text.parts: nonce is signed but place.nonce says nowhere"),
    ({"text": {"parts": ["app_id"]}}, "auth.text.parts: app_id is signed but the recipe names no app_id"),
    ({"answers": {"verify": "cert:theirs"}}, "auth.answers.verify: hmac-sha256 answers are checked with `secret`"),
    ({"body_digest": {"algorithm": "md5"}}, "auth.body_digest.algorithm: expected one of sha256, sm3"),
    ({"max_skew_s": 0}, "auth.max_skew_s: expected a positive whole number"),
])  # fmt: skip
def test_parse_errors_name_the_field(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(AuthSpecError) as caught:
        recipe(**spec)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_legacy_is_accepted_with_a_warning() -> None:
    r = recipe(algorithm="md5", secret_in_text="suffix", legacy=True)
    assert legacy_warning(r, "auth") == ("auth.algorithm: md5 is a legacy algorithm (collisions are practical): "
                                         "accepted because `legacy: true` is set; ask the sector for hmac-sha256 "
                                         "or sm2-sm3")
    assert legacy_warning(recipe(), "auth") is None


def test_old_hmac_form_is_the_same_recipe_path() -> None:
    old = parse_auth({"type": "hmac", "secret": {"secret": "env:YIWANG_TEST_SIGN"}, "key_id": "k1"})
    assert isinstance(old, Recipe) and old.form == "hmac"
    signed = sign_request(old, SigningKey(secret=Secret(SECRET), app_id="k1"), request(), now=NOW, nonce="n-1")
    text = "\n".join(["POST", "/v1/cases/a%2Fb", TS_MS, "n-1", hashlib.sha256(BODY).hexdigest()])
    assert signed.request.headers["X-Ca-Signature"] == base64.b64encode(
        hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()).decode()
    assert (signed.request.headers["X-Ca-Key"], signed.request.headers["X-Ca-Timestamp"]) == ("k1", TS_MS)


def test_rsa_key_from_a_credential_and_fingerprint_app_id(rsa_key: rsa.RSAPrivateKey) -> None:
    issued = TestCA().issue("gateway", key=rsa_key)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    credential = Credential("ours", issued.cert_pem, pem)
    old = parse_auth({"type": "rsa_signature", "key": "cert:ours"})
    assert isinstance(old, Recipe)
    assert signing_key(old, credential).app_id == credential.fingerprint


def test_a_bundle_on_a_legacy_recipe_is_valid_with_a_warning(tmp_path: Path) -> None:
    folder = legacy_signing_bundle(tmp_path)
    assert validate_bundle(folder) == []
    [warning] = bundle_warnings(load_bundle(folder))
    assert str(warning).startswith("bundle.yaml:34: auth.algorithm: md5 is a legacy algorithm")
    assert bundle_warnings(load_bundle(default_bundles_dir() / "public_security")) == []
