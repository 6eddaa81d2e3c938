"""The 社保 simulator over real HTTP, driven with hand-written SOAP 1.1 envelopes.

These pin the behaviour the gateway's adapter and the demo rely on: the WSDL address,
idempotent submission, business codes in 200 envelopes, Faults with HTTP 500, the delayed
decision, every injected fault mode, and the hardened parsing of hostile input.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from lxml import etree

from adapters.simulators.social_security import MAX_BODY_BYTES, SocialSecuritySimulator

TNS = "http://hrss.sim.yiwang.local/case/v1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
SUBMIT_ACTION = f'"{TNS}/SubmitCase"'
QUERY_ACTION = f'"{TNS}/QueryCaseStatus"'
DELAY_MS = 200  # long enough that "before the decision" holds on a loaded machine
SAFE_PARSER_KW: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False}

BASE_FIELDS: dict[str, str] = {
    "sxbm": "11440100MB2C93155X4442311001",
    "bjbh": "BJ202501150001",
    "sqrxm": "张三",
    "zjlx": "111",
    "zjhm": "440106199001011234",
    "lxdh": "13800138000",
    "slsj": "20250115093000",
}


# --------------------------------------------------------------------------- helpers


def envelope(inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:tns="{TNS}">'
        f"<soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    ).encode("utf-8")


def submit_body(qqlsh: str, *, drop: tuple[str, ...] = (), bdsj: dict[str, Any] | None = None) -> bytes:
    fields = {"qqlsh": qqlsh, **BASE_FIELDS}
    parts = [f"<tns:{name}>{value}</tns:{name}>" for name, value in fields.items() if name not in drop]
    parts.append(
        "<tns:cllb><tns:cl><tns:clmc>身份证</tns:clmc><tns:sfsj>Y</tns:sfsj></tns:cl>"
        "<tns:cl><tns:clmc>失业证明</tns:clmc><tns:sfsj>Y</tns:sfsj></tns:cl></tns:cllb>"
    )
    if bdsj is not None:
        parts.append(f"<tns:bdsj>{json.dumps(bdsj, ensure_ascii=False)}</tns:bdsj>")
    return envelope(f"<tns:SubmitCaseRequest>{''.join(parts)}</tns:SubmitCaseRequest>")


def query_body(ywlsh: str) -> bytes:
    return envelope(f"<tns:QueryCaseStatusRequest><tns:ywlsh>{ywlsh}</tns:ywlsh></tns:QueryCaseStatusRequest>")


def post(client: httpx.Client, sim: SocialSecuritySimulator, body: bytes, action: str = SUBMIT_ACTION) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action}
    return client.post(sim.url, content=body, headers=headers)


def payload(response: httpx.Response) -> etree._Element:
    """The Body's first element of a SOAP answer, parsed safely."""
    root = etree.fromstring(response.content, etree.XMLParser(**SAFE_PARSER_KW))
    assert root.tag == f"{{{SOAP}}}Envelope"
    return root.find(f"{{{SOAP}}}Body")[0]


def fields_of(response: httpx.Response, expected: str) -> dict[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    element = payload(response)
    assert element.tag == f"{{{TNS}}}{expected}"
    return {etree.QName(child).localname: child.text or "" for child in element}


def fault_of(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    fault = payload(response)
    assert fault.tag == f"{{{SOAP}}}Fault"
    return fault.findtext("faultcode"), fault.findtext("faultstring")


def submit(client: httpx.Client, sim: SocialSecuritySimulator, qqlsh: str, **kw: Any) -> dict[str, str]:
    return fields_of(post(client, sim, submit_body(qqlsh, **kw)), "SubmitCaseResponse")


def query(client: httpx.Client, sim: SocialSecuritySimulator, ywlsh: str) -> dict[str, str]:
    return fields_of(post(client, sim, query_body(ywlsh), QUERY_ACTION), "QueryCaseStatusResponse")


@pytest.fixture
def sim() -> Iterator[SocialSecuritySimulator]:
    with SocialSecuritySimulator(decision_delay_ms=DELAY_MS) as simulator:
        yield simulator


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


# --------------------------------------------------------------------------- WSDL and lifecycle


def test_wsdl_is_served_with_the_real_address(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    response = client.get(sim.wsdl_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    wsdl = etree.fromstring(response.content, etree.XMLParser(**SAFE_PARSER_KW))
    assert wsdl.get("targetNamespace") == TNS
    addresses = [a.get("location") for a in wsdl.iter(f"{{{WSDL_SOAP}}}address")]
    assert addresses == [sim.url]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/shebao/case", sim.url) and sim.port != 0
    assert sim.wsdl_url == f"{sim.url}?wsdl"


def test_get_on_endpoint_without_wsdl_is_not_allowed(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    assert client.get(sim.url).status_code == 405
    assert client.get(sim.url.replace("/shebao/case", "/other")).status_code == 404


def test_url_before_start_raises_and_stop_releases_the_port(client: httpx.Client) -> None:
    simulator = SocialSecuritySimulator()
    with pytest.raises(RuntimeError):
        _ = simulator.url
    with simulator:
        url = simulator.url
        assert client.get(f"{url}?wsdl").status_code == 200
    simulator.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        client.get(f"{url}?wsdl")


# --------------------------------------------------------------------------- SubmitCase


def test_submit_returns_the_sector_reference(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    answer = submit(client, sim, "Q-0001")
    assert answer["fhdm"] == "0000"
    assert answer["fhxx"]
    assert re.fullmatch(r"SB\d{12}", answer["ywlsh"])
    assert submit(client, sim, "Q-0002")["ywlsh"] != answer["ywlsh"]


def test_same_qqlsh_twice_is_applied_once(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    first = submit(client, sim, "Q-IDEM")
    second = submit(client, sim, "Q-IDEM")
    assert first["fhdm"] == second["fhdm"] == "0000"
    assert second["ywlsh"] == first["ywlsh"]
    counters = sim.counters
    assert counters["raw_requests"] == 2
    assert counters["submits_received"] == 2
    assert counters["cases_created"] == 1
    assert counters["duplicate_submits"] == 1


def test_concurrent_duplicates_make_one_case(sim: SocialSecuritySimulator) -> None:
    def one(_: int) -> str:
        with httpx.Client(timeout=5.0) as http:
            return submit(http, sim, "Q-RACE")["ywlsh"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        references = set(pool.map(one, range(16)))
    assert len(references) == 1
    assert sim.counters["cases_created"] == 1
    assert sim.counters["raw_requests"] == 16


def test_missing_field_is_a_business_error_and_not_remembered(
    sim: SocialSecuritySimulator, client: httpx.Client
) -> None:
    rejected = submit(client, sim, "Q-MISS", drop=("zjhm", "slsj"))
    assert rejected["fhdm"] == "1001"
    assert "缺少必填项" in rejected["fhxx"] and "zjhm" in rejected["fhxx"] and "slsj" in rejected["fhxx"]
    assert "ywlsh" not in rejected
    assert sim.counters["cases_created"] == 0

    accepted = submit(client, sim, "Q-MISS")
    assert accepted["fhdm"] == "0000" and accepted["ywlsh"]
    assert sim.counters["cases_created"] == 1


def test_unqualified_fields_do_not_count(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    body = envelope("<tns:SubmitCaseRequest><qqlsh>Q-UNQ</qqlsh></tns:SubmitCaseRequest>")
    answer = fields_of(post(client, sim, body), "SubmitCaseResponse")
    assert answer["fhdm"] == "1001" and "qqlsh" in answer["fhxx"]


def test_dispatch_follows_the_body_not_the_soapaction(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    answer = fields_of(post(client, sim, submit_body("Q-ACT"), action=QUERY_ACTION), "SubmitCaseResponse")
    assert answer["fhdm"] == "0000"
    fields_of(post(client, sim, submit_body("Q-ACT2"), action='""'), "SubmitCaseResponse")


# --------------------------------------------------------------------------- QueryCaseStatus


def test_query_unknown_reference(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    answer = query(client, sim, "SB999999999999")
    assert answer["fhdm"] == "2001"
    assert "blzt" not in answer


def test_query_is_processing_then_approved(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    ywlsh = submit(client, sim, "Q-OK", bdsj={"insured_months": 36})["ywlsh"]
    pending = query(client, sim, ywlsh)
    assert (pending["fhdm"], pending["ywlsh"], pending["blzt"]) == ("0000", ywlsh, "02")
    assert "spyj" not in pending and "bjsj" not in pending

    time.sleep(DELAY_MS / 1000 + 0.03)
    decided = query(client, sim, ywlsh)
    assert decided["blzt"] == "03"
    assert decided["spyj"] == "材料齐全，符合条件，准予办理"
    bjsj = datetime.strptime(decided["bjsj"], "%Y%m%d%H%M%S").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    assert abs(datetime.now(ZoneInfo("Asia/Shanghai")) - bjsj) < timedelta(seconds=5)
    assert query(client, sim, ywlsh) == decided  # the decision is stable


def test_too_few_insured_months_is_denied(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    ywlsh = submit(client, sim, "Q-DENY", bdsj={"insured_months": 6})["ywlsh"]
    time.sleep(DELAY_MS / 1000 + 0.03)
    decided = query(client, sim, ywlsh)
    assert decided["blzt"] == "04"
    assert decided["spyj"] == "累计缴费不满12个月，不符合申领条件"
    assert re.fullmatch(r"\d{14}", decided["bjsj"])


def test_custom_decide_sees_the_request_fields(client: httpx.Client) -> None:
    seen: list[dict[str, Any]] = []

    def decide(fields: dict[str, Any]) -> tuple[bool, str]:
        seen.append(fields)
        return False, "自定义：不予受理"

    with SocialSecuritySimulator(decision_delay_ms=0, decide=decide) as simulator:
        ywlsh = submit(client, simulator, "Q-CUSTOM")["ywlsh"]
        decided = query(client, simulator, ywlsh)
        query(client, simulator, ywlsh)
    assert (decided["blzt"], decided["spyj"]) == ("04", "自定义：不予受理")
    assert len(seen) == 1  # decided once, then remembered
    assert seen[0]["sqrxm"] == "张三" and seen[0]["qqlsh"] == "Q-CUSTOM"
    assert seen[0]["cllb"] == [{"clmc": "身份证", "sfsj": "Y"}, {"clmc": "失业证明", "sfsj": "Y"}]


# --------------------------------------------------------------------------- bad requests


def test_malformed_request_is_a_client_fault(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    code, message = fault_of(post(client, sim, b"<soapenv:Envelope><unclosed>"))
    assert code == "soap:Client" and message
    assert sim.counters["raw_requests"] == 1 and sim.counters["client_faults"] == 1


def test_unknown_operation_is_a_client_fault(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    code, _ = fault_of(post(client, sim, envelope("<tns:CancelCaseRequest/>")))
    assert code == "soap:Client"
    code, _ = fault_of(post(client, sim, b'<?xml version="1.0"?><notsoap/>'))
    assert code == "soap:Client"


def test_soap_12_envelope_is_a_version_mismatch(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    body = b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body/></env:Envelope>'
    code, _ = fault_of(post(client, sim, body))
    assert code == "soap:VersionMismatch"


def billion_laughs_request() -> str:
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    inner = submit_body("Q-BOMB").decode("utf-8").split("?>", 1)[1].replace("张三", "&a9;")
    return f'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE soapenv:Envelope [{entities}]>{inner}'


def test_entity_expansion_request_is_rejected(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    code, message = fault_of(post(client, sim, billion_laughs_request().encode("utf-8")))
    assert code == "soap:Client" and "DOCTYPE" in message
    assert sim.counters["cases_created"] == 0


def test_doctype_hidden_in_utf16_is_rejected_after_parsing(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    text = submit_body("Q-U16").decode("utf-8").split("?>", 1)[1].replace("张三", "&x;")
    document = f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE soapenv:Envelope [<!ENTITY x "李四">]>{text}'
    code, _ = fault_of(post(client, sim, document.encode("utf-16")))
    assert code == "soap:Client"
    assert sim.counters["cases_created"] == 0


def test_oversized_body_is_413(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    response = post(client, sim, b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert sim.counters["raw_requests"] == 1 and sim.counters["cases_created"] == 0


# --------------------------------------------------------------------------- injected faults


def test_fail_mode_is_a_dead_load_balancer(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("fail")
    for qqlsh in ("Q-F1", "Q-F2"):
        response = post(client, sim, submit_body(qqlsh))
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert b"Envelope" not in response.content
    assert sim.fault_mode == "fail"
    sim.set_fault(None)
    assert submit(client, sim, "Q-F1")["fhdm"] == "0000"
    assert sim.counters["raw_requests"] == 3 and sim.counters["cases_created"] == 1


def test_fault_mode_is_a_server_fault(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("fault", count=1)
    code, message = fault_of(post(client, sim, submit_body("Q-SF")))
    assert code == "soap:Server" and message
    assert sim.counters["cases_created"] == 0


def test_malformed_mode_answers_truncated_xml(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("malformed", count=1)
    response = post(client, sim, submit_body("Q-MAL"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content, etree.XMLParser(**SAFE_PARSER_KW))
    assert sim.counters["cases_created"] == 0


def test_hostile_mode_answers_an_entity_bomb(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("hostile", count=1)
    response = post(client, sim, submit_body("Q-HOST"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    text = response.text
    assert "<!DOCTYPE" in text and text.count("<!ENTITY") >= 10
    assert "Envelope" in text and "&lol9;" in text
    assert len(response.content) < 4096  # the bomb is in the expansion, not the bytes
    assert sim.counters["cases_created"] == 0


def test_count_n_faults_recover_by_themselves(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("fail", count=2)
    statuses = [post(client, sim, submit_body("Q-N")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sim.fault_mode is None
    assert sim.counters == {**sim.counters, "raw_requests": 3, "cases_created": 1, "faults_injected": 2}


def test_slow_mode_applies_the_case_even_when_the_client_gives_up(sim: SocialSecuritySimulator) -> None:
    sim.set_fault("slow", count=1, slow_ms=300)
    with httpx.Client(timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        post(impatient, sim, submit_body("Q-SLOW"))
    deadline = time.monotonic() + 2
    while sim.counters["cases_created"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.counters["cases_created"] == 1  # the sector applied it: the retry must be idempotent

    with httpx.Client(timeout=5.0) as patient:
        retry = submit(patient, sim, "Q-SLOW")
        assert retry["fhdm"] == "0000"
        assert sim.counters["cases_created"] == 1


def test_slow_mode_answers_normally_after_the_delay(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("slow", slow_ms=120)
    started = time.monotonic()
    assert submit(client, sim, "Q-SLOW2")["fhdm"] == "0000"
    assert time.monotonic() - started >= 0.12


def test_set_fault_rejects_nonsense(sim: SocialSecuritySimulator) -> None:
    with pytest.raises(ValueError):
        sim.set_fault("explode")
    with pytest.raises(ValueError):
        sim.set_fault("fail", count=0)
    with pytest.raises(ValueError):
        sim.set_fault("slow", slow_ms=-1)
    assert sim.fault_mode is None


def test_rate_limit_mode_is_429_with_retry_after(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    sim.set_fault("rate_limit", count=1)
    limited = post(client, sim, submit_body("Q-RL"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert submit(client, sim, "Q-RL")["fhdm"] == "0000"
    assert sim.counters["cases_created"] == 1


# --------------------------------------------------------------------------- QueryContributionRecord

KNOWN_ZJHM = "150204199011201529"


def contributions_body(zjhm: str) -> bytes:
    inner = f"<tns:zjhm>{zjhm}</tns:zjhm>" if zjhm else ""
    return envelope(f"<tns:QueryContributionRecordRequest>{inner}</tns:QueryContributionRecordRequest>")


def test_contribution_record_of_a_known_person(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    response = post(client, sim, contributions_body(KNOWN_ZJHM), f'"{TNS}/QueryContributionRecord"')
    assert response.status_code == 200
    answer = payload(response)
    assert answer.tag == f"{{{TNS}}}QueryContributionRecordResponse"
    assert [etree.QName(child).localname for child in answer] == ["fhdm", "fhxx", "jfjl", "ljys"]  # WSDL order
    records = [{etree.QName(f).localname: f.text for f in jl} for jl in answer.find(f"{{{TNS}}}jfjl")]
    assert 6 <= len(records) <= 48
    assert [r["ny"] for r in records] == sorted((r["ny"] for r in records), reverse=True)  # newest first
    first = records[0]
    assert re.fullmatch(r"\d{6}", first["ny"]) and first["zt"] in ("0", "1")
    base = float(first["jfjs"])
    assert (float(first["dwjf"]), float(first["grjf"])) == (round(base * 0.16, 2), round(base * 0.08, 2))
    assert re.fullmatch(r"\d+\.\d{2}", first["jfjs"])
    assert int(answer.findtext(f"{{{TNS}}}ljys")) == sum(r["zt"] == "1" for r in records)
    assert sim.counters["queries_received"] == 1 and sim.counters["cases_created"] == 0


def test_contribution_record_errors(sim: SocialSecuritySimulator, client: httpx.Client) -> None:
    unknown = fields_of(post(client, sim, contributions_body("nobody")), "QueryContributionRecordResponse")
    assert unknown["fhdm"] == "2002" and "jfjl" not in unknown
    missing = fields_of(post(client, sim, contributions_body("")), "QueryContributionRecordResponse")
    assert missing["fhdm"] == "1001" and "zjhm" in missing["fhxx"]
    assert sim.counters["business_errors"] == 2


def test_zeep_reads_the_shipped_wsdl_and_queries_contributions(sim: SocialSecuritySimulator) -> None:
    zeep = pytest.importorskip("zeep")
    settings = zeep.Settings(strict=True, forbid_external=True, forbid_dtd=True)
    bundle_wsdl = Path(__file__).parents[2] / "adapters" / "bundles" / "social_security" / "service.wsdl"
    service = zeep.Client(str(bundle_wsdl), settings=settings).create_service(f"{{{TNS}}}SheBaoCaseBinding", sim.url)
    answer = service.QueryContributionRecord(zjhm=KNOWN_ZJHM)
    assert answer.fhdm == "0000" and int(answer.ljys) == sum(jl.zt == "1" for jl in answer.jfjl.jl)
    assert service.SubmitCase(qqlsh="Q-ZEEP", **BASE_FIELDS).fhdm == "0000"
