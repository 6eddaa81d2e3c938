"""What adapters ask the certificate store for: credentials by reference name.

A bundle names a credential as `cert:NAME` (e.g. `cert:social_security-client` for our client certificate and
key, `cert:social_security-signing` for the sector's certificate that signs its answers). The adapter asks a
`CredentialSource`:
- `current(name)` — the one to use now (sign with it, present it in TLS);
- `trusted(name)` — every certificate under the name still valid: the current one first, then those in their
  rotation overlap window (verify a sector's signature or trust a sector's TLS certificate with any of them).
An adapter compares `current(name).fingerprint` now and then (the source caches) and rebuilds its client
when it changes; calls in flight finish on the old one, so a rotation fails no call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

REFERENCE_PREFIX = "cert:"


class CredentialMissing(LookupError):
    """No usable credential under that name (never imported, retired, or expired)."""


@dataclass(frozen=True)
class Credential:
    name: str
    certificate_pem: bytes  # the leaf certificate, then any chain
    private_key_pem: bytes | None = field(default=None, repr=False)  # unencrypted, in memory only; None: trust only

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.certificate_pem)[0]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf certificate's DER, hex: what changes when the credential is rotated."""
        return hashlib.sha256(self.certificate.public_bytes(Encoding.DER)).hexdigest()


class CredentialSource(Protocol):
    def current(self, name: str) -> Credential: ...

    def trusted(self, name: str) -> Sequence[Credential]: ...


class MemoryCredentials:
    """A fixed set of credentials: for tests and for tools that hold their keys in files."""

    def __init__(self, credentials: Mapping[str, Sequence[Credential]] | None = None) -> None:
        self._by_name: dict[str, list[Credential]] = {k: list(v) for k, v in (credentials or {}).items()}

    def put(self, credential: Credential) -> None:
        """Make `credential` current; the previous ones stay trusted (an overlap with no end)."""
        self._by_name.setdefault(credential.name, []).insert(0, credential)

    def current(self, name: str) -> Credential:
        try:
            return self._by_name[name][0]
        except (KeyError, IndexError):
            raise CredentialMissing(f"no credential named {name!r}") from None

    def trusted(self, name: str) -> Sequence[Credential]:
        return tuple(self._by_name.get(name, ()))


def reference_name(reference: str) -> str:
    """`cert:NAME` → NAME; anything else is a bundle error."""
    if not reference.startswith(REFERENCE_PREFIX) or not reference[len(REFERENCE_PREFIX):]:
        raise ValueError(f"a credential reference is `cert:NAME`, got {reference!r}")
    return reference[len(REFERENCE_PREFIX):]

