"""Spreadsheet-safe CSV cells (CSV formula injection, OWASP).

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets. Every CSV enosprov writes for people passes its cells
through :func:`cell`, which prefixes such text with ``'`` (as OWASP recommends) unless it is a
number (``-12``, ``+3.5``) or a UTC offset (``+08:00``), which spreadsheets read as values. The
prefix is documented (docs/csv-format.md, "Spreadsheet-safe output") and an option of each command
keeps cells raw for machine use. enosprov's own CSV readers pass cells through :func:`restore`, so
a file it wrote reads back unchanged.
"""

from __future__ import annotations

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PREFIX = "'"
_VALUE = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-][0-9]{2}:[0-9]{2}"
)


def is_risky(text: str) -> bool:
    """Would a spreadsheet read ``text`` as a formula?"""
    return bool(text) and text.startswith(TRIGGERS) and not _VALUE.fullmatch(text)


def _needs_prefix(text: str) -> bool:
    # risky text, or text of quotes before risky text (so that restore() gives it back exactly)
    return is_risky(text.lstrip(PREFIX)) and (text[0] == PREFIX or is_risky(text))


def cell(value: object) -> object:
    """``value`` made safe for a spreadsheet: risky text gets a leading ``'``; anything else
    (numbers, None, safe text) is returned as it is."""
    if isinstance(value, str) and value and _needs_prefix(value):
        return PREFIX + value
    return value


def row(values, raw: bool = False) -> list:
    """Every cell of a row through :func:`cell` (unchanged with ``raw``)."""
    return list(values) if raw else [cell(v) for v in values]


def restore(text: str) -> str:
    """The value :func:`cell` was given: a leading ``'`` before a risky value is removed."""
    if text.startswith(PREFIX) and is_risky(text.lstrip(PREFIX)):
        return text[1:]
    return text


# CSV files written for people (results, exports, reports, manifests) start with the UTF-8 byte
# order mark, so that Excel reads them as UTF-8 (docs/csv-format.md, "Files for people");
# machine CSV (--raw-csv) has none. enosprov's own readers accept both.
BOM = "\ufeff"


def bom(raw: bool = False) -> str:
    """The text a CSV file for people starts with: the BOM, or nothing for raw (machine) CSV."""
    return "" if raw else BOM


def iso_utc(ms: int | None) -> str:
    """Epoch milliseconds as ISO 8601 UTC (``2026-12-02T04:43:27Z``), the column people read
    next to every epoch-millisecond column of a CSV; empty for None."""
    if ms is None:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
