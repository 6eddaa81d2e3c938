"""Calls to sector systems that are not deliveries: synchronous queries, previews, bundle tests and rehearsals
(`gateway.sectors.rehearsals`), and the callbacks sectors make with their decisions."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from adapters import (
    Bundle,
    BundleError,
    CallbackResults,
    DeliveryError,
    FailureClass,
    Operation,
    RegisteredAdapter,
    RehearsalInvalid,
    SignatureError,
    carried_bundle,
    read_rehearsal,
)
from gateway.cases.service import CaseService
from gateway.domain.clock import Clock
from gateway.domain.lifecycle import announced_as
from gateway.domain.results import ResultProblem
from gateway.observability.logs import mask_text
from gateway.persistence.bundle_tables import ACCEPTED, FAILED, REFUSED, UNREACHABLE, callback_nonces
from gateway.persistence.repository import event_key, idempotency_key
from gateway.persistence.uow import UnitsOfWork
from gateway.sectors.bundle_records import BundleInvalid, BundleStore, BundleVersion, unpacked
from gateway.sectors.delivery import MessageLog, canonical_message, event_message, jsonable, logged_call
from gateway.sectors.live_registry import LiveRegistry, NoActiveAdapter
from gateway.sectors.rehearsals import NoRehearsal, rehearse
from mappings import BusinessError, MappingError, strict_json

PROBE_REF = "YIWANG-CONNECTIVITY-PROBE"  # a reference no sector knows: any classified answer proves the path


class InvalidQueryParameters(Exception):
    """A named query's parameters break its declared contract: each error names the parameter; nothing is sent."""

    def __init__(self, query: str, errors: list[dict[str, str]]) -> None:
        super().__init__("；".join(f"{e['name']}：{e['msg']}" for e in errors))
        self.query, self.errors = query, errors


class NoSynchronousPath(Exception):
    """A named query of a sector behind an isolation gateway (its active bundle is a ferry's): no synchronous
    path crosses a gap, so it is never asked."""


class CallbackRejected(Exception):
    """A callback whose signature, timestamp or nonce does not hold; nothing is recorded."""


class PreviewFailed(Exception):
    """The active mapping cannot render this case or these parameters (nothing is sent)."""


class CallbackUnreadable(Exception):
    """A signed callback whose body its bundle's callback mapping cannot read; nothing is recorded."""


class CallbackDuplicateKey(CallbackUnreadable):
    """A signed callback whose JSON names a key twice (`mappings.strict_json`); nothing is recorded."""


class NonceLedger:
    """Nonces of sector callbacks seen, in the database: a replay is refused by every process."""

    def __init__(self, engine: Engine, clock: Clock, keep: timedelta = timedelta(minutes=15)) -> None:
        self.units, self.clock, self.keep = UnitsOfWork(engine), clock, keep

    def first_time(self, sector: str, nonce: str) -> bool:
        now = self.clock.now()
        try:
            with self.units() as uow:
                conn = uow.conn
                conn.execute(delete(callback_nonces).where(callback_nonces.c.seen_at < now - self.keep))
                conn.execute(insert(callback_nonces).values(sector=sector, nonce=nonce, seen_at=now))
                uow.commit()
        except IntegrityError:
            return False
        return True


class SectorCalls:
    def __init__(self, registry: LiveRegistry, store: BundleStore, service: CaseService,
                 build: Callable[[Bundle], RegisteredAdapter], nonces: NonceLedger,
                 messages: MessageLog | None = None,
                 rehearsal_build: Callable[[Bundle], RegisteredAdapter] | None = None) -> None:
        self.registry, self.store, self.service, self.build, self.nonces = registry, store, service, build, nonces
        self.messages = messages  # None: exchanges with sectors are not recorded
        self.rehearsal_build = rehearsal_build or build  # a rehearsal calls the bundles' test endpoints

    def query(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A named synchronous query, routed to the sector whose active bundle declares it. Parameters that do
        not keep its declared contract are refused (`InvalidQueryParameters`) before the sector is called; each
        call gets a request id of its own, in the canonical message, the message log and the answer."""
        sector = self.registry.sector_for_query(name)
        if sector is None and (behind := self.registry.sector_behind_a_gap(name)) is not None:
            raise NoSynchronousPath(f"部门 {behind} 位于隔离网络之后（经摆渡交换），查询 {name} 没有同步通道；"
                                    "其结果随办件的答复经摆渡返回")
        if sector is None:
            raise NoActiveAdapter(f"没有启用的适配包提供查询 {name}")
        registered = self.registry.get(sector)
        errors = registered.parameter_errors(name, params)
        if errors:
            raise InvalidQueryParameters(name, errors)
        request_id = uuid.uuid4().hex
        result = logged_call(self.messages, registered, name, {"query": dict(params), "request_id": request_id},
                             case_no=None)
        return {"query": name, "sector": sector, "request_id": request_id, "result": result}

    def preview(self, sector: str, operation: str, case_no: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
        """What the active version would send, without sending it."""
        registered = self.registry.get(sector)
        if operation not in registered.mappings:
            raise NoActiveAdapter(f"{sector} 适配包 {registered.version} 版没有操作或查询 {operation}")
        if case_no is None:
            message: dict[str, Any] = {"query": dict(params), "request_id": uuid.uuid4().hex}  # as a call has
        elif operation in registered.bundle.subscriptions:  # the case's latest event of that kind, as delivered
            case = self.service.get(case_no)
            event = next((e for e in reversed(case.events) if announced_as(e) == operation), None)
            if event is None:
                raise NoActiveAdapter(f"办件 {case_no} 没有 {operation} 事件")
            message = event_message(case, event.seq, event_key(case_no, event.seq, sector))
        else:
            case = self.service.get(case_no)
            task = next((t for t in case.tasks if t.sector == sector), None)
            if task is None:
                raise NoActiveAdapter(f"办件 {case_no} 没有交给部门 {sector} 的任务")
            message = canonical_message(case, task.task_id, idempotency_key(case_no, task.task_id, operation))
        # Adapters take an operation or query by name; what they render is returned as JSON-able data.
        # adapters.contract.Adapter.render names only Operation: hence the ignore.
        try:
            rendered = registered.adapter.render(operation, message)  # type: ignore[arg-type]
        except DeliveryError as exc:  # nothing was sent: the case or parameters do not fit the mapping
            raise PreviewFailed(exc.message) from exc
        preview = {"sector": sector, "version": registered.version, "operation": operation,
                   "request": jsonable(rendered)}
        signing = registered.preview_signing(operation, message)
        return preview | ({"signing": signing} if signing is not None else {})

    def sign_sample(self, sector: str, version: str, sample: Any) -> dict[str, Any]:
        """What `version`'s signing recipe signs for a sector team's sample request: the signed text, the headers,
        query or body fields added and the signature, secrets masked (`ValueError`: the sample or the bundle
        cannot be used). Built with this process's secrets and certificates, as `test_version` is; nothing sent."""
        with unpacked(self.store.archive(sector, version)) as bundle:
            registered = self.build(bundle)
        shown = registered.show_signing(sample)  # test_version's adapters, too, are left to the collector
        if shown is None:
            raise ValueError(f"{sector} {version}: its auth is {registered.bundle.auth.type}, not a signature")
        return {"sector": sector, "version": version, **shown}

    def test_version(self, sector: str, version: str) -> BundleVersion:
        """Build the version against the sector's test endpoint and make one harmless call; record its outcome
        (`unreachable`, `refused` or `accepted`, see `_probe`), which activation reads."""
        with unpacked(self.store.archive(sector, version)) as bundle:
            try:
                registered = self.build(bundle)
            except BundleError as exc:  # a secret missing here, or (in production) one that is published
                result = _result(UNREACHABLE, f"cannot be built here: {exc}")
            else:
                result = _probe(registered)
        return self.store.record_test(sector, version, {**result, "at": self.service.clock.now().isoformat()})

    def rehearse(self, sector: str, version: str) -> BundleVersion:
        """Run the version's rehearsal file against the sector's test endpoint (`gateway.sectors.rehearsals`) and
        record the report, which activation reads; `NoRehearsal` if the version carries none."""
        with unpacked(self.store.archive(sector, version)) as bundle:
            try:
                items = read_rehearsal(bundle)
            except RehearsalInvalid as exc:  # registered before the file was checked: say so, as registering would
                raise BundleInvalid([str(p) for p in exc.problems]) from exc
            if not items:
                raise NoRehearsal(sector, version)
            now = self.service.clock.now()
            try:
                target = self.rehearsal_build(bundle)
            except BundleError as exc:  # a secret missing here: nothing could be sent
                report: dict[str, Any] = {
                    "outcome": FAILED, "at": now.isoformat(), "run": None, "passed": 0, "total": len(items),
                    "unreachable": True, "items": [], "cleanup": [], "note": mask_text(f"cannot be built here: {exc}")}
            else:
                report = rehearse(target, items, run=secrets.token_hex(6), now=now, messages=self.messages,
                                  shown_body=shown_body)
        return self.store.record_rehearsal(sector, version, report)

    def callback(self, sector: str, method: str, path: str, headers: Mapping[str, str], body: bytes,
                 query: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """A sector's decision: verify its signature, read it with the bundle's callback mapping, record it.
        `query`: the callback URL's query parameters, decoded, in order (a recipe may sign them)."""
        outcome = "rejected"
        about: list[str | None] = []  # the case it names, once read
        try:
            answer = self._callback(sector, method, path, headers, body, query, about)
            outcome = "ok"
            return answer
        finally:  # every callback that reached us is on the record, refused ones too (forensics)
            if self.messages is not None:  # filed under the case whose task holds its reference, if one does
                self.messages.message(sector, "received", "callback", next(iter(about), None), None,
                                      body.decode("utf-8", "replace"), outcome)

    def _callback(self, sector: str, method: str, path: str, headers: Mapping[str, str], body: bytes,
                  query: Sequence[tuple[str, str]], about: list[str | None]) -> dict[str, Any]:
        """`about` is told the case the callback's reference names, once it was read."""
        registered = self.registry.get(sector)
        results = registered.bundle.results
        if not isinstance(results, CallbackResults):  # a polling sector has no key to sign callbacks with
            raise NoActiveAdapter(f"部门 {sector} 不以回调方式答复")
        try:
            registered.verify_callback(method, path, headers, body, query=query,
                                       now=self.service.clock.now().timestamp(),
                                       seen_nonces=_SeenNonces(self.nonces, sector))
        except SignatureError as exc:
            raise CallbackRejected(str(exc)) from exc
        answer = _json(body)
        try:
            result = registered.read_callback(answer)
        except (MappingError, BusinessError) as exc:  # signed, but not a decision we can read
            raise CallbackUnreadable(str(exc)) from exc
        try:
            recorded = self.service.record_callback(sector, result)
        except ResultProblem as exc:  # signed and readable, but its facts cannot be taken (a time without zone)
            raise CallbackUnreadable(str(exc)) from exc
        finally:  # a refused one too: it is part of that case's story
            about.append(self.service.answered_case(sector, result))
        return {"recorded": recorded}


class _SeenNonces:
    """The set a callback's signature check (`RegisteredAdapter.verify_callback`) checks a nonce against, kept
    in the database for every process.

    Asking records the nonce in the same step (one insert), so two processes cannot both accept it."""

    def __init__(self, ledger: NonceLedger, sector: str) -> None:
        self.ledger, self.sector = ledger, sector

    def __contains__(self, nonce: object) -> bool:
        return not self.ledger.first_time(self.sector, str(nonce))

    def add(self, nonce: str) -> None:
        """Already recorded by the membership test."""


def _probe(registered: RegisteredAdapter) -> dict[str, Any]:
    """One status query for a reference no sector knows, and what its answer says:

    accepted     the sector answered and we understood it: a result, or a business refusal ("unknown
                 reference") — either way it took our credentials
    refused      the sector answered and refused our credentials (failure class `auth`: HTTP 401/403, a
                 business code the mapping lists as `auth`, a certificate refused in the handshake); its
                 answer is kept (status, body cut and masked)
    unreachable  anything else: no connection, no answer in time, a 5xx, our own breaker open, an answer
                 we cannot read — nothing that shows the sector took our credentials
    """
    if carried_bundle(registered.bundle) is not None:  # a sector behind a gap: nothing synchronous reaches it
        return _result(UNREACHABLE, "a sector behind an isolation gateway (a ferry bundle) has no synchronous call "
                                    "to test it with: rehearse its carried bundle where the sector is reachable, "
                                    "then activate it with --force")
    if not registered.bundle.takes_cases:  # any call to a subscriber would deliver a case event: none is harmless
        return _result(UNREACHABLE, "a bundle that only subscribes to case events has no harmless call to test it "
                                    "with: check its endpoint with its sector, then activate it with --force")
    try:
        registered.adapter.call(Operation.QUERY_STATUS, {"sector_ref": PROBE_REF, "idempotency_key": PROBE_REF})
    except DeliveryError as exc:
        if exc.failure is FailureClass.AUTH:
            return _result(REFUSED, str(exc), exc.last_response)
        # A business refusal proves the path; our own breaker's refusal (not retryable either) proves nothing.
        business = exc.failure is FailureClass.SECTOR_FAULT and not exc.retryable
        accepted = business and not getattr(exc, "circuit_open", False)
        return _result(ACCEPTED if accepted else UNREACHABLE, str(exc), exc.last_response)
    return _result(ACCEPTED, "ok")


SHOWN_ANSWER_CHARS = 2000  # of a refusing sector's body: enough to read its message, never a whole page
_SECRET_FIELD = re.compile(r"(?i)(\"?[\w-]*(?:password|passphrase|secret|token|sign|key|authorization)[\w-]*\"?"
                           r"\s*[:=]\s*\"?)((?:(?:Bearer|Basic|Digest)\s+)?[^\"&,\s}]+)")


def _result(outcome: str, answer: str, response: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A test's record: its outcome, the diagnosis, and (when the sector answered) its status and body."""
    result: dict[str, Any] = {"outcome": outcome, "reachable": outcome != UNREACHABLE, "answer": mask_text(answer)}
    if response is not None:
        result["status"] = response.get("status")
        result["body"] = shown_body(str(response.get("body") or ""))
    return result


def shown_body(body: str) -> str:
    """A sector's answer as a test shows it: cut, with any field that looks like a credential (`token`,
    `secret`, `sign`, `password`, …, in JSON, form or header syntax) and ID and phone numbers masked."""
    cut = body if len(body) <= SHOWN_ANSWER_CHARS else body[:SHOWN_ANSWER_CHARS] + "…"
    return mask_text(_SECRET_FIELD.sub(r"\1***", cut))


def _json(body: bytes) -> dict[str, Any]:
    try:
        answer = strict_json.loads(body)
    except strict_json.DuplicateKey as exc:  # what the sector signed is not what we would read: refuse it
        raise CallbackDuplicateKey(f"a key appears twice in one object (line {exc.line}, column {exc.column})"
                                   ) from None
    except (ValueError, RecursionError) as exc:
        raise CallbackUnreadable(f"the callback body is not JSON: {type(exc).__name__}") from exc
    if not isinstance(answer, dict):
        raise CallbackUnreadable("the callback body is not a JSON object")
    return answer

