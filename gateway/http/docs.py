"""The interactive API docs at GET /docs, served whole by the gateway: they work on an intranet with no internet.

The page is FastAPI's Swagger UI page (`get_swagger_ui_html`); its script, stylesheet and icon come from the
`swagger_ui_bundle` package (PyPI `swagger-ui-bundle-v2`, Swagger UI 5: the only line that reads OpenAPI 3.1)
and are served from /docs/assets/<Swagger UI version>/<file>, so a new version is a new URL and an asset may be
cached for good. Nothing is copied into the repository. There is no /redoc: no PyPI package ships ReDoc's
assets alone, and one offline viewer is enough.

GET /openapi.json is served here too, from a worker thread: the document lists the named queries of the
active bundles, and asking the live registry may query the database and build an adapter, which must not
block the event loop (FastAPI's own route is async). All three are open to everyone, GET (and HEAD) only:
the document says no more than the routes do.
The page carries a Content-Security-Policy allowing scripts and styles from this origin only, plus the one
inline initialiser FastAPI writes, admitted by its SHA-256 hash; the initialiser turns the online validator
badge off (it would fetch an image from the internet).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
ASSETS_PATH = f"{DOCS_PATH}/assets"
# The files the page uses, and how they are served; no other file of the package is reachable.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
SWAGGER_UI_PARAMETERS = {
    "validatorUrl": None,  # no badge from the internet's validator
    "docExpansion": "none",  # ~75 operations: the tags first
    "filter": True,
    "tryItOutEnabled": False,
    "persistAuthorization": False,  # a key never rests in the browser's storage (halls share terminals)
}
IMMUTABLE = "public, max-age=31536000, immutable"  # the version is in the URL
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_ui_version() -> str:
    """The Swagger UI version the installed package ships (its folder is `swagger-ui-<version>`)."""
    return Path(str(swagger_ui_path)).name.removeprefix("swagger-ui-")


def asset_url(name: str) -> str:
    return f"{ASSETS_PATH}/{swagger_ui_version()}/{name}"


def docs_page(openapi_url: str, title: str) -> tuple[bytes, str]:
    """The /docs page and the Content-Security-Policy that lets it run and nothing else."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title,
                               swagger_js_url=asset_url("swagger-ui-bundle.js"),
                               swagger_css_url=asset_url("swagger-ui.css"),
                               swagger_favicon_url=asset_url("favicon-32x32.png"),
                               swagger_ui_parameters=SWAGGER_UI_PARAMETERS).body
    return bytes(page), content_security_policy(bytes(page).decode())


def content_security_policy(html: str) -> str:
    """Scripts and styles from this origin only, and the page's own inline scripts by hash. Swagger UI's icons
    are data: URIs in its stylesheet; "try it out" calls this origin."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _INLINE_SCRIPT.findall(html))
    return ("default-src 'none'; "
            f"script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def install_docs(app: FastAPI) -> None:
    """GET /openapi.json, /docs and its assets. The app is made with `openapi_url=None, docs_url=None,
    redoc_url=None`: FastAPI's own pages load Swagger UI and ReDoc from a CDN."""
    page, policy = docs_page(OPENAPI_PATH, f"{app.title} · API 文档")
    router = APIRouter(include_in_schema=False)

    @router.get(OPENAPI_PATH)
    def openapi() -> JSONResponse:  # a plain def: FastAPI runs it in a worker thread
        return JSONResponse(app.openapi(), headers={"Cache-Control": "no-cache", **SAFE_HEADERS})

    @router.get(DOCS_PATH)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache",
                                           "X-Frame-Options": "DENY", **SAFE_HEADERS})

    @router.get(ASSETS_PATH + "/{version}/{name}")
    def asset(version: str, name: str) -> FileResponse:
        media_type = ASSET_TYPES.get(name)
        if media_type is None or version != swagger_ui_version():
            raise HTTPException(404)
        return FileResponse(Path(str(swagger_ui_path)) / name, media_type=media_type,
                            headers={"Cache-Control": IMMUTABLE, **SAFE_HEADERS})

    app.include_router(router)
