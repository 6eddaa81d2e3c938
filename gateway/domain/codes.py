"""Check characters of the national codes the catalogue and cases carry."""

from __future__ import annotations

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
    if len(number) != 18 or not (number[:17].isascii() and number[:17].isdigit()):  # "¹" is a digit int() refuses
        return False
    return id_number_check_char(number[:17]) == number[17].upper()
