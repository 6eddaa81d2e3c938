"""Rehearsal files (adapters/rehearsal.py): a bad one is refused with the bundle, each problem as
`file:line: field: message`; `judge` says why an answer is not what an item expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters import Answer, RehearsalInvalid, judge, load_bundle, read_rehearsal, validate_bundle
from adapters.registry import default_bundles_dir

BROKEN = """\
items:
  - name: submit
    operation: submit_case
    expect: {outcome: accepted}
  - name: status
    operation: query_status
    sector_ref: {from_item: nobody}
    expect: {outcome: accepted, result: {status: {pattern: "("}}}
  - name: status
    operation: no_such_query
    expect: {outcome: accepted}
"""


def employment_with(tmp_path: Path, rehearsal: str) -> Path:
    folder = tmp_path / "employment"
    shutil.copytree(default_bundles_dir() / "employment", folder)
    (folder / "rehearsal.yaml").write_text(rehearsal, encoding="utf-8")
    return folder


def test_a_shipped_rehearsal_file_reads_into_its_items() -> None:
    items = read_rehearsal(load_bundle(default_bundles_dir() / "civil_affairs"))
    assert [i.operation for i in items] == ["submit_case", "query_status", "query_status", "marriage_record"]
    assert items[1].from_item == items[0].name and items[3].is_query and items[3].params


def test_a_bad_rehearsal_file_is_refused_with_the_bundle_naming_file_line_and_field(tmp_path: Path) -> None:
    folder = employment_with(tmp_path, BROKEN)
    with pytest.raises(RehearsalInvalid) as caught:
        read_rehearsal(load_bundle(folder))
    assert [str(p) for p in caught.value.problems] == [
        "rehearsal.yaml:2: items[0].case: required for submit_case",
        "rehearsal.yaml:7: items[1].sector_ref.from_item: 'nobody' is not an earlier submit_case item",
        "rehearsal.yaml:8: items[1].expect.result.status.pattern: not a regular expression",
        "rehearsal.yaml:9: items[2].name: 'status' is the name of an earlier item",
        "rehearsal.yaml:10: items[2].operation: the bundle has no 'no_such_query' "
        "(has: submit_case, query_status, cancel_case)",
    ]
    assert "rehearsal.yaml:2: items[0].case: required for submit_case" in [str(p) for p in validate_bundle(folder)]


@pytest.mark.parametrize(("text", "says"), [
    ("items: []", "rehearsal.yaml:1: items: [] should be non-empty"),
    ("items:\n  - {name: x, operation: query_status, sector_ref: R, expect: {outcome: maybe}}",
     "rehearsal.yaml:2: items[0].expect: expected {outcome: accepted"),
    ("items: [", "rehearsal.yaml:1: "),
])
def test_a_malformed_rehearsal_file_says_where(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(RehearsalInvalid) as caught:
        read_rehearsal(load_bundle(employment_with(tmp_path, text)))
    assert str(caught.value).startswith(says), str(caught.value)


def test_a_file_the_descriptor_names_must_be_there(tmp_path: Path) -> None:
    folder = employment_with(tmp_path, "")
    (folder / "rehearsal.yaml").unlink()
    assert any(str(p).endswith("rehearsal: file 'rehearsal.yaml' not found in the bundle")
               for p in validate_bundle(folder))


def test_judge_compares_exact_values_patterns_and_refusals() -> None:
    civil = read_rehearsal(load_bundle(default_bundles_dir() / "civil_affairs"))
    submit, status, unknown, _ = civil
    assert judge(submit, Answer(result={"sector_ref": "MZ0001"})) == []
    assert judge(submit, Answer(result={"sector_ref": "GA0001"})) == ["sector_ref: 'GA0001' does not match 'MZ[0-9]+'"]
    assert judge(submit, Answer(result={})) == ["sector_ref: missing from the result"]
    assert judge(status, Answer(failure="timeout", message="no answer")) == [
        "expected accepted, the sector refused: timeout: no answer"]
    assert judge(unknown, Answer(failure="sector_fault", code="FAIL")) == []
    assert judge(unknown, Answer(failure="sector_fault", code="E9")) == ["expected business code FAIL, got E9"]
    assert judge(unknown, Answer(result={"status": "received"})) == ["expected refused, the sector accepted"]
