"""The far-side ferry agent (`ferry`) against a near side played by the test: a `Station` of the gateway's, its key
from the test PKI, writing into the agent's incoming folder and reading its outgoing one (no link process: the
link's faults are tests/faults'). The sector is the civil-affairs SOAP simulator.

The agent is set up as an operator would: `yiwang ferry init` (its own SM2 key pair), `yiwang certs import
--agent` (the gateway's certificate); its bundle comes over the ferry as a signed control batch; a message batch
is delivered to the sector once, answered, and the agent's own polling sends the decision. A restarted agent (new
objects on the same SQLite file) delivers nothing again; a control batch signed by a key it does not trust is
quarantined and installs nothing, and a message for a sector with no bundle is answered `failed`, not lost.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import MetaData, create_engine
from typer.testing import CliRunner

from adapters import Batch, Entry, FerryKeys, LinkFolder, Station, StationConfig, default_bundles_dir, ferry_tables
from adapters.simulators import civil_affairs
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from certstore import Credential
from ferry import Agent, AgentConfig, agent_state, load_config, open_agent_store
from gateway.bootstrap.cli import app
from tests.support.pki import sm2_credential
from tests.support.sector_cases import mz_case

SECTOR, VERSION = "civil_affairs", "2026.11.1"
GATEWAY_CERT = "yiwang-ferry"
FINAL = ("approved", "denied", "returned")
YIWANG = shutil.which("yiwang", path=str(Path(sys.executable).parent)) or "yiwang"


@dataclass
class Link:
    folder: Path
    config_file: Path
    near: Station
    gateway_pem: bytes

    @property
    def config(self) -> AgentConfig:
        return load_config(self.config_file)

    def agent(self) -> Agent:
        return Agent(self.config)

    def bundle_control(self, version: str = VERSION) -> Entry:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted((default_bundles_dir() / SECTOR).rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(default_bundles_dir() / SECTOR).as_posix())
        body = {"control": "bundle", "sector": SECTOR, "version": version,
                "archive": base64.b64encode(archive.getvalue()).decode()}
        return Entry(id=uuid.uuid4().hex, type="control", body=json.dumps(body).encode())

    def received(self) -> list[dict[str, Any]]:
        """What the near side reads back: each answer and decision entry's type and body."""
        got: list[dict[str, Any]] = []

        def apply(batch: Batch, entry: Entry) -> None:
            got.append({"type": entry.type, **json.loads(entry.body)})

        self.near.receive(apply)
        return got


def message(key: str, case_no: str) -> Entry:
    body = {"operation": "submit_case", "sector": SECTOR,
            "message": mz_case(key, case_no, certificate_provided=True)}
    return Entry(id=uuid.uuid4().hex, type="message", body=json.dumps(body, ensure_ascii=False).encode(), key=key)


def near_station(database: Path, down: Path, up: Path, own: Credential, agent_pem: bytes) -> Station:
    """The gateway's side of the link: its own database, writing into `down`, reading `up`."""
    engine = create_engine(f"sqlite:///{database}")
    metadata = MetaData()
    tables = ferry_tables(metadata)
    metadata.create_all(engine)
    config = StationConfig(name="gateway", send_channel=f"{SECTOR}.down", receive_channel=f"{SECTOR}.up",
                           outgoing=LinkFolder(down), incoming=LinkFolder(up))
    agent = Credential("mz-agent", agent_pem)
    return Station(engine, tables, config, lambda: FerryKeys(own=own, peer=[agent]), lambda: datetime.now(UTC))


@pytest.fixture
def sector(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[CivilAffairsSimulator]:
    """The sector; it decides 150 ms after a submission unless the test asks otherwise (indirect parameter)."""
    monkeypatch.setenv("YIWANG_SECRET_MZ_PASSWORD", civil_affairs.DEFAULT_PASSWORD)
    with CivilAffairsSimulator(decision_delay_ms=getattr(request, "param", 150)) as simulator:
        yield simulator


@pytest.fixture
def link(tmp_path: Path, sector: CivilAffairsSimulator, monkeypatch: pytest.MonkeyPatch) -> Link:
    """An agent set up by its commands, and the gateway's station facing it."""
    monkeypatch.delenv("YIWANG_FERRY_MASTER_KEY", raising=False)
    for name in ("down", "up"):
        (tmp_path / name).mkdir()
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "mz-agent", "channel": SECTOR, "state": "agent/state.sqlite", "master_key_file": "agent/master.key",
        "incoming": "down", "outgoing": "up", "own_certificate": "mz-agent", "near_certificate": GATEWAY_CERT,
        "endpoint": sector.url, "poll_interval_ms": 50, "interval_ms": 50}), encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(app, ["ferry", "init", "--config", str(config_file), "--out", str(tmp_path / "agent.pem")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "agent" / "master.key").stat().st_mode & 0o777 == 0o600
    gateway_pem, gateway_key = sm2_credential("yiwang gateway")
    (tmp_path / "near.pem").write_bytes(gateway_pem)
    imported = runner.invoke(app, ["certs", "import", "--agent", str(config_file), GATEWAY_CERT,
                                   "--cert", str(tmp_path / "near.pem")])
    assert imported.exit_code == 0 and "imported yiwang-ferry version 1: current" in imported.output, imported.output
    near = near_station(tmp_path / "near.sqlite", tmp_path / "down", tmp_path / "up",
                        Credential(GATEWAY_CERT, gateway_pem, gateway_key), (tmp_path / "agent.pem").read_bytes())
    return Link(tmp_path, config_file, near, gateway_pem)


def test_a_bundle_then_a_message_cross_once_and_come_back_as_an_answer_and_a_decision(
        link: Link, sector: CivilAffairsSimulator) -> None:
    link.near.send([link.bundle_control()])
    submitted = message("MZ-FERRY-1", "11150203MB0C000405400011300300020261207000001")
    link.near.send([submitted], operation_of={submitted.id: "submit_case"})
    agent = link.agent()
    try:
        report = agent.run_once()
        assert (report.installed, report.delivered, report.sent_seq) == (1, 1, 1)
        assert sector.counters["submits_received"] == 1 and sector.counters["cases_created"] == 1
        back = link.received()  # the answer, and perhaps a first decision already (polling every 50 ms)
        (answer,) = [e for e in back if e["type"] == "answer"]
        assert answer["outcome"] == "ok" and answer["error"] is None
        assert (answer["message"], answer["key"], answer["operation"]) == (submitted.id, "MZ-FERRY-1", "submit_case")
        sector_ref = answer["result"]["sector_ref"]
        decisions = _decisions_until_final(link, agent, [e for e in back if e["type"] == "decision"])
    finally:
        agent.close()
    last = decisions[-1]
    assert last["status"] in FINAL and last["sector_ref"] == sector_ref
    assert (last["case_no"], last["idempotency_key"]) == ("11150203MB0C000405400011300300020261207000001",
                                                          "MZ-FERRY-1")
    assert last["task_id"] and len({d["status"] for d in decisions}) == len(decisions)  # each a change

    # A restarted agent, the same batches written again by the near side: nothing is delivered twice.
    assert link.near.resend(1, 2) == 2
    again = link.agent()
    try:
        report = again.run_once()
        assert (report.installed, report.delivered, report.sent_seq) == (0, 0, None)
        assert report.received.duplicate_batches == 2
        state = agent_state(link.config)
    finally:
        again.close()
    assert sector.counters["submits_received"] == 1 and link.received() == []
    assert [(b["sector"], b["version"], b["active"]) for b in state["bundles"]] == [(SECTOR, VERSION, True)]
    assert state["polls"] == [] and state["pending"] == {}  # decided: no poll open, nothing waiting


def _decisions_until_final(link: Link, agent: Agent, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while not (decisions and decisions[-1]["status"] in FINAL) and time.monotonic() < deadline:
        time.sleep(0.05)
        agent.run_once()
        decisions += [d for d in link.received() if d["type"] == "decision"]
    assert decisions, "no decision came back"
    return decisions


def test_a_control_batch_signed_by_an_unknown_key_is_quarantined_and_installs_nothing(
        link: Link, sector: CivilAffairsSimulator) -> None:
    stranger_pem, stranger_key = sm2_credential("not the gateway")
    forger = near_station(link.folder / "forger.sqlite", link.folder / "down", link.folder / "forger-up",
                          Credential(GATEWAY_CERT, stranger_pem, stranger_key),
                          (link.folder / "agent.pem").read_bytes())
    forger.send([link.bundle_control()])  # a batch as the gateway's would be, by a key the agent never imported
    agent = link.agent()
    try:
        report = agent.run_once()
        assert report.received.quarantined == 1 and report.installed == 0
        assert agent.bundles.listed() == []
        assert len(list((link.folder / "down" / "quarantine").glob("*.reason.json"))) == 1
        assert agent.station.quarantined()[0].code == "unknown_signer"

        # A message for a sector with no bundle installed: answered `failed`, nothing reaches the sector.
        lost = message("MZ-FERRY-2", "11150203MB0C000405400011300300020261207000002")
        link.near.send([lost])
        agent.run_once()
    finally:
        agent.close()
    (answer,) = link.received()
    assert answer["outcome"] == "failed" and answer["message"] == lost.id
    assert "no bundle installed for civil_affairs" in answer["error"]["message"]
    assert answer["error"]["retryable"] is False
    assert sector.counters["submits_received"] == 0
    assert open_agent_store(link.config).versions(GATEWAY_CERT)[0].status == "current"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("crash_at", ["after_apply", "before_rename"])
def test_killed_at_a_crash_point_the_agent_answers_once_and_delivers_nothing_twice(
        link: Link, sector: CivilAffairsSimulator, crash_at: str) -> None:
    """after_apply: delivered, the batch not recorded; before_rename: recorded, the first file written after it
    (the receipt) not renamed into place. Either way the next pass delivers nothing again and answers once."""
    link.near.send([link.bundle_control()])
    agent = link.agent()
    try:
        agent.run_once()  # the bundle installed
    finally:
        agent.close()
    submitted = message("MZ-FERRY-3", "11150203MB0C000405400011300300020261207000003")
    link.near.send([submitted])
    killed = subprocess.run([YIWANG, "ferry", "run-once", "--config", str(link.config_file)],
                            env={**os.environ, "YIWANG_UNSAFE_FERRY_CRASH_AT": crash_at},
                            capture_output=True, timeout=20)
    assert killed.returncode == -9, killed.stderr.decode()
    assert sector.counters["submits_received"] == 1
    again = link.agent()
    try:
        report = again.run_once()  # after_apply: the batch is applied again, its message finds its answer made
    finally:
        again.close()
    assert report.received.applied_batches == (crash_at == "after_apply") and report.delivered == 0
    assert sector.counters["submits_received"] == 1
    answers = [e for e in link.received() if e["type"] == "answer"]
    assert [(a["message"], a["outcome"]) for a in answers] == [(submitted.id, "ok")]


def test_a_bundle_that_is_not_what_its_control_entry_says_is_refused_and_shown(link: Link) -> None:
    link.near.send([link.bundle_control(version="9.9.9")])
    agent = link.agent()
    try:
        assert agent.run_once().installed == 0
    finally:
        agent.close()
    shown = CliRunner().invoke(app, ["ferry", "state", "--config", str(link.config_file), "--json"])
    assert shown.exit_code == 0, shown.output
    (bundle,) = json.loads(shown.output)["bundles"]
    assert (bundle["version"], bundle["active"]) == ("9.9.9", False)
    assert "the control entry says civil_affairs 9.9.9, the bundle is civil_affairs 2026.11.1" in bundle["problem"]


def test_the_commands_refuse_what_the_agent_cannot_run_with_exit_2_naming_what_to_do(link: Link) -> None:
    runner, config = CliRunner(), str(link.config_file)
    text = link.config_file.read_text(encoding="utf-8")
    link.config_file.write_text(text + "colour: blue\n", encoding="utf-8")
    refused = runner.invoke(app, ["ferry", "run-once", "--config", config])
    assert refused.exit_code == 2 and "`colour`: unknown key" in refused.output and "Traceback" not in refused.output
    link.config_file.write_text(text.replace("near_certificate: yiwang-ferry", "near_certificate: other"),
                                encoding="utf-8")
    untrusted = runner.invoke(app, ["ferry", "serve", "--config", config])
    assert untrusted.exit_code == 2 and "yiwang certs import --agent" in untrusted.output
    link.config_file.write_text(text.replace("agent/state.sqlite", "elsewhere.sqlite"), encoding="utf-8")
    for command in (["ferry", "run-once"], ["ferry", "state"], ["certs", "import", "--agent", config, "x", "--cert",
                                                                   str(link.folder / "near.pem")]):
        uninitialised = runner.invoke(app, [*command, "--config", config] if command[0] == "ferry" else command)
        assert uninitialised.exit_code == 2 and "yiwang ferry init" in uninitialised.output, uninitialised.output
    assert not (link.folder / "elsewhere.sqlite").exists()  # nothing made by a command that refused


@pytest.mark.timeout(30)
def test_serve_answers_until_sigterm_then_finishes_its_pass_and_exits_0(link: Link,
                                                                        sector: CivilAffairsSimulator) -> None:
    link.near.send([link.bundle_control()])
    submitted = message("MZ-FERRY-4", "11150203MB0C000405400011300300020261207000004")
    link.near.send([submitted])
    serving = subprocess.Popen([YIWANG, "ferry", "serve", "--config", str(link.config_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        back: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while not any(e["type"] == "answer" for e in back) and time.monotonic() < deadline:
            time.sleep(0.1)
            back += link.received()
    finally:
        serving.send_signal(signal.SIGTERM)
        _, stderr = serving.communicate(timeout=15)
    assert [e["message"] for e in back if e["type"] == "answer"] == [submitted.id]
    assert serving.returncode == 0, stderr.decode()
    assert "ferry agent stopped" in stderr.decode()


def test_the_near_sides_new_certificate_is_trusted_once_rotated_on_the_agent_by_hand(link: Link) -> None:
    runner, config = CliRunner(), str(link.config_file)
    new_pem, new_key = sm2_credential("yiwang gateway, renewed")
    (link.folder / "near-2.pem").write_bytes(new_pem)
    renewed = near_station(link.folder / "near.sqlite", link.folder / "down", link.folder / "up",
                           Credential(GATEWAY_CERT, new_pem, new_key), (link.folder / "agent.pem").read_bytes())
    imported = runner.invoke(app, ["certs", "import", "--agent", config, GATEWAY_CERT,
                                   "--cert", str(link.folder / "near-2.pem")])
    assert imported.exit_code == 0 and "staged" in imported.output, imported.output
    renewed.send([link.bundle_control()])  # signed with the new key: not trusted while only staged
    agent = link.agent()
    try:
        assert agent.run_once().received.quarantined == 1
        rotated = runner.invoke(app, ["certs", "rotate", "--agent", config, GATEWAY_CERT])
        assert rotated.exit_code == 0 and "version 2 is current" in rotated.output, rotated.output
        link.near.send([link.bundle_control()])  # the old key, still trusted in the overlap window
        renewed.send([link.bundle_control()])
        agent.state.store.refresh_s = 0  # the store's cache of trusted certificates: read again now
        assert agent.run_once().installed == 2
    finally:
        agent.close()
    listed = runner.invoke(app, ["certs", "list", "--agent", config, "--json"])
    statuses = sorted((row["name"], row["status"]) for row in map(json.loads, listed.output.splitlines()))
    assert statuses == [("mz-agent", "current"), (GATEWAY_CERT, "current"), (GATEWAY_CERT, "superseded")]


@pytest.mark.parametrize("sector", [60_000], indirect=True)  # undecided while the test runs
def test_a_cancellation_the_sector_took_ends_the_polling_of_its_task(link: Link,
                                                                     sector: CivilAffairsSimulator) -> None:
    link.near.send([link.bundle_control()])
    submitted = message("MZ-FERRY-5", "11150203MB0C000405400011300300020261207000005")
    link.near.send([submitted])
    agent = link.agent()
    try:
        agent.run_once()
        (answer,) = [e for e in link.received() if e["type"] == "answer"]
        assert [p["sector_ref"] for p in agent.polls.listed(open_only=True)] == [answer["result"]["sector_ref"]]
        canonical = json.loads(submitted.body)["message"]
        cancel = {"operation": "cancel_case", "message": {**canonical, "sector_ref": answer["result"]["sector_ref"]}}
        link.near.send([Entry(id=uuid.uuid4().hex, type="message", key="MZ-FERRY-5:cancel",
                              body=json.dumps(cancel, ensure_ascii=False).encode())])
        agent.run_once()
        assert agent.polls.listed(open_only=True) == []
    finally:
        agent.close()
    assert sector.counters["cancels_received"] == 1
    assert [e["outcome"] for e in link.received() if e["type"] == "answer"] == ["ok"]


def test_on_a_one_way_link_the_agent_writes_beacons_and_no_receipts(link: Link) -> None:
    text = link.config_file.read_text(encoding="utf-8")
    link.config_file.write_text(text + "mode: one_way\nbeacon_every_ms: 60000\n", encoding="utf-8")
    link.near.send([link.bundle_control()])
    agent = link.agent()
    try:
        first, second = agent.run_once(), agent.run_once()
    finally:
        agent.close()
    assert (first.installed, first.beacon, second.beacon) == (1, True, False)  # one a minute, not one a pass
    signals = [path.name for path in LinkFolder(link.folder / "up").ready()]
    assert len(signals) == 1 and "_sig_" in signals[0]
    assert link.received() == []
    status = {s.channel: s for s in link.near.status()}
    assert status[f"{SECTOR}.up"].last_signal_at is not None  # a signal came: a beacon, not a receipt,
    assert status[f"{SECTOR}.down"].unacked == 1  # for the control batch stays unacknowledged


def test_batches_wrapped_to_the_agents_previous_certificate_open_through_its_rotation_overlap(link: Link) -> None:
    runner, config = CliRunner(), str(link.config_file)
    new_pem, new_key = sm2_credential("mz-agent, renewed")
    (link.folder / "agent-2.pem").write_bytes(new_pem)
    (link.folder / "agent-2.key").write_bytes(new_key)
    for command in (["import", "--agent", config, "mz-agent", str(link.folder / "agent-2.pem"), "--key",
                     str(link.folder / "agent-2.key")], ["rotate", "--agent", config, "mz-agent"]):
        done = runner.invoke(app, ["certs", *command])
        assert done.exit_code == 0, done.output
    link.near.send([link.bundle_control()])  # the near side still wraps to the agent's previous certificate
    agent = link.agent()
    try:
        report = agent.run_once()
    finally:
        agent.close()
    assert (report.received.quarantined, report.installed) == (0, 1)
