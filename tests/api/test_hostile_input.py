"""Hostile input from both sides (issue 5): the one place that walks the whole list.

Hall side: bodies nested too deep or not objects, oversized bodies (declared and streamed), malformed
multipart, sector bundles carrying XXE, entity bombs, external schema imports and XSLT that reaches out,
hostile YAML in bundles and catalogue files. Sector side: a sector answering with XXE, entity bombs,
external DTDs, malformed envelopes, faults with hostile details, huge or non-XML/non-JSON answers, and
callbacks replayed, stale, forged or with hostile bodies.

Each must be refused with a clear problem (HTTP) or recorded as a classified dead letter, and change
nothing else. Two witnesses prove nothing leaked: a file holding a secret marker that every hostile
reference points at (the marker must appear in no answer, dead letter or case), and a loopback listener
every hostile URL points at (it must count no connection).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.params import Form
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adapters.auth import Recipe
from adapters.registry import default_bundles_dir
from adapters.secrets import Secret
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.http.json_bodies import JsonBodyRoute
from gateway.persistence import tables as t
from gateway.persistence.keyset import Keyset
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain
from tests.support.hostile import CASE_NS, PERSON, SOAP_ENV, HostileSector, assert_problem, envelope, submit_answer
from tests.support.routes import v1_routes

ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领: public security, answers by callback

# --------------------------------------------------------------------------------------------- witnesses


class Listener:
    """A loopback TCP port that counts every connection made to it (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class Witness:
    marker: str
    secret: Path  # a local file whose content is `marker`
    listener: Listener

    @property
    def file_url(self) -> str:
        return self.secret.as_uri()

    def untouched(self, *seen: Any) -> None:
        """Nothing read the secret file into what we saw, and nothing connected to the listener."""
        for thing in seen:
            assert self.marker not in (thing if isinstance(thing, str) else json.dumps(thing, default=str))
        assert self.listener.connections == 0


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[Witness]:
    marker = f"SECRET-{secrets.token_hex(8)}"
    secret = tmp_path / "secret.txt"
    secret.write_text(marker)
    listener = Listener()
    yield Witness(marker, secret, listener)
    listener.close()


def xxe_file(w: Witness, root: str = "a") -> str:
    return f'<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{w.file_url}">]>'


def xxe_network(w: Witness, root: str = "a") -> str:
    return f'<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{w.listener.url}/entity">]>'


def external_dtd(w: Witness, root: str = "a") -> str:
    return f'<!DOCTYPE {root} SYSTEM "{w.listener.url}/evil.dtd">'


def parameter_entity(w: Witness, root: str = "a") -> str:
    return f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "{w.listener.url}/p.dtd"> %p;]>'


def billion_laughs(_: Witness, root: str = "a") -> str:
    levels = "".join(f'<!ENTITY xxe{i} "{f"&xxe{i - 1};" * 10}">' for i in range(1, 10))
    return f'<!DOCTYPE {root} [<!ENTITY xxe0 "lol">{levels}<!ENTITY xxe "&xxe9;">]>'


DOCTYPES: dict[str, Callable[..., str]] = {"xxe-file": xxe_file, "xxe-network": xxe_network,
                                           "external-dtd": external_dtd, "parameter-entity": parameter_entity,
                                           "billion-laughs": billion_laughs}


# Reading hostile input happens before any database is involved: those tests run on SQLite only. What is
# recorded (dead letters, callback nonces, cases) is checked on both databases.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def count(gateway: Gateway, table: Any) -> int:
    with gateway.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def headers_of(gateway: Gateway, role: Role, **scope: str) -> dict[str, str]:
    _, key = gateway.keys.issue(f"hostile {role}", [role], **scope)
    return {"Authorization": f"Bearer {key}"}


# ============================================================================================ hall side

DEEP_ARRAY = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000
NOT_OBJECTS = [b"[]", b'"text"', b"42", b"null", b"true"]


@SQLITE_ONLY
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, b'{"form": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  *NOT_OBJECTS, b'{"matter_code": NaN}', b"\xff\xfe not utf-8"],
                         ids=["deep-array", "deep-object", "deep-inside", "array", "string", "number", "null", "true",
                              "nan", "not-utf8"])
@pytest.mark.parametrize("path", ["/v1/cases", "/v1/cases/lookup", "/v1/queries/housing_fund_balance",
                                  "/v1/catalogue/drafts"])
def test_json_that_is_too_deep_or_no_object_is_a_4xx_problem_and_stores_nothing(
        make_gateway: Callable[..., Gateway], path: str, body: bytes) -> None:
    gateway = make_gateway(bundles=())
    role = Role.CATALOGUE_ADMIN if "catalogue" in path else Role.HALL_CLIENT
    with TestClient(create_app(gateway), headers=headers_of(gateway, role), raise_server_exceptions=False) as client:
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert_problem(answer, answer.status_code)
    assert count(gateway, t.cases) == 0


@SQLITE_ONLY
def test_an_anonymous_caller_hears_401_before_anything_about_its_body(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway)) as client:
        for body in (DEEP_ARRAY, b"{not json"):
            answer = client.post("/v1/cases", content=body, headers={"content-type": "application/json"})
            assert_problem(answer, 401, "not-authenticated")


@SQLITE_ONLY
def test_unknown_paths_and_methods_are_problems_too(make_gateway: Callable[..., Gateway]) -> None:
    with TestClient(create_app(make_gateway(bundles=()))) as client:
        assert_problem(client.get("/v1/no-such-thing"), 404, "not-found")
        refused = assert_problem(client.put("/healthz"), 405, "method-not-allowed")
        assert refused["status"] == 405


# --- issue 14: no 500s; bodies declared and written as JSON, or refused before anything is read -----------

LOOKUP = "/v1/cases/lookup"
A_LOOKUP = b'{"id_number": "150203198503120039"}'


@pytest.mark.parametrize(("role", "path"), [
    (Role.OPERATOR, f"/v1/messages/{2**63}"),
    (Role.OPERATOR, f"/v1/messages?cursor={Keyset('messages', (int,)).encode((2**63,))}"),
    (Role.AUDITOR, f"/v1/audit?cursor={Keyset('audit', (int,)).encode((2**63,))}"),
    (Role.OPERATOR, f"/v1/ops/dead-letters/{2**63}"),
    (Role.OPERATOR, f"/v1/ops/replays/{2**64}"),
    (Role.CATALOGUE_ADMIN, f"/v1/matters/11150203MB0E00080E4000114002000/versions/{2**63}"),
], ids=["message-2^63", "messages-after-2^63", "audit-after-2^63", "dead-letter-2^63",
        "replay-2^64", "matter-version-2^63"])
def test_ids_and_cursors_past_what_a_row_id_can_be_answer_4xx(
        make_gateway: Callable[..., Gateway], role: Role, path: str) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=headers_of(gateway, role), raise_server_exceptions=False) as client:
        answer = client.get(path)
    assert answer.status_code in (404, 422), answer.text
    assert_problem(answer, answer.status_code)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_row_id_past_int32_is_a_4xx_on_postgresql_too(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=headers_of(gateway, Role.OPERATOR),
                    raise_server_exceptions=False) as client:
        answer = client.get(f"/v1/messages/{2**31}")
    assert answer.status_code in (404, 422), answer.text


@SQLITE_ONLY
def test_an_id_number_of_digits_that_are_not_ascii_is_refused_not_a_500(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    application = {**COMPLETE_APPLICATION, "applicant": {"name": "王建国", "id_number": "¹" * 17 + "X"}}
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall, raise_server_exceptions=False) as client:
        answer = client.post("/v1/cases", json=application)
    assert 400 <= answer.status_code < 500, answer.text
    assert count(gateway, t.cases) == 0


UNEMPLOYMENT_BENEFIT = "12150200MB1A00010L3000805001000"  # 失业保险金申领


def test_a_time_limit_no_calendar_can_hold_is_a_problem_that_stops_publication(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    admin = headers_of(gateway, Role.CATALOGUE_ADMIN)
    with TestClient(create_app(gateway), headers=admin, raise_server_exceptions=False) as client:
        guide = client.get(f"/v1/matters/{UNEMPLOYMENT_BENEFIT}").json()
        for limit in ("promised_limit", "statutory_limit"):
            guide[limit]["value"] = 2**64
        draft = client.post("/v1/catalogue/drafts", json=guide)
        assert draft.status_code == 201, draft.text
        assert any("promised_limit" in p for p in draft.json()["problems"]), draft.json()
        published = client.post(f"/v1/catalogue/matters/{UNEMPLOYMENT_BENEFIT}/versions/"
                                f"{draft.json()['version']}/publish")
        assert_problem(published, 422)
        submitted = client.post("/v1/cases", json=COMPLETE_APPLICATION, headers=Keys.issue(gateway).hall)
    assert submitted.status_code == 201, submitted.text  # the published version is still the sensible one


NOT_JSON_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=XyZ",
                  "application/xml", None]


@SQLITE_ONLY
@pytest.mark.parametrize("content_type", NOT_JSON_TYPES, ids=["text", "form", "multipart", "xml", "none"])
@pytest.mark.parametrize(("role", "path", "body"), [
    (Role.HALL_CLIENT, LOOKUP, A_LOOKUP),
    (Role.OPERATOR, "/v1/ops/discards", b'{"filter": {}, "dry_run": true}'),
    (Role.CATALOGUE_ADMIN, "/v1/catalogue/drafts", b'{"name": "x"}'),
], ids=["hall", "operator", "catalogue"])
def test_a_json_route_refuses_a_body_not_declared_json_with_415(
        make_gateway: Callable[..., Gateway], role: Role, path: str, body: bytes, content_type: str | None) -> None:
    gateway = make_gateway(bundles=())
    headers = {} if content_type is None else {"content-type": content_type}
    with TestClient(create_app(gateway), headers=headers_of(gateway, role)) as client:
        answer = client.post(path, content=body, headers=headers)
    problem = assert_problem(answer, 415, "unsupported-media-type")
    assert "application/json" in problem["detail"]


@SQLITE_ONLY
def test_every_route_taking_a_json_body_reads_it_strictly(make_gateway: Callable[..., Gateway]) -> None:
    """A router made without `route_class=JsonBodyRoute` would take any media type, charset and repeated key."""
    routes = [getattr(r, "original_route", r) for r in v1_routes(create_app(make_gateway(bundles=())))]
    with_json = [r for r in routes if r.body_field is not None and not isinstance(r.body_field.field_info, Form)]
    assert len(with_json) >= 20
    assert [r.path for r in with_json if not isinstance(r, JsonBodyRoute)] == []


@SQLITE_ONLY
def test_a_material_upload_not_declared_multipart_is_415(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/materials", content=b"%PDF-1.4", headers={"content-type": "application/pdf"})
    problem = assert_problem(answer, 415, "unsupported-media-type")
    assert "multipart/form-data" in problem["detail"]


@SQLITE_ONLY
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_a_bundle_upload_declared_other_than_a_zip_is_415(make_gateway: Callable[..., Gateway],
                                                          content_type: str) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=headers_of(gateway, Role.SYSTEM_ADMIN)) as client:
        answer = client.post("/v1/adapters/bundles", content=b'{"sector": "x"}',
                             headers={"content-type": content_type})
    assert "application/zip" in assert_problem(answer, 415, "unsupported-media-type")["detail"]
    assert gateway.bundles.versions() == []


@SQLITE_ONLY
@pytest.mark.parametrize(("charset", "body"), [
    ("gbk", '{"id_number": "１５０２０３"}'.encode("gbk")), ("gbk", A_LOOKUP), ("GB18030", A_LOOKUP),
    ("utf-16", '{"id_number": "1"}'.encode("utf-16")), ("iso-8859-1", A_LOOKUP),
], ids=["gbk-chinese", "gbk-ascii", "gb18030", "utf-16", "latin-1"])
def test_a_body_in_a_declared_charset_other_than_utf8_is_refused_saying_so(
        make_gateway: Callable[..., Gateway], charset: str, body: bytes) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post(LOOKUP, content=body, headers={"content-type": f"application/json; charset={charset}"})
    problem = assert_problem(answer, 415, "unsupported-charset")
    assert "UTF-8" in problem["title"] and "UTF-8" in problem["detail"]


@SQLITE_ONLY
@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
def test_utf8_declared_in_any_spelling_is_read(make_gateway: Callable[..., Gateway], charset: str) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post(LOOKUP, content=A_LOOKUP, headers={"content-type": f"application/json; charset={charset}"})
    assert answer.status_code == 200, answer.text


@SQLITE_ONLY
def test_an_undeclared_body_that_is_not_utf8_is_a_400_saying_utf8(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post(LOOKUP, content=A_LOOKUP.decode().encode("utf-16"),
                             headers={"content-type": "application/json"})
    assert "UTF-8" in assert_problem(answer, 400, "invalid-json")["detail"]


SECRET_NAME = "李秘密"
TWICE = {  # in the complete application: the text written once -> written twice
    "top": ('"matter_code": "12150200MB1A00010L3000805001000"',
            '"matter_code": "12150200MB1A00010L3000805001000", "matter_code": "12150200MB1A00010L3000805001000"'),
    "applicant": ('"name": "王建国"', f'"name": "王建国", "name": "{SECRET_NAME}"'),
    "form": ('"insured_months": 36', '"insured_months": 36, "insured_months": 360'),
}


@pytest.mark.parametrize("where", list(TWICE))
def test_a_json_object_naming_a_key_twice_is_400_and_stores_nothing(
        make_gateway: Callable[..., Gateway], where: str) -> None:
    gateway = make_gateway()
    once, twice = TWICE[where]
    text = json.dumps(COMPLETE_APPLICATION, ensure_ascii=False)
    assert text.count(once) == 1
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/cases", content=text.replace(once, twice).encode(),
                             headers={"content-type": "application/json"})
    problem = assert_problem(answer, 400, "duplicate-key")
    assert "行" in problem["detail"] and SECRET_NAME not in answer.text and "insured_months" not in answer.text
    assert count(gateway, t.cases) == 0


@SQLITE_ONLY
@pytest.mark.parametrize(("role", "path", "body"), [
    (Role.OPERATOR, "/v1/ops/discards", b'{"filter": {}, "dry_run": true, "dry_run": false}'),
    (Role.CATALOGUE_ADMIN, "/v1/catalogue/drafts", b'{"name": "a",\n "name": "b"}'),
    (Role.HALL_CLIENT, LOOKUP, b'{"id_number": "150203198503120039", "id_number": "110101199001011234"}'),
], ids=["operator", "catalogue", "hall-lookup"])
def test_operators_and_administrators_bodies_are_read_as_strictly(
        make_gateway: Callable[..., Gateway], role: Role, path: str, body: bytes) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=headers_of(gateway, role)) as client:
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
    problem = assert_problem(answer, 400, "duplicate-key")
    assert "110101199001011234" not in answer.text
    if path.endswith("drafts"):
        assert problem["detail"].startswith("第 2 行第 2 列")


@SQLITE_ONLY
@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_numbers_json_cannot_carry_are_refused(make_gateway: Callable[..., Gateway], number: bytes) -> None:
    gateway = make_gateway()
    body = json.dumps(COMPLETE_APPLICATION).encode().replace(b'"insured_months": 36', b'"insured_months": ' + number)
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/cases", content=body, headers={"content-type": "application/json"})
    assert_problem(answer, 422, "number-out-of-range")
    assert count(gateway, t.cases) == 0


@SQLITE_ONLY
@pytest.mark.parametrize(("content_type", "body"), [
    ("text/plain", A_LOOKUP), ("application/json; charset=gbk", A_LOOKUP),
    ("application/json", b'{"id_number": "1", "id_number": "2"}'), ("application/json", b"[NaN]"),
], ids=["media-type", "charset", "duplicate-key", "nan"])
def test_an_anonymous_caller_hears_401_before_the_body_is_refused(
        make_gateway: Callable[..., Gateway], content_type: str, body: bytes) -> None:
    with TestClient(create_app(make_gateway(bundles=()))) as client:
        answer = client.post(LOOKUP, content=body, headers={"content-type": content_type})
    assert_problem(answer, 401, "not-authenticated")


@SQLITE_ONLY
def test_a_validation_error_lists_at_most_20_and_says_how_many_there_were(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    application = {**COMPLETE_APPLICATION, "materials": [{"name": "", "file_ref": "x" * 41}] * 50}
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/cases", json=application)
    problem = assert_problem(answer, 422, "invalid-request")
    assert len(problem["errors"]) == 20
    assert problem["errors_total"] == 100 and problem["errors_truncated"] is True


@SQLITE_ONLY
def test_a_short_list_of_validation_errors_is_whole(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    application = {**COMPLETE_APPLICATION, "materials": [{"name": ""}] * 3}
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        problem = assert_problem(client.post("/v1/cases", json=application), 422, "invalid-request")
    assert len(problem["errors"]) == 3 and "errors_total" not in problem and "errors_truncated" not in problem


@SQLITE_ONLY
def test_a_405_names_every_method_the_path_serves(make_gateway: Callable[..., Gateway]) -> None:
    app = create_app(make_gateway(bundles=()))
    served: dict[str, set[str]] = {}
    for route in v1_routes(app):
        served.setdefault(route.path, set()).update(route.methods)
    shared = {path: methods for path, methods in served.items() if len(methods - {"HEAD"}) > 1}
    assert {"/v1/identities", "/v1/webhooks", "/v1/ops/replays"} <= set(shared)
    with TestClient(app) as client:
        for path, methods in shared.items():
            answer = client.request("PATCH", path.replace("{", "").replace("}", ""))
            assert_problem(answer, 405, "method-not-allowed")
            assert set(answer.headers["allow"].split(", ")) == methods, path


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size + 1):
        yield b"x" * size


@SQLITE_ONLY
@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize(("path", "limit"), [("/callbacks/public_security", 256 * 1024),
                                             ("/v1/adapters/bundles", 20 * 1024 * 1024)])
def test_oversized_bodies_beyond_the_case_endpoints_are_413(
        make_gateway: Callable[..., Gateway], path: str, limit: int, streamed: bool) -> None:
    """`/v1/cases` is covered in test_api.py; these two read their bodies with limits of their own."""
    gateway = make_gateway(bundles=("public_security",))
    before = gateway.bundles.versions()
    content: Any = _chunks(limit + 1) if streamed else b"x" * (limit + 1)
    with TestClient(create_app(gateway), headers=headers_of(gateway, Role.SYSTEM_ADMIN)) as client:
        answer = client.post(path, content=content, headers={"content-type": "application/octet-stream"})
    assert_problem(answer, 413, "payload-too-large")
    assert gateway.bundles.versions() == before


MULTIPART = "multipart/form-data; boundary=XyZ"


@SQLITE_ONLY
@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"--XyZ\r\n"),  # no boundary
    (MULTIPART, b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.4"),  # cut
    (MULTIPART, b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XyZ--\r\n"),  # no file
    (MULTIPART, b"".join(b"--XyZ\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n" % i
                         for i in range(50)) + b"--XyZ--\r\n"),  # a flood of fields
    (MULTIPART, b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd\"\r\n"
                b"Content-Type: application/pdf\r\n\r\n<?xml version=\"1.0\"?><a/>\r\n--XyZ--\r\n"),  # a lie
], ids=["no-boundary", "truncated", "no-file-part", "field-flood", "traversal-name-and-lying-type"])
def test_malformed_multipart_is_a_4xx_problem_and_stores_nothing(
        make_gateway: Callable[..., Gateway], content_type: str, body: bytes) -> None:
    gateway = make_gateway(bundles=())
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/materials", content=body, headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500 and answer.status_code != 413, answer.text
    assert_problem(answer, answer.status_code)
    assert [p for p in (gateway.settings.var_dir / "materials").rglob("*") if p.is_file()] == []


# Characters no sector may ever receive in a typed text (issue 14): what XML 1.0 cannot carry, the other
# control characters, non-characters and the invisible format characters that hide or reorder a text.
UNDELIVERABLE = {"nul": "\x00", "escape-sequence": "\x1b[2J", "bell": "\x07", "vertical-tab": "\x0b",
                 "form-feed": "\x0c", "delete": "\x7f", "c1-csi": "\x9b", "next-line": "\x85",
                 "bidi-override": "\u202e", "bidi-isolate": "\u2067", "zero-width-space": "\u200b",
                 "byte-order-mark": "\ufeff", "line-separator": "\u2028", "noncharacter-fffe": "\ufffe",
                 "noncharacter-ffff": "\uffff", "noncharacter-fdd0": "\ufdd0", "noncharacter-plane-16": "\U0010ffff",
                 "high-surrogate": "\ud800", "low-surrogate": "\udfff", "tag-character": "\U000e0041",
                 "interlinear-annotation": "\ufff9"}


@pytest.mark.parametrize("hostile", list(UNDELIVERABLE.values()), ids=list(UNDELIVERABLE))
def test_a_typed_text_no_sector_could_receive_is_a_422_and_stores_nothing(
        make_gateway: Callable[..., Gateway], hostile: str) -> None:
    """On both databases: PostgreSQL cannot even store some of these (NUL in a jsonb event)."""
    gateway = make_gateway(bundles=())
    body = json.loads(json.dumps(COMPLETE_APPLICATION))
    body["applicant"]["name"] = f"王{hostile}建国"
    escaped = {"content-type": "application/json"}  # json.dumps writes \u escapes: lone surrogates travel too
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall, raise_server_exceptions=False) as client:
        assert_problem(client.post("/v1/cases", content=json.dumps(body), headers=escaped), 422, "invalid-request")
        assert count(gateway, t.cases) == 0
        case_no = client.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
        withdraw = client.post(f"/v1/cases/{case_no}/withdraw", content=json.dumps({"reason": f"不办{hostile}了"}),
                               headers=escaped)
        assert_problem(withdraw, 422, "invalid-request")
    assert gateway.service.get(case_no).state == "accepted"


# --- bundles a sector administrator uploads --------------------------------------------------------------

def _with_doctype(doctype: Callable[..., str]) -> Callable[[Witness, str], str]:
    def change(w: Witness, wsdl: str) -> str:
        body = wsdl.split("?>", 1)[1] if wsdl.startswith("<?xml") else wsdl
        return doctype(w, "wsdl:definitions") + body.replace("<xsd:documentation>", "<xsd:documentation>&xxe;", 1)
    return change


def _schema_reference(element: str) -> Callable[[Witness, str], str]:
    def change(w: Witness, wsdl: str) -> str:
        reference = (f'<xsd:import namespace="urn:evil" schemaLocation="{w.listener.url}/evil.xsd"/>'
                     if element == "import" else f'<xsd:include schemaLocation="{w.listener.url}/evil.xsd"/>')
        head, sep, rest = wsdl.partition("<xsd:schema")
        attributes, close, body = rest.partition(">")
        return head + sep + attributes + close + reference + body
    return change


WSDL_ATTACKS: dict[str, Callable[[Witness, str], str]] = {
    **{name: _with_doctype(doctype) for name, doctype in DOCTYPES.items()},
    "xsd-import-of-a-url": _schema_reference("import"),
    "xsd-include-of-a-url": _schema_reference("include"),
    "wsdl-import-of-a-url": lambda w, wsdl: wsdl.replace(
        "<wsdl:types>", f'<wsdl:import namespace="urn:evil" location="{w.listener.url}/evil.wsdl"/><wsdl:types>', 1),
}

PYTHON_YAML = "!!python/object/apply:os.system [\"touch {flag}\"]"


def _descriptor(text: str) -> Callable[[Witness, Path], None]:
    def change(w: Witness, folder: Path) -> None:
        descriptor = folder / "bundle.yaml"
        descriptor.write_text(descriptor.read_text(encoding="utf-8").replace(
            'title: ', f"title: {text.format(flag=w.secret.with_name('flag'))}\nx_title: ", 1), encoding="utf-8")
    return change


def _mapping_yaml(w: Witness, folder: Path) -> None:
    mapping = folder / "submit_case.mapping.yaml"
    mapping.write_text(mapping.read_text(encoding="utf-8") + "\nextra: " +
                       PYTHON_YAML.format(flag=w.secret.with_name("flag")) + "\n", encoding="utf-8")


XSLT = ('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">{head}'
        '<xsl:template match="/"><out>{body}</out></xsl:template></xsl:stylesheet>')


def _stylesheet(make: Callable[[Witness], str]) -> Callable[[Witness, Path], None]:
    def change(w: Witness, folder: Path) -> None:
        (folder / "transform.xsl").write_text(make(w), encoding="utf-8")
        mapping = folder / "submit_case.mapping.yaml"
        mapping.write_text("xslt: transform.xsl\n" + mapping.read_text(encoding="utf-8"), encoding="utf-8")
    return change


FOLDER_ATTACKS: dict[str, Callable[[Witness, Path], None]] = {
    "python-object-in-bundle-yaml": _descriptor(PYTHON_YAML),
    "python-object-in-a-mapping": _mapping_yaml,
    "xsl-include-of-a-url": _stylesheet(lambda w: XSLT.format(
        head=f'<xsl:include href="{w.listener.url}/evil.xsl"/>', body="")),
    "xsl-import-of-a-file": _stylesheet(lambda w: XSLT.format(head=f'<xsl:import href="{w.file_url}"/>', body="")),
    "xslt-with-xxe": _stylesheet(lambda w: xxe_file(w, "xsl:stylesheet") + XSLT.format(head="", body="&xxe;")),
}


def _bundle_zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _hostile_bundle(tmp_path: Path, w: Witness, attack: str) -> bytes:
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundles_dir() / "social_security", folder)
    descriptor = folder / "bundle.yaml"
    descriptor.write_text(descriptor.read_text(encoding="utf-8").replace('version: "', 'version: "hostile-', 1),
                          encoding="utf-8")
    if attack in WSDL_ATTACKS:
        wsdl = folder / "service.wsdl"
        wsdl.write_text(WSDL_ATTACKS[attack](w, wsdl.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        FOLDER_ATTACKS[attack](w, folder)
    return _bundle_zip(folder)


@SQLITE_ONLY
@pytest.mark.parametrize("attack", [*WSDL_ATTACKS, *FOLDER_ATTACKS])
def test_a_hostile_bundle_is_refused_reads_no_file_and_opens_no_connection(
        make_gateway: Callable[..., Gateway], tmp_path: Path, witness: Witness, attack: str) -> None:
    gateway = make_gateway(bundles=())
    admin = headers_of(gateway, Role.SECTOR_ADMIN, sector="social_security")
    with TestClient(create_app(gateway), headers=admin) as client:
        answer = client.post("/v1/adapters/bundles", content=_hostile_bundle(tmp_path, witness, attack),
                             headers={"content-type": "application/zip"})
    assert_problem(answer, 422, "invalid-bundle")
    witness.untouched(answer.text)
    assert gateway.bundles.versions() == []
    assert not witness.secret.with_name("flag").exists()  # no YAML tag ran a command


def test_xslt_document_calls_fail_the_delivery_not_the_worker(
        make_gateway: Callable[..., Gateway], tmp_path: Path, witness: Witness) -> None:
    """`document()` compiles (it is an ordinary function), so the sandbox refuses it when the transform runs:
    the delivery becomes a mapping dead letter and nothing is read or fetched."""
    gateway = make_gateway(bundles=(), sector_endpoints={"social_security": witness.listener.url})
    reader = XSLT.format(head="", body=f"<xsl:copy-of select=\"document('{witness.file_url}')\"/>"
                                       f"<xsl:copy-of select=\"document('{witness.listener.url}/x.xml')\"/>")
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundles_dir() / "social_security", folder)
    _stylesheet(lambda _: reader)(witness, folder)
    version = gateway.bundles.register(_bundle_zip(folder), "test").version
    gateway.bundles.activate("social_security", version, "test", force=True)
    case_no = _submit(gateway)
    drain(gateway, lambda: _outbox(gateway) == ["dead"])
    [letter] = _dead_letters(gateway)
    assert letter.error_class == "mapping" and "transform failed" in letter.error_message
    witness.untouched(letter.error_message, letter.rendered_request, _case_json(gateway, case_no))


# --- catalogue files an administrator imports ------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "import"])
def test_a_catalogue_file_with_python_yaml_tags_is_refused_without_running_them(tmp_path: Path, command: str) -> None:
    flag = tmp_path / "flag"
    hostile = tmp_path / "catalogue.yaml"
    hostile.write_text(f'matters:\n  - name: !!python/object/apply:os.system ["touch {flag}"]\n'
                       f"    basic_code: !!python/object/new:tuple [[1, 2]]\n", encoding="utf-8")
    # A process of its own, as an administrator runs it (the CLI configures logging for its own stderr).
    result = subprocess.run([str(Path(sys.executable).with_name("yiwang")), "catalogue", command, str(hostile)],
                            env={**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"),
                                 "YIWANG_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'yiwang.db'}"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot read the catalogue" in result.stderr and "Traceback" not in result.stderr
    assert not flag.exists()


# ========================================================================================== sector side


@pytest.fixture
def sector() -> Iterator[HostileSector]:
    hostile = HostileSector()
    yield hostile
    hostile.close()


def contribution_answer(fhxx: str = "ok") -> str:
    return f'<c:QueryContributionRecordResponse xmlns:c="{CASE_NS}"><fhdm>0000</fhdm><fhxx>{fhxx}</fhxx>' \
           "<ljys>1</ljys></c:QueryContributionRecordResponse>"


def fault(detail: str) -> str:
    return f"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>{detail}</faultstring>" \
           f"<detail><info>{detail}</info></detail></soap:Fault>"


SoapAnswer = Callable[[Witness, Callable[[str], str]], tuple[int, str, bytes]]
SOAP_ANSWERS: dict[str, SoapAnswer] = {
    **{name: (lambda d: lambda w, answer: (200, "text/xml", envelope(answer("&xxe;"), d(w, "soap:Envelope"))))(d)
       for name, d in DOCTYPES.items()},
    "fault-with-xxe": lambda w, _: (500, "text/xml", envelope(fault("&xxe;"), xxe_file(w, "soap:Envelope"))),
    "fault-with-a-huge-detail": lambda w, _: (500, "text/xml", envelope(fault("故障" * 500_000))),
    "fault-with-markup-in-detail": lambda w, _: (500, "text/xml", envelope(fault(
        f"<script>{w.listener.url}</script><![CDATA[<!ENTITY x SYSTEM '{w.file_url}'>]]>"))),
    "envelope-without-body": lambda w, _: (200, "text/xml",
                                           f'<soap:Envelope xmlns:soap="{SOAP_ENV}"/>'.encode()),
    "not-an-envelope": lambda w, answer: (200, "text/xml", answer("x").encode()),
    "truncated-envelope": lambda w, answer: (200, "text/xml", envelope(answer("x"))[:-40]),
    "unexpected-element": lambda w, _: (200, "text/xml", envelope("<Surprise/>")),
    "html-not-xml": lambda w, _: (200, "text/html", b"<html><body>upgrade in progress</body></html>"),
    "binary-not-xml": lambda w, _: (200, "text/xml", bytes(range(256)) * 4),
    "huge-answer": lambda w, answer: (200, "text/xml", envelope(answer("大" * 6_000_000))),
    "deep-answer": lambda w, answer: (200, "text/xml", envelope(answer("<a>" * 100_000 + "</a>" * 100_000))),
}


@SQLITE_ONLY
@pytest.mark.parametrize("attack", SOAP_ANSWERS)
def test_a_hostile_soap_answer_to_a_query_is_a_problem_and_leaks_nothing(
        make_gateway: Callable[..., Gateway], sector: HostileSector, witness: Witness, attack: str) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": sector.url})
    sector.answer = SOAP_ANSWERS[attack](witness, contribution_answer)
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        answer = hall.post("/v1/queries/social_insurance_contributions", json={"params": {"id_number": PERSON}})
    assert answer.status_code in (422, 502, 503), answer.text  # refused, or the sector's own fault
    problem = assert_problem(answer, answer.status_code)
    assert len(problem.get("detail", "")) < 1000  # the gist, never the sector's whole answer
    witness.untouched(answer.text)


def _submit(gateway: Gateway, body: dict[str, Any] = COMPLETE_APPLICATION) -> str:
    keys = Keys.issue(gateway)
    with TestClient(create_app(gateway), headers=keys.hall if body.get("channel") is None else keys.window) as client:
        answer = client.post("/v1/cases", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def _outbox(gateway: Gateway) -> list[str]:
    with gateway.engine.connect() as conn:
        return [r.status for r in conn.execute(select(t.outbox.c.status).order_by(t.outbox.c.id))]


def _dead_letters(gateway: Gateway) -> list[Any]:
    with gateway.service.uow(read_only=True) as uow:
        return list(uow.dead_letters.list())


def _case_json(gateway: Gateway, case_no: str) -> str:
    case = gateway.service.get(case_no)
    return json.dumps([case.__dict__, [e.__dict__ for e in case.events]], default=str, ensure_ascii=False)


@pytest.mark.parametrize("attack", ["xxe-file", "xxe-network", "billion-laughs", "fault-with-xxe", "html-not-xml"])
def test_a_hostile_soap_answer_to_a_delivery_is_a_dead_letter_and_the_worker_carries_on(
        make_gateway: Callable[..., Gateway], sector: HostileSector, witness: Witness, attack: str) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": sector.url})
    sector.answer = SOAP_ANSWERS[attack](witness, submit_answer)
    case_no = _submit(gateway)
    drain(gateway, lambda: _outbox(gateway) == ["dead"])
    [letter] = _dead_letters(gateway)
    assert letter.error_class == "validation" and letter.attempts == 1, letter  # hostile: never retried
    assert gateway.service.get(case_no).state == "accepted"  # the case waits for the operators
    witness.untouched(letter.error_message, letter.rendered_request, _case_json(gateway, case_no))
    # The same dispatcher delivers the next case once the sector behaves.
    sector.answer = (200, "text/xml", envelope(submit_answer()))
    second = _submit(gateway)
    drain(gateway, lambda: gateway.service.get(second).tasks[0].sector_ref == "SB0000000001")


# --- a REST sector (public security, HMAC-signed requests) -----------------------------------------------

REST_ANSWERS: dict[str, Callable[[Witness], tuple[int, str, bytes]]] = {
    "deep-json": lambda w: (200, "application/json", DEEP_ARRAY),
    "deep-object": lambda w: (200, "application/json", DEEP_OBJECT),
    "json-not-an-object": lambda w: (200, "application/json", b'["ZT", "1"]'),
    "truncated-json": lambda w: (200, "application/json", b'{"ZT": "1", "HJ": {"XM": "'),
    "html-not-json": lambda w: (200, "text/html", b"<html>maintenance</html>"),
    "xml-with-xxe": lambda w: (200, "application/json", (xxe_file(w) + "<a>&xxe;</a>").encode()),
    "nan": lambda w: (200, "application/json", b'{"ZT": "1", "HJ": {"XM": NaN}}'),
    "huge-json": lambda w: (200, "application/json", b'{"ZT": "1", "XX": "' + b"x" * (11 * 1024 * 1024) + b'"}'),
    "error-with-hostile-body": lambda w: (500, "application/json", b"[" * 100_000),
    "reference-to-a-file": lambda w: (200, "application/json", json.dumps(
        {"ZT": "0", "XX": {"$ref": w.file_url}}).encode()),
}


@SQLITE_ONLY
@pytest.mark.parametrize("attack", REST_ANSWERS)
def test_a_hostile_rest_answer_to_a_query_is_a_problem_and_leaks_nothing(
        make_gateway: Callable[..., Gateway], sector: HostileSector, witness: Witness, attack: str) -> None:
    gateway = make_gateway(bundles=("public_security",), sector_endpoints={"public_security": sector.url})
    sector.answer = REST_ANSWERS[attack](witness)
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        answer = hall.post("/v1/queries/household_registration", json={"params": {"id_number": PERSON}})
    assert answer.status_code in (422, 502, 503), answer.text
    problem = assert_problem(answer, answer.status_code)
    assert len(problem.get("detail", "")) < 1000
    witness.untouched(answer.text)


# --- callbacks ---------------------------------------------------------------------------------------------

CALLBACK_PATH = "/callbacks/public_security"


@dataclass
class Police:
    """A public-security case waiting for its decision, and how that sector signs callbacks."""

    gateway: Gateway
    client: TestClient
    case_no: str
    sector_ref: str
    spec: Recipe

    def signed(self, body: bytes, *, nonce: str | None = None, at_ms: int | None = None,
               secret: str | None = None) -> dict[str, str]:
        timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
        nonce = nonce or secrets.token_hex(16)
        canonical = "\n".join(["POST", CALLBACK_PATH, timestamp, nonce, hashlib.sha256(body).hexdigest()])
        assert self.spec.secret is not None
        key = self.spec.secret.load() if secret is None else Secret(secret)
        signature = base64.b64encode(hmac.new(key.reveal().encode(), canonical.encode(), hashlib.sha256).digest())
        return {"X-Ca-Key": "ga-callback", "X-Ca-Timestamp": timestamp, "X-Ca-Nonce": nonce,
                "X-Ca-Signature": signature.decode(), "Content-Type": "application/json"}

    def decision(self, opinion: str = "准予换领") -> bytes:
        return json.dumps({"YWH": self.sector_ref, "BJBH": self.case_no, "JG": "TY", "YJ": opinion,
                           "SJ": "2026-11-24 10:00:00"}, ensure_ascii=False).encode()

    def post(self, body: bytes, headers: dict[str, str]) -> Any:
        return self.client.post(CALLBACK_PATH, content=body, headers=headers)

    def events(self) -> int:
        return len(self.gateway.service.get(self.case_no).events)


@pytest.fixture
def police(make_gateway: Callable[..., Gateway], sector: HostileSector) -> Iterator[Police]:
    gateway = make_gateway(bundles=("public_security",), sector_endpoints={"public_security": sector.url})
    sector.answer = (202, "application/json", json.dumps({"ZT": "1", "XX": "已受理", "YWH": "GA0000000001"}).encode())
    case_no = _submit(gateway, {"matter_code": ID_CARD_RENEWAL, "channel": "city_window",
                                "applicant": {"name": "王建国", "id_number": PERSON},
                                "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]})
    drain(gateway, lambda: gateway.service.get(case_no).tasks[0].sector_ref == "GA0000000001")
    spec = gateway.registry.get("public_security").bundle.results.callback_auth  # type: ignore[union-attr]
    with TestClient(create_app(gateway)) as client:
        yield Police(gateway, client, case_no, "GA0000000001", spec)


def test_a_replayed_callback_is_refused_and_recorded_once(police: Police) -> None:
    body = police.decision()
    headers = police.signed(body)
    assert police.post(body, headers).status_code == 200
    after_first = police.events()
    assert_problem(police.post(body, headers), 401, "callback-rejected")  # the very same request again
    assert police.events() == after_first


@pytest.mark.parametrize("when", ["stale", "future"])
def test_a_callback_with_a_timestamp_out_of_the_window_is_refused(police: Police, when: str) -> None:
    body = police.decision()
    skew = 10 * 60 * 1000 * (-1 if when == "stale" else 1)
    refused = assert_problem(police.post(body, police.signed(body, at_ms=int(time.time() * 1000) + skew)), 401,
                             "callback-rejected")
    assert "away from our clock" in refused["detail"]
    assert police.gateway.service.get(police.case_no).state == "in_process"


def test_a_refused_callback_burns_no_nonce(police: Police) -> None:
    body = police.decision()
    good = police.signed(body)
    assert_problem(police.post(body, {**good, "X-Ca-Signature": "AAAA"}), 401, "callback-rejected")
    assert police.post(body, good).status_code == 200  # the forged try did not use the nonce up


@pytest.mark.parametrize("tamper", ["bad-signature", "wrong-secret", "body-changed", "no-headers", "wrong-key-id"])
def test_a_forged_callback_is_refused_and_changes_nothing(police: Police, tamper: str) -> None:
    body = police.decision()
    headers = police.signed(body, secret="not-the-secret" if tamper == "wrong-secret" else None)
    if tamper == "bad-signature":
        headers["X-Ca-Signature"] = headers["X-Ca-Signature"][::-1]
    elif tamper == "body-changed":
        body = police.decision("伪造的意见")
    elif tamper == "no-headers":
        headers = {"Content-Type": "application/json"}
    elif tamper == "wrong-key-id":
        headers["X-Ca-Key"] = "someone-else"
    before = police.events()
    assert_problem(police.post(body, headers), 401, "callback-rejected")
    assert police.events() == before


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, b"[1, 2]", b'"text"', b"<a/>", b"\xff\xfe", b"{}",
                                  b'{"YWH": {"$ref": "file:///etc/passwd"}, "JG": ["TY"]}'],
                         ids=["deep-array", "deep-object", "array", "string", "xml", "not-utf8", "empty-object",
                              "odd-types"])
def test_a_signed_callback_with_a_hostile_body_is_a_4xx_problem_and_changes_nothing(
        police: Police, body: bytes) -> None:
    before = police.events()
    answer = police.post(body, police.signed(body))
    assert 400 <= answer.status_code < 500, answer.text
    assert_problem(answer, answer.status_code)
    assert police.events() == before
    assert "root:" not in answer.text


def test_a_signed_callback_naming_a_key_twice_is_400_and_changes_nothing(police: Police) -> None:
    body = police.decision().replace(b'"JG": "TY"', b'"JG": "BTY", "JG": "TY"')
    before = police.events()
    refused = assert_problem(police.post(body, police.signed(body)), 400, "duplicate-key")
    assert "line 1" in refused["detail"]
    assert police.events() == before
    assert police.gateway.service.get(police.case_no).state == "in_process"


@SQLITE_ONLY
def test_a_callback_to_a_sector_that_polls_is_a_404_problem(make_gateway: Callable[..., Gateway]) -> None:
    with TestClient(create_app(make_gateway())) as client:
        assert_problem(client.post("/callbacks/social_security", content=b"{}"), 404, "no-active-adapter")
        assert_problem(client.post("/callbacks/nobody", content=b"{}"), 404)


def test_the_secret_witness_would_see_a_leak(witness: Witness) -> None:
    """The witnesses themselves work: a read file shows its marker, a connection is counted."""
    with pytest.raises(AssertionError):
        witness.untouched(witness.secret.read_text())
    socket.create_connection(("127.0.0.1", int(witness.listener.url.rsplit(":", 1)[1]))).close()
    deadline = time.monotonic() + 2
    while witness.listener.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert witness.listener.connections == 1
