"""The simulators' fault switch reached from outside (adapters/simulators/SECTORS.md, docs/sectors.md "The simulators"):
over HTTP (`/_simulator/fault`), as a start option of `yiwang simulators run`, and by `yiwang simulators fault
SECTOR MODE --url`; and the 公安 simulator told at start where the gateway takes its callbacks."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest
from typer.testing import CliRunner

from adapters.simulators.base import CONTROL_FAULT_PATH, SimulatorBase
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.public_security import DEFAULT_KEY_ID, DEFAULT_SECRET, signed_headers
from gateway.bootstrap.cli import app
from tests.support.fault_harness import free_port
from tests.support.simulators import SIMULATORS, SUBMIT_PATH

YIWANG = str(Path(sys.executable).with_name("yiwang"))


@pytest.fixture(params=sorted(SIMULATORS))
def any_sim(request: pytest.FixtureRequest) -> Iterator[SimulatorBase]:
    with SIMULATORS[request.param]() as simulator:
        yield simulator


def switch(sim: SimulatorBase) -> str:
    return sim.base_url + CONTROL_FAULT_PATH


def test_the_switch_over_http_is_the_simulators_own_and_is_not_sector_traffic(any_sim: SimulatorBase) -> None:
    sector = any_sim.sector
    state = httpx.get(switch(any_sim)).json()
    assert (state["sector"], state["fault"]) == (sector, None)
    assert set(state["modes"]) == any_sim.fault_modes >= {"fail", "slow", "malformed", "hostile", "fault", "rate_limit"}

    armed = httpx.post(switch(any_sim), json={"sector": sector, "mode": "fail", "count": 1})
    assert armed.status_code == 200
    assert armed.json()["fault"] == {"mode": "fail", "remaining": 1, "slow_ms": 0} and any_sim.fault_mode == "fail"
    assert httpx.post(any_sim.url + SUBMIT_PATH[type(any_sim)], content=b"{}").status_code == 503  # as set_fault
    assert any_sim.fault_mode is None  # its one use taken

    counters = any_sim.counters
    assert (counters["raw_requests"], counters["faults_injected"]) == (1, 1)  # the switch's own requests uncounted


def test_a_wrong_order_changes_nothing_and_says_why(any_sim: SimulatorBase) -> None:
    sector = any_sim.sector
    any_sim.set_fault("slow", slow_ms=5)
    elsewhere = httpx.post(switch(any_sim), json={"sector": "somewhere_else", "mode": "fail"})
    assert elsewhere.status_code == 409 and sector in elsewhere.json()["error"]
    unknown = httpx.post(switch(any_sim), json={"sector": sector, "mode": "explode"})
    assert unknown.status_code == 400 and "explode" in unknown.json()["error"] and unknown.json()["modes"]
    for body in (b"[]", b"{", json.dumps({"sector": sector, "mode": "fail", "count": 0}).encode(),
                 json.dumps({"sector": sector, "mode": "fail", "count": True}).encode(),
                 json.dumps({"sector": sector, "mode": "fail", "colour": "red"}).encode()):
        assert httpx.post(switch(any_sim), content=body).status_code == 400, body
    assert any_sim.fault_mode == "slow"
    assert httpx.delete(switch(any_sim)).status_code == 405
    assert httpx.get(any_sim.base_url + "/_simulator/other").status_code == 404
    assert any_sim.counters["raw_requests"] == 0


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["simulators", *args])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_yiwang_simulators_fault_flips_a_running_simulators_switch() -> None:
    with HousingFundSimulator() as sim:
        code, said = invoke("fault", "housing_fund", "slow", "--slow-ms", "30", "--count", "2", "--url", sim.url)
        assert code == 0 and "fault `slow` armed for the next 2 request(s), 30 ms late" in said
        assert sim.fault_mode == "slow"
        code, said = invoke("fault", "housing_fund", "off", "--url", sim.url + "/api/v2/applications")  # any URL on it
        assert (code, sim.fault_mode) == (0, None) and "no fault armed" in said

        code, said = invoke("fault", "public_security", "fail", "--url", sim.url)  # the wrong simulator there
        assert code == 1 and "this is the housing_fund simulator" in said and sim.fault_mode is None


@pytest.mark.parametrize(("args", "named"), [
    (("fault", "tax_office", "fail"), "unknown sector 'tax_office'; one of: social_security, housing_fund"),
    (("fault", "housing_fund", "early_callback"), "no fault mode 'early_callback'; one of: off, fail, fault"),
    (("fault", "housing_fund", "fail", "--url", "ftp://127.0.0.1:1"), "--url must be the simulator's http(s)"),
    (("run", "housing_fund", "--fault", "duplicate_callback"), "no fault mode 'duplicate_callback'"),
    (("run", "housing_fund", "--callback-url", "http://127.0.0.1:1/cb"), "does not call back"),
    (("run", "public_security", "--port", "1", "--callback-url", "ftp://x"), "must be an http(s) address"),
    (("run", "social_security", "--port", "1", "--fault", "fail", "--fault-count", "0"), "count must be >= 1"),
])
def test_a_wrong_sector_mode_or_option_is_a_usage_error_before_anything_starts(args: tuple[str, ...],
                                                                                named: str) -> None:
    code, said = invoke(*args)
    assert (code, named in said) == (2, True), said


def test_the_help_lists_every_simulators_fault_modes() -> None:
    for command in ("run", "fault"):
        code, said = invoke(command, "--help")
        assert code == 0
        for name, simulator in SIMULATORS.items():
            assert f"{name}: {', '.join(sorted(simulator.fault_modes))}" in said


def test_yiwang_simulators_run_arms_the_fault_from_the_start() -> None:
    port = free_port()
    with running(["housing_fund", "--port", str(port), "--fault", "fail", "--fault-count", "2"]):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + CONTROL_FAULT_PATH).json()["fault"] == {"mode": "fail", "remaining": 2, "slow_ms": 0}
        assert httpx.post(url + "/api/v2/applications", content=b"{}").status_code == 503


def test_yiwang_simulators_runs_the_rating_platform() -> None:
    port = free_port()
    with running(["rating_platform", "--port", str(port)]):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/openapi.yaml").status_code == 200
        assert httpx.post(url + "/hcp/v1/ratings", json={}).json() == {"code": "401", "msg": "访问令牌无效或已过期"}


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.put((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_the_public_security_simulator_calls_back_where_it_was_started_to() -> None:
    """The bundle sends no HDDZ (the address is agreed at onboarding): without --callback-url the sector
    could only be polled."""
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    gateway.received = queue.Queue()  # type: ignore[attr-defined]
    Thread(target=gateway.serve_forever, daemon=True).start()
    callback_url = f"http://127.0.0.1:{gateway.server_address[1]}/callbacks/public_security"
    port = free_port()
    try:
        with running(["public_security", "--port", str(port), "--decision-delay-ms", "50",
                      "--callback-url", callback_url]):
            case = {"QQID": "Q-1", "SXBM": "11150203MB0E00080E4000114001000", "BJBH": "CASE-1",
                    "SQR": {"XM": "陈强", "SFZH": "150203199211054426"}, "CLQD": []}
            body = json.dumps(case).encode()
            headers = signed_headers(DEFAULT_KEY_ID, DEFAULT_SECRET, "POST", "/gaapi/hz/sqxx", body)
            submitted = httpx.post(f"http://127.0.0.1:{port}/gaapi/hz/sqxx", content=body, headers=headers)
            assert submitted.status_code == 202
            path, received_headers, notice = gateway.received.get(timeout=10)  # type: ignore[attr-defined]
        assert path == "/callbacks/public_security" and received_headers["X-Ca-Key"] == "ga-callback"
        assert json.loads(notice)["YWH"] == submitted.json()["YWH"]
    finally:
        gateway.shutdown()
        gateway.server_close()


@contextmanager
def running(args: list[str]) -> Iterator[None]:
    """`yiwang simulators run ARGS` in a process of its own, until its switch answers; then Ctrl-C to it, as an
    operator would stop it (and a kill by its id if it does not stop)."""
    port = int(args[args.index("--port") + 1])
    process = subprocess.Popen([YIWANG, "simulators", "run", *args], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}{CONTROL_FAULT_PATH}"):
            assert process.poll() is None and time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
