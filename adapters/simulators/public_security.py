"""公安 (public security) sector simulator: REST with HMAC-signed requests; decisions come back by
calling the gateway, with a polling fallback.

Why it exists: the dialect that turns the flow around. Every request is signed (headers
``X-Ca-Key``, ``X-Ca-Timestamp`` epoch ms within ±300 s, ``X-Ca-Nonce`` never reused,
``X-Ca-Signature`` = Base64(HMAC-SHA256(secret, METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(SHA256(body))))),
and after the decision delay the sector POSTs the decision to a callback URL, signed the same way
with its own key id ``ga-callback``, retrying with backoff (bounded) until a 2xx. Fault modes
``duplicate_callback`` (each callback delivered twice, freshly signed) and ``early_callback`` (the
decision is called back before the submit is answered) test the gateway's ordering and dedup.
The contract is ``public_security.openapi.yaml`` next to this file, also served at ``/openapi.yaml``.

Default credentials (the shipped bundle reads the secret from ``YIWANG_SECRET_GA_HMAC``): key id
``yiwang-gateway``, secret ``ga-secret``; callbacks are signed with key id ``ga-callback`` and, unless
told otherwise, the same secret. Given ``rsa_certificates`` (key id -> PEM certificate), requests must
instead carry an RSA signature (SHA-256; ``rsa_algorithm`` ``rsa-sha256`` = PKCS#1 v1.5, or
``rsa-pss-sha256``) of the same canonical string, made with the key of the certificate their X-Ca-Key names.

Known persons for 户籍 lookups: every well-formed 18-character ID number (record derived from it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.simulators.base import (
    BEIJING,
    COMMON_FAULT_MODES,
    Case,
    Decider,
    FaultPlan,
    Handler,
    NonceCache,
    Reply,
    Request,
    missing_fields,
    person_seed,
    run_cli,
    serve_forever,
)
from adapters.simulators.rest import JSON_CONTENT_TYPE, RestRoute, RestSimulator, json_reply

__all__ = [
    "CALLBACK_KEY_ID",
    "DEFAULT_KEY_ID",
    "DEFAULT_SECRET",
    "OPENAPI_FILE",
    "PublicSecuritySimulator",
    "canonical_request",
    "default_decide",
    "serve",
    "sign",
    "signed_headers",
]

log = logging.getLogger(__name__)

DEFAULT_KEY_ID: Final = "yiwang-gateway"
DEFAULT_SECRET: Final = "ga-secret"
CALLBACK_KEY_ID: Final = "ga-callback"
DEFAULT_PORT: Final = 8804
OPENAPI_FILE: Final = Path(__file__).with_name("public_security.openapi.yaml")

MAX_SKEW_MS: Final = 300_000
CALLBACK_MODES: Final = frozenset({"duplicate_callback", "early_callback"})
CALLBACK_TIMEOUT_S: Final = 2.0
MAX_BACKOFF_MS: Final = 2000
REQUIRED_SUBMIT_FIELDS: Final = ("QQID", "SXBM", "BJBH", "SQR.XM", "SQR.SFZH")
_SIGNATURE_FAILED: Final = "签名验证失败"
# Callbacks go straight to the given address: an http_proxy in the environment must not reroute them.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_SURNAMES: Final = "王李张刘陈杨赵黄周吴"
_GIVEN_NAMES: Final = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军")
_REGIONS: Final = {"1502": "内蒙古自治区包头市", "1501": "内蒙古自治区呼和浩特市", "4401": "广东省广州市"}


# --------------------------------------------------------------------------- signatures


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(SHA256(body)); PATH without the query string."""
    return "\n".join((method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())).encode("utf-8")


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Base64(HMAC-SHA256(secret, canonical))."""
    digest = hmac.new(secret.encode("utf-8"), canonical_request(method, path, timestamp, nonce, body), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """The four X-Ca-* headers for a request sent now with a fresh nonce."""
    timestamp, nonce = str(int(time.time() * 1000)), str(uuid.uuid4())
    return {
        "X-Ca-Key": key_id,
        "X-Ca-Timestamp": timestamp,
        "X-Ca-Nonce": nonce,
        "X-Ca-Signature": sign(secret, method, path, timestamp, nonce, body),
    }


# --------------------------------------------------------------------------- made-up records


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """Not agreed (BTY) when a listed material was not submitted (SFTJ "0"); agreed (TY) otherwise."""
    materials = fields.get("CLQD") or []
    lacking = [str(m.get("CLMC", "")) for m in materials if isinstance(m, dict) and m.get("SFTJ") == "0"]
    if lacking:
        return False, f"材料不齐全：{'、'.join(lacking)}，不予办理"
    return True, "符合条件，准予办理"


def household(id_number: str, seed: int) -> dict[str, str]:
    """A person's made-up 户籍: name, registered address (region from the number), 城镇/农村."""
    name = _SURNAMES[seed % 10] + _GIVEN_NAMES[seed // 10 % 10]
    region = _REGIONS.get(id_number[:4], "内蒙古自治区包头市")
    address = f"{region}昆都仑区钢铁大街{seed // 100 % 200 + 1}号"
    return {"XM": name, "HJDZ": address, "HKLX": "农村" if seed % 3 == 0 else "城镇"}


_PADDINGS: Final = {
    "rsa-sha256": padding.PKCS1v15(),
    "rsa-pss-sha256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
}


def _rsa_public_key(certificate_pem: bytes) -> rsa.RSAPublicKey:
    key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("rsa_certificates: an RSA certificate is needed")
    return key


def _is_callback_url(value: object) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)


def _checked_callback_url(url: str | None) -> str | None:
    if url is not None and not _is_callback_url(url):
        raise ValueError(f"the callback URL must be an http(s) address, not {url!r}")
    return url


# --------------------------------------------------------------------------- the simulator


class PublicSecuritySimulator(RestSimulator):
    """The 公安 service: signed submissions decided by callback, polling, 户籍 lookups.

    ``url`` is the base URL (http://127.0.0.1:PORT). Callbacks go to the submission's ``HDDZ``
    or else ``callback_url`` (neither: polling only); up to ``callback_attempts`` tries with
    backoff ``callback_backoff_ms`` doubling (at most 2 s), each try freshly signed.
    """

    label = "public-security"
    sector = "public_security"
    server_version = "GaSim/1.0"
    fault_modes = COMMON_FAULT_MODES | CALLBACK_MODES
    extra_counters = ("callbacks_sent", "callbacks_delivered", "callbacks_abandoned")
    reference_prefix = "GA"
    openapi_file = OPENAPI_FILE
    canned_success = {"ZT": "1", "XX": "已受理", "YWH": "GA000000000000"}

    def __init__(
        self,
        port: int = 0,
        decision_delay_ms: int = 200,
        *,
        key_id: str = DEFAULT_KEY_ID,
        secret: str = DEFAULT_SECRET,
        callback_url: str | None = None,
        callback_key_id: str = CALLBACK_KEY_ID,
        callback_secret: str | None = None,
        callback_attempts: int = 5,
        callback_backoff_ms: int = 100,
        decide: Decider | None = None,
        host: str = "127.0.0.1",
        rsa_certificates: dict[str, bytes] | None = None,
        rsa_algorithm: str = "rsa-sha256",
    ) -> None:
        if callback_attempts < 1:
            raise ValueError("callback_attempts must be >= 1")
        super().__init__(host, port, decision_delay_ms, decide or default_decide)
        self._key = (key_id, secret)
        self._callback_url = _checked_callback_url(callback_url)
        self._callback_key = (callback_key_id, secret if callback_secret is None else callback_secret)
        self._callback_attempts = callback_attempts
        self._callback_backoff_ms = callback_backoff_ms
        self._nonces = NonceCache(2 * MAX_SKEW_MS / 1000)
        self._rsa_keys = {key_id: _rsa_public_key(pem) for key_id, pem in (rsa_certificates or {}).items()}
        self._rsa_padding = _PADDINGS[rsa_algorithm]
        self._callbacks: set[threading.Thread] = set()
        self._callbacks_lock = threading.Lock()

    @property
    def callback_url(self) -> str | None:
        """Where decisions go when a submit names no HDDZ."""
        return self._callback_url

    @callback_url.setter
    def callback_url(self, url: str | None) -> None:
        # Set after start: the gateway's address is only known once it listens.
        self._callback_url = _checked_callback_url(url)

    def _routes(self) -> list[RestRoute]:
        return [
            RestRoute("POST", "/gaapi/hz/sqxx", self._signed(self._json_handler(self._submit))),
            RestRoute("GET", "/gaapi/hz/sqxx/{YWH}", self._signed(self._status)),
            RestRoute("GET", "/gaapi/hz/hjxx", self._signed(self._household)),
        ]

    def _error(self, status: int, code: int, message: str) -> Reply:
        return json_reply(status, {"ZT": "0", "XX": message})

    def _business_error(self, message: str) -> Reply:
        self._counters.bump("business_errors")
        return self._error(HTTPStatus.OK, 0, message)

    # ----- signatures

    def _signed(self, handler: Handler) -> Handler:
        """Guard an endpoint: bad signature, skew or a replayed nonce → 401."""

        def guarded(request: Request) -> Reply:
            problem = self._signature_problem(request)
            if problem is not None:
                log.debug("public-security simulator refused a signature: %s", problem)
                self._counters.bump("auth_failures")
                return self._error(HTTPStatus.UNAUTHORIZED, 401, _SIGNATURE_FAILED)
            return handler(request)

        return guarded

    def _signature_problem(self, request: Request) -> str | None:
        key_id, timestamp, nonce, signature = (
            request.header(f"X-Ca-{name}") or "" for name in ("Key", "Timestamp", "Nonce", "Signature")
        )
        if not (key_id and timestamp and nonce and signature):
            return "missing header"
        if key_id not in self._rsa_keys and not hmac.compare_digest(key_id.encode(), self._key[0].encode()):
            return "unknown key id"
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > MAX_SKEW_MS:
            return "timestamp outside ±300 s"
        if not self._signature_matches(key_id, request, timestamp, nonce, signature):
            return "wrong signature"
        # Checked last, so a forged request cannot burn a legitimate client's nonce.
        return None if self._nonces.first_use(nonce) else "replayed nonce"

    def _signature_matches(self, key_id: str, request: Request, timestamp: str, nonce: str, signature: str) -> bool:
        """RSA with the named certificate's key when in RSA mode, else HMAC with the shared secret."""
        if not self._rsa_keys:
            expected = sign(self._key[1], request.method, request.path, timestamp, nonce, request.body)
            return hmac.compare_digest(expected.encode(), signature.encode())
        public_key = self._rsa_keys.get(key_id)
        canonical = canonical_request(request.method, request.path, timestamp, nonce, request.body)
        try:
            if public_key is None:
                return False
            public_key.verify(base64.b64decode(signature, validate=True), canonical, self._rsa_padding, hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    # ----- submissions

    def _submit(self, request: Request, document: dict[str, Any]) -> Reply:
        """202 with YWH (the same again for a repeated QQID); the decision comes by callback."""
        self._counters.bump("submits_received")
        missing = missing_fields(document, REQUIRED_SUBMIT_FIELDS)
        if missing:
            return self._business_error(f"缺少必填项：{'、'.join(missing)}")
        if document.get("HDDZ") not in (None, "") and not _is_callback_url(document["HDDZ"]):
            return self._business_error("回调地址HDDZ不是有效的http(s)地址")
        case, created = self._book.apply(str(document["QQID"]), document)
        target = document.get("HDDZ") or self._callback_url
        if created and target:
            self._arrange_callback(case, target)
        # A repeated QQID is answered exactly like the first time (SECTORS.md): same text, same YWH.
        return json_reply(HTTPStatus.ACCEPTED, {"ZT": "1", "XX": "已受理", "YWH": case.reference})

    def _status(self, request: Request) -> Reply:
        """Polling fallback: JG "CL" while processing, then "TY"/"BTY" with opinion and time."""
        self._counters.bump("queries_received")
        case = self._book.get(request.params["YWH"])
        if case is None:
            return self._error(HTTPStatus.NOT_FOUND, 404, "业务号不存在")
        return json_reply(HTTPStatus.OK, {"ZT": "1", **self._result(case)})

    def _result(self, case: Case) -> dict[str, Any]:
        """YWH, JG, YJ, SJ as both polling and callbacks report them."""
        decision = self._book.decision(case)
        if decision is None:
            return {"YWH": case.reference, "JG": "CL", "YJ": "正在办理", "SJ": None}
        when = case.decided_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return {"YWH": case.reference, "JG": "TY" if decision[0] else "BTY", "YJ": decision[1], "SJ": when}

    def _household(self, request: Request) -> Reply:
        self._counters.bump("queries_received")
        id_number = request.query_param("SFZH") or ""
        seed = person_seed(id_number)
        if seed is None:
            return self._business_error("缺少参数：SFZH" if not id_number else "无户籍信息")
        return json_reply(HTTPStatus.OK, {"ZT": "1", "HJ": household(id_number, seed)})

    # ----- callbacks

    def _arrange_callback(self, case: Case, target: str) -> None:
        """Call back after the delay in the background; "early_callback" does it now, before the
        submit is answered; "duplicate_callback" delivers it twice."""
        plan = self._faults.take(CALLBACK_MODES)
        copies = 2 if plan is not None and plan.mode == "duplicate_callback" else 1
        if plan is not None and plan.mode == "early_callback":
            self._book.decide_now(case)
            self._deliver(case, target, copies)
            return
        thread = threading.Thread(
            target=self._callback_when_due, args=(case, target, copies), name=f"ga-callback-{case.reference}",
            daemon=True,
        )
        with self._callbacks_lock:
            self._callbacks.add(thread)
        thread.start()

    def _callback_when_due(self, case: Case, target: str, copies: int) -> None:
        try:
            if not self._sleep(max(0.0, case.due_at - time.monotonic()) * 1000):
                self._deliver(case, target, copies)
        finally:
            with self._callbacks_lock:
                self._callbacks.discard(threading.current_thread())

    def _deliver(self, case: Case, target: str, copies: int) -> None:
        result = self._result(case)
        notice = {"YWH": result["YWH"], "BJBH": case.fields.get("BJBH"), **{k: result[k] for k in ("JG", "YJ", "SJ")}}
        body = json.dumps(notice, ensure_ascii=False).encode("utf-8")
        for _ in range(copies):
            if not self._post_with_retries(target, body):
                return

    def _post_with_retries(self, url: str, body: bytes) -> bool:
        """Until a 2xx, at most ``callback_attempts`` tries; False if abandoned or stopped."""
        for attempt in range(self._callback_attempts):
            self._counters.bump("callbacks_sent")
            if self._post_once(url, body):
                self._counters.bump("callbacks_delivered")
                return True
            if attempt == self._callback_attempts - 1:
                break
            if self._sleep(min(self._callback_backoff_ms * 2**attempt, MAX_BACKOFF_MS)):
                return False  # stopped: shut down, not given up
        self._counters.bump("callbacks_abandoned")
        log.warning("public-security simulator gave up calling back %s", url)
        return False

    def _post_once(self, url: str, body: bytes) -> bool:
        """One signed POST (a fresh nonce and timestamp each try); True on a 2xx."""
        headers = signed_headers(*self._callback_key, "POST", urlsplit(url).path or "/", body)
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        request.add_header("Content-Type", JSON_CONTENT_TYPE)
        try:
            with _OPENER.open(request, timeout=CALLBACK_TIMEOUT_S) as response:
                status: int = response.status  # an http.client.HTTPResponse; typeshed types open()'s result as Any
                return 200 <= status < 300
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except OSError:  # refused, reset, timed out (URLError is an OSError)
            return False

    def _on_stopped(self) -> None:
        """The stop event woke every waiting callback: let them finish their current try."""
        with self._callbacks_lock:
            pending = list(self._callbacks)
        for thread in pending:
            thread.join(timeout=CALLBACK_TIMEOUT_S + 0.5)


# --------------------------------------------------------------------------- foreground use


def serve(
    port: int = DEFAULT_PORT,
    decision_delay_ms: int = 200,
    key_id: str = DEFAULT_KEY_ID,
    secret: str = DEFAULT_SECRET,
    callback_url: str | None = None,
    fault: FaultPlan | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C; ``callback_url``: the gateway's
    ``/callbacks/public_security`` (agreed at onboarding: the bundle sends no HDDZ)."""
    simulator = PublicSecuritySimulator(
        port, decision_delay_ms, key_id=key_id, secret=secret, callback_url=callback_url
    )
    print(f"decisions called back to {callback_url}" if callback_url else "no callback URL: decisions are only polled",
          flush=True)
    serve_forever(simulator, "公安 (REST + HMAC, callbacks)", fault)


if __name__ == "__main__":
    run_cli(
        "公安 REST/HMAC sector simulator", serve, DEFAULT_PORT, PublicSecuritySimulator.fault_modes, calls_back=True
    )
