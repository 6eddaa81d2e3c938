"""What a named query takes, read from its mapping (`adapters.query_parameters`): the parameters the hall's
developers find in /openapi.json for `POST /v1/queries/<name>`."""

from __future__ import annotations

from adapters import QueryParameter, query_parameters
from mappings import compile_mapping

SOAP_QUERY = {
    "operation": "QueryRecord",
    "request": {
        "zjhm": {"from": "query.id_number"},
        "xm": {"from": "query.name", "optional": True},
        "dz": {"from": "query.address.city"},
        "jl": {"for_each": "query.months", "map": {"ny": {"from": "month"}}},
        "lx": {"value": "01"},
        "bb": {"from": "query.id_number"},
    },
    "response": {"fields": {"found": {"from": "ok"}}},
}
REST_QUERY = {
    "http": {"method": "GET", "path": "/accounts/{id}", "path_params": {"id": {"from": "query.id_number"}},
             "query": {"page": {"from": "query.page", "optional": True}}},
    "response": {"fields": {"balance": {"from": "data.balance"}}},
}


def test_a_querys_parameters_are_what_its_request_reads() -> None:
    assert query_parameters(compile_mapping(SOAP_QUERY, source_name="q.mapping.yaml")) == (
        QueryParameter("address", True, "object", ("dz",)),
        QueryParameter("id_number", True, "scalar", ("zjhm", "bb")),
        QueryParameter("months", True, "list", ("jl",)),
        QueryParameter("name", False, "scalar", ("xm",)),
    )


def test_a_rest_querys_parameters_include_its_path_and_query_fields() -> None:
    found = {p.name: p for p in query_parameters(compile_mapping(REST_QUERY, source_name="q.mapping.yaml"))}
    assert found["id_number"] == QueryParameter("id_number", True, "scalar", ("path_params.id",))
    assert not found["page"].required
    assert found["id_number"].description == "送往部门字段 `path_params.id`"


def test_a_query_reading_nothing_takes_nothing() -> None:
    fixed = {"operation": "Ping", "request": {"lx": {"value": "01"}}, "response": {"fields": {"ok": {"from": "ok"}}}}
    assert query_parameters(compile_mapping(fixed, source_name="q.mapping.yaml")) == ()
