"""Streaming CSV input: encoding, delimiter detection and row numbering in one place.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first record row 2, even
when a quoted field spans several lines. Nothing here holds more than one row in memory.
"""

from __future__ import annotations

import csv
import io
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from . import csvsafe
from .errors import InputFileError

DELIMITERS = (",", ";", "\t")
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without Excel's byte order mark

# Quoted fields may be long (descriptions); lift csv's 128 KiB default but keep a bound.
csv.field_size_limit(min(sys.maxsize, 16 * 1024 * 1024))


def detect_delimiter(header_line: str) -> str:
    """The delimiter among , ; TAB that occurs most often (outside quotes) in the header line."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvSource:
    """A CSV file that can be read several times (validation pass, then write pass)."""

    def __init__(
        self, path: str | Path, *, encoding: str | None = None, delimiter: str | None = None
    ):
        self.path = Path(path)
        self.encoding = encoding or DEFAULT_ENCODING
        if delimiter is not None and delimiter not in ("\\t", "tab") and len(delimiter) != 1:
            raise InputFileError(
                f"--delimiter must be one character, got {delimiter!r}",
                hint="use ',' ';' or 'tab'",
            )
        self._delimiter = "\t" if delimiter in ("\\t", "tab") else delimiter
        self._text: str | None = None
        self.name = str(self.path)
        if self.path == Path("-"):
            return  # from_text() fills it
        try:
            if not self.path.is_file():
                raise InputFileError(
                    f"{self.path}: no such file", hint="check the path given to --csv"
                )
        except OSError as exc:
            raise InputFileError(f"{self.path}: {exc.strerror or exc}") from None
        self.header: list[str] = []

    @classmethod
    def from_text(cls, text: str, name: str) -> CsvSource:
        """A CSV held in memory (a few rows built by a command), named ``name`` in messages."""
        source = cls("-")
        source._text, source.name = text, name
        return source

    @contextmanager
    def rows(self) -> Iterator[Iterator[tuple[int, list[str]]]]:
        """Yield an iterator of (row number, fields) for the data rows; sets ``self.header``."""
        fh: IO[str]
        try:
            if self._text is not None:
                fh = io.StringIO(self._text, newline="")
            else:
                fh = open(self.path, encoding=self.encoding, newline="")
        except LookupError:
            raise InputFileError(f"unknown encoding {self.encoding!r}") from None
        except OSError as exc:
            raise InputFileError(f"{self.path}: {exc.strerror or exc}") from None
        with fh:
            try:
                first = fh.readline()
            except UnicodeError:  # a decode error, or a codec that cannot start (no BOM)
                raise self._decode_error(1) from None
            if not first.strip():
                raise InputFileError(
                    f"{self.name}: the file is empty or its first line is blank",
                    hint="the first line must be the header (see `enosprov template csv`)",
                )
            delimiter = self._delimiter or detect_delimiter(first.splitlines()[0])
            text = itertools.chain((first,), fh)
            reader = csv.reader(text, delimiter=delimiter, strict=True)
            try:
                self.header = [h.strip() for h in next(reader)]
                if self.header:  # a BOM survives an explicit --encoding utf-8
                    self.header[0] = self.header[0].lstrip("\ufeff").strip()
            except csv.Error as exc:
                raise InputFileError(f"{self.name}, row 1: malformed CSV header ({exc})") from None
            yield self._records(reader)

    def _records(self, reader) -> Iterator[tuple[int, list[str]]]:
        rowno = 1
        try:
            for fields in reader:
                rowno += 1
                yield rowno, fields
        except UnicodeError:
            raise self._decode_error(rowno + 1) from None
        except csv.Error as exc:
            raise InputFileError(
                f"{self.name}, row {rowno + 1}: malformed CSV ({exc})",
                hint="check quotes: a field containing the delimiter or a newline must be quoted",
            ) from None

    def _decode_error(self, rowno: int) -> InputFileError:
        """The error of a byte the encoding cannot decode, at the row where that byte is (the
        decoder reads ahead in blocks, so ``rowno``, where reading stopped, is only a
        fallback)."""
        shown = (
            "UTF-8"
            if self.encoding.lower().replace("_", "-") in ("utf-8-sig", "utf-8", "utf8")
            else self.encoding
        )
        where, what = f"row {rowno}", ""
        located = self._locate_bad_byte() if self._text is None else None
        if located is not None:
            row, byte, column = located
            where, what = f"row {row}", f" (byte 0x{byte:02x}, character {column} of its line)"
        return InputFileError(
            f"{self.name}, {where}: the file is not valid {shown}{what}",
            hint="save it as UTF-8, or pass the encoding it was saved in: --encoding cp1252 "
            "(or latin-1) for a Western European Excel export, --encoding gbk for a Chinese one",
        )

    def _locate_bad_byte(self) -> tuple[int, int, int] | None:
        """(CSV row, the byte, its 1-based character column on its line) of the first byte the
        encoding cannot decode, reading the file line by line in binary and counting the CSV
        records before it (one line in memory at a time); None if not found."""
        import codecs

        try:
            decoder = codecs.getincrementaldecoder(self.encoding)()
        except LookupError:
            return None
        current = b""

        def decoded(fh) -> Iterator[str]:
            nonlocal current
            for current in fh:
                yield decoder.decode(current)

        rows = 0
        try:
            with open(self.path, "rb") as fh:
                for _ in csv.reader(decoded(fh)):
                    rows += 1
        except UnicodeDecodeError as exc:
            ok = current[: exc.start].decode(self.encoding, errors="replace")
            return rows + 1, current[exc.start], len(ok) + 1
        except (OSError, UnicodeError, csv.Error):  # a codec that cannot start; an odd file
            return None
        return None


def read_columns(
    path: str | Path, columns: list[tuple[str, ...]], *, hint: str
) -> Iterator[tuple[int, list[str]]]:
    """(row number, values) of the non-blank rows of a CSV, one value per wanted column.

    Each wanted column is a tuple of accepted header names, the first found wins (e.g.
    ``("sn", "deviceSn")``). A missing column, or an empty cell in a row that has data, is an
    InputFileError naming the file, the row and the column; ``hint`` says what the header
    should be. A value enosprov wrote spreadsheet-safe (``'-A1``, enosprov.csvsafe) reads back
    as it was (``-A1``). Streamed: one row in memory at a time.
    """
    source = CsvSource(path)
    with source.rows() as rows:
        header = [h.strip() for h in source.header]
        found = []
        for names in columns:
            name = next((n for n in names if n in header), None)
            if name is None:
                raise InputFileError(f"{path}: no {' or '.join(names)} column", hint=hint)
            found.append((name, header.index(name)))
        for rowno, fields in rows:
            if not any(f.strip() for f in fields):
                continue
            values = []
            for name, i in found:
                value = fields[i].strip() if len(fields) > i else ""
                if not value:
                    raise InputFileError(f"{path}, row {rowno}, column {name}: empty", hint=hint)
                if value[0] == csvsafe.PREFIX:
                    value = csvsafe.restore(value)
                values.append(value)
            yield rowno, values
