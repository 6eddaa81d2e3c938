"""Signing in to the operators' console from a test client, reading what its pages carry (and that a page is
accessible and clean for the CSP), and finding on a page what hostile text could make run (`defects`)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway
from gateway.domain.roles import Role

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
# Hostile text for every field a sector, the hall or a person can fill: markup, an event handler, attribute
# breakers; SCRIPT_URL + PAYLOAD is what an href filled from data would run.
PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'><svg onload=alert(3)>"
SCRIPT_URL = "javascript:alert(4)//"
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete",
                  "hx-push-url", "hx-replace-url", "data", "poster", "cite", "background"}
OWN_SCRIPTS = re.compile(r"^/console/static/[\w./-]+\.js$")


def key_of(gateway: Gateway, *roles: Role, name: str = "值班员", **scope: str) -> str:
    """The raw API key of a new identity holding `roles`."""
    return gateway.keys.issue(name, list(roles), **scope)[1]


def sign_in(client: TestClient, key: str, via: str = "key") -> str:
    """Sign the client in (its cookie jar keeps the session); the session's CSRF token."""
    form = client.get("/console/sign-in")
    token = FORM_TOKEN.search(form.text)
    assert token is not None, form.text
    answer = client.post("/console/sign-in", data={"form_token": token[1], "key": key, "via": via},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/console").text)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None and found[1], "the page carries no CSRF token"
    return found[1]


def assert_accessible_and_csp_clean(html: str) -> None:
    assert html.count("<h1") == 1, "one h1 a page"
    assert not re.search(r"\sstyle=|\son[a-z]+=|hx-on", html), "no inline style or handler (the CSP forbids them)"
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/console/static/vendor/htmx.min.js" defer>',
                                                   '<script src="/console/static/console.js" defer>']
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\sid="([^"]+)"', html))
    fields = re.findall(r'<(?:input(?![^>]*type="hidden")|select|textarea)[^>]*>', html)
    assert all(' id="' in field for field in fields), "every visible field has an id its label names"
    assert ids <= set(re.findall(r'<label for="([^"]+)"', html)), "every field has a label"
    assert "<th>" not in html, "every header cell says its scope"


class Page(HTMLParser):
    """The elements of a rendered page: (tag, attributes), and any text inside a <script>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.script_text: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def defects(html: str, *raw: str) -> list[str]:
    """What on the page would run, or take a link away from the console: `raw` (PAYLOAD unless given) as it
    is, an `on…` attribute (the payload's <svg onload>, <img onerror>), a script not our own, a URL attribute not
    our own path."""
    if any(text in html for text in raw or (PAYLOAD,)):
        return ["the raw payload"]
    page, found = Page(html), []
    for tag, attributes in page.elements:
        found += [f"<{tag} {name}=…>" for name in attributes if name.startswith("on")]
        if tag == "script" and not OWN_SCRIPTS.match(attributes.get("src", "")):
            found.append(f"<script src={attributes.get('src')!r}>")
        for name in URL_ATTRIBUTES & attributes.keys():
            value = attributes[name].strip()
            if not (value.startswith(("#", "?")) or (value.startswith("/") and not value.startswith(("//", "/\\")))):
                found.append(f"<{tag} {name}={value[:40]!r}>: not a path of our own")
    return found + [f"script text {text[:40]!r}" for text in page.script_text]
