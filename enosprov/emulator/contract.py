"""What the documented EnOS APIs accept, checked before the emulator does anything.

``enosprov serve`` is strict: a request body field, a query parameter or a value type that the EnOS
documentation does not have is refused with 99400 naming it, so that a client drifting from the
documented contract fails in tests instead of on a real tenant (docs/enos-api.md, "A strict
emulator"). Required fields are left to the handlers, which answer with the documented codes.

Value kinds: ``str``, ``int`` (a JSON integer, never a boolean), ``i18n`` (StringI18n),
``strs`` (a list of strings), ``data`` (a ``deviceData`` map), ``pagination`` and ``auth``
(nested objects checked field by field).
"""

from __future__ import annotations

from ..backends import fql
from ..domain import rules
from ..domain.errors import enos_error
from ..domain.models import BUILTIN_TYPES, I18N_LOCALES

# action -> documented query parameters besides ``action`` and ``orgId`` [DOC]
QUERY: dict[str, tuple[str, ...]] = {
    "create": (),
    "get": ("sn",),
    "search": (),
    "update": (),
    "delete": (),
    "allocate": (),
    "resetAllocationStatus": (),
    "replace": (),
}
COMMON_QUERY = ("action", "orgId")

# action -> documented body fields and their kinds [DOC]
BODY: dict[str, dict[str, str]] = {
    "create": {
        "groupId": "str",
        "count": "int",
        "desc": "str",
        "batchTag": "i18n",
        "deviceData": "data",
    },
    "get": {},
    "search": {"expression": "str", "pagination": "pagination"},
    "update": {"sn": "str", "desc": "str", "batchTag": "i18n", "deviceData": "data"},
    "delete": {"groupId": "str", "snList": "strs"},
    "allocate": {"sn": "str", "deviceData": "data"},
    "resetAllocationStatus": {"groupId": "str", "sns": "strs"},
    "replace": {"sn": "str", "replacementSn": "str"},
}
PAGINATION = {"pageNo": "int", "pageSize": "int", "sorters": "sorters"}
SORTER = {"field": "sortfield", "order": "order"}

# device API path -> documented body fields [DOC]
DEVICE_BODY: dict[str, dict[str, str]] = {
    "/dev/bootstrap": {
        "deviceSn": "str",
        "groupId": "str",
        "dpsSignMethod": "str",
        "dpsSignTimestamp": "int",
        "dpsSign": "str",
        "deviceName": "i18n",
        "timezone": "str",
    },
    "/dev/get/conn": {"self": "auth", "signMethod": "str", "sub": "any"},
}
DEVICE_AUTH = {"sn": "str", "timestamp": "int", "sign": "str"}


def _refuse(where: str, why: str):
    return enos_error(99400, f"Invalid Argument {where}: {why}")


def check_query(action: str, query: dict) -> None:
    allowed = (*COMMON_QUERY, *QUERY.get(action, ()))
    for name in query:
        if name not in allowed:
            raise _refuse(name, f"not a query parameter of {action}")


def check_body(fields: dict[str, str], body: dict, prefix: str = "") -> None:
    """Every field of ``body`` is documented in ``fields`` and of its documented kind."""
    for name, value in body.items():
        where = prefix + name
        kind = fields.get(name)
        if kind is None:
            raise _refuse(where, "not a documented field")
        if value is None:
            continue  # absent, as far as the handlers are concerned
        _check(kind, where, value)


def _check(kind: str, where: str, value: object) -> None:
    if kind == "any":
        return
    if kind == "str":
        if not isinstance(value, str):
            raise _refuse(where, "must be a string")
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _refuse(where, "must be an integer")
    elif kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _refuse(where, "must be a list of strings")
    elif kind == "i18n":
        check_i18n(where, value)
    elif kind == "data":
        check_device_data(where, value)
    elif kind == "pagination":
        _object(where, value, PAGINATION)
    elif kind == "sorters":
        if not isinstance(value, list):
            raise _refuse(where, "must be a list of sorters")
        for i, sorter in enumerate(value):
            _object(f"{where}[{i}]", sorter, SORTER)
    elif kind == "sortfield":
        if value not in fql.SORT_FIELDS:
            raise _refuse(where, f"sort by one of {', '.join(fql.SORT_FIELDS)}")
    elif kind == "order":
        if value not in ("ASC", "DESC"):
            raise _refuse(where, "must be ASC or DESC")
    elif kind == "auth":
        _object(where, value, DEVICE_AUTH)
    else:  # pragma: no cover - a kind missing above is a bug of this table
        raise AssertionError(kind)


def _object(where: str, value: object, fields: dict[str, str]) -> None:
    if not isinstance(value, dict):
        raise _refuse(where, "must be an object")
    check_body(fields, value, prefix=where + ".")


def check_i18n(where: str, value: object) -> None:
    """A StringI18n: ``{"defaultValue": str, "i18nValue": {"en_US"|"zh_CN": str}}``."""
    if not isinstance(value, dict):
        raise _refuse(where, "must be a StringI18n object")
    for name, item in value.items():
        if name == "defaultValue":
            if not isinstance(item, str):
                raise _refuse(f"{where}.defaultValue", "must be a string")
        elif name == "i18nValue":
            if not isinstance(item, dict):
                raise _refuse(f"{where}.i18nValue", "must be an object")
            for locale, text in item.items():
                if locale not in I18N_LOCALES or not isinstance(text, str):
                    raise _refuse(f"{where}.i18nValue.{locale}", "only en_US and zh_CN strings")
        else:
            raise _refuse(f"{where}.{name}", "not a field of StringI18n")


def check_device_data(where: str, value: object) -> None:
    """deviceData: master data identifiers to Integer, String, Enum or Date values [DOC] (a
    number where the documented samples show one, a Date as YYYY-MM-DD: [ENOSPROV] readings);
    the built-in Boolean privateModel and StringI18n deviceName. Never null."""
    if not isinstance(value, dict):
        raise _refuse(where, "must be an object")
    for key, item in value.items():
        at = f"{where}.{key}"
        if not (rules.IDENTIFIER_RE.fullmatch(key) or key in BUILTIN_TYPES):
            raise _refuse(at, "not a master data identifier")
        kind = BUILTIN_TYPES.get(key)
        if kind == "StringI18n":
            check_i18n(at, item)
        elif kind == "Boolean":
            if not isinstance(item, bool):
                raise _refuse(at, "must be a Boolean")
        elif item is None:
            raise _refuse(at, "null is not a master data value")
        elif isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _refuse(at, "must be a string or a number")
        elif kind == "String" and not isinstance(item, str):
            raise _refuse(at, "must be a string")
