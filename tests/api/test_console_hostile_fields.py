"""Script in every field a sector, the hall or a person fills, shown by every page of the console: escaped.

A case is submitted with markup in the applicant's name and address and a form field (a material's name
must be one the matter lists: the hall cannot choose it); the
sector (a scripted social-security system) answers "busy" in its own words — markup again, inside CDATA so
its raw answer holds it unescaped — until the message is a dead letter whose error text and last answer carry
it; the adapter's version is one a bundle named with markup; the operator's identity has a hostile name, and
types hostile reasons to replay, discard, correct and run a bulk replay. Then every GET route of the console
(enumerated from the app, path parameters filled from what was made; none skipped) is fetched as that
operator, with hostile filter values besides, and the plan pages are posted: no answer holds the text raw,
an on… attribute, a script not our own, or a link that leaves the console — and the pages that show those
fields show their escaped text. Every answer under /console (pages, partials, errors, redirects, static files)
carries the Content-Security-Policy that would stop what escaping missed. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from adapters.registry import default_bundles_dir
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.http.openapi import served_routes
from gateway.observability.logs import configure_logging
from gateway.sectors.bundle_records import pack_folder
from ops.dead_letters import DeadLetterFilter
from tests.support.cases import outbox_statuses, submit
from tests.support.console import PAYLOAD, defects, key_of, sign_in
from tests.support.gateways import PARALLEL_APPLICATION, drain
from tests.support.hostile import CASE_NS, HostileSector, envelope

LETTERS, RUNS = "/console/dead-letters", "/console/replays"
FIELDS = ("name", "address", "form", "sector", "version", "title", "operator", "replay", "discard", "correction",
          "run")


def hostile(name: str) -> str:
    """Markup naming the field it was put in (so a page showing it proves that field was rendered): attribute
    breakers and an element with a handler, 40 characters at most (a dead letter keeps a bundle's version in
    40); the full PAYLOAD goes where a field takes it."""
    return f"\"'><svg onload=alert('{name}')>"


def shown(name: str) -> str:
    """How a page shows the field's text: escaped (JSON text keeps this part as it is)."""
    return str(escape(f"<svg onload=alert('{name}')>"))


RAW = (PAYLOAD, *(hostile(name) for name in (*FIELDS, "filter", "path")))


def busy(words: str) -> bytes:
    """Social security's SubmitCase answer 9001 (busy: retried under the policy, then a dead letter) in the
    sector's own words, as CDATA: the raw answer kept with the letter holds them unescaped."""
    return envelope(f'<c:SubmitCaseResponse xmlns:c="{CASE_NS}"><fhdm>9001</fhdm>'
                    f"<fhxx><![CDATA[{words}]]></fhxx></c:SubmitCaseResponse>")


def hostile_bundle(gateway: Gateway, tmp_path: Path) -> None:
    """The shipped social-security bundle registered and activated under a version and title named with markup
    (both free text in a bundle), asking once per delivery and never opening its circuit: every failure is a
    dead letter at once."""
    folder = tmp_path / "social_security"
    shutil.copytree(default_bundles_dir() / "social_security", folder)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    for key, value in (("version", _quoted(hostile("version"))), ("title", _quoted(hostile("title"))),
                       ("retry", "{attempts: 1, initial_ms: 100, max_ms: 100}"),
                       ("circuit_breaker", "{failure_threshold: 1000, reset_after_ms: 30000}")):
        text = re.sub(rf"(?m)^{key}: .*$", f"{key}: {value}".replace("\\", "\\\\"), text, count=1)
    descriptor.write_text(text, encoding="utf-8")
    gateway.bundles.register(pack_folder(folder), "test")
    gateway.bundles.activate("social_security", hostile("version"), "test", force=True)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Made:
    """What the hostile scene made: the console's client signed in as the hostile operator, and the ids."""

    gateway: Gateway
    app: Any
    client: TestClient
    csrf: str
    letters: list[int] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)


@pytest.fixture
def sector() -> Iterator[HostileSector]:
    scripted = HostileSector()
    scripted.answer = (200, "text/xml; charset=utf-8", busy(hostile("sector") + PAYLOAD))
    yield scripted
    scripted.close()


@pytest.fixture
def made(make_gateway: Callable[..., Gateway], sector: HostileSector, tmp_path: Path) -> Made:
    gateway = make_gateway(sector_endpoints={"social_security": sector.url}, retry_attempts=1)
    hostile_bundle(gateway, tmp_path)
    app = create_app(gateway)
    client = TestClient(app)
    scene = Made(gateway, app, client, sign_in(client, key_of(gateway, Role.OPERATOR, Role.WINDOW,
                                                          name=hostile("operator"))))
    application = {**PARALLEL_APPLICATION,  # its form has a free-text field (the employer's name)
                   "applicant": {**PARALLEL_APPLICATION["applicant"], "name": hostile("name"),
                                 "address": hostile("address") + PAYLOAD},
                   "form": {**PARALLEL_APPLICATION["form"], "employer_name": hostile("form")}}
    scene.cases = [submit(gateway, application) for _ in range(3)]
    dead = _settle(scene)
    first, corrected, bulk = dead
    scene.client.post(f"{LETTERS}/{first}/replay", data={"csrf": scene.csrf, "reason": hostile("replay")})
    scene.client.post(f"{LETTERS}/{corrected}/correction",
                      data={"csrf": scene.csrf, "reason": hostile("correction"), "address": PAYLOAD})
    answer = scene.client.post(RUNS, data={"csrf": scene.csrf, "which": "selected", "ids": [bulk],
                                           "reason": hostile("run")}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    scene.runs = [int(answer.headers["location"].rsplit("/", 1)[1])]
    again = [x for x in _settle(scene) if x not in dead]
    assert again, "the replayed letters failed again at the busy sector"
    discarded = scene.client.post(f"{LETTERS}/{again[0]}/discard",
                                  data={"csrf": scene.csrf, "reason": hostile("discard"), "case_outcome": "void"})
    assert discarded.status_code == 200, discarded.text
    scene.letters = [x.id for x in gateway.dead_letters.page(DeadLetterFilter(status=None), limit=100).items]
    return scene


def _settle(scene: Made) -> list[int]:
    """Dispatch until nothing is due; the dead letters waiting, oldest first."""
    gateway = scene.gateway
    drain(gateway, lambda: all(status in ("dead", "done", "delivered") for _, status in outbox_statuses(gateway)))
    return sorted(x.id for x in gateway.dead_letters.page(DeadLetterFilter(), limit=100).items)


def console_gets(app: Any) -> list[str]:
    """Every GET route of the console, as the app has them (pages added later included)."""
    return sorted({route.path for route in served_routes(app) if route.path.startswith("/console")
                   and "GET" in (getattr(route, "methods", None) or ())})


def filled(path: str, made: Made) -> list[str]:
    """The route's path with every path parameter filled from what was made, and with hostile text besides (a
    page naming what it did not find); an unknown parameter fails (say here what to fill it with) rather than
    the route being skipped."""
    made_here: dict[str, list[Any]] = {"dead_letter_id": made.letters, "run_id": made.runs, "case_no": made.cases,
                 "sector": ["social_security"], "name": [], "channel": []}
    paths = [path]
    for name in re.findall(r"\{(\w+)(?::\w+)?\}", path):
        assert name in made_here, f"{path}: no value for the path parameter {name!r}; add one to filled()"
        values = [str(x) for x in made_here[name]] + ([] if name.endswith("_id") else
                                                      [quote(hostile("path"), safe="")])
        paths = [p.replace(f"{{{name}}}", value) for p in paths for value in values]
    return paths


def test_every_console_page_shows_hostile_fields_escaped(made: Made) -> None:
    # The operator (and window) made everything; the other roles of the console see their own pages.
    clients = [made.client, *(_signed_in(made, role) for role in (Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN,
                                                                    Role.AUDITOR))]
    client, visited, pages = made.client, [], dict[str, list[str]]()
    typed_in = {"sector": hostile("filter"), "case_no": hostile("filter")}  # within the fields' lengths
    refused = {name: PAYLOAD for name in ("sector", "version", "matter", "case_no", "error_class")}  # a 422 page
    for route in console_gets(made.app):
        for path in filled(route, made):
            asked = [(made.client, params, headers) for params, headers in [
                ({}, {}), ({"unmasked": "1"}, {}), (typed_in, {}), (refused, {}), ({"next": PAYLOAD}, {}),
                ({}, {"HX-Request": "true"})]] + [(other, {}, {}) for other in clients[1:]]
            for asking, params, headers in asked:
                answer = asking.get(path, params=params, headers=headers)
                visited.append(f"{route} {path[:60]} {params and '?…'} {headers and 'htmx'} {answer.status_code}")
                assert answer.status_code < 500, (path, answer.text)
                if not answer.headers["content-type"].startswith("text/html"):  # the CSV export: data, not a page
                    assert answer.headers["content-type"].startswith("text/csv"), (path, answer.headers)
                    assert answer.headers["x-content-type-options"] == "nosniff"
                    continue
                assert defects(answer.text, *RAW) == [], (path, params, answer.text)
                pages.setdefault(route, []).append(answer.text)
    print("\nvisited:\n" + "\n".join(visited))
    assert set(pages) == set(console_gets(made.app))
    # The plan pages (POST) show the letters too.
    for plan in (f"{RUNS}/plan", "/console/discards/plan"):
        answer = client.post(plan, data={"csrf": made.csrf, "which": "all", "status": "dead"})
        assert answer.status_code == 200 and defects(answer.text, *RAW) == [], answer.text
        pages.setdefault(plan, []).append(answer.text)

    def on(route: str) -> str:
        return "\n".join(pages[route])

    letters_page = on(f"{LETTERS}/{{dead_letter_id}}")
    for name in ("name", "address", "form", "sector", "version", "replay", "discard", "correction"):
        assert shown(name) in letters_page, name
    assert shown("filter") in on(LETTERS)  # typed into the filter, shown back in its fields
    for route in (LETTERS, f"{RUNS}/plan", "/console/discards/plan"):
        assert shown("sector") in on(route) and shown("version") in on(route), route
    journey = on("/console/cases/{case_no}")  # every event, message, attempt and dead letter of a case
    for name in ("name", "address", "form", "sector", "version", "replay", "discard", "correction", "run"):
        assert shown(name) in journey, name
    assert shown("sector") in on(f"{LETTERS}/causes")  # a cause is the sector's words, normalised
    for route in ("/console/adapters", "/console/adapters/{sector}"):  # a bundle's own words
        assert shown("version") in on(route), route
    for route in (RUNS, f"{RUNS}/{{run_id}}"):
        assert shown("run") in on(route), route
    for route in console_gets(made.app):
        if route != "/console/sign-in":  # the sign-in page: nobody is signed in there yet
            assert shown("operator") in on(route), route


def test_every_console_answer_carries_the_content_security_policy(made: Made, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    client, anonymous = made.client, TestClient(made.app)
    letter, run = made.letters[0], made.runs[0]
    answers = {
        "page": client.get(LETTERS), "letter": client.get(f"{LETTERS}/{letter}"),
        "partial": client.get(f"{RUNS}/{run}", headers={"HX-Request": "true"}),
        "not found": client.get(f"{LETTERS}/999999"), "bad input": client.get(LETTERS, params={"matter": "x"}),
        "no such page": client.get("/console/nowhere"), "method": client.delete(LETTERS),
        "csrf refused": client.post(f"{LETTERS}/{letter}/replay", data={"reason": "x"}),
        "htmx problem": client.post(f"{LETTERS}/{letter}/replay", data={"reason": "x"}, headers={"HX-Request": "true"}),
        "redirect": anonymous.get(LETTERS, follow_redirects=False),
        "sign-in": anonymous.get("/console/sign-in"), "session ended": anonymous.post(f"{RUNS}/plan"),
        "stylesheet": client.get("/console/static/console.css"), "script": client.get("/console/static/console.js"),
        "no such file": client.get("/console/static/nothing.js"),
        "post redirect": client.post(f"{LETTERS}/{letter}/replay", data={"csrf": made.csrf, "reason": "x"},
                                     follow_redirects=False),
    }
    # An unexpected error (a fault injected into the desk): its page leaves past the app's middleware. Logged as
    # JSON (a plain traceback; tests/conftest.py restores the logging after the test), not rendered for seconds.
    configure_logging("info", "json")
    monkeypatch.setattr(type(made.app.state.dead_letter_desk), "page", _broken)
    answers["server error"] = TestClient(made.app, raise_server_exceptions=False,
                                         cookies=dict(client.cookies)).get(LETTERS)
    assert answers["server error"].status_code == 500
    assert answers["redirect"].status_code == 303 and answers["partial"].status_code == 200
    for what, answer in answers.items():
        assert len(answer.headers.get_list("content-security-policy")) == 1, (what, answer.headers)
        policy = answer.headers.get("content-security-policy", "")
        directives = dict((part.split(" ", 1) + [""])[:2] for part in (p.strip() for p in policy.split(";")) if part)
        assert directives.get("script-src") == "'self'", (what, answer.status_code, policy)
        assert directives.get("default-src") == "'none'" and directives.get("style-src") == "'self'", (what, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (what, policy)
        assert answer.headers.get("x-content-type-options") == "nosniff", what


def _signed_in(made: Made, role: Role) -> TestClient:
    client = TestClient(made.app)
    sign_in(client, key_of(made.gateway, role, name=hostile("operator")))
    return client


def _broken(*_: Any, **__: Any) -> Any:
    raise RuntimeError("a fault injected into the dead-letter desk")
