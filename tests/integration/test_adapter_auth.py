"""Secrets, the descriptor's `auth` forms, and each REST authentication against a real local server.

The servers check credentials with their own code (base64, hmac, hashlib), not with the gateway's,
so a mistake shared by signer and checker cannot pass unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from adapters.auth import (
    CALLBACK_FORMS,
    NO_AUTH,
    AuthSpecError,
    BasicAuthSpec,
    OAuth2Spec,
    SecretRef,
    SignatureError,
    WsseSpec,
    parse_auth,
    verify_callback,
)
from adapters.signing import Part, Place, Placement, Recipe, SignedText, WireRequest
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.kinds import KINDS
from adapters.kinds.rest import REST
from adapters.kinds.rest.adapter import RestAdapter
from adapters.kinds.soap import SOAP
from adapters.kinds.soap.auth import soap_auth
from adapters.secrets import Secret, SecretRefError, is_reference, resolve
from tests.support.local_server import TICKET, LocalServer, Reply, Seen, free_port, mappings, message

# ------------------------------------------------------------------ secrets


def test_env_reference_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_SECRET", "s3cret")
    assert resolve("env:YIWANG_TEST_SECRET") == "s3cret"


def test_file_reference_resolves_stripped(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("  mz-secret\n", encoding="utf-8")
    assert resolve(f"file:{path}") == "mz-secret"


def test_unset_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIWANG_TEST_UNSET", raising=False)
    with pytest.raises(SecretRefError, match="^secret env:YIWANG_TEST_UNSET: environment variable YIWANG_TEST_UNSET"):
        resolve("env:YIWANG_TEST_UNSET")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SecretRefError, match="file not found"):
        resolve(f"file:{tmp_path / 'nope'}")
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(SecretRefError, match="is empty"):
        resolve(f"file:{tmp_path / 'empty'}")


@pytest.mark.parametrize("literal", ["hunter2", "env:", "env:1BAD", "file:relative/path", "file:", ""])
def test_literal_or_malformed_reference_is_refused_without_echo(literal: str) -> None:
    assert not is_reference(literal)
    with pytest.raises(SecretRefError) as caught:
        resolve(literal)
    assert str(caught.value) == "not a secret reference: expected env:NAME, file:/absolute/path or vault:NAME"


def test_is_reference() -> None:
    assert is_reference("env:YIWANG_SECRET_GJJ") and is_reference("file:/etc/yiwang/secrets/x")
    assert not is_reference(None) and not is_reference({"secret": "env:X"})


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{[secret]}"
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


# ------------------------------------------------------------------ parsing `auth`

# The forms each side accepts: a kind's `auth`, or a sector's callbacks (None: every form).
ACCEPTED = {None: None, "callback": CALLBACK_FORMS, **{name: kind.auth_forms for name, kind in KINDS.items()}}


def test_every_form_parses() -> None:
    env = {"secret": "env:X"}
    assert parse_auth(None) is NO_AUTH and parse_auth({"type": "none"}) is NO_AUTH
    assert parse_auth({"type": "basic", "username": "gw", "password": env}) == BasicAuthSpec("gw", SecretRef("env:X"))
    oauth = parse_auth({"type": "oauth2_client_credentials", "token_path": "/oauth/token", "client_id": env,
                        "client_secret": env, "scope": "cases"}, accepted=REST.auth_forms)  # fmt: skip
    assert oauth == OAuth2Spec("/oauth/token", SecretRef("env:X"), SecretRef("env:X"), "cases")
    wsse = parse_auth({"type": "wsse_username_token", "username": "yiwang", "password": env, "digest": True},
                      accepted=SOAP.auth_forms)
    assert wsse == WsseSpec("yiwang", SecretRef("env:X"), True)


def test_hmac_defaults_are_the_x_ca_dialect() -> None:
    spec = parse_auth({"type": "hmac", "secret": {"secret": "env:X"}, "max_skew_s": 60}, accepted=CALLBACK_FORMS)
    parts = tuple(map(Part, ("method", "path", "timestamp", "nonce", "body_digest")))
    headers = Placement(*(Place("header", f"X-Ca-{name}") for name in ("Signature", "Key", "Timestamp", "Nonce")))
    assert spec == Recipe("hmac-sha256", SignedText(parts, "\n"), headers, secret=SecretRef("env:X"), max_skew_s=60,
                          form="hmac")


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        ({"type": "bearer", "token": "hunter2"}, None, "auth.token: a literal secret is refused"),
        ({"type": "bearer", "token": {"secret": "hunter2"}}, None, "auth.token.secret: expected env:NAME"),
        ({"type": "bearer"}, None, "auth.token: required"),
        ({"type": "basic", "username": "u", "password": {"secret": "env:X"}, "pasword": 1}, None,
         "auth.pasword: unknown key"),
        ({"type": "kerberos"}, None, "auth.type: unknown auth type 'kerberos'"),
        ({"type": "basic", "username": "u", "password": {"secret": "env:X"}}, "callback",
         "auth.type: unknown auth type 'basic' for callback (known: hmac, signature)"),
        ({"type": "hmac", "secret": {"secret": "env:X"}, "canonical": ["method", "query"]}, None,
         "auth.canonical: unknown part 'query'"),
        ({"type": "hmac", "secret": {"secret": "env:X"}, "algorithm": "md5"}, None, "auth.algorithm: expected one of"),
        ({"type": "hmac", "secret": {"secret": "env:X"}, "headers": {"sig": "X"}}, None, "auth.headers.sig: unknown"),
        ({"type": "wsse_username_token", "username": "u", "password": {"secret": "env:X"}, "digest": "yes"}, None,
         "auth.digest: expected true or false"),
        ("bearer", None, "auth: expected a mapping"),
    ],
)  # fmt: skip
def test_bad_auth_names_the_field_and_never_the_secret(spec: Any, kind: str | None, expected: str) -> None:
    with pytest.raises(AuthSpecError) as caught:
        parse_auth(spec, accepted=ACCEPTED[kind])
    assert str(caught.value).startswith(expected)
    assert "hunter2" not in str(caught.value)


# ------------------------------------------------------------------ REST: basic and bearer


@pytest.fixture
def server() -> Any:
    with LocalServer(lambda seen: TICKET) as local:
        yield local


def rest_adapter(url: str, auth: dict[str, Any]) -> RestAdapter:
    return RestAdapter("s", "1", url, mappings(), 2.0, parse_auth(auth, accepted=REST.auth_forms), "X-Request-Id")


def test_basic_auth_with_a_file_secret(server: LocalServer, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("p@ss:word\n", encoding="utf-8")
    auth = {"type": "basic", "username": "gateway", "password": {"secret": f"file:{tmp_path / 'pw'}"}}
    rest_adapter(server.url, auth).call(Operation.SUBMIT_CASE, message())
    assert server.seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"gateway:p@ss:word").decode()


def test_bearer_auth(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_TOKEN", "abc.def")
    rest_adapter(server.url, {"type": "bearer", "token": {"secret": "env:YIWANG_TEST_TOKEN"}}).call(
        Operation.SUBMIT_CASE, message()
    )
    assert server.seen[0].headers["authorization"] == "Bearer abc.def"


def test_no_auth_sends_no_authorization(server: LocalServer) -> None:
    rest_adapter(server.url, {"type": "none"}).call(Operation.SUBMIT_CASE, message())
    assert "authorization" not in server.seen[0].headers


# ------------------------------------------------------------------ REST: OAuth2 client credentials


class TokenService:
    """The housing fund's dialect: /oauth/token with Basic client auth, then bearer tokens on the API."""

    def __init__(self, expires_in: int = 300, accept_tokens: bool = True) -> None:
        self.expires_in, self.accept_tokens = expires_in, accept_tokens
        self.tokens: set[str] = set()
        self.token_requests: list[Seen] = []
        self.api_requests = 0
        self.lock = threading.Lock()

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()

    def __call__(self, seen: Seen) -> Reply:
        with self.lock:
            if seen.path == "/oauth/token":
                return self._token(seen)
            self.api_requests += 1
            bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
            if not self.accept_tokens or bearer not in self.tokens:
                return Reply(401, {"code": 401, "msg": "invalid_token"})
            return TICKET

    def _token(self, seen: Seen) -> Reply:
        self.token_requests.append(seen)
        client = base64.b64encode(b"yiwang:s3cret").decode()
        form = parse_qs(seen.body.decode())
        if seen.headers.get("authorization") != f"Basic {client}" or form.get("grant_type") != ["client_credentials"]:
            return Reply(401, {"error": "invalid_client"})
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return Reply(body={"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})


@pytest.fixture
def oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_CLIENT_ID", "yiwang")
    monkeypatch.setenv("YIWANG_TEST_CLIENT_SECRET", "s3cret")


def oauth(token_path: str = "/oauth/token") -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_path": token_path,
        "client_id": {"secret": "env:YIWANG_TEST_CLIENT_ID"},
        "client_secret": {"secret": "env:YIWANG_TEST_CLIENT_SECRET"},
        "scope": "cases",
    }


def oauth_failure(adapter: RestAdapter) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        adapter.call(Operation.SUBMIT_CASE, message())
    return caught.value


@pytest.mark.usefixtures("oauth_env")
def test_oauth2_token_is_fetched_once_and_reused() -> None:
    sector = TokenService()
    with LocalServer(sector) as local:
        adapter = rest_adapter(local.url, oauth())
        for _ in range(3):
            assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
    [token_request] = sector.token_requests
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["cases"]}
    assert sector.api_requests == 3


@pytest.mark.usefixtures("oauth_env")
def test_oauth2_token_is_renewed_before_it_expires() -> None:
    sector = TokenService(expires_in=1)
    with LocalServer(sector) as local:
        adapter = rest_adapter(local.url, oauth())
        adapter.call(Operation.SUBMIT_CASE, message())
        time.sleep(1.0)  # past the refresh point (a tenth before expiry)
        adapter.call(Operation.SUBMIT_CASE, message())
    assert (len(sector.token_requests), sector.api_requests) == (2, 2)


@pytest.mark.usefixtures("oauth_env")
def test_oauth2_401_refreshes_once_and_retries_the_call_once() -> None:
    sector = TokenService()
    with LocalServer(sector) as local:
        adapter = rest_adapter(local.url, oauth())
        adapter.call(Operation.SUBMIT_CASE, message())
        sector.revoke_all()  # the sector forgot our token before its expiry
        assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "GJJ0000000001"}
        bodies = [seen.body for seen in local.seen if seen.path == "/api/v2/applications"]
    assert (len(sector.token_requests), sector.api_requests) == (2, 3)
    assert bodies[1] == bodies[2]  # the retry re-sent the same body


@pytest.mark.usefixtures("oauth_env")
def test_oauth2_second_401_is_an_auth_failure() -> None:
    sector = TokenService(accept_tokens=False)
    with LocalServer(sector) as local:
        error = oauth_failure(rest_adapter(local.url, oauth()))
    assert (error.failure, error.retryable) == (FailureClass.AUTH, False)
    assert (len(sector.token_requests), sector.api_requests) == (2, 2)


@pytest.mark.usefixtures("oauth_env")
def test_oauth2_token_endpoint_down_is_auth() -> None:
    sector = TokenService()
    with LocalServer(sector) as local:
        error = oauth_failure(rest_adapter(local.url, oauth(f"http://127.0.0.1:{free_port()}/oauth/token")))
    assert error.failure is FailureClass.AUTH and error.retryable  # the token service may come back
    assert "token endpoint unreachable" in error.message and sector.api_requests == 0


def test_oauth2_refused_client_is_auth_not_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_CLIENT_ID", "yiwang")
    monkeypatch.setenv("YIWANG_TEST_CLIENT_SECRET", "wrong")
    sector = TokenService()
    with LocalServer(sector) as local:
        error = oauth_failure(rest_adapter(local.url, oauth()))
    assert (error.failure, error.retryable) == (FailureClass.AUTH, False)
    assert error.message == "token endpoint answered HTTP 401" and sector.api_requests == 0
    assert "wrong" not in error.message


@pytest.mark.usefixtures("oauth_env")
@pytest.mark.parametrize(
    "reply",
    [Reply(body={"token_type": "Bearer"}), Reply(body=b"[" * 50_000), Reply(body={"access_token": "t", "token_type": "mac"})],
    ids=["no-token", "hostile-json", "not-bearer"],
)
def test_oauth2_unusable_token_answer_is_auth(reply: Reply) -> None:
    with LocalServer(lambda seen: reply) as local:
        error = oauth_failure(rest_adapter(local.url, oauth()))
    assert (error.failure, error.retryable) == (FailureClass.AUTH, False)


# ------------------------------------------------------------------ REST: HMAC signatures

GA_SECRET = b"ga-secret"


def sign(method: str, path: str, timestamp: str, nonce: str, body: bytes, secret: bytes = GA_SECRET) -> str:
    """The public-security dialect, written independently of adapters.auth."""
    canonical = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return base64.b64encode(hmac.new(secret, canonical.encode(), hashlib.sha256).digest()).decode()


class SignatureChecker:
    def __init__(self) -> None:
        self.verdicts: list[bool] = []

    def __call__(self, seen: Seen) -> Reply:
        h = seen.headers
        expected = sign(seen.method, seen.path, h["x-ca-timestamp"], h["x-ca-nonce"], seen.body)
        fresh = abs(time.time() * 1000 - int(h["x-ca-timestamp"])) < 300_000
        ok = hmac.compare_digest(expected, h["x-ca-signature"]) and h["x-ca-key"] == "yiwang-gateway" and fresh
        self.verdicts.append(ok)
        return TICKET if ok else Reply(401, {"ZT": "0", "XX": "签名验证失败"})


HMAC_AUTH = {
    "type": "hmac",
    "key_id": "yiwang-gateway",
    "secret": {"secret": "env:YIWANG_TEST_GA_HMAC"},
    "algorithm": "sha256",
    "headers": {"key_id": "X-Ca-Key", "timestamp": "X-Ca-Timestamp", "nonce": "X-Ca-Nonce", "signature": "X-Ca-Signature"},
    "canonical": ["method", "path", "timestamp", "nonce", "body_sha256"],
}


@pytest.fixture
def ga_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_GA_HMAC", GA_SECRET.decode())


@pytest.mark.usefixtures("ga_secret")
def test_hmac_signs_the_exact_body_bytes_sent() -> None:
    checker = SignatureChecker()
    with LocalServer(checker) as local:
        adapter = rest_adapter(local.url + "/prefix", HMAC_AUTH)
        adapter.call(Operation.SUBMIT_CASE, message())
        [seen] = local.seen
    assert checker.verdicts == [True]
    assert seen.path == "/prefix/api/v2/applications" and "王五".encode() in seen.body
    assert len(seen.headers["x-ca-nonce"]) == 32 and int(seen.headers["x-ca-timestamp"]) > 1.7e12


@pytest.mark.usefixtures("ga_secret")
def test_hmac_get_signs_path_without_query_and_empty_body() -> None:
    checker = SignatureChecker()
    with LocalServer(checker) as local:
        local.respond = lambda seen: (checker(seen), Reply(body={"code": 0, "data": {"status": "PENDING"}}))[1]
        rest_adapter(local.url, HMAC_AUTH).call(Operation.QUERY_STATUS, message())
        [seen] = local.seen
    assert seen.target.endswith("?lang=zh") and checker.verdicts == [True]


@pytest.mark.usefixtures("ga_secret")
def test_hmac_nonces_are_never_reused() -> None:
    with LocalServer(SignatureChecker()) as local:
        adapter = rest_adapter(local.url, HMAC_AUTH)
        for _ in range(3):
            adapter.call(Operation.SUBMIT_CASE, message())
        assert len({seen.headers["x-ca-nonce"] for seen in local.seen}) == 3


def test_hmac_refused_by_the_sector_is_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_GA_HMAC", "not-the-secret")
    with LocalServer(SignatureChecker()) as local:
        error = oauth_failure(rest_adapter(local.url, HMAC_AUTH))
    assert error.failure is FailureClass.AUTH


# ------------------------------------------------------------------ verifying a sector's callback

CALLBACK_BODY = '{"YWH": "GA0000000001", "JG": "TY", "YJ": "同意"}'.encode()
NOW = 1_795_000_000.0  # epoch seconds


def callback_spec(**extra: Any) -> Recipe:
    spec = parse_auth({"type": "hmac", "secret": {"secret": "env:YIWANG_TEST_GA_HMAC"}, "max_skew_s": 300, **extra},
                      accepted=CALLBACK_FORMS)  # fmt: skip
    assert isinstance(spec, Recipe)
    return spec


def callback_headers(*, at: float = NOW, nonce: str = "n1", body: bytes = CALLBACK_BODY) -> dict[str, str]:
    timestamp = str(int(at * 1000))
    signature = sign("POST", "/v1/callbacks/public_security", timestamp, nonce, body)
    return {"X-Ca-Key": "ga-callback", "X-Ca-Timestamp": timestamp, "X-Ca-Nonce": nonce, "X-Ca-Signature": signature}


def check(headers: dict[str, str], seen: set[str], body: bytes = CALLBACK_BODY, **spec: Any) -> None:
    verify_callback(callback_spec(**spec), WireRequest("POST", "/v1/callbacks/public_security", (), headers, body),
                    now=NOW, seen_nonces=seen)


@pytest.mark.usefixtures("ga_secret")
def test_verify_callback_accepts_a_good_signature_and_remembers_the_nonce() -> None:
    seen: set[str] = set()
    check(callback_headers(), seen)
    check({k.lower(): v for k, v in callback_headers(nonce="n2").items()}, seen)  # header names in any case
    assert seen == {"n1", "n2"}


@pytest.mark.usefixtures("ga_secret")
@pytest.mark.parametrize(
    ("headers", "body", "spec", "expected"),
    [
        (callback_headers(), CALLBACK_BODY.replace(b"TY", b"BT"), {}, "signature does not match"),
        (callback_headers(at=NOW - 301), CALLBACK_BODY, {}, "X-Ca-Timestamp is more than 300 s away"),
        (callback_headers(at=NOW + 301), CALLBACK_BODY, {}, "X-Ca-Timestamp is more than 300 s away"),
        ({**callback_headers(), "X-Ca-Timestamp": "yesterday"}, CALLBACK_BODY, {}, "X-Ca-Timestamp is not epoch"),
        ({"X-Ca-Timestamp": "1", "X-Ca-Nonce": "n"}, CALLBACK_BODY, {}, "missing header X-Ca-Signature"),
        (callback_headers(), CALLBACK_BODY, {"key_id": "someone-else"}, "unknown app id"),
    ],
    ids=["tampered-body", "too-old", "too-new", "bad-timestamp", "unsigned", "wrong-key-id"],
)
def test_verify_callback_refuses(headers: dict[str, str], body: bytes, spec: dict[str, Any], expected: str) -> None:
    seen: set[str] = set()
    with pytest.raises(SignatureError, match=expected):
        check(headers, seen, body, **spec)
    assert seen == set()  # a refused request burns no nonce


@pytest.mark.usefixtures("ga_secret")
def test_verify_callback_refuses_a_replayed_nonce() -> None:
    seen: set[str] = set()
    check(callback_headers(), seen)
    with pytest.raises(SignatureError, match="already used"):
        check(callback_headers(), seen)


# ------------------------------------------------------------------ SOAP credentials


def test_soap_auth_builds_wsse_and_basic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_TEST_MZ", "mz-secret")
    wsse = soap_auth(parse_auth({"type": "wsse_username_token", "username": "yiwang",
                                 "password": {"secret": "env:YIWANG_TEST_MZ"}, "digest": True}))  # fmt: skip
    assert wsse.wsse is not None and wsse.wsse.use_digest and wsse.http is None
    basic = soap_auth(parse_auth({"type": "basic", "username": "u", "password": {"secret": "env:YIWANG_TEST_MZ"}}))
    prepared = requests.Request("POST", "http://127.0.0.1/", auth=basic.http).prepare()
    assert prepared.headers["Authorization"] == "Basic " + base64.b64encode(b"u:mz-secret").decode()
    with pytest.raises(AuthSpecError, match="not a SOAP authentication"):
        soap_auth(parse_auth({"type": "bearer", "token": {"secret": "env:YIWANG_TEST_MZ"}}))
