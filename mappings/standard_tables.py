"""Standard code tables a mapping names without copying them: `code_table: std.<name>`.

Contract: `STANDARD_TABLES` maps each name (always starting with `std.`) to {code: value}, read-only; the
engine resolves a `std.` name here before looking in the mapping's and the bundle's own tables, and refuses a
bundle or mapping that defines a table under the `std.` prefix (it is reserved, so a name always means the same
table). Each table comes with its reverse where that reads a sector's answer back.

The canonical ID type (`case.applicant.id_type`) is a GA/T 2000.156 code. Sectors that want another code list
name one of these tables; one missing from the table fails that delivery as a mapping error naming the code
(never a guess). Codes as the project uses them; a sector team checks them against its interface document.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

STD_PREFIX = "std."

# GA/T 2000.156 ID type code -> its name.
_ID_TYPE_NAMES = {
    "111": "居民身份证",
    "112": "临时居民身份证",
    "113": "户口簿",
    "114": "中国人民解放军军官证",
    "115": "中国人民武装警察部队警官证",
    "118": "中国人民解放军士兵证",
    "154": "居住证",
    "414": "普通护照",
    "511": "台湾居民来往大陆通行证",
    "516": "港澳居民来往内地通行证",
    "553": "外国人永久居留身份证",
    "990": "其他",
}

# GA/T 2000.156 -> the one-character personal ID type codes of banking systems (the list housing fund centres
# and other sectors that settle through banks commonly use): 0 身份证, 1 户口簿, 2 护照, 3 军官证, 4 士兵证,
# 5 港澳居民来往内地通行证, 6 台湾同胞来往内地通行证, 7 临时身份证, 8 外国人居留证, 9 警官证, X 其他证件.
# 154 居住证 has no code there: it fails as unmapped rather than travelling as something else.
_ID_TYPE_BANK = {
    "111": "0",
    "113": "1",
    "414": "2",
    "114": "3",
    "118": "4",
    "516": "5",
    "511": "6",
    "112": "7",
    "553": "8",
    "115": "9",
    "990": "X",
}


def _reverse(table: Mapping[str, str]) -> dict[str, str]:
    return {value: code for code, value in table.items()}


STANDARD_TABLES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "std.id_type_name": MappingProxyType(_ID_TYPE_NAMES),
    "std.id_type_from_name": MappingProxyType(_reverse(_ID_TYPE_NAMES)),
    "std.id_type_to_bank": MappingProxyType(_ID_TYPE_BANK),
    "std.id_type_from_bank": MappingProxyType(_reverse(_ID_TYPE_BANK)),
})  # fmt: skip
