"""The 公安 simulator over real HTTP: HMAC-signed requests (signed here independently of the
simulator's own code), nonce replay protection, signed callbacks reaching a tiny receiver with
retries, ``duplicate_callback`` and ``early_callback``, the polling fallback, 户籍 lookups and
every fault mode. Every JSON answer is checked against the shipped OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema
import pytest

from adapters.simulators.public_security import OPENAPI_FILE, PublicSecuritySimulator
from tests.support.simulators import (
    KNOWN_ID,
    OpenApi,
    eventually,
    fetch_openapi,
    routes_match_document,
    shipped_openapi_is_wellformed,
)

DELAY_MS = 200  # generous: the "before the decision" checks must hold on a loaded machine
SUBMIT = "/gaapi/hz/sqxx"
RESULT = "/gaapi/hz/sqxx/{YWH}"
HOUSEHOLD = "/gaapi/hz/hjxx"
SECRET = "ga-secret"


def signature(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """SECTORS.md's recipe, written out again so a bug in the simulator's signer cannot hide."""
    canonical = f"{method}\n{path}\n{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}"
    return base64.b64encode(hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).digest()).decode()


def application(qqid: str, *, lacking: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "QQID": qqid,
        "SXBM": "11150200MB1A00040K3000000003",
        "BJBH": f"BJ-{qqid}",
        "SQR": {"XM": "赵六", "SFZH": KNOWN_ID, "LXDH": "13900000000"},
        "CLQD": [{"CLMC": "户口簿", "SFTJ": "1"}, {"CLMC": "出生证明", "SFTJ": "0" if lacking else "1"}],
        "BDSJ": {"reason": "新生儿落户"},
        **extra,
    }


# --------------------------------------------------------------------------- a callback receiver


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float

    def notice(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_correctly(self) -> bool:
        h = self.headers
        expected = signature(SECRET, "POST", self.path, h["X-Ca-Timestamp"], h["X-Ca-Nonce"], self.body)
        return h["X-Ca-Key"] == "ga-callback" and hmac.compare_digest(expected, h["X-Ca-Signature"])


class Receiver:
    """The gateway's callback endpoint in miniature: records every POST and answers from a
    script of statuses (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.deliveries: list[Delivery] = []
        self.script = list(statuses)
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.deliveries.append(Delivery(dict(self.headers), body, self.path, time.monotonic()))
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/callbacks/public_security"

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Delivery]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    yield box
    box.close()


# --------------------------------------------------------------------------- a signing client


class Ga:
    """A test client that signs every request and checks every JSON answer against the document."""

    def __init__(self, sim: PublicSecuritySimulator, api: OpenApi) -> None:
        self.sim, self.api = sim, api
        self.http = httpx.Client(base_url=sim.url, timeout=5.0)

    def call(self, method: str, template: str, *, body: object = None, check: bool = True, **kw: Any) -> httpx.Response:
        path = template.format(**kw.pop("path", {}))
        content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = self.headers(method, path, content, **kw.pop("sign", {}))
        response = self.http.request(method, path, content=content, headers=headers, **kw)
        if check:
            self.api.check_response(template, response)
        return response

    @staticmethod
    def headers(method: str, path: str, body: bytes, *, key: str = "yiwang-gateway", secret: str = SECRET,
                skew_s: float = 0, nonce: str | None = None) -> dict[str, str]:
        timestamp, nonce = str(int((time.time() + skew_s) * 1000)), nonce or str(uuid.uuid4())
        return {
            "Content-Type": "application/json; charset=utf-8",
            "X-Ca-Key": key,
            "X-Ca-Timestamp": timestamp,
            "X-Ca-Nonce": nonce,
            "X-Ca-Signature": signature(secret, method, path, timestamp, nonce, body),
        }

    def submit(self, document: dict[str, Any]) -> httpx.Response:
        return self.call("POST", SUBMIT, body=document)

    def result(self, ywh: str) -> dict[str, Any]:
        return dict(self.call("GET", RESULT, path={"YWH": ywh}).json())


@contextmanager
def running(**kw: Any) -> Iterator[Ga]:
    """A started simulator (``Ga.sim``) and its signing client, both closed afterwards."""
    with PublicSecuritySimulator(decision_delay_ms=kw.pop("decision_delay_ms", DELAY_MS), **kw) as simulator:
        client = Ga(simulator, fetch_openapi(simulator))
        try:
            yield client
        finally:
            client.http.close()


@pytest.fixture
def ga(receiver: Receiver) -> Iterator[Ga]:
    with running(callback_url=receiver.url, callback_backoff_ms=20) as client:
        yield client


# --------------------------------------------------------------------------- the document


def test_the_served_document_is_the_shipped_one_and_covers_every_route(ga: Ga) -> None:
    routes_match_document(ga.sim, ga.api)
    shipped_openapi_is_wellformed(OPENAPI_FILE)
    ga.api.check_request(SUBMIT, "post", application("Q"))
    callback = ga.api.operation(SUBMIT, "post")["callbacks"]["decision"]["{$request.body#/HDDZ}"]["post"]
    assert callback["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CallbackNotice")


# --------------------------------------------------------------------------- signatures


def test_a_correctly_signed_lookup_and_an_unknown_person(ga: Ga) -> None:
    found = ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}).json()  # the query is not signed
    assert found["ZT"] == "1" and found["HJ"]["HKLX"] in ("城镇", "农村") and found["HJ"]["HJDZ"].startswith("内蒙古")
    assert found == ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}).json()  # stable
    unknown = ga.call("GET", HOUSEHOLD, params={"SFZH": "000"})
    assert unknown.status_code == 200 and unknown.json() == {"ZT": "0", "XX": "无户籍信息"}
    assert ga.sim.counters["business_errors"] == 1 and ga.sim.counters["auth_failures"] == 0


@pytest.mark.parametrize(
    "sign",
    [{"secret": "guess"}, {"key": "someone-else"}, {"skew_s": -301}, {"skew_s": 301}],
    ids=["bad-signature", "unknown-key", "skew-past", "skew-future"],
)
def test_bad_signatures_are_401(ga: Ga, sign: dict[str, Any]) -> None:
    refused = ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}, sign=sign)
    assert refused.status_code == 401 and refused.json() == {"ZT": "0", "XX": "签名验证失败"}
    assert ga.sim.counters["auth_failures"] == 1


def test_a_replayed_nonce_or_a_tampered_body_is_401(ga: Ga) -> None:
    nonce = str(uuid.uuid4())
    assert ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}, sign={"nonce": nonce}).status_code == 200
    assert ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}, sign={"nonce": nonce}).status_code == 401
    body = json.dumps(application("Q-T")).encode()
    headers = Ga.headers("POST", SUBMIT, body)
    tampered = ga.http.post(SUBMIT, content=body.replace(b"Q-T", b"Q-X"), headers=headers)
    assert tampered.status_code == 401
    unsigned = ga.http.get(HOUSEHOLD, params={"SFZH": KNOWN_ID})
    assert unsigned.status_code == 401
    counters = ga.sim.counters
    assert (counters["auth_failures"], counters["cases_created"], counters["raw_requests"]) == (3, 0, 5)


# --------------------------------------------------------------------------- submissions and polling


def test_submit_is_idempotent_on_qqid_and_business_errors_are_not_remembered(ga: Ga) -> None:
    first = ga.submit(application("Q-1"))
    assert first.status_code == 202 and first.json()["XX"] == "已受理" and first.json()["YWH"].startswith("GA")
    again = ga.submit(application("Q-1"))
    assert again.status_code == 202 and again.json() == first.json()
    incomplete = application("Q-2")
    del incomplete["SQR"]["SFZH"]
    refused = ga.submit(incomplete)
    assert refused.status_code == 200 and refused.json()["ZT"] == "0" and "SQR.SFZH" in refused.json()["XX"]
    bad_address = ga.submit(application("Q-2", HDDZ="ftp://nowhere"))
    assert bad_address.json()["ZT"] == "0"
    assert ga.submit(application("Q-2")).status_code == 202
    counters = ga.sim.counters
    assert (counters["submits_received"], counters["cases_created"], counters["duplicate_submits"]) == (5, 2, 1)
    assert counters["business_errors"] == 2


def test_polling_shows_processing_then_the_decision(ga: Ga) -> None:
    agreed = ga.submit(application("Q-3")).json()["YWH"]
    refused = ga.submit(application("Q-4", lacking=True)).json()["YWH"]
    assert ga.result(agreed) == {"ZT": "1", "YWH": agreed, "JG": "CL", "YJ": "正在办理", "SJ": None}
    time.sleep(DELAY_MS / 1000 + 0.02)
    decided = ga.result(agreed)
    assert (decided["JG"], decided["YJ"]) == ("TY", "符合条件，准予办理")
    denial = ga.result(refused)
    assert denial["JG"] == "BTY" and "出生证明" in denial["YJ"]
    missing = ga.call("GET", RESULT, path={"YWH": "GA999"})
    assert missing.status_code == 404 and missing.json()["ZT"] == "0"


# --------------------------------------------------------------------------- callbacks


def test_the_decision_is_called_back_signed(ga: Ga, receiver: Receiver) -> None:
    ywh = ga.submit(application("Q-5", lacking=True)).json()["YWH"]
    (delivery,) = receiver.wait_for(1)
    assert delivery.signed_correctly() and delivery.path == "/v1/callbacks/public_security"
    notice = delivery.notice()
    jsonschema.validate(notice, ga.api._json_schema({"$ref": "#/components/schemas/CallbackNotice"}))
    assert (notice["YWH"], notice["BJBH"], notice["JG"]) == (ywh, "BJ-Q-5", "BTY")
    assert notice["SJ"] == ga.result(ywh)["SJ"]  # polling tells the same story
    assert eventually(lambda: ga.sim.counters["callbacks_delivered"] == 1)
    time.sleep(0.05)
    assert len(receiver.deliveries) == 1


def test_a_500_from_the_receiver_is_retried_with_a_fresh_signature(ga: Ga, receiver: Receiver) -> None:
    receiver.script = [500, 503]
    ga.submit(application("Q-6"))
    deliveries = receiver.wait_for(3)
    assert len(deliveries) == 3 and len({d.body for d in deliveries}) == 1
    assert all(d.signed_correctly() for d in deliveries)
    assert len({d.headers["X-Ca-Nonce"] for d in deliveries}) == 3
    assert deliveries[2].at - deliveries[1].at >= deliveries[1].at - deliveries[0].at > 0.015  # backoff grows
    assert eventually(lambda: ga.sim.counters["callbacks_delivered"] == 1)
    counters = ga.sim.counters
    assert (counters["callbacks_sent"], counters["callbacks_delivered"], counters["callbacks_abandoned"]) == (3, 1, 0)


def test_retries_are_bounded(receiver: Receiver) -> None:
    receiver.script = [500] * 10
    with running(decision_delay_ms=0, callback_url=receiver.url, callback_attempts=3, callback_backoff_ms=5) as client:
        client.submit(application("Q-7"))
        receiver.wait_for(3)
        assert eventually(lambda: client.sim.counters["callbacks_abandoned"] == 1)
        assert len(receiver.deliveries) == 3


def test_duplicate_callback_delivers_each_decision_twice(ga: Ga, receiver: Receiver) -> None:
    ga.sim.set_fault("duplicate_callback", count=1)
    ga.submit(application("Q-8"))
    first, second = receiver.wait_for(2)
    assert first.body == second.body and first.headers["X-Ca-Nonce"] != second.headers["X-Ca-Nonce"]
    assert first.signed_correctly() and second.signed_correctly()
    ga.submit(application("Q-9"))  # the count is spent: once again
    assert len(receiver.wait_for(3)) == 3
    time.sleep(0.05)
    assert len(receiver.deliveries) == 3 and ga.sim.fault_mode is None


def test_early_callback_arrives_before_the_submit_is_answered(ga: Ga, receiver: Receiver) -> None:
    ga.sim.set_fault("early_callback", count=1)
    response = ga.submit(application("Q-10"))
    answered = time.monotonic()
    assert len(receiver.deliveries) == 1  # already there, without waiting
    (delivery,) = receiver.deliveries
    assert delivery.at < answered and delivery.notice()["YWH"] == response.json()["YWH"]
    assert ga.result(response.json()["YWH"])["JG"] == "TY"  # decided already, polling agrees


def test_hddz_overrides_the_configured_address_and_no_address_means_polling_only(receiver: Receiver) -> None:
    other = Receiver()
    try:
        with running(decision_delay_ms=0, callback_url=receiver.url) as client:
            client.submit(application("Q-11", HDDZ=other.url))
            assert len(other.wait_for(1)) == 1 and receiver.deliveries == []
    finally:
        other.close()
    with running(decision_delay_ms=0) as quiet:
        ywh = quiet.submit(application("Q-12")).json()["YWH"]
        assert quiet.result(ywh)["JG"] == "TY" and quiet.sim.counters["callbacks_sent"] == 0


def test_stop_wakes_a_pending_callback(receiver: Receiver) -> None:
    with running(decision_delay_ms=60_000, callback_url=receiver.url) as client:
        client.submit(application("Q-13"))
        started = time.monotonic()
    assert time.monotonic() - started < 1 and receiver.deliveries == []


# --------------------------------------------------------------------------- faults


def test_fail_fault_and_rate_limit_modes(ga: Ga) -> None:
    ga.sim.set_fault("fail", count=1)
    dead = ga.call("POST", SUBMIT, body=application("Q-F"), check=False)
    assert dead.status_code == 503 and dead.headers["content-type"].startswith("text/html")
    ga.sim.set_fault("fault", count=1)
    broken = ga.call("POST", SUBMIT, body=application("Q-F"))
    assert broken.status_code == 500 and broken.json()["ZT"] == "0"
    ga.sim.set_fault("rate_limit", count=1)
    limited = ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert ga.submit(application("Q-F")).status_code == 202
    counters = ga.sim.counters
    assert (counters["faults_injected"], counters["submits_received"], counters["cases_created"]) == (3, 1, 1)


def test_malformed_and_hostile_answers(ga: Ga) -> None:
    ga.sim.set_fault("malformed", count=1)
    truncated = ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}, check=False)
    assert truncated.status_code == 200
    with pytest.raises(ValueError):
        truncated.json()
    ga.sim.set_fault("hostile", count=1)
    hostile = ga.call("GET", HOUSEHOLD, params={"SFZH": KNOWN_ID}, check=False)
    assert hostile.content.count(b"[") == 100_000
    with pytest.raises(RecursionError):
        hostile.json()


def test_slow_mode_applies_even_when_the_client_gives_up(ga: Ga, receiver: Receiver) -> None:
    ga.sim.set_fault("slow", count=1, slow_ms=300)
    with pytest.raises(httpx.ReadTimeout):
        ga.call("POST", SUBMIT, body=application("Q-S"), timeout=0.1)
    assert len(receiver.wait_for(1)) == 1  # applied, decided and called back all the same
    retry = ga.submit(application("Q-S"))
    assert retry.json()["YWH"] == receiver.deliveries[0].notice()["YWH"]
    assert ga.sim.counters["cases_created"] == 1
