"""The three signing sectors' pages (docs/sectors/*.md) hold true: each worked signature is what the page's
formula gives (computed by the clients written from the pages, tests/support/sector_clients.py, and by the
simulator), the SM2 example verifies with the certificate the page prints, and each bundle carries the very
OpenAPI document its sector's simulator publishes."""

from __future__ import annotations

import filecmp
import hashlib
import hmac
import re
from pathlib import Path

import pytest

from adapters.simulators import employment, social_assistance
from tests.support.sector_clients import employment_string_to_sign, sm2_verify_with, social_assistance_sign

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "sectors"
TIMESTAMP_S = "1796607000"


def page(sector: str) -> str:
    return (PAGES / f"{sector}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("method", "path", "params", "query", "body", "signature"), [
    ("POST", "/jyapi/v1/applications/withdraw", {}, "", b'{"applyNo":"JY071234567890"}',
     "AF0A256D164B619481E1D6DB08BBDDDE09843A092292C4132B70A1432F1DA2E9"),
    ("GET", "/jyapi/v1/applications/status", {"applyNo": "JY071234567890", "remark": "a b"},
     "remark=a%20b&applyNo=JY071234567890", b"", "459E51CF22949BBB4FCFF9C9999960FC17BB22B7F8417122C8157C11BC08DE9E"),
])
def test_the_employment_pages_examples(method: str, path: str, params: dict[str, str], query: str, body: bytes,
                                       signature: str) -> None:
    text = employment_string_to_sign(method, path, params, TIMESTAMP_S, body)
    assert text == employment.signed_text(method, path, query, TIMESTAMP_S, body)
    assert hmac.new(b"jy-secret", text.encode(), hashlib.sha256).hexdigest().upper() == signature
    assert f"待签名串 = {text}" in page("employment") and f"X-Sign   = {signature}" in page("employment")


def test_the_social_assistance_pages_example() -> None:
    form = {"appid": "yw_gateway", "timestamp": "1796607000123", "nonce_str": "5f2b8c1e9a7d4e03",
            "apply_id": "JZ071234567890"}
    sign = social_assistance_sign(form, "jz-secret")
    assert sign == social_assistance.sign("jz-secret", form)
    text = page("social_assistance")
    assert f"串 B = {social_assistance.signed_text(form)}&key=jz-secret" in text and f"sign = {sign}" in text


def test_the_e_licence_pages_example_verifies_with_the_certificate_it_prints() -> None:
    text = page("e_licence")
    signed = re.search(r"待签名串 = (yiwang-gateway\|.+)", text)
    signature = re.search(r"X-SM2-Signature（示例之一）= (\S+)", text)
    certificate = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.DOTALL)
    assert signed and signature and certificate
    data, cert_pem = signed.group(1).encode(), certificate.group(0).encode() + b"\n"
    assert sm2_verify_with(cert_pem, data, signature.group(1))
    assert not sm2_verify_with(cert_pem, data + b" ", signature.group(1))


@pytest.mark.parametrize("sector", ["employment", "e_licence", "social_assistance"])
def test_each_bundle_carries_the_document_its_sector_publishes(sector: str) -> None:
    published = ROOT / "adapters" / "simulators" / f"{sector}.openapi.yaml"
    assert filecmp.cmp(ROOT / "adapters" / "bundles" / sector / "openapi.yaml", published, shallow=False)
