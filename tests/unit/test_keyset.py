"""The keyset cursor and seek (gateway.persistence.keyset), without a database: a cursor gives back its key
and nothing else; anything else is InvalidCursor; walking pages while rows arrive shows each row once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.persistence.keyset import InvalidCursor, Key, Keyset
from gateway.persistence.tables import MAX_ROW_ID

NEWEST_FIRST = Keyset("my-cases", (datetime, str), descending=True)
BY_ID = Keyset("audit", (int,))
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
keys = st.tuples(instants, st.text(min_size=1, max_size=40))


@given(keys)
def test_a_cursor_gives_back_its_key(key: Key) -> None:
    assert NEWEST_FIRST.decode(NEWEST_FIRST.encode(key)) == key


def test_an_instant_in_another_zone_is_the_same_instant() -> None:
    beijing = datetime(2026, 12, 7, 20, 10, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert NEWEST_FIRST.decode(NEWEST_FIRST.encode((beijing, "x"))) == (beijing.astimezone(UTC), "x")


@given(keys, st.integers(min_value=0), st.characters(codec="ascii"))
def test_a_cursor_changed_anywhere_is_refused_or_means_the_same(key: Key, where: int, char: str) -> None:
    cursor = NEWEST_FIRST.encode(key)
    at = where % len(cursor)
    changed = cursor[:at] + char + cursor[at + 1:]
    try:
        assert NEWEST_FIRST.decode(changed) == key  # base64's spare bits: the same bytes
    except InvalidCursor:
        pass


@pytest.mark.parametrize("cursor", ["", "!!!", "e30", "bnVsbA", "W10", "x" * 600, "eyJ2IjoxfQ"])
def test_garbage_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        BY_ID.decode(cursor)


def test_a_cursor_of_another_list_or_sort_is_refused() -> None:
    with pytest.raises(InvalidCursor, match="another list"):
        BY_ID.decode(Keyset("messages", (int,)).encode((7,)))
    with pytest.raises(InvalidCursor):
        Keyset("dead-letters:-attempts", (int, int)).decode(Keyset("dead-letters:attempts", (int, int)).encode((1, 2)))


def test_a_cursor_of_one_owners_list_is_refused_on_anothers() -> None:
    events = Keyset("case-events", (int,))
    cursor = events.of("case-A").encode((3,))
    assert events.of("case-A").decode(cursor) == (3,)
    for other in (events.of("case-B"), events):
        with pytest.raises(InvalidCursor, match="another list"):
            other.decode(cursor)


def test_a_key_of_the_wrong_shape_or_past_a_row_id_is_refused() -> None:
    with pytest.raises(InvalidCursor):
        BY_ID.decode(Keyset("audit", (str,)).encode(("7",)))
    with pytest.raises(InvalidCursor):
        BY_ID.decode(BY_ID.encode((MAX_ROW_ID + 1,)))
    with pytest.raises(InvalidCursor):
        NEWEST_FIRST.encode((datetime(2026, 1, 1), "naive"))  # an instant needs its zone
    assert BY_ID.decode(None) is None and BY_ID.last_id(None) is None and BY_ID.last_id(BY_ID.encode((9,))) == 9


@given(st.lists(st.integers(min_value=0, max_value=10**6), unique=True, max_size=40),
       st.lists(st.integers(min_value=0, max_value=10**6), max_size=20),
       st.integers(min_value=1, max_value=7), st.booleans())
def test_walking_while_rows_arrive_shows_each_row_there_from_the_start_once(
        first: list[int], arriving: list[int], limit: int, descending: bool) -> None:
    order = Keyset("rows", (int,), descending)
    rows, seen, cursor = set(first), [], None
    arriving = [r for r in arriving if r not in rows]
    while True:
        page = order.seek(sorted(rows), lambda r: (r,), order.decode(cursor), limit)
        seen += page.items
        assert len(page.items) <= limit
        if page.next_key is None:
            break
        cursor = order.encode(page.next_key)
        if arriving:
            rows.add(arriving.pop())
    assert len(seen) == len(set(seen))
    assert set(first) <= set(seen) <= rows
    assert seen == sorted(seen, reverse=descending)
