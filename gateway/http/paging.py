"""Every HTTP list pages one way: `?limit=&cursor=` in, `{"items", "next_cursor", "total"}` out.

- `Paged` (or `page_query(default, maximum)` for a list with other bounds) is the query dependency:
  `limit` (default 50, at most 500 unless the list says otherwise) and `cursor` (the `next_cursor` of the
  page before, opaque). The cursor is decoded by the list's `Keyset` (gateway.persistence.keyset): a
  garbled, edited or foreign one is a 422 problem `invalid-cursor` and changes nothing.
- `Page[ItemOut]` is the response model: `items`, `next_cursor` (null on the last page) and `total` (how
  many the whole list holds, where that is cheap to count; null on the big logs).
- `answer(...)` turns a `Slice` into that body.
"""

# No `from __future__ import annotations` here: FastAPI reads the dependency's annotations, which name the
# bounds `page_query` was given (a closure), and a string annotation could not be resolved.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from gateway.http.problems import install_problems
from gateway.persistence.keyset import MAX_CURSOR, InvalidCursor, Key, Keyset, Slice

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Page", "PageQuery", "Paged", "answer", "install_paging_error_handlers",
           "page_query"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
Item = TypeVar("Item")
T = TypeVar("T")


class Page(BaseModel, Generic[Item]):
    """One page of a list. Ask for the next with `?cursor=<next_cursor>` and the same filters."""

    items: list[Item]
    next_cursor: str | None = Field(description="opaque; null: this is the last page")
    total: int | None = Field(default=None, description="how many the list holds over all its pages; null where "
                                                        "counting would be costly (the audit and message logs)")


@dataclass(frozen=True)
class PageQuery:
    limit: int
    cursor: str | None

    def after(self, keyset: Keyset) -> Key | None:
        """The key to continue after (InvalidCursor, answered 422, for a cursor this list did not give)."""
        return keyset.decode(self.cursor)

    def after_id(self, keyset: Keyset) -> int | None:
        """The same for a list ordered by row id alone."""
        return keyset.last_id(self.cursor)


def page_query(default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> Callable[..., PageQuery]:
    """The `limit` and `cursor` query parameters of a list, bounded as given."""

    def paging(limit: Annotated[int, Query(ge=1, le=maximum, description=f"items per page, 1 to {maximum}")] = default,
               cursor: Annotated[str | None, Query(max_length=MAX_CURSOR, description="`next_cursor` of the page "
                                                   "before; none for the first page")] = None) -> PageQuery:
        return PageQuery(limit, cursor)

    return paging


Paged = Annotated[PageQuery, Depends(page_query())]


def answer(keyset: Keyset, page: Slice[T], view: Callable[[T], Any], total: int | None = None) -> dict[str, Any]:
    """The body of a page: its items as `view` shows them, the cursor of the next, the total if counted."""
    cursor = keyset.encode(page.next_key) if page.next_key is not None else None
    return {"items": [view(item) for item in page.items], "next_cursor": cursor, "total": total}


def install_paging_error_handlers(app: FastAPI) -> None:
    install_problems(app, [(InvalidCursor, 422, "invalid-cursor", "分页游标无效")])
