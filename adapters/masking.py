"""Masking personal data in text: an 18-character resident ID number and a mainland mobile number, standing alone,
keep their first and last digits only.

One rule for everyone who shows or sends text that may hold them: the gateway's logs and case views, and the
far-side ferry agent's answers (a sector's error message can quote what it was sent). Plain Python: importing it
(`from adapters import mask_text`) loads nothing else.
"""

from __future__ import annotations

import re
from typing import Any

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_text(text: str) -> str:
    return _MOBILE.sub(r"\1****\2", _ID_NUMBER.sub(r"\1**********\2", text))


def mask_value(value: Any) -> Any:
    """A JSON value with every ID and phone number in its strings masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value
