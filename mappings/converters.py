"""Converters: the named value functions a mapping rule applies (`convert: NAME` or a chain `convert: [A, B]`).

Contract: every converter takes one value and returns one value, or raises ValueError/TypeError (the engine
turns that into a `MappingError` naming the field and the converter). Each is declared once, in `SPECS`, with
an example (input -> output) that the tests run and BUNDLE-FORMAT.md ("Converters") shows, and, for those that
turn a sector's time into a canonical one, what it gives (`INSTANT`: ISO-8601 UTC text; `DATE`: yyyy-MM-dd)
and the zone it reads the sector's wall-clock time in. No converter guesses a zone: a naive instant is refused
wherever an aware one is expected, and a wall-clock text is read only by a converter whose name says its zone.

Money is exact: fen are whole numbers, yuan are Decimal text with two places; a fraction of a fen is refused.
Chinese texts for legacy systems: `gbk_text` refuses what GBK cannot carry (rare characters, 生僻字, that a
GBK system would store as '?'); GB18030 bytes travel as base64 or hex text.
This module imports nothing of ours beyond the standard library.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Context, Decimal, InvalidOperation
from typing import Any

# Beijing time (北京时间) is UTC+8, a fixed offset: China has kept no summer time since 1991, and the tz database's
# Asia/Shanghai would turn 1986-1991 summer wall-clock times into +09:00 (and one hour a year into two readings).
SHANGHAI = timezone(timedelta(hours=8), "Beijing")
BEIJING, ZONE_UTC, OFFSET = "Beijing", "UTC", "offset"  # OFFSET: the value carries its own; none is refused
INSTANT, DATE = "instant", "date"  # what a time converter gives: ISO-8601 UTC text, or yyyy-MM-dd

Converter = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- basics


def code_text(value: Any) -> str:
    """The text a code is known by: booleans as YAML and JSON write them, everything else as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_bool(value: Any) -> Any:
    # bool is an int in Python; a flag arriving where a number is expected is a mistake, not 0/1.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def to_int(value: Any) -> int:
    if isinstance(_no_bool(value), float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def to_json(value: Any) -> str:
    """Compact, stable JSON text (sorted keys, Chinese kept as is)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def bool_text(value: Any) -> str:
    """A flag -> "true"/"false" (also accepts the text forms and xsd:boolean's 1/0); anything else is refused."""
    text = code_text(value).strip().lower()
    if text in ("true", "1"):
        return "true"
    if text in ("false", "0"):
        return "false"
    raise ValueError(f"{value!r} is not a boolean")


# --------------------------------------------------------------------------- instants and epochs


def _aware(value: Any) -> datetime:
    """An instant from a datetime or ISO-8601 text; a naive one is refused because it is ambiguous."""
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if instant.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return instant


def _iso_utc(instant: datetime) -> str:
    spec = "milliseconds" if instant.microsecond else "seconds"
    return instant.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def xsd_datetime_to_iso_utc(value: Any) -> str:
    """An xsd:dateTime with its offset (zeep's datetime, or the text) -> ISO-8601 UTC; no offset is refused."""
    return _iso_utc(_aware(value))


@dataclass(frozen=True)
class _Epoch:
    """Counts of one unit since 1970-01-01T00:00:00Z: UTC by definition, so never naive."""

    unit: timedelta

    def to_iso_utc(self, value: Any) -> str:
        return _iso_utc(_EPOCH + self.unit * to_int(value))

    def from_iso_utc(self, value: Any) -> int:
        # Floor division: digits below the unit are dropped, also before 1970.
        return (_aware(value) - _EPOCH) // self.unit


_SECONDS, _MILLIS = _Epoch(timedelta(seconds=1)), _Epoch(timedelta(milliseconds=1))


# --------------------------------------------------------------------------- wall-clock times in a named zone


@dataclass(frozen=True)
class _WallClock:
    """A sector's wall-clock text (no offset on the wire) in the zone the converter's name declares."""

    zone: tzinfo
    layout: str  # strftime
    pattern: re.Pattern[str]
    shown: str  # as sector documents write it

    def to_iso_utc(self, value: Any) -> str:
        text = str(value)
        if not self.pattern.fullmatch(text):
            raise ValueError(f"{value!r} is not {self.shown}")
        return _iso_utc(datetime.strptime(text, self.layout).replace(tzinfo=self.zone))

    def from_iso_utc(self, value: Any) -> str:
        return _aware(value).astimezone(self.zone).strftime(self.layout)


_COMPACT = re.compile(r"[0-9]{14}")
_DATETIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_BEIJING_COMPACT = _WallClock(SHANGHAI, "%Y%m%d%H%M%S", _COMPACT, "yyyyMMddHHmmss")
_UTC_COMPACT = _WallClock(UTC, "%Y%m%d%H%M%S", _COMPACT, "yyyyMMddHHmmss")
_BEIJING_TEXT = _WallClock(SHANGHAI, "%Y-%m-%d %H:%M:%S", _DATETIME_TEXT, "yyyy-MM-dd HH:mm:ss")
_UTC_TEXT = _WallClock(UTC, "%Y-%m-%d %H:%M:%S", _DATETIME_TEXT, "yyyy-MM-dd HH:mm:ss")


# --------------------------------------------------------------------------- dates and months

_COMPACT_DATE = re.compile(r"[0-9]{8}")
_COMPACT_MONTH = re.compile(r"[0-9]{4}(0[1-9]|1[0-2])")


def _day(value: Any) -> date:
    """A date, yyyy-MM-dd text, or an aware instant taken as its Beijing date (a naive one is refused)."""
    if isinstance(value, datetime) or (not isinstance(value, date) and len(str(value)) > 10):
        return _aware(value).astimezone(SHANGHAI).date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def date_iso(value: Any) -> str:
    """An xsd:date (zeep's date, or yyyy-MM-dd text) -> yyyy-MM-dd; an instant is taken as its Beijing date."""
    return _day(value).isoformat()


def date_compact(value: Any) -> str:
    """A date (or an instant, taken as its Beijing date) -> yyyyMMdd."""
    return _day(value).strftime("%Y%m%d")


def compact_date_to_iso(value: Any) -> str:
    """yyyyMMdd -> yyyy-MM-dd (a real day)."""
    text = str(value)
    if not _COMPACT_DATE.fullmatch(text):
        raise ValueError(f"{value!r} is not yyyyMMdd")
    return datetime.strptime(text, "%Y%m%d").date().isoformat()


def month_compact_to_iso(value: Any) -> str:
    """yyyyMM -> yyyy-MM."""
    text = str(value)
    if not _COMPACT_MONTH.fullmatch(text):
        raise ValueError(f"{value!r} is not yyyyMM")
    return f"{text[:4]}-{text[4:]}"


# --------------------------------------------------------------------------- money: fen and yuan

_YUAN_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_FEN_TEXT = re.compile(r"-?[0-9]+")
_FEN_PER_YUAN = 2  # decimal places


def _exact(digits: int) -> Context:
    # Enough precision that moving the decimal point never rounds (the default context keeps 28 digits).
    return Context(prec=digits + 2 * _FEN_PER_YUAN)


def fen_to_yuan(value: Any) -> str:
    """Whole fen (a number, or digits as text) -> yuan as exact text with two places (12345 -> "123.45")."""
    if isinstance(value, str) and not _FEN_TEXT.fullmatch(value):
        raise ValueError(f"{value!r} is not a whole number of fen")
    fen = to_int(value)
    return str(Decimal(fen).scaleb(-_FEN_PER_YUAN, _exact(len(str(fen)))))


def yuan_to_fen(value: Any) -> int:
    """Yuan (text, Decimal, int, or a JSON float read by its shortest text) -> whole fen; a fraction of a fen is
    refused, not rounded."""
    _no_bool(value)
    # repr() of a float is the shortest text that reads back as it: 123.45 stays 123.45, not 123.4499999...
    text = repr(value) if isinstance(value, float) else str(value)
    if not _YUAN_TEXT.fullmatch(text):
        raise ValueError(f"{value!r} is not an amount in yuan")
    try:
        fen = Decimal(text).scaleb(_FEN_PER_YUAN, _exact(len(text)))
    except InvalidOperation as exc:  # an ArithmeticError, not a ValueError
        raise ValueError(f"{value!r} is not an amount in yuan") from exc
    if fen != fen.to_integral_value():
        raise ValueError(f"{value!r} holds a fraction of a fen")
    return int(fen)


# --------------------------------------------------------------------------- GBK and GB18030 texts


def gbk_text(value: Any) -> str:
    """The text unchanged if a GBK system can carry it; its rare characters (生僻字) are refused by name, since a
    GBK system would store '?' in their place."""
    text = str(value)
    missing = sorted({char for char in text if not _in_gbk(char)})
    if missing:
        shown = ", ".join(f"'{char}' (U+{ord(char):04X})" for char in missing)
        raise ValueError(f"{shown} cannot be carried in GBK: a GBK system would store '?' instead")
    return text


def _in_gbk(char: str) -> bool:
    try:
        char.encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


def _gb18030(value: Any) -> bytes:
    return str(value).encode("gb18030")  # every Unicode character has a GB18030 encoding


def _gb18030_text(data: bytes) -> str:
    return data.decode("gb18030")  # strict: bytes that are not GB18030 raise UnicodeDecodeError (a ValueError)


def text_to_gb18030_base64(value: Any) -> str:
    """Text -> its GB18030 bytes as base64 (chain after gbk_text for a GBK system: GBK is GB18030's 2-byte part)."""
    return base64.b64encode(_gb18030(value)).decode("ascii")


def gb18030_base64_to_text(value: Any) -> str:
    """Base64 of GB18030 (or GBK) bytes -> text."""
    try:
        return _gb18030_text(base64.b64decode(str(value), validate=True))
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


def text_to_gb18030_hex(value: Any) -> str:
    """Text -> its GB18030 bytes as upper-case hex."""
    return _gb18030(value).hex().upper()


def gb18030_hex_to_text(value: Any) -> str:
    """Hex of GB18030 (or GBK) bytes -> text."""
    return _gb18030_text(bytes.fromhex(str(value)))


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ConverterSpec:
    """One converter as mappings name it, with the example BUNDLE-FORMAT.md shows and the tests check."""

    name: str
    function: Converter
    example: tuple[Any, Any]  # input -> output
    gives: str | None = None  # INSTANT or DATE: a canonical time, read with the zone below
    zone: str | None = None  # BEIJING | ZONE_UTC | OFFSET: the zone of the sector's side of the value


SPECS: tuple[ConverterSpec, ...] = (
    ConverterSpec("str", code_text, (False, "false")),
    ConverterSpec("int", to_int, ("42", 42)),
    ConverterSpec("json", to_json, ({"b": 1, "a": "中"}, '{"a":"中","b":1}')),
    ConverterSpec("bool_text", bool_text, ("1", "true")),
    # epochs: UTC by definition
    ConverterSpec("epoch_s_to_iso_utc", _SECONDS.to_iso_utc, (1704180600, "2024-01-02T07:30:00Z"), INSTANT, ZONE_UTC),
    ConverterSpec("iso_utc_to_epoch_s", _SECONDS.from_iso_utc, ("2024-01-02T07:30:00Z", 1704180600), zone=ZONE_UTC),
    ConverterSpec("epoch_ms_to_iso_utc", _MILLIS.to_iso_utc, (1704180600123, "2024-01-02T07:30:00.123Z"),
                  INSTANT, ZONE_UTC),
    ConverterSpec("iso_utc_to_epoch_ms", _MILLIS.from_iso_utc, ("2024-01-02T07:30:00Z", 1704180600000),
                  zone=ZONE_UTC),
    # wall-clock texts, each in the zone its name says
    ConverterSpec("datetime_compact_shanghai", _BEIJING_COMPACT.from_iso_utc,
                  ("2024-12-31T16:00:00Z", "20250101000000"), zone=BEIJING),
    ConverterSpec("compact_shanghai_to_iso_utc", _BEIJING_COMPACT.to_iso_utc,
                  ("20250101000000", "2024-12-31T16:00:00Z"), INSTANT, BEIJING),
    ConverterSpec("iso_utc_to_beijing_datetime", _BEIJING_TEXT.from_iso_utc,
                  ("2024-12-31T16:00:00Z", "2025-01-01 00:00:00"), zone=BEIJING),
    ConverterSpec("beijing_datetime_to_iso_utc", _BEIJING_TEXT.to_iso_utc,
                  ("2025-01-01 00:00:00", "2024-12-31T16:00:00Z"), INSTANT, BEIJING),
    ConverterSpec("iso_utc_to_compact_utc", _UTC_COMPACT.from_iso_utc,
                  ("2025-01-01T08:00:00+08:00", "20250101000000"), zone=ZONE_UTC),
    ConverterSpec("compact_utc_to_iso_utc", _UTC_COMPACT.to_iso_utc,
                  ("20250101000000", "2025-01-01T00:00:00Z"), INSTANT, ZONE_UTC),
    ConverterSpec("iso_utc_to_utc_datetime", _UTC_TEXT.from_iso_utc,
                  ("2025-01-01T08:00:00+08:00", "2025-01-01 00:00:00"), zone=ZONE_UTC),
    ConverterSpec("utc_datetime_to_iso_utc", _UTC_TEXT.to_iso_utc,
                  ("2025-01-01 00:00:00", "2025-01-01T00:00:00Z"), INSTANT, ZONE_UTC),
    ConverterSpec("xsd_datetime_to_iso_utc", xsd_datetime_to_iso_utc,
                  ("2026-11-24T10:00:00+08:00", "2026-11-24T02:00:00Z"), INSTANT, OFFSET),
    # dates (an instant becomes its Beijing date)
    ConverterSpec("date_iso", date_iso, ("2024-03-04T17:00:00Z", "2024-03-05"), DATE, BEIJING),
    ConverterSpec("date_compact", date_compact, ("2024-03-05", "20240305"), zone=BEIJING),
    ConverterSpec("compact_date_to_iso", compact_date_to_iso, ("20240305", "2024-03-05"), DATE),
    ConverterSpec("month_compact_to_iso", month_compact_to_iso, ("202610", "2026-10")),
    # money
    ConverterSpec("fen_to_yuan", fen_to_yuan, (12345, "123.45")),
    ConverterSpec("yuan_to_fen", yuan_to_fen, ("123.45", 12345)),
    # Chinese texts for legacy systems
    ConverterSpec("gbk_text", gbk_text, ("王小明", "王小明")),
    ConverterSpec("text_to_gb18030_base64", text_to_gb18030_base64, ("王", "zfU=")),
    ConverterSpec("gb18030_base64_to_text", gb18030_base64_to_text, ("zfU=", "王")),
    ConverterSpec("text_to_gb18030_hex", text_to_gb18030_hex, ("王", "CDF5")),
    ConverterSpec("gb18030_hex_to_text", gb18030_hex_to_text, ("CDF5", "王")),
)  # fmt: skip

CONVERTER_SPECS: Mapping[str, ConverterSpec] = {spec.name: spec for spec in SPECS}
CONVERTERS: Mapping[str, Converter] = {spec.name: spec.function for spec in SPECS}
