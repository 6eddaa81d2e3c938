"""Values this repository publishes as credentials: whoever reads it knows them, so no deployment may use them.

The simulators' default credentials (and the demo, the tests and the benchmark, which give them to the
gateway as a deployment would), and every key, password or secret a test, a document or an example sets.
Strict start (gateway/bootstrap/strict_start.py) refuses a secret equal to one of them, compared without regard to
case or surrounding blanks.

This is the one list. It does not drift: tests/unit/test_published_secrets.py reads the repository (Python
files parsed, Markdown and YAML read as text) for values used as credentials — given to a `YIWANG_SECRET_*`
or key setting, to a `secret`, `password`, `client_secret`, `callback_secret` or `token` parameter, or to a
constant named `…_SECRET` or `…_PASSWORD` — and fails, naming the value's place, when one is missing here
or when a value here is published nowhere any more. The text beside each value says where it is published
(the refusal names that place, never the value).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

PUBLISHED_SECRETS: Final[Mapping[str, str]] = MappingProxyType({
    "ga-secret": "the 公安 simulator's default HMAC secret (adapters/simulators/public_security.py)",
    "mz-secret": "the 民政 simulator's default password (adapters/simulators/civil_affairs.py)",
    "s3cret": "the 公积金 simulator's default client secret (adapters/simulators/housing_fund.py)",
    "yiwang": "the 公积金 simulator's default client id (adapters/simulators/housing_fund.py)",
    "jy-secret": "the HMAC-SHA256 signing sector simulator's default secret (adapters/simulators/SECTORS.md)",
    "jz-secret": "the SM3 form-signing sector simulator's default key (adapters/simulators/SECTORS.md)",
    "dzzzk-token": "the licence library simulator's default bearer token (adapters/simulators/SECTORS.md)",
    "hcp-token": "the 好差评 rating-platform simulator's default bearer token (adapters/simulators/rating_platform.py)",
    "cd" * 32: "a material-link key of the tests (tests/integration/test_material_transport.py)",
    "sealed": "a webhook secret of the tests (tests/integration/test_retention.py)",
    "emp-secret": "a signing-recipe secret of the tests (tests/integration/test_signing_over_http.py)",
    "s3cr3t-组合": "a signing-recipe secret of the tests (tests/unit/test_signing_recipes.py)",
    "not-the-gateways-secret": "a 公安 simulator secret of the tests (tests/integration/test_signing_over_http.py)",
    "wrong-signing-secret": "a wrong signing secret of the tests (tests/unit/test_signing_recipes.py)",
    "rotated-during-maintenance": "a rotated 公积金 client secret of the tests (tests/integration/test_breakers.py)",
})
_BY_NORMAL_FORM: Final = {value.strip().casefold(): where for value, where in PUBLISHED_SECRETS.items()}


def where_published(value: str) -> str | None:
    """Where the repository publishes `value` as a credential, or None if it does not."""
    return _BY_NORMAL_FORM.get(value.strip().casefold())
