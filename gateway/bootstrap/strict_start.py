"""Strict start: in production (`YIWANG_ENVIRONMENT=production`) no process runs on a secret anybody can read
in this repository, nor on the development master key kept beside the data it protects.

What is refused, each finding naming the setting (or the bundle, version, field and reference) and why,
never the value:
- `YIWANG_MATERIAL_LINK_KEY`, `YIWANG_BLIND_INDEX_KEY` or a key of `YIWANG_MASTER_KEY`/`_FILE` equal to a
  value the repository publishes as a credential (gateway/security/published_secrets.py). Left unset, the first two
  are key files made at random on first start, which is fine.
- No master key configured (the development key `var/master.key` would be used, or made), or a configured
  ring whose *current* key is that development key. An older key in the ring may be the development one:
  that is how data sealed under it moves to the new key (`yiwang certs rewrap`).
- An active bundle's secret, as its reference resolves now, equal to a published value: the `auth` password,
  token, client secret or HMAC secret, and `results.callback_auth.secret`, the key the sector signs its
  callbacks with. User names, client ids and key ids identify, they are not secrets, and are not checked; a
  reference that does not resolve is left to the adapter's build, which names it.

When: `refuse_unsafe_settings` before a start makes anything (`build_gateway`: `yiwang serve`, each of its
API processes, `yiwang worker`, the demo); `refuse_published_bundle_secrets` once the secret store is open,
for the versions active then. After the start, the adapter builder checks each bundle version it builds with
`bundle_refused` — an activation as it reaches a process, a replay's pinned version, `yiwang adapters test` —
and refuses to build it: the registry reports the version broken, naming the secret, as it does one whose
secret is missing. The activation itself is not refused: its record stays, and rolling back is the way out.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

from adapters import DESCRIPTOR, Bundle, BundleError, CallbackResults, Problem, SecretRef, SecretRefError
from certstore import DEVELOPMENT_KEY_FILE, MasterKeyError, MasterKeys
from gateway.config import PRODUCTION, ConfigError, Settings
from gateway.sectors.bundle_records import BundleStore, unpacked
from gateway.security.published_secrets import where_published

_AUTH_SECRETS = ("password", "token", "client_secret", "secret")  # the fields of adapters.auth specs holding one
_CALLBACK_KEY = "results.callback_auth.secret"


@dataclass(frozen=True)
class Finding:
    """What may not be used in production (`what`: a setting, or a bundle's field and reference) and why."""

    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.what}: {self.why}"


class StartRefused(ConfigError):
    """A strict start that found what may not be used in production; the message lists every finding."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = tuple(findings)
        lines = "\n".join(f"  - {finding}" for finding in findings)
        super().__init__(f"refusing to start with YIWANG_ENVIRONMENT={PRODUCTION}:\n{lines}")


def refuse_unsafe_settings(settings: Settings) -> None:
    """StartRefused if a key setting is published or the master key is the development one."""
    findings = [*_published_keys(settings), *_development_master_key(settings)]
    if findings:
        raise StartRefused(findings)


def refuse_published_bundle_secrets(store: BundleStore) -> None:
    """StartRefused if an active bundle version's secret is published (`vault:` references need the store's
    resolver installed first)."""
    findings = []
    for sector, version, _ in store.active():
        with unpacked(store.archive(sector, version)) as bundle:
            findings += bundle_findings(bundle)
    if findings:
        raise StartRefused(findings)


def bundle_refused(bundle: Bundle) -> BundleError | None:
    """What the adapter builder raises in production for a bundle with a published secret, else None."""
    problems = [Problem(DESCRIPTOR, None, secret.field, f"{secret.described} {_published_because(secret.where)}; "
                                                         f"not used with YIWANG_ENVIRONMENT={PRODUCTION}")
                for secret in _published_secrets(bundle)]
    return BundleError(problems) if problems else None


def bundle_findings(bundle: Bundle) -> list[Finding]:
    return [Finding(f"bundle {bundle.sector} {bundle.version}: {secret.field} {secret.described}",
                    _published_because(secret.where)) for secret in _published_secrets(bundle)]


@dataclass(frozen=True)
class _PublishedSecret:
    field: str  # e.g. auth.secret
    reference: str  # e.g. env:YIWANG_SECRET_GA_HMAC
    where: str  # where the repository publishes the value

    @property
    def described(self) -> str:
        role = ", the key the sector signs its callbacks with" if self.field == _CALLBACK_KEY else ""
        return f"({self.reference}{role})"


def _published_secrets(bundle: Bundle) -> Iterator[_PublishedSecret]:
    for field, reference in _secret_references(bundle):
        try:
            where = where_published(reference.load().reveal())
        except SecretRefError:  # not resolvable here: the adapter's build says so, naming it
            continue
        if where is not None:
            yield _PublishedSecret(field, reference.ref, where)


def _secret_references(bundle: Bundle) -> Iterator[tuple[str, SecretRef]]:
    for name in _AUTH_SECRETS:
        reference = getattr(bundle.auth, name, None)
        if isinstance(reference, SecretRef):
            yield f"auth.{name}", reference
    if isinstance(bundle.results, CallbackResults) and bundle.results.callback_auth.secret is not None:
        yield _CALLBACK_KEY, bundle.results.callback_auth.secret  # a certificate-signed one has no secret


def _published_keys(settings: Settings) -> Iterator[Finding]:
    for name, value in (("YIWANG_MATERIAL_LINK_KEY", settings.material_link_key),
                        ("YIWANG_BLIND_INDEX_KEY", settings.blind_index_key)):
        where = where_published(value) if value else None
        if where is not None:
            yield Finding(name, _published_because(where) + "; set a key of your own (64 random hex digits)")
    if settings.master_key or settings.master_key_file:
        for key_id, key in settings.master_keys().keys:
            text = base64.b64encode(key).decode("ascii")
            where = where_published(text) or where_published(f"{key_id}:{text}")
            if where is not None:
                yield Finding(f"{_master_key_setting(settings)} (key {key_id!r})", _published_because(where))


def _development_master_key(settings: Settings) -> Iterator[Finding]:
    development = settings.var_dir / DEVELOPMENT_KEY_FILE
    if not (settings.master_key or settings.master_key_file):
        yield Finding("YIWANG_MASTER_KEY", f"not set, so the development key {development} would be used (made on "
                                           "first start, kept beside the data it protects); set YIWANG_MASTER_KEY "
                                           "or YIWANG_MASTER_KEY_FILE (`yiwang certs new-master-key` makes one)")
        return
    if not development.is_file():
        return
    try:
        development_key = MasterKeys.parse(development.read_text()).keys[0][1]
    except (MasterKeyError, OSError):  # not a key file we made: nothing to compare with
        return
    current_id, current = settings.master_keys().keys[0]
    if current == development_key:
        yield Finding(f"{_master_key_setting(settings)} (key {current_id!r})",
                      f"its current key is the development key from {development}; put a new key first "
                      "(`yiwang certs new-master-key`), keep this one after it, then `yiwang certs rewrap`")


def _master_key_setting(settings: Settings) -> str:
    return "YIWANG_MASTER_KEY" if settings.master_key else "YIWANG_MASTER_KEY_FILE"


def _published_because(where: str) -> str:
    return f"equals a value published in this repository ({where})"
