"""SM2 keys and self-signed certificates made with the system's OpenSSL (3.x), for signing-recipe tests.

`cryptography` cannot make SM2 keys; OpenSSL can, and a key made by another implementation is also the
better test of ours.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from certstore.credentials import Credential


def sm2_credential(folder: Path, name: str, common_name: str = "sector") -> Credential:
    """A new SM2 key (PKCS#8 PEM) and its self-signed SM2-with-SM3 certificate, as a `Credential`."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", str(key)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(key), "-sm3", "-subj", f"/CN={common_name}",
                    "-days", "30", "-out", str(cert)], check=True, capture_output=True)
    return Credential(name, cert.read_bytes(), key.read_bytes())
