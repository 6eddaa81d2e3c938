"""What a 前置机's operator is told matches what the repository ships: `make wheelhouse` builds every runtime
dependency into the folder the README names and checks it with the very install command the README and the
wheelhouse's INSTALL.txt give; the systemd unit runs the agent that command installs, with the README's one
command, restarts it on failure, is hardened, and may write every path of the README's agent configuration.

Nothing is built or downloaded here: the Makefile, the unit and the pages are read (`make wheelhouse` itself
takes ~20 s and a package index; tests/integration/test_ferry_systemd_unit.py runs `systemd-analyze verify`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tests.support.markdown import ROOT, read

MAKEFILE = ROOT / "Makefile"
INSTALL = ROOT / "deploy" / "wheelhouse" / "INSTALL.txt"
UNIT = ROOT / "deploy" / "systemd" / "yiwang-ferry-agent.service"
README = ROOT / "README.md"
SECTION = "## 前置机: running the ferry agent"
VARIABLE = re.compile(r"\$\((\w+)\)")
INSTALL_COMMAND = ["install", "--no-index", "--find-links", "wheelhouse", "yiwang"]
SERVE = "yiwang ferry serve --config /etc/yiwang/ferry-agent.yaml"


def _variables(makefile: str) -> dict[str, str]:
    return {m[1]: m[2].strip() for m in re.finditer(r"^(\w+)\s*[:?]?=\s*(.*)$", makefile, re.MULTILINE)}


def recipe(target: str, makefile: str) -> list[str]:
    """The target's recipe lines, its `$(VARIABLES)` expanded (the Makefile's own assignments, recursively)."""
    variables = _variables(makefile)
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}\s*:(?!=)", line))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        while VARIABLE.search(line):
            line = VARIABLE.sub(lambda m: variables.get(m[1], ""), line)
        body.append(line.strip())
    return body


def commands(lines: list[str]) -> list[list[str]]:
    """Each shell command of `lines` as words (split at `&&`; `VAR=value` prefixes dropped)."""
    found = []
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"\w+=\S*", words[0]):
                words = words[1:]
            if words:
                found.append(words)
    return found


def pip_installs(words_list: list[list[str]]) -> list[list[str]]:
    """What each `pip install` is asked, from `install` on, without the flags that change only its output or
    settings (--quiet, --isolated)."""
    found = []
    for words in words_list:
        if words[0].endswith("/pip") and "install" in words:
            found.append([w for w in words[words.index("install"):] if w not in ("--quiet", "--isolated")])
    return found


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"the README has no section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def _readme_blocks(info: str) -> list[str]:
    section = _section()
    return [b.text for b in read(README).blocks if b.info == info and b.text in section]


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as sections of keys, each with its values in order (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals, f"{UNIT.name}:{number}: not `Key=value` in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_wheelhouse_recipe_builds_every_runtime_dependency_into_the_readmes_folder() -> None:
    built = [w for w in commands(recipe("wheelhouse", MAKEFILE.read_text(encoding="utf-8"))) if "wheel" in w[1:2]]
    assert len(built) == 1, f"one `pip wheel` in the recipe, found {built}"
    words = built[0]
    assert words[-1] == ".", "the project itself, with its runtime dependencies only (no [test] extras)"
    assert words[words.index("--wheel-dir") + 1] == "dist/wheelhouse"
    assert "`dist/wheelhouse/`" in _section() and "`make wheelhouse`" in _section()


def test_the_wheelhouse_is_checked_with_the_install_command_the_readme_and_install_txt_give() -> None:
    lines = recipe("wheelhouse", MAKEFILE.read_text(encoding="utf-8"))
    checked = pip_installs(commands(lines))
    readme = pip_installs(commands([line for block in _readme_blocks("sh") for line in block.splitlines()]))
    install = pip_installs(commands([line for line in INSTALL.read_text(encoding="utf-8").splitlines()
                                     if line.startswith("    ")]))  # its commands, indented; not its prose
    assert checked == readme == install == [INSTALL_COMMAND]
    assert any("PIP_CONFIG_FILE=/dev/null" in line and "--isolated" in line for line in lines), \
        "the check must ignore every configured index and find-links, or a missing wheel would pass"
    assert "cp deploy/wheelhouse/INSTALL.txt dist/wheelhouse/INSTALL.txt" in lines
    assert any("sha256sum *.whl > SHA256SUMS" in line for line in lines)
    for text in (INSTALL.read_text(encoding="utf-8"), _section()):
        assert "python3.11 -m venv /opt/yiwang && /opt/yiwang/bin/pip install --no-index --find-links wheelhouse " \
               "yiwang" in text
        assert "sha256sum -c SHA256SUMS" in text


def test_the_unit_runs_the_installed_agent_with_the_readmes_one_command() -> None:
    service = unit_sections(UNIT.read_text(encoding="utf-8"))["Service"]
    assert service["ExecStart"] == [f"/opt/yiwang/bin/{SERVE}"]
    assert any(line.strip() == SERVE for block in _readme_blocks("sh") for line in block.splitlines())
    assert service["Restart"] == ["on-failure"]
    assert service["User"] == ["yiwang"] and service["WorkingDirectory"] == ["/var/lib/yiwang"]
    # the carried bundle's secrets ({secret: env:NAME}, docs/ferry-agent.md) reach the agent from this file
    assert service["EnvironmentFile"] == ["-/etc/yiwang/ferry-agent.env"]
    assert "/etc/yiwang/ferry-agent.env" in _section()


def test_the_unit_is_hardened_and_may_write_every_path_of_the_agents_configuration() -> None:
    unit = unit_sections(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")):
        assert service.get(key) == [value], f"{key}={value}"
    writable = [Path(p) for value in service["ReadWritePaths"] for p in value.split()]
    config = yaml.safe_load(next(b for b in _readme_blocks("yaml") if "/etc/yiwang/ferry-agent.yaml" in b))
    paths = [Path(config[key]) for key in ("state", "master_key_file", "incoming", "outgoing")]
    paths.append(Path(service["WorkingDirectory"][0]))
    assert [p for p in paths if not any(p.is_relative_to(w) for w in writable)] == []
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_checks_catch_what_is_wrong() -> None:
    """The readers themselves: a variable expanded, `&&` split, environment prefixes dropped, a key outside a
    section refused."""
    makefile = "W := dist/x\nt: a\n\trm -rf $(W) && X=1 $(W)/bin/pip install --quiet -r y\nu:\n"
    assert recipe("t", makefile) == ["rm -rf dist/x && X=1 dist/x/bin/pip install --quiet -r y"]
    assert pip_installs(commands(recipe("t", makefile))) == [["install", "-r", "y"]]
    try:
        unit_sections("User=root\n")
    except AssertionError as refused:
        assert "not `Key=value` in a section" in str(refused)
    else:
        raise AssertionError("a key outside a section was read")
