"""Materials travel to the sector as its bundle declares: inline (base64, verified, capped) or as signed links
the sector fetches over HTTP. Real files, the real simulator, the real HTTP server; SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import io
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.contract import CanonicalMessage, Operation
from adapters.registry import RegisteredAdapter, default_bundles_dir
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.serving import serve_in_thread
from gateway.config import Settings
from gateway.domain.clock import FixedClock
from gateway.materials.store import PDF, PNG, StoredMaterial
from gateway.persistence.uow import UnitOfWork
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import COMPLETE_APPLICATION, PINNED, Keys, drain

LINK_PROBLEM = "urn:yiwang:problem:material-link-invalid"
SECTOR = "social_security"
SCAN = b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"  # every byte value: base64 and streaming kept exact
PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
DECLARED = {"trust": "declared", "provenance": None}  # an uploaded material: the applicant's word (issue 18)


class Recorder:
    """The dispatcher's adapter source, keeping every message handed to an adapter (then really sent)."""

    def __init__(self, gateway: Gateway) -> None:
        self.inner = gateway.registry
        self.messages: list[tuple[str, CanonicalMessage]] = []

    def get(self, sector: str) -> RegisteredAdapter:
        registered = self.inner.get(sector)
        return dataclasses.replace(registered, adapter=_Recording(registered.adapter, self.messages))  # type: ignore[arg-type]

    def sent(self, operation: str) -> list[CanonicalMessage]:
        return [message for op, message in self.messages if op == operation]


class _Recording:
    def __init__(self, adapter: Any, messages: list[tuple[str, CanonicalMessage]]) -> None:
        self.adapter, self.messages = adapter, messages

    def call(self, operation: Operation, message: CanonicalMessage, **options: Any) -> Any:
        """`options` (the dispatcher's `on_sent`) go to the wrapped adapter as they are."""
        self.messages.append((str(operation), copy.deepcopy(message)))
        return self.adapter.call(operation, message, **options)

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.adapter.render(operation, message)


@dataclasses.dataclass
class Setup:
    gateway: Gateway
    simulator: SocialSecuritySimulator
    recorder: Recorder

    def upload(self, content: bytes = SCAN, media_type: str = PDF, name: str = "身份证.pdf") -> StoredMaterial:
        return self.gateway.materials.save(io.BytesIO(content), media_type, name, "window-01")

    def submit(self, *refs: str) -> str:
        """The complete unemployment-insurance application, its first materials backed by `refs`."""
        body = copy.deepcopy(COMPLETE_APPLICATION)
        for material, ref in zip(body["materials"], refs, strict=False):
            material["file_ref"] = ref
        with TestClient(create_app(self.gateway), headers=Keys.issue(self.gateway).hall) as hall:
            answer = hall.post("/v1/cases", json=body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["case_no"])

    def state(self, case_no: str) -> str:
        return str(self.gateway.service.get(case_no).state)

    def dead_letters(self) -> list[Any]:
        with UnitOfWork(self.gateway.engine, self.gateway.service.personal, read_only=True) as uow:
            return list(uow.dead_letters.list())


@pytest.fixture
def make_setup(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, tmp_path: Path
               ) -> Callable[..., Setup]:
    def make(transport: str = "inline_base64", **overrides: Any) -> Setup:
        gateway = make_gateway(sector_endpoints={SECTOR: simulator.url}, **overrides)
        if transport != "inline_base64":  # the shipped bundle, as a new version declaring another transport
            activate_with_transport(gateway, tmp_path, transport)
        recorder = Recorder(gateway)
        gateway.dispatcher.registry = recorder
        return Setup(gateway, simulator, recorder)

    return make


def activate_with_transport(gateway: Gateway, tmp_path: Path, transport: str) -> None:
    bundle = tmp_path / f"{SECTOR}-{transport}"
    shutil.copytree(default_bundles_dir() / SECTOR, bundle)
    descriptor = bundle / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    text = text.replace("materials: {transport: inline_base64}", f"materials: {{transport: {transport}}}")
    descriptor.write_text(re.sub(r'(?m)^version: "', f'version: "{transport}-', text), encoding="utf-8")
    version = gateway.bundles.register(pack_folder(bundle), "test").version
    gateway.bundles.activate(SECTOR, version, "test", force=True)
    assert gateway.registry.get(SECTOR).bundle.materials_transport == transport


def stored_path(gateway: Gateway, material: StoredMaterial) -> Path:
    return gateway.settings.var_dir / "materials" / material.sha256[:2] / material.sha256


# --- inline_base64 ---------------------------------------------------------------------------------------


def test_inline_materials_carry_their_content_hash_and_type(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup()
    scan, photo = setup.upload(), setup.upload(PHOTO, PNG, "合同.png")
    case_no = setup.submit(scan.ref, photo.ref)
    drain(setup.gateway, lambda: setup.state(case_no) == "approved")

    [message] = setup.recorder.sent("submit_case")
    first, second, third = message["case"]["materials"]
    assert first == {"name": "居民身份证", "received": True, "file_ref": scan.ref, **DECLARED, "media_type": PDF,
                     "sha256": hashlib.sha256(SCAN).hexdigest(), "size": len(SCAN),
                     "content_base64": base64.b64encode(SCAN).decode()}
    assert base64.b64decode(first["content_base64"]) == SCAN
    assert base64.b64decode(second["content_base64"]) == PHOTO and second["media_type"] == PNG
    assert third == {"name": "本人银行账户", "received": True, "file_ref": None, **DECLARED}  # no file: as before
    # Status polls carry references only: files are not re-read at every poll.
    polls = setup.recorder.sent("query_status")
    assert polls and all("content_base64" not in m for p in polls for m in p["case"]["materials"])
    assert setup.simulator.counters["cases_created"] == 1 and setup.dead_letters() == []


def test_a_case_without_files_is_sent_as_before(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup()
    case_no = setup.submit()
    drain(setup.gateway, lambda: setup.state(case_no) == "approved")
    [message] = setup.recorder.sent("submit_case")
    assert all(set(m) == {"name", "received", "file_ref", *DECLARED} for m in message["case"]["materials"])


def test_a_file_altered_on_disk_is_a_dead_letter_and_nothing_is_sent(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup()
    scan = setup.upload()
    case_no = setup.submit(scan.ref)
    path = stored_path(setup.gateway, scan)
    path.write_bytes(SCAN.replace(b"%%EOF", b"%%EOX"))  # same size, other bytes
    drain(setup.gateway, lambda: bool(setup.dead_letters()))

    [letter] = setup.dead_letters()
    assert (letter.operation, letter.error_class, letter.attempts) == ("submit_case", "material", 0)
    assert scan.ref in letter.error_message and "被改动" in letter.error_message
    assert setup.recorder.messages == []
    assert setup.simulator.counters["raw_requests"] == 0
    assert setup.state(case_no) == "accepted"  # the case waits where it was, for an operator


def test_a_file_gone_from_disk_is_a_dead_letter(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup()
    scan = setup.upload()
    setup.submit(scan.ref)
    stored_path(setup.gateway, scan).unlink()
    drain(setup.gateway, lambda: bool(setup.dead_letters()))
    assert setup.dead_letters()[0].error_class == "material"
    assert setup.simulator.counters["raw_requests"] == 0


def test_materials_over_the_inline_cap_are_a_dead_letter(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(max_inline_material_bytes=len(SCAN) + len(PHOTO) - 1)
    scan, photo = setup.upload(), setup.upload(PHOTO, PNG, "合同.png")
    setup.submit(scan.ref, photo.ref)
    drain(setup.gateway, lambda: bool(setup.dead_letters()))

    [letter] = setup.dead_letters()
    assert (letter.error_class, letter.attempts) == ("material", 0)
    assert f"total {len(SCAN) + len(PHOTO)} bytes" in letter.error_message
    assert "YIWANG_MAX_INLINE_MATERIAL_BYTES" in letter.error_message
    assert setup.recorder.messages == [] and setup.simulator.counters["raw_requests"] == 0


def test_materials_at_the_inline_cap_are_sent(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(max_inline_material_bytes=len(SCAN))
    case_no = setup.submit(setup.upload().ref)
    drain(setup.gateway, lambda: setup.state(case_no) == "approved")
    assert setup.dead_letters() == []


# --- signed_url (and mtom, which travels the same way for now) --------------------------------------------


@contextmanager
def served(gateway: Gateway) -> Iterator[str]:
    with serve_in_thread(create_app(gateway)) as url:
        yield url


def at(base: str, link: str) -> str:
    """The link as the sector would use it, reaching this test's server (YIWANG_PUBLIC_URL's stand-in)."""
    parts = urlsplit(link)
    return f"{base}{parts.path}?{parts.query}"


def with_query(link: str, **changes: str) -> str:
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def assert_refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == LINK_PROBLEM
    assert SCAN not in answer.content


@pytest.mark.parametrize("transport", ["signed_url", "mtom"])
def test_signed_links_are_fetched_over_http_with_exact_bytes_and_type(make_setup: Callable[..., Setup],
                                                                       transport: str) -> None:
    setup = make_setup(transport, public_url="https://yiwang.baotou.example")
    scan, photo = setup.upload(), setup.upload(PHOTO, PNG, "合同.png")
    case_no = setup.submit(scan.ref, photo.ref)
    drain(setup.gateway, lambda: setup.state(case_no) == "approved")

    [message] = setup.recorder.sent("submit_case")
    first, second, third = message["case"]["materials"]
    assert {k: v for k, v in first.items() if k != "url"} == {
        "name": "居民身份证", "received": True, "file_ref": scan.ref, **DECLARED, "media_type": PDF,
        "sha256": hashlib.sha256(SCAN).hexdigest(), "size": len(SCAN)}
    assert "content_base64" not in first and third == {"name": "本人银行账户", "received": True, "file_ref": None,
                                                       **DECLARED}
    link = urlsplit(first["url"])
    assert (link.scheme, link.netloc, link.path) == ("https", "yiwang.baotou.example", f"/material-links/{scan.ref}")
    query = parse_qs(link.query)
    assert query["sector"] == [SECTOR]
    assert abs(int(query["expires"][0]) - (time.time() + 3600)) < 120  # YIWANG_MATERIAL_LINK_TTL_S's default

    with served(setup.gateway) as base:
        fetched = httpx.get(at(base, first["url"]))  # no API key: the signature is the credential
        photo_fetched = httpx.get(at(base, second["url"]))
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == SCAN and fetched.headers["content-type"] == PDF
    assert int(fetched.headers["content-length"]) == len(SCAN)
    assert photo_fetched.content == PHOTO and photo_fetched.headers["content-type"] == PNG


def test_a_link_is_valid_for_the_configured_time(make_gateway: Callable[..., Gateway]) -> None:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, material_link_ttl_s=600)
    link = gateway.material_links.url(gateway.materials.save(io.BytesIO(SCAN), PDF, "a.pdf", "w").ref, SECTOR)
    assert parse_qs(urlsplit(link).query)["expires"] == [str(int(PINNED.timestamp()) + 600)]
    with served(gateway) as base:
        clock.advance(timedelta(seconds=600))
        assert httpx.get(at(base, link)).content == SCAN  # the last second still counts
        clock.advance(timedelta(seconds=1))
        expired = httpx.get(at(base, link))
    assert_refused(expired, 403)
    assert "expired" in expired.json()["detail"]


def test_links_that_are_not_ours_are_refused(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    scan = gateway.materials.save(io.BytesIO(SCAN), PDF, "a.pdf", "w")
    other = gateway.materials.save(io.BytesIO(PHOTO), PNG, "b.png", "w")
    link = gateway.material_links.url(scan.ref, SECTOR)
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    forged = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    with served(gateway) as base:
        good = at(base, link)
        assert httpx.get(good).content == SCAN
        answers = {
            "forged signature": httpx.get(with_query(good, sig=forged)),
            "other sector": httpx.get(with_query(good, sector="housing_fund")),
            "later expiry": httpx.get(with_query(good, expires=str(int(parse_qs(urlsplit(link).query)["expires"][0])
                                                                       + 86400))),
            "other material": httpx.get(good.replace(scan.ref, other.ref)),
            "no signature": httpx.get(good.split("?")[0] + "?" + urlencode({"sector": SECTOR, "expires": "1"})),
            "not a ref": httpx.get(f"{base}/material-links/mat_..yiwang.db?" + urlsplit(good).query),
            "non-ascii signature": httpx.get(with_query(good, sig="签名")),
        }
    for why, answer in answers.items():
        assert answer.status_code == 403, why
        assert_refused(answer, 403)


def test_a_signed_link_to_an_unknown_material_is_a_404(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    link = gateway.material_links.url("mat_" + "0" * 32, SECTOR)
    with served(gateway) as base:
        answer = httpx.get(at(base, link))
    assert_refused(answer, 404)


def test_a_link_to_a_file_altered_after_sending_serves_nothing(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    scan = gateway.materials.save(io.BytesIO(SCAN), PDF, "a.pdf", "w")
    link = gateway.material_links.url(scan.ref, SECTOR)
    stored_path(gateway, scan).write_bytes(SCAN + b"appended")
    with served(gateway) as base:
        answer = httpx.get(at(base, link))
    assert_refused(answer, 404)


def test_a_signed_url_sector_never_gets_a_link_to_an_altered_file(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup("signed_url")
    scan = setup.upload()
    setup.submit(scan.ref)
    stored_path(setup.gateway, scan).write_bytes(b"%PDF-tampered")
    drain(setup.gateway, lambda: bool(setup.dead_letters()))
    assert setup.dead_letters()[0].error_class == "material"
    assert setup.recorder.messages == [] and setup.simulator.counters["raw_requests"] == 0


# --- the key ---------------------------------------------------------------------------------------------


def test_the_link_key_file_is_made_once_and_reused(make_gateway: Callable[..., Gateway]) -> None:
    first = make_gateway()
    key_file = first.settings.var_dir / "material-link.key"
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(bytes.fromhex(key)) == 32
    assert key != (first.settings.var_dir / "blind-index.key").read_text()  # a key of its own
    scan = first.materials.save(io.BytesIO(SCAN), PDF, "a.pdf", "w")
    link = first.material_links.url(scan.ref, SECTOR)

    second = make_gateway()  # another process on the same install
    assert key_file.read_text() == key
    with served(second) as base:
        assert httpx.get(at(base, link)).content == SCAN


def test_a_configured_link_key_replaces_the_file(make_gateway: Callable[..., Gateway]) -> None:
    first = make_gateway()
    scan = first.materials.save(io.BytesIO(SCAN), PDF, "a.pdf", "w")
    link = first.material_links.url(scan.ref, SECTOR)
    configured = make_gateway(material_link_key="ab" * 32)
    with served(configured) as base:
        assert_refused(httpx.get(at(base, link)), 403)
        assert httpx.get(at(base, configured.material_links.url(scan.ref, SECTOR))).content == SCAN


def test_settings_read_from_the_environment() -> None:
    settings = Settings.from_env({"YIWANG_PUBLIC_URL": "https://yiwang.example/", "YIWANG_MATERIAL_LINK_TTL_S": "60",
                                  "YIWANG_MATERIAL_LINK_KEY": "cd" * 32,
                                  "YIWANG_MAX_INLINE_MATERIAL_BYTES": "1024"})
    assert (settings.public_url, settings.material_link_ttl_s, settings.material_link_key,
            settings.max_inline_material_bytes) == ("https://yiwang.example", 60, "cd" * 32, 1024)
    defaults = Settings.from_env({})
    assert (defaults.public_url, defaults.material_link_ttl_s, defaults.max_inline_material_bytes) == (
        "http://127.0.0.1:8000", 3600, 10 * 1024 * 1024)
