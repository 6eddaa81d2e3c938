"""The documentation cannot point at nothing: every relative link of README.md, CHANGELOG.md and docs/*.md
reaches a file (and its `#anchor` a heading, as a code host makes anchors), every `yiwang …` command a page
names in code — the command, its sub-command and each option — exists in the CLI tree, and every `make X`
names a Makefile target. The CLI reference (docs/cli.md) names every command, its command tables are those
tests/support/cli_reference.py renders from the CLI (`make cli-reference`), and it carries the exit-code table
of gateway/cli/common.py; each role's page repeats the README's quick starts unchanged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from gateway.bootstrap.cli import app as cli_app
from gateway.cli.common import EXIT_CODES
from tests.support import cli_reference
from tests.support.markdown import ROLE_PAGES, ROLES, ROOT, Page, anchors, inline_code, links, pages, quick_starts, read

PAGES = [read(path) for path in pages()]
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:
# `yiwang` where a command starts: at the start, after a blank, `(`, `$(`, a pipe or a separator
COMMAND = re.compile(r"(?:^|(?<=[\s(`|;&]))yiwang(?P<rest>(?:[ \t]+[^\s|;&#)`]+)*)")
MAKE = re.compile(r"(?:^|(?<=[\s(`|;&]))make[ \t]+(?P<target>[a-z][\w.-]*)")
# a file of the repository named in inline code: a path with a folder and a known suffix (`*` a glob)
FILE = re.compile(r"^(?!\.\./)[\w.*-]+(?:/[\w.*-]+)+\.(?:py|md|yaml|yml|json|csv|wsdl|xsd|toml|ini)$")
GENERATED = ("var/", "bench-report.json")  # what a run makes, not what the repository holds
WORD = re.compile(r"[a-z][a-z0-9_-]*(?:/[a-z][a-z0-9_-]*)*")  # a command's name, or names like `register/activate`


@cache
def _cli() -> Any:
    return get_command(cli_app)


def _code(page: Page) -> Iterator[tuple[int, str]]:
    """(line, text) of every line of code on the page: fenced blocks' lines and inline code spans."""
    for block in page.blocks:
        for offset, line in enumerate(block.text.splitlines(), 1):
            yield block.line + offset, line
    yield from inline_code(page)


def _options(command: Any) -> set[str]:
    return {name for param in command.params if param.param_type_name == "option"
            for name in (*param.opts, *param.secondary_opts)}


def _problems_of(words: list[str]) -> list[str]:
    """What is wrong with `yiwang WORDS…`: an unknown command or sub-command, or an option the command lacks.
    Words in capitals, `<…>`, `$…`, `[…]` and quoted values are placeholders and arguments, not names."""
    command, path, problems = _cli(), ["yiwang"], []
    for word in words:
        bare = word.strip("[]")
        if bare.startswith("--") or (bare.startswith("-") and len(bare) == 2):
            name = bare.split("=")[0]
            if name not in _options(command) | {"--help"}:
                problems.append(f"{' '.join(path)}: no option {name}")
            continue
        commands = getattr(command, "commands", None)
        if not commands or not WORD.fullmatch(word):
            continue  # an argument (a folder, a sector, an id) once the command is reached
        names = word.split("/")
        missing = [name for name in names if name not in commands]
        if missing:
            problems.append(f"{' '.join(path)}: no command {', '.join(missing)}")
            return problems
        command = commands[names[0]]
        path.append(word)
    return problems


def _commands() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        for number, line in _code(page):
            for match in COMMAND.finditer(line):
                yield f"{page.name}:{number}", "yiwang" + match["rest"]


def _targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {target for line in makefile.splitlines() if (found := re.match(r"^([\w.-]+)\s*:(?!=)", line))
            for target in [found[1]]}


def test_the_pages_are_found() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "CHANGELOG.md", "docs/hall.md", "docs/sectors.md", "docs/operators.md", "docs/security.md",
            "docs/deployment.md", "docs/configuration.md", "docs/cli.md"} <= names
    assert not any(name.startswith("docs/_incoming") for name in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_reaches_a_file_and_its_anchor(page: Page) -> None:
    broken = []
    for number, target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.path.parent / path).resolve() if path else page.path
        if not file.exists():
            broken.append(f"{page.name}:{number}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(read(file)):
            broken.append(f"{page.name}:{number}: {target}: no heading makes #{anchor}")
    assert broken == []


def test_every_file_named_in_code_exists() -> None:
    named = [(f"{page.name}:{number}", code.strip("`")) for page in PAGES for number, code in inline_code(page)
             if FILE.match(code.strip("`"))]
    assert len(named) > 20  # the pages were read
    missing = [(where, path) for where, path in named
               if not path.startswith(GENERATED) and not list(ROOT.glob(path))]
    assert missing == []


def test_every_yiwang_command_named_exists_with_its_options() -> None:
    named = list(_commands())
    assert len(named) > 50  # the pages were read
    problems = [f"{where}: {text.strip()}: {problem}" for where, text in named
                for problem in _problems_of(text.split()[1:])]
    assert problems == []


def test_every_make_target_named_exists() -> None:
    targets = _targets()
    named = [(f"{page.name}:{number}", match["target"]) for page in PAGES for number, line in _code(page)
             for match in MAKE.finditer(line)]
    assert {"demo", "test", "check"} <= {target for _, target in named}
    assert [(where, target) for where, target in named if target not in targets] == []


def test_the_checks_catch_what_is_wrong() -> None:
    """The checkers themselves: an unknown sub-command, an unknown option and a missing anchor are found."""
    assert _problems_of(["adapters", "register", "folder"]) == []
    assert _problems_of(["adapters", "registre"]) == ["yiwang adapters: no command registre"]
    assert _problems_of(["adapter", "register"]) == ["yiwang: no command adapter"]
    assert _problems_of(["ops", "replay", "7", "--reasons", "x"]) == ["yiwang ops replay: no option --reasons"]
    assert _problems_of(["keys", "issue/roles/nothing"]) == ["yiwang keys: no command nothing"]
    hall = read(ROOT / "docs" / "hall.md")
    assert "quick-start" in anchors(hall) and "no-such-heading" not in anchors(hall)


def test_the_cli_reference_names_every_command() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    root = _cli()
    missing = [f"yiwang {group} {name}".strip() for group, command in root.commands.items()
               for name in (getattr(command, "commands", None) or {"": None})
               if f"`yiwang {group} {name}".strip() not in reference]
    assert missing == []


def test_the_cli_reference_tables_are_current() -> None:
    reference = cli_reference.PAGE.read_text(encoding="utf-8")
    assert cli_reference.groups(reference) == [name for name, command in _cli().commands.items()
                                               if getattr(command, "commands", None)]
    assert reference == cli_reference.current(reference), "docs/cli.md is behind the CLI: run `make cli-reference`"


def test_the_cli_reference_names_every_option_of_the_processes() -> None:
    """serve, worker and demo are described by hand (what they run): each row still names every option."""
    reference = cli_reference.PAGE.read_text(encoding="utf-8")
    rows = {found[1]: found[0] for found in re.finditer(r"^\| `yiwang ([a-z]+)[ `].*$", reference, re.MULTILINE)}
    processes = {name: command for name, command in _cli().commands.items() if not getattr(command, "commands", None)}
    missing = [f"yiwang {name} {param.opts[0]}" for name, command in processes.items() for param in command.params
               if param.param_type_name == "option" and not param.hidden and param.opts[0] not in rows.get(name, "")]
    assert set(rows) >= set(processes) and missing == []


def test_the_cli_reference_renders_a_synopsis_from_the_command() -> None:
    """Arguments in capitals, required options bare, optional ones bracketed, a repeatable one with `…`."""
    keys = _cli().commands["keys"].commands
    assert cli_reference.synopsis("yiwang keys issue", keys["issue"]) == (
        "yiwang keys issue --name NAME --role ROLE … [--department DEPARTMENT] [--sector SECTOR]")
    assert cli_reference.synopsis("yiwang keys list", keys["list"]) == "yiwang keys list [--json]"
    assert cli_reference.table("keys").splitlines()[:2] == ["| command | what it does |", "|---|---|"]


def test_the_cli_reference_carries_the_exit_codes() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = reference.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE)
    assert [(int(code), meaning) for code, meaning in rows] == list(EXIT_CODES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/cli.md#exit-codes" in readme


@pytest.mark.parametrize("role", ROLES)
def test_each_roles_page_repeats_the_readmes_quick_start(role: str) -> None:
    readme = quick_starts(read(ROOT / "README.md"), role)
    assert readme, f"the README has no block marked <!-- quickstart:{role} -->"
    assert quick_starts(read(ROOT / ROLE_PAGES[role]), role) == readme
    first_section = Path(ROLE_PAGES[role]).name, read(ROOT / ROLE_PAGES[role]).prose
    assert any(line == "## Quick start" for _, line in first_section[1][:12]), f"{first_section[0]} opens otherwise"
