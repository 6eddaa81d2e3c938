"""Schemathesis against the gateway's own OpenAPI document (issue 5, "Hostile input"; issue 14, "No 500s").

Every operation is called with generated requests — valid and invalid — on a real gateway (SQLite, the
four shipped bundles active, their sectors' endpoints unreachable) and every answer is checked: no 5xx,
only documented status codes and content types, bodies matching the documented schema. With a key holding
every role, each operation gets schemathesis' coverage phase (boundary and invalid values of every
parameter and body field: past its bounds, of the wrong type, missing) and then 50 generated examples;
`test_every_operation_got_its_examples` checks the count. Then again with no key at all, where every
keyed operation must answer 401 before it looks at anything else (fewer generated examples: the wall is
the same for all). Derandomized, so a run is repeatable in CI (`make test`).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.bootstrap.app import build_gateway, create_app
from gateway.config import Settings
from gateway.domain.roles import DUTIES, Role
from gateway.http.problems import PROBLEM_MEDIA_TYPE
from tests.support.gateways import SECTOR_SECRETS, SOCIAL_SECURITY_AGENCY, activate_shipped
from tests.support.routes import admitted_roles, v1_routes

# Generated per operation that takes any input (the coverage phase adds its own). 25 keeps `make test` within its
# minutes now that 75 operations are documented; a deeper hunt: YIWANG_FUZZ_EXAMPLES=200 make test.
EXAMPLES_PER_OPERATION = int(os.environ.get("YIWANG_FUZZ_EXAMPLES", "25"))
EXAMPLES_WITHOUT_A_KEY = 10
SECTORS = ("social_security", "housing_fund", "civil_affairs", "public_security")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
# No shrinking: a failure is reported as found, so a failing run takes no longer than a passing one.
FUZZ = settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
CALLS: Counter[str] = Counter()  # requests made per operation ("POST /v1/cases") with a key


class Target:
    """One gateway for the whole module, and a key holding every role."""

    def __init__(self, var: Path) -> None:
        settings_ = Settings(var_dir=var, database_url=f"sqlite:///{var / 'yiwang.db'}", dispatch_in_process=False,
                             registry_refresh_ms=0, retry_attempts=1, retry_initial_ms=1, retry_max_ms=1)
        # Every sector points at a port nobody listens on: a query is refused at once (503), never hangs.
        self.gateway = build_gateway(replace(settings_, sector_endpoints={s: "http://127.0.0.1:9" for s in SECTORS}))
        activate_shipped(self.gateway.bundles, *SECTORS)
        self.app: FastAPI = create_app(self.gateway)
        self.keys = [self._key(duty) for duty in sorted(set(DUTIES.values()))]
        self.admitted = {(method, route.path): frozenset().union(*admitted_roles(route.dependant))
                         for route in v1_routes(self.app) for method in route.methods}

    def _key(self, duty: str) -> tuple[frozenset[Role], dict[str, str]]:
        """Every business role and the roles of one duty: separation of duties allows no more in one key."""
        roles = frozenset(r for r in Role if DUTIES.get(r, duty) == duty)
        _, key = self.gateway.keys.issue(f"fuzz: {duty}", roles, department=SOCIAL_SECURITY_AGENCY,
                                         sector="social_security")
        return roles, {"Authorization": f"Bearer {key}"}

    def keyed(self, case: schemathesis.Case) -> bool:
        return bool(self.admitted.get((case.operation.method.upper(), case.path)))

    def headers_for(self, case: schemathesis.Case) -> dict[str, str]:
        """The key admitted by the case's operation (any key where it takes none)."""
        admitted = self.admitted.get((case.operation.method.upper(), case.path), frozenset())
        return next((headers for roles, headers in self.keys if roles & admitted), self.keys[0][1])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in SECTOR_SECRETS.items():
            env.setenv(name, value)
        built = Target(tmp_path_factory.mktemp("fuzz") / "var")
        yield built
    built.gateway.close()


def _document() -> dict[str, Any]:
    """The OpenAPI document, read at collection time from a throwaway gateway: parametrizing needs the
    operations before any fixture runs (schemathesis' fixture-loaded schemas do not work under pytest 9)."""
    with tempfile.TemporaryDirectory() as var:
        gateway = build_gateway(Settings(var_dir=Path(var), database_url=f"sqlite:///{var}/yiwang.db",
                                         dispatch_in_process=False))
        try:
            return create_app(gateway).openapi()
        finally:
            gateway.close()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schemathesis.serializer.alias("application/zip", "application/octet-stream")  # a bundle upload: bytes as drawn


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case: schemathesis.Case, target: Target) -> None:
    CALLS[case.operation.label] += 1
    case.call_and_validate(headers=target.headers_for(case), checks=CHECKS, app=target.app)


def test_every_operation_got_its_examples() -> None:
    """Runs after the fuzz above (pytest keeps a file's order), over the operations it ran: each one that
    takes parameters or a body had at least 50 requests; one that takes nothing at all has only a few
    requests to be sent (no parameters to vary), and had them."""
    if not CALLS:
        pytest.skip("the fuzz did not run (deselected)")
    short = {label: calls for label, calls in CALLS.items()
             if calls < (EXAMPLES_PER_OPERATION if _takes_input(label) else 1)}
    assert short == {}


def _takes_input(label: str) -> bool:
    method, path = label.split(" ", 1)
    operation = DOCUMENT["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES_WITHOUT_A_KEY)
def test_without_a_key_every_keyed_operation_answers_401(case: schemathesis.Case, target: Target) -> None:
    """Operations that take no key (health, metrics, signed callbacks and links) get the checks alone."""
    response = case.call_and_validate(checks=CHECKS, app=target.app)
    if case.method.upper() != case.operation.method.upper():
        # Schemathesis also tries methods the path does not serve (TRACE, ...): 405 for everyone.
        assert response.status_code == 405, f"{case.method} {case.formatted_path}: {response.status_code}"
    elif target.keyed(case):
        assert response.status_code == 401, f"{case.method} {case.formatted_path}: {response.status_code}"
        assert response.headers["content-type"][0].startswith(PROBLEM_MEDIA_TYPE)
