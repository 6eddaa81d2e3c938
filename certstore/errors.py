"""The certificate store's input error, apart so that the X.509 and SM2 modules can both raise it."""


class CertificateError(ValueError):
    """Input that is not a usable certificate, key or PKCS#12 file (or does not open with its password)."""
