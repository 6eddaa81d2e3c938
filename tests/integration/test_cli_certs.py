"""`yiwang certs ...`: the commands on a real store (SQLite and PostgreSQL), readable errors with exit code 2,
and the installed command end to end through a master-key rotation."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import Result
from cryptography.hazmat.primitives import hashes
from sqlalchemy import Engine
from typer.testing import CliRunner

from certstore.keyring import MasterKeys
from certstore.store import CertStore
from gateway.cli.certs import make_certs_app
from gateway.cli.common import NOT_FOUND
from gateway.domain.clock import FixedClock
from gateway.persistence.cert_tables import CERT_TABLES
from gateway.persistence.engine import make_engine
from tests.support.pki import TestCA, key_pem

NOW = datetime.now(UTC).replace(microsecond=0)
YIWANG = shutil.which("yiwang", path=str(Path(sys.executable).parent)) or "yiwang"
Run = Callable[..., Result]


@pytest.fixture
def store(engine: Engine) -> CertStore:
    return CertStore(engine, CERT_TABLES, MasterKeys.parse(MasterKeys.generate("k1")), FixedClock(NOW), refresh_s=0)


@pytest.fixture
def run(store: CertStore) -> Run:
    runner, app = CliRunner(), make_certs_app(lambda: store)
    return lambda *args, **kw: runner.invoke(app, [str(a) for a in args], **kw)


@pytest.fixture
def ca() -> TestCA:
    return TestCA(now=NOW)


def refused(result: Result, message: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert "error:" in result.output and message in result.output and "Traceback" not in result.output


def test_import_pem_with_an_encrypted_key_then_list_and_show(run: Run, ca: TestCA, tmp_path: Path) -> None:
    issued = ca.issue("cli client", client=True)
    cert, key, password = tmp_path / "c.crt", tmp_path / "c.key", tmp_path / "pw"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(key_pem(issued.key, b"cli-pass"))
    password.write_text("cli-pass\n")
    (tmp_path / "chain.pem").write_bytes(issued.chain_pem)
    result = run("import", "gw", cert, "--key", key, "--chain", tmp_path / "chain.pem", "--password-file", password)
    assert result.exit_code == 0 and "imported gw version 1: current" in result.output, result.output
    listed = run("list")
    assert "gw" in listed.output and "CN=cli client" in listed.output and "yes" in listed.output
    shown = run("show", "gw")
    assert issued.cert.fingerprint(hashes.SHA256()).hex() in shown.output
    assert "sm3" in shown.output and "PRIVATE KEY" not in shown.output + listed.output


def test_bad_input_ends_with_a_red_line_and_exit_2_a_name_not_found_3(run: Run, ca: TestCA, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    issued = ca.issue("p12 cli")
    p12 = tmp_path / "client.p12"
    p12.write_bytes(issued.pkcs12(b"right"))
    monkeypatch.setenv("P12_PASS", "wrong")
    refused(run("import", "p", p12, "--password-env", "P12_PASS"), "does not open")
    refused(run("import", "p", p12, "--password-env", "UNSET_VARIABLE_X"), "UNSET_VARIABLE_X is not set")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    refused(run("import", "p", garbage), "no PEM certificate")
    refused(run("import", "p", tmp_path / "missing.pem"), "missing.pem")
    refused(run("show", "p"), "no certificate or secret named 'p'", NOT_FOUND)
    refused(run("rotate", "p"), "no certificate or secret named 'p'", NOT_FOUND)
    refused(run("csr", "p", "--cn", "x", "--algorithm", "dsa"), "unknown key algorithm")
    monkeypatch.setenv("P12_PASS", "right")
    assert run("import", "p", p12, "--password-env", "P12_PASS", "--sector", "housing_fund").exit_code == 0
    refused(run("import", "p", p12, "--password-env", "P12_PASS", "--sector", "civil_affairs"),
            "belongs to sector 'housing_fund'")


def test_csr_then_import_the_signed_certificate_rotate_and_retire(run: Run, store: CertStore, ca: TestCA,
                                                                   tmp_path: Path) -> None:
    first = ca.issue("first")
    (tmp_path / "first.crt").write_bytes(first.cert_pem)
    run("import", "ss", tmp_path / "first.crt", "--sector", "social_security")
    made = run("csr", "ss", "--cn", "yiwang.example", "--o", "包头市", "--san", "127.0.0.1", "--sector",
               "social_security", "--algorithm", "ec-p256")
    assert made.exit_code == 0, made.output
    csr = made.stdout[made.stdout.index("-----BEGIN CERTIFICATE REQUEST"):]
    (tmp_path / "signed.crt").write_bytes(ca.sign_csr(csr.encode()))
    imported = run("import", "ss", tmp_path / "signed.crt", "--sector", "social_security")
    assert "version 2: staged" in imported.output, imported.output
    assert run("rotate", "ss", "--overlap-days", "2").exit_code == 0
    assert store.current("ss").private_key_pem is not None and len(store.trusted("ss")) == 2
    refused(run("retire", "ss", "--version", "2"), "is current")
    assert "ss v1: retired" in run("retire", "ss", "--version", "1").output


def test_secrets_check_and_new_master_key(run: Run, store: CertStore, ca: TestCA,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GJJ_SECRET", "very-secret-value")
    assert run("secret-set", "gjj-client-secret", "--from-env", "GJJ_SECRET").exit_code == 0
    prompted = run("secret-set", "typed", input="typed-value\n")
    assert prompted.exit_code == 0 and store.secret("typed") == "typed-value"
    listed = run("secret-list")
    assert "gjj-client-secret" in listed.output and "very-secret-value" not in listed.output
    assert store.secret("gjj-client-secret") == "very-secret-value"

    store.import_pem("soon", ca.issue("soon", days=5).cert_pem, actor="t")
    checked = run("check")
    assert "1 new warning(s)" in checked.output and "soon" in checked.output
    assert "0 new warning(s)" in run("check").output

    item = run("new-master-key", "--id", "k9").output.strip()
    assert MasterKeys.parse(item).current_id == "k9"
    refused(run("new-master-key", "--id", "bad.id"), "master key 'bad.id'")


def test_the_installed_command_through_a_master_key_rotation(tmp_path: Path, ca: TestCA,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            request: pytest.FixtureRequest) -> None:
    """`yiwang certs` as wired in gateway.bootstrap.cli: settings from the environment, the store on var/yiwang.db."""
    from gateway.bootstrap.cli import app  # the composition root, as the console script runs it

    # The commands configure logging onto CliRunner's stderr, closed after each run: restore it after the test.
    saved = structlog.get_config()
    request.addfinalizer(lambda: structlog.configure(**saved))
    old, new = MasterKeys.generate("old"), MasterKeys.generate("new")
    issued = ca.issue("installed")
    cert, key = issued.write(tmp_path / "pki", "gw")
    monkeypatch.setenv("YIWANG_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("YIWANG_DATABASE_URL", raising=False)
    monkeypatch.setenv("YIWANG_MASTER_KEY", old)
    monkeypatch.setenv("GJJ", "s3cret")
    runner = CliRunner()
    assert runner.invoke(app, ["certs", "import", "gw", str(cert), "--key", str(key)]).exit_code == 0
    assert runner.invoke(app, ["certs", "secret-set", "gjj", "--from-env", "GJJ"]).exit_code == 0

    rewrapped = subprocess.run([YIWANG, "certs", "rewrap"], env={**os.environ, "YIWANG_MASTER_KEY": f"{new},{old}"},
                               capture_output=True, text=True, timeout=60)  # the installed console script
    assert "re-wrapped 2 envelope(s) under master key new" in rewrapped.stdout, rewrapped.stdout + rewrapped.stderr
    monkeypatch.setenv("YIWANG_MASTER_KEY", new)
    shown = runner.invoke(app, ["certs", "show", "gw"])
    assert shown.exit_code == 0 and "master key      new" in shown.stdout, shown.stdout
    reopened = make_engine(f"sqlite:///{tmp_path / 'var' / 'yiwang.db'}")
    only_new = CertStore(reopened, CERT_TABLES, MasterKeys.parse(new), FixedClock(NOW))
    assert only_new.current("gw").private_key_pem == issued.key_pem and only_new.secret("gjj") == "s3cret"
    reopened.dispose()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("yiwang.db*"))
    assert base64.b64encode(issued.key_der)[:40] not in raw and issued.key_der[:64] not in raw
    assert "re-wrapped the logs' signing key" in rewrapped.stdout  # made by the audited commands above
    # With the old key gone, the logs still sign and verify: their signing key moved to the new key too.
    verified = subprocess.run([YIWANG, "audit", "verify"], env={**os.environ, "YIWANG_MASTER_KEY": new},
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr


BEIJING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$")  # gateway.domain.clock.beijing_text


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_list_show_secret_list_and_check_print_json_with_the_apis_fields(run: Run, store: CertStore, ca: TestCA,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    issued = ca.issue("json client", days=5)
    store.import_pem("gw", issued.cert_pem, actor="t", sector="housing_fund")
    fingerprint = issued.cert.fingerprint(hashes.SHA256()).hex()
    [row] = json_lines(run("list", "--json"))
    [version] = store.versions("gw")
    assert version.public().keys() <= row.keys() and row["sha256"] == fingerprint and row["name"] == "gw"
    assert BEIJING.match(row["not_after"]) and BEIJING.match(row["created_at"]) and 4 < row["days_left"] <= 5
    assert json_lines(run("list", "--sector", "social_security", "--json")) == []
    [shown] = json_lines(run("show", "gw", "--json"))  # as GET /v1/certificates/gw answers
    assert (shown["name"], shown["sector"], shown["kind"]) == ("gw", "housing_fund", version.kind)
    assert [v["sha256"] for v in shown["versions"]] == [fingerprint]
    plain = run("list").stdout  # piped: the fingerprint whole, never cut
    assert fingerprint in plain and "…" not in plain
    monkeypatch.setenv("S", "value")
    assert run("secret-set", "gjj-client-secret", "--from-env", "S").exit_code == 0
    [secret] = json_lines(run("secret-list", "--json"))
    assert secret["name"] == "gjj-client-secret" and BEIJING.match(secret["created_at"])
    assert "value" not in secret.values()
    checked = run("check", "--json")
    # The warning's own log line: on stdout here only, where no root configured logging (yiwang logs to stderr).
    [expiring] = [json.loads(line) for line in checked.stdout.splitlines() if line.startswith("{")]
    assert expiring["name"] == "gw" and BEIJING.match(expiring["not_after"]) and "1 new warning(s)" in checked.stderr


def test_the_certificate_file_is_named_once_as_argument_or_cert_option(run: Run, ca: TestCA, tmp_path: Path) -> None:
    cert = tmp_path / "peer.pem"
    cert.write_bytes(ca.issue("peer").cert_pem)
    assert run("import", "peer", "--cert", cert).exit_code == 0
    refused(run("import", "peer2", cert, "--cert", cert), "name the certificate file once")
    refused(run("import", "peer3"), "name the certificate file once")
    refused(run("import", "peer4", cert, "--agent", tmp_path / "agent.yaml"), "--agent is not available here")
