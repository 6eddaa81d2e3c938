"""The signing cookbook (adapters/BUNDLE-FORMAT.md, "Signing cookbook") is true: each worked example's text is
what its sector's formula makes of the sample shown, each HMAC and keyed digest shown is recomputed here from
that text with the secret the page exports (hashlib, hmac and cryptography's SM3: not the gateway's signing
code), and each recipe shown is the shipped bundle's `auth` as the gateway reads it (for public security, the
`type: hmac` form the bundle still uses)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from cryptography.hazmat.primitives import hashes

from adapters.auth import parse_auth
from adapters.bundle import load_bundle
from adapters.registry import default_bundles_dir
from tests.support.markdown import ROOT, Block, read

FORMAT = ROOT / "adapters" / "BUNDLE-FORMAT.md"
SECTION = "## Signing cookbook"
EXPORT = re.compile(r"\b(YIWANG_SECRET_[A-Z_]+)=(\S+)")


@dataclass(frozen=True)
class Example:
    sample: dict[str, Any]  # the sample request shown before the output
    shown: dict[str, Any]  # what `yiwang adapters sign --json` printed


def _section() -> list[Block]:
    page = read(FORMAT)
    lines = FORMAT.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION) + 1
    end = next(n for n in range(start, len(lines)) if lines[n].startswith("## ")) + 1
    return [block for block in page.blocks if start < block.line < end]


def _documents(info: str) -> list[Any]:
    load: Callable[[str], Any] = json.loads if info == "json" else yaml.safe_load
    return [load(block.text) for block in _section() if block.info == info]


def _examples() -> list[Example]:
    examples, sample = [], None
    for document in _documents("json"):
        if "method" in document:
            sample = document
        else:
            assert sample is not None, f"no sample before the output for {document['sector']}"
            examples.append(Example(sample, document))
    return examples


def _secrets() -> dict[str, str]:
    return {name: value for block in _section() if block.info == "sh" for name, value in EXPORT.findall(block.text)}


def _body(sample: dict[str, Any]) -> bytes:
    if "form" in sample:
        return "&".join(f"{k}={v}" for k, v in sample["form"].items()).encode()
    return json.dumps(sample.get("body"), ensure_ascii=False).encode() if "body" in sample else b""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _employment(sample: dict[str, Any], added: dict[str, str]) -> str:
    """Page §2: METHOD & path & sorted RFC 3986 query & X-Timestamp & BASE64(SHA256(body))."""
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(str(v), safe='-_.~')}"
                     for k, v in sorted(sample.get("query", {}).items()))
    return "&".join((sample["method"], sample["path"], query, added["X-Timestamp"],
                     base64.b64encode(_sha256(_body(sample))).decode()))


def _e_licence(sample: dict[str, Any], added: dict[str, str]) -> str:
    """Page §2: appId | X-Timestamp | body."""
    return f"{added['X-App-Id']}|{added['X-Timestamp']}|{_body(sample).decode()}"


def _social_assistance(sample: dict[str, Any], added: dict[str, str]) -> str:
    """Page §2: every form field but sign, sorted by name, k=v joined with &, then &key=<secret>."""
    fields = {**sample["form"], **{k: v for k, v in added.items() if k != "sign"}}
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items())) + "&key=<secret>"


def _hmac_scheme(sample: dict[str, Any], added: dict[str, str]) -> str:
    """The original hmac (and rsa_signature) scheme: method, path, timestamp, nonce, hex SHA-256 of the body."""
    return "\n".join((sample["method"], sample["path"], added["X-Ca-Timestamp"], added["X-Ca-Nonce"],
                      _sha256(_body(sample)).hex()))


FORMULAS = {"employment": _employment, "e_licence": _e_licence, "social_assistance": _social_assistance,
            "public_security": _hmac_scheme}


def _encoded(raw: bytes, encoding: str) -> str:
    return {"hex": raw.hex(), "hex_upper": raw.hex().upper(), "base64": base64.b64encode(raw).decode(),
            "base64url": base64.urlsafe_b64encode(raw).decode()}[encoding]


def _recomputed(shown: dict[str, Any], secret: bytes) -> bytes:
    text = shown["text"].encode()
    if shown["algorithm"] == "hmac-sha256":
        return hmac.new(secret, text, hashlib.sha256).digest()
    assert shown["algorithm"] == "sm3", shown["algorithm"]
    return _sm3(text.replace(b"<secret>", secret))


def test_the_cookbook_works_one_example_per_dialect() -> None:
    found = [(e.shown["sector"], e.shown["algorithm"]) for e in _examples()]
    assert found == [("employment", "hmac-sha256"), ("e_licence", "sm2-sm3"), ("social_assistance", "sm3"),
                     ("public_security", "hmac-sha256"), ("public_security", "rsa-sha256")]


@pytest.mark.parametrize("example", _examples(), ids=lambda e: f"{e.shown['sector']}-{e.shown['algorithm']}")
def test_each_text_is_the_sectors_formula_of_its_sample(example: Example) -> None:
    added = next(iter(example.shown["added"].values()))
    assert example.shown["text"] == FORMULAS[example.shown["sector"]](example.sample, added)
    assert added[next(reversed(added))] == example.shown["signature"]  # the signature placed last, as shown


@pytest.mark.parametrize("example", [e for e in _examples() if not e.shown["computed_with"].startswith("our")],
                         ids=lambda e: e.shown["sector"])
def test_each_shared_secret_signature_recomputes_from_the_text_shown(example: Example) -> None:
    secret = _secrets()[example.shown["computed_with"].rsplit("env:", 1)[1]]
    expected = _encoded(_recomputed(example.shown, secret.encode()), example.shown["encoding"])
    assert example.shown["signature"] == expected
    assert example.shown["signature"] != _encoded(_recomputed(example.shown, b"wrong"), example.shown["encoding"])


def test_each_recipe_shown_is_the_shipped_bundles_auth() -> None:
    recipes = [document["auth"] for document in _documents("yaml") if "auth" in document]
    sectors = ["employment", "e_licence", "social_assistance", "public_security"]
    assert len(recipes) == len(sectors)
    for sector, spec in zip(sectors, recipes, strict=True):
        shipped = load_bundle(default_bundles_dir() / sector).auth
        assert parse_auth(spec) == replace(shipped, form="signature"), sector
