"""电子证照库 (the province's electronic licence library) simulator: REST/JSON behind a bearer token.

Why it exists: the national platform's hooks (issue 18). The library is the store of every licence issued in
the province (GB/T 36901–36905): issuing systems register a certificate once it is issued, and the hall cites
a licence from it instead of uploading a scan. Not the 就业创业证 issuing system (``e_licence.py``): that one
issues a licence, this one keeps them all. As its page says (docs/sectors/licence_library.md; the contract is
``licence_library.openapi.yaml`` next to this file, also served at ``/openapi.yaml``):

- ``POST /dzzzk/api/v1/licences`` registers an issued certificate (its number, name, holder, issuer,
  validity, case number); ``requestId`` is the idempotency key: the same one again gets the same receipt
  (``duplicate: true``); a malformed one is refused with ``code`` E1001 (a field missing) or E1002 (a field
  of the wrong shape); a number already registered under another request is E1003.
- ``GET /dzzzk/api/v1/licences/{licenceNo}`` answers one licence: issuer, validity, status
  (``valid`` | ``revoked`` | ``expired``, expiry reckoned on the Beijing date) and a document reference.
- ``GET /dzzzk/api/v1/licences?idType=&idNumber=`` answers the holder's licences.

Every answer is ``{"code", "msg", "data"?}``, ``code`` "0" success, business errors with HTTP 200; a missing or
wrong ``Authorization: Bearer`` token is HTTP 401 with code E4010. Tests and the demo put licences on the
shelf with ``shelve`` and revoke one with ``revoke``.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from adapters.simulators.base import (
    BEIJING,
    FaultPlan,
    Handler,
    References,
    Reply,
    Request,
    dig,
    missing_fields,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import RestRoute, RestSimulator, json_reply

__all__ = ["DEFAULT_PORT", "DEFAULT_TOKEN", "OPENAPI_FILE", "Licence", "LicenceLibrarySimulator", "serve"]

DEFAULT_PORT: Final = 8809
DEFAULT_TOKEN: Final = "dzzzk-token"  # the bundle reads it from YIWANG_SECRET_LICENCE_LIBRARY_TOKEN
OPENAPI_FILE: Final = Path(__file__).with_name("licence_library.openapi.yaml")

OK: Final = "0"
MISSING_FIELD: Final = "E1001"
INVALID_FIELD: Final = "E1002"
NUMBER_TAKEN: Final = "E1003"
NOT_FOUND: Final = "E4040"
UNAUTHORISED: Final = "E4010"
REQUIRED_FIELDS: Final = ("requestId", "licenceNo", "licenceName", "holder.name", "holder.idType",
                          "holder.idNumber", "issuer", "issuedAt", "caseNo")
STATUSES: Final = ("valid", "revoked", "expired")


@dataclass(frozen=True)
class Licence:
    """One licence on the library's shelf, as the library keeps it."""

    number: str
    name: str
    holder_name: str
    holder_id_type: str
    holder_id_number: str
    issuer: str
    valid_until: date | None = None  # None: valid for good
    issued_at: str = ""
    case_no: str = ""
    revoked: bool = False

    def status(self, today: date) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.valid_until is not None and self.valid_until < today else "valid"

    def answer(self, today: date) -> dict[str, Any]:
        return {"licenceNo": self.number, "licenceName": self.name,
                "holder": {"name": self.holder_name, "idType": self.holder_id_type,
                           "idNumber": self.holder_id_number},
                "issuer": self.issuer, "validUntil": self.valid_until.isoformat() if self.valid_until else None,
                "issuedAt": self.issued_at, "caseNo": self.case_no, "status": self.status(today),
                "docRef": f"dzzzk://licences/{self.number}"}


class _Malformed(ValueError):
    """A registration whose fields are there but of the wrong shape."""


def _licence_of(document: dict[str, Any]) -> Licence:
    """The licence a registration describes; _Malformed naming the field that is not what the page says."""
    given = {path: dig(document, path) for path in REQUIRED_FIELDS}
    wrong = [path for path, value in given.items() if not isinstance(value, str) or not value.strip()]
    if wrong:
        raise _Malformed(f"字段格式不正确：{'、'.join(wrong)}")
    texts = {path: str(value) for path, value in given.items()}
    valid_until = document.get("validUntil")
    try:
        until = None if valid_until is None else date.fromisoformat(str(valid_until))
    except ValueError:
        raise _Malformed("字段格式不正确：validUntil（应为 yyyy-MM-dd）") from None
    return Licence(number=texts["licenceNo"], name=texts["licenceName"], holder_name=texts["holder.name"],
                   holder_id_type=texts["holder.idType"], holder_id_number=texts["holder.idNumber"],
                   issuer=texts["issuer"], valid_until=until, issued_at=texts["issuedAt"],
                   case_no=texts["caseNo"])


class LicenceLibrarySimulator(RestSimulator):
    """The 电子证照库: registrations of issued licences and lookups; paths under ``/dzzzk/api/v1``.

    ``token``: the bearer token the library issued the gateway (change it to refuse ours).
    """

    label = "licence-library"
    sector = "licence_library"
    server_version = "DzzzkSim/1.0"
    extra_counters = ("registrations_received", "lookups_received")
    reference_prefix = "ZK"
    openapi_file = OPENAPI_FILE
    canned_success = {"code": OK, "msg": "成功", "data": {"receiptNo": "ZK000000000000", "duplicate": False}}

    def __init__(self, port: int = 0, decision_delay_ms: int = 0, *, token: str = DEFAULT_TOKEN,
                 host: str = "127.0.0.1") -> None:
        super().__init__(host, port, decision_delay_ms, lambda fields: (True, "已归集"))
        self.token = token
        self._lock = threading.Lock()
        self._shelf: dict[str, Licence] = {}
        self._receipts: dict[str, tuple[str, str]] = {}  # requestId -> (licenceNo, receiptNo)
        self._receipt_numbers = References(self.reference_prefix, self.reference_width)

    # ----- what tests and the demo use

    def shelve(self, licence: Licence) -> None:
        """Put a licence on the shelf as if an issuing system had registered it."""
        with self._lock:
            self._shelf[licence.number] = licence

    def revoke(self, number: str) -> None:
        """注销: the licence stays on the shelf, its status `revoked`."""
        with self._lock:
            self._shelf[number] = replace(self._shelf[number], revoked=True)

    def licence(self, number: str) -> Licence | None:
        with self._lock:
            return self._shelf.get(number)

    def shelf(self) -> list[Licence]:
        """Every licence on the shelf, in the order filed."""
        with self._lock:
            return list(self._shelf.values())

    # ----- routes

    def _routes(self) -> list[RestRoute]:
        licences = "/dzzzk/api/v1/licences"
        return [
            RestRoute("POST", licences, self._authorised(self._json_handler(self._register))),
            RestRoute("GET", licences, self._authorised(self._by_holder)),
            RestRoute("GET", licences + "/{licenceNo}", self._authorised(self._by_number)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"code": f"E{code}", "msg": message})

    def _answer_of(self, code: str, message: str, status: int = HTTPStatus.OK) -> Reply:
        if code != OK:
            self._counters.bump("business_errors")
        return json_reply(status, {"code": code, "msg": message})

    def _ok(self, data: dict[str, Any]) -> Reply:
        return json_reply(HTTPStatus.OK, {"code": OK, "msg": "成功", "data": data})

    def _authorised(self, handler: Handler) -> Handler:
        def guarded(request: Request) -> Reply:
            given = (request.header("Authorization") or "").removeprefix("Bearer ").strip()
            if given and hmac.compare_digest(given.encode(), self.token.encode()):
                return handler(request)
            self._counters.bump("auth_failures")
            return json_reply(HTTPStatus.UNAUTHORIZED, {"code": UNAUTHORISED, "msg": "访问令牌无效或缺失"})

        return guarded

    @staticmethod
    def _today() -> date:
        return datetime.now(BEIJING).date()

    # ----- registration (what an issued certificate's subscription sends)

    def _register(self, request: Request, document: dict[str, Any]) -> Reply:
        self._counters.bump("registrations_received")
        missing = missing_fields(document, REQUIRED_FIELDS)
        if missing:
            return self._answer_of(MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}")
        try:
            licence = _licence_of(document)
        except _Malformed as exc:
            return self._answer_of(INVALID_FIELD, str(exc))
        with self._lock:
            return self._file(str(document["requestId"]), licence)

    def _file(self, request_id: str, licence: Licence) -> Reply:
        """Under the lock: a repeated requestId gets its receipt again; a number taken by another is refused."""
        known = self._receipts.get(request_id)
        if known is not None:
            return self._ok({"licenceNo": known[0], "receiptNo": known[1], "duplicate": True})
        if licence.number in self._shelf:
            return self._answer_of(NUMBER_TAKEN, f"证照编号{licence.number}已归集，不能重复登记")
        receipt = self._receipt_numbers.next()
        self._shelf[licence.number] = licence
        self._receipts[request_id] = (licence.number, receipt)
        return self._ok({"licenceNo": licence.number, "receiptNo": receipt, "duplicate": False})

    # ----- lookups (what the hall's citation of a licence asks)

    def _by_number(self, request: Request) -> Reply:
        self._counters.bump("lookups_received")
        licence = self.licence(request.params["licenceNo"])
        if licence is None:
            return self._answer_of(NOT_FOUND, "未查询到该电子证照")
        return self._ok(licence.answer(self._today()))

    def _by_holder(self, request: Request) -> Reply:
        self._counters.bump("lookups_received")
        id_type, id_number = request.query_param("idType"), request.query_param("idNumber")
        if not id_type or not id_number:
            return self._answer_of(MISSING_FIELD, "缺少必填项：idType、idNumber")
        with self._lock:
            held = [lic for lic in self._shelf.values()
                    if lic.holder_id_type == id_type and lic.holder_id_number == id_number]
        today = self._today()
        return self._ok({"total": len(held), "licences": [lic.answer(today) for lic in held]})


# --------------------------------------------------------------------------- foreground use


def serve(port: int = DEFAULT_PORT, decision_delay_ms: int = 0, token: str = DEFAULT_TOKEN,
          fault: FaultPlan | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    serve_forever(LicenceLibrarySimulator(port, decision_delay_ms, token=token), "电子证照库 (REST + Bearer)", fault)


if __name__ == "__main__":
    run_cli("电子证照库 REST/JSON simulator", serve, DEFAULT_PORT, LicenceLibrarySimulator.fault_modes)
