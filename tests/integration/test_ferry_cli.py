"""`yiwang ferry status|gaps|quarantine|resend` at the command line, against the gateway's database and link
folders as `yiwang ops` works: a sector behind a gap whose agent (a station of the test's) lost a batch on the way
back and was sent a file no key signed; the operator reads the link both ways, its gap and its quarantined file,
and resends a range — written, audited — while a bad range, an unknown link or no reason exit with 2 or 3 and
write nothing. SQLite (the API's tests run both databases on the same links)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from adapters.kinds.ferry.batch import Entry, FerryKeys
from adapters.kinds.ferry.station import Station
from certstore import Credential
from ferry.agent import station_config
from ferry.config import load_config
from ferry.state import open_state
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway
from gateway.bootstrap.cli import app
from tests.support.ferry_stations import FarAgent, allowance_case, ferry_sector, waiting_for_answer
from tests.support.gateways import drain
from tests.support.pki import sm2_credential

DOWN, UP = "civil_affairs.down", "civil_affairs.up"


@dataclass
class Operator:
    gateway: Gateway
    agent: FarAgent

    def ferry(self, *args: str) -> Result:
        settings = self.gateway.settings
        env = {"YIWANG_DATABASE_URL": settings.db_url, "YIWANG_VAR_DIR": str(settings.var_dir),
               "YIWANG_FERRY_DIR": str(settings.ferry_folder), "COLUMNS": "250", "YIWANG_LOG_LEVEL": "warning"}
        return CliRunner().invoke(app, ["ferry", *args], env=env)

    def written(self) -> list[str]:
        """The batches waiting in the gateway's outgoing folder (not its receipts)."""
        outgoing = self.agent.station.config.incoming
        return sorted(path.name for path in outgoing.ready() if "_sig_" not in path.name)

    def audited(self, action: str) -> list[tuple[str | None, Any]]:
        ledger = self.gateway.ledger
        return [(r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT, action=action))]


@pytest.fixture
def operator(make_gateway: Callable[..., Gateway], tmp_path: Path) -> Operator:
    """Two batches sent down (the case's message, the carried bundle) and taken by the agent; three sent up, the
    second lost on the way; a file no key signed in the gateway's incoming folder."""
    gateway = make_gateway(bundles=(), ferry_dir=tmp_path / "ferry")
    agent = ferry_sector(gateway)
    case_no = allowance_case(gateway)
    drain(gateway, lambda: waiting_for_answer(gateway, case_no))
    gateway.ferry.run()
    agent.take()
    for _ in range(3):
        body = {"status": "in_process", "case_no": "NOBODY", "task_id": "T1"}  # names no case: counted, applied
        agent.station.send([Entry(id=uuid.uuid4().hex, type="decision", body=json.dumps(body).encode())])
    incoming = agent.station.config.outgoing
    incoming.remove(next(path for path in incoming.ready() if "_0000000002_" in path.name))
    incoming.write(f"{UP}_0000000099_deadbeef.txt", b"not a batch at all")
    gateway.ferry.run()
    return Operator(gateway, agent)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_operator_reads_a_link_both_ways_its_gap_and_its_quarantined_file(operator: Operator) -> None:
    table = operator.ferry("status")
    assert table.exit_code == 0, table.output
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith("civil_affairs")]
    assert [row[1] for row in rows] == ["down", "up"] and [row[2] for row in rows] == ["2", "1"]  # way, last seq
    [link] = [json.loads(line) for line in operator.ferry("status", "--json").stdout.splitlines()]
    assert (link["channel"], link["mode"], link["down"]["last_seq"], link["down"]["unacknowledged"]) == (
        "civil_affairs", "two_way", 2, 0)  # the agent receipted both
    assert (link["up"]["last_seq"], link["up"]["highest_seen"], link["up"]["open_gaps"]) == (1, 3, 1)
    assert link["quarantined_by_code"] == {"unreadable": 1}

    [gap] = [json.loads(line) for line in operator.ferry("gaps", "--json").stdout.splitlines()]
    assert (gap["channel"], gap["seq_from"], gap["seq_to"]) == (UP, 2, 2)
    quarantined = operator.ferry("quarantine", "--channel", "civil_affairs")
    assert quarantined.exit_code == 0 and "unreadable" in quarantined.stdout
    assert f"{UP}_0000000099_deadbeef.txt" in quarantined.stdout
    unknown = operator.ferry("status", "--channel", "public_security")
    assert unknown.exit_code == 3 and "public_security" in unknown.stderr
    metric = operator.gateway.metrics.get_sample_value  # the running gateway's /metrics reads the same link
    assert metric("yiwang_ferry_open_gaps", {"channel": "civil_affairs"}) == 1
    assert metric("yiwang_ferry_quarantined_total", {"channel": "civil_affairs", "code": "unreadable"}) == 1
    assert metric("yiwang_ferry_resend_after_seconds", {"channel": "civil_affairs"}) == 300


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_resend_writes_the_range_again_and_is_audited_a_bad_one_nothing(operator: Operator) -> None:
    for args, code, says in [(("civil_affairs", "2", "9", "--reason", "r"), 2, "只发出了 2 批"),
                             (("civil_affairs", "2", "1", "--reason", "r"), 2, "范围无效"),
                             (("public_security", "1", "1", "--reason", "r"), 3, "public_security"),
                             (("civil_affairs", "1", "2", "--reason", " "), 2, "--reason")]:
        refused = operator.ferry("resend", *args)
        assert refused.exit_code == code and says in refused.stderr, (args, refused.output)
    assert operator.written() == []

    resent = operator.ferry("resend", "civil_affairs", "1", "2", "--reason", "网闸重启，重发")
    assert resent.exit_code == 0, resent.output
    assert "resent 2 batches 1..2 on civil_affairs.down" in resent.stdout
    assert [name.split("_")[-2] for name in operator.written()] == ["0000000001", "0000000002"]
    assert operator.agent.take().duplicate_batches == 2  # the agent had them: dropped, not applied again
    outcomes = operator.audited("ferry resend")
    assert outcomes[-1][0] == "ok: resent 2 batches 1..2 on civil_affairs.down"
    assert outcomes[-1][1]["reason"] == "网闸重启，重发"


def test_on_the_agents_side_the_same_commands_read_its_state_and_resend_what_it_sent(tmp_path: Path) -> None:
    """`--config AGENT.yaml` on the 前置机: the agent (set up by `yiwang ferry init`) sent three batches up, which
    the one-way link lost; its operator reads them there and writes two of them again."""
    for folder in ("down", "up"):
        (tmp_path / folder).mkdir()
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "mz-agent", "channel": "civil_affairs", "state": "agent/state.sqlite",
        "master_key_file": "agent/master.key", "incoming": "down", "outgoing": "up", "mode": "one_way",
        "own_certificate": "mz-agent", "near_certificate": "yiwang-ferry"}), encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(app, ["ferry", "init", "--config", str(config_file), "--out", str(tmp_path / "agent.pem")])
    assert made.exit_code == 0, made.output
    config = load_config(config_file)
    state = open_state(config)
    near = Credential("yiwang-ferry", sm2_credential("yiwang gateway")[0])
    keys = FerryKeys(own=state.store.current("mz-agent"), peer=[near])
    station = Station(state.engine, state.ferry, station_config(config), lambda: keys, lambda: datetime.now(UTC))
    for _ in range(3):
        station.send([Entry(id=uuid.uuid4().hex, type="decision", body=b"{}")])
    for path in station.config.outgoing.ready():  # taken by the one-way link, and lost
        station.config.outgoing.remove(path)
    state.close()

    agent = ["--config", str(config_file)]
    shown = runner.invoke(app, ["ferry", "status", "--json", *agent])
    [link] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (link["channel"], link["sector"], link["mode"]) == ("civil_affairs", "mz-agent", "one_way")
    assert (link["up"]["sending"], link["up"]["last_seq"], link["down"]["sending"]) == (True, 3, False)
    refused = runner.invoke(app, ["ferry", "resend", "civil_affairs", "2", "9", "--reason", "r", *agent])
    assert refused.exit_code == 2 and "只发出了 3 批" in refused.stderr, refused.output
    resent = runner.invoke(app, ["ferry", "resend", "civil_affairs", "2", "3", "--reason", "网闸丢失", *agent])
    assert resent.exit_code == 0 and "resent 2 batches 2..3 on civil_affairs.up" in resent.stdout, resent.output
    assert "operator resend on the agent" in resent.stderr  # no gateway ledger on the 前置机: the log has it
    assert sorted(path.name.split("_")[-2] for path in station.config.outgoing.ready()) == ["0000000002",
                                                                                           "0000000003"]
