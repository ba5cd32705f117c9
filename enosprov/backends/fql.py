"""The DPS search expression language (FQL) subset enosprov speaks, in both directions.

The EnOS client renders a ``SearchQuery`` to an expression; the emulator parses one back. The
documented searchable fields (docs/enos-api.md) are ``sn``, ``groupId``, ``regionId``,
``productKey``, ``status``, ``batchOrder``, ``createTime`` and ``deviceData.<key>``. Conditions
are joined with ``and`` (the emulator refuses ``or``, which no enosprov query needs). Strings are
single-quoted, a quote inside doubled (``'O''Brien'``). Filters DPS cannot search
(``batchTag``, ``allocateStatus``, ``connectStatus``) are applied by the client.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace

from ..domain.errors import InvalidArgumentError
from ..domain.models import SearchQuery

CLIENT_SIDE = ("batch_tag", "allocate_status", "connect_status")
# Sorter fields sent to DPS. EnOS documents the sorter shape and the default (createTime
# descending) but lists no sortable fields; enosprov sends only documented PvsDevice fields that
# are also searchable [ENOSPROV]. Other sorts (deviceSn, updateTime) are done by the client.
SORT_FIELDS = ("createTime", "sn", "batchOrder")


def _quote(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _cond(field: str, values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{field} = {_quote(values[0])}"
    return f"{field} in ({', '.join(_quote(v) for v in values)})"


def render(q: SearchQuery) -> tuple[str, SearchQuery]:
    """(expression, client-side remainder): the remainder holds the filters FQL cannot express;
    an empty remainder has all of them None."""
    parts: list[str] = []
    if q.group_id is not None:
        parts.append(_cond("groupId", [q.group_id]))
    if q.sns:
        parts.append(_cond("sn", q.sns))
    if q.sn_like:
        parts.append(f"sn like {_quote(q.sn_like)}")
    if q.device_sns:
        parts.append(_cond("deviceData.deviceSn", q.device_sns))
    if q.batch_order is not None:
        parts.append(_cond("batchOrder", [q.batch_order]))
    if q.product_key is not None:
        parts.append(_cond("productKey", [q.product_key]))
    if q.region_id is not None:
        parts.append(_cond("regionId", [q.region_id]))
    if q.current_status is not None:
        parts.append(_cond("status", [q.current_status]))
    if q.created_after is not None:
        parts.append(f"createTime >= {int(q.created_after)}")
    if q.created_before is not None:
        parts.append(f"createTime < {int(q.created_before)}")
    for key, value in q.device_data:
        parts.append(_cond(f"deviceData.{key}", [value]))
    rest = SearchQuery(**{name: getattr(q, name) for name in CLIENT_SIDE})
    return " and ".join(parts), rest


# -- parsing (emulator side) --------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<op><=|>=|!=|=|<|>)|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_FIELD_IN = {"sn": "sns", "deviceData.deviceSn": "device_sns"}
_FIELD_EQ = {
    "groupId": "group_id",
    "regionId": "region_id",
    "productKey": "product_key",
    "status": "current_status",
    "batchOrder": "batch_order",
}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        # lastgroup: the named group that matched (every non-empty match has one)
        if not m or m.end() == pos or m.lastgroup is None:
            raise InvalidArgumentError(f"Invalid Argument expression near {expr[pos : pos + 20]!r}")
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "str":
            text = text[1:-1].replace("''", "'")
        out.append((kind, text))
        pos = m.end()
    return out


def parse(expr: str) -> SearchQuery:
    """An ``and``-joined FQL expression as a SearchQuery (filters only; paging left default)."""
    if not expr or not expr.strip():
        return SearchQuery()
    toks = _tokens(expr)
    values: dict = {}
    data: list[tuple[str, str]] = []
    i = 0

    def take(kind: str | None = None, text: str | None = None) -> str:
        nonlocal i
        if i >= len(toks):
            raise InvalidArgumentError("Invalid Argument expression ends too early")
        k, t = toks[i]
        if (kind and k != kind) or (text and t.lower() != text):
            raise InvalidArgumentError(f"Invalid Argument expression: unexpected {t!r}")
        i += 1
        return t

    def literal() -> object:
        k, t = toks[i] if i < len(toks) else ("", "")
        take()
        if k == "num":
            return int(t)
        if k == "str":
            return t
        raise InvalidArgumentError(f"Invalid Argument expression: expected a value, got {t!r}")

    while True:
        field = take("word")
        k, op = toks[i] if i < len(toks) else ("", "")
        if k == "word" and op.lower() == "in":
            take()
            take("punct", "(")
            items = [literal()]
            while toks[i][1] == ",":
                take()
                items.append(literal())
            take("punct", ")")
        elif k == "word" and op.lower() == "like":
            take()
            if field != "sn":
                raise InvalidArgumentError(f"Invalid Argument: like is not supported on {field}")
            values["sn_like"] = str(literal())
            items = None
        elif k == "op":
            take()
            items = [literal()]
        else:
            raise InvalidArgumentError(f"Invalid Argument expression: no operator after {field}")
        if items is not None:
            _apply(field, op.lower() if k == "word" else op, items, values, data)
        if i >= len(toks):
            break
        conj = take("word").lower()
        if conj != "and":
            raise InvalidArgumentError(
                f"Invalid Argument expression: only 'and' is supported, got {conj!r}"
            )
    return replace(SearchQuery(), **values, device_data=tuple(data))


def _apply(field: str, op: str, items: list, values: dict, data: list) -> None:
    if field in _FIELD_IN and op in ("=", "in"):
        values[_FIELD_IN[field]] = tuple(str(v) for v in items)
    elif field in _FIELD_EQ and (op == "=" or (op == "in" and len(items) == 1)):
        values[_FIELD_EQ[field]] = items[0] if field == "batchOrder" else str(items[0])
    elif field == "createTime" and len(items) == 1 and isinstance(items[0], int):
        t = items[0]
        bounds = {">=": ("created_after", t), ">": ("created_after", t + 1),
                  "<": ("created_before", t), "<=": ("created_before", t + 1)}  # fmt: skip
        if op == "=":
            values["created_after"], values["created_before"] = t, t + 1
        elif op in bounds:
            name, value = bounds[op]
            values[name] = value
        else:
            raise InvalidArgumentError(f"Invalid Argument: {op} is not supported on createTime")
    elif field.startswith("deviceData.") and op == "=" and len(items) == 1:
        data.append((field.split(".", 1)[1], str(items[0])))
    else:
        raise InvalidArgumentError(f"Invalid Argument: cannot search {field} with {op}")


assert set(CLIENT_SIDE) <= {f.name for f in fields(SearchQuery)}
