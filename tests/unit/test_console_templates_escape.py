"""Every field of every console template, rendered with hostile text: escaped, never markup, never a script URL.

No hand-picked few: each template in ops/console/templates/ (pages and partials, including the ones added after
this test) is rendered with a context in which every variable — and every attribute, item, call result and
iteration of it — is `Poison`: a script payload posing as text (a `str` without `__html__`, so autoescaping
must treat it as data). Each template is rendered twice, so that both sides of its conditions are shown: once
with comparisons false and the payload as plain text, once with comparisons true, the value a mapping, and the
payload after a `javascript:` URL (what an href filled from data would run). Then the page is parsed and:
- the raw payload is nowhere; no element has an `on…` attribute (the payload's svg and img); every `<script>`
  is one of our own files with no text in it;
- every URL attribute (href, src, action, formaction, hx-get, …) is a path of our own — a link holding data is
  built from a fixed path (`/console/dead-letters/{{ id }}`) or passed through the `link` filter;
- the escaped payload IS on the page, so the fields were rendered: a template that shows no data proves
  nothing, and those are named in FIELDLESS (so a new one is a decision, not an accident).
Besides: no template or module of the console switches escaping off or marks text as markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jinja2 import Environment, StrictUndefined, meta
from markupsafe import escape

from ops.console import web
from tests.support.console import PAYLOAD, SCRIPT_URL, defects

ESCAPED = str(escape(PAYLOAD))
CONSOLE = Path(web.__file__).parent
TEMPLATES = sorted(str(p.relative_to(CONSOLE / "templates")) for p in (CONSOLE / "templates").rglob("*.html"))
# Templates that show nothing from their context (only fixed text): rendering them proves nothing about escaping.
FIELDLESS = {"_letter_head.html", "_pages.html"}  # _pages.html: only links, through `link`


class Poison(str):
    """Hostile text standing for every value. In a template (the environment's getattr/getitem, see
    `environment`) its attributes and items are itself, and so is any item looked up by it; calling it gives
    itself, iterating it two of itself (so `for a, b in x.items()` and `for a, b in x` both unpack), arithmetic
    gives itself, `==` and the orderings answer `EQUAL`. Python code (a filter) sees a str with a str's methods."""

    EQUAL: ClassVar[bool] = False
    WIDTH: ClassVar[int] = 2  # how many of itself iterating gives: `for a, b in x` needs 2, `for a, b, c in x` 3

    def __call__(self, *args: Any, **kwargs: Any) -> Poison:
        return self

    def __iter__(self) -> Iterator[Poison]:
        return iter((self,) * type(self).WIDTH)

    def __eq__(self, other: object) -> bool:
        return type(self).EQUAL

    def __ne__(self, other: object) -> bool:
        return not type(self).EQUAL

    def __lt__(self, other: object) -> bool:
        return type(self).EQUAL

    __le__ = __gt__ = __ge__ = __lt__
    __hash__ = str.__hash__

    def _same(self, *_: Any) -> Poison:
        return self

    def widened(self, width: int) -> Poison:
        """The same text, iterating into `width` of itself."""
        if width == type(self).WIDTH:
            return self
        return type(f"{type(self).__name__}{width}", (type(self),), {"WIDTH": width})(self)

    lower = upper = casefold = _same  # Jinja's sorting (ignore_case) lowers text

    def items(self) -> list[tuple[Poison, Poison]]:  # for filters (dictsort): a mapping of itself to itself
        return [(self, self)]

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __neg__ = __abs__ = __round__ = _same


class TruePoison(Poison):
    """The other side of every condition: comparisons true, a mapping to `is mapping`, a script URL first."""

    EQUAL = True


Mapping.register(TruePoison)
POISONS = (Poison(PAYLOAD), TruePoison(SCRIPT_URL + PAYLOAD))
# Attributes a template unpacks into three, not two (`for name, value, href in entry.links`): their poison
# iterates into three of itself.
WIDTHS = {"links": 3}


def environment() -> Environment:
    """The console's environment where a template's every attribute and item of the poison (or looked up by it)
    is the poison, and Starlette's `url_for` (should a template use it) builds our own paths."""
    overlaid = web.TEMPLATES.env.overlay(cache_size=0)
    overlaid.globals = {**overlaid.globals, "url_for": lambda name, **params: f"/console/{name}"}
    plain_getattr, plain_getitem = overlaid.getattr, overlaid.getitem

    def getattr_(obj: Any, attribute: str) -> Any:
        return obj.widened(WIDTHS.get(attribute, 2)) if isinstance(obj, Poison) else plain_getattr(obj, attribute)

    def getitem(obj: Any, key: Any) -> Any:
        return next((x for x in (obj, key) if isinstance(x, Poison)), None) or plain_getitem(obj, key)

    overlaid.getattr, overlaid.getitem = getattr_, getitem  # type: ignore[method-assign,assignment]
    return overlaid


def names_used(env: Environment) -> set[str]:
    """Every name any template reads from its context (templates include and extend one another)."""
    assert env.loader is not None
    used: set[str] = set()
    for name in TEMPLATES:
        source = env.loader.get_source(env, name)[0]
        used |= meta.find_undeclared_variables(env.parse(source))
    return used - set(env.globals)


def rendered(name: str, poison: Poison) -> str:
    env = environment()
    return env.get_template(name).render({variable: poison for variable in names_used(env)})


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_field_of_the_template_is_escaped_and_no_link_leaves_the_console(name: str) -> None:
    pages = [rendered(name, poison) for poison in POISONS]
    for poison, html in zip(POISONS, pages, strict=True):
        assert defects(html) == [], (type(poison).__name__, html)
    shows_fields = any(ESCAPED in html for html in pages)
    assert shows_fields == (name not in FIELDLESS), (
        f"{name} renders no field with the payload: name it in FIELDLESS" if not shows_fields
        else f"{name} renders fields now: take it out of FIELDLESS")


def test_the_poison_is_seen_when_a_template_does_not_escape() -> None:
    # The check above would catch a template that printed data as markup or put data in an href.
    env = web.TEMPLATES.env
    bad = env.from_string('<a href="{{ x }}">{{ x | safe }}</a>').render(x=POISONS[1])
    assert "the raw payload" in defects(bad)
    assert any("not a path of our own" in d for d in defects(env.from_string('<a href="{{ x }}">k</a>').render(
        x=POISONS[1])))
    assert defects(env.from_string('<a href="{{ x | link }}">{{ x }}</a>').render(x=POISONS[1])) == []


def test_beijing_shows_an_instant_in_beijing_time_and_text_it_cannot_read_as_text() -> None:
    assert web.beijing(datetime(2026, 12, 8, 2, 0, tzinfo=UTC)) == "2026-12-08 10:00:00"
    assert web.beijing(datetime(2026, 12, 8, 2, 0)) == "2026-12-08 10:00:00"  # naive: UTC
    assert web.beijing("2026-12-08T02:00:00+00:00") == "2026-12-08 10:00:00"
    assert web.beijing(None) == web.beijing("") == web.beijing("  ") == "—"
    assert web.beijing("明天上午 <b>") == "明天上午 <b>"
    assert web.TEMPLATES.env.from_string("{{ t | beijing }}").render(t="<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"


def test_age_shows_a_duration_and_text_it_cannot_read_as_text() -> None:
    assert (web.age(None), web.age(45), web.age(192.5)) == ("—", "45 秒", "3 分 12 秒")
    assert web.age("很久 <b>") == "很久 <b>"
    assert web.TEMPLATES.env.from_string("{{ t | age }}").render(t="<b>") == "&lt;b&gt;"


def test_link_keeps_a_console_path_and_sends_anything_else_to_the_overview() -> None:
    assert web.link("/console/dead-letters?sector=a&status=dead") == "/console/dead-letters?sector=a&status=dead"
    for elsewhere in ("javascript:alert(1)", "//evil.example/console", "https://evil.example/", "/v1/ops",
                      "/console\\evil", None, 7):
        assert web.link(elsewhere) == "/console", elsewhere


def test_autoescaping_is_on_for_every_template_and_undefined_names_fail() -> None:
    env = web.TEMPLATES.env
    assert env is web._environment and env.undefined is StrictUndefined
    assert callable(env.autoescape)
    assert all(env.autoescape(name) for name in [*TEMPLATES, "new_page.html", "_new_partial.html"])


UNESCAPING = re.compile(
    r"\|\s*safe\b|\bMarkup\s*\(|\bmarkupsafe\b|__html__|autoescape\s*(=\s*)?false|\{%-?\s*autoescape", re.IGNORECASE)


def test_nothing_in_the_console_switches_escaping_off_or_marks_data_as_markup() -> None:
    found = [f"{path.relative_to(CONSOLE)}:{number}: {line.strip()}"
             for path in sorted([*CONSOLE.rglob("*.html"), *CONSOLE.rglob("*.py")])
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if UNESCAPING.search(line)]
    assert found == []
