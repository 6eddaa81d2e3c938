"""Keyset paging, one way for every list: the opaque cursor and the "strictly after this row" condition.

A list is ordered by a key (e.g. `(created_at, case_no)` newest first, or `id` oldest first) that is unique
per row. A page is the first `limit` rows after the previous page's last key; the cursor carries that key.
Rows inserted between two pages therefore never shift a page: no row is shown twice, none is skipped
(an offset would do both).

- `Keyset(list_name, kinds, descending)` describes one list's order. Its cursors are base64url of a small
  versioned JSON `{"v": 1, "l": list_name, "k": [...], "t": tag}`: the list's name is bound in, so a cursor
  from one list (or one sort of a list) is refused by another, and the tag refuses a hand-edited cursor.
  The tag is a checksum, not a secret: a cursor only positions a caller inside a list they may read anyway.
  `of(owner)` binds the owner of a list too (a case's events, a subscription's deliveries).
- `decode` raises `InvalidCursor` (the API answers 422 `invalid-cursor`) for anything it did not make.
- `after(columns, key)` is the SQL condition for the stores; `seek(items, ...)` the same for the few short
  lists held in memory (the catalogue, a case's events, certificates, …), so both page alike.

Plain Python and SQLAlchemy only: the CLI uses it too, and must not load the web framework.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, false, or_

from gateway.persistence.tables import MAX_ROW_ID

__all__ = ["CURSOR_VERSION", "MAX_CURSOR", "InvalidCursor", "Key", "Keyset", "Slice"]

CURSOR_VERSION = 1
MAX_CURSOR = 500  # characters; every cursor this module makes is far shorter
_TAG_SALT = b"yiwang-cursor"

T = TypeVar("T")
Key = tuple[Any, ...]  # one row's sort key, parts as the Keyset's `kinds` say


class InvalidCursor(ValueError):
    """A cursor this list did not give: garbled, edited, of another version, list or sort."""


@dataclass(frozen=True)
class Slice(Generic[T]):
    """One page of rows, and the key to continue after (None: this is the last page)."""

    items: list[T]
    next_key: Key | None


@dataclass(frozen=True)
class Keyset:
    """How one list is ordered: its name (bound in its cursors), the types of its key's parts
    (`datetime`, `int` or `str`), and whether it runs newest (largest) first."""

    list_name: str
    kinds: tuple[type, ...]
    descending: bool = False

    def of(self, owner: str) -> Keyset:
        """The same order for the list of one owner (a case's events, a subscription's deliveries): its cursors
        name the owner too, so one case's cursor is refused on another's. Never an owner that is personal data
        (an applicant's ID number): a cursor travels in URLs and logs."""
        return replace(self, list_name=f"{self.list_name}/{owner}")

    # -- the cursor ------------------------------------------------------------------------------
    def encode(self, key: Key) -> str:
        parts = [_jsonable(part) for part in self._checked(key)]
        body = {"v": CURSOR_VERSION, "l": self.list_name, "k": parts, "t": self._tag(parts)}
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str | None) -> Key | None:
        """The key a cursor of this list carries (None for no cursor: the first page)."""
        if cursor is None:
            return None
        try:
            if len(cursor) > MAX_CURSOR:
                raise ValueError("too long")
            body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
                raise ValueError("not a cursor of this version")
            if body.get("l") != self.list_name:
                raise InvalidCursor(f"the cursor belongs to another list, not to {self.list_name}")
            parts = body.get("k")
            if not isinstance(parts, list) or body.get("t") != self._tag(parts):
                raise ValueError("edited")
            return self._checked(tuple(_parsed(kind, part) for kind, part in zip(self.kinds, parts, strict=True)))
        except InvalidCursor:
            raise
        except (ValueError, TypeError, UnicodeDecodeError, binascii.Error) as garbled:
            raise InvalidCursor(f"the cursor is not one {self.list_name} gave: use next_cursor as it came") \
                from garbled

    def last_id(self, cursor: str | None) -> int | None:
        """The row id a cursor of a list ordered by id alone carries (the stores' `after_id`/`before_id`)."""
        key = self.decode(cursor)
        return None if key is None else int(key[0])

    # -- the page --------------------------------------------------------------------------------
    def after(self, columns: Sequence[Any], key: Key | None) -> ColumnElement[bool] | None:
        """SQL: rows strictly after `key` in this order (None: no condition). `(a, b) > (x, y)` spelled out
        as `a > x OR (a = x AND b > y)`, which SQLite and PostgreSQL both use the index for."""
        if key is None:
            return None
        terms: list[ColumnElement[bool]] = []
        for i, (column, value) in enumerate(zip(columns, key, strict=True)):
            beyond = column < value if self.descending else column > value
            terms.append(and_(*(c == v for c, v in zip(columns[:i], key[:i], strict=True)), beyond))
        return or_(false(), *terms)

    def order_by(self, columns: Sequence[Any]) -> list[Any]:
        return [c.desc() if self.descending else c.asc() for c in columns]

    def cut(self, rows: Sequence[T], limit: int, key_of: Callable[[T], Key]) -> Slice[T]:
        """The page from `limit + 1` rows fetched after the cursor: the extra row says there is more."""
        items = list(rows[:limit])
        return Slice(items, key_of(items[-1]) if len(rows) > limit and items else None)

    def seek(self, items: Sequence[T], key_of: Callable[[T], Key], after: Key | None, limit: int) -> Slice[T]:
        """The same page of a list held in memory: sorted by key, after `after`."""
        ordered = sorted(items, key=key_of, reverse=self.descending)
        if after is not None:
            ordered = [i for i in ordered if (key_of(i) < after if self.descending else key_of(i) > after)]
        return self.cut(ordered[:limit + 1], limit, key_of)

    # -- inside ------------------------------------------------------------------------------------
    def _checked(self, key: Key) -> Key:
        if len(key) != len(self.kinds) or not all(_is(kind, part) for kind, part in zip(self.kinds, key, strict=True)):
            raise InvalidCursor(f"a key of {self.list_name} is {', '.join(k.__name__ for k in self.kinds)}")
        return key

    def _tag(self, parts: list[Any]) -> str:
        canonical = json.dumps([CURSOR_VERSION, self.list_name, parts], separators=(",", ":"), ensure_ascii=False)
        return hashlib.blake2b(canonical.encode(), digest_size=6, key=_TAG_SALT).hexdigest()


def _is(kind: type, part: Any) -> bool:
    if kind is int:
        return isinstance(part, int) and not isinstance(part, bool)
    if kind is datetime:
        return isinstance(part, datetime) and part.tzinfo is not None
    return isinstance(part, kind)


def _jsonable(part: Any) -> Any:
    return part.astimezone(UTC).isoformat() if isinstance(part, datetime) else part


def _parsed(kind: type, part: Any) -> Any:
    if kind is datetime:
        if not isinstance(part, str):
            raise TypeError("an instant is text")
        instant = datetime.fromisoformat(part)
        if instant.tzinfo is None:
            raise ValueError("an instant without a zone")
        return instant.astimezone(UTC)
    if kind is int and isinstance(part, int) and not 0 <= part <= MAX_ROW_ID:
        raise ValueError("past what a row id or number can be")  # must not reach SQL (a 500 in PostgreSQL)
    return part
