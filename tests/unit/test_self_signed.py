"""`certstore.self_signed`: a new key pair and a self-signed certificate for it, of each key algorithm the store
makes — what the far-side ferry agent's `yiwang ferry init` hands the near side to pin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from certstore import KEY_ALGORITHMS, CertificateError, self_signed
from certstore.x509 import certificate_key_algorithm, check_pair, read_certificates, read_private_key

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_the_key_belongs_to_its_certificate_which_names_it_and_lasts_as_asked(algorithm: str) -> None:
    certificate_pem, key_pem = self_signed("mz-agent", algorithm, 30, organization="Yiwang ferry", now=NOW)
    (certificate,) = read_certificates(certificate_pem)
    check_pair(certificate, read_private_key(key_pem))  # raises when the key is another's
    assert certificate_key_algorithm(certificate) == algorithm
    assert certificate.subject == certificate.issuer
    assert certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "mz-agent"
    assert certificate.not_valid_before_utc == NOW - timedelta(hours=1)
    assert certificate.not_valid_after_utc == NOW - timedelta(hours=1) + timedelta(days=30)


def test_two_calls_make_two_keys() -> None:
    assert self_signed("a", "ec-p256")[1] != self_signed("a", "ec-p256")[1]


def test_an_unknown_algorithm_is_refused_by_name() -> None:
    with pytest.raises(CertificateError, match="dsa-1024"):
        self_signed("a", "dsa-1024")
