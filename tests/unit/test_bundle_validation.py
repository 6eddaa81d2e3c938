"""Bundle validation (adapters/BUNDLE-FORMAT.md): descriptor, files, mappings against the canonical model
and the service description, safe unpacking, XSLT sandboxing and preview.

The broken bundles are the reference bundles with one edit each, made in tmp_path; every case names the
exact problems `validate_bundle` must report, so a change of wording is a deliberate change here.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters import canonical
from adapters.auth import OAuth2Spec, Recipe, SecretRef
from adapters.bundle import (
    BundleError,
    compile_mappings,
    load_bundle,
    preview,
    schema,
    unpack_bundle,
    validate_bundle,
)
from adapters.descriptor import Bundle, CallbackResults, PollingResults
from adapters.registry import default_bundles_dir
from adapters.kinds.rest import RestOptions
from adapters.kinds.soap import stylesheets
from mappings import CONVERTERS
from mappings.errors import MappingError
from mappings.positions import YamlProblem, load_yaml
from mappings.validate import Expectations, Shape, check_canonical, load_mapping
from mappings.xslt import XsltError, compile_xslt

DATA = Path(__file__).resolve().parents[1] / "data" / "bundles"
SOAP = DATA / "social_security_v2"
REST = DATA / "housing_fund_rest"
ASSISTANCE = default_bundles_dir() / "social_assistance"  # its signing recipe puts appid, timestamp, nonce_str, sign in the form


def message(**changes: Any) -> dict[str, Any]:
    case = {
        "case_no": "C-1",
        "matter_code": "M-1",
        "accepted_at": "2026-11-24T02:00:00Z",
        "green_channel": True,
        "applicant": {"name": "张三", "id_type": "111", "id_number": "110101199001011234", "phone": "13800000000"},
        "materials": [{"name": "身份证", "received": True, "file_ref": None}],
        "form": {"amount": 1},
    }
    return {"idempotency_key": "K-1", "sector_ref": "REF-1", "task": {"id": "T-1"}, "case": case} | changes


# ------------------------------------------------------------------ the reference bundles


@pytest.mark.parametrize("bundle", [SOAP, REST], ids=["soap", "rest"])
def test_reference_bundles_validate_clean(bundle: Path) -> None:
    assert [str(p) for p in validate_bundle(bundle)] == []


def test_the_descriptor_model_is_typed() -> None:
    soap = load_bundle(SOAP)
    assert isinstance(soap, Bundle) and soap.root == SOAP
    assert (soap.sector, soap.kind, soap.options.soap_version, soap.version) == ("social_security", "soap", "1.1", "2")
    assert soap.operations["submit_case"] == SOAP / "submit_case.mapping.yaml"
    assert soap.endpoint() == "http://127.0.0.1:8801/shebao/case"
    assert soap.endpoint("production") == "https://shebao.baotou.example/shebao/case"
    assert soap.serves.departments == ("12150200MB1A00010L",)
    assert soap.results == PollingResults(1000) and soap.retry.attempts == 4
    assert "service.wsdl" in soap.files
    rest = load_bundle(REST)
    assert rest.auth == OAuth2Spec("/oauth/token", SecretRef("env:YIWANG_SECRET_GJJ_CLIENT_ID"),
                                   SecretRef("env:YIWANG_SECRET_GJJ_CLIENT_SECRET"), "cases")  # fmt: skip
    assert rest.options == RestOptions(idempotency_header="X-Request-Id")  # and no soap_version
    assert set(rest.queries) == {"housing_fund_balance", "housing_fund_deposits"}
    assert rest.code_tables == REST / "code_tables.yaml"


def test_the_schema_is_draft_2020_12() -> None:
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_canonical_model_as_data() -> None:
    paths = canonical.readable_paths("submit_case")
    assert {"idempotency_key", "sector_ref", "task.id", "case.applicant.id_number"} <= paths
    assert {"case.materials[].name", "case.materials[].received", "case.materials[].file_ref", "case.form.*"} <= paths
    assert canonical.readable_paths("housing_fund_balance", query=True) == {"query", "query.*", "request_id"}
    assert canonical.result_spec("query_status").required == {"status"}
    facts = {"decided_at", "certificate_issued", "certificate_number", "certificate_valid_until", "document_ref"}
    assert canonical.result_spec("query_status").optional == {"opinion", "sector_ref", "case_no", "task_id",
                                                              "idempotency_key", *facts}
    assert canonical.result_spec("callback").optional == {"opinion", "case_no", "task_id", "idempotency_key", *facts}
    assert canonical.result_spec("fetch_certificate").allowed == {"name", "number", "issuer", "valid_until", "holder",
                                                                  "file_ref"}
    assert canonical.result_spec("submit_case").required == {"sector_ref"}
    assert canonical.result_spec("callback").times == {"decided_at": "instant", "certificate_valid_until": "date"}
    assert canonical.result_spec("fetch_certificate").times == {"valid_until": "date"}
    assert canonical.result_spec("housing_fund_balance", query=True).times == {}  # a query's result is its own


# ------------------------------------------------------------------ broken bundles


@dataclass(frozen=True)
class Edit:
    """One edit of a reference bundle: replace `old` (once) by `new` in `file` (new None: delete the file)."""

    file: str
    old: str
    new: str | None


def broken(tmp_path: Path, source: Path, *edits: Edit) -> Path:
    bundle = tmp_path / source.name
    shutil.copytree(source, bundle)
    for edit in edits:
        path = bundle / edit.file
        if edit.new is None:
            path.unlink()
            continue
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        assert text.count(edit.old) == 1, f"{edit.old!r} must occur once in {edit.file}"
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
    return bundle


def E(file: str, old: str, new: str | None) -> Edit:  # noqa: N802 - reads as a table column
    return Edit(file, old, new)


D, SUBMIT, STATUS = "bundle.yaml", "submit_case.mapping.yaml", "query_status.mapping.yaml"
KNOWN = ", ".join(sorted(CONVERTERS))
NO_ZONE = ("'decided_at' is an ISO-8601 UTC instant: read it with a converter that declares the sector's zone, last "
           "in `convert` and without a code table (epoch_s_to_iso_utc, epoch_ms_to_iso_utc, compact_shanghai_to_iso_utc, "
           "beijing_datetime_to_iso_utc, compact_utc_to_iso_utc, utc_datetime_to_iso_utc, xsd_datetime_to_iso_utc); "
           "a time is never guessed")
JSON_APPLICATION = '          application/json:\n            schema: {$ref: "#/components/schemas/Application"}'
FORM_APPLICATION = JSON_APPLICATION.replace("application/json", "application/x-www-form-urlencoded")
FLAT_FORM = """http:
  method: POST
  path: /api/v2/applications
  body: form
request:
  bizTyp: {from: case.matter_code}
  applicationNo: {from: case.case_no}
response:
  fields:
    sector_ref: {from: data.ticketId}
"""
BALANCE, DEPOSITS = "housing_fund_balance.mapping.yaml", "housing_fund_deposits.mapping.yaml"
CLIENT_SECRET = "client_secret: {secret: env:YIWANG_SECRET_GJJ_CLIENT_SECRET}"
LITERAL = "a literal secret is refused: write {secret: env:NAME}, {secret: file:/path} or {secret: vault:NAME}"
TICKET_PARAM = "  path_params: {ticketId: {from: sector_ref}}"
SCHEMA_TAG = '<xsd:schema targetNamespace="http://hrss.sim.yiwang.local/case/v1" elementFormDefault="qualified">'
NETWORK_IMPORT = '<xsd:import namespace="urn:o" schemaLocation="http://example.com/o.xsd"/>'

BROKEN: list[tuple[str, Path, list[Edit], list[str]]] = [
    ("missing descriptor key", SOAP, [E(D, "title: 人力资源和社会保障局 社会保险经办系统\n", "")],
     ["bundle.yaml:3: title: required"]),
    ("unknown kind", SOAP, [E(D, "kind: soap", "kind: grpc")],
     ["bundle.yaml:8: kind: unknown adapter kind 'grpc' (known: soap, rest, ferry)"]),
    ("bad sector name", SOAP, [E(D, "sector: social_security", "sector: Social-Security")],
     ["bundle.yaml:4: sector: 'Social-Security' is not a sector name ([a-z][a-z0-9_]{1,40})"]),
    ("unknown descriptor key", SOAP, [E(D, "timeout_ms: 5000", "timeout_ms: 5000\npoll_interval_ms: 1000")],
     ["bundle.yaml:21: poll_interval_ms: unknown key (known: auth, circuit_breaker, department, endpoints, "
      "ferry, format, idempotency, kind, materials, operations, queries, rate_limit, rehearsal, results, retry, sector, "
      "serves, service_description, soap_version, subscriptions, timeout_ms, title, tls, version, ws_security)"]),
    ("operation name not canonical", SOAP, [E(D, "operations:\n", "operations:\n  submit: submit_case.mapping.yaml\n")],
     ["bundle.yaml:18: operations.submit: not a canonical operation (known: callback, cancel_case, fetch_certificate, "
      "query_status, submit_case)"]),
    ("query name not a name", REST, [E(D, "  housing_fund_deposits:", "  Housing-Deposits:")],
     ["bundle.yaml:22: queries.Housing-Deposits: 'Housing-Deposits' is not a query name ([a-z][a-z0-9_]*)"]),
    ("file referenced but missing", SOAP, [E(STATUS, "", None)],
     ["bundle.yaml:19: operations.query_status: file 'query_status.mapping.yaml' not found in the bundle"]),
    ("file outside the bundle", SOAP, [E(D, "description: service.wsdl", "description: ../service.wsdl")],
     ["bundle.yaml:9: service_description: file '../service.wsdl' not found in the bundle"]),
    ("soap_version missing", SOAP, [E(D, 'soap_version: "1.1"\n', "")],
     ['bundle.yaml:3: soap_version: required for a soap bundle ("1.1" or "1.2")']),
    ("WSDL importing a schema from the network", SOAP, [E("service.wsdl", SCHEMA_TAG, SCHEMA_TAG + NETWORK_IMPORT)],
     ["bundle.yaml:9: service_description: service.wsdl: refers to http://example.com/o.xsd: every WSDL and XSD "
      "file must be inside the bundle"]),
    ("soap_version not matching the WSDL binding", SOAP, [E(D, 'soap_version: "1.1"', 'soap_version: "1.2"')],
     ["bundle.yaml:10: soap_version: '1.2' does not match service.wsdl: binding SheBaoCaseBinding is SOAP 1.1"]),
    ("literal secret", REST, [E(D, CLIENT_SECRET, "client_secret: s3cret")],
     [f"bundle.yaml:31: auth.client_secret: {LITERAL}"]),
    ("secret reference without a scheme", REST,
     [E(D, CLIENT_SECRET, "client_secret: {secret: s3cret}")],
     ["bundle.yaml:31: auth.client_secret.secret: not a secret reference: write env:NAME, file:/absolute/path or vault:NAME"]),
    ("credentials in an endpoint URL", REST, [E(D, "test: http://127.0.0.1:8802", "test: http://gw:pw@127.0.0.1:8802")],
     ["bundle.yaml:11: endpoints.test: expected an http(s) URL without credentials "
      "(user:password@ is a literal secret)"]),
    ("unknown auth type", SOAP, [E(D, "auth: {type: none}", "auth: {type: kerberos}")],
     ["bundle.yaml:24: auth.type: unknown auth type 'kerberos' (known: none, basic, bearer, oauth2_client_credentials, "
      "hmac, rsa_signature, signature, wsse_username_token)"]),
    ("auth form the kind cannot use", SOAP,
     [E(D, "auth: {type: none}", "auth: {type: bearer, token: {secret: env:T}}")],
     ["bundle.yaml:24: auth.type: unknown auth type 'bearer' for soap (known: basic, none, wsse_username_token)"]),
    ("polling without query_status", SOAP, [E(D, "  query_status: query_status.mapping.yaml\n", "")],
     ["bundle.yaml:17: operations.query_status: required when results.mode is polling"]),
    ("idempotency header on soap", SOAP,
     [E(D, "auth: {type: none}", "auth: {type: none}\nidempotency: {header: X-Id}")],
     ["bundle.yaml:25: idempotency.header: rest bundles only (soap: idempotency.soap_header, or map idempotency_key into the body)"]),
    ("mapping YAML syntax error", SOAP, [E(SUBMIT, "  bjbh: {from: case.case_no}", "  bjbh: {from: case.case_no")],
     ["submit_case.mapping.yaml:9: invalid YAML: expected ',' or '}', but got '<scalar>'"]),
    ("duplicate key in a mapping", SOAP, [E(SUBMIT, "  bjbh: {from: case.case_no}", "  sxbm: {from: case.case_no}")],
     ["submit_case.mapping.yaml:8: duplicate key 'request.sxbm'"]),
    ("YAML alias in a mapping", SOAP,
     [E(SUBMIT, "  qqlsh: {from: idempotency_key}", "  qqlsh: &k {from: idempotency_key}\n  x: *k")],
     ["submit_case.mapping.yaml:7: YAML aliases (*name) are not allowed"]),
    ("unknown converter", SOAP, [E(SUBMIT, "convert: datetime_compact_shanghai", "convert: datetime_compact")],
     [f"submit_case.mapping.yaml:13: request.slsj: unknown converter 'datetime_compact' (known: {KNOWN})"]),
    ("unknown converter in a chain", SOAP,
     [E(SUBMIT, "convert: datetime_compact_shanghai", "convert: [datetime_compact_shanghai, nope]")],
     [f"submit_case.mapping.yaml:13: request.slsj: unknown converter 'nope' (known: {KNOWN})"]),
    ("a sector's time copied without a zone", SOAP, [E(STATUS, "convert: compact_shanghai_to_iso_utc, ", "")],
     [f"query_status.mapping.yaml:16: response.fields.decided_at: {NO_ZONE}"]),
    ("a sector's time chained past its zone", SOAP,
     [E(STATUS, "convert: compact_shanghai_to_iso_utc", "convert: [compact_shanghai_to_iso_utc, str]")],
     [f"query_status.mapping.yaml:16: response.fields.decided_at: {NO_ZONE}"]),
    ("a sector's time as a constant", SOAP,
     [E(STATUS, "{from: bjsj, convert: compact_shanghai_to_iso_utc, optional: true}", "{value: '2026-12-07 10:00:00'}")],
     [f"query_status.mapping.yaml:16: response.fields.decided_at: {NO_ZONE}"]),
    ("a sector's time through a code table", SOAP,
     [E(STATUS, "convert: compact_shanghai_to_iso_utc", "convert: compact_shanghai_to_iso_utc, code_table: status")],
     [f"query_status.mapping.yaml:16: response.fields.decided_at: {NO_ZONE}"]),
    ("unknown code table", SOAP, [E(SUBMIT, "code_table: yes_no", "code_table: yesno")],
     ["submit_case.mapping.yaml:20: request.cllb.cl.map.sfsj: unknown code table 'yesno'"]),
    ("from path not in the canonical model", SOAP, [E(SUBMIT, "case.applicant.name}", "case.applicant.nme}")],
     ["submit_case.mapping.yaml:9: request.sqrxm: 'case.applicant.nme' is not in the canonical message"]),
    ("from path inside for_each not in the canonical model", SOAP, [E(SUBMIT, "{from: name}", "{from: title}")],
     ["submit_case.mapping.yaml:19: request.cllb.cl.map.clmc: 'case.materials[].title' is not in the "
      "canonical message"]),
    ("for_each over something not a list", SOAP, [E(SUBMIT, "for_each: case.materials", "for_each: case.applicant")],
     ["submit_case.mapping.yaml:15: request.cllb.cl: 'case.applicant' is not a list in the canonical message"]),
    ("request target not in the WSDL type", SOAP, [E(SUBMIT, "  lxdh: {from", "  lxdhh: {from")],
     ["submit_case.mapping.yaml:12: request.lxdhh: 'lxdhh' is not in SubmitCaseRequest, the input of SubmitCase in "
      "service.wsdl"]),
    ("required WSDL element without a rule", SOAP, [E(SUBMIT, "  zjlx: {from: case.applicant.id_type}", "")],
     ["submit_case.mapping.yaml:5: request: required 'zjlx' of SubmitCaseRequest, the input of SubmitCase in "
      "service.wsdl has no rule"]),
    ("response source not in the WSDL output", SOAP, [E(SUBMIT, "{from: ywlsh}", "{from: ywlsh2}")],
     ["submit_case.mapping.yaml:25: response.fields.sector_ref: 'ywlsh2' is not in SubmitCaseResponse, the output of "
      "SubmitCase in service.wsdl"]),
    ("WSDL operation that does not exist", SOAP, [E(SUBMIT, "operation: SubmitCase", "operation: SubmitCas")],
     ["submit_case.mapping.yaml:2: operation: 'SubmitCas' is not an operation of binding SheBaoCaseBinding in "
      "service.wsdl (operations: QueryCaseStatus, QueryContributionRecord, SubmitCase)"]),
    ("result key not canonical", SOAP, [E(SUBMIT, "    sector_ref: {from: ywlsh}", "    ticket: {from: ywlsh}")],
     ["submit_case.mapping.yaml:24: response.fields: 'sector_ref' is required in the result of submit_case",
      "submit_case.mapping.yaml:25: response.fields.ticket: 'ticket' is not a result of submit_case "
      "(results: sector_ref)"]),
    ("code table value not a canonical status", SOAP, [E(STATUS, '"04": denied', '"04": rejected')],
     ["query_status.mapping.yaml:14: response.fields.status: code table 'status' maps '04' to 'rejected', not a status "
      "(approved, denied, in_process, received, returned)"]),
    ("OpenAPI body property that does not exist", REST, [E(SUBMIT, "    mobile: {from", "    mobil: {from")],
     ["submit_case.mapping.yaml:12: request.applicant.mobil: 'applicant.mobil' is not in the request body of "
      "POST /api/v2/applications in openapi.yaml"]),
    ("path param missing from the OpenAPI path", REST,
     [E(STATUS, "path: /api/v2/applications/{ticketId}\n  path_params: {ticketId:",
        "path: /api/v2/applications/{id}\n  path_params: {id:")],
     ["query_status.mapping.yaml:4: http: required path parameter 'ticketId' of GET /api/v2/applications/{ticketId} "
      "has no rule in http.path_params",
      "query_status.mapping.yaml:7: http.path_params.id: 'id' is not a path parameter of GET "
      "/api/v2/applications/{ticketId} in openapi.yaml"]),
    ("path not in the OpenAPI document", REST,
     [E(STATUS, "path: /api/v2/applications/{ticketId}", "path: /api/v2/tickets/{ticketId}")],
     ["query_status.mapping.yaml:6: http.path: '/api/v2/tickets/{ticketId}' is not a path in openapi.yaml"]),
    ("query parameter the OpenAPI operation does not declare", REST,
     [E(STATUS, TICKET_PARAM, TICKET_PARAM + "\n  query: {verbose: {value: 1}}")],
     ["query_status.mapping.yaml:8: http.query.verbose: 'verbose' is not a query parameter of GET "
      "/api/v2/applications/{ticketId} in openapi.yaml"]),
    ("response path not in the OpenAPI answer", REST, [E(SUBMIT, "{from: data.ticketId}", "{from: data.ticketID}")],
     ["submit_case.mapping.yaml:24: response.fields.sector_ref: 'data.ticketID' is not in the success answer of "
      "POST /api/v2/applications in openapi.yaml"]),
    ("paging items not a list", REST, [E(DEPOSITS, "items: data.items", "items: data.total")],
     ["housing_fund_deposits.mapping.yaml:6: http.paging.items: 'data.total' is not a list in the success answer of "
      "GET /api/v2/accounts/{idCardNo}/deposits in openapi.yaml"]),
    ("query mapping reading outside query", REST,
     [E(BALANCE, "{from: query.id_number}", "{from: case.applicant.id_number}")],
     ["housing_fund_balance.mapping.yaml:5: http.path_params.idCardNo: 'case.applicant.id_number' is not in the "
      "canonical message"]),
    ("form body with a nested field", REST, [E(SUBMIT, "  success: [200, 201]\n", "  body: form\n")],
     ["submit_case.mapping.yaml:9: request.applicant: a form body (http.body: form) is flat: expected a {from: ...} "
      "or {value: ...} rule holding a single value, not a group, list or object"]),
    ("JSON body where the OpenAPI operation takes a form", REST, [E("openapi.yaml", JSON_APPLICATION, FORM_APPLICATION)],
     ["submit_case.mapping.yaml:6: request: POST /api/v2/applications takes no JSON body in openapi.yaml; "
      "remove request"]),
    ("form field the OpenAPI form does not declare", REST,
     [E("openapi.yaml", JSON_APPLICATION, FORM_APPLICATION), E(SUBMIT, "", None), E(SUBMIT, "", FLAT_FORM)],
     [f"submit_case.mapping.yaml:5: request: required '{field}' of the request body of POST /api/v2/applications "
      "in openapi.yaml has no rule" for field in ("applicant", "bizType")]  # the form's schema is checked
     + ["submit_case.mapping.yaml:6: request.bizTyp: 'bizTyp' is not in the request body of POST /api/v2/applications "
        "in openapi.yaml"]),
    ("a form field the signing recipe no longer fills", ASSISTANCE, [E(D, "nonce: {body: nonce_str}", "nonce: {header: X-Nonce}")],
     [f"{mapping}.mapping.yaml:{line}: request: required 'nonce_str' of the request body of POST /shjz/open/v1/{path} "
      "in openapi.yaml has no rule"
      for mapping, line, path in (("cancel_case", 7, "cancel"), ("query_status", 9, "query"), ("submit_case", 9, "apply"))]),
    ("xslt on a rest mapping", REST, [E(STATUS, "http:\n", "xslt: transform.xsl\nhttp:\n")],
     ["query_status.mapping.yaml:4: xslt: xslt is for soap bundles only"]),
    ("xslt file missing", SOAP, [E(SUBMIT, "operation: SubmitCase", "operation: SubmitCase\nxslt: transform.xsl")],
     ["submit_case.mapping.yaml:3: xslt: file 'transform.xsl' not found in the bundle"]),
]  # fmt: skip


@pytest.mark.parametrize(("source", "edits", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_bundles_are_refused_with_exact_problems(
    tmp_path: Path, source: Path, edits: list[Edit], expected: list[str]
) -> None:
    bundle = broken(tmp_path, source, *edits)
    assert [str(p) for p in validate_bundle(bundle)] == expected


def test_a_sector_time_read_through_a_chain_ending_in_its_zone_validates(tmp_path: Path) -> None:
    chained = "convert: [str, compact_shanghai_to_iso_utc]"  # the zone-declaring converter last: sound
    bundle = broken(tmp_path, SOAP, E(STATUS, "convert: compact_shanghai_to_iso_utc", chained))
    assert validate_bundle(bundle) == []


CERTIFICATE = """operation: GetCertificate
request: {ref: {from: sector_ref}}
response:
  fields:
    name: {from: zzmc}
    number: {from: zzbh}
    valid_until: {from: yxqz%s}
"""


@pytest.mark.parametrize(("convert", "expected"), [
    ("", ["certificate.mapping.yaml:7: response.fields.valid_until: 'valid_until' is a date (yyyy-MM-dd): read it "
          "with a converter that declares the sector's zone, last in `convert` and without a code table (date_iso, "
          "compact_date_to_iso); a time is never guessed"]),
    (", convert: compact_date_to_iso", []),
    (", convert: [epoch_ms_to_iso_utc, date_iso]", []),  # an instant's Beijing date
])  # fmt: skip
def test_a_certificate_validity_is_a_date_read_through_a_date_converter(
    tmp_path: Path, convert: str, expected: list[str]
) -> None:
    path = tmp_path / "certificate.mapping.yaml"
    path.write_text(CERTIFICATE % convert, encoding="utf-8")
    mf, problems = load_mapping(path)
    assert mf is not None and problems == []
    tree = canonical.message_tree("fetch_certificate")
    expectations = Expectations("fetch_certificate", Shape.from_data(tree), canonical.result_spec("fetch_certificate"))
    assert [str(p) for p in check_canonical(mf, expectations)] == expected


@pytest.mark.parametrize("bundle", sorted(default_bundles_dir().glob("*/bundle.yaml")), ids=lambda p: p.parent.name)
def test_every_shipped_bundle_declares_its_sectors_time_zones(bundle: Path) -> None:
    assert [str(p) for p in validate_bundle(bundle.parent)] == []


def test_load_bundle_raises_every_descriptor_problem(tmp_path: Path) -> None:
    bundle = broken(tmp_path, SOAP, E(D, "kind: soap", "kind: grpc"), E(D, "sector: social_security", "sector: X"))
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle)
    assert str(caught.value) == (
        "bundle.yaml:4: sector: 'X' is not a sector name ([a-z][a-z0-9_]{1,40})\n"
        "bundle.yaml:8: kind: unknown adapter kind 'grpc' (known: soap, rest, ferry)"
    )
    assert isinstance(caught.value, ValueError) and len(caught.value.problems) == 2


def test_a_literal_secret_is_never_repeated(tmp_path: Path) -> None:
    bundle = broken(tmp_path, REST, E(D, CLIENT_SECRET, "client_secret: hunter2"))
    assert "hunter2" not in "\n".join(map(str, validate_bundle(bundle)))
    bundle = broken(tmp_path / "b", REST, E(D, "test: http://127.0.0.1:8802", "test: http://gw:hunter2@127.0.0.1:8802"))
    assert "hunter2" not in "\n".join(map(str, validate_bundle(bundle)))


def test_a_secret_sealed_in_the_certificate_store_is_a_valid_reference(tmp_path: Path) -> None:
    bundle = broken(tmp_path, REST, E(D, CLIENT_SECRET, "client_secret: {secret: vault:gjj-client-secret}"))
    assert validate_bundle(bundle) == []
    bundle = broken(tmp_path / "b", REST, E(D, CLIENT_SECRET, "client_secret: {secret: vault:has space}"))
    assert [str(p) for p in validate_bundle(bundle)] == [
        "bundle.yaml:31: auth.client_secret.secret: not a secret reference: write env:NAME, file:/absolute/path "
        "or vault:NAME"]


def test_a_wsdl_cannot_read_files_outside_its_bundle(tmp_path: Path) -> None:
    (tmp_path / "outside.xsd").write_text('<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema"/>')
    local_import = NETWORK_IMPORT.replace("http://example.com/o.xsd", "../outside.xsd")
    bundle = broken(tmp_path, SOAP, E("service.wsdl", SCHEMA_TAG, SCHEMA_TAG + local_import))
    assert [str(p) for p in validate_bundle(bundle)] == [
        f"bundle.yaml:9: service_description: service.wsdl: refers to {tmp_path / 'outside.xsd'}: every WSDL and XSD "
        "file must be inside the bundle"
    ]


def test_callback_results_need_a_callback_mapping(tmp_path: Path) -> None:
    auth = "{type: hmac, secret: {secret: env:YIWANG_SECRET_CB}, max_skew_s: 300}"
    callback = f"results:\n  mode: callback\n  callback_auth: {auth}\n"
    bundle = broken(tmp_path, SOAP, E(D, "results:\n  mode: polling\n  interval_ms: 1000\n", callback))
    assert [str(p) for p in validate_bundle(bundle)] == [
        "bundle.yaml:17: operations.callback: required when results.mode is callback"
    ]
    (bundle / "callback.mapping.yaml").write_text(CALLBACK_MAPPING, encoding="utf-8")
    descriptor = (bundle / D).read_text().replace("operations:\n", "operations:\n  callback: callback.mapping.yaml\n")
    (bundle / D).write_text(descriptor)
    results = load_bundle(bundle).results
    assert isinstance(results, CallbackResults) and isinstance(results.callback_auth, Recipe)
    assert results.callback_auth.secret == SecretRef("env:YIWANG_SECRET_CB")
    assert validate_bundle(bundle) == []
    (bundle / "callback.mapping.yaml").write_text(CALLBACK_MAPPING.replace("{value: ok}", "{from: sector_ref}"))
    assert [str(p) for p in validate_bundle(bundle)] == [
        "callback.mapping.yaml:4: request.ack: 'sector_ref' is not in the canonical message"
    ]


CALLBACK_MAPPING = """# The decision the sector pushes to POST /v1/callbacks/social_security; `request`: our answer.
operation: callback
request:
  ack: {value: ok}
code_tables:
  jg: {TY: approved, BTY: denied}
response:
  fields:
    sector_ref: {from: YWH}
    status: {from: JG, code_table: jg}
    opinion: {from: YJ, optional: true}
"""


def test_bundle_code_tables_are_shared_by_its_mappings(tmp_path: Path) -> None:
    bundle = broken(tmp_path, REST, E("code_tables.yaml", "priority:", "prio:"))
    assert [str(p) for p in validate_bundle(bundle)] == [
        "submit_case.mapping.yaml:20: request.priority: unknown code table 'priority'"
    ]


# ------------------------------------------------------------------ keys written twice (issue 14)


def _openapi_as_json(tmp_path: Path, twice: tuple[str, str]) -> Path:
    """The REST bundle with its OpenAPI document as JSON (indented: one key a line), with `twice[0]`'s
    line followed by `twice[1]`."""
    bundle = broken(tmp_path, REST, E(D, "service_description: openapi.yaml", "service_description: openapi.json"))
    text = json.dumps(load_yaml((REST / "openapi.yaml").read_text(encoding="utf-8"))[0], indent=2, ensure_ascii=False)
    once, again = twice
    assert text.count(once) == 1
    (bundle / "openapi.json").write_text(text.replace(once, once + again), encoding="utf-8")
    (bundle / "openapi.yaml").unlink()
    return bundle


def test_a_json_openapi_document_naming_a_key_twice_is_refused_with_file_and_line(tmp_path: Path) -> None:
    bundle = _openapi_as_json(tmp_path, ('"openapi": "3.0.3",', '\n  "openapi": "3.1.0",'))
    assert [str(p) for p in validate_bundle(bundle)] == ["openapi.json:3: duplicate key 'openapi'"]


def test_a_json_openapi_document_written_once_is_clean(tmp_path: Path) -> None:
    assert [str(p) for p in validate_bundle(_openapi_as_json(tmp_path, ('"openapi": "3.0.3",', "")))] == []


def test_a_yaml_openapi_document_naming_a_key_twice_names_its_own_file_and_line(tmp_path: Path) -> None:
    bundle = broken(tmp_path, REST, E("openapi.yaml", "openapi: 3.0.3\n", "openapi: 3.0.3\nopenapi: 3.1.0\n"))
    assert [str(p) for p in validate_bundle(bundle)] == ["openapi.yaml:2: duplicate key 'openapi'"]


@pytest.mark.parametrize(("table", "line"), [
    ('priority: {"true": GREEN, "false": NORMAL}\nsex: {1: 男, 01: 女}\n', 3),
    ('priority: {"true": GREEN, "false": NORMAL}\nflag:\n  yes: Y\n  true: T\n', 5),
], ids=["01-and-1", "yes-and-true"])
def test_code_table_keys_that_load_as_one_are_refused_with_their_line(tmp_path: Path, table: str, line: int) -> None:
    bundle = broken(tmp_path, REST, E("code_tables.yaml", 'priority: {"true": GREEN, "false": NORMAL}\n', table))
    problems = [str(p) for p in validate_bundle(bundle)]
    assert len(problems) == 1 and problems[0].startswith(f"code_tables.yaml:{line}: duplicate key"), problems


# ------------------------------------------------------------------ line numbers


def test_positions_name_the_line_of_a_dotted_field() -> None:
    doc, positions = load_yaml("a: 1\nb:\n  c:\n    - x\n    - y: 2\n")
    assert doc == {"a": 1, "b": {"c": ["x", {"y": 2}]}}
    assert [positions.line(p) for p in (["a"], ["b", "c"], ["b", "c", 1, "y"], ["b", "nope"])] == [1, 3, 5, 2]


def test_a_yaml_bomb_is_refused_before_it_expands() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    with pytest.raises(YamlProblem, match="aliases"):
        load_yaml(bomb)


# ------------------------------------------------------------------ unpacking


def zipped(entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def bundle_entries(prefix: str = "") -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    return [(prefix + p.name, p.read_bytes()) for p in sorted(SOAP.iterdir())]


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip tools mark a symbolic link
    info.create_system = 3  # unix
    return info, target.encode()


def test_unpacks_a_zip_of_a_bundle_folder_and_it_validates(tmp_path: Path) -> None:
    root = unpack_bundle(zipped(bundle_entries("social_security_v2/")), tmp_path / "incoming")
    assert root == tmp_path / "incoming" / "social_security_v2"
    assert validate_bundle(root) == []
    flat = tmp_path / "flat.zip"
    flat.write_bytes(zipped(bundle_entries()))
    assert unpack_bundle(flat, tmp_path / "flat") == tmp_path / "flat"


LEAVES = "path leaves the bundle (or has empty, '.' or '..' parts)"
ATTACKS: list[tuple[str, list[Any], dict[str, int], str]] = [
    ("zip slip", [("bundle.yaml", b"x"), ("../x", b"owned")], {}, f"bundle.zip: ../x: {LEAVES}"),
    ("nested zip slip", [("a/../../x", b"owned")], {}, f"bundle.zip: a/../../x: {LEAVES}"),
    ("absolute path", [("/tmp/x", b"owned")], {}, "bundle.zip: /tmp/x: absolute path"),
    ("drive letter", [("C:/x", b"owned")], {}, "bundle.zip: C:/x: absolute path"),
    ("backslash", [("..\\x", b"owned")], {}, "bundle.zip: ..\\x: backslashes and NUL are not allowed in entry names"),
    ("symlink entry", [("bundle.yaml", b"x"), symlink("service.wsdl", "/etc/passwd")], {},
     "bundle.zip: service.wsdl: symbolic links are not allowed"),
    ("duplicate names", [("bundle.yaml", b"x"), ("Bundle.yaml", b"y")], {}, "bundle.zip: Bundle.yaml: duplicate entry"),
    ("zip bomb by ratio", [("bundle.yaml", b"x"), ("service.wsdl", b"\0" * (4 * 1024 * 1024))], {},
     "bundle.zip: service.wsdl: compressed more than 200:1 (a zip bomb?)"),
    ("oversize", [("bundle.yaml", b"x"), ("big.bin", bytes(range(256)) * 8192)], {"max_bytes": 1024 * 1024},
     "bundle.zip: big.bin: the archive unpacks to more than 1048576 bytes"),
    ("too many files", [(f"f{i}.yaml", b"x") for i in range(201)], {},
     "bundle.zip: 201 entries, more than the 200 allowed"),
    ("no descriptor", [("service.wsdl", b"x")], {}, "bundle.zip: no bundle.yaml at the top of the archive"),
]  # fmt: skip


@pytest.mark.parametrize(("entries", "limits", "expected"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_unpacking_attacks_are_refused_leaving_nothing(
    tmp_path: Path, entries: list[Any], limits: dict[str, int], expected: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(BundleError) as caught:
        unpack_bundle(zipped(entries), work / "incoming", **limits)
    assert str(caught.value) == expected
    assert list(work.iterdir()) == [] and list(tmp_path.iterdir()) == [work]


def test_a_lying_size_header_is_caught_while_extracting(tmp_path: Path) -> None:
    data = bytearray(zipped([("bundle.yaml", b"x"), ("service.wsdl", b"a" * 5000)], zipfile.ZIP_STORED))
    # Shrink the declared size of service.wsdl in the central directory (as a bomb would, to pass the checks).
    entry = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, entry + 24, 10)
    # zipfile stops at the declared size, so the rest is never inflated, and the checksum then fails.
    with pytest.raises(BundleError) as caught:
        unpack_bundle(bytes(data), tmp_path / "incoming")
    assert str(caught.value) == "bundle.zip: not a usable zip archive: Bad CRC-32 for file 'service.wsdl'"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_destination_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    with pytest.raises(BundleError, match="already exists"):
        unpack_bundle(zipped(bundle_entries()), tmp_path / "incoming")


# ------------------------------------------------------------------ xslt

DOCUMENT_READER = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><out><xsl:copy-of select="document('file:///etc/passwd')"/></out></xsl:template>
</xsl:stylesheet>"""

RENAMER = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="http://hrss.sim.yiwang.local/case/v1">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
  <xsl:template match="c:bdsj"/>
  <xsl:template match="soap-env:Header"/>
</xsl:stylesheet>"""


def test_xslt_document_calls_are_refused(tmp_path: Path) -> None:
    stylesheet = tmp_path / "steal.xsl"
    stylesheet.write_bytes(DOCUMENT_READER)
    transform = compile_xslt(stylesheet)
    with pytest.raises(XsltError, match="read rights for file:///etc/passwd denied") as caught:
        transform(etree.fromstring(b"<a/>"))
    assert "root:" not in str(caught.value) and isinstance(caught.value, MappingError)


def test_xslt_with_a_doctype_is_refused(tmp_path: Path) -> None:
    stylesheet = tmp_path / "entity.xsl"
    stylesheet.write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + RENAMER)
    with pytest.raises(XsltError, match="DOCTYPE"):
        compile_xslt(stylesheet)


# ------------------------------------------------------------------ preview


def test_preview_of_the_soap_reference_bundle() -> None:
    rendered = preview(load_bundle(SOAP), "submit_case", message())
    assert rendered["kind"] == "soap" and rendered["operation"] == "SubmitCase"
    assert rendered["endpoint"] == "http://127.0.0.1:8801/shebao/case"
    assert rendered["request"] == {
        "qqlsh": "K-1", "sxbm": "M-1", "bjbh": "C-1", "sqrxm": "张三", "zjlx": "111", "zjhm": "110101199001011234",
        "lxdh": "13800000000", "slsj": "20261124100000", "cllb": {"cl": [{"clmc": "身份证", "sfsj": "Y"}]},
        "bdsj": '{"amount":1}',
    }  # fmt: skip
    envelope = etree.fromstring(rendered["envelope"].encode())
    ns = {"s": "http://schemas.xmlsoap.org/soap/envelope/", "c": "http://hrss.sim.yiwang.local/case/v1"}
    assert envelope.findtext("s:Body/c:SubmitCaseRequest/c:sqrxm", namespaces=ns) == "张三"
    assert envelope.findtext("s:Body/c:SubmitCaseRequest/c:cllb/c:cl/c:sfsj", namespaces=ns) == "Y"


def test_preview_applies_the_mappings_xslt(tmp_path: Path) -> None:
    bundle = broken(tmp_path, SOAP, E(SUBMIT, "operation: SubmitCase", "operation: SubmitCase\nxslt: transform.xsl"))
    (bundle / "transform.xsl").write_bytes(RENAMER)
    assert validate_bundle(bundle) == []
    rendered = preview(load_bundle(bundle), "submit_case", message())
    assert "bdsj" in rendered["request"] and "bdsj" not in rendered["envelope"]
    assert "sqrxm" in rendered["envelope"]
    # What the adapter gets: the compiled mappings (the engine never sees `xslt`) and the sandboxed transforms.
    assert compile_mappings(load_bundle(bundle))["submit_case"].operation == "SubmitCase"
    assert set(stylesheets(load_bundle(bundle))) == {"submit_case"}


def test_compile_mappings_merges_bundle_code_tables_and_reports_errors(tmp_path: Path) -> None:
    compiled = compile_mappings(load_bundle(REST))
    assert set(compiled) == {"submit_case", "query_status", "cancel_case", *load_bundle(REST).queries}
    assert compiled["submit_case"].render_request(message())["priority"] == "GREEN"
    bundle = broken(tmp_path, SOAP, E(SUBMIT, "convert: datetime_compact_shanghai", "convert: nope"))
    with pytest.raises(BundleError, match=r"^submit_case.mapping.yaml:13: request.slsj: unknown converter 'nope' \(known: "):
        compile_mappings(load_bundle(bundle))


def test_preview_of_the_rest_reference_bundle_redacts_secrets() -> None:
    bundle = load_bundle(REST)
    submit = preview(bundle, "submit_case", message())
    assert (submit["method"], submit["path"], submit["query"]) == ("POST", "/api/v2/applications", {})
    assert submit["headers"] == {
        "X-Request-Id": "K-1", "Authorization": "Bearer <redacted>", "Content-Type": "application/json; charset=utf-8"
    }
    assert submit["body"]["applicant"] == {"fullName": "张三", "idCardNo": "110101199001011234", "mobile": "13800000000"}
    assert submit["body"]["priority"] == "GREEN" and submit["url"] == "http://127.0.0.1:8802/api/v2/applications"
    status = preview(bundle, "query_status", message(sector_ref="GJJ/1"))
    assert (status["method"], status["path"], status["body"]) == ("GET", "/api/v2/applications/GJJ%2F1", None)
    deposits = preview(bundle, "housing_fund_deposits", {"query": {"id_number": "110101"}}, environment="production")
    assert deposits["url"] == "https://gjj.baotou.example/api/api/v2/accounts/110101/deposits?page=1&pageSize=50"


def test_preview_says_what_does_not_fit() -> None:
    nameless = message()
    del nameless["case"]["applicant"]["name"]
    with pytest.raises(MappingError, match=r"^submit_case.mapping.yaml: request.sqrxm: case.applicant.name is missing"):
        preview(load_bundle(SOAP), "submit_case", nameless)
    with pytest.raises(KeyError, match="no mapping for 'cancel_case'"):
        preview(load_bundle(SOAP), "cancel_case", message())
