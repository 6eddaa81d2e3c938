"""Check characters of the national codes the catalogue and cases carry, and what an ID number says."""

from __future__ import annotations

from datetime import date

# GB 32100-2015 unified social credit code: 18 characters, the last a check character.
_CREDIT_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_check_char(first17: str) -> str:
    total = sum(_CREDIT_CHARSET.index(c) * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return _CREDIT_CHARSET[(31 - total % 31) % 31]


def is_valid_credit_code(code: str) -> bool:
    if len(code) != 18 or any(c not in _CREDIT_CHARSET for c in code):
        return False
    return credit_code_check_char(code[:17]) == code[17]


def is_valid_implementation_code(code: str) -> bool:
    """实施编码: credit code (18) + exercise level (1, 1–6) + basic code (12)."""
    return len(code) == 31 and is_valid_credit_code(code[:18]) and code[18] in "123456" and code[19:].isalnum()


# GB 11643-1999 citizen identity number: 17 digits and a check character (0-9 or X).
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_number_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def is_valid_id_number(number: str) -> bool:
    # ASCII digits only: str.isdigit() also admits full-width and superscript digits (int("¹") fails).
    if len(number) != 18 or not (number[:17].isascii() and number[:17].isdigit()):
        return False
    return id_number_check_char(number[:17]) == number[17].upper()


# ID types (GA/T 2000.156-2016 codes) whose numbers take GB 11643's form: a 6-digit address code, the birth
# date (YYYYMMDD, characters 7–14), a 3-digit sequence and the MOD 11-2 check character.
#   111 居民身份证 and 112 临时居民身份证 carry the citizen identity number itself;
#   154 居住证 (《居住证暂行条例》 art. 4) records its holder's citizen identity number. The residence permits
#       for Hong Kong, Macao and Taiwan residents (2018) have no code of their own in GA/T 2000.156-2016; their
#       numbers are GB 11643 numbers with address codes 810000, 820000 and 830000, and they arrive as 154;
#   553 外国人永久居留身份证 in its 2023 form only: 18 characters, the first "9", the check character by
#       MOD 11-2 like GB 11643 (National Immigration Administration, cards issued from 2023-12-01). The
#       2017 card's 15 characters (3 letters, 12 digits) stay valid and keep no check of ours.
# Every other type (passports, travel permits, …) keeps its own checks.
GB11643_ID_TYPES = frozenset({"111", "112", "154"})
PERMANENT_RESIDENCE_CARD = "553"
OLDEST_AGE = 120  # years: an older birth date is a typing error, not an applicant


def in_gb11643_form(id_type: str, number: str) -> bool:
    if id_type == PERMANENT_RESIDENCE_CARD:
        return len(number) == 18 and number.startswith("9")
    return id_type in GB11643_ID_TYPES


def birth_date(id_type: str, number: str) -> date | None:
    """The birth date an ID number in GB 11643 form carries; None when it is not of that form, fails its check
    character or names no real day. The one reading of it: intake checks it, the green channel reads the
    applicant's age from it."""
    if not (in_gb11643_form(id_type, number) and is_valid_id_number(number)):
        return None
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_number_problem(id_type: str, number: str, today: date) -> str | None:
    """What is wrong with an ID number of this type (a Chinese phrase about 证件号码), or None."""
    if not in_gb11643_form(id_type, number):
        return None
    if not is_valid_id_number(number):
        return "证件号码校验不通过（GB 11643：17 位数字和 1 位校验码）"
    born = birth_date(id_type, number)
    if born is None:
        return "证件号码中的出生日期（第 7–14 位）不是真实的日期"
    if born > today:
        return "证件号码中的出生日期晚于今天"
    if born < years_before(today, OLDEST_AGE):
        return f"证件号码中的出生日期早于 {OLDEST_AGE} 年前"
    return None


def years_before(day: date, years: int) -> date:
    """The same day `years` earlier (29 February becomes the 28th in a common year)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)
