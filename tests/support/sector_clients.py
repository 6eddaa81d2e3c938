"""Small clients for the three signing sectors, written from their pages (docs/sectors/*.md) and nothing
else: not the simulators' code, not the gateway's. Each signs as its page's formula and worked example say,
and can be told to sign wrong (another key), late (an old timestamp) or with a nonce already used.

A test that passes with these proves the simulator keeps its page; the bundles are proved by the gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import gmssl_pyx
import httpx
from asn1crypto import pem, x509
from asn1crypto.keys import PrivateKeyInfo

STALE_S = 301
# One client for every call: a fresh one per call loads the CA bundle each time (~0.1 s on this machine).
_HTTP = httpx.Client(trust_env=False)  # one second beyond the ±300 s every one of the three allows


@dataclass
class Signing:
    """How a request is to be signed: ``skew_s`` shifts the timestamp, ``nonce`` reuses one."""

    skew_s: int = 0
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    def seconds(self) -> int:
        return int(time.time()) - self.skew_s

    def millis(self) -> int:
        return int(time.time() * 1000) - self.skew_s * 1000


# --------------------------------------------------------------------------- 就业 (HMAC-SHA256, hex upper)


def rfc3986(text: str) -> str:
    return quote(text, safe="~-._")


def employment_string_to_sign(method: str, path: str, params: dict[str, str], timestamp: str, body: bytes) -> str:
    query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(params.items()))
    return f"{method}&{path}&{query}&{timestamp}&{base64.b64encode(hashlib.sha256(body).digest()).decode()}"


def employment_call(base_url: str, method: str, path: str, app_key: str, secret: str, *, document: Any = None,
                    params: dict[str, str] | None = None, signing: Signing | None = None) -> httpx.Response:
    signing = signing or Signing()
    body = b"" if document is None else json.dumps(document, ensure_ascii=False).encode()
    timestamp = str(signing.seconds())
    text = employment_string_to_sign(method, path, params or {}, timestamp, body)
    headers = {"X-App-Key": app_key, "X-Timestamp": timestamp, "X-Nonce": signing.nonce,
               "X-Sign": hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper(),
               "Content-Type": "application/json; charset=utf-8"}
    query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in (params or {}).items())
    return _HTTP.request(method, f"{base_url}{path}" + (f"?{query}" if query else ""), content=body, headers=headers)


# --------------------------------------------------------------------------- 电子证照 (SM2 both ways)

SM2_ID = b"1234567812345678"


def _der_of(pem_bytes: bytes) -> bytes:
    return bytes(pem.unarmor(pem_bytes)[2])


def sm2_sign_with(key_pem: bytes, data: bytes) -> str:
    """base64(DER SM2-SM3 signature, ID 1234567812345678) by a PKCS#8 SM2 key."""
    ec_key = PrivateKeyInfo.load(_der_of(key_pem))["private_key"].parsed
    scalar = int(ec_key["private_key"].native).to_bytes(32, "big")
    point = bytes(ec_key["public_key"].native)
    return base64.b64encode(bytes(gmssl_pyx.sm2_sign(scalar, point[1:], data, signer_id=SM2_ID))).decode()


def sm2_verify_with(cert_pem: bytes, data: bytes, signature_b64: str) -> bool:
    certificate = x509.Certificate.load(_der_of(cert_pem))
    point = bytes(certificate.public_key["public_key"].native)
    return bool(gmssl_pyx.sm2_verify(point[1:], data, base64.b64decode(signature_b64), signer_id=SM2_ID))


def e_licence_call(base_url: str, method: str, path: str, app_id: str, key_pem: bytes, *, document: Any = None,
                   signing: Signing | None = None) -> httpx.Response:
    signing = signing or Signing()
    body = b"" if document is None else json.dumps(document, ensure_ascii=False).encode()
    timestamp = str(signing.millis())
    headers = {"X-App-Id": app_id, "X-Timestamp": timestamp, "X-Nonce": signing.nonce,
               "X-SM2-Signature": sm2_sign_with(key_pem, f"{app_id}|{timestamp}|".encode() + body),
               "Content-Type": "application/json; charset=utf-8"}
    return _HTTP.request(method, base_url + path, content=body, headers=headers)


def e_licence_answer_verifies(response: httpx.Response, sector_cert_pem: bytes) -> bool:
    app_id, timestamp = response.headers["X-App-Id"], response.headers["X-Timestamp"]
    data = f"{app_id}|{timestamp}|".encode() + response.content
    return sm2_verify_with(sector_cert_pem, data, response.headers["X-SM2-Signature"])


# --------------------------------------------------------------------------- 社会救助 (SM3 keyed digest in a form)


def social_assistance_sign(fields: dict[str, str], secret: str) -> str:
    text = "&".join(f"{name}={fields[name]}" for name in sorted(fields) if name != "sign") + "&key=" + secret
    return bytes(gmssl_pyx.sm3_hash(text.encode())).hex()


def social_assistance_call(base_url: str, path: str, appid: str, secret: str, fields: dict[str, str], *,
                           signing: Signing | None = None) -> httpx.Response:
    signing = signing or Signing()
    form = {**fields, "appid": appid, "timestamp": str(signing.millis()), "nonce_str": signing.nonce}
    form["sign"] = social_assistance_sign(form, secret)
    return _HTTP.post(base_url + path, content=urlencode(form).encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
