"""The store on PostgreSQL: the local store's whole DPS model in a plant database that every
station of every line shares (``--store postgresql://...``, docs/plant-database.md).

Everything but the database is :class:`LocalBackend`'s: the same statements (SQLite's spelling,
translated by :mod:`enosprov.pg_sql`), the same rules and answers. What differs is here:

- **Writes.** Each write is one transaction that first takes the store's transaction-level
  advisory lock, the counterpart of SQLite's ``BEGIN IMMEDIATE``: check-then-write sequences
  (is this deviceSn registered? the next batch number) see no other station's half-done
  work, and the lock goes with the commit, so a station waits at most for another's
  transaction (one registration chunk). Readers never wait (MVCC). The unique constraints
  (system sn; group and deviceSn) hold whatever happens; a system sn that clashes is drawn
  again under a savepoint.
- **Bulk inserts** go through ``COPY``.
- **The journal** is in the same database (journal_pg.py); a record written through the store's
  connection commits, or rolls back, with the change it describes.
- **Long reads** (exports, short-code scans) come through a server-side cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..domain.errors import EnosprovError, InvalidArgumentError, StoreError, StoreVersionError
from ..journal import os_user
from ..journal_pg import ensure_schema as ensure_journal_schema
from ..pg_sql import PgConnection, first_line, statements
from ..plantdb import connect, redact
from . import local_groups
from .local import DEFAULT_CLOCK_SKEW_MS, LocalBackend, now_ms
from .local_schema import COPY_DEVICES, INSERT_DEVICE, PG_SCHEMA, SCHEMA_VERSION

# pg_advisory_xact_lock(STORE_LOCK, n): n=1 store writes, n=2 creating the schema
STORE_LOCK = 0x656E6F73  # "enos"
WRITES, SCHEMA = 1, 2
COPY_FROM = 50  # rows from which an insert goes through COPY
_TABLES = ("meta", "masterdata_groups", "registration_groups", "devices", "replacements",
           "sync_groups", "sync_links")  # fmt: skip


class PgStore(LocalBackend):
    """The store in a PostgreSQL database (created on first use by a role with CREATE)."""

    label = "PostgreSQL store"

    def __init__(
        self,
        url: str,
        *,
        clock_skew_ms: int | None = DEFAULT_CLOCK_SKEW_MS,
        refuse_retired_bootstrap: bool = True,
        connect_timeout: float = 10,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.durable = True
        self.busy_timeout = 0.0
        self.clock_skew_ms = clock_skew_ms
        self.refuse_retired_bootstrap = refuse_retired_bootstrap
        self.user = os_user()
        self.conn = PgConnection(
            connect(url, autocommit=True, connect_timeout=connect_timeout), url
        )  # type: ignore[assignment]
        try:
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def __repr__(self) -> str:
        return f"PgStore({self.where!r})"

    # -- connection and transactions -----------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction, behind the store's write lock; rolled back on any error."""
        conn: PgConnection = self.conn  # type: ignore[assignment]
        with self._errors(), conn.raw.transaction():
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s, %s)", (STORE_LOCK, WRITES))
            yield conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A database error inside a transaction as an enosprov error (rolled back)."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise self._store_error(exc) from None

    def _store_error(self, exc: BaseException) -> EnosprovError:
        import psycopg

        if isinstance(exc, psycopg.DataError):  # a value PostgreSQL cannot hold, e.g. a NUL
            return InvalidArgumentError(
                f"store {self.where} cannot keep a value: {first_line(exc)}; nothing was written",
                hint="remove control characters such as NUL (U+0000) from the values",
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(
                f"the store {self.where} could not be reached: {first_line(exc)}",
                hint="nothing of the interrupted transaction was written; retrying is safe",
            )
        return StoreError(f"store {self.where}: {first_line(exc)}")

    def _migrate(self) -> None:
        import psycopg

        raw = self.conn.raw  # type: ignore[attr-defined]
        try:
            if _missing_tables(raw):  # a station role needs no CREATE once the schema exists
                with raw.transaction():
                    raw.execute("SELECT pg_advisory_xact_lock(%s, %s)", (STORE_LOCK, SCHEMA))
                    for statement in statements(PG_SCHEMA):
                        raw.execute(statement)
                    raw.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', %s), "
                        "('batch_order', '0') ON CONFLICT DO NOTHING",
                        (str(SCHEMA_VERSION),),
                    )
                    raw.execute(  # a store of an older schema got the tables it lacked
                        "UPDATE meta SET value = %s WHERE key = 'schema_version' "
                        "AND CAST(value AS INTEGER) < %s",
                        (str(SCHEMA_VERSION), SCHEMA_VERSION),
                    )
                    local_groups.ensure_builtin(self.conn, now_ms())
            ensure_journal_schema(raw)
            row = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot open the store {self.where}: {first_line(exc)}",
                hint="the role needs CREATE on the database the first time "
                "(docs/plant-database.md, roles)",
            ) from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise StoreVersionError(
                f"store {self.where} was written by a newer enosprov "
                f"(schema {row[0] if row else 'unknown'})",
                hint="upgrade enosprov",
            )

    def close(self) -> None:
        self.conn.close()

    @property
    def server_version(self) -> str:
        """The server's PostgreSQL version, e.g. "15.10"."""
        version = self.conn.raw.info.server_version  # type: ignore[attr-defined]
        return f"{version // 10000}.{version % 10000}"

    # -- what differs by database (LocalBackend's hooks) ----------------------------------------

    @property
    def _integrity_errors(self) -> tuple[type[BaseException], ...]:  # type: ignore[override]
        import psycopg

        return (psycopg.errors.UniqueViolation,)

    def _is_sn_clash(self, exc: BaseException) -> bool:
        return getattr(getattr(exc, "diag", None), "constraint_name", None) == "devices_pkey"

    def _insert_rows(self, conn, rows: list[list]) -> None:
        if len(rows) < COPY_FROM:  # a station's unit: one INSERT is one round trip
            conn.executemany(INSERT_DEVICE, rows)
            return
        with conn.raw.cursor() as cur, cur.copy(COPY_DEVICES) as copy:
            for row in rows:
                copy.write_row((*row, "init", "init", "init"))

    def next_batch_order(self) -> int:
        """The next batch order, in its own short transaction without the write lock: the
        counter's row lock orders concurrent stations. Its commit waits for no disk flush
        (synchronous_commit off): the registration that uses the number commits durably, and
        flushes this one with it; a crash before that loses a number nothing used."""
        conn: PgConnection = self.conn  # type: ignore[assignment]
        with self._errors(), conn.raw.transaction():
            conn.raw.execute("SET LOCAL synchronous_commit = off")
            return self._next_batch_order(conn)

    @contextmanager
    def planned_per_statement(self) -> Iterator[None]:
        """psycopg prepares a statement run five times, and PostgreSQL may give a prepared one a
        generic plan, which scans a list of 500 values for every row of a table it has no
        statistics for yet (store copy): within, nothing is prepared."""
        raw = self.conn.raw  # type: ignore[attr-defined]
        saved, raw.prepare_threshold = raw.prepare_threshold, None
        try:
            yield
        finally:
            raw.prepare_threshold = saved

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple]:
        return self.conn.rows(sql, params)  # type: ignore[attr-defined]

    def _next_batch_order(self, conn) -> int:
        row = conn.execute(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
            "WHERE key='batch_order' RETURNING value"
        ).fetchone()
        return int(row[0])


def _missing_tables(raw: Any) -> bool:
    row = raw.execute(
        "SELECT " + " AND ".join(f"to_regclass('{t}') IS NOT NULL" for t in _TABLES)
    ).fetchone()
    return not row[0]
