"""The certificate store: keys, certificates and secrets encrypted at rest, TLS contexts, signing, sealed fields.

Imports nothing of ours. Public entry points:
- `certstore.algorithms`: digests (SHA-256, SM3), field ciphers (AES-256-GCM, SM4-GCM), the Signer interface.
- `certstore.keyring`: master keys (`MasterKeys.from_env`), envelope encryption, `FieldSealer` for personal data.
"""
