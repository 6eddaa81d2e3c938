"""SM2 test keys and self-signed certificates made by the system's OpenSSL (``genpkey -algorithm SM2``,
``req -x509 -sm3`` with the default distinguishing ID), so the tests never use the code they check.

Made once per name and process (OpenSSL takes tens of milliseconds a pair)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Sm2Credential:
    """An SM2 private key (PKCS#8 PEM) and its self-signed SM2-with-SM3 certificate (PEM)."""

    key_pem: bytes
    cert_pem: bytes


@cache
def sm2_credential(common_name: str) -> Sm2Credential:
    with tempfile.TemporaryDirectory() as folder:
        key, cert = Path(folder, "key.pem"), Path(folder, "cert.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(key), "-sm3", "-sigopt",
                        "distid:1234567812345678", "-subj", f"/CN={common_name}/O=Yiwang test PKI", "-days", "30",
                        "-out", str(cert)], check=True, capture_output=True)
        return Sm2Credential(key.read_bytes(), cert.read_bytes())
