"""The ferry adapter kind (adapters/kinds/ferry, adapters/BUNDLE-FORMAT.md "The ferry kind"): a bundle carrying the
sector's own SOAP/REST bundle in a folder, its `ferry` options, and what the gateway makes of it.

Each broken bundle is the shipped example (`adapters/bundles/upgrades/civil_affairs_ferry`) with one edit, made
in tmp_path; every case names the problem `validate_bundle` must report.
"""

from __future__ import annotations

import filecmp
import re
import shutil
from pathlib import Path

import pytest

from adapters.bundle import load_bundle, preview, validate_bundle
from adapters.descriptor import PollingResults
from adapters.kinds.ferry import FerryOptions
from adapters.registry import credential_references, default_bundles_dir

EXAMPLE = default_bundles_dir() / "upgrades" / "civil_affairs_ferry"
CARRIED = default_bundles_dir() / "civil_affairs"


def edited(tmp_path: Path, descriptor: dict[str, str] | None = None, carried: dict[str, str] | None = None) -> Path:
    """The example with lines of its descriptor (and of the carried one's) replaced: pattern -> replacement."""
    folder = tmp_path / "civil_affairs_ferry"
    shutil.copytree(EXAMPLE, folder)
    for path, edits in ((folder / "bundle.yaml", descriptor), (folder / "sector" / "bundle.yaml", carried)):
        text = path.read_text(encoding="utf-8")
        for pattern, replacement in (edits or {}).items():
            text, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
            assert found, pattern
        path.write_text(text, encoding="utf-8")
    return folder


def problems(folder: Path) -> list[str]:
    return [str(p) for p in validate_bundle(folder)]


def test_the_example_carries_the_civil_affairs_bundle_unchanged() -> None:
    """So the example never drifts from the bundle the sector team hands over."""
    shipped = sorted(p.relative_to(CARRIED).as_posix() for p in CARRIED.rglob("*") if p.is_file())
    carried = sorted(p.relative_to(EXAMPLE / "sector").as_posix() for p in (EXAMPLE / "sector").rglob("*")
                     if p.is_file())
    assert carried == shipped
    match, mismatch, errors = filecmp.cmpfiles(CARRIED, EXAMPLE / "sector", shipped, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_a_ferry_bundle_is_its_carried_bundle_at_the_near_side_without_queries_polling_or_auth() -> None:
    assert validate_bundle(EXAMPLE) == []
    bundle, carried = load_bundle(EXAMPLE), load_bundle(CARRIED)
    assert (bundle.kind, bundle.sector, bundle.version) == ("ferry", "civil_affairs", "2.0.0-ferry")
    assert list(bundle.operations) == ["submit_case", "cancel_case"]  # what crosses; never query_status
    assert bundle.queries == {} and bundle.results is None and bundle.auth.type == "none"
    assert (bundle.serves, bundle.department, bundle.title) == (carried.serves, carried.department, carried.title)
    options = bundle.options
    assert isinstance(options, FerryOptions)
    assert (options.send_channel, options.receive_channel) == ("civil_affairs.down", "civil_affairs.up")
    assert (options.extension, options.wrapper, options.answer_within_ms) == (".txt", "text", 172_800_000)
    assert isinstance(options.carried.results, PollingResults) and "marriage_record" in options.carried.queries
    assert credential_references(bundle) == {"ferry.sign": ("yiwang-ferry", False),
                                             "ferry.peer": ("civil_affairs-ferry", True)}


def test_its_preview_is_the_carried_kinds_with_a_note_that_it_crosses() -> None:
    message = {"idempotency_key": "K-1", "sector_ref": None, "task": {"id": "T1", "department": "D", "credit_code":
               "11150203MB0C000405", "lead": True}, "case": {
        "case_no": "C-1", "matter_code": "M-1", "accepted_at": "2026-11-24T02:00:00Z", "green_channel": False,
        "channel": "online", "region_code": "150203",
        "applicant": {"name": "张三", "id_type": "111", "id_number": "150203198503120039", "phone": "13800000000",
                      "address": "", "legal_representative": None},
        "materials": [], "form": {}}}
    shown = preview(load_bundle(EXAMPLE), "submit_case", message)
    assert shown["kind"] == "ferry" and shown["carried_kind"] == "soap"
    assert "envelope" in shown and "civil_affairs.down" in shown["crosses"]


BROKEN = [
    ({r"^operations: .*$": "operations: [submit_case, query_status]"}, None,
     "bundle.yaml:9: operations[1]: 'query_status' does not cross a ferry"),
    ({r"^operations: .*$": "operations: [cancel_case]"}, None,
     "bundle.yaml:9: operations: expected a list of the canonical operations that cross, each once, submit_case"),
    ({r"^operations: .*$": "operations: {submit_case: sector/submit_case.mapping.yaml}"}, None,
     "bundle.yaml:9: operations: expected a list of the canonical operations that cross"),
    ({r"^  bundle: .*$": "  bundle: elsewhere"}, None, "bundle.yaml:12: ferry.bundle: no bundle in folder 'elsewhere'"),
    ({r"^  bundle: .*$": "  bundle: ../civil_affairs"}, None,
     "bundle.yaml:12: ferry.bundle: expected the name of a folder inside this bundle"),
    ({r"^  mode: .*$": "  mode: both_ways"}, None, "bundle.yaml:13: ferry.mode: unknown mode 'both_ways'"),
    ({r"^  sign: .*$": "  sign: yiwang-ferry"}, None,
     "bundle.yaml:14: ferry.sign: expected a credential reference cert:NAME"),
    ({r"^  cipher: .*$": "  cipher: des"}, None, "bundle.yaml:16: ferry.cipher: unknown cipher 'des'"),
    ({r"^  answer_within_ms: .*$": "  answer_within_ms: 10"}, None, "bundle.yaml:17: ferry.answer_within_ms: 10 is"),
    ({r"^  naming: .*$": "  naming: {extension: txt}"}, None,
     "bundle.yaml:20: ferry.naming.extension: expected a file extension such as .txt, got 'txt'"),
    ({r"^  limits: .*$": "  limits: {batch_bytes: 2048, message_bytes: 4096}"}, None,
     "bundle.yaml:21: ferry.limits.message_bytes: must not exceed limits.batch_bytes"),
    ({r"^  channel: .*$": "  channel: Civil-Affairs"}, None, "bundle.yaml:11: ferry.channel: 'Civil-Affairs' is not"),
    ({r"^ferry:$": "timeout_ms: 5000\nferry:"}, None,
     "bundle.yaml:10: timeout_ms: not in a ferry bundle: the bundle it carries says it"),
    ({r"^  peer: .*\n": ""}, None, "bundle.yaml:10: ferry.peer: required"),
    ({r"^sector: .*$": "sector: public_security"}, None,
     "bundle.yaml:6: sector: 'public_security', but sector/ is sector 'civil_affairs'"),
    (None, {r"^results:\n  mode: polling\n  interval_ms: 2000": "results:\n  mode: callback\n  callback_auth: "
                                                               "{type: hmac, secret: {secret: env:X}}",
            r"^  cancel_case: .*$": "  cancel_case: cancel_case.mapping.yaml\n  callback: query_status.mapping.yaml"},
     "bundle.yaml:12: ferry.bundle: sector/ must poll (results.mode: polling)"),
    (None, {r"^  cancel_case: .*\n": ""}, "bundle.yaml:9: operations[1]: sector/ has no cancel_case"),
    (None, {r"^timeout_ms: 5000": "timeout_ms: 0"}, "sector/bundle.yaml:27: timeout_ms: 0 is less than the minimum"),
]


@pytest.mark.parametrize(("descriptor", "carried", "expected"), BROKEN)
def test_a_broken_ferry_bundle_gets_a_clear_problem(tmp_path: Path, descriptor: dict[str, str] | None,
                                                    carried: dict[str, str] | None, expected: str) -> None:
    found = problems(edited(tmp_path, descriptor, carried))
    assert any(p.startswith(expected) for p in found), found


def test_a_ferry_never_carries_a_ferry(tmp_path: Path) -> None:
    folder = edited(tmp_path)
    shutil.copytree(EXAMPLE, folder / "nested")
    (folder / "bundle.yaml").write_text((folder / "bundle.yaml").read_text(encoding="utf-8").replace(
        "bundle: sector", "bundle: nested"), encoding="utf-8")
    assert any("nested/ is a ferry bundle; a ferry carries soap or rest bundles" in p for p in problems(folder))


def test_another_kinds_bundle_may_not_use_the_ferry_block(tmp_path: Path) -> None:
    folder = tmp_path / "civil_affairs"
    shutil.copytree(CARRIED, folder)
    with (folder / "bundle.yaml").open("a", encoding="utf-8") as out:
        out.write("ferry: {channel: civil_affairs, bundle: sector, sign: cert:a, peer: cert:b}\n")
    assert any(p.endswith("ferry: ferry bundles only") for p in problems(folder)), problems(folder)
