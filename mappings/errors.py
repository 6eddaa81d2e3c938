"""The errors the mapping package raises: callers classify them, so each is its own type."""

from __future__ import annotations


class MappingError(ValueError):
    """A mapping file is wrong (raised at compile time) or a message does not fit it (at run time).

    The message always starts with the mapping's source name and the field's location in the
    file, e.g. ``submit_case.mapping.yaml: request.sqrxm: case.applicant.name is missing``.
    """


class BusinessError(Exception):
    """The sector answered successfully at the protocol level but refused the request (e.g. fhdm 1001).

    `auth`: the code is one the mapping lists under `business_error.auth`: the refusal is of our credentials
    (a wrong signature, an unknown app key), not of the request.
    `retryable`: the code is one listed under `business_error.retryable` (the sector is busy): asking again may
    get another answer.
    `way`: a final refusal's way forward (`supplement`, `return` or `back_office`) as the mapping declares it
    under `business_error.final` or `otherwise`; None when the mapping declares no ways (the refusal is left to
    an operator). `missing`: what the sector said is missing (a `supplement` code's `missing` path), as sent."""

    def __init__(self, code: str, message: str, *, auth: bool = False, retryable: bool = False,
                 way: str | None = None, missing: tuple[str, ...] = ()) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.auth = auth
        self.retryable = retryable
        self.way = way
        self.missing = missing


class HostileXmlError(ValueError):
    """XML that carries a DOCTYPE (and so possibly entity bombs or external references)."""
