"""The certificate store: keys, certificates and secrets encrypted at rest, TLS contexts, signing, sealed fields.

Imports nothing of ours. What is public is what `__all__` names, importable from `certstore` itself:
- digests (SHA-256, SM3) and field ciphers (AES-256-GCM, SM4-GCM) behind interfaces (`DIGESTS`, `CIPHERS`,
  `Signer`, `digest`);
- master keys (`MasterKeys.from_env`), envelope encryption, `FieldSealer` for personal data (`is_sealed`);
- the store of certificates and secrets (`CertStore`, handed its tables as `CertTables`, which
  `cert_tables(metadata)` defines on its keeper's metadata), what it answers and refuses, and the credentials
  it gives adapters (`Credential`, `CredentialSource`);
- SM2 with SM3 (`sm2_key`, `sm2_public_key`, `sm2_sign`, `sm2_verify`, `sm2_key_matches`, `Sm2Key`,
  `SM2_DEFAULT_ID`, `is_sm2_key`, `is_sm2_certificate`: keys and certificates `cryptography` cannot load;
  `sm2_encrypt`/`sm2_decrypt`: a content key encrypted to an SM2 certificate's key;
  `sm2_self_signed`: a self-signed SM2 certificate and its new key);
- X.509 (`Subject`, `KEY_ALGORITHMS`, `self_signed`: a new key of any of them and its self-signed certificate),
  TLS client contexts (`client_context`), Ed25519 signing of log checkpoints, and files written once
  (`write_once`).
The modules behind it (`certstore.keyring`, `certstore.store`...) are for this package and its tests.
"""

from certstore.algorithms import CIPHERS, DIGESTS, CryptoError, Signer, digest
from certstore.credentials import Credential, CredentialMissing, CredentialSource, MemoryCredentials, reference_name
from certstore.keyfiles import write_once
from certstore.keyring import DEVELOPMENT_KEY_FILE, FieldSealer, MasterKeyError, MasterKeys, is_sealed
from certstore.signing import decode_signature, encode_signature, load_or_create_signing_key, rewrap_signing_key
from certstore.sm2 import (
    SIGNATURE_ENCODINGS,
    SM2_DEFAULT_ID,
    SignatureEncoding,
    Sm2Key,
    is_sm2_certificate,
    is_sm2_key,
    sm2_decrypt,
    sm2_encrypt,
    sm2_key,
    sm2_key_matches,
    sm2_public_key,
    sm2_self_signed,
    sm2_sign,
    sm2_verify,
)
from certstore.store import (
    CURRENT,
    EXPIRY_THRESHOLDS,
    MAX_OVERLAP_DAYS,
    SECRET,
    CertConflict,
    CertStore,
    CertStoreError,
    CertTables,
    ExpiryWarning,
    SealedValueUnavailable,
    StoredVersion,
    UnknownEntry,
)
from certstore.tables import cert_tables
from certstore.tls import TlsCredentialError, client_context
from certstore.x509 import KEY_ALGORITHMS, CertificateError, Subject, self_signed

__all__ = [
    "CIPHERS", "CURRENT", "DEVELOPMENT_KEY_FILE", "DIGESTS", "EXPIRY_THRESHOLDS", "KEY_ALGORITHMS", "MAX_OVERLAP_DAYS",
    "SECRET",
    "SIGNATURE_ENCODINGS", "SM2_DEFAULT_ID", "SignatureEncoding", "Sm2Key",
    "CertConflict", "CertStore", "CertStoreError", "CertTables", "CertificateError", "Credential",
    "CredentialMissing", "CredentialSource", "CryptoError", "ExpiryWarning", "FieldSealer", "MasterKeyError",
    "MasterKeys", "MemoryCredentials", "SealedValueUnavailable", "Signer", "StoredVersion", "Subject",
    "TlsCredentialError", "UnknownEntry", "cert_tables", "client_context", "decode_signature", "digest",
    "encode_signature", "is_sealed", "load_or_create_signing_key", "reference_name", "rewrap_signing_key",
    "self_signed", "write_once",
    "is_sm2_certificate", "is_sm2_key", "sm2_decrypt", "sm2_encrypt", "sm2_key", "sm2_key_matches", "sm2_public_key",
    "sm2_self_signed", "sm2_sign", "sm2_verify",
]  # fmt: skip
