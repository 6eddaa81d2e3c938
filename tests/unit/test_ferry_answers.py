"""What the far-side agent answers (ferry/answers.py): the bodies the near side reads back into the canonical
answers any adapter gives, with free text masked and identifiers left whole."""

from __future__ import annotations

from adapters import DeliveryError, FailureClass, SectorRefusal
from ferry.answers import answer_failed, answer_not_delivered, answer_ok, answer_refused, decision

ID_NUMBER = "150204199011201529"


def test_an_accepted_message_carries_its_result_with_identifiers_whole() -> None:
    answer = answer_ok("m1", "K-1", "submit_case", {"sector_ref": "201512041990112015"})
    assert answer == {"message": "m1", "key": "K-1", "operation": "submit_case", "outcome": "ok",
                      "result": {"sector_ref": "201512041990112015"}, "error": None}


def test_a_refusal_carries_the_sectors_code_way_and_missing_materials_masked() -> None:
    refusal = SectorRefusal("3001", f"申请人 {ID_NUMBER} 材料不全", "supplement", ("残疾人证",))
    answer = answer_refused("m2", "K-2", "submit_case", refusal)
    assert answer["outcome"] == "refused" and answer["result"] is None
    assert answer["error"] == {"failure": "sector_fault", "message": "申请人 1502**********1529 材料不全",
                               "retryable": False, "code": "3001", "way": "supplement", "missing": ["残疾人证"]}


def test_a_failure_says_its_class_and_whether_another_try_may_help() -> None:
    error = DeliveryError(FailureClass.TIMEOUT, f"no answer for {ID_NUMBER} in 5 s")
    answer = answer_failed("m3", "K-3", "submit_case", error)
    assert answer["outcome"] == "failed"
    assert (answer["error"]["failure"], answer["error"]["retryable"]) == ("timeout", True)
    assert ID_NUMBER not in answer["error"]["message"]
    not_sent = answer_not_delivered("m4", "K-4", "submit_case", "configuration: no bundle installed")
    assert (not_sent["error"]["failure"], not_sent["error"]["retryable"]) == ("transport", False)


def test_a_decision_is_the_status_result_with_the_identifiers_the_near_side_finds_the_task_by() -> None:
    body = decision({"status": "approved", "opinion": f"准予 {ID_NUMBER}", "decided_at": None}, case_no="C-1",
                    task_id="T-1", idempotency_key="K-1", sector_ref="MZ1")
    assert body == {"status": "approved", "opinion": "准予 1502**********1529", "decided_at": None,
                    "case_no": "C-1", "task_id": "T-1", "idempotency_key": "K-1", "sector_ref": "MZ1"}
