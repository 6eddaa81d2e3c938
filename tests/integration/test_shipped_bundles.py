"""The four sector bundles shipped with the gateway (`adapters/bundles`), each against its real simulator.

For every bundle: it validates clean, its service description is the very file the sector publishes,
and through `build_adapter` (the same path the gateway takes) every canonical operation and named query
it declares works against the simulator, results compared whole. The secrets are the simulators'
default credentials, set in the environment as a deployment would. Decisions come after
`DELAY_MS`; each test submits its cases together and waits once.
"""

from __future__ import annotations

import base64
import filecmp
import hashlib
import hmac
import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.bundle import load_bundle, validate_bundle
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.descriptor import CallbackResults
from adapters.registry import RegisteredAdapter, Registry, build_adapter, default_bundles_dir
from adapters.resilience import RetryPolicy
from adapters.simulators import (
    civil_affairs,
    employment,
    housing_fund,
    licence_library,
    public_security,
    rating_platform,
    social_assistance,
)
from adapters.simulators.base import person_seed, recent_months
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator, contribution_records
from gateway.catalogue.matters import load_catalogue_file
from gateway.sectors.live_registry import serves_task
from tests.support.pki import shipped_credentials
from tests.support.sector_cases import CHEN, WANG, case_message, gjj_case, mz_case, shebao_case

BUNDLES = default_bundles_dir()
CATALOGUE = Path(__file__).parents[2] / "gateway" / "data" / "catalogue.yaml"
SIMULATORS = Path(civil_affairs.__file__).parent
# sector -> (the copy in the bundle, the file the sector publishes)
PUBLISHED = {
    "social_security": ("service.wsdl", "social_security.wsdl"),
    "housing_fund": ("openapi.yaml", "housing_fund.openapi.yaml"),
    "civil_affairs": ("service.wsdl", "civil_affairs.wsdl"),
    "public_security": ("openapi.yaml", "public_security.openapi.yaml"),
}
SECTORS = tuple(PUBLISHED)
# The sectors that joined with signing recipes (issue 17) have tests of their own: test_sector_pages.py (published
# copies), test_simulator_signing_sectors.py and test_signing_sectors_through_the_gateway.py.
SIGNING_SECTORS = ("employment", "e_licence", "social_assistance")
# The platforms subscribed to case events (issue 18) are tested in test_subscriptions.py and, the licence library,
# test_cited_licences.py and test_licence_library_bundle.py.
SUBSCRIBERS = ("licence_library", "rating_platform")
SECRETS = {
    "YIWANG_SECRET_GJJ_CLIENT_ID": housing_fund.DEFAULT_CLIENT_ID,
    "YIWANG_SECRET_GJJ_CLIENT_SECRET": housing_fund.DEFAULT_CLIENT_SECRET,
    "YIWANG_SECRET_MZ_PASSWORD": civil_affairs.DEFAULT_PASSWORD,
    "YIWANG_SECRET_GA_HMAC": public_security.DEFAULT_SECRET,
    "YIWANG_SECRET_EMPLOYMENT_APP_SECRET": employment.DEFAULT_SECRET,
    "YIWANG_SECRET_SOCIAL_ASSISTANCE_KEY": social_assistance.DEFAULT_SECRET,
    "YIWANG_SECRET_RATING_PLATFORM_TOKEN": rating_platform.DEFAULT_TOKEN,
    "YIWANG_SECRET_LICENCE_LIBRARY_TOKEN": licence_library.DEFAULT_TOKEN,
}
# How each sector writes its reference: the pattern its published service description (and so the bundle's
# copy) gives, or, where the WSDL says only xsd:string, its prefix and the simulators' twelve digits.
REFERENCE_PATTERN = {"social_security": r"SB[0-9]{12}", "housing_fund": r"GJJ[0-9]{10}",
                     "civil_affairs": r"MZ[0-9]{12}", "public_security": r"GA[0-9]+"}
FAST = RetryPolicy(2, 1, 5)
DELAY_MS = 200  # long enough that a query right after the submit is in the first "waiting" half
ACCEPTED_AT_MS = 1795485600000

SUBMIT, QUERY, CANCEL = Operation.SUBMIT_CASE, Operation.QUERY_STATUS, "cancel_case"

YANG = ("杨秀英", "15020419901120152X")  # married 2005-09-24; owes the latest contribution month
UNKNOWN = "1502031985031200"  # not a well-formed ID number: no simulator knows it


@pytest.fixture(autouse=True)
def sector_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def adapter(sector: str, url: str) -> RegisteredAdapter:
    return build_adapter(load_bundle(BUNDLES / sector), endpoint=url, retry_override=FAST)


# ------------------------------------------------------------------ canonical messages


def referring(message: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The message of a later operation on the same task: it now knows the sector's reference."""
    return {**message, "sector_ref": answer["sector_ref"]}


# ------------------------------------------------------------------ decisions in time


@dataclass(frozen=True)
class DecidedAt:
    """Equal to the ISO-8601 UTC text ("...Z") of the decision of a case submitted between `sent` and
    `answered`: the sector decides `DELAY_MS` after applying it (and may report whole seconds only)."""

    sent: datetime
    answered: datetime

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str) or not other.endswith("Z"):
            return False
        delay = timedelta(milliseconds=DELAY_MS)
        earliest, latest = (self.sent + delay).replace(microsecond=0), self.answered + delay
        return earliest <= datetime.fromisoformat(other) <= latest

    def __hash__(self) -> int:
        return hash((self.sent, self.answered))

    def wait(self) -> None:
        """Until the decision is due."""
        due = self.answered + timedelta(milliseconds=DELAY_MS + 20)
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))


def submit(registered: RegisteredAdapter, message: dict[str, Any]) -> tuple[dict[str, Any], DecidedAt]:
    sent = datetime.now(UTC)
    answer = registered.adapter.call(SUBMIT, message)
    return answer, DecidedAt(sent, datetime.now(UTC))


def a_reference(sector: str, answer: dict[str, Any]) -> bool:
    """A submit's answer: the sector's reference alone, in the sector's form."""
    return list(answer) == ["sector_ref"] and re.fullmatch(REFERENCE_PATTERN[sector], answer["sector_ref"]) is not None


def business_error(registered: RegisteredAdapter, name: str, message: dict[str, Any]) -> str:
    """Call expecting the sector's business refusal: not retried; returns its text."""
    with pytest.raises(DeliveryError) as caught:
        registered.adapter.call(name, message)
    assert (caught.value.failure, caught.value.retryable) == (FailureClass.SECTOR_FAULT, False)
    assert caught.value.attempts == 1
    return caught.value.message


# ------------------------------------------------------------------ every bundle


@pytest.mark.parametrize("sector", SECTORS)
def test_the_shipped_bundle_validates_clean(sector: str) -> None:
    assert validate_bundle(BUNDLES / sector) == []


@pytest.mark.parametrize("sector", SECTORS)
def test_the_bundle_carries_the_service_description_the_sector_publishes(sector: str) -> None:
    copy, published = PUBLISHED[sector]
    bundle = load_bundle(BUNDLES / sector)
    assert bundle.service_description == (BUNDLES / sector / copy).resolve()
    assert filecmp.cmp(bundle.service_description, SIMULATORS / published, shallow=False)


def test_the_shipped_mutual_tls_upgrade_validates_clean_and_changes_only_the_channel() -> None:
    """adapters/bundles/upgrades: a sector's next version (the demo's scene 10), outside the set that loads
    together: the same service and mappings, reached over mTLS with WS-Security, keys named in the store."""
    folder = BUNDLES / "upgrades" / "social_security_mtls"
    assert validate_bundle(folder) == []
    upgrade, shipped = load_bundle(folder), load_bundle(BUNDLES / "social_security")
    assert (upgrade.sector, upgrade.version > shipped.version) == ("social_security", True)
    assert (upgrade.tls.client_certificate, upgrade.options.ws_security.sign) == (  # type: ignore[union-attr]
        "social_security-client", "social_security-signing")
    same = [p.name for p in (BUNDLES / "social_security").iterdir() if p.name != "bundle.yaml"]
    assert filecmp.cmpfiles(BUNDLES / "social_security", folder, same, shallow=False)[0] == same


def test_what_each_shipped_bundle_serves() -> None:
    found = {}
    for sector in SECTORS:
        b = load_bundle(BUNDLES / sector)
        found[sector] = (b.version, b.kind, b.serves.departments, b.serves.matters, sorted(b.operations),
                         sorted(b.queries), b.results.mode)
    assert found == {
        "social_security": ("2026.12.0", "soap", ("12150200MB1A00010L",), (), ["query_status", "submit_case"],
                            ["social_insurance_contributions"], "polling"),
        "housing_fund": ("2026.12.0", "rest", ("12150200MB1A00020M",), (),
                         ["cancel_case", "query_status", "submit_case"],
                         ["housing_fund_balance", "housing_fund_deposits"], "polling"),
        "civil_affairs": ("2026.11.1", "soap", ("11150203MB0C000405", "11150204MB0C00050L"), (),
                          ["cancel_case", "query_status", "submit_case"], ["marriage_record"], "polling"),
        # The 公安 service has no cancellation; query_status is the polling fallback of its callbacks.
        "public_security": ("2026.12.0", "rest", ("11150200MB0E000702", "11150203MB0E00080E", "11150204MB0E00090X"),
                            (), ["callback", "query_status", "submit_case"], ["household_registration"],
                            "callback"),
    }


def test_every_catalogue_task_goes_to_one_shipped_bundle_at_most_and_each_signing_sector_gets_one() -> None:
    """Activating all seven together overlaps nowhere (activation refuses two sectors taking one task),
    and each new sector serves a department that implements a matter of the shipped catalogue."""
    bundles = {sector: load_bundle(BUNDLES / sector) for sector in SECTORS + SIGNING_SECTORS}
    taken: dict[str, list[str]] = {}
    for sector, bundle in bundles.items():
        for department in bundle.serves.departments or (bundle.department.credit_code,):
            taken.setdefault(department, []).append(sector)
    assert {d: s for d, s in taken.items() if len(s) > 1} == {}
    routed = {sector: sorted(m.name for m in load_catalogue_file(CATALOGUE) for d in m.departments
                             if serves_task(bundles[sector], m.implementation_code, d.credit_code))
              for sector in SIGNING_SECTORS}
    assert routed == {"employment": ["失业登记"], "e_licence": ["就业创业证电子证照签发"],
                      "social_assistance": ["临时救助"]}


def test_the_shipped_bundles_load_together() -> None:
    registry = Registry.load(BUNDLES, retry_override=FAST, credentials=shipped_credentials())
    assert registry.sectors == tuple(sorted(SECTORS + SIGNING_SECTORS + SUBSCRIBERS))
    assert {s: registry.get(s).poll_interval_ms for s in registry.sectors} == {
        "social_security": 1000, "housing_fund": 2000, "civil_affairs": 2000, "public_security": None,
        "employment": 2000, "e_licence": 2000, "social_assistance": 2000, "rating_platform": None,
        "licence_library": None}


# ------------------------------------------------------------------ 人社 social security (SOAP 1.1)


def test_social_security_against_its_simulator() -> None:
    with SocialSecuritySimulator(port=0, decision_delay_ms=DELAY_MS) as sim:
        shebao = adapter("social_security", sim.url)
        granted = shebao_case("SB-KEY-1", "12150200MB1A00010L300080500100020261124000001", insured_months=36)
        answer, granted_at = submit(shebao, granted)
        assert a_reference("social_security", answer), answer
        granted = referring(granted, answer)
        assert shebao.adapter.call(QUERY, granted) == {"sector_ref": granted["sector_ref"], "status": "in_process",
                                                       "opinion": None, "decided_at": None}
        assert shebao.adapter.call(SUBMIT, granted) == answer  # the same qqlsh: the same case
        refused = shebao_case("SB-KEY-2", "12150200MB1A00010L300080500100020261124000002", insured_months=6)
        answer, refused_at = submit(shebao, refused)
        refused = referring(refused, answer)

        refused_at.wait()
        assert shebao.adapter.call(QUERY, granted) == {"sector_ref": granted["sector_ref"],
            "status": "approved", "opinion": "材料齐全，符合条件，准予办理", "decided_at": granted_at}
        assert shebao.adapter.call(QUERY, refused) == {"sector_ref": refused["sector_ref"],
            "status": "denied", "opinion": "累计缴费不满12个月，不符合申领条件", "decided_at": refused_at}
        counters = sim.counters
        assert (counters["cases_created"], counters["duplicate_submits"]) == (2, 1)

        contributions = shebao.adapter.call("social_insurance_contributions", {"query": {"id_number": YANG[1]}})
        records = contribution_records(person_seed(YANG[1]) or 0)
        assert contributions == {
            "months_paid": len(records) - 1,  # this person owes the latest month
            "records": [{"month": f"{r['ny'][:4]}-{r['ny'][4:]}", "base": r["jfjs"], "employer": r["dwjf"],
                         "employee": r["grjf"], "paid": r["zt"] == "1"} for r in records],
        }
        assert [r["paid"] for r in contributions["records"][:2]] == [False, True]
        assert contributions["records"][1]["month"] == "{:04d}-{:02d}".format(*recent_months(2)[1])
        assert "2002" in business_error(shebao, "social_insurance_contributions", {"query": {"id_number": UNKNOWN}})


# ------------------------------------------------------------------ 住房公积金 housing fund (REST + OAuth2)


def test_housing_fund_against_its_simulator() -> None:
    with HousingFundSimulator(decision_delay_ms=DELAY_MS) as sim:
        gjj = adapter("housing_fund", sim.url)
        granted = gjj_case("GJJ-KEY-1", "12150200MB1A00020M300072000100020261124000001", "80000.00",
                           green_channel=True)
        body = gjj.adapter.render(SUBMIT, granted).body
        assert (body["acceptedAt"], body["priority"], body["attachments"][0]) == (
            ACCEPTED_AT_MS, "GREEN", {"title": "居民身份证", "received": True})
        answer, granted_at = submit(gjj, granted)
        assert a_reference("housing_fund", answer), answer
        granted = referring(granted, answer)
        assert gjj.adapter.call(QUERY, granted) == {"sector_ref": granted["sector_ref"], "status": "received",
                                                    "opinion": "已受理，等待审核", "decided_at": None}
        assert gjj.adapter.call(SUBMIT, granted) == answer  # the same X-Request-Id: the same ticket

        refused = gjj_case("GJJ-KEY-2", "12150200MB1A00020M300072000100020261124000002", "700000.00")
        assert gjj.adapter.render(SUBMIT, refused).body["priority"] == "NORMAL"
        answer, refused_at = submit(gjj, refused)
        refused = referring(refused, answer)
        withdrawn = gjj_case("GJJ-KEY-3", "12150200MB1A00020M300072000100020261124000003", "1000.00")
        withdrawn = referring(withdrawn, gjj.adapter.call(SUBMIT, withdrawn))
        assert gjj.adapter.call(CANCEL, withdrawn) == {"cancelled": True}

        refused_at.wait()
        assert gjj.adapter.call(QUERY, granted) == {"sector_ref": granted["sector_ref"],
            "status": "approved", "opinion": "审核通过，款项将于3个工作日内到账", "decided_at": granted_at}
        assert gjj.adapter.call(QUERY, refused) == {"sector_ref": refused["sector_ref"],
            "status": "denied", "opinion": "提取金额超过购房款", "decided_at": refused_at}
        assert gjj.adapter.call(CANCEL, granted) == {"cancelled": False}  # decided: too late
        counters = sim.counters
        assert (counters["cases_created"], counters["duplicate_submits"], counters["tokens_issued"]) == (3, 1, 1)

        by_id = {"query": {"id_number": WANG[1]}}
        assert gjj.adapter.call("housing_fund_balance", by_id) == {
            "balance": "43151.03", "currency": "CNY", "account_status": "NORMAL"}
        before = sim.counters["raw_requests"]
        deposits = gjj.adapter.call("housing_fund_deposits", by_id)
        assert sim.counters["raw_requests"] - before == 2  # 57 deposits, 50 a page
        assert deposits == {"total": 57, "items": [{"month": f"{y:04d}-{m:02d}", "amount": "1403.00"}
                                                   for y, m in recent_months(57)]}
        assert "4040" in business_error(gjj, "housing_fund_balance", {"query": {"id_number": UNKNOWN}})


# ------------------------------------------------------------------ 民政 civil affairs (SOAP 1.2 + WS-Security)


def test_civil_affairs_against_its_simulator() -> None:
    with CivilAffairsSimulator(decision_delay_ms=DELAY_MS) as sim:
        mz = adapter("civil_affairs", sim.url)
        request = mz.adapter.render(SUBMIT, mz_case("MZ-KEY-0", "X", certificate_provided=True))
        assert json.loads(request["FormXml"])["disability_grade"] == 2
        granted = mz_case("MZ-KEY-1", "11150203MB0C000405400011300300020261124000001", certificate_provided=True)
        answer, granted_at = submit(mz, granted)
        assert a_reference("civil_affairs", answer), answer
        granted = referring(granted, answer)
        assert mz.adapter.call(QUERY, granted) == {"status": "received", "opinion": None, "decided_at": None}
        assert mz.adapter.call(SUBMIT, granted) == answer  # the same TransactionId: the same service

        refused = mz_case("MZ-KEY-2", "11150203MB0C000405400011300300020261124000002", certificate_provided=False)
        answer, refused_at = submit(mz, refused)
        refused = referring(refused, answer)
        withdrawn = mz_case("MZ-KEY-3", "11150203MB0C000405400011300300020261124000003", certificate_provided=True)
        withdrawn = referring(withdrawn, mz.adapter.call(SUBMIT, withdrawn))
        assert mz.adapter.call(CANCEL, withdrawn) == {"cancelled": True}
        assert "服务已撤销" in business_error(mz, QUERY, withdrawn)  # ResultCode FAIL

        refused_at.wait()
        assert mz.adapter.call(QUERY, granted) == {
            "status": "approved", "opinion": "审核通过，准予办理", "decided_at": granted_at}
        assert mz.adapter.call(QUERY, refused) == {
            "status": "denied", "opinion": "材料不齐全：残疾人证，不予办理", "decided_at": refused_at}
        assert mz.adapter.call(CANCEL, granted) == {"cancelled": False}
        counters = sim.counters
        assert (counters["cases_created"], counters["duplicate_submits"], counters["auth_failures"]) == (3, 1, 0)

        assert mz.adapter.call("marriage_record", {"query": {"id_number": YANG[1]}}) == {
            "marital_status": "married", "registration_date": "2005-09-24"}
        assert mz.adapter.call("marriage_record", {"query": {"id_number": WANG[1]}}) == {
            "marital_status": "unmarried", "registration_date": None}
        assert "证件号码无效" in business_error(mz, "marriage_record", {"query": {"id_number": UNKNOWN}})


# ------------------------------------------------------------------ 公安 public security (REST + HMAC, callbacks)


@dataclass(frozen=True)
class Callback:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class _CallbackHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.received.put(Callback(self.path, headers, body))  # type: ignore[attr-defined]
        reply = b'{"ack": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[Callback]]]:
    """A stand-in for the gateway's POST /v1/callbacks/public_security: keeps what it receives."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CallbackHandler)
    server.daemon_threads = True
    server.received = queue.Queue()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/v1/callbacks/public_security"
    yield url, server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def ga_case(key: str, case_no: str, *, deed_provided: bool) -> dict[str, Any]:
    return case_message(
        key, case_no=case_no, matter_code="11150203MB0E00080E4000114001000",  # 户口迁移（市内）
        department="包头市公安局昆都仑区分局", credit_code="11150203MB0E00080E", applicant=CHEN,
        materials=[("居民户口簿", True), ("居民身份证", True), ("不动产权证书", deed_provided)],
        form={"to_address": "内蒙古自治区包头市昆都仑区阿尔丁大街12号", "reason": "购房迁入"},
    )


def test_public_security_against_its_simulator(receiver: tuple[str, queue.Queue[Callback]]) -> None:
    callback_url, received = receiver
    with PublicSecuritySimulator(decision_delay_ms=DELAY_MS, callback_url=callback_url) as sim:
        ga = adapter("public_security", sim.url)
        assert "HDDZ" not in ga.adapter.render(SUBMIT, ga_case("K", "X", deed_provided=True)).body
        granted = ga_case("GA-KEY-1", "11150203MB0E00080E400011400100020261124000001", deed_provided=True)
        answer, granted_at = submit(ga, granted)
        assert a_reference("public_security", answer), answer
        granted = referring(granted, answer)
        assert ga.adapter.call(QUERY, granted) == {"sector_ref": granted["sector_ref"], "status": "in_process",
                                                   "opinion": "正在办理", "decided_at": None}
        assert ga.adapter.call(SUBMIT, granted) == answer  # the same QQID: the same YWH
        refused = ga_case("GA-KEY-2", "11150203MB0E00080E400011400100020261124000002", deed_provided=False)
        answer, refused_at = submit(ga, refused)
        refused = referring(refused, answer)
        counters = sim.counters
        assert (counters["cases_created"], counters["duplicate_submits"], counters["auth_failures"]) == (2, 1, 0)

        expected = {
            granted["sector_ref"]: {"sector_ref": granted["sector_ref"], "status": "approved",
                                    "opinion": "符合条件，准予办理", "decided_at": granted_at},
            refused["sector_ref"]: {"sector_ref": refused["sector_ref"], "status": "denied",
                                    "opinion": "材料不齐全：不动产权证书，不予办理", "decided_at": refused_at},
        }
        assert isinstance(ga.bundle.results, CallbackResults)
        spec = ga.bundle.results.callback_auth
        for _ in expected:
            callback = received.get(timeout=5)
            # Signed as the bundle's callback_auth says: the gateway's check will accept it.
            headers = callback.headers
            assert (callback.path, headers["x-ca-key"]) == ("/v1/callbacks/public_security", "ga-callback")
            assert spec.secret is not None
            signed = "\n".join(["POST", callback.path, headers["x-ca-timestamp"], headers["x-ca-nonce"],
                                hashlib.sha256(callback.body).hexdigest()])
            digest = hmac.new(spec.secret.load().reveal().encode(), signed.encode(), hashlib.sha256).digest()
            assert headers["x-ca-signature"] == base64.b64encode(digest).decode()
            result = ga.read_callback(json.loads(callback.body))
            assert result.pop("case_no")  # 办件编号 (BJBH), which finds a case whose reference is not yet known
            assert result == expected[result["sector_ref"]]

        # The polling fallback tells the same.
        for message in (granted, refused):
            assert ga.adapter.call(QUERY, message) == expected[message["sector_ref"]]

        assert ga.adapter.call("household_registration", {"query": {"id_number": CHEN[1]}}) == {
            "name": "陈强", "address": "内蒙古自治区包头市昆都仑区钢铁大街125号", "household_type": "rural"}
        assert ga.adapter.call("household_registration", {"query": {"id_number": WANG[1]}}) == {
            "name": "刘伟", "address": "内蒙古自治区包头市昆都仑区钢铁大街152号", "household_type": "urban"}
        assert "无户籍信息" in business_error(ga, "household_registration", {"query": {"id_number": UNKNOWN}})
        assert sim.counters["auth_failures"] == 0


# ------------------------------------------------------------------ references across restarts

A_CASE = {
    "social_security": (SocialSecuritySimulator, lambda key, no: shebao_case(key, no, insured_months=36),
                        "12150200MB1A00010L3000805001000"),
    "housing_fund": (HousingFundSimulator, lambda key, no: gjj_case(key, no, "80000.00"),
                     "12150200MB1A00020M3000720001000"),
    "civil_affairs": (CivilAffairsSimulator, lambda key, no: mz_case(key, no, certificate_provided=True),
                      "11150203MB0C0004054000113003000"),
    "public_security": (PublicSecuritySimulator, lambda key, no: ga_case(key, no, deed_provided=True),
                        "11150203MB0E00080E4000114001000"),
}


@pytest.mark.parametrize("sector", SECTORS)
def test_a_restarted_simulator_never_hands_out_a_reference_it_gave_another_case(sector: str) -> None:
    """The sector's system restarted (a new process: nothing of the old one's memory) at once, between two
    cases: the second case must not get the first one's reference, or the gateway would bind the sector's
    answers to the wrong case. Each reference keeps the form the sector's service description gives."""
    simulator, case, matter = A_CASE[sector]
    references = []
    for run in (1, 2):
        with simulator(decision_delay_ms=DELAY_MS) as sim:
            registered = adapter(sector, sim.url)
            answer = registered.adapter.call(SUBMIT, case(f"RESTART-KEY-{run}", f"{matter}20261124{run:06d}"))
            references.append(answer["sector_ref"])
    assert all(re.fullmatch(REFERENCE_PATTERN[sector], reference) for reference in references), references
    assert references[0] != references[1]
