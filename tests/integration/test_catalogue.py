"""The matter catalogue: the shipped file, the file format, the rules, the versioned store and the CLI.

Store tests run on a real SQLite file database (WAL, BEGIN IMMEDIATE), as a deployment does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, event, func, select
from typer.testing import CliRunner

from gateway.catalogue.matters import (
    Catalogue,
    CatalogueError,
    InvalidMatter,
    MatterNotFound,
    VersionConflict,
    dump_catalogue,
    load_catalogue_file,
    matter_from_document,
    matter_to_document,
    validate_catalogue,
    validate_matter,
)
from gateway.cli.catalogue import make_catalogue_app
from gateway.cli.common import UNAVAILABLE
from gateway.config import DEFAULT_CATALOGUE
from gateway.domain.codes import is_valid_credit_code
from gateway.domain.matter import (
    Department,
    Faq,
    Fee,
    Level,
    Material,
    MatterType,
    ServiceObject,
    TimeLimit,
    TimeUnit,
)
from gateway.persistence.catalogue_tables import matter_versions
from gateway.persistence.engine import make_engine
from tests.support.catalogue import (  # noqa: F401 - `catalogue`, `engine`: fixtures
    AGENCY,
    PENSION_TRANSFER,
    SHIPPED,
    SOCIAL_SECURITY_CARD,
    UNEMPLOYMENT,
    catalogue,
    engine,
    new_matter,
    open_engine,
    shipped,
)

RESIDENT_PENSION = "12150200MB1A00010L4000805003000"  # 城乡居民基本养老保险参保登记
BY_NAME = {m.name: m for m in SHIPPED}
BY_CODE = sorted(SHIPPED, key=lambda m: m.implementation_code)  # the order the store answers in


# --- fixtures shared with test_api_catalogue -----------------------------------------------------------


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(matter_versions)) or 0)


# --- the shipped catalogue -------------------------------------------------------------------------------


def test_the_shipped_catalogue_loads_and_every_matter_validates() -> None:
    assert len(SHIPPED) >= 14
    assert validate_catalogue(SHIPPED) == []
    for m in SHIPPED:
        assert validate_matter(m) == [], m.name
        assert m.promised_limit.unit != m.statutory_limit.unit or m.promised_limit.value <= m.statutory_limit.value


def test_the_shipped_catalogue_covers_the_four_first_sectors_in_baotou() -> None:
    bodies = {d.name for m in SHIPPED for d in m.departments}
    for needle in ("社会保险事业服务中心", "住房公积金管理中心", "民政局", "公安局"):
        assert any(needle in b for b in bodies), needle
    regions = {d.credit_code[2:8] for m in SHIPPED for d in m.departments}
    assert {"150200", "150203", "150204"} <= regions
    for m in SHIPPED:
        for d in m.departments:
            assert is_valid_credit_code(d.credit_code)
            # social-security departments are served by their sector system, the others by the back office
            assert d.sector == ("social_security" if "社会保险" in d.name else None), d.name


def test_the_codes_other_code_relies_on() -> None:
    unemployment = shipped(UNEMPLOYMENT)
    assert unemployment.name == "失业保险金申领" and unemployment.type is MatterType.BENEFIT
    assert unemployment.implementing_body.credit_code == AGENCY
    assert unemployment.promised_limit == TimeLimit(5, TimeUnit.WORKING_DAYS, unemployment.promised_limit.note)
    assert [x.name for x in unemployment.materials] == ["居民身份证", "解除或终止劳动合同证明", "本人银行账户"]
    schema = unemployment.form_schema
    assert schema["properties"]["insured_months"]["type"] == "integer"
    assert schema["properties"]["separation_date"] == {**schema["properties"]["separation_date"],
                                                       "type": "string", "format": "date"}
    assert {"insured_months", "separation_date"} <= set(schema["required"])

    transfer = shipped(PENSION_TRANSFER)
    assert [x.name for x in transfer.materials] == ["居民身份证", "参保缴费凭证"]
    assert (transfer.name, transfer.promised_limit.value) == ("职工基本养老保险关系转移接续", 15)
    resident = shipped(RESIDENT_PENSION)
    assert resident.name == "城乡居民基本养老保险参保登记" and resident.on_the_spot
    card = shipped(SOCIAL_SECURITY_CARD)
    assert card.name == "社会保障卡申领"
    assert [(x.name, x.mandatory) for x in card.materials] == [("居民身份证", True), ("近期免冠照片", False)]


def test_the_parallel_matters() -> None:
    retirement = BY_NAME["职工退休一件事"]
    assert retirement.is_parallel and retirement.promised_limit.value == 20
    assert retirement.implementing_body.credit_code == AGENCY
    assert retirement.implementing_body.sector == "social_security"
    assert [(d.name, d.sector) for d in retirement.co_departments] == [("包头市住房公积金管理中心", None)]
    birth = BY_NAME["新生儿出生登记一件事"]
    assert birth.is_parallel and len(birth.departments) >= 3


# --- the file format -------------------------------------------------------------------------------------


def test_file_to_matter_to_document_to_matter_round_trips() -> None:
    raw = yaml.safe_load(DEFAULT_CATALOGUE.read_text(encoding="utf-8"))["matters"]
    for entry, m in zip(raw, SHIPPED, strict=True):
        document = matter_to_document(m)
        assert matter_from_document(document, "round trip") == m
        assert says_at_least(document, entry)  # what the file says is kept exactly, defaults added
        assert json.loads(json.dumps(document)) == document  # plain JSON data


def says_at_least(full: Any, partial: Any) -> bool:
    """`full` holds everything `partial` says (a document with defaults filled in vs the file's entry)."""
    if isinstance(partial, dict):
        return isinstance(full, dict) and all(k in full and says_at_least(full[k], v) for k, v in partial.items())
    if isinstance(partial, list):
        return isinstance(full, list) and len(full) == len(partial) and all(map(says_at_least, full, partial))
    return type(full) is type(partial) and bool(full == partial)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_a_dumped_catalogue_loads_back_equal(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"catalogue.{fmt}"
    path.write_text(dump_catalogue(SHIPPED, fmt), encoding="utf-8")  # type: ignore[arg-type]
    assert load_catalogue_file(path) == SHIPPED


def test_a_document_leaves_out_what_has_a_default() -> None:
    m = matter_from_document({
        "basic_code": "000805009000", "implementation_code": f"{AGENCY}3000805009000", "name": "最小事项",
        "type": "20", "level": 3, "implementing_body": {"name": "包头市社会保险事业服务中心", "credit_code": AGENCY},
        "materials": [{"name": "居民身份证"}], "promised_limit": {"value": 0}, "statutory_limit": {"value": 5},
    }, "minimal")
    assert m.service_objects == (ServiceObject.NATURAL_PERSON,) and m.fee == Fee() and m.form_schema == {}
    assert m.level is Level.CITY and m.materials == (Material("居民身份证"),)


def _doc(**changes: Any) -> dict[str, Any]:
    document = matter_to_document(shipped(UNEMPLOYMENT))
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({k: v for k, v in _doc().items() if k != "name"}, "entry: missing required field(s) name"),
        (_doc(promised_days=5), "entry: unknown field(s) promised_days"),
        (_doc(type=5), "type: expected one of '01', "),
        (_doc(type="99"), "type: '99' is not one of '01', "),
        (_doc(level="3"), "level: expected one of 1, 2, 3, 4, 5, 6, got str '3'"),
        (_doc(level=True), "level: expected one of 1, 2, 3, 4, 5, 6, got bool True"),
        (_doc(service_objects=["7"]), "service_objects[0]: '7' is not one of '1', "),
        (_doc(materials="居民身份证"), "materials: expected a list, got str '居民身份证'"),
        (_doc(materials=[{"name": "居民身份证", "mandatory": "yes"}]),
         "materials[0].mandatory: expected true or false, got str 'yes'"),
        (_doc(materials=[{"name": "居民身份证", "copies": 1.5}]), "materials[0].copies: expected a whole number"),
        (_doc(implementing_body={"name": "x"}), "implementing_body: missing required field(s) credit_code"),
        (_doc(promised_limit={"value": 5, "unit": "weeks"}), "promised_limit.unit: 'weeks' is not one of"),
        (_doc(form_schema={"type": "object", "default": __import__("datetime").date(2025, 1, 1)}),
         "form_schema: must be plain JSON data"),
        (_doc(faq=[{"question": "?"}]), "faq[0]: missing required field(s) answer"),
        ("just text", "entry: expected a mapping, got str"),
    ],
)
def test_a_bad_document_is_a_readable_error_naming_the_entry_and_field(document: Any, message: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        matter_from_document(document, "catalogue.yaml: matters[0] (失业保险金申领)")
    assert str(caught.value).startswith("catalogue.yaml: matters[0] (失业保险金申领): ")
    assert message in str(caught.value)


def test_a_bad_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("matters:\n  - name: 失业保险金申领\n    type: [\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"broken.yaml: cannot read the catalogue"):
        load_catalogue_file(broken)
    broken.write_text("matters: {}\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"broken.yaml: expected a mapping with a list under 'matters'"):
        load_catalogue_file(broken)
    broken.write_text("matters:\n  - {name: 某事项, type: '20'}\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"broken.yaml: matters\[0\] \(某事项\): entry: missing required"):
        load_catalogue_file(broken)
    with pytest.raises(CatalogueError, match=r"missing.yaml: cannot read the catalogue"):
        load_catalogue_file(tmp_path / "missing.yaml")


# --- the rules -------------------------------------------------------------------------------------------

BASE = shipped(UNEMPLOYMENT)
LEAD = BASE.implementing_body
HOUSING_FUND = Department("包头市住房公积金管理中心", "12150200MB1A00020M")


def _materials(*names: str) -> dict[str, Any]:
    return {"materials": tuple(Material(n) for n in names)}


BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("catch-all 等", _materials("居民身份证等"),
     "materials[0].name '居民身份证等' is a catch-all (contains 等); name each material exactly"),
    ("catch-all 其他", _materials("居民身份证", "其他材料"),
     "materials[1].name '其他材料' is a catch-all (contains 其他); name each material exactly"),
    ("catch-all 有关", _materials("有关证明"),
     "materials[0].name '有关证明' is a catch-all (contains 有关); name each material exactly"),
    ("catch-all 相关", _materials("其他相关材料"),
     "materials[0].name '其他相关材料' is a catch-all (contains 其他、相关); name each material exactly"),
    ("duplicate material", _materials("居民身份证", "居民身份证"),
     "materials[1].name '居民身份证' is listed more than once"),
    ("no materials", {"materials": ()},
     "materials must list at least one material (the one-time notification needs the complete list)"),
    ("negative copies", {"materials": (Material("居民身份证", copies=-1),)}, "materials[0].copies must not be negative"),
    ("lower-case basic code", {"basic_code": "00080500100a", "implementation_code": f"{AGENCY}300080500100a"},
     "basic_code '00080500100a' must be 12 digits or capital letters"),
    ("bad credit check character",
     {"implementing_body": replace(LEAD, credit_code="12150200MB1A00010X"),
      "implementation_code": "12150200MB1A00010X3000805001000"},
     "implementing_body.credit_code '12150200MB1A00010X' has check character 'X'; GB 32100 requires 'L'"),
    ("credit code with a forbidden letter",
     {"co_departments": (Department("某部门", "12150200MB1A0001OL"),)},
     "co_departments[0].credit_code '12150200MB1A0001OL' must be 18 characters of digits and capital letters "
     "other than I, O, S, V, Z"),
    ("implementation code of another body", {"implementation_code": "12150200MB1A00020M3000805001000"},
     "implementation_code '12150200MB1A00020M3000805001000' must begin with implementing_body.credit_code "
     "'12150200MB1A00010L'"),
    ("level digit differs from level", {"level": Level.COUNTY},
     "implementation_code's level digit '3' must equal level 4"),
    ("implementation code of another basic code", {"implementation_code": f"{AGENCY}3000805009000"},
     "implementation_code must end with basic_code '000805001000', not '000805009000'"),
    ("implementation code too short", {"implementation_code": f"{AGENCY}300080500100"},
     "implementation_code '12150200MB1A00010L300080500100' must have 31 characters (implementing body's credit "
     "code 18 + level 1 + basic code 12), not 30"),
    ("handling item code", {"handling_item_code": "12150200MB1A00010L3000805002000AB"},
     "handling_item_code '12150200MB1A00010L3000805002000AB' must be the implementation code followed by 2 digits "
     "or capital letters (33 characters)"),
    ("lead as co-department", {"co_departments": (LEAD,)},
     "co_departments[0] (包头市社会保险事业服务中心) is the implementing body; the lead cannot also co-implement"),
    ("co-department twice", {"co_departments": (HOUSING_FUND, HOUSING_FUND)},
     "co_departments[1] (包头市住房公积金管理中心) is listed more than once"),
    ("sector name", {"co_departments": (replace(HOUSING_FUND, sector="Housing Fund"),)},
     "co_departments[0].sector 'Housing Fund' must be null or a registered sector name such as 'social_security'"),
    ("promised over statutory", {"promised_limit": TimeLimit(12), "statutory_limit": TimeLimit(10)},
     "promised_limit (12 working_days) must not exceed statutory_limit (10 working_days)"),
    ("negative limit", {"promised_limit": TimeLimit(-1)}, "promised_limit.value must not be negative, not -1"),
    ("empty legal basis", {"legal_basis": "  "}, "legal_basis must not be empty"),
    ("empty complaint phone", {"complaint_phone": ""}, "complaint_phone must not be empty"),
    ("empty result name", {"result_name": ""}, "result_name must not be empty"),
    ("fee without basis", {"fee": Fee(charged=True, standard="20元")},
     "fee.basis and fee.standard must both be given when fee.charged is true"),
    ("faq without answer", {"faq": (Faq("能否代办？", ""),)}, "faq[0] needs both a question and an answer"),
    ("form schema not a schema", {"form_schema": {"type": "object", "required": "insured_months"}},
     "form_schema is not a valid JSON Schema: 'insured_months' is not of type 'array' (at required)"),
    ("form schema of a list", {"form_schema": {"type": "array"}},
     "form_schema must describe an object (\"type\": \"object\")"),
    ("form format not checked", {"form_schema": {"type": "object", "properties": {
        "site": {"type": "string", "format": "uri"}, "day": {"type": "string", "format": "date"}}}},
     "form_schema declares format 'uri', which the gateway does not check; use a pattern instead"),
    ("no service object", {"service_objects": ()}, "service_objects must name at least one service object"),
]


@pytest.mark.parametrize(("change", "problem"), [(c, p) for _, c, p in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_a_broken_matter_gets_exactly_the_expected_problem(change: dict[str, Any], problem: str) -> None:
    assert validate_matter(replace(BASE, **change)) == [problem]


def test_different_units_are_not_compared() -> None:
    m = replace(BASE, promised_limit=TimeLimit(20), statutory_limit=TimeLimit(15, TimeUnit.CALENDAR_DAYS))
    assert validate_matter(m) == []


def test_a_catalogue_names_each_problem_with_its_matter_and_finds_duplicates() -> None:
    broken = replace(BASE, materials=(Material("身份证等"),))
    assert validate_catalogue([BASE, broken]) == [
        f"{UNEMPLOYMENT}: implementation_code is listed more than once",
        f"{UNEMPLOYMENT}: materials[0].name '身份证等' is a catch-all (contains 等); name each material exactly",
    ]


# --- the versioned store ---------------------------------------------------------------------------------


def test_seeding_publishes_version_1_once(engine: Engine, catalogue: Catalogue) -> None:
    assert row_count(engine) == len(SHIPPED)
    assert catalogue.seed_if_empty(DEFAULT_CATALOGUE) == []
    assert row_count(engine) == len(SHIPPED)
    assert catalogue.export() == BY_CODE  # the file says version 1 throughout
    assert catalogue.versions(UNEMPLOYMENT)[0] | {"created_at": None, "published_at": None} == {
        "version": 1, "status": "published", "created_at": None, "created_by": "seed", "published_at": None,
        "published_by": "seed", "retired_at": None, "retired_by": None,
    }


def test_two_processes_seeding_at_once_seed_once(tmp_path: Path) -> None:
    engines = [open_engine(tmp_path, "shared.db") for _ in range(2)]
    seeded: list[int] = []
    threads = [threading.Thread(target=lambda e=e: seeded.append(len(Catalogue(e).seed_if_empty(DEFAULT_CATALOGUE))))
               for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seeded) == [0, len(SHIPPED)]
    assert row_count(engines[0]) == len(SHIPPED)
    for e in engines:
        e.dispose()


def test_draft_validate_publish_retires_the_previous_version(catalogue: Catalogue) -> None:
    v1 = catalogue.published(UNEMPLOYMENT)
    assert v1 is not None and v1.version == 1
    draft = catalogue.draft(replace(v1, promised_limit=TimeLimit(3), version=7), "admin-1")
    assert draft.version == 2  # numbered by the store, whatever the document said
    assert catalogue.published(UNEMPLOYMENT) == v1  # a draft changes nothing published
    assert catalogue.validate(UNEMPLOYMENT, 2) == []

    published = catalogue.publish(UNEMPLOYMENT, 2, "admin-2")
    assert published == draft and catalogue.published(UNEMPLOYMENT) == draft
    history = catalogue.versions(UNEMPLOYMENT)
    assert [(h["version"], h["status"]) for h in history] == [(1, "retired"), (2, "published")]
    assert history[0]["retired_by"] == "admin-2" and history[1]["published_by"] == "admin-2"
    assert history[1]["created_by"] == "admin-1" and history[1]["published_at"].tzinfo is not None
    assert catalogue.version(UNEMPLOYMENT, 1) == v1  # a case accepted under v1 still reads v1
    assert catalogue.version(UNEMPLOYMENT, 3) is None


def test_only_a_draft_can_be_published(catalogue: Catalogue) -> None:
    with pytest.raises(VersionConflict, match=r"第 1 版的状态为 published：只有草稿（draft）可以发布"):
        catalogue.publish(UNEMPLOYMENT, 1, "admin")
    catalogue.draft(shipped(UNEMPLOYMENT), "admin")
    catalogue.publish(UNEMPLOYMENT, 2, "admin")
    with pytest.raises(VersionConflict, match="第 1 版的状态为 retired"):
        catalogue.publish(UNEMPLOYMENT, 1, "admin")
    with pytest.raises(MatterNotFound):
        catalogue.publish(UNEMPLOYMENT, 9, "admin")
    with pytest.raises(MatterNotFound):
        catalogue.validate("X" * 31, 1)


def test_an_invalid_draft_is_stored_but_cannot_be_published(catalogue: Catalogue) -> None:
    broken = replace(shipped(UNEMPLOYMENT), materials=(Material("其他相关材料"),))
    draft = catalogue.draft(broken, "admin")
    problem = "materials[0].name '其他相关材料' is a catch-all (contains 其他、相关); name each material exactly"
    assert catalogue.validate(UNEMPLOYMENT, draft.version) == [problem]
    with pytest.raises(InvalidMatter) as refused:
        catalogue.publish(UNEMPLOYMENT, draft.version, "admin")
    assert refused.value.problems == [problem]
    assert [h["status"] for h in catalogue.versions(UNEMPLOYMENT)] == ["published", "draft"]
    assert catalogue.published(UNEMPLOYMENT) == shipped(UNEMPLOYMENT)


def test_a_draft_needs_a_storable_code(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidMatter, match="must have 31 characters"):
        catalogue.draft(replace(BASE, implementation_code="123"), "admin")


def test_an_import_with_a_problem_stores_nothing(engine: Engine, catalogue: Catalogue) -> None:
    before = row_count(engine)
    good, bad = new_matter("7"), new_matter("8", materials=(Material("身份证等"),))
    with pytest.raises(InvalidMatter) as refused:
        catalogue.import_matters([good, bad], "admin")
    assert refused.value.summary == "the import was refused; nothing was stored"
    assert refused.value.problems == [f"{bad.implementation_code}: materials[0].name '身份证等' is a catch-all "
                                      "(contains 等); name each material exactly"]
    assert row_count(engine) == before and catalogue.versions(good.implementation_code) == []


def test_an_import_publishes_new_versions_or_stores_drafts(catalogue: Catalogue) -> None:
    changed = replace(shipped(PENSION_TRANSFER), hours="周一至周六 9:00-17:00")
    stored = catalogue.import_matters([changed, new_matter("7")], "admin")
    assert [m.version for m in stored] == [2, 1]
    assert catalogue.published(PENSION_TRANSFER) == replace(changed, version=2)
    drafts = catalogue.import_matters([new_matter("6")], "admin", publish=False)
    assert catalogue.versions(drafts[0].implementation_code)[0]["status"] == "draft"
    assert catalogue.published(drafts[0].implementation_code) is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"department": "住房公积金管理中心"},  # lead or co-department, by part of the name
         {"职工退休一件事", "住房公积金提取（购买自住住房）", "住房公积金个人住房贷款", "单位住房公积金缴存登记"}),
        ({"department": "11150204MB0E00090X"}, {"居住证申领"}),  # by credit code
        ({"department": "11150200mb0g00110n"}, {"新生儿出生登记一件事"}),  # a co-department, any case
        ({"department": "民政局"}, {"内地居民结婚登记", "最低生活保障审批", "困难残疾人生活补贴和重度残疾人护理补贴",
                                  "临时救助"}),
        ({"level": 5}, {"高龄津贴发放"}),
        ({"level": Level.COUNTY, "type": MatterType.BENEFIT}, {"最低生活保障审批", "困难残疾人生活补贴和重度残疾人护理补贴"}),
        ({"type": "01"}, {"户口迁移（市内）"}),
        ({"service_object": "2"}, {"单位住房公积金缴存登记"}),
        ({"text": "居住证"}, {"居住证申领"}),  # in the name
        ({"text": "000805002000"}, {"职工基本养老保险关系转移接续"}),  # the basic code
        ({"text": "12150200mb1a00010l4"}, {"城乡居民基本养老保险参保登记"}),  # the implementation code
        ({"text": "解除或终止劳动合同证明"}, {"失业保险金申领", "失业登记"}),  # a material
        ({"text": "没有这个词"}, set()),
    ],
)
def test_search_by_each_filter(catalogue: Catalogue, filters: dict[str, Any], expected: set[str]) -> None:
    assert {m.name for m in catalogue.search(**filters)} == expected


def test_search_sees_published_versions_only(catalogue: Catalogue) -> None:
    catalogue.draft(new_matter("7", name="只有草稿的事项"), "admin")
    assert catalogue.search(text="只有草稿") == []
    assert len(catalogue.search()) == len(SHIPPED)


def _count_queries(engine: Engine) -> Callable[[], int]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return lambda: sum(1 for s in seen if s.lstrip().upper().startswith("SELECT"))


def test_the_hot_path_costs_no_query_while_cached(engine: Engine, catalogue: Catalogue) -> None:
    queries = _count_queries(engine)
    catalogue.published(UNEMPLOYMENT)
    catalogue.published("X" * 31)  # unknown codes are cached too
    first = queries()
    for _ in range(50):
        catalogue.published(UNEMPLOYMENT)
        catalogue.published("X" * 31)
        catalogue.version(UNEMPLOYMENT, 1)
    assert queries() == first


def test_another_process_sees_a_publication_within_the_cache_ttl(tmp_path: Path, catalogue: Catalogue) -> None:
    other_engine = open_engine(tmp_path)  # same database file, another engine: another process's view
    other = Catalogue(other_engine, cache_ttl_s=0.1)
    assert other.published(UNEMPLOYMENT).version == 1  # type: ignore[union-attr]

    catalogue.draft(replace(shipped(UNEMPLOYMENT), hours="全天"), "admin")
    catalogue.publish(UNEMPLOYMENT, 2, "admin")
    assert catalogue.published(UNEMPLOYMENT).version == 2  # type: ignore[union-attr]  # its own cache: at once
    assert other.published(UNEMPLOYMENT).version == 1  # type: ignore[union-attr]  # still cached there
    time.sleep(0.15)
    assert other.published(UNEMPLOYMENT).version == 2  # type: ignore[union-attr]
    other_engine.dispose()


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def cli(catalogue: Catalogue) -> Callable[..., Any]:
    app = make_catalogue_app(lambda: catalogue)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_export_then_import(cli: Callable[..., Any], catalogue: Catalogue, tmp_path: Path) -> None:
    exported = cli("export")
    assert exported.exit_code == 0
    assert yaml.safe_load(exported.stdout)["matters"] == [matter_to_document(m) for m in BY_CODE]

    out = tmp_path / "export.json"
    assert cli("export", "--format", "json", "--out", out).exit_code == 0
    assert load_catalogue_file(out) == BY_CODE

    changed = tmp_path / "changed.yaml"
    changed.write_text(dump_catalogue([replace(shipped(SOCIAL_SECURITY_CARD), hours="周一至周日")]), encoding="utf-8")
    done = cli("import", changed, "--draft")
    assert done.exit_code == 0 and "imported 1 matters as drafts" in done.stdout
    assert catalogue.versions(SOCIAL_SECURITY_CARD)[-1]["status"] == "draft"
    assert cli("import", changed).exit_code == 0
    assert catalogue.published(SOCIAL_SECURITY_CARD).version == 3  # type: ignore[union-attr]


def test_cli_list(cli: Callable[..., Any]) -> None:
    listed = cli("list")
    assert listed.exit_code == 0
    assert UNEMPLOYMENT in listed.stdout and listed.stderr == ""
    title, header, *lines = listed.stdout.splitlines()
    assert title == "published matters: 19" and header.startswith("implementation code") and len(lines) == 19


def test_cli_list_takes_the_apis_filters_and_prints_json_lines_with_its_fields(cli: Callable[..., Any]) -> None:
    everything = [json.loads(line) for line in cli("list", "--json").stdout.splitlines()]
    assert len(everything) == 19
    unemployment = next(m for m in everything if m["implementation_code"] == UNEMPLOYMENT)
    assert unemployment == {name: matter_to_document(shipped(UNEMPLOYMENT))[name] for name in (
        "implementation_code", "basic_code", "name", "type", "level", "version", "implementing_body",
        "co_departments", "promised_limit", "service_objects", "handling_forms")}
    found = cli("list", "--q", unemployment["name"], "--json")
    assert [json.loads(line)["implementation_code"] for line in found.stdout.splitlines()] == [UNEMPLOYMENT]
    assert cli("list", "--level", "9").exit_code == 2  # as the API refuses it


def test_cli_validate_offline(cli: Callable[..., Any], tmp_path: Path) -> None:
    clean = cli("validate", DEFAULT_CATALOGUE)
    assert clean.exit_code == 0 and "19 matters, no problems" in clean.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text(dump_catalogue([replace(BASE, materials=(Material("身份证等"),))]), encoding="utf-8")
    refused = cli("validate", broken)
    assert refused.exit_code == 1
    assert f"{UNEMPLOYMENT}: materials[0].name '身份证等' is a catch-all" in refused.output

    unreadable = cli("validate", tmp_path / "nowhere.yaml")
    assert unreadable.exit_code == 1 and "cannot read the catalogue" in unreadable.output
    assert "Traceback" not in refused.output + unreadable.output


def test_cli_import_of_a_broken_file_stores_nothing(cli: Callable[..., Any], engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(dump_catalogue([new_matter("7"), new_matter("8", legal_basis="")]), encoding="utf-8")
    before = row_count(engine)
    refused = cli("import", broken)
    assert refused.exit_code == 1
    assert "nothing was stored" in refused.output and "legal_basis must not be empty" in refused.output
    assert "Traceback" not in refused.output and row_count(engine) == before


def test_cli_reports_an_unusable_database_readably(tmp_path: Path) -> None:
    bare = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    result = CliRunner().invoke(make_catalogue_app(lambda: Catalogue(bare)), ["list"])
    assert result.exit_code == UNAVAILABLE and "database error" in result.output and "Traceback" not in result.output
    bare.dispose()


def test_an_import_tells_its_progress_matter_by_matter(catalogue: Catalogue) -> None:
    told: list[int] = []
    stored = catalogue.import_matters(BY_CODE[:3], "test", progress=told.append)
    assert len(stored) == 3 and told == [1, 2, 3]  # what `yiwang catalogue import` draws its progress bar from
