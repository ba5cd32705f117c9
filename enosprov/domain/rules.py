"""Field rules shared by every entry point (CSV, library calls, device bootstrap).

EnOS does not document the deviceSn character set or most length limits; the defaults below are
enosprov's named choices (docs/csv-format.md) and the deviceSn rule can be changed per group.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from functools import lru_cache

from .errors import InvalidArgumentError
from .models import (
    ATTRIBUTE_TYPES,
    BUILTIN_KEYS,
    BUILTIN_TYPES,
    SYSTEM_OWNED_KEYS,
    MasterDataAttribute,
)

# deviceSn: the EnOS deviceKey alphabet (letters, digits, - _ .) plus ':' for MAC-style serials,
# 4 to 64 characters. Named "default" in docs; a group may set its own regular expression.
DEFAULT_SN_PATTERN = r"[A-Za-z0-9._:-]{4,64}"
DEVICE_SN_MAX = 64
GROUP_NAME_MAX = 64  # documented
GROUP_DESCRIPTION_MAX = 512  # documented
DEVICE_DESC_MAX = 512
DEVICE_NAME_MAX = 128
BATCH_TAG_MAX = 64
STRING_VALUE_MAX = 256  # master data String default when the attribute sets no maxLength
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

IDENTIFIER_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
GROUP_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PRODUCT_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_OFFSET_RE = re.compile(r"[+-](?:0[0-9]|1[0-4]):[0-5][0-9]")

# Characters that are never part of an identifier and never reach a terminal or a label raw: C0
# controls (tab, newline and CR included), DEL, C1 controls (U+0080-U+009F), the Unicode bidi
# controls that reorder what is shown (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and
# the line and paragraph separators U+2028, U+2029. The CLI shows them escaped (cli/output.py),
# labels as a space (qr/render.py, qr/labels.py), and a deviceSn never holds one.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
CONTROL_RE = re.compile(f"[{CONTROL_CHARS}]")
# Whatever a group's pattern says, a deviceSn is non-empty, holds no control character and
# neither starts nor ends with whitespace (str.isspace: space, tab, newline, NBSP...).
_SN_GUARD = re.compile(rf"[^\s{CONTROL_CHARS}](?:[^{CONTROL_CHARS}]*[^\s{CONTROL_CHARS}])?")
_DEFAULT_SN_MATCH = re.compile(DEFAULT_SN_PATTERN).fullmatch


@lru_cache(maxsize=32)
def sn_matcher(pattern: str | None) -> Callable[[str], object]:
    """A fast check for a deviceSn pattern (None = default): truthy when the value is
    acceptable. It also refuses, whatever the pattern, an empty value, a control character and
    whitespace at either end (:func:`sn_problem` says which)."""
    if not pattern:
        return _DEFAULT_SN_MATCH  # its alphabet already excludes all of them
    try:
        match = re.compile(pattern).fullmatch
    except re.error as exc:
        raise InvalidArgumentError(f"invalid deviceSn pattern {pattern!r}: {exc}") from None
    guard = _SN_GUARD.fullmatch

    def check(value: str) -> object:
        return guard(value) and match(value)

    return check


def control_char_problem(value: str) -> str | None:
    """Which control character ``value`` holds (see CONTROL_RE), or None."""
    m = CONTROL_RE.search(value)
    return None if m is None else f"a control character (U+{ord(m.group()):04X})"


def sn_problem(value: str, pattern: str | None = None) -> str | None:
    """Why ``value`` is not an acceptable deviceSn, or None."""
    if not value:
        return "deviceSn is empty"
    if len(value) > DEVICE_SN_MAX:
        return f"deviceSn is {len(value)} characters long; the limit is {DEVICE_SN_MAX}"
    bad = control_char_problem(value)
    if bad:
        return f"deviceSn {value!r} contains {bad}; a deviceSn is one line of visible characters"
    if value[0].isspace() or value[-1].isspace():
        return f"deviceSn {value!r} starts or ends with whitespace"
    if not sn_matcher(pattern)(value):
        if pattern:
            return f"deviceSn {value!r} does not match the group's pattern {pattern}"
        return f"deviceSn {value!r} is not allowed: use 4-64 letters, digits, '-', '_', '.' or ':'"
    return None


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def timezone_problem(value: str) -> str | None:
    if _OFFSET_RE.fullmatch(value) or value in _iana_zones():
        return None
    return f"timezone {value!r} is neither a UTC offset like +08:00 nor an IANA name like Asia/Shanghai"


# -- master data values ------------------------------------------------------------------------
# A converter takes the raw text and returns (value, problem). Exactly one of them is meaningful.

Converter = Callable[[str], "tuple[object, str | None]"]


def _convert_int(text: str) -> tuple[object, str | None]:
    if _INT_RE.fullmatch(text):
        value = int(text)
        if INT_MIN <= value <= INT_MAX:
            return value, None
    return None, f"{text!r} is not an Integer"


def _convert_date(text: str) -> tuple[object, str | None]:
    if _DATE_RE.fullmatch(text):
        try:
            _dt.date.fromisoformat(text)
        except ValueError:
            return None, f"{text!r} is not a Date (YYYY-MM-DD): no such day"
        return text, None
    return None, f"{text!r} is not a Date (YYYY-MM-DD)"


def converter_for(attr: MasterDataAttribute) -> Converter:
    """The converter that validates one attribute's raw text value."""
    if attr.type == "Integer":
        return _convert_int
    if attr.type == "Date":
        return _convert_date
    if attr.type == "Enum":
        allowed = frozenset(attr.values)
        shown = ", ".join(attr.values)

        def convert_enum(text: str) -> tuple[object, str | None]:
            if text in allowed:
                return text, None
            return None, f"{text!r} is not one of: {shown}"

        return convert_enum
    limit = attr.max_length or STRING_VALUE_MAX

    def convert_str(text: str) -> tuple[object, str | None]:
        if len(text) <= limit:
            return text, None
        return None, f"value is {len(text)} characters long; the limit is {limit}"

    return convert_str


def normalize_value(attr: MasterDataAttribute, value: object) -> tuple[object, str | None]:
    """Validate a value given through the library or an API and return it in its stored type
    (an Integer given as "42" becomes 42, as it would from a CSV): (value, problem)."""
    if attr.type == "Integer":
        if isinstance(value, bool):
            return None, f"{value!r} is not an Integer"
        if isinstance(value, int):
            if INT_MIN <= value <= INT_MAX:
                return value, None
            return None, f"{value} is out of the Integer range"
        if isinstance(value, str):
            return converter_for(attr)(value.strip())
        return None, f"{value!r} is not an Integer"
    if not isinstance(value, str):
        return None, f"{value!r} is not a {attr.type} string"
    return converter_for(attr)(value)


def builtin_value_problem(key: str, value: object) -> str | None:
    """Why ``value`` is not allowed for the built-in master data ``key`` (BUILTIN_TYPES), or
    None. Keys EnOS owns (assetId) are never written by a client."""
    if key in SYSTEM_OWNED_KEYS:
        return f"{key} is set by EnOS and cannot be written"
    kind = BUILTIN_TYPES[key]
    if kind == "Boolean":
        return None if isinstance(value, bool) else f"{value!r} is not a Boolean (true/false)"
    if kind == "StringI18n":
        if not isinstance(value, dict) or not isinstance(value.get("defaultValue", ""), str):
            return "a StringI18n object {defaultValue, i18nValue} is expected"
        i18n = value.get("i18nValue") or {}
        if set(value) - {"defaultValue", "i18nValue"} or not isinstance(i18n, dict):
            return "a StringI18n has only defaultValue and i18nValue"
        if set(i18n) - {"en_US", "zh_CN"} or not all(isinstance(v, str) for v in i18n.values()):
            return "i18nValue takes en_US and zh_CN strings only"
        return None
    if not isinstance(value, str) or not value:
        return f"{value!r} is not a non-empty String"
    if key == "timezone":
        return timezone_problem(value)
    return None


def check_attribute_definition(attr: MasterDataAttribute) -> str | None:
    """Why a master data attribute definition is invalid, or None."""
    if not IDENTIFIER_RE.fullmatch(attr.identifier or ""):
        return (
            f"identifier {attr.identifier!r} must start with a letter and use only letters, "
            "digits and '_' (at most 64)"
        )
    if attr.identifier in BUILTIN_KEYS:
        return f"identifier {attr.identifier!r} is a built-in key and cannot be redefined"
    if attr.type not in ATTRIBUTE_TYPES:
        return (
            f"type {attr.type!r} of {attr.identifier!r} is not one of {', '.join(ATTRIBUTE_TYPES)}"
        )
    if attr.type == "Enum" and not attr.values:
        return f"Enum {attr.identifier!r} needs a non-empty 'values' list"
    if attr.type != "Enum" and attr.values:
        return f"'values' is only allowed on Enum attributes ({attr.identifier!r})"
    if attr.max_length is not None and (attr.type != "String" or attr.max_length < 1):
        return f"'maxLength' must be a positive number on a String attribute ({attr.identifier!r})"
    return None
