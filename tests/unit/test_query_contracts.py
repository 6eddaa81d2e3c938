"""A named query's declared parameters (`parameters:` in its mapping, adapters/queries.py): checked against the
mapping's reads at registration, and against a caller's parameters at every call."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters import canonical
from adapters.bundle import bundle_warnings, load_bundle, validate_bundle
from adapters.queries import QueryParameter, contract_problems, declared_parameters, is_id_number, parameter_errors
from adapters.registry import default_bundles_dir
from mappings.validate import Expectations, Shape, check_canonical, load_mapping

MAPPING = """\
parameters:
  id_number: {type: string, pattern: id_number, description: 身份证号}
  year: {type: integer, required: false}
http:
  method: GET
  path: /accounts/{id}
  path_params: {id: {from: query.id_number}}
  query: {year: {from: query.year, optional: true}}
response:
  fields:
    balance: {from: data.balance}
"""


def problems(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    path = tmp_path / "q.mapping.yaml"
    path.write_text(text, encoding="utf-8")
    mf, found = load_mapping(path)
    assert mf is not None and found == []
    bad, warned = contract_problems(mf)
    return [str(p) for p in bad], [str(w) for w in warned]


def test_a_contract_that_fits_its_reads_has_no_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, MAPPING) == ([], [])


def test_a_read_of_an_undeclared_parameter_is_a_problem_and_an_unread_one_a_warning(tmp_path: Path) -> None:
    text = MAPPING.replace("year: {type: integer, required: false}", "month: {type: string}")
    bad, warned = problems(tmp_path, text)
    assert bad == ["q.mapping.yaml:8: http.query.year: 'query.year' is read but not declared in parameters"]
    assert warned == ["q.mapping.yaml:3: parameters.month: declared but never read by the mapping: it is "
                      "checked, then not sent to the sector"]


def test_an_optional_parameter_the_mapping_needs_is_warned(tmp_path: Path) -> None:
    _, warned = problems(tmp_path, MAPPING.replace("{type: string, pattern: id_number,",
                                                   "{type: string, required: false, pattern: id_number,"))
    assert warned == ["q.mapping.yaml:2: parameters.id_number.required: declared optional, but a rule reading it "
                      "is not `optional`: a call without it cannot be sent"]


@pytest.mark.parametrize(("spec", "expected"), [
    ("{type: text}", "q.mapping.yaml:3: parameters.year.type: 'text' is not a type (string, integer, number, "
                     "boolean, date)"),
    ("{type: integer, pattern: '[0-9]+'}", "q.mapping.yaml:3: parameters.year.pattern: a pattern applies to a "
                                           "string parameter"),
    ("{pattern: '[0-9'}", "q.mapping.yaml:3: parameters.year.pattern: neither a named pattern (id_number) nor a "
                          "regex: unterminated character set at position 0"),
    ("{requird: true}", "q.mapping.yaml:3: parameters.year.requird: unknown key 'requird' (keys: description, enum, "
                        "max_length, pattern, required, type)"),
    ("{type: integer, enum: [a]}", "q.mapping.yaml:3: parameters.year.enum: expected a non-empty list of integer "
                                   "values"),
])
def test_a_malformed_declaration_is_a_problem_on_its_line(tmp_path: Path, spec: str, expected: str) -> None:
    bad, _ = problems(tmp_path, MAPPING.replace("{type: integer, required: false}", spec))
    assert bad == [expected]


def test_a_mapping_without_a_contract_is_warned(tmp_path: Path) -> None:
    text = "\n".join(MAPPING.splitlines()[3:]) + "\n"
    assert problems(tmp_path, text) == ([], [
        "q.mapping.yaml:1: declares no parameters: callers' parameters are not checked before the sector is "
        "called (the mapping reads query.id_number, query.year)"])


DECLARED = declared_parameters({"parameters": {
    "id_number": {"pattern": "id_number"},
    "year": {"type": "integer", "required": False},
    "from": {"type": "date", "required": False},
    "kind": {"enum": ["a", "b"], "required": False, "max_length": 1},
    "code": {"pattern": "[A-Z]{2}", "max_length": 2, "required": False},
    "all": {"type": "boolean", "required": False},
    "amount": {"type": "number", "required": False},
}}) or ()


@pytest.mark.parametrize(("params", "errors"), [
    ({"id_number": "150203198503120039"}, []),
    ({"id_number": "15020319850312003x", "year": 2026, "from": "2026-01-31", "kind": "a", "code": "AB",
      "all": False, "amount": 1.5}, [("id_number", "不是有效的居民身份证号码（GB 11643，含校验码）")]),
    ({}, [("id_number", "必填参数缺失")]),
    ({"id_number": None}, [("id_number", "必填参数缺失")]),
    ({"id_number": "150203198503120039", "year": "2026"}, [("year", "应为整数")]),
    ({"id_number": "150203198503120039", "year": True}, [("year", "应为整数")]),
    ({"id_number": "150203198503120039", "from": "2026-02-30"}, [("from", "应为日期（YYYY-MM-DD）")]),
    ({"id_number": "150203198503120039", "kind": "c"}, [("kind", "取值须为 a、b 之一")]),
    ({"id_number": "150203198503120039", "code": "ABC"}, [("code", "长度超过 2 个字符")]),
    ({"id_number": "150203198503120039", "code": "ab"}, [("code", "格式不符合 [A-Z]{2}")]),
    ({"id_number": "150203198503120039", "all": "yes"}, [("all", "应为布尔值（true 或 false）")]),
    ({"id_number": "150203198503120039", "amount": "1"}, [("amount", "应为数值")]),
    ({"id_number": "150203198503120039", "name": "王"}, [("name", "未声明的参数（可用参数：id_number、year、from、kind、"
                                                                  "code、all、amount）")]),
])
def test_a_callers_parameters_against_the_contract(params: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    assert [(e["name"], e["msg"]) for e in parameter_errors(DECLARED, params)] == errors


def test_the_named_id_number_pattern_checks_the_check_character() -> None:
    assert is_id_number("150203198503120039") and is_id_number("15020419901120152x")
    assert not is_id_number("150203198503120038") and not is_id_number("１50203198503120039")
    assert isinstance(DECLARED[0], QueryParameter) and DECLARED[0].regex == "^[0-9]{17}[0-9Xx]$"


def test_a_query_mapping_may_send_the_request_id(tmp_path: Path) -> None:
    text = MAPPING.replace("  query: {year:", "  headers: {X-Req: {from: request_id}}\n  query: {year:")
    path = tmp_path / "q.mapping.yaml"
    path.write_text(text, encoding="utf-8")
    mf, _ = load_mapping(path)
    assert mf is not None
    expected = Expectations("q", Shape.from_data(canonical.message_tree("q", query=True)),
                            canonical.result_spec("q", query=True), True)
    assert check_canonical(mf, expected) == []
    assert mf.compiled.render_http({"query": {"id_number": "x"}, "request_id": "r-1"}).headers == {"X-Req": "r-1"}


def test_registration_warns_of_a_query_declaring_nothing_and_the_shipped_ones_declare(tmp_path: Path) -> None:
    folder = tmp_path / "housing_fund"
    shutil.copytree(default_bundles_dir() / "housing_fund", folder)
    mapping = folder / "housing_fund_balance.mapping.yaml"
    mapping.write_text(re.sub(r"(?m)^parameters:.*\n(?:  .*\n)*", "", mapping.read_text(encoding="utf-8")),
                       encoding="utf-8")
    assert validate_bundle(folder) == []  # compatible: still valid
    assert [str(w) for w in bundle_warnings(load_bundle(folder))] == [
        "housing_fund_balance.mapping.yaml:3: declares no parameters: callers' parameters are not checked before "
        "the sector is called (the mapping reads query.id_number)"]
    for bundle in sorted(default_bundles_dir().glob("*/bundle.yaml")):
        assert bundle_warnings(load_bundle(bundle.parent)) == [], bundle.parent.name
