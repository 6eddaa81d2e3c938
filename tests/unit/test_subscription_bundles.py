"""Subscriptions in bundle.yaml (adapters/BUNDLE-FORMAT.md "Subscriptions"): a bundle that only subscribes to case
events needs no submit_case, serves or results; an unknown event, a query named like an event, or a mapping reading
what the event message does not carry is refused as `file:line: field: message`. The case events the domain
announces are the ones a bundle may subscribe to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters import CaseEventType
from adapters.bundle import BundleError, load_bundle, validate_bundle
from adapters.canonical import EVENTS, message_tree, result_spec
from adapters.registry import default_bundles_dir
from gateway.domain import lifecycle
from gateway.domain.case import Actor, ActorKind, CaseEvent, CaseState, Trigger
from gateway.sectors.live_registry import serves_task

SYSTEM = Actor(ActorKind.SYSTEM, "gateway")


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rating_platform"
    shutil.copytree(default_bundles_dir() / "rating_platform", folder)
    return folder


def edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def problems(folder: Path) -> list[str]:
    return [str(p) for p in validate_bundle(folder)]


def test_a_subscription_only_bundle_serves_no_department(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert (bundle.takes_cases, bundle.results, dict(bundle.operations)) == (False, None, {})
    assert bundle.mapping("evaluated") == ((bundle_dir / "evaluated.mapping.yaml").resolve(), False)
    assert not serves_task(bundle, "any matter", bundle.department.credit_code)


def test_an_unknown_event_is_refused_naming_the_known_ones(bundle_dir: Path) -> None:
    edit(bundle_dir, "bundle.yaml", "  evaluated: evaluated", "  rated: evaluated")
    assert problems(bundle_dir) == ["bundle.yaml:18: subscriptions.rated: not a case event one may subscribe to "
                                    "(known: case_closed, certificate_issued, evaluated)"]


def test_without_subscriptions_a_bundle_must_take_cases(bundle_dir: Path) -> None:
    edit(bundle_dir, "bundle.yaml", "subscriptions:\n  evaluated: evaluated.mapping.yaml", "")
    assert [p.split(": ", 1)[1] for p in problems(bundle_dir)] == ["operations: required", "results: required",
                                                                  "serves: required"]


def test_other_operations_need_submit_case_and_a_query_cannot_take_an_events_name(bundle_dir: Path) -> None:
    edit(bundle_dir, "bundle.yaml", "timeout_ms:", "operations: {query_status: evaluated.mapping.yaml}\n"
                                                  "queries: {case_closed: evaluated.mapping.yaml}\ntimeout_ms:")
    with pytest.raises(BundleError) as refused:
        load_bundle(bundle_dir)
    assert [str(p) for p in refused.value.problems] == [
        "bundle.yaml:19: operations.submit_case: required with other operations (a bundle without it only "
        "subscribes to case events)",
        "bundle.yaml:20: queries.case_closed: a case event's name, not a query's (subscribe with subscriptions)"]


def test_a_mapping_is_checked_against_the_events_message(bundle_dir: Path) -> None:
    edit(bundle_dir, "evaluated.mapping.yaml", "{from: evaluation.level,", "{from: evaluation.score,")
    edit(bundle_dir, "evaluated.mapping.yaml", "receipt: {from: data.ratingNo}", "rating_no: {from: data.ratingNo}")
    found = problems(bundle_dir)
    assert len(found) == 2, found
    assert "evaluation.score" in found[0] and "rating_no" in found[1]


def test_the_event_messages_and_results_are_canonical() -> None:
    assert EVENTS == tuple(map(str, CaseEventType))
    assert "id_number" in message_tree("certificate_issued")["certificate"]["holder"]
    assert "certificate" not in message_tree("evaluated") and "evaluation" not in message_tree("case_closed")
    assert {e: result_spec(e).allowed for e in EVENTS} == {e: frozenset({"receipt"}) for e in EVENTS}


@pytest.mark.parametrize(("trigger", "from_state", "to_state", "announced"), [
    (Trigger.EVALUATE, CaseState.CLOSED, CaseState.CLOSED, "evaluated"),
    (Trigger.ISSUE_CERTIFICATE, CaseState.APPROVED, CaseState.CERTIFICATE_ISSUED, "certificate_issued"),
    (Trigger.CLOSE, CaseState.DELIVERED, CaseState.CLOSED, "case_closed"),
    (Trigger.SUPPLEMENT_EXPIRED, CaseState.SUPPLEMENT_REQUIRED, CaseState.CLOSED, "case_closed"),
    (Trigger.TASK_CANCELLED, CaseState.CLOSED, CaseState.CLOSED, None),
    (Trigger.ACCEPT, CaseState.SUBMITTED, CaseState.ACCEPTED, None),
])
def test_the_domain_announces_the_events_one_may_subscribe_to(trigger: Trigger, from_state: CaseState,
                                                              to_state: CaseState, announced: str | None) -> None:
    event = CaseEvent(1, None, trigger, from_state, to_state, SYSTEM, "")  # type: ignore[arg-type]
    assert lifecycle.announced_as(event) == announced
    assert {lifecycle.EVALUATED, lifecycle.CERTIFICATE_ISSUED, lifecycle.CASE_CLOSED} == set(EVENTS)
