"""A dead letter's cause (ops/causes.py): letters dead of one fault share one, whatever ids they carry.

- Property: two messages made of the same words around different ids (case numbers, idempotency keys, UUIDs,
  hex ids, times, IP:ports, ID and phone numbers, counts) give one cause.
- Property: different words around the same ids give different causes.
- No ID or phone number survives into a cause (it rests plain); whitespace collapses; the length is bounded.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ops.causes import MAX_CAUSE, cause_of

CODES = ["11370100MB1234567X4440111000000", "000000000000000000000000000000A", "1137010000000000000000000000000"]
CASE_NO = st.builds(lambda code, date, seq: f"{code}{date}{seq:06d}", st.sampled_from(CODES),
                    st.dates().map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}"), st.integers(0, 999_999))
KEY = st.builds(lambda case_no, task, op, r: f"{case_no}:{task}:{op}" + (f":r{r}" if r else ""), CASE_NO,
                st.sampled_from(["t1", "t2", "e7"]), st.sampled_from(["submit_case", "query_status"]),
                st.integers(0, 9))
IP_PORT = st.builds(lambda a, b, c, d, port: f"{a}.{b}.{c}.{d}" + (f":{port}" if port else ""),
                    *[st.integers(0, 255)] * 4, st.integers(0, 65535))
TIME = st.datetimes().map(lambda t: t.isoformat(timespec="milliseconds") + "+08:00")
CLOCK = st.times().map(lambda t: t.strftime("%H:%M:%S"))
ID_NUMBER = st.builds(lambda n, check: f"{n}{check}", st.integers(10**16, 7 * 10**16), st.sampled_from("0123456789X"))
PHONE = st.builds(lambda second, rest: f"1{second}{rest:09d}", st.integers(3, 9), st.integers(0, 10**9 - 1))
HEX_ID = st.builds(lambda n, digit, letter: f"{n:06x}{digit}{letter}", st.integers(0, 2**64), st.integers(0, 9),
                   st.sampled_from("abcdef"))
NUMBER = st.integers(0, 10**9).map(str)
# Each slot's kind, and two values of it: the messages differ only in the values.
KINDS = [CASE_NO, KEY, st.uuids().map(str), IP_PORT, TIME, CLOCK, ID_NUMBER, PHONE, HEX_ID, NUMBER]
# Words hold no digit (a digit is a number's); ASCII letters, Chinese and punctuation.
WORD = st.text(st.sampled_from(list("abcdefghijklmnopqrstuvwxyzXYZ") + list("连接超时拒绝证书无效部门") + list("():,."))
               , min_size=1, max_size=8).filter(lambda w: any(c.isalpha() for c in w))


@st.composite
def two_fillings(draw: st.DrawFn) -> tuple[list[str], list[str], list[str]]:
    """Words, and two fillings of the slots between them: the same kind in each slot, values drawn apart."""
    words = draw(st.lists(WORD, min_size=1, max_size=5))
    kinds = [draw(st.sampled_from(KINDS)) for _ in words[1:]]
    return words, [draw(kind) for kind in kinds], [draw(kind) for kind in kinds]


def _message(words: list[str], values: list[str], space: str = " ") -> str:
    parts = [words[0]]
    for word, value in zip(words[1:], values, strict=True):
        parts += [value, word]
    return space.join(parts)


@given(two_fillings())
def test_messages_differing_only_in_ids_share_one_cause(drawn: tuple[list[str], list[str], list[str]]) -> None:
    words, first, second = drawn
    assert cause_of("transport", "social_security", _message(words, first)) == \
        cause_of("transport", "social_security", _message(words, second, space=" \n\t "))


@given(two_fillings(), st.lists(WORD, min_size=1, max_size=6))
def test_different_words_give_different_causes(drawn: tuple[list[str], list[str], list[str]],
                                               others: list[str]) -> None:
    words, values, _ = drawn
    others = (others + words)[: len(words)]
    if others == words:
        others[0] += "z"
    assert cause_of("timeout", "tax", _message(words, values)) != cause_of("timeout", "tax", _message(others, values))


@given(st.text(max_size=400))
def test_a_cause_is_bounded_and_one_line(message: str) -> None:
    cause = cause_of("sector_fault", "social_security", message)
    assert len(cause) <= MAX_CAUSE
    assert cause.startswith("social_security/sector_fault:")
    assert "\n" not in cause and "  " not in cause


@given(ID_NUMBER, PHONE, st.sampled_from(["身份证", "证件号 ", "id="]))
def test_no_id_or_phone_number_survives(id_number: str, phone: str, before: str) -> None:
    cause = cause_of("validation", "civil_affairs", f"{before}{id_number}，电话{phone} 校验失败")
    assert id_number not in cause and phone not in cause
    assert not any(c.isdigit() for c in cause)


def test_the_class_and_sector_name_the_group() -> None:
    message = "connect to 10.0.3.7:8443 timed out after 30001 ms"
    assert cause_of("transport", "tax", message) == "tax/transport: connect to <addr> timed out after <n> ms"
    assert cause_of("timeout", "tax", message) != cause_of("transport", "tax", message)
    assert cause_of("transport", "civil_affairs", message) != cause_of("transport", "tax", message)
