"""`yiwang adapters rehearse` and POST /v1/adapters/{sector}/versions/{version}/rehearse: a bundle's rehearsal
items go to the sector's test endpoint with `rehearsal:` keys, no gateway case is made, what was created is
cancelled, the pass/fail report (masked) is kept on the version and shown by `adapters list`; a passed rehearsal
lets the version activate without force, a failed one does not (and forcing past it is audited)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from adapters.registry import default_bundles_dir
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.employment import EmploymentSimulator
from gateway.audit.ledger import AUDIT, MESSAGE, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.cli.adapters import make_adapters_app
from gateway.cli.audit import audit_commands
from gateway.cli.common import BAD_INPUT, PROBLEMS_FOUND, UNAVAILABLE
from gateway.domain.clock import SystemClock
from gateway.domain.roles import Role
from gateway.persistence.engine import make_engine
from gateway.persistence.tables import cases
from gateway.persistence.uow import create_schema
from gateway.sectors.bundle_records import BundleStore, pack_folder
from tests.support.gateways import Keys
from tests.support.local_server import free_port

YIWANG = str(Path(sys.executable).with_name("yiwang"))
PERSON = "150202199003071232"  # the sample applicant's ID number in the shipped rehearsal files


def case_count(gateway: Gateway) -> int:
    with gateway.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(cases)) or 0)


def test_rehearsing_a_soap_bundle_over_http_passes_cancels_what_it_made_and_lets_it_activate(
        make_gateway: Callable[..., Gateway]) -> None:
    with CivilAffairsSimulator() as sector:
        gateway = make_gateway(bundles=(), sector_endpoints={"civil_affairs": sector.url})
        version = gateway.bundles.register(pack_folder(default_bundles_dir() / "civil_affairs"), "test").version
        base = f"/v1/adapters/civil_affairs/versions/{version}"
        app = create_app(gateway)
        with TestClient(app, headers=Keys.of(gateway, Role.SECTOR_ADMIN, sector="public_security")) as stranger:
            refused = stranger.post(f"{base}/rehearse")
        with TestClient(app, headers=Keys.of(gateway, Role.HALL_CLIENT)) as hall:
            not_an_admin = hall.post(f"{base}/rehearse")
        with TestClient(app, headers=Keys.of(gateway, Role.SECTOR_ADMIN, sector="civil_affairs")) as admin:
            answer = admin.post(f"{base}/rehearse")
            listed = admin.get("/v1/adapters/civil_affairs/versions").json()["items"][0]
            activated = admin.post(f"{base}/activate")
        counters = sector.counters
    assert refused.status_code == 403 and not_an_admin.status_code == 403
    assert answer.status_code == 200, answer.text
    report = answer.json()["rehearsal"]
    assert (report["outcome"], report["passed"], report["total"]) == ("passed", 4, 4), report
    assert all(item["idempotency_key"].startswith("rehearsal:") for item in report["items"])
    assert report["items"][0]["request"]["CaseNumber"] == "YW-REHEARSAL-MZ-0001"
    assert report["items"][2]["answer"]["code"] == "FAIL"  # the refusal the team expects
    assert report["cleanup"] == [{"item": report["items"][0]["name"],
                                  "sector_ref": report["items"][0]["answer"]["result"]["sector_ref"],
                                  "cancelled": True}]
    assert PERSON not in answer.text and "mz-secret" not in answer.text and "+08:00" in report["at"]
    assert counters["cases_created"] == 1 and counters["cancels_received"] == 1 and case_count(gateway) == 0
    sent = gateway.ledger.records(Filters(MESSAGE, sector="civil_affairs"), 100)
    assert sent and all("rehearsal:" in json.dumps(gateway.ledger.open_body(r), ensure_ascii=False) for r in sent
                        if r.action == "sent")
    assert listed["rehearsal"]["outcome"] == "passed" and listed["rehearsal"]["passed"] == 4
    assert listed["test_outcome"] is None  # never tested: the passed rehearsal is what lets it activate
    assert activated.status_code == 200 and activated.json()["status"] == "active", activated.text
    assert gateway.ledger.records(Filters(AUDIT, action="forced activation")) == []


def test_no_rehearsal_file_is_a_clear_conflict_and_a_silent_sector_is_unavailable(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), sector_endpoints={"employment": f"http://127.0.0.1:{free_port()}"})
    police = gateway.bundles.register(pack_folder(default_bundles_dir() / "public_security"), "test").version
    jobs = gateway.bundles.register(pack_folder(default_bundles_dir() / "employment"), "test").version
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.OPERATOR)) as ops:
        answer = ops.post(f"/v1/adapters/public_security/versions/{police}/rehearse")
    cli = make_adapters_app(lambda: gateway.bundles, lambda: gateway.sector_calls)
    none = CliRunner().invoke(cli, ["rehearse", "public_security", police])
    silent = CliRunner().invoke(cli, ["rehearse", "employment", jobs])
    assert answer.status_code == 409 and answer.json()["type"] == "urn:yiwang:problem:no-rehearsal", answer.text
    assert none.exit_code == BAD_INPUT and "没有预演文件" in none.output
    assert gateway.bundles.get("public_security", police).rehearsal_outcome is None
    assert silent.exit_code == UNAVAILABLE and "failed 0/3" in silent.output, silent.output
    assert "not sent: '失业登记申请被受理' got no sector_ref" in silent.output
    assert (gateway.bundles.get("employment", jobs).rehearsal_result or {})["unreachable"] is True


def test_the_installed_command_rehearses_a_rest_bundle_and_prints_a_plain_table_when_piped(
        sqlite_url: str, tmp_path: Path) -> None:
    """One start of the console script (seconds on a busy machine): SQLite only; both databases run the same
    command in-process below."""
    engine = make_engine(sqlite_url)
    create_schema(engine)
    store = BundleStore(engine, SystemClock())
    version = store.register(pack_folder(default_bundles_dir() / "employment"), "test").version
    with EmploymentSimulator() as sector:
        env = {**os.environ, "YIWANG_DATABASE_URL": sqlite_url, "YIWANG_VAR_DIR": str(tmp_path / "var"),
               "YIWANG_SECTOR_ENDPOINTS": f"employment={sector.url}", "COLUMNS": "300", "NO_COLOR": "1"}
        done = subprocess.run([YIWANG, "adapters", "rehearse", "employment", version], env=env, capture_output=True,
                              text=True, timeout=60)
        counters = sector.counters
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"rehearsal of employment {version}: passed 3/3" and lines[1].split()[:4] == [
        "item", "operation", "result", "why"]
    assert [line.split()[1:3] for line in lines[2:5]] == [["submit_case", "pass"], ["query_status", "pass"],
                                                         ["cancel_case", "pass"]]
    assert "rehearsal:" in done.stdout and PERSON not in done.stdout and "jy-secret" not in done.stdout
    assert counters["cases_created"] == 1 and counters["cancels_received"] == 1  # item 3 cancelled it: no cleanup
    assert store.get("employment", version).rehearsal_outcome == "passed"
    engine.dispose()


def test_a_failed_expectation_fails_the_rehearsal_and_activation_then_needs_force(
        make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    folder = tmp_path / "employment"
    shutil.copytree(default_bundles_dir() / "employment", folder)
    descriptor = folder / "bundle.yaml"
    descriptor.write_text(descriptor.read_text(encoding="utf-8").replace('"2026.12.0"', '"2026.12.0-wrong"'),
                          encoding="utf-8")
    rehearsal = folder / "rehearsal.yaml"  # the team expects the wrong kind of reference
    rehearsal.write_text(rehearsal.read_text(encoding="utf-8").replace('"JY[0-9]+"', '"GA[0-9]+"'), encoding="utf-8")
    audited: list[tuple[str, str | None]] = []
    with EmploymentSimulator() as sector:
        gateway = make_gateway(bundles=(), sector_endpoints={"employment": sector.url})
        cli = audit_commands(make_adapters_app(lambda: gateway.bundles, lambda: gateway.sector_calls), "adapters",
                             lambda action, subject, detail, outcome: audited.append((action, outcome)))
        runner = CliRunner()
        registered = runner.invoke(cli, ["register", str(folder)])
        failed = runner.invoke(cli, ["rehearse", "employment", "2026.12.0-wrong"])
        as_json = runner.invoke(cli, ["rehearse", "employment", "2026.12.0-wrong", "--json"])
        listed = runner.invoke(cli, ["list", "employment"])
        refused = runner.invoke(cli, ["activate", "employment", "2026.12.0-wrong"])
        forced = runner.invoke(cli, ["activate", "employment", "2026.12.0-wrong", "--force"])
    assert registered.exit_code == 0, registered.output
    assert registered.output.split()[:3] == ["registered", "employment", "2026.12.0-wrong"]
    assert "last rehearsal: none, 3 item(s)" in registered.output and len(registered.output.splitlines()) == 1
    assert failed.exit_code == PROBLEMS_FOUND, failed.output
    assert "failed 2/3" in failed.output and "FAIL" in failed.output and "does not match 'GA[0-9]+'" in failed.output
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == PROBLEMS_FOUND and report["outcome"] == "failed" and report["passed"] == 2
    assert report["items"][0]["reasons"] == ["sector_ref: {!r} does not match 'GA[0-9]+'".format(
        report["items"][0]["answer"]["result"]["sector_ref"])]
    assert report["cleanup"] == [] and report["at"].endswith("+08:00")
    assert "failed 2/3" in listed.output, listed.output
    assert refused.exit_code == BAD_INPUT and "预演 failed" in " ".join(refused.output.split()), refused.output
    assert forced.exit_code == 0 and audited[-1] == ("adapters activate",
                                                     "ok: forced, last test never run, last rehearsal failed")
    assert (gateway.bundles.get("employment", "2026.12.0-wrong").rehearsal_result or {})["passed"] == 2
