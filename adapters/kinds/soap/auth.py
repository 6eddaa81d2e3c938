"""How a SOAP adapter authenticates: the descriptor's `auth` (`adapters.auth`) as zeep WS-Security and requests.

The forms a SOAP bundle may name are the kind's `auth_forms` (none, basic, wsse_username_token); each is
turned here into what zeep and requests install, secrets resolved when the adapter is built.
Imports `adapters.auth`, `adapters.kinds.common`; never another kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from zeep.wsse.username import UsernameToken

from adapters.auth import AuthSpec, AuthSpecError, BasicAuthSpec, NoAuth, WsseSpec, resolve_text
from adapters.kinds.common import basic_header
from adapters.secrets import Secret


class _RequestsHeaderAuth(requests.auth.AuthBase):
    """requests' counterpart of `HeaderAuth`: the header value stays a `Secret`."""

    def __init__(self, value: Secret) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value.reveal()
        return request


@dataclass(frozen=True)
class SoapAuth:
    """What a SOAP adapter installs: a zeep WS-Security header and/or a requests session auth."""

    wsse: UsernameToken | None = None
    http: requests.auth.AuthBase | None = None


def soap_auth(spec: AuthSpec) -> SoapAuth:
    """zeep/requests authentication for `spec`, secrets resolved now (`SecretRefError` if one is missing)."""
    if isinstance(spec, NoAuth):
        return SoapAuth()
    if isinstance(spec, BasicAuthSpec):
        return SoapAuth(http=_RequestsHeaderAuth(basic_header(resolve_text(spec.username), spec.password.load())))
    if isinstance(spec, WsseSpec):
        # zeep makes a fresh Nonce and Created per message when digesting (replay protection on their side).
        token = UsernameToken(resolve_text(spec.username), spec.password.load().reveal(), use_digest=spec.digest)
        return SoapAuth(wsse=token)
    raise AuthSpecError(f"auth.type: {spec.type} is not a SOAP authentication")
