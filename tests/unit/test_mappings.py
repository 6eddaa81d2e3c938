"""The mapping engine: rule kinds, converters, code tables, business errors, and its error messages."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from mappings import (
    CONVERTERS,
    SAFE_PARSER,
    BusinessError,
    HostileXmlError,
    HttpRequest,
    JsonAnswerError,
    MappingError,
    compile_mapping,
    parse_json,
    parse_xml,
)
from mappings.validate import load_mapping

BUNDLE = Path(__file__).resolve().parents[2] / "adapters" / "bundles" / "social_security"

SUBMIT_YAML = """
operation: SubmitCase
code_tables:
  yes_no: {"true": "Y", "false": "N"}
request:
  qqlsh: {from: idempotency_key}
  sqrxm: {from: case.applicant.name}
  lxdh: {from: case.applicant.phone, optional: true}
  slsj: {from: case.accepted_at, convert: datetime_compact_shanghai}
  cllb:
    cl:
      for_each: case.materials
      map:
        clmc: {from: name}
        sfsj: {from: received, code_table: yes_no}
  bdsj: {from: case.form, convert: json}
  fixed_example: {value: "CONST"}
response:
  business_error: {code: fhdm, ok: ["0000"], message: fhxx}
  fields:
    sector_ref: {from: ywlsh}
"""


def message(**case_changes: Any) -> dict[str, Any]:
    case = {
        "case_no": "C-1",
        "matter_code": "M-1",
        "accepted_at": "2024-01-02T07:30:00Z",
        "applicant": {"name": "张三", "id_type": "111", "id_number": "110101199001011234", "phone": "13800000000"},
        "materials": [{"name": "身份证", "received": True}, {"name": "户口簿", "received": False}],
        "form": {"z": 1, "a": "中文"},
    }
    case.update(case_changes)
    return {"idempotency_key": "K-1", "sector_ref": None, "case": case}


@pytest.fixture
def submit(tmp_path: Path):
    path = tmp_path / "submit_case.mapping.yaml"
    path.write_text(SUBMIT_YAML, encoding="utf-8")
    return compile_mapping(path)


def compile_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        compile_mapping(path)
    return str(caught.value)


# ------------------------------------------------------------------ rendering


def test_renders_every_rule_kind(submit) -> None:
    assert submit.operation == "SubmitCase"
    assert submit.render_request(message()) == {
        "qqlsh": "K-1",
        "sqrxm": "张三",
        "lxdh": "13800000000",
        "slsj": "20240102153000",  # 07:30 UTC is 15:30 in Beijing
        "cllb": {"cl": [{"clmc": "身份证", "sfsj": "Y"}, {"clmc": "户口簿", "sfsj": "N"}]},
        "bdsj": '{"a":"中文","z":1}',
        "fixed_example": "CONST",
    }


def test_optional_missing_or_none_is_omitted_from_the_request(submit) -> None:
    applicant = {"name": "张三", "phone": None}
    assert "lxdh" not in submit.render_request(message(applicant=applicant))
    del applicant["phone"]
    assert "lxdh" not in submit.render_request(message(applicant=applicant))


def test_empty_list_renders_empty(submit) -> None:
    assert submit.render_request(message(materials=[]))["cllb"] == {"cl": []}


def test_group_of_only_missing_optional_fields_is_omitted() -> None:
    mapping = compile_mapping({"operation": "Op", "request": {"a": {"b": {"from": "x", "optional": True}}}})
    assert mapping.render_request({}) == {}


def test_missing_required_value_names_file_and_field(submit) -> None:
    with pytest.raises(MappingError) as caught:
        submit.render_request(message(applicant={"phone": "1"}))
    assert str(caught.value) == "submit_case.mapping.yaml: request.sqrxm: case.applicant.name is missing"


def test_missing_value_inside_a_list_names_the_item(submit) -> None:
    with pytest.raises(MappingError) as caught:
        submit.render_request(message(materials=[{"name": "a", "received": True}, {"received": True}]))
    assert str(caught.value) == "submit_case.mapping.yaml: request.cllb.cl[1].clmc: name is missing"


def test_for_each_over_a_non_list_is_an_error(submit) -> None:
    with pytest.raises(MappingError, match=r"request\.cllb\.cl: case\.materials is not a list"):
        submit.render_request(message(materials="none"))


def test_unmapped_code_is_an_error(submit) -> None:
    with pytest.raises(MappingError) as caught:
        submit.render_request(message(materials=[{"name": "a", "received": "maybe"}]))
    assert str(caught.value) == (
        "submit_case.mapping.yaml: request.cllb.cl[0].sfsj: code 'maybe' is not in code table 'yes_no'"
    )


def test_bad_value_for_a_converter_names_field_and_converter(submit) -> None:
    with pytest.raises(MappingError) as caught:
        submit.render_request(message(accepted_at="2024-01-02T07:30:00"))
    assert str(caught.value).startswith(
        "submit_case.mapping.yaml: request.slsj: datetime_compact_shanghai cannot convert '2024-01-02T07:30:00'"
    )


# ------------------------------------------------------------------ reading answers


def test_reads_fields_and_checks_business_ok(submit) -> None:
    assert submit.read_response({"fhdm": "0000", "fhxx": "成功", "ywlsh": "SB-9"}) == {"sector_ref": "SB-9"}


def test_business_error_carries_code_and_text(submit) -> None:
    with pytest.raises(BusinessError) as caught:
        submit.read_response({"fhdm": "1001", "fhxx": "事项编码不存在", "ywlsh": None})
    assert (caught.value.code, caught.value.message) == ("1001", "事项编码不存在")
    assert str(caught.value) == "1001: 事项编码不存在"


def test_a_business_code_listed_under_auth_says_our_credentials_were_refused() -> None:
    mapping = compile_mapping({"operation": "Op", "request": {"a": {"value": 1}}, "response": {"business_error": {
        "code": "code", "ok": [0], "message": "msg", "auth": ["40001", 40003]}}}, source_name="op.mapping.yaml")
    refusals = []
    for code in (40001, "40003", 1001):
        with pytest.raises(BusinessError) as caught:
            mapping.read_response({"code": code, "msg": "签名错误"})
        refusals.append((caught.value.code, caught.value.message, caught.value.auth))
    assert refusals == [("40001", "签名错误", True), ("40003", "签名错误", True), ("1001", "签名错误", False)]


def test_missing_business_code_is_a_mapping_error(submit) -> None:
    with pytest.raises(MappingError) as caught:
        submit.read_response({"ywlsh": "SB-9"})
    assert str(caught.value) == "submit_case.mapping.yaml: response.business_error.code: fhdm is missing"


def test_optional_result_fields_are_none_not_absent() -> None:
    status = compile_mapping(BUNDLE / "query_status.mapping.yaml")
    answer = {"fhdm": "0000", "fhxx": "ok", "ywlsh": "SB-9", "blzt": "02"}
    assert status.read_response(answer) == {"sector_ref": "SB-9", "status": "in_process", "opinion": None,
                                            "decided_at": None}
    del answer["ywlsh"]
    answer |= {"blzt": "04", "spyj": "材料不符", "bjsj": "20240102080000"}
    assert status.read_response(answer) == {
        "sector_ref": None,
        "status": "denied",
        "opinion": "材料不符",
        "decided_at": "2024-01-02T00:00:00Z",
    }


def test_unknown_status_code_is_a_mapping_error() -> None:
    status = compile_mapping(BUNDLE / "query_status.mapping.yaml")
    with pytest.raises(MappingError, match="response.fields.status: code '09' is not in code table 'status'"):
        status.read_response({"fhdm": "0000", "fhxx": "ok", "blzt": "09"})


# ------------------------------------------------------------------ converters


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("json", {"b": [1, True, None], "a": "中"}, '{"a":"中","b":[1,true,null]}'),
        ("datetime_compact_shanghai", "2024-12-31T16:00:00+00:00", "20250101000000"),
        ("datetime_compact_shanghai", "2024-06-01T08:00:00+08:00", "20240601080000"),
        ("compact_shanghai_to_iso_utc", "20250101000000", "2024-12-31T16:00:00Z"),
        ("date_compact", "2024-03-05", "20240305"),
        ("date_compact", "2024-03-04T17:00:00Z", "20240305"),  # 01:00 on the 5th in Beijing
        ("str", 12, "12"),
        ("str", False, "false"),
        ("int", "42", 42),
        ("int", 7.0, 7),
        ("epoch_ms_to_iso_utc", 1704180600000, "2024-01-02T07:30:00Z"),
        ("epoch_ms_to_iso_utc", "1704180600123", "2024-01-02T07:30:00.123Z"),
        ("iso_utc_to_epoch_ms", "2024-01-02T07:30:00Z", 1704180600000),
        ("iso_utc_to_epoch_ms", "2024-01-02T15:30:00.123999+08:00", 1704180600123),  # below a ms: dropped
        ("iso_utc_to_beijing_datetime", "2024-12-31T16:00:00+00:00", "2025-01-01 00:00:00"),
        ("beijing_datetime_to_iso_utc", "2025-01-01 00:00:00", "2024-12-31T16:00:00Z"),
        ("xsd_datetime_to_iso_utc", "2026-11-24T10:00:00+08:00", "2026-11-24T02:00:00Z"),
        ("xsd_datetime_to_iso_utc", datetime(2026, 11, 24, 10, 0, 0, 500000, tzinfo=timezone(timedelta(hours=8))),
         "2026-11-24T02:00:00.500Z"),  # zeep reads xsd:dateTime as an aware datetime
        ("date_iso", date(2008, 2, 29), "2008-02-29"),  # zeep reads xsd:date as a date
        ("date_iso", "2008-02-29", "2008-02-29"),
        ("month_compact_to_iso", "202610", "2026-10"),
        ("bool_text", True, "true"),
        ("bool_text", "0", "false"),
    ],
)
def test_converters(name: str, value: Any, expected: Any) -> None:
    assert CONVERTERS[name](value) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("datetime_compact_shanghai", "2024-01-02 07:30:00"),  # naive: ambiguous
        ("compact_shanghai_to_iso_utc", "2024-01-02"),
        ("int", True),
        ("int", 1.5),
        ("epoch_ms_to_iso_utc", "soon"),
        ("iso_utc_to_epoch_ms", "2024-01-02T07:30:00"),  # naive: ambiguous
        ("iso_utc_to_beijing_datetime", "2024-01-02T07:30:00"),
        ("beijing_datetime_to_iso_utc", "2025-01-01T00:00:00"),
        ("beijing_datetime_to_iso_utc", "2025-02-30 00:00:00"),
        ("xsd_datetime_to_iso_utc", "2026-11-24T10:00:00"),  # xsd:dateTime without an offset
        ("date_iso", "2008-02-30"),
        ("month_compact_to_iso", "202613"),
        ("month_compact_to_iso", "2026-10"),
        ("bool_text", "yes"),
    ],
)
def test_converters_refuse_bad_values(name: str, value: Any) -> None:
    with pytest.raises(ValueError):
        CONVERTERS[name](value)


def test_code_tables_match_booleans_and_numbers_by_text() -> None:
    mapping = compile_mapping(
        {
            "operation": "Op",
            # YAML `true:` and `2:` keys arrive as bool and int; lookups go by their text.
            "code_tables": {"t": {True: "yes", 2: "two", "false": "no"}},
            "request": {"a": {"from": "a", "code_table": "t"}, "b": {"from": "b", "code_table": "t"}},
        }
    )
    assert mapping.render_request({"a": "true", "b": 2}) == {"a": "yes", "b": "two"}
    assert mapping.render_request({"a": False, "b": "2"}) == {"a": "no", "b": "two"}


def test_convert_runs_before_code_table() -> None:
    mapping = compile_mapping(
        {
            "operation": "Op",
            "code_tables": {"t": {"3": "three"}},
            "request": {"a": {"from": "a", "convert": "int", "code_table": "t"}},
        }
    )
    assert mapping.render_request({"a": 3.0}) == {"a": "three"}


# ------------------------------------------------------------------ compile-time errors


def test_unknown_converter(tmp_path: Path) -> None:
    text = "operation: Op\nrequest:\n  slsj: {from: case.accepted_at, convert: datetime_iso}\n"
    known = ", ".join(sorted(CONVERTERS))
    assert compile_error(tmp_path, text) == f"bad.mapping.yaml: request.slsj: unknown converter 'datetime_iso' (known: {known})"


def test_unknown_code_table(tmp_path: Path) -> None:
    text = "operation: Op\nrequest:\n  cl:\n    for_each: m\n    map:\n      sfsj: {from: r, code_table: yn}\n"
    assert compile_error(tmp_path, text) == "bad.mapping.yaml: request.cl.map.sfsj: unknown code table 'yn'"


def test_unknown_code_table_in_response(tmp_path: Path) -> None:
    text = "operation: Op\nrequest: {a: {value: 1}}\nresponse:\n  fields:\n    status: {from: blzt, code_table: st}\n"
    assert compile_error(tmp_path, text) == "bad.mapping.yaml: response.fields.status: unknown code table 'st'"


def test_unknown_rule_key(tmp_path: Path) -> None:
    text = "operation: Op\nrequest:\n  lxdh: {from: phone, optinal: true}\n"
    assert compile_error(tmp_path, text) == (
        "bad.mapping.yaml: request.lxdh: unknown rule key 'optinal' (allowed: code_table, convert, from, optional)"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = "operation: Op\nrequest: {a: {value: 1}}\nrespons: {}\n"
    assert compile_error(tmp_path, text) == (
        "bad.mapping.yaml: (top level): unknown key 'respons' (allowed: code_tables, operation, request, response)"
    )


def test_rule_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = "operation: Op\nrequest:\n  sqrxm: case.applicant.name\n"
    assert compile_error(tmp_path, text) == (
        "bad.mapping.yaml: request.sqrxm: expected a rule or a group of fields, got str 'case.applicant.name'"
    )


def test_missing_operation(tmp_path: Path) -> None:
    text = "request: {a: {value: 1}}\n"
    assert compile_error(tmp_path, text) == "bad.mapping.yaml: operation: required: the sector's operation name"


def test_bad_path_and_bad_flag(tmp_path: Path) -> None:
    assert compile_error(tmp_path, "operation: Op\nrequest: {a: {from: 'case..x'}}\n") == (
        "bad.mapping.yaml: request.a.from: 'case..x' is not a dotted path"
    )
    assert compile_error(tmp_path, "operation: Op\nrequest: {a: {from: x, optional: maybe}}\n") == (
        "bad.mapping.yaml: request.a.optional: expected true or false, got 'maybe'"
    )


def test_yaml_boolean_field_name_needs_quotes(tmp_path: Path) -> None:
    assert compile_error(tmp_path, "operation: Op\nrequest: {on: {value: 1}}\n") == (
        "bad.mapping.yaml: request: field name True must be a non-empty string (quote it in YAML)"
    )


@pytest.mark.parametrize(("auth", "expected"), [
    ("[]", "response.business_error.auth: expected a non-empty list of the codes that mean our credentials"),
    ("'40001'", "response.business_error.auth: expected a non-empty list"),
    ("['0', 40001]", "response.business_error.auth: '0' is listed under ok too"),
])
def test_bad_business_error_auth_codes(tmp_path: Path, auth: str, expected: str) -> None:
    text = f"operation: Op\nrequest: {{a: {{value: 1}}}}\nresponse:\n  business_error: {{code: c, ok: [0], auth: {auth}}}\n"
    assert compile_error(tmp_path, text).startswith(f"bad.mapping.yaml: {expected}")


def test_bad_business_error_spec(tmp_path: Path) -> None:
    text = "operation: Op\nrequest: {a: {value: 1}}\nresponse:\n  business_error: {code: fhdm, ok: '0000'}\n"
    assert compile_error(tmp_path, text) == (
        "bad.mapping.yaml: response.business_error.ok: expected a non-empty list of success codes"
    )


def test_bad_yaml(tmp_path: Path) -> None:
    assert compile_error(tmp_path, "operation: Op\nrequest: {a: [\n").startswith("bad.mapping.yaml: invalid YAML: ")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"^nope\.yaml: cannot read: "):
        compile_mapping(tmp_path / "nope.yaml")


def test_dict_source_uses_the_given_name() -> None:
    with pytest.raises(MappingError, match=r"^inline: request: needs at least one field$"):
        compile_mapping({"operation": "Op", "request": {}}, source_name="inline")


def test_shipped_bundle_mappings_compile() -> None:
    """As a bundle compiles them: the keys the engine does not read (a query's `parameters:`) set aside."""
    for path in sorted(BUNDLE.glob("*.mapping.yaml")):
        mf, problems = load_mapping(path)
        assert problems == [] and mf is not None and mf.compiled.source_name == path.name


# ------------------------------------------------------------------ hostile XML

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


def test_parse_xml_accepts_plain_xml() -> None:
    root = parse_xml(b"<a xmlns='urn:x'><b>\xe4\xb8\xad</b></a>")
    assert root.findtext("{urn:x}b") == "中"


def test_parse_xml_rejects_billion_laughs() -> None:
    with pytest.raises(HostileXmlError, match="DOCTYPE"):
        parse_xml(BILLION_LAUGHS)


def test_parse_xml_rejects_any_doctype_including_external() -> None:
    with pytest.raises(HostileXmlError):
        parse_xml(b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>')
    with pytest.raises(HostileXmlError):
        parse_xml(b"<!DOCTYPE html><html/>")
    with pytest.raises(HostileXmlError):  # a small bomb libxml2 would parse: refused after parsing
        parse_xml(b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')


def test_parse_xml_raises_syntax_error_on_malformed() -> None:
    with pytest.raises(etree.XMLSyntaxError):
        parse_xml(b"<a><b></a>")


def test_hostile_xml_error_is_a_value_error() -> None:
    assert issubclass(HostileXmlError, ValueError)


def test_safe_parser_is_hardened() -> None:
    # lxml exposes no getters for these options; resolving an entity is the observable behaviour.
    root = etree.fromstring(b'<!DOCTYPE a [<!ENTITY e "boom">]><a>&e;</a>', parser=SAFE_PARSER)
    assert "boom" not in etree.tostring(root).decode()


# ------------------------------------------------------------------ REST mappings: the http block

REST_YAML = """
code_tables:
  priority: {"true": GREEN, "false": NORMAL}
http:
  method: PUT
  path: /api/v2/applications/{ticketId}/attachments/{name}
  path_params:
    ticketId: {from: sector_ref}
    name: {from: case.applicant.name}
  query: {page: {value: 1}, verbose: {value: true}, phone: {from: case.applicant.phone, optional: true}}
  headers: {X-Priority: {from: case.green_channel, code_table: priority}}
  success: [200, 204]
request:
  applicationNo: {from: case.case_no}
response:
  business_error: {code: code, ok: [0], message: msg}
  fields:
    sector_ref: {from: data.ticketId}
"""


@pytest.fixture
def rest_mapping(tmp_path: Path):
    path = tmp_path / "attach.mapping.yaml"
    path.write_text(REST_YAML, encoding="utf-8")
    return compile_mapping(path)


def test_render_http_fills_path_query_headers_and_body(rest_mapping) -> None:
    msg = message(green_channel=True) | {"sector_ref": "GJJ 1/../2"}
    request = rest_mapping.render_http(msg)
    assert request == HttpRequest(
        method="PUT",
        path="/api/v2/applications/GJJ%201%2F..%2F2/attachments/%E5%BC%A0%E4%B8%89",
        query={"page": "1", "verbose": "true", "phone": "13800000000"},
        headers={"X-Priority": "GREEN"},
        body={"applicationNo": "C-1"},
    )
    assert rest_mapping.operation == "PUT /api/v2/applications/{ticketId}/attachments/{name}"
    assert rest_mapping.http.success == frozenset({200, 204})


def test_render_http_leaves_out_optional_query_and_refuses_climbing_segments(rest_mapping) -> None:
    without_phone = message(applicant={"name": "张三"}, green_channel=False) | {"sector_ref": "GJJ1"}
    assert "phone" not in rest_mapping.render_http(without_phone).query
    with pytest.raises(MappingError) as caught:
        rest_mapping.render_http(message(applicant={"name": ".."}, green_channel=False) | {"sector_ref": "x"})
    assert str(caught.value) == "attach.mapping.yaml: http.path_params.name: '..' cannot be a path segment"


def test_header_injection_is_a_mapping_error() -> None:
    mapping = compile_mapping(
        {"http": {"method": "GET", "path": "/x", "headers": {"X-Note": {"from": "note"}}}}, source_name="m.yaml"
    )
    with pytest.raises(MappingError, match=r"^m\.yaml: http\.headers\.X-Note: a header value cannot hold line breaks"):
        mapping.render_http({"note": "a\r\nX-Evil: 1"})


def test_get_without_request_has_no_body_and_soap_mappings_have_no_http(submit) -> None:
    mapping = compile_mapping({"http": {"method": "GET", "path": "/ping"}})
    assert mapping.render_http({}).body is None and mapping.request is None
    assert mapping.http.success == frozenset(range(200, 300))
    assert submit.http is None
    with pytest.raises(MappingError, match="http: not a REST mapping"):
        submit.render_http(message())


@pytest.mark.parametrize(
    ("http", "extra", "expected"),
    [
        ("{method: PATCH, path: /x}", "", "http.method: expected one of GET, POST, PUT, DELETE, got 'PATCH'"),
        ("{method: GET, path: /x}", "request: {a: {value: 1}}\n", "request: a GET sends no body"),
        ("{method: GET, path: x}", "", "http.path: expected an absolute path"),
        ("{method: GET, path: '/x?a=1'}", "", "http.path: expected an absolute path without query"),
        ("{method: GET, path: '/x/{id'}", "", "http.path: unbalanced braces"),
        ("{method: GET, path: '/x/{id}'}", "", "http.path_params: no rule for placeholder {id} of http.path"),
        ("{method: GET, path: /x, path_params: {id: {value: 1}}}", "", "http.path_params.id: is not a placeholder"),
        ("{method: GET, path: /x, query: {q: {for_each: l, map: {a: {from: b}}}}}", "",
         "http.query.q: expected a {from: ...} or {value: ...} rule"),
        ("{method: GET, path: /x, headers: {'X Bad': {value: 1}}}", "", "http.headers.X Bad: not a valid header name"),
        ("{method: GET, path: /x, success: [200, 700]}", "", "http.success: 700 is not an HTTP status"),
        ("{method: GET, path: /x, success: []}", "", "http.success: expected a non-empty list"),
        ("{method: GET, path: /x, paging: {page_param: p, size_param: s, size: 0, items: d}}", "",
         "http.paging.size: expected a whole number of at least 1, got 0"),
        ("{method: GET, path: /x, paging: {page_param: p, size_param: s, size: 5, items: d, max: 3}}", "",
         "http.paging: unknown key 'max'"),
        ("{method: GET, path: /x, verb: GET}", "", "http: unknown key 'verb'"),
        ("{method: POST, path: /x, body: xml}", "request: {a: {value: 1}}\n", "http.body: expected one of json, form"),
        ("{method: POST, path: /x, body: form}", "request: {a: {b: {value: 1}}}\n",
         "request.a: a form body (http.body: form) is flat"),
        ("{method: POST, path: /x, body: form}", "request: {a: {for_each: l, map: {b: {from: c}}}}\n",
         "request.a: a form body (http.body: form) is flat"),
        ("{method: POST, path: /x, body: form}", "request: {a: {value: [1, 2]}}\n",
         "request.a: a form body (http.body: form) is flat"),
    ],
)  # fmt: skip
def test_bad_http_block_names_file_and_field(tmp_path: Path, http: str, extra: str, expected: str) -> None:
    assert compile_error(tmp_path, f"http: {http}\n{extra}").startswith(f"bad.mapping.yaml: {expected}")


def test_paging_helpers_read_pages_and_merge_items() -> None:
    mapping = compile_mapping(
        {
            "http": {
                "method": "GET",
                "path": "/deposits",
                "paging": {"page_param": "page", "size_param": "pageSize", "size": 2, "items": "data.items",
                           "total": "data.total", "max_pages": 5},
            },
            "response": {"business_error": {"code": "code", "ok": [0]}, "fields": {"n": {"from": "data.total"}}},
        },
        source_name="deposits.yaml",
    )  # fmt: skip
    paging = mapping.http.paging
    assert paging.params(0) == {"page": "1", "pageSize": "2"} and paging.params(2)["page"] == "3"
    page = {"code": 0, "data": {"items": [1, 2], "total": "3"}}
    assert mapping.read_page(page) == ([1, 2], 3)
    merged = mapping.merge_pages(page, [1, 2, 3])
    assert merged["data"] == {"items": [1, 2, 3], "total": "3"} and page["data"]["items"] == [1, 2]
    with pytest.raises(BusinessError):
        mapping.read_page({"code": 4040})
    with pytest.raises(MappingError, match=r"^deposits\.yaml: http\.paging\.items: data\.items is not a list"):
        mapping.read_page({"code": 0, "data": {"items": "none"}})


def test_parse_json_accepts_plain_json_and_refuses_hostile() -> None:
    assert parse_json('{"a": ["中", 1.5, null]}'.encode()) == {"a": ["中", 1.5, None]}
    for hostile, problem in [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep to parse"),
        (b"[" * 201 + b"]" * 201, "nested deeper than 200 levels"),
        (b'{"a": NaN}', "malformed JSON"),
        (b'{"a": ', "malformed JSON"),
        (b"\xff\xfe\xfa", "malformed JSON"),
    ]:
        with pytest.raises(JsonAnswerError, match=problem):
            parse_json(hostile)
    assert parse_json(b"[" * 200 + b"]" * 200) is not None  # exactly at the cap is fine


FORM = {"http": {"method": "POST", "path": "/apply", "body": "form"},
        "request": {"name": {"from": "case.applicant.name"}, "count": {"value": 3}, "green": {"from": "case.green"},
                    "note": {"from": "case.note", "optional": True}, "who": {"from": "case.who", "optional": True}}}


def test_a_form_body_renders_its_fields_as_text_and_encodes_them_in_order() -> None:
    mapping = compile_mapping(FORM, source_name="apply.mapping.yaml")
    request = mapping.render_http({"case": {"applicant": {"name": "张 三&=+"}, "green": True}})
    assert request.body == {"name": "张 三&=+", "count": "3", "green": "true"}  # the optional note left out
    assert mapping.http is not None and mapping.http.content_type == "application/x-www-form-urlencoded"
    assert mapping.http.encode_body(request.body) == b"name=%E5%BC%A0+%E4%B8%89%26%3D%2B&count=3&green=true"
    json_http = compile_mapping({**FORM, "http": {"method": "POST", "path": "/apply"}}).http
    assert json_http is not None and json_http.content_type == "application/json; charset=utf-8"


def test_a_form_field_holding_an_object_at_run_time_is_a_mapping_error_naming_it() -> None:
    mapping = compile_mapping(FORM, source_name="apply.mapping.yaml")
    with pytest.raises(MappingError, match=r"apply.mapping.yaml: request.who: a form field holds a single value"):
        mapping.render_http({"case": {"applicant": {"name": "王五"}, "green": False, "who": {"a": 1}}})
