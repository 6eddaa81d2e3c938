"""`yiwang adapters test` says what happened — unreachable, our credentials refused (with the sector's answer,
masked), accepted — and activating a version whose last test did not end `accepted` needs force, over HTTP and
on the command line; a forced activation leaves an audit record naming the test it went past."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.registry import default_bundles_dir
from adapters.simulators.public_security import PublicSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.cli.adapters import make_adapters_app
from gateway.cli.audit import audit_commands
from gateway.cli.common import BAD_INPUT, PROBLEMS_FOUND, UNAVAILABLE
from gateway.domain.roles import Role
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import Keys
from tests.support.local_server import free_port

SECTOR = "public_security"
NOT_OURS = secrets.token_hex(8)  # the key the refusing sector expects: not the one the gateway signs with


def registered(gateway: Gateway) -> str:
    return gateway.bundles.register(pack_folder(default_bundles_dir() / SECTOR), "test").version


def test_a_test_says_unreachable_refused_or_accepted_and_shows_a_refusing_sectors_answer(
        make_gateway: Callable[..., Gateway]) -> None:
    with PublicSecuritySimulator(secret=NOT_OURS) as refusing, PublicSecuritySimulator() as accepting:
        outcomes: dict[str, Any] = {}
        for name, url in (("refusing", refusing.url), ("accepting", accepting.url),
                          ("nobody", f"http://127.0.0.1:{free_port()}")):
            gateway = make_gateway(bundles=(), sector_endpoints={SECTOR: url})
            version = registered(gateway) if name == "refusing" else gateway.bundles.versions(SECTOR)[0].version
            with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.OPERATOR)) as ops:
                answer = ops.post(f"/v1/adapters/{SECTOR}/versions/{version}/test")
            assert answer.status_code == 200, answer.text
            outcomes[name] = answer.json()
    refused = outcomes["refusing"]
    assert refused["test_outcome"] == "refused" and refused["test_result"]["outcome"] == "refused"
    assert refused["test_result"]["status"] == 401 and "签名" in refused["test_result"]["body"]
    assert outcomes["accepting"]["test_outcome"] == "accepted"
    assert outcomes["nobody"]["test_outcome"] == "unreachable" and "status" not in outcomes["nobody"]["test_result"]
    assert NOT_OURS not in json.dumps(outcomes) and "ga-secret" not in json.dumps(outcomes)


def test_activating_over_http_needs_an_accepted_test_or_force_and_forcing_is_audited(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), sector_endpoints={SECTOR: f"http://127.0.0.1:{free_port()}"})
    version = registered(gateway)
    path = f"/v1/adapters/{SECTOR}/versions/{version}/activate"
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.OPERATOR)) as ops:
        never = ops.post(path)
        ops.post(f"/v1/adapters/{SECTOR}/versions/{version}/test")  # nobody listens there: unreachable
        failed = ops.post(path, json={"force": False})
        assert gateway.bundles.get(SECTOR, version).status == "registered"  # refused: nothing changed
        bad = ops.post(path, json={"force": "yes please"})
        forced = ops.post(path, json={"force": True})
    for refusal, said in ((never, "从未测试"), (failed, "unreachable")):
        assert refusal.status_code == 409 and refusal.headers["content-type"] == "application/problem+json"
        problem = refusal.json()
        assert problem["type"] == "urn:yiwang:problem:version-untested" and said in problem["detail"], problem
        assert "测试" in problem["title"]
    assert bad.status_code == 422
    assert forced.status_code == 200 and forced.json()["status"] == "active", forced.text
    record = gateway.ledger.records(Filters(AUDIT, action="forced activation"))
    assert [(r.subject, r.outcome) for r in record] == [(f"sector={SECTOR},version={version}",
                                                         "forced, last test unreachable")]
    assert gateway.ledger.open_body(record[0])["last_test"] == "unreachable"


def test_activating_on_the_command_line_needs_an_accepted_test_or_force(make_gateway: Callable[..., Gateway]) -> None:
    audited: list[tuple[str, str | None, str]] = []
    with PublicSecuritySimulator(secret=NOT_OURS) as refusing:
        gateway = make_gateway(bundles=(), sector_endpoints={SECTOR: refusing.url})
        version = registered(gateway)
        cli = audit_commands(make_adapters_app(lambda: gateway.bundles, lambda: gateway.sector_calls),
                             "adapters", lambda action, subject, detail, outcome: audited.append(
                                 (action, subject, outcome)))
        runner = CliRunner()
        untested = runner.invoke(cli, ["activate", SECTOR, version])
        tested = runner.invoke(cli, ["test", SECTOR, version])
        refused = runner.invoke(cli, ["activate", SECTOR, version])
        forced = runner.invoke(cli, ["activate", SECTOR, version, "--force"])
    assert untested.exit_code == BAD_INPUT and "从未测试" in untested.output and "Traceback" not in untested.output
    assert tested.exit_code == PROBLEMS_FOUND and "credentials were refused" in tested.output
    assert "HTTP 401" in tested.output and NOT_OURS not in tested.output
    assert refused.exit_code == BAD_INPUT and "refused" in refused.output
    assert forced.exit_code == 0 and f"{SECTOR} {version}: active" in forced.output, forced.output
    assert audited[-1] == ("adapters activate", f"sector={SECTOR} version={version}",
                           "ok: forced, last test refused")
    assert [outcome for action, _, outcome in audited if action == "adapters activate"][:2] == ["exit 2", "exit 2"]

    gone = make_gateway(bundles=(), sector_endpoints={SECTOR: f"http://127.0.0.1:{free_port()}"})
    unreachable = CliRunner().invoke(make_adapters_app(lambda: gone.bundles, lambda: gone.sector_calls),
                                     ["test", SECTOR, version])
    assert unreachable.exit_code == UNAVAILABLE and "NOT reachable" in unreachable.output
