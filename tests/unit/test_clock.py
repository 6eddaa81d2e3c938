"""The one way an instant leaves the gateway: Beijing time, offset +08:00, milliseconds."""

from datetime import UTC, datetime, timedelta, timezone

from gateway.domain.clock import beijing_text, instants_as_beijing_text


def test_an_instant_leaves_in_beijing_time_with_its_offset() -> None:
    assert beijing_text(datetime(2026, 12, 7, 16, 30, 5, 123456, tzinfo=UTC)) == "2026-12-08T00:30:05.123+08:00"


def test_a_naive_instant_read_back_from_storage_is_utc() -> None:
    assert beijing_text(datetime(2026, 12, 7, 4, 0)) == "2026-12-07T12:00:00.000+08:00"


def test_the_same_instant_in_another_zone_reads_the_same() -> None:
    elsewhere = datetime(2026, 12, 7, 6, 0, tzinfo=timezone(timedelta(hours=2)))
    assert beijing_text(elsewhere) == "2026-12-07T12:00:00.000+08:00"


def test_instants_kept_in_utc_are_shown_in_beijing_time_and_nothing_else() -> None:
    stored = {"at": "2026-11-24T02:00:00.5+00:00", "due": "2026-12-01", "history": [{"at": "2026-11-24T02:00:00Z"}],
              "when": datetime(2026, 11, 24, 2, tzinfo=UTC), "note": "2026-11-24T02:00", "n": 1}
    assert instants_as_beijing_text(stored) == {
        "at": "2026-11-24T10:00:00.500+08:00", "due": "2026-12-01",
        "history": [{"at": "2026-11-24T10:00:00.000+08:00"}],
        "when": "2026-11-24T10:00:00.000+08:00", "note": "2026-11-24T02:00", "n": 1}
