"""SM2 with SM3 (certstore.sm2) against the GM/T 0003.5-2012 Annex A example on the recommended curve, and
cross-checked both ways with the system's OpenSSL: signatures, certificates, keys and CSRs.

GmSSL draws the per-signature nonce k from its own CSPRNG and offers no way to fix it, so the Annex's (r, s)
cannot be reproduced byte for byte: they are checked by verifying them, and the Annex's private key by a
signature of ours that verifies under the Annex's public key.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import keys, pem
from asn1crypto.algos import DSASignature
from cryptography.hazmat.primitives import hashes

from certstore import (
    SM2_DEFAULT_ID,
    Credential,
    SignatureEncoding,
    Sm2Key,
    is_sm2_certificate,
    sm2_decrypt,
    sm2_encrypt,
    sm2_key,
    sm2_public_key,
    sm2_sign,
    sm2_verify,
)
from certstore.errors import CertificateError
from certstore.sm2 import SM2_CURVE_OID, sm2_generate_key, sm2_key_matches, sm2_key_pem
from certstore.tls import TlsCredentialError, client_context
from certstore.x509 import Subject, build_csr, generate_key, read_pkcs12, read_private_key
from tests.support.pki import sm2_credential, sm2_sec1

# GB/T 32918.5 (GM/T 0003.5) recommended curve parameters
P = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF"
A = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"
B = "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"
GX = "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
GY = "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"
# GM/T 0003.5-2012 Annex A: the example on the recommended curve
MESSAGE, ID = b"message digest", b"1234567812345678"
DA = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
XA = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
YA = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
ZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
PUBLIC = bytes.fromhex(XA + YA)
RAW = bytes.fromhex(R + S)
DER = DSASignature({"r": int(R, 16), "s": int(S, 16)}).dump()
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the system's openssl is not installed")


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def annex_key_pem(sec1: bool) -> bytes:
    """dA wrapped as OpenSSL would write it, independently of certstore.sm2's writer."""
    curve = keys.ECDomainParameters(name="named", value=SM2_CURVE_OID)
    ec = keys.ECPrivateKey({"version": "ecPrivkeyVer1", "private_key": int(DA, 16), "parameters": curve,
                            "public_key": b"\x04" + PUBLIC})
    if sec1:
        return bytes(pem.armor("EC PRIVATE KEY", ec.dump()))
    info = keys.PrivateKeyInfo({"version": 0, "private_key": ec,
                                "private_key_algorithm": {"algorithm": "ec", "parameters": curve}})
    return bytes(pem.armor("PRIVATE KEY", info.dump()))


# --- GM/T 0003.5-2012 Annex A -------------------------------------------------------------------------


def test_the_annex_z_value_and_message_digest_computed_independently_with_sm3() -> None:
    entl = (len(ID) * 8).to_bytes(2, "big")
    z = sm3(entl + ID + bytes.fromhex(A + B + GX + GY + XA + YA))
    assert z.hex().upper() == ZA
    assert sm3(z + MESSAGE).hex().upper() == E


@pytest.mark.parametrize(("signature", "encoding"), [(DER, "der"), (RAW, "raw")])
def test_the_annex_signature_verifies_and_a_changed_byte_does_not(signature: bytes, encoding: SignatureEncoding
                                                                  ) -> None:
    assert sm2_verify(PUBLIC, MESSAGE, signature, signer_id=ID, encoding=encoding)
    assert not sm2_verify(PUBLIC, MESSAGE + b"!", signature, signer_id=ID, encoding=encoding)
    assert not sm2_verify(PUBLIC, MESSAGE, signature, signer_id=b"1234567812345679", encoding=encoding)
    assert not sm2_verify(PUBLIC, MESSAGE, signature, signer_id=None, encoding=encoding)  # no Z: another digest
    tampered = bytearray(signature)
    tampered[-1] ^= 0x01
    assert not sm2_verify(PUBLIC, MESSAGE, bytes(tampered), signer_id=ID, encoding=encoding)


@pytest.mark.parametrize("sec1", [False, True], ids=["pkcs8", "sec1"])
def test_the_annex_private_key_signs_what_its_public_key_verifies(sec1: bool) -> None:
    key = sm2_key(annex_key_pem(sec1))
    assert key == Sm2Key(bytes.fromhex(DA), PUBLIC) and sm2_key_matches(key, PUBLIC)
    encodings: tuple[SignatureEncoding, ...] = ("der", "raw")
    for encoding in encodings:
        signature = sm2_sign(key, MESSAGE, signer_id=ID, encoding=encoding)
        assert sm2_verify(PUBLIC, MESSAGE, signature, signer_id=ID, encoding=encoding)
    assert len(sm2_sign(key, MESSAGE, encoding="raw")) == 64
    assert not sm2_key_matches(sm2_generate_key(), PUBLIC)


def test_our_pkcs8_writer_round_trips_and_bad_keys_are_refused_readably() -> None:
    key = sm2_key(annex_key_pem(False))
    assert sm2_key(sm2_key_pem(key)) == key
    with pytest.raises(CertificateError, match="expected PEM"):
        sm2_key(b"not a key")
    with pytest.raises(CertificateError, match="got CERTIFICATE"):
        sm2_key(sm2_credential("a certificate")[0])


# --- the system's OpenSSL, both ways ---------------------------------------------------------------------


def openssl(*args: str | Path, data: bytes | None = None) -> bytes:
    done = subprocess.run([OPENSSL or "openssl", *map(str, args)], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture(scope="module")
def openssl_credential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SM2 key and its self-signed certificate made by OpenSSL (key.pem, cert.pem, pub.pem)."""
    folder = tmp_path_factory.mktemp("openssl-sm2")
    openssl("genpkey", "-algorithm", "SM2", "-out", folder / "key.pem")
    openssl("req", "-x509", "-new", "-key", folder / "key.pem", "-sm3", "-sigopt", f"distid:{ID.decode()}",
            "-subj", "/C=CN/O=OpenSSL side/CN=sm2 cross-check", "-days", "2", "-out", folder / "cert.pem")
    openssl("pkey", "-in", folder / "key.pem", "-pubout", "-out", folder / "pub.pem")
    return folder


@needs_openssl
@pytest.mark.parametrize("signer_id", [SM2_DEFAULT_ID, b"ALICE123@YAHOO.COM"], ids=["default-id", "other-id"])
def test_signatures_cross_check_with_openssl_both_ways(openssl_credential: Path, tmp_path: Path,
                                                         signer_id: bytes) -> None:
    folder, message = openssl_credential, "一网通办 SM2 cross-check".encode()
    (tmp_path / "message").write_bytes(message)
    distid = ("-sigopt", f"distid:{signer_id.decode()}")
    key = sm2_key((folder / "key.pem").read_bytes())  # OpenSSL's PKCS#8 key, read by us
    assert is_sm2_certificate((folder / "cert.pem").read_bytes())
    assert sm2_key_matches(key, sm2_public_key((folder / "cert.pem").read_bytes()))

    (tmp_path / "ours.sig").write_bytes(sm2_sign(key, message, signer_id=signer_id))
    verified = openssl("dgst", "-sm3", "-verify", folder / "pub.pem", *distid, "-signature", tmp_path / "ours.sig",
                       tmp_path / "message")
    assert b"Verified OK" in verified

    theirs = openssl("dgst", "-sm3", "-sign", folder / "key.pem", *distid, tmp_path / "message")
    public = sm2_public_key((folder / "cert.pem").read_bytes())
    assert sm2_verify(public, message, theirs, signer_id=signer_id)
    assert not sm2_verify(public, message, theirs, signer_id=signer_id[::-1])


@needs_openssl
def test_our_keys_certificates_and_csrs_are_what_openssl_accepts(tmp_path: Path) -> None:
    certificate, key_pem = sm2_credential("made by our factory")
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(sm2_sec1(key_pem))
    assert b"OK" in openssl("verify", "-CAfile", tmp_path / "cert.pem", tmp_path / "cert.pem")
    openssl("pkey", "-in", tmp_path / "key.pem", "-check", "-noout")
    assert sm2_key((tmp_path / "key.pem").read_bytes()) == sm2_key(key_pem)

    key = generate_key("sm2")
    assert isinstance(key, Sm2Key)
    request = build_csr(key, Subject("yiwang.example", organization="包头市政务服务局", sans=("127.0.0.1",)))
    # OpenSSL 3.0 checks a CSR's SM2 signature with no signer ID unless told; ours carries the default one,
    # as GM/T 0015 certificates do. (`req -verify` exits 0 either way: the words are what count.)
    checked = subprocess.run([OPENSSL or "openssl", "req", "-verify", "-noout", "-text", "-vfyopt",
                              f"distid:{SM2_DEFAULT_ID.decode()}"], input=request, capture_output=True, check=False)
    assert b"verify OK" in checked.stdout + checked.stderr and b"SM2-with-SM3" in checked.stdout
    assert b"IP Address:127.0.0.1" in checked.stdout


def test_an_sm2_credential_is_refused_as_a_tls_client_certificate() -> None:
    certificate, key = sm2_credential("sm2 client")
    with pytest.raises(TlsCredentialError, match="SM2 certificate: SM2 credentials sign messages"):
        client_context(Credential("e-licence-client", certificate, key))


@needs_openssl
def test_an_encrypted_sm2_key_and_an_sm2_pkcs12_file_are_refused_with_what_to_do(openssl_credential: Path,
                                                                                 tmp_path: Path) -> None:
    folder = openssl_credential
    locked = openssl("pkey", "-in", folder / "key.pem", "-aes256", "-passout", "pass:pw")
    with pytest.raises(CertificateError, match="must be imported unencrypted"):
        read_private_key(locked, b"pw")
    openssl("pkcs12", "-export", "-in", folder / "cert.pem", "-inkey", folder / "key.pem", "-passout", "pass:pw",
            "-out", tmp_path / "sm2.p12")
    with pytest.raises(CertificateError, match="import its certificate and key as PEM"):
        read_pkcs12((tmp_path / "sm2.p12").read_bytes(), b"pw")


def test_a_content_key_encrypted_to_a_certificate_opens_only_with_its_key() -> None:
    certificate, key_pem = sm2_credential("recipient")
    content_key = bytes(range(16))
    ciphertext = sm2_encrypt(sm2_public_key(certificate), content_key)
    assert content_key not in ciphertext and sm2_decrypt(sm2_key(key_pem), ciphertext) == content_key
    assert sm2_encrypt(sm2_public_key(certificate), content_key) != ciphertext  # a fresh ephemeral key each time
    _other_certificate, other_key = sm2_credential("someone else")
    changed = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    for key, data in ((other_key, ciphertext), (key_pem, changed), (key_pem, ciphertext[:40]), (key_pem, b"")):
        with pytest.raises(CertificateError, match="SM2 decryption failed"):
            sm2_decrypt(sm2_key(key), data)
    for plaintext in (b"", b"x" * 256):
        with pytest.raises(CertificateError, match="1 to 255 bytes"):
            sm2_encrypt(sm2_public_key(certificate), plaintext)
    with pytest.raises(CertificateError, match="not a point"):
        sm2_encrypt(b"\0" * 64, content_key)
