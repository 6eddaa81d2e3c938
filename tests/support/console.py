"""Signing in to the operators' console from a test client, and reading what its pages carry (and that a page
is accessible and clean for the CSP)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway
from gateway.domain.roles import Role

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


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
