"""The three signing sectors of issue 17 through the gateway, over real HTTP, on SQLite and PostgreSQL.

For each of 就业 (HMAC-SHA256, hex upper), 电子证照 (SM2 both ways) and 社会救助 (form bodies, SM3 keyed
digest, codes in HTTP 200): cases handed in at the hall reach the sector's simulator signed with the shipped
bundle's recipe and come back approved and denied through polling (the licence sector's answers verified with
its certificate from the certificate store). Then the sector refuses, by its own checks, a key that is not
the one it knows, a stale timestamp and a replayed nonce (the simulators' knobs: `secret` /
`register_client`, `verdict.clock_offset_s`, `verdict.every_nonce_seen`); each refusal is an `auth` dead
letter, and an operator reading it (`GET /v1/ops/dead-letters/{id}`) sees the sector's answer and what was
signed — masked, no secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.e_licence import ELicenceSimulator
from adapters.simulators.e_licence import default_decide as licence_decide
from adapters.simulators.employment import EmploymentSimulator
from adapters.simulators.signed import MAX_SKEW_S
from adapters.simulators.social_assistance import SocialAssistanceSimulator
from gateway.bootstrap.app import Gateway, create_app
from tests.support.cases import outbox_statuses
from tests.support.gateways import SECTOR_SECRETS, Keys, activate_shipped, drain
from tests.support.pki import E_LICENCE_OURS, shipped_credentials, sm2_credential, sm2_pair
from tests.support.simulators import ELicenceWithTestKeys

DELAY_MS = 50  # how long each simulator takes to decide

WANG = {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"}
CHEN = {"name": "陈强", "id_number": "150203199211054425", "phone": "13847100002"}
LI = {"name": "李娜", "id_number": "150203199204150021", "phone": "13847100003"}
ID_NUMBERS = [p["id_number"] for p in (WANG, CHEN, LI)]
# What must never show: the shared secrets, our SM2 private key.
SECRETS = [SECTOR_SECRETS["YIWANG_SECRET_EMPLOYMENT_APP_SECRET"], SECTOR_SECRETS["YIWANG_SECRET_SOCIAL_ASSISTANCE_KEY"],
           "".join(sm2_pair(E_LICENCE_OURS).key_pem.decode().splitlines()[1:-1])[:40]]

REVOKED_LICENCE = "15020300200000099"  # a paper licence the licence sector will not turn electronic


@dataclass(frozen=True)
class SigningSector:
    """One sector as these tests drive it: its matter, two applications, and its words for each refusal."""

    sector: str
    matter_code: str
    materials: tuple[str, ...]
    approved_form: dict[str, Any]
    denied_form: dict[str, Any]
    opinions: tuple[str, str]  # in the approval, in the denial
    refusals: dict[str, str] = field(default_factory=dict)  # wrong_key | stale | replay -> the sector's code

    def application(self, applicant: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
        return {"matter_code": self.matter_code, "applicant": applicant,
                "materials": [{"name": m} for m in self.materials], "form": form}


EMPLOYMENT = SigningSector(
    "employment", "12150200MB1A00030N3000805006000",  # 失业登记, 包头市就业服务中心
    ("居民身份证", "解除或终止劳动合同证明"),
    {"last_employer": "包头钢铁（集团）有限责任公司", "separation_date": "2026-10-31"},
    {"last_employer": "包头钢铁（集团）有限责任公司", "separation_date": "2026-10-31",
     "insured_employer": "包头市某物流有限公司"},
    ("准予办理失业登记", "仍在包头市某物流有限公司参保缴费"),
    {"wrong_key": "401004", "stale": "401003", "replay": "401005"})
E_LICENCE = SigningSector(
    "e_licence", "11150200MB0H00130B3000116001000",  # 就业创业证电子证照签发, 包头市政务服务和数据管理局
    ("居民身份证", "纸质就业创业证"),
    {"licence_no": "15020300200000001", "issuing_authority": "包头市就业服务中心", "issue_date": "2026-06-01"},
    {"licence_no": REVOKED_LICENCE, "issuing_authority": "包头市就业服务中心", "issue_date": "2020-01-02"},
    ("电子证照已签发", "纸质证照已注销"),
    {"wrong_key": "E4014", "stale": "E4013", "replay": "E4015"})
SOCIAL_ASSISTANCE = SigningSector(
    "social_assistance", "11150200MB0C00140F3000113005000",  # 临时救助, 包头市民政局
    ("临时救助申请书", "居民身份证", "家庭收入和财产状况声明", "家庭经济状况核对授权书"),
    {"family_size": 3, "monthly_income": "1500.00", "savings": "2000", "hardship": "突发重大疾病"},
    {"family_size": 3, "monthly_income": "1500.00", "savings": "80000", "hardship": "火灾"},  # > 24 months' standard
    ("准予临时救助", "家庭存款超过规定标准"),
    {"wrong_key": "40001", "stale": "40002", "replay": "40003"})
SECTORS = {s.sector: s for s in (EMPLOYMENT, E_LICENCE, SOCIAL_ASSISTANCE)}

Simulator = EmploymentSimulator | ELicenceSimulator | SocialAssistanceSimulator


def licence_decides(fields: dict[str, Any]) -> tuple[bool, str]:
    """The licence sector's rule, and one paper licence it knows to be cancelled."""
    if (fields.get("surface") or {}).get("licence_no") == REVOKED_LICENCE:
        return False, "纸质证照已注销，不予签发电子证照"
    return licence_decide(fields)


@contextmanager
def wrong_key(sim: Simulator) -> Iterator[None]:
    """The sector knows another key than ours for a while: another secret, or another client certificate."""
    if isinstance(sim, ELicenceSimulator):
        sim.register_client(sm2_credential("someone else")[0])
        yield
        sim.register_client(sm2_pair(E_LICENCE_OURS).cert_pem)
        return
    kept, sim.secret = sim.secret, "not-the-gateways-secret"
    yield
    sim.secret = kept


@contextmanager
def stale_clock(sim: Simulator) -> Iterator[None]:
    sim.verdict.clock_offset_s = MAX_SKEW_S + 60  # the sector's clock a minute past the tolerance
    yield
    sim.verdict.clock_offset_s = 0


@contextmanager
def every_nonce_seen(sim: Simulator) -> Iterator[None]:
    sim.verdict.every_nonce_seen = True
    yield
    sim.verdict.every_nonce_seen = False


REFUSALS: dict[str, Callable[[Simulator], Any]] = {
    "wrong_key": wrong_key, "stale": stale_clock, "replay": every_nonce_seen}


@pytest.fixture(params=sorted(SECTORS))
def sector(request: pytest.FixtureRequest) -> SigningSector:
    return SECTORS[request.param]


@pytest.fixture
def sim(sector: SigningSector) -> Iterator[Simulator]:
    running: Simulator
    if sector is E_LICENCE:
        running = ELicenceWithTestKeys(0, DELAY_MS, decide=licence_decides)
    elif sector is EMPLOYMENT:
        running = EmploymentSimulator(0, DELAY_MS)
    else:
        running = SocialAssistanceSimulator(0, DELAY_MS)
    with running:
        yield running


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], sector: SigningSector, sim: Simulator) -> Gateway:
    """The gateway as deployed: the sector's credentials in the certificate store (the licence sector's SM2
    pair) or the environment (the shared secrets), its shipped bundle active, its address the simulator's."""
    gateway = make_gateway(bundles=(), sector_endpoints={sector.sector: sim.url})
    if sector.sector == "e_licence":
        shipped = shipped_credentials()
        for name in ("e_licence-signing", "e_licence-sector"):
            [credential] = shipped.trusted(name)
            gateway.certs.import_pem(name, credential.certificate_pem, credential.private_key_pem,
                                     sector="e_licence", actor="test")
    activate_shipped(gateway.bundles, sector.sector)
    return gateway


def submitted(hall: TestClient, body: dict[str, Any]) -> str:
    answer = hall.post("/v1/cases", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "accepted"
    return str(answer.json()["case_no"])


def dead_letter_of(gateway: Gateway, case_no: str) -> Callable[[], bool]:
    """Whether the case's submission has become a dead letter (its only outbox message)."""
    return lambda: outbox_statuses(gateway, case_no) == [("submit_case", "dead")]


def test_cases_are_signed_decided_and_refusals_of_our_signature_are_auth_dead_letters(
        gateway: Gateway, sector: SigningSector, sim: Simulator) -> None:
    keys = Keys.issue(gateway)
    with TestClient(create_app(gateway), headers=keys.hall) as hall:
        approved = submitted(hall, sector.application(WANG, sector.approved_form))
        denied = submitted(hall, sector.application(CHEN, sector.denied_form))
        drain(gateway, lambda: [gateway.service.get(c).state for c in (approved, denied)] == ["approved", "closed"])
        for case_no, opinion in zip((approved, denied), sector.opinions, strict=True):
            case = gateway.service.get(case_no)
            assert case.opinion is not None and opinion in case.opinion, case.opinion
            assert case.tasks[0].sector == sector.sector and case.tasks[0].sector_ref
        assert sim.counters["auth_failures"] == 0
        if isinstance(sim, ELicenceSimulator):  # every answer came signed and was taken: verified with its cert
            # The approved licence is fetched (fetch_certificate), signed too, before the sector refuses our key.
            drain(gateway, lambda: gateway.service.get(approved).certificate_draft is not None)
            assert sim.counters["answers_signed"] >= 4  # two submissions, at least one status query each
            assert [c.certificate_pem for c in gateway.certs.trusted("e_licence-sector")] == [sim.certificate_pem]

        refused = {}
        for why, refusing in REFUSALS.items():
            with refusing(sim):
                case_no = submitted(hall, sector.application(LI, sector.approved_form))
                drain(gateway, dead_letter_of(gateway, case_no))
            refused[why] = case_no
        assert gateway.service.get(refused["replay"]).state == "accepted"  # not lost: an operator can replay it

        operator = {"Authorization": keys.operator["Authorization"]}
        listed = hall.get("/v1/ops/dead-letters", params={"sector": sector.sector}, headers=operator).json()
        by_case = {letter["case_no"]: letter for letter in listed["items"]}
        assert set(by_case) == set(refused.values())
        for why, case_no in refused.items():
            letter = hall.get(f"/v1/ops/dead-letters/{by_case[case_no]['id']}", headers=operator).json()
            assert (letter["error_class"], letter["masked"]) == ("auth", True), letter["error_message"]
            shown = letter["last_response"]
            assert sector.refusals[why] in shown["body"], shown["body"]
            signing = shown["signing"]
            assert signing["text"] and signing["signature"] and signing["added"], signing
            everything = json.dumps(letter, ensure_ascii=False)
            assert not any(n in everything for n in ID_NUMBERS)  # personal data masked
            assert not any(s in everything for s in SECRETS)  # no secret, in the text or elsewhere
    assert sim.counters["auth_failures"] == 3
