"""The canonical model as data: what a mapping may read, and what its result must hold.

`adapters/contract.py` describes the canonical message in prose; this module states it as a tree
the bundle validator walks (`mappings.validate.Shape.from_data`), so a `from: case.applicant.nme`
is caught at registration instead of failing every delivery. Tree notation:

- a dict: an object with exactly these keys;
- a one-element list: a list of items shaped like the element (`for_each` walks it);
- ``"*"``: anything (the application form is the matter's own; a query's parameters are the caller's);
- any other string: a scalar, named by its type for messages.

Keep this in step with `gateway.sectors.delivery.canonical_message`, which builds the real message, and
`gateway.materials.links.MaterialTransport`, which adds the materials' files to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from adapters.contract import CaseEventType, Operation

ANYTHING = "*"

OPERATIONS = (*map(str, Operation), "callback")  # what a mapping may be for: the calls, and the callbacks sectors make
# Named synchronous queries the gateway knows today; a bundle may declare others (see BUNDLE-FORMAT.md).
# `licence_lookup` is the one the gateway asks itself, for a licence the hall cites (gateway/domain/provenance.py).
KNOWN_QUERIES = ("social_insurance_contributions", "housing_fund_balance", "marriage_record", "household_registration",
                 "licence_lookup", "licences_of_holder")
STATUSES = ("received", "in_process", "approved", "denied", "returned")

# Where a material came from (gateway/domain/provenance.py): `trust` is "authoritative" (cited from the electronic
# licence library and confirmed there) or "declared" (the applicant's upload or paper); `provenance` is None for a
# declared one.
PROVENANCE: Mapping[str, Any] = {
    "source": "str",  # "licence_library"
    "licence_number": "str",
    "issuer": "str",
    "valid_until": "str",  # ISO date; None: valid for good
    "fetched_at": "datetime",  # ISO-8601 UTC text: when the library confirmed it
    "document_ref": "str",  # the library's reference to the licence's document
}
MATERIAL: Mapping[str, Any] = {"name": "str", "received": "bool", "file_ref": "str", "trust": "str",
                               "provenance": PROVENANCE}
# The operations that hand the materials' files over, as the bundle's `materials.transport` declares
# (`gateway.materials.links`). A material with a `file_ref` then also carries its stored description and
# either its content (inline_base64) or a signed link the sector fetches (signed_url; mtom for now too);
# one without a file_ref carries no more than MATERIAL. Other operations (status polls, cancellations)
# carry MATERIAL only: re-reading every file at each poll would help no sector.
MATERIALS_SENT_WITH = ("submit_case",)
SENT_MATERIAL: Mapping[str, Any] = {
    **MATERIAL,
    "media_type": "str",  # as recognised from the content at upload
    "sha256": "str",  # hex, of the content
    "size": "int",  # bytes
    "content_base64": "str",  # inline_base64 only
    "url": "str",  # signed_url (and mtom, until MTOM packaging is done) only
}

# Every operation on a task gets the same message (dispatch builds one per outbox row), save that
# submit_case's materials are SENT_MATERIAL.
TASK_MESSAGE: Mapping[str, Any] = {
    "idempotency_key": "str",
    "sector_ref": "str",  # None until submit_case has answered
    "task": {"id": "str", "department": "str", "credit_code": "str", "lead": "bool"},
    "case": {
        "case_no": "str",
        "matter_code": "str",
        "accepted_at": "datetime",  # ISO-8601 UTC text
        "green_channel": "bool",
        "channel": "str",
        "region_code": "str",
        "applicant": {
            "name": "str",
            "id_type": "str",
            "id_number": "str",
            "phone": "str",
            "address": "str",
            "legal_representative": "str",
        },
        "materials": [MATERIAL],
        "form": ANYTHING,
    },
}
SUBMIT_MESSAGE: Mapping[str, Any] = {
    **TASK_MESSAGE,
    "case": {**TASK_MESSAGE["case"], "materials": [SENT_MATERIAL]},
}
# A case event sent to a bundle subscribed to it (`subscriptions:`): which event, the case as a task's message
# carries it (no task: a subscriber serves no department), and what the event is about. The idempotency key
# is `<case_no>:event:<event seq>:<sector>`, the same across retries and replays.
EVENTS = tuple(map(str, CaseEventType))
EVALUATION: Mapping[str, Any] = {"level": "str", "channel": "str", "text": "str"}  # level: EVALUATION_LEVELS
CERTIFICATE: Mapping[str, Any] = {
    "name": "str",
    "number": "str",
    "issuer": "str",
    "valid_until": "date",  # ISO date text, or None
    "holder": {"name": "str", "id_type": "str", "id_number": "str"},  # the applicant
    "issued_at": "datetime",  # ISO-8601 UTC text
}
_EVENT_BASE: Mapping[str, Any] = {
    "idempotency_key": "str",
    "event": {"type": "str", "at": "datetime", "seq": "int"},
    "case": TASK_MESSAGE["case"],  # accepted_at is None for a case closed without being accepted
}
EVENT_MESSAGES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    CaseEventType.EVALUATED: {**_EVENT_BASE, "evaluation": EVALUATION},
    CaseEventType.CERTIFICATE_ISSUED: {**_EVENT_BASE, "certificate": CERTIFICATE},
    CaseEventType.CASE_CLOSED: {**_EVENT_BASE, "certificate": CERTIFICATE},  # absent when none was issued
})  # fmt: skip
# A named query: the caller's parameters and the gateway's id of this one call (new per call, in the answer and
# the message log; a mapping may send it where the sector takes a request id).
QUERY_MESSAGE: Mapping[str, Any] = {"query": ANYTHING, "request_id": "str"}
# A callback's `request`, if any, is our acknowledgement to the sector: it can only hold constants.
CALLBACK_MESSAGE: Mapping[str, Any] = {}

MESSAGES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "submit_case": SUBMIT_MESSAGE,
    "query_status": TASK_MESSAGE,
    "cancel_case": TASK_MESSAGE,
    "fetch_certificate": TASK_MESSAGE,
    "callback": CALLBACK_MESSAGE,
    **EVENT_MESSAGES,
})  # fmt: skip


# Canonical result fields that hold a time, and of which kind (mappings.converters INSTANT / DATE): a mapping
# reads each through a converter that gives that kind and names the zone the sector's value is in
# (mappings.validate, "Times"): a sector's naive time is never guessed at.
RESULT_TIMES: Mapping[str, str] = MappingProxyType({
    "decided_at": "instant",  # ISO-8601 UTC
    "certificate_valid_until": "date",  # yyyy-MM-dd
    "valid_until": "date",
})  # fmt: skip


@dataclass(frozen=True)
class ResultSpec:
    """The keys an operation's `response.fields` must and may produce, and the values some may take."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    values: Mapping[str, frozenset[Any]] = field(default_factory=dict)
    open: bool = False  # named queries: the mapping defines its own keys

    @property
    def allowed(self) -> frozenset[str]:
        return self.required | self.optional

    @property
    def times(self) -> Mapping[str, str]:
        """The result fields of this operation that hold a time -> "instant" or "date" (RESULT_TIMES)."""
        return {key: kind for key, kind in RESULT_TIMES.items() if key in self.allowed and not self.open}


_STATUS = {"status": frozenset(STATUSES)}

# Identifiers an answer may carry besides the sector's reference: each must name the task the answer changes
# (gateway/domain/answers.py). `idempotency_key` is the key of the request answered (case:task:operation).
ANSWER_IDENTIFIERS = frozenset({"case_no", "task_id", "idempotency_key"})

# What a decision may say besides itself (gateway/domain/results.py): the sector's time of decision (ISO-8601
# with its zone: the mapping converts the sector's own, naming it), whether it issued a certificate, its number and
# last valid day (ISO date), a result document. A certificate issued makes the gateway call `fetch_certificate`.
DECISION_FACTS = frozenset({"decided_at", "certificate_issued", "certificate_number", "certificate_valid_until",
                            "document_ref"})
_ISSUED = {"certificate_issued": frozenset({True, False})}

RESULTS: Mapping[str, ResultSpec] = MappingProxyType({
    "submit_case": ResultSpec(frozenset({"sector_ref"})),
    "query_status": ResultSpec(frozenset({"status"}),
                               frozenset({"opinion", "sector_ref"}) | DECISION_FACTS | ANSWER_IDENTIFIERS,
                               {**_STATUS, **_ISSUED}),
    "cancel_case": ResultSpec(frozenset({"cancelled"}), values={"cancelled": frozenset({True, False})}),
    # The certificate a sector issued; `holder` is {name, id_type, id_number}, `file_ref` the sector's file of it.
    "fetch_certificate": ResultSpec(frozenset({"name", "number"}),
                                    frozenset({"issuer", "valid_until", "holder", "file_ref"})),
    # case_no lets a callback that overtakes the submit's answer find its case before the reference is known.
    "callback": ResultSpec(frozenset({"sector_ref", "status"}),
                           frozenset({"opinion"}) | DECISION_FACTS | ANSWER_IDENTIFIERS, {**_STATUS, **_ISSUED}),
    # A subscriber's acknowledgement: its receipt number if it gives one (recorded in the message log).
    **{event: ResultSpec(frozenset(), frozenset({"receipt"})) for event in EVENTS},
})  # fmt: skip
QUERY_RESULT = ResultSpec(frozenset(), open=True)


def message_tree(operation: str, *, query: bool = False) -> Mapping[str, Any]:
    """The message tree a mapping of `operation` (a canonical operation, a subscribed case event, or a named query)
    reads; KeyError if not canonical."""
    return QUERY_MESSAGE if query else MESSAGES[operation]


def result_spec(operation: str, *, query: bool = False) -> ResultSpec:
    """What the mapping's `response.fields` must produce; KeyError if `operation` is not canonical."""
    return QUERY_RESULT if query else RESULTS[operation]


def readable_paths(operation: str, *, query: bool = False) -> frozenset[str]:
    """Every dotted path a mapping may read, e.g. `case.materials[].name`, `case.form.*`."""
    return frozenset(_flatten(message_tree(operation, query=query), ""))


def _flatten(tree: Any, prefix: str) -> list[str]:
    if isinstance(tree, Mapping):
        paths = []
        for key, sub in tree.items():
            path = f"{prefix}{key}"
            paths += [path, *_flatten(sub, f"{path}.")]
        return paths
    if isinstance(tree, list):
        return _flatten(tree[0], f"{prefix[:-1]}[].")
    return [f"{prefix}*"] if tree == ANYTHING else []
