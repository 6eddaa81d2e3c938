"""Reading the repository's Markdown as a code host renders it: the pages (README.md, CHANGELOG.md, docs/*.md),
their fenced code blocks and inline code, their headings' anchors (GitHub's rule), their relative links, and
the quick starts — fenced `sh` blocks marked `<!-- quickstart:ROLE -->` — that tests/e2e/test_quick_starts.py
runs and tests/unit/test_docs.py keeps equal between the README and each role's page."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("hall", "operator", "sector")
ROLE_PAGES = {"hall": "docs/hall.md", "operator": "docs/operators.md", "sector": "docs/sectors.md"}

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)(?P<info>[^\n]*)$")
QUICKSTART = re.compile(r"^<!-- quickstart:(?P<role>[a-z]+) -->$")
HEADING = re.compile(r"^(?P<marks>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(?P<ticks>`+)(?P<code>.+?)(?P=ticks)")
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    """The documentation the checks cover: the README, the changelog and every page under docs/ (not the
    helpers' drafts in docs/_incoming/)."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string (`sh`, `yaml`, …), its text, the quick-start role marked before
    it (or None) and the line it starts on."""

    info: str
    text: str
    role: str | None
    line: int


@dataclass(frozen=True)
class Page:
    """A page split into its fenced blocks and the lines outside them (prose, tables, headings)."""

    path: Path
    blocks: tuple[Block, ...]
    prose: tuple[tuple[int, str], ...]  # (line number, line) outside fences

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))


def read(path: Path) -> Page:
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    fence: re.Match[str] | None = None
    body: list[str] = []
    role: str | None = None
    start = 0
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip() == fence["fence"]:
                blocks.append(Block(fence["info"].strip(), "\n".join(body) + "\n", role, start))
                fence, role = None, None
            else:
                body.append(line)
            continue
        opened = FENCE.match(line)
        if opened:
            fence, body, start = opened, [], number
            continue
        marked = QUICKSTART.match(line.strip())
        if marked:
            role = marked["role"]
        elif line.strip():
            role = None  # a marker names the block right after it (blank lines between are fine)
        prose.append((number, line))
    return Page(path, tuple(blocks), tuple(prose))


def quick_starts(page: Page, role: str) -> list[str]:
    """The role's quick-start blocks of the page, in order."""
    return [block.text for block in page.blocks if block.role == role]


def inline_code(page: Page) -> list[tuple[int, str]]:
    """(line, code) of every inline code span outside fenced blocks."""
    return [(number, match["code"]) for number, line in page.prose for match in INLINE_CODE.finditer(line)]


def links(page: Page) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code (inline code spans are not links)."""
    found = []
    for number, line in page.prose:
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match["target"]))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, every character but letters, digits,
    `_`, `-` and spaces dropped, spaces made hyphens."""
    text = LINK.sub(lambda match: match["text"], heading)
    text = INLINE_CODE.sub(lambda match: match["code"], text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Page) -> set[str]:
    """Every anchor the page's headings make; a repeated heading's later anchors end in -1, -2, …"""
    seen: Counter[str] = Counter()
    made = set()
    for _, line in page.prose:
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading["text"])
        made.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return made
