"""An mTLS client certificate bound to an identity stands for it, as its API key does — when a TLS terminator
in front of the gateway passes the verified certificate on in the configured header, and only from the
terminator's address."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.bootstrap.app import Gateway, create_app
from gateway.cli.common import NOT_FOUND
from gateway.cli.keys import make_keys_app
from gateway.domain.roles import Role
from gateway.security.api_keys import IdentityError
from tests.support.pki import TestCA

HEADER = "X-SSL-Client-Cert"
TESTCLIENT = "testclient"  # the peer address Starlette's TestClient reports


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


def _escaped(pem: bytes) -> dict[str, str]:
    return {HEADER: quote(pem.decode())}  # as nginx's $ssl_client_escaped_cert


def _gateway(make_gateway: Callable[..., Gateway], proxies: frozenset[str] = frozenset({TESTCLIENT})) -> Gateway:
    return make_gateway(bundles=(), client_cert_header=HEADER, client_cert_proxies=proxies)


def test_a_bound_certificate_authenticates_as_its_identity_with_its_roles(
    make_gateway: Callable[..., Gateway], ca: TestCA
) -> None:
    gateway = _gateway(make_gateway)
    operator, _ = gateway.keys.issue("ops terminal", [Role.OPERATOR])
    certificate = ca.issue("ops-terminal").cert_pem
    gateway.keys.bind_certificate(operator.id, certificate)
    client = TestClient(create_app(gateway))
    assert client.get("/v1/adapters", headers=_escaped(certificate)).status_code == 200
    assert client.get("/v1/identities", headers=_escaped(certificate)).status_code == 403  # not a security admin
    stranger = ca.issue("stranger").cert_pem
    assert client.get("/v1/adapters", headers=_escaped(stranger)).status_code == 401
    assert client.get("/v1/adapters", headers={HEADER: "not a certificate"}).status_code == 401

    gateway.keys.revoke(operator.id)
    assert client.get("/v1/adapters", headers=_escaped(certificate)).status_code == 401


def test_the_header_is_believed_only_from_the_terminator_and_only_when_configured(
    make_gateway: Callable[..., Gateway], ca: TestCA
) -> None:
    for i, gateway in enumerate((_gateway(make_gateway, proxies=frozenset({"10.0.0.1"})), make_gateway(bundles=()))):
        certificate = ca.issue(f"ops-terminal-{i}").cert_pem
        operator, _ = gateway.keys.issue("ops terminal", [Role.OPERATOR])
        gateway.keys.bind_certificate(operator.id, certificate)
        answer = TestClient(create_app(gateway)).get("/v1/adapters", headers=_escaped(certificate))
        assert answer.status_code == 401


def test_one_certificate_stands_for_one_identity(make_gateway: Callable[..., Gateway], ca: TestCA) -> None:
    gateway = _gateway(make_gateway)
    first, _ = gateway.keys.issue("first", [Role.OPERATOR])
    second, _ = gateway.keys.issue("second", [Role.OPERATOR])
    certificate = ca.issue("shared").cert_pem
    gateway.keys.bind_certificate(first.id, certificate)
    with pytest.raises(IdentityError, match="已绑定"):
        gateway.keys.bind_certificate(second.id, certificate)
    with pytest.raises(IdentityError, match="不是 PEM 格式的证书"):
        gateway.keys.bind_certificate(second.id, b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def test_the_cli_binds_a_certificate_and_refuses_bad_input_readably(
    make_gateway: Callable[..., Gateway], ca: TestCA, tmp_path: Path
) -> None:
    gateway = _gateway(make_gateway)
    operator, _ = gateway.keys.issue("ops terminal", [Role.OPERATOR])
    issued = ca.issue("ops-terminal")
    pem = tmp_path / "client.pem"
    pem.write_bytes(issued.cert_pem)
    app, runner = make_keys_app(lambda: gateway.keys), CliRunner()
    bound = runner.invoke(app, ["bind-certificate", operator.id, str(pem)])
    assert bound.exit_code == 0 and "sha256" in bound.output, bound.output
    assert TestClient(create_app(gateway)).get("/v1/adapters", headers=_escaped(issued.cert_pem)).status_code == 200
    missing = runner.invoke(app, ["bind-certificate", operator.id, str(tmp_path / "absent.pem")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    unknown = runner.invoke(app, ["bind-certificate", "id_000000000000", str(pem)])
    assert unknown.exit_code == NOT_FOUND and "没有身份" in unknown.output
