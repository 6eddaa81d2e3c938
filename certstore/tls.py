"""TLS client contexts for calling a sector: our client certificate (mTLS) and whom we trust.

`client_context(current, trusted)` gives an `ssl.SSLContext` for httpx (`verify=ctx`) and for requests/urllib3
(zeep's transport): TLS 1.2 or newer, the host name checked, our certificate and key presented when `current`
is given, and only the `trusted` certificates (a sector's CA, or its server certificate itself) as trust
anchors when given — otherwise the system's trust store.

`ssl` loads a key only from a file. The key goes through an anonymous in-memory file (`memfd_create`, Linux)
that never has a name on any disk; elsewhere through a file in a fresh 0700 directory, 0600, unlinked as soon
as it is loaded.

SM2 credentials are for signatures only: they are refused as a client certificate (OpenSSL's TLS with SM2,
RFC 8998, is not what sector systems here speak; their SM2 is in message signatures).
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from certstore.credentials import Credential
from certstore.sm2 import is_sm2_certificate


class TlsCredentialError(ValueError):
    """A credential that cannot be used for TLS (no key, a key not matching its certificate, not PEM)."""


def client_context(current: Credential | None = None, trusted: Sequence[Credential] | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context presenting `current` (if any) and trusting `trusted` (default: the system)."""
    anchors = "".join(c.certificate_pem.decode("ascii") for c in trusted) if trusted else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=anchors)
    except ssl.SSLError as exc:
        raise TlsCredentialError(f"trusted certificates are not usable PEM: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if anchors:
        # A sector's own server certificate (not only its CA) may be what we pin: let it anchor the chain.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if current is not None:
        _present(context, current)
    return context


def _present(context: ssl.SSLContext, credential: Credential) -> None:
    if credential.private_key_pem is None:
        raise TlsCredentialError(
            f"credential {credential.name!r} has no private key: it cannot be a client certificate")
    if is_sm2_certificate(credential.certificate_pem):
        raise TlsCredentialError(
            f"credential {credential.name!r} is an SM2 certificate: SM2 credentials sign messages (auth type "
            "signature, algorithm sm2-sm3) and are not used for TLS; use an RSA or EC client certificate")
    with _key_file(credential.certificate_pem.rstrip() + b"\n" + credential.private_key_pem) as path:
        try:
            context.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise TlsCredentialError(
                f"credential {credential.name!r}: certificate and key do not load together ({exc.reason or exc})"
            ) from exc


@contextmanager
def _key_file(pem: bytes) -> Iterator[str]:
    """A path `ssl` can read `pem` from, gone when the block ends."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("yiwang-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    folder = tempfile.mkdtemp(prefix="yiwang-tls-")  # 0700: no one else may even list it
    path = os.path.join(folder, "chain.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
