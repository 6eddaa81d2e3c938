"""Application materials: the store on real files and a real SQLite database, then the HTTP endpoints."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from starlette.responses import JSONResponse

from gateway.domain.roles import Identity, NotAllowed, NotAuthenticated, Role
from gateway.http.problems import PROBLEM_MEDIA_TYPE, problem_response
from gateway.http.routers.materials import install_material_error_handlers, router
from gateway.materials.store import (
    JPEG,
    OFD,
    PDF,
    PNG,
    EmptyMaterial,
    MaterialStore,
    MaterialTooLarge,
    UnknownMaterial,
    UnsupportedMaterial,
    sanitise_filename,
)
from gateway.persistence.material_tables import material_files

PROBLEM = "urn:yiwang:problem:"


def pdf_bytes() -> bytes:
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)


def jpeg_bytes() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(16) + b"\xff\xd9"


def zip_bytes(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name in names:
            package.writestr(name, "<ofd:OFD xmlns:ofd='http://www.ofdspec.org/2016'/>")
    return buffer.getvalue()


def ofd_bytes() -> bytes:
    return zip_bytes("OFD.xml", "Doc_0/Document.xml")


SAMPLES: dict[str, Callable[[], bytes]] = {PDF: pdf_bytes, PNG: png_bytes, JPEG: jpeg_bytes, OFD: ofd_bytes}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "materials"


@pytest.fixture
def store(engine: Engine, root: Path) -> MaterialStore:
    return MaterialStore(engine, root, max_bytes=4096)


def save(store: MaterialStore, content: bytes, declared: str | None = None, name: str = "scan") -> Any:
    return store.save(io.BytesIO(content), declared, name, "window-01")


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(material_files)) or 0)


def assert_nothing_kept(engine: Engine, root: Path) -> None:
    assert stored_files(root) == []
    assert row_count(engine) == 0


# --- the store ---------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", sorted(SAMPLES))
def test_each_admitted_type_is_recognised_stored_and_read_back(store: MaterialStore, root: Path,
                                                               media_type: str) -> None:
    content = SAMPLES[media_type]()
    saved = save(store, content, media_type, "身份证.bin")

    assert saved.ref.startswith("mat_") and len(saved.ref) == 36
    assert (saved.media_type, saved.size, saved.filename) == (media_type, len(content), "身份证.bin")
    assert saved.created_at.tzinfo is not None
    assert store.get(saved.ref) == saved
    with store.open(saved.ref) as f:
        assert f.read() == content
    assert (root / saved.sha256[:2] / saved.sha256).read_bytes() == content
    assert store.verify(saved.ref)


def test_the_type_comes_from_the_content_when_none_or_a_generic_one_is_declared(store: MaterialStore) -> None:
    assert save(store, ofd_bytes(), None).media_type == OFD
    assert save(store, ofd_bytes(), "application/octet-stream").media_type == OFD
    assert save(store, jpeg_bytes(), "IMAGE/JPG; q=1").media_type == JPEG  # alias, parameters, case


@pytest.mark.parametrize("content", [
    b"MZ\x90\x00\x03\x00\x00\x00" + bytes(64),  # a Windows executable renamed to .pdf
    zip_bytes("word/document.xml"),  # a ZIP, but no OFD package
    b"PK\x03\x04 truncated, not a zip",
    b"plain text",
], ids=["exe", "docx", "broken-zip", "text"])
def test_content_of_no_admitted_type_is_refused_and_nothing_kept(store: MaterialStore, engine: Engine, root: Path,
                                                                  content: bytes) -> None:
    with pytest.raises(UnsupportedMaterial, match="不是以下类型之一"):
        save(store, content, PDF, "contract.pdf")
    assert_nothing_kept(engine, root)


def test_a_declared_type_disagreeing_with_the_content_is_refused(store: MaterialStore, engine: Engine,
                                                                 root: Path) -> None:
    with pytest.raises(UnsupportedMaterial, match="声明为 image/png，但内容是 application/pdf"):
        save(store, pdf_bytes(), PNG)
    assert_nothing_kept(engine, root)


def test_a_type_outside_the_admitted_set_is_refused(engine: Engine, root: Path) -> None:
    pdf_only = MaterialStore(engine, root, allowed=frozenset({PDF}))
    with pytest.raises(UnsupportedMaterial):
        save(pdf_only, png_bytes(), PNG)
    assert_nothing_kept(engine, root)


def test_an_oversize_file_is_refused_and_nothing_kept(store: MaterialStore, engine: Engine, root: Path) -> None:
    with pytest.raises(MaterialTooLarge, match="4096 字节"):
        save(store, pdf_bytes() + bytes(4096), PDF)
    assert_nothing_kept(engine, root)
    assert save(store, pdf_bytes().ljust(4096, b" "), PDF).size == 4096  # exactly the limit is fine


def test_an_empty_file_is_refused(store: MaterialStore, engine: Engine, root: Path) -> None:
    with pytest.raises(EmptyMaterial, match="空的"):
        save(store, b"", PDF)
    assert_nothing_kept(engine, root)


def test_identical_content_is_kept_once_but_each_upload_has_its_own_ref(store: MaterialStore, engine: Engine,
                                                                        root: Path) -> None:
    first = save(store, pdf_bytes(), name="a.pdf")
    second = store.save(io.BytesIO(pdf_bytes()), PDF, "b.pdf", "hall")

    assert first.ref != second.ref and first.sha256 == second.sha256
    assert (second.filename, second.uploaded_by) == ("b.pdf", "hall")
    assert stored_files(root) == [root / first.sha256[:2] / first.sha256]
    assert row_count(engine) == 2


def test_missing_names_the_refs_not_stored_in_order_once(store: MaterialStore) -> None:
    kept = save(store, png_bytes()).ref
    unknown = "mat_" + "0" * 32
    assert store.missing([kept, unknown, "../../etc/passwd", unknown]) == [unknown, "../../etc/passwd"]
    assert store.missing([kept]) == []
    assert store.missing([]) == []


def test_verify_detects_a_byte_flipped_on_disk(store: MaterialStore, root: Path) -> None:
    saved = save(store, pdf_bytes())
    path = root / saved.sha256[:2] / saved.sha256
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))

    assert not store.verify(saved.ref)
    path.unlink()
    assert not store.verify(saved.ref)


def test_unknown_refs(store: MaterialStore) -> None:
    assert store.get("mat_" + "f" * 32) is None
    assert store.get("not-a-ref") is None
    with pytest.raises(UnknownMaterial):
        store.open("mat_" + "f" * 32)
    with pytest.raises(UnknownMaterial):
        store.verify("mat_" + "f" * 32)


def test_a_store_cannot_be_told_to_admit_a_type_it_cannot_recognise(engine: Engine, root: Path) -> None:
    with pytest.raises(ValueError, match="image/gif"):
        MaterialStore(engine, root, allowed=frozenset({PDF, "image/gif"}))


@pytest.mark.parametrize(("raw", "clean"), [
    ("C:\\Users\\王\\Desktop\\身份证.jpg", "身份证.jpg"),
    ("../../etc/passwd", "passwd"),
    ("a\x00b\r\nc.pdf", "abc.pdf"),
    ("..", "unnamed"),
    ("", "unnamed"),
    (None, "unnamed"),
    ("x" * 300 + ".pdf", "x" * 200),
])
def test_file_names_are_sanitised(raw: str | None, clean: str) -> None:
    assert sanitise_filename(raw) == clean


def test_created_at_is_aware_utc(store: MaterialStore) -> None:
    saved = save(store, png_bytes())
    assert store.get(saved.ref).created_at.utcoffset() == UTC.utcoffset(None)  # type: ignore[union-attr]


# --- the endpoints -----------------------------------------------------------------------------

KEYS = {
    "hall-key": Identity("hall", "Online hall", frozenset({Role.HALL_CLIENT})),
    "window-key": Identity("window-01", "City window 1", frozenset({Role.WINDOW})),
    "clerk-key": Identity("clerk-07", "Clerk", frozenset({Role.CLERK}), department="12150200MB1A00010L"),
    "operator-key": Identity("ops", "Operator", frozenset({Role.OPERATOR})),
}


class DictKeyStore:
    def __init__(self, identities: dict[str, Identity]) -> None:
        self._identities = identities

    def authenticate(self, raw_key: str) -> Identity | None:
        return self._identities.get(raw_key)


def auth_problem(status: int, slug: str) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(status, slug, slug, str(exc), request.url.path)

    return handle


@pytest.fixture
def client(store: MaterialStore) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(router)
    install_material_error_handlers(app)
    app.add_exception_handler(NotAuthenticated, auth_problem(401, "not-authenticated"))
    app.add_exception_handler(NotAllowed, auth_problem(403, "forbidden"))
    app.state.materials = store
    app.state.keystore = DictKeyStore(KEYS)
    with TestClient(app) as client:
        yield client


def upload(client: TestClient, content: bytes, media_type: str = PNG, key: str | None = "hall-key",
           field: str = "file") -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/materials", files={field: ("id-card.png", content, media_type)}, headers=headers)


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug and body["status"] == status
    return body


def test_upload_then_read_back(client: TestClient, store: MaterialStore) -> None:
    created = upload(client, png_bytes(), key="window-key")

    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"ref", "sha256", "size", "media_type", "filename"}
    assert (body["media_type"], body["size"], body["filename"]) == (PNG, len(png_bytes()), "id-card.png")
    assert created.headers["location"] == f"/v1/materials/{body['ref']}"
    assert store.get(body["ref"]).uploaded_by == "window-01"  # type: ignore[union-attr]

    read = client.get(f"/v1/materials/{body['ref']}", headers={"X-API-Key": "clerk-key"})
    assert read.status_code == 200 and read.json() == body


def test_without_a_key_401_and_for_a_role_not_admitted_403(client: TestClient, engine: Engine) -> None:
    assert_problem(upload(client, png_bytes(), key=None), 401, "not-authenticated")
    assert_problem(upload(client, png_bytes(), key="nobody-holds-this"), 401, "not-authenticated")
    assert_problem(upload(client, png_bytes(), key="operator-key"), 403, "forbidden")
    assert_problem(upload(client, png_bytes(), key="clerk-key"), 403, "forbidden")  # clerks read, not upload
    ref = "mat_" + "a" * 32
    assert_problem(client.get(f"/v1/materials/{ref}", headers={"X-API-Key": "operator-key"}), 403, "forbidden")
    assert row_count(engine) == 0


def test_unknown_material_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/materials/mat_" + "0" * 32, headers={"X-API-Key": "hall-key"})
    assert_problem(response, 404, "unknown-material")


def test_oversize_uploads_are_413_problems(client: TestClient, store: MaterialStore, engine: Engine, root: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    just_over = upload(client, png_bytes() + bytes(4096))  # the store's own limit (4096 here)
    assert_problem(just_over, 413, "payload-too-large")

    def not_reached(*_: Any) -> None:
        raise AssertionError("a body far over the limit must be refused before the store sees it")

    monkeypatch.setattr(store, "save", not_reached)
    far_over = upload(client, png_bytes() + bytes(200_000))  # refused while the body is still arriving
    assert "4096 字节" in assert_problem(far_over, 413, "payload-too-large")["detail"]
    assert stored_files(root) == [] and row_count(engine) == 0


def test_content_not_admitted_is_a_415_problem(client: TestClient, engine: Engine) -> None:
    exe = assert_problem(upload(client, b"MZ\x90\x00" + bytes(60), media_type=PDF), 415, "unsupported-material")
    assert "不是以下类型之一" in exe["detail"]
    assert_problem(upload(client, pdf_bytes(), media_type=PNG), 415, "unsupported-material")
    assert_problem(upload(client, b"", media_type=PNG), 415, "unsupported-material")
    assert row_count(engine) == 0


def test_a_request_without_a_file_field_is_a_422_problem(client: TestClient) -> None:
    assert_problem(upload(client, png_bytes(), field="document"), 422, "invalid-request")
    no_form = client.post("/v1/materials", json={"file": "aGVsbG8="}, headers={"X-API-Key": "hall-key"})
    assert_problem(no_form, 415, "unsupported-media-type")  # not multipart at all (issue 14: was a 422)
    two_files = client.post("/v1/materials", headers={"X-API-Key": "hall-key"},
                            files=[("file", ("a.png", png_bytes(), PNG)), ("file", ("b.png", png_bytes(), PNG))])
    assert_problem(two_files, 422, "invalid-request")


def test_openapi_documents_the_upload(client: TestClient) -> None:
    post = client.get("/openapi.json").json()["paths"]["/v1/materials"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/UploadedMaterialOut")
    assert {"401", "403", "413", "415", "422"} <= set(post["responses"])
    assert PROBLEM_MEDIA_TYPE in post["responses"]["415"]["content"]
