"""电子证照 (electronic licence) sector simulator: REST/JSON with SM2-signed requests AND SM2-signed answers.

Why it exists: the national-algorithm dialect (issue 17). As its page says (docs/sectors/e_licence.md; the
contract is ``e_licence.openapi.yaml`` next to this file, also served at ``/openapi.yaml``): every request
carries ``X-App-Id``, ``X-Timestamp`` (epoch milliseconds, ±300 s), ``X-Nonce`` (never reused) and
``X-SM2-Signature`` = base64(DER(SM2-SM3 signature, ID ``1234567812345678``)) over
``appId + "|" + timestamp + "|" + body`` (body "" for GET), verified with the certificate the gateway
registered with the sector (``client_certificate_pem``). Every answer of the business API is signed the same
way with the sector's own key (``key_pem``) over ``appId + "|" + X-Timestamp + "|" + answer body``, the
appId echoed in ``X-App-Id``; the sector publishes the matching certificate (``certificate_pem``).

SM2 with GmSSL (``gmssl_pyx``) and keys read with ``asn1crypto``, directly: the sector's system shares no
code with the gateway's ``certstore``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TypeVar

import gmssl_pyx
from asn1crypto import keys, pem, x509

from adapters.simulators.base import (
    BEIJING,
    Case,
    Decider,
    FaultPlan,
    Handler,
    Reply,
    Request,
    missing_fields,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply
from adapters.simulators.signed import Refusal, Verdict

__all__ = ["DEFAULT_APP_ID", "OPENAPI_FILE", "SIGNER_ID", "ELicenceSimulator", "default_decide", "serve",
           "signed_text", "sm2_private_key", "sm2_public_point"]

log = logging.getLogger(__name__)

DEFAULT_APP_ID: Final = "yiwang-gateway"
DEFAULT_PORT: Final = 8806
OPENAPI_FILE: Final = Path(__file__).with_name("e_licence.openapi.yaml")
SIGNER_ID: Final = b"1234567812345678"
_SM2_CURVE: Final = "1.2.156.10197.1.301"
_T = TypeVar("_T")

OK: Final = "0"
MISSING_FIELD: Final = "E1001"
REFUSALS: Final = {  # resultCode and resultMsg of each 401, as the page lists them
    Refusal.MISSING: ("E4011", "缺少签名要素（X-App-Id、X-Timestamp、X-Nonce、X-SM2-Signature）"),
    Refusal.APP: ("E4012", "应用未注册"),
    Refusal.STALE: ("E4013", "时间戳超出允许范围（±300秒）"),
    Refusal.SIGNATURE: ("E4014", "SM2验签失败"),
    Refusal.REPLAY: ("E4015", "重复请求：X-Nonce已使用"),
}
REQUIRED_FIELDS: Final = ("serialNo", "licenceType", "caseNo", "holder.name", "holder.idNumber", "acceptTime")
LICENCE_NAME: Final = "就业创业证（电子证照）"
LICENCE_ISSUER: Final = "包头市政务服务和数据管理局"
LICENCE_YEARS: Final = 5  # an electronic licence is valid five years from the day it is issued (page §3.3)


# --------------------------------------------------------------------------- SM2 (GmSSL, asn1crypto)


def _unarmor(data: bytes, kind: str) -> bytes:
    found, _, der = pem.unarmor(data)
    if found != kind:
        raise ValueError(f"expected PEM {kind}, got {found}")
    return bytes(der)


def sm2_private_key(key_pem: bytes) -> tuple[bytes, bytes]:
    """(private scalar, public point x‖y) of a PKCS#8 SM2 key as ``openssl genpkey -algorithm SM2`` writes it."""
    info = keys.PrivateKeyInfo.load(_unarmor(key_pem, "PRIVATE KEY"))
    if info["private_key_algorithm"]["parameters"].chosen.dotted != _SM2_CURVE:
        raise ValueError("the key is not on the SM2 curve")
    ec = info["private_key"].parsed
    return ec["private_key"].contents.rjust(32, b"\0")[-32:], bytes(ec["public_key"].native)[1:]


def sm2_public_point(certificate_pem: bytes) -> bytes:
    """The public point x‖y (64 bytes) of an SM2 certificate."""
    spki = x509.Certificate.load(_unarmor(certificate_pem, "CERTIFICATE"))["tbs_certificate"]["subject_public_key_info"]
    if spki["algorithm"]["parameters"].chosen.dotted != _SM2_CURVE:
        raise ValueError("the certificate's key is not on the SM2 curve")
    return bytes(spki["public_key"].native)[1:]


def signed_text(app_id: str, timestamp: str, body: bytes) -> bytes:
    """appId|timestamp|body (the body as sent, bytes)."""
    return f"{app_id}|{timestamp}|".encode() + body


def _readable(read: Callable[[bytes], _T], pem: bytes) -> _T:
    """``read(pem)``, or ELicenceKeyError saying the key or certificate is unusable."""
    try:
        return read(pem)
    except (ValueError, TypeError, KeyError) as exc:
        raise ELicenceKeyError(f"e_licence simulator: unusable SM2 key or certificate ({exc})") from None


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """A listed material not provided: refused; otherwise issued."""
    materials = fields.get("materials") or []
    lacking = [str(m.get("name", "")) for m in materials if isinstance(m, dict) and m.get("provided") is False]
    if lacking:
        return False, f"证照签发依据材料不全：{'、'.join(lacking)}，不予签发"
    return True, "电子证照已签发，已归集至电子证照库"


# --------------------------------------------------------------------------- the simulator


class ELicenceKeyError(ValueError):
    """Keys or certificates the simulator cannot use."""


class ELicenceSimulator(RestSimulator):
    """The 电子证照 service: licence issuance applications and their state; paths under ``/dzzz/api/v1``.

    ``client_certificate_pem``: the gateway's SM2 certificate (requests must verify with it);
    ``key_pem``: the sector's own SM2 key (PKCS#8) that signs every answer; ``certificate_pem``: the
    sector's certificate (what it hands the gateway), kept as ``certificate_pem``.
    Refusals to rehearse: ``register_client`` (another certificate: our signatures no longer verify) and
    ``verdict`` (adapters/simulators/signed.py: a drifted clock, every nonce seen).
    """

    label = "e-licence"
    sector = "e_licence"
    server_version = "DzzzSim/1.0"
    extra_counters = ("answers_signed", "licences_fetched")
    reference_prefix = "DZ"
    openapi_file = OPENAPI_FILE
    canned_success = {"resultCode": OK, "resultMsg": "受理成功", "data": {"issueId": "DZ000000000000"}}

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        client_certificate_pem: bytes,
        key_pem: bytes,
        certificate_pem: bytes | None = None,
        app_id: str = DEFAULT_APP_ID,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._client_public = _readable(sm2_public_point, client_certificate_pem)
        self._private, self._public = _readable(sm2_private_key, key_pem)
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self._app_id = app_id
        self.certificate_pem = certificate_pem
        self.verdict = Verdict(unit_ms=1)

    def register_client(self, certificate_pem: bytes) -> None:
        """Verify requests with this certificate from now on (another client's: ours are refused)."""
        self._client_public = _readable(sm2_public_point, certificate_pem)

    def _routes(self) -> list[RestRoute]:
        issuance = "/dzzz/api/v1/issuance"
        return [
            RestRoute("POST", issuance, self._signed(self._json_handler(self._submit))),
            RestRoute("GET", issuance + "/{issueId}", self._signed(self._status)),
            RestRoute("GET", issuance + "/{issueId}/licence", self._signed(self._licence)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"resultCode": f"E{code}", "resultMsg": message})

    def _answer_of(self, code: str, message: str, status: int = HTTPStatus.OK) -> Reply:
        return json_reply(status, {"resultCode": code, "resultMsg": message})

    def _ok(self, data: dict[str, Any]) -> Reply:
        return json_reply(HTTPStatus.OK, {"resultCode": OK, "resultMsg": "成功", "data": data})

    # ----- signatures

    def sign_answer(self, reply: Reply) -> Reply:
        """X-App-Id, X-Timestamp and X-SM2-Signature over appId|timestamp|body with the sector's key."""
        timestamp = str(int(time.time() * 1000))
        der = gmssl_pyx.sm2_sign(self._private, self._public, signed_text(self._app_id, timestamp, reply.body),
                                 signer_id=SIGNER_ID)
        self._counters.bump("answers_signed")
        signature = base64.b64encode(bytes(der)).decode("ascii")
        return reply._replace(headers=(*reply.headers, ("X-App-Id", self._app_id), ("X-Timestamp", timestamp),
                                       ("X-SM2-Signature", signature)))

    def _signed(self, handler: Handler) -> Handler:
        """Verify, then answer; the answer (a refusal too) signed."""

        def guarded(request: Request) -> Reply:
            refusal = self._refusal(request)
            if refusal is None:
                return self.sign_answer(handler(request))
            log.debug("e-licence simulator refused a request: %s", refusal.value)
            self._counters.bump("auth_failures")
            return self.sign_answer(self._answer_of(*REFUSALS[refusal], status=HTTPStatus.UNAUTHORIZED))

        return guarded

    def _refusal(self, request: Request) -> Refusal | None:
        app_id, timestamp, nonce, signature = (
            request.header(name) or "" for name in ("X-App-Id", "X-Timestamp", "X-Nonce", "X-SM2-Signature")
        )
        if not (app_id and timestamp and nonce and signature):
            return Refusal.MISSING
        if not hmac.compare_digest(app_id.encode(), self._app_id.encode()):
            return Refusal.APP
        if self.verdict.stale(timestamp):
            return Refusal.STALE
        if not self._verifies(signed_text(app_id, timestamp, request.body), signature):
            return Refusal.SIGNATURE
        return Refusal.REPLAY if self.verdict.replayed(nonce) else None

    def _verifies(self, text: bytes, signature: str) -> bool:
        try:
            der = base64.b64decode(signature, validate=True)
            return bool(gmssl_pyx.sm2_verify(self._client_public, text, der, signer_id=SIGNER_ID))
        except (binascii.Error, ValueError, TypeError, gmssl_pyx.GmsslInnerError):
            return False

    # ----- issuance

    def _submit(self, request: Request, document: dict[str, Any]) -> Reply:
        """A new issueId; the same serialNo again gets the same issueId."""
        self._counters.bump("submits_received")
        missing = missing_fields(document, REQUIRED_FIELDS)
        if missing:
            self._counters.bump("business_errors")
            return self._answer_of(MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}")
        case, _ = self._book.apply(str(document["serialNo"]), document)
        return self._ok({"issueId": case.reference})

    def _status(self, request: Request) -> Reply:
        """state WAITING, then ISSUED (licenceNo, issueTime epoch ms) or REFUSED (reason)."""
        self._counters.bump("queries_received")
        case = self._book.get(request.params["issueId"])
        if case is None:
            return self._answer_of("E4040", "签发申请不存在", HTTPStatus.NOT_FOUND)
        decision = self._book.decision(case)
        data: dict[str, Any] = {"issueId": case.reference, "licenceNo": None}
        if decision is None:
            return self._ok(data | {"state": "WAITING", "reason": "待签发", "issueTime": None})
        issued, reason = decision
        data |= {"state": "ISSUED" if issued else "REFUSED", "reason": reason,
                 "issueTime": int(case.decided_at.timestamp() * 1000)}
        if issued:
            data |= {"licenceNo": _licence_no(case.fields, case.reference), "validUntil": _valid_until(case)}
        return self._ok(data)

    def _licence(self, request: Request) -> Reply:
        """The electronic licence an ISSUED application produced (page §3.3); E4041 before it is issued."""
        self._counters.bump("licences_fetched")
        case = self._book.get(request.params["issueId"])
        decision = None if case is None else self._book.decision(case)
        if case is None or decision is None or not decision[0]:
            return self._answer_of("E4041", "电子证照不存在或尚未签发", HTTPStatus.NOT_FOUND)
        holder = case.fields.get("holder") or {}
        return self._ok({"licenceNo": _licence_no(case.fields, case.reference), "licenceName": LICENCE_NAME,
                         "issuer": LICENCE_ISSUER, "validUntil": _valid_until(case),
                         "holder": {"name": holder.get("name"), "idNumber": holder.get("idNumber")},
                         "fileId": f"DZZZ-{case.reference[2:]}.ofd"})


def _licence_no(fields: dict[str, Any], reference: str) -> str:
    return f"{fields.get('licenceType', 'ZZ')}-{reference[2:]}"


def _valid_until(case: Case) -> str:
    """The licence's last valid day (yyyy-MM-dd, Beijing date), LICENCE_YEARS after it was issued."""
    issued = case.decided_at.astimezone(BEIJING).date()
    return issued.replace(year=issued.year + LICENCE_YEARS).isoformat()


# --------------------------------------------------------------------------- foreground use

# What `serve` reads (PEM files): the gateway's certificate, the sector's key and certificate.
ENVIRONMENT: Final = {
    "client_certificate_pem": "YIWANG_SIM_E_LICENCE_CLIENT_CERT",
    "key_pem": "YIWANG_SIM_E_LICENCE_KEY",
    "certificate_pem": "YIWANG_SIM_E_LICENCE_CERT",
}


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C, its SM2 material from the files ``ENVIRONMENT`` names."""
    unset = [variable for variable in ENVIRONMENT.values() if not os.environ.get(variable)]
    if unset:
        raise ValueError(f"the e_licence simulator needs SM2 PEM files named by {', '.join(unset)}")
    pem_of = {argument: Path(os.environ[variable]).read_bytes() for argument, variable in ENVIRONMENT.items()}
    simulator = ELicenceSimulator(port, decision_delay_ms, client_certificate_pem=pem_of["client_certificate_pem"],
                                  key_pem=pem_of["key_pem"], certificate_pem=pem_of["certificate_pem"])
    serve_forever(simulator, "电子证照 (REST + SM2)", fault)


if __name__ == "__main__":
    run_cli("电子证照 REST/JSON SM2 sector simulator", serve, DEFAULT_PORT, ELicenceSimulator.fault_modes)
