"""gateway/security/published_secrets.py lists exactly the values this repository publishes as credentials.

The repository is read here as an attacker would read it: Python files parsed (so a value is found where it
is *used* as a credential, not wherever a word looks like one), Markdown and YAML read as text. A value is a
credential when it is given to a `YIWANG_SECRET_*`, key or master-key setting (a dict entry, `setenv`,
`os.environ[...] =`, a `NAME=value` line in a document), to a parameter named `secret`, `password`,
`client_secret`, `callback_secret` or `token` (a call or a default), or to a constant named `…_SECRET` or
`…_PASSWORD`. References (`env:`, `file:`, `vault:`, `cert:`) are where a secret lives, not one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from gateway.security.published_secrets import PUBLISHED_SECRETS, where_published

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_FOLDERS = frozenset({".venv", "var", ".git", "__pycache__", "node_modules", "build", "dist"})
SETTING = re.compile(r"YIWANG_(?:SECRET_\w+|MATERIAL_LINK_KEY|BLIND_INDEX_KEY|MASTER_KEY)")
PARAMETERS = frozenset({"secret", "password", "client_secret", "callback_secret", "token"})
CONSTANT = re.compile(r"(?:^|_)(?:SECRET|PASSWORD)$", re.IGNORECASE)
TEXT_SETTING = re.compile(rf"\b({SETTING.pattern})=([^\s`'\"]+)")
TEXT_PARAMETER = re.compile(r"\b(secret|password|client_secret|callback_secret)\s*[=:]\s*[\"']([^\"'\s]+)[\"']")
REFERENCE = re.compile(r"^(?:env|file|vault|cert):")

Found = tuple[str, str]  # (value, where: file:line and how it is used)


def repository_files(suffixes: tuple[str, ...]) -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if path.suffix in suffixes and path.is_file() and not SKIPPED_FOLDERS.intersection(parts):
            yield path


def literal(node: ast.AST | None) -> str | None:
    """A string the code spells out: a literal, or a literal repeated (`"cd" * 32`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        text, times = literal(node.left), node.right
        if text is not None and isinstance(times, ast.Constant) and isinstance(times.value, int):
            return text * times.value
    return None


def is_setting(node: ast.AST | None) -> bool:
    name = literal(node)
    return name is not None and SETTING.fullmatch(name) is not None


def credentials_in_python(tree: ast.AST) -> Iterator[tuple[int, str, ast.AST | None]]:
    """(line, how, value node) of every credential the module spells out."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            yield from ((node.lineno, f"{literal(k)} in a dict", v) for k, v in zip(node.keys, node.values)
                        if is_setting(k))
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "setenv" and len(node.args) == 2 \
                    and is_setting(node.args[0]):
                yield node.lineno, f"setenv {literal(node.args[0])}", node.args[1]
            yield from ((node.lineno, f"{kw.arg}=", kw.value) for kw in node.keywords if kw.arg in PARAMETERS)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name) and CONSTANT.search(target.id):
                    yield node.lineno, f"{target.id} =", node.value
                if isinstance(target, ast.Subscript) and is_setting(target.slice):
                    yield node.lineno, f"[{literal(target.slice)}] =", node.value
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            positional = arguments.posonlyargs + arguments.args
            defaults = zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults)
            for argument, default in [*defaults, *zip(arguments.kwonlyargs, arguments.kw_defaults)]:
                if argument.arg in PARAMETERS:
                    yield node.lineno, f"{argument.arg} default", default


def published_credentials() -> Iterator[Found]:
    for path in repository_files((".py",)):
        where = path.relative_to(ROOT).as_posix()
        for line, how, node in credentials_in_python(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            yield literal(node) or "", f"{where}:{line} ({how})"
    for path in repository_files((".md", ".yaml", ".yml")):
        where, text = path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8", errors="replace")
        for pattern in (TEXT_SETTING, TEXT_PARAMETER):
            for match in pattern.finditer(text):
                yield match.group(2), f"{where}:{text.count(chr(10), 0, match.start()) + 1} ({match.group(1)})"


def test_every_value_the_repository_publishes_as_a_credential_is_listed_and_nothing_else() -> None:
    found: dict[str, list[str]] = {}
    for value, where in published_credentials():
        if value and not REFERENCE.match(value) and not any(c.isspace() for c in value):
            found.setdefault(value, []).append(where)
    missing = {value: places for value, places in found.items() if where_published(value) is None}
    assert not missing, f"add to gateway/security/published_secrets.py (value: where it is published): {missing}"
    stale = sorted(set(PUBLISHED_SECRETS) - set(found))
    assert not stale, f"published nowhere any more, remove from gateway/security/published_secrets.py: {stale}"


def test_the_scan_finds_each_way_a_credential_is_given() -> None:
    """The scanner's own negative control: each rule finds its case, and a look-alike is not a credential."""
    module = ast.parse('''
ENV = {"YIWANG_SECRET_X": "from-a-dict", "OTHER": "not-a-secret"}
monkeypatch.setenv("YIWANG_MATERIAL_LINK_KEY", "ab" * 16)
os.environ["YIWANG_BLIND_INDEX_KEY"] = "from-environ"
Simulator(password="from-a-call", username="not-a-secret")
DEFAULT_CLIENT_SECRET = "from-a-constant"
LEDGER_KEY_FILE = "not-a-secret"
def serve(port=1, secret="from-a-default", *, token="from-a-keyword-default"): ...
''')
    values = {literal(node) for _, _, node in credentials_in_python(module)}
    assert values == {"from-a-dict", "ab" * 16, "from-environ", "from-a-call", "from-a-constant",
                      "from-a-default", "from-a-keyword-default"}
    text = 'export YIWANG_SECRET_GA_HMAC=from-a-document `Sim(secret="quoted")` {secret: env:YIWANG_SECRET_X}'
    assert [m.group(2) for p in (TEXT_SETTING, TEXT_PARAMETER) for m in p.finditer(text)] == [
        "from-a-document", "quoted"]


def test_a_published_value_is_known_whatever_its_case_or_surrounding_blanks() -> None:
    assert where_published(" GA-Secret\n") == PUBLISHED_SECRETS["ga-secret"]
    assert where_published("ga-secret-2") is None
