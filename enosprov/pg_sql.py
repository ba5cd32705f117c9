"""The SQLite statements of the store and the journal, spoken to PostgreSQL: the one place where
the two dialects differ in the statements they share.

The store (backends/local*.py) and the journal (journal.py) write their SQL once, in SQLite's
spelling. :class:`PgConnection` takes those statements as they are and :func:`translate`
rewrites the few spellings PostgreSQL reads differently. The schemas (DDL) differ more and are
written for each database next to each other (backends/local_schema.py, journal_pg.py).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from .domain.errors import StoreError
from .plantdb import redact

# (SQLite spelling, PostgreSQL spelling), applied in order.
_TRANSLATIONS: list[tuple[re.Pattern, str]] = [
    # psycopg reads % as a placeholder: a literal % is %%
    (re.compile(r"%"), "%%"),
    # the journal's detail is JSON text
    (re.compile(r"json_extract\((\w+\.)?detail, '\$\.intent'\)"), r"(\1detail::jsonb ->> 'intent')::bigint"),
    (re.compile(r"json_extract\((\w+\.)?detail, '\$\.(\w+)'\)"), r"(\1detail::jsonb ->> '\2')"),
    # a master data value compared as text: the path is a parameter ('$."key"', also a jsonpath)
    (re.compile(r"CAST\(json_extract\((\w+), \?\) AS TEXT\)"), r"(jsonb_path_query_first(\1::jsonb, ?::jsonpath) #>> '{}')"),
    # a JSON list parameter as a set of values
    (re.compile(r"SELECT value FROM json_each\(\?\)"), "SELECT value FROM json_array_elements_text(?::json) AS value"),
    (re.compile(r"CAST\((\w+) AS BLOB\)"), r"convert_to(\1, 'UTF8')"),
    (re.compile(r"\bIS \?"), "IS NOT DISTINCT FROM ?"),
    # SQLite's LIKE ignores the case of ASCII letters
    (re.compile(r"\bLIKE \?"), "ILIKE ?"),
    (re.compile(r"INSERT OR IGNORE INTO (\w+ \([^)]*\) VALUES \([^)]*\))"), r"INSERT INTO \1 ON CONFLICT DO NOTHING"),
    (re.compile(r"\?"), "%s"),
]  # fmt: skip


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """A statement written for SQLite as PostgreSQL reads it."""
    for pattern, replacement in _TRANSLATIONS:
        sql = pattern.sub(replacement, sql)
    return sql


_CURSORS = itertools.count(1)


class PgConnection:
    """A psycopg connection (autocommit: a statement outside :meth:`transaction` is its own
    transaction) that takes the store's and the journal's SQLite statements as written."""

    def __init__(self, conn: Any, url: str) -> None:
        self.raw = conn
        self.url = url  # which database, to tell whether a journal lives in it (never shown)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._reachable():
            return self.raw.execute(translate(sql), list(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._reachable(), self.raw.cursor() as cur:
            cur.executemany(translate(sql), rows)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A lost connection (server restarted, network cut) is a StoreError (exit 3, safe to
        retry) saying where, never a driver traceback; other errors pass as they are."""
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"the database {redact(self.url)} could not be reached: {first_line(exc)}",
                hint="nothing of an interrupted transaction was written; retrying is safe",
            ) from None

    def rows(self, sql: str, params: Sequence[Any] = (), size: int = 2000) -> Iterator[tuple]:
        """The rows of a query that may be long, fetched ``size`` at a time through a server
        cursor: constant memory here, and other statements may run on this connection while
        the rows are read (WITH HOLD: the cursor outlives its implicit transaction)."""
        name = f"enosprov_rows_{next(_CURSORS)}"
        with self._reachable(), self.raw.cursor(name=name, withhold=True) as cur:
            cur.itersize = size
            cur.execute(translate(sql), list(params))
            yield from cur

    def close(self) -> None:
        self.raw.close()


def statements(script: str) -> list[str]:
    """The statements of a schema script (split on ';' at line ends, outside $$ bodies)."""
    out: list[str] = []
    current: list[str] = []
    in_body = False
    for line in script.strip().splitlines():
        in_body ^= line.count("$$") % 2 == 1
        current.append(line)
        if line.rstrip().endswith(";") and not in_body:
            out.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if "".join(current).strip():
        out.append("\n".join(current))
    return [s for s in out if s.strip() and not _only_comments(s)]


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())


def first_line(exc: BaseException) -> str:
    """The first line of a database error, its passwords hidden."""
    text = redact(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__
