"""Signing recipes over real HTTP (127.0.0.1): the REST kind signs with a recipe (header, query and JSON body
placements), checks a sector's SM2-signed answers with its certificate, and a refused signature carries the
masked signed text; `yiwang adapters sign` and `preview` on the shipped public-security bundle (hmac form)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmssl_pyx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.auth import Recipe, SignatureError, parse_auth
from adapters.bundle import load_bundle
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.registry import build_adapter, default_bundles_dir
from adapters.simulators.public_security import PublicSecuritySimulator
from certstore.credentials import Credential, MemoryCredentials
from certstore.keyring import is_sealed
from certstore.sm2 import sm2_key, sm2_public_key
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.cli import app
from gateway.observability.logs import mask_value
from gateway.persistence import tables as t
from tests.support.cases import outbox_statuses
from tests.support.gateways import Keys, drain
from tests.support.gateways import legacy_signing_bundle
from tests.support.local_server import (
    ENVELOPE_OK,
    SUBMIT,
    TICKET,
    LocalServer,
    Reply,
    Seen,
    make_adapter,
    mappings,
    message,
)
from tests.support.pki import sm2_store_entry

SECRET = "emp-secret"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_EMP", SECRET)


def recipe(**spec: Any) -> Recipe:
    parsed = parse_auth({"type": "signature", "secret": {"secret": "env:YIWANG_TEST_EMP"}, **spec})
    assert isinstance(parsed, Recipe)
    return parsed


def test_rest_signs_hmac_hex_upper_with_query_and_body_placements() -> None:
    auth = recipe(algorithm="hmac-sha256", encoding="hex_upper", timestamp="s", app_id="emp-app",
                  text={"parts": ["method", "path", "query", "timestamp", "body"], "joiner": "&"},
                  place={"signature": {"body": "sign"}, "app_id": {"header": "X-App-Key"},
                         "timestamp": {"query": "ts"}})
    with LocalServer(lambda seen: TICKET) as server:
        adapter = make_adapter(server.url, auth=auth)
        assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
    [seen] = server.seen
    sent = seen.json()
    signature = sent.pop("sign")
    # The text, rebuilt here from what arrived: the body without its sign field, the query with the timestamp.
    body = json.dumps(sent, ensure_ascii=False)
    text = "&".join(["POST", "/api/v2/applications", f"ts={seen.query['ts'][0]}", seen.query["ts"][0], body])
    assert signature == hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    assert seen.headers["x-app-key"] == "emp-app" and int(seen.headers["content-length"]) == len(seen.body)


@pytest.fixture(scope="module")
def licence() -> Credential:
    return sm2_store_entry("licence_sector")


def _signed_answer(credential: Credential, seen: Seen, body: bytes, *, tamper: bool = False) -> Reply:
    """The licence sector's answer: SM2 (ID 1234567812345678, DER, base64) over method|path|timestamp|body,
    signed here with GmSSL directly."""
    assert credential.private_key_pem is not None
    key = sm2_key(credential.private_key_pem)
    timestamp = seen.headers["x-timestamp"]
    text = f"{seen.method}|{seen.path}|{timestamp}|".encode() + body
    signature = gmssl_pyx.sm2_sign(key.private, key.public, text, signer_id=b"1234567812345678")
    return Reply(201, body + (b" " if tamper else b""), headers={
        "X-Timestamp": timestamp, "X-SM2-Signature": base64.b64encode(bytes(signature)).decode()})


def _sm2_adapter(url: str, ours: Credential, theirs: Credential) -> Any:
    auth = parse_auth({"type": "signature", "algorithm": "sm2-sm3", "key": "cert:ours", "app_id": "lic-app",
                       "text": {"parts": ["app_id", "timestamp", "body"], "joiner": "|"},
                       "place": {"signature": {"header": "X-SM2-Signature"}, "timestamp": {"header": "X-Timestamp"},
                                 "app_id": {"header": "X-App-Id"}},
                       "answers": {"verify": "cert:licence_sector",
                                   "text": {"parts": ["method", "path", "timestamp", "body"], "joiner": "|"}}})
    public_only = Credential(theirs.name, theirs.certificate_pem)  # the store gives us their certificate only
    return make_adapter(url, auth=auth, signing=ours, answer_keys=(public_only,))


def test_sm2_requests_and_signed_answers_checked_with_the_sectors_certificate(licence: Credential) -> None:
    ours = sm2_store_entry("ours", "yiwang")
    answer = json.dumps(TICKET.body).encode()
    with LocalServer() as server:
        adapter = _sm2_adapter(server.url, ours, licence)
        server.respond = lambda seen: _signed_answer(licence, seen, answer)
        assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
        seen = server.seen[-1]
        text = f"lic-app|{seen.headers['x-timestamp']}|".encode() + seen.body
        ours_public = sm2_public_key(ours.certificate_pem)
        assert gmssl_pyx.sm2_verify(ours_public, text, base64.b64decode(seen.headers["x-sm2-signature"]),
                                    signer_id=b"1234567812345678")
        for respond, why in ((lambda seen: _signed_answer(licence, seen, answer, tamper=True), "does not match"),
                             (lambda seen: TICKET, "missing header X-Timestamp"),
                             (lambda seen: _signed_answer(ours, seen, answer), "does not match")):  # wrong key
            server.respond = respond
            with pytest.raises(DeliveryError) as refused:
                adapter.call(Operation.SUBMIT_CASE, message())
            error = refused.value
            assert (error.failure, error.retryable) == (FailureClass.VALIDATION, False) and why in error.message


# A sector refuses a signature with HTTP 401, or inside an HTTP 200 with a code the mapping lists under
# business_error.auth: either way the dead letter shows what was signed.
REFUSALS = {"HTTP 401": (Reply(401, {"code": 401, "msg": "签名错误"}), {}),
            "code 40001 in a 200": (Reply(200, {"code": 40001, "msg": "签名错误", "data": None}), {
                str(Operation.SUBMIT_CASE): {**SUBMIT, "response": {**SUBMIT["response"], "business_error": {
                    **ENVELOPE_OK["business_error"], "auth": ["40001"]}}}})}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_signature_carries_the_masked_signed_text(refusal: str) -> None:
    auth = recipe(algorithm="sm3", secret_in_text={"field": "key"}, encoding="hex",
                  text={"parts": ["method", "path", "body"], "joiner": "&"},
                  place={"signature": {"header": "X-Sign"}, "timestamp": {"header": "X-Ts"}})
    answer, mapped = REFUSALS[refusal]
    with LocalServer(lambda seen: answer) as server:
        with pytest.raises(DeliveryError) as refused:
            make_adapter(server.url, auth=auth, mappings=mappings(**mapped)).call(Operation.SUBMIT_CASE, message())
    error = refused.value
    assert error.failure is FailureClass.AUTH and error.last_response is not None
    signing = error.last_response["signing"]
    sent = server.seen[0]
    assert signing["text"] == f"POST&/api/v2/applications&{sent.body.decode()}&key=<secret>"
    assert signing["signature"] == sent.headers["x-sign"]
    assert signing["added"]["headers"]["X-Ts"] == sent.headers["x-ts"]
    assert SECRET not in json.dumps(error.last_response, ensure_ascii=False)


# --------------------------------------------------------------------------- the CLI and preview


@pytest.fixture
def yiwang(make_gateway: Callable[..., Gateway]) -> Callable[..., Any]:
    gateway = make_gateway(bundles=("public_security",))
    env = {"YIWANG_DATABASE_URL": gateway.settings.db_url, "YIWANG_VAR_DIR": str(gateway.settings.var_dir),
           "YIWANG_LOG_LEVEL": "warning"}
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_registering_a_legacy_recipe_warns_and_the_version_keeps_the_warning(yiwang: Callable[..., Any],
                                                                            tmp_path: Path) -> None:
    registered = yiwang("adapters", "register", legacy_signing_bundle(tmp_path))
    assert registered.exit_code == 0, registered.output
    assert "warning: bundle.yaml:34: auth.algorithm: md5 is a legacy algorithm" in registered.stderr
    listed = [json.loads(line) for line in yiwang("adapters", "list", "public_security", "--json").stdout.splitlines()]
    [legacy] = [v for v in listed if v["summary"]["warnings"]]
    assert legacy["summary"]["warnings"][0].startswith("bundle.yaml:34: auth.algorithm: md5 is a legacy algorithm")


def test_adapters_sign_shows_the_signed_text_and_preview_withholds_the_signature(yiwang: Callable[..., Any],
                                                                                 tmp_path: Path) -> None:
    [version] = json.loads(yiwang("adapters", "list", "public_security", "--json").stdout.splitlines()[0]),
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"method": "post", "path": "/api/ga/v1/cases", "body": {"XM": "王五"}}), "utf-8")
    result = yiwang("adapters", "sign", "public_security", version["version"], "--sample", sample, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    headers = shown["added"]["headers"]
    body = json.dumps({"XM": "王五"}, ensure_ascii=False).encode()
    text = "\n".join(["POST", "/api/ga/v1/cases", headers["X-Ca-Timestamp"], headers["X-Ca-Nonce"],
                      hashlib.sha256(body).hexdigest()])
    assert shown["text"] == text and headers["X-Ca-Key"] == "yiwang-gateway"
    expected = hmac.new(b"ga-secret", text.encode(), hashlib.sha256).digest()
    assert shown["signature"] == base64.b64encode(expected).decode()
    assert "ga-secret" not in result.stdout
    sample.write_text(json.dumps({"method": "post", "path": "no-slash"}), "utf-8")
    bad = yiwang("adapters", "sign", "public_security", version["version"], "--sample", sample)
    assert bad.exit_code == 2 and "sample.path: expected a path starting with /" in bad.stderr
    preview = yiwang("adapters", "preview", "public_security", "household_registration", "--param",
                     "id_number=150203198503120039", "--json")
    signing = json.loads(preview.stdout)["signing"]
    assert signing["signature"] == signing["added"]["headers"]["X-Ca-Signature"] == "<computed when sent>"
    assert signing["text"].startswith("GET\n/")


def with_callback_auth(tmp_path: Path, recipe_yaml: str) -> Path:
    """The shipped public security bundle with `results.callback_auth` replaced by `recipe_yaml`."""
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundles_dir() / "public_security", folder)
    descriptor = folder / "bundle.yaml"
    head, _ = descriptor.read_text(encoding="utf-8").split("  callback_auth:\n")
    indented = "".join(f"    {line}\n" for line in recipe_yaml.splitlines())
    descriptor.write_text(head + "  callback_auth:\n" + indented, encoding="utf-8")
    return folder


def test_sm2_signed_callbacks_are_checked_with_every_trusted_sector_certificate(
        tmp_path: Path, licence: Credential, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_GA_HMAC", "ga-secret")
    folder = with_callback_auth(tmp_path, "type: signature\nalgorithm: sm2-sm3\nkey: cert:licence_sector\n"
                                "text: {parts: [method, path, timestamp, nonce, body]}\n"
                                "place: {signature: {header: X-Sign}, timestamp: {header: X-Ts}, nonce: {header: X-N}}")
    old = sm2_store_entry("licence_sector", "licence (old)")
    trusted = MemoryCredentials({"licence_sector": [Credential(c.name, c.certificate_pem) for c in (licence, old)]})
    registered = build_adapter(load_bundle(folder), credentials=trusted)
    body, now, seen = b'{"YWH": "GA1", "JG": "TY"}', 1_795_000_000.0, set[str]()

    def callback(signer: Credential, nonce: str) -> dict[str, str]:
        assert signer.private_key_pem is not None
        key, timestamp = sm2_key(signer.private_key_pem), str(int(now * 1000))
        text = f"POST\n/callbacks/public_security\n{timestamp}\n{nonce}\n".encode() + body
        signature = gmssl_pyx.sm2_sign(key.private, key.public, text, signer_id=b"1234567812345678")
        return {"X-Ts": timestamp, "X-N": nonce, "X-Sign": base64.b64encode(bytes(signature)).decode()}

    for signer, nonce in ((licence, "n1"), (old, "n2")):  # the current and the older, still trusted, certificate
        registered.verify_callback("POST", "/callbacks/public_security", callback(signer, nonce), body, now=now,
                                   seen_nonces=seen)
    stranger = sm2_store_entry("stranger")
    with pytest.raises(SignatureError, match="signature does not match"):
        registered.verify_callback("POST", "/callbacks/public_security", callback(stranger, "n3"), body, now=now,
                                   seen_nonces=seen)
    assert seen == {"n1", "n2"}


def test_a_callback_recipe_may_sign_the_callback_urls_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_GA_HMAC", "ga-secret")
    folder = with_callback_auth(tmp_path, "type: signature\nalgorithm: hmac-sha256\nencoding: hex\n"
                                "secret: {secret: env:YIWANG_SECRET_GA_HMAC}\n"
                                "text: {parts: [path, query, timestamp, body], joiner: '&'}\n"
                                "place: {signature: {header: X-Sign}, timestamp: {header: X-Ts}}")
    registered = build_adapter(load_bundle(folder))
    body, now = b'{"YWH": "GA1", "JG": "TY"}', 1_795_000_000.0
    text = f"/callbacks/public_security&batch=7&from=%E5%85%AC%E5%AE%89&{int(now * 1000)}&".encode() + body
    headers = {"X-Ts": str(int(now * 1000)), "X-Sign": hmac.new(b"ga-secret", text, hashlib.sha256).hexdigest()}
    query = (("from", "公安"), ("batch", "7"))  # decoded, in the order the sector sent them
    registered.verify_callback("POST", "/callbacks/public_security", headers, body, now=now, seen_nonces=set(),
                               query=query)
    with pytest.raises(SignatureError, match="signature does not match"):
        registered.verify_callback("POST", "/callbacks/public_security", headers, body, now=now, seen_nonces=set())


ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领: public security
PERSON = "150203198503120039"


def test_an_auth_dead_letter_shows_what_was_signed_sealed_and_masked(make_gateway: Callable[..., Gateway]) -> None:
    with PublicSecuritySimulator(secret="not-the-gateways-secret") as sector:  # our signatures do not verify there
        gateway = make_gateway(bundles=("public_security",), sector_endpoints={"public_security": sector.url})
        with TestClient(create_app(gateway), headers=Keys.issue(gateway).window) as window:
            answer = window.post("/v1/cases", json={"matter_code": ID_CARD_RENEWAL, "channel": "city_window",
                                                    "applicant": {"name": "王建国", "id_number": PERSON},
                                                    "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]})
        assert answer.status_code == 201, answer.text
        drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    with gateway.service.uow(read_only=True) as uow:
        [letter] = uow.dead_letters.list()
    assert letter.error_class == "auth"
    signing = letter.last_response["signing"]
    assert signing["text"].startswith("POST\n/")
    assert signing["computed_with"] == "the shared secret env:YIWANG_SECRET_GA_HMAC"
    assert set(signing["added"]["headers"]) == {"X-Ca-Key", "X-Ca-Timestamp", "X-Ca-Nonce", "X-Ca-Signature"}
    with gateway.engine.connect() as conn:
        [stored] = conn.execute(select(t.dead_letters.c.last_response)).scalars()
    assert is_sealed(stored)  # the signed text (which may hold the body) is sealed at rest with the answer
    assert PERSON not in json.dumps(mask_value(letter.last_response), ensure_ascii=False)  # and masked when shown


def test_hmac_signed_answers_are_checked_with_the_shared_secret_and_a_replay_is_refused() -> None:
    auth = recipe(algorithm="hmac-sha256", encoding="hex",
                  text={"parts": ["method", "path", "timestamp", "nonce", "body"], "joiner": "\n"},
                  place={"signature": {"header": "X-Sign"}, "timestamp": {"header": "X-Ts"},
                         "nonce": {"header": "X-Nonce"}},
                  answers={"verify": "secret"})
    answer = json.dumps(TICKET.body).encode()

    def signed(seen: Seen, nonce: str) -> Reply:  # the sector signs with the same secret, its own timestamp
        timestamp = seen.headers["x-ts"]
        text = f"{seen.method}\n{seen.path}\n{timestamp}\n{nonce}\n".encode() + answer
        return Reply(201, answer, headers={"X-Ts": timestamp, "X-Nonce": nonce,
                                           "X-Sign": hmac.new(SECRET.encode(), text, hashlib.sha256).hexdigest()})

    with LocalServer(lambda seen: signed(seen, "a1")) as server:
        adapter = make_adapter(server.url, auth=auth)
        assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
        with pytest.raises(DeliveryError) as replayed:  # the same answer (its nonce) a second time
            adapter.call(Operation.SUBMIT_CASE, message())
    assert replayed.value.failure is FailureClass.VALIDATION and "X-Nonce already used" in replayed.value.message
