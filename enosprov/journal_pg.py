"""The audit journal in the plant database (PostgreSQL): ``ENOSPROV_JOURNAL=postgresql://...``.

EnOS-backed stations keep their journal locally by default (journal.db), so the exported,
labelled and printed figures of ``batches`` and ``log`` differ from PC to PC. Pointed at the
plant database, every station appends to one journal and every station shows the same figures
(docs/plant-database.md).

The records, their reading and their rules are :class:`enosprov.journal.Journal`'s; this class
only speaks PostgreSQL: its schema (the same tables and columns, append-only by triggers), one
transaction per record, and the few SQLite spellings of the shared statements translated
(:class:`_Connection`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .domain.errors import StoreError
from .journal import Actor, Journal
from .pg_sql import PgConnection, first_line, statements
from .plantdb import connect, redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        BIGINT NOT NULL,
    "user"      TEXT NOT NULL,
    host        TEXT NOT NULL,
    station     TEXT,
    backend     TEXT NOT NULL,
    profile     TEXT,
    operation   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    group_id    TEXT,
    devices     INTEGER NOT NULL,
    device_list BYTEA,
    request_id  TEXT,
    error       TEXT,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS journal_time ON journal (time);
CREATE INDEX IF NOT EXISTS journal_operation ON journal (operation, time);
CREATE TABLE IF NOT EXISTS journal_devices (
    rowid     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- SQLite's insertion order
    entry     BIGINT NOT NULL REFERENCES journal(id),
    sn        TEXT NOT NULL,
    device_sn TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_devices_sn ON journal_devices (sn);
CREATE INDEX IF NOT EXISTS journal_devices_device_sn ON journal_devices (device_sn);
CREATE INDEX IF NOT EXISTS journal_devices_entry ON journal_devices (entry);
CREATE TABLE IF NOT EXISTS journal_marks (
    mark      TEXT NOT NULL,
    sn        TEXT NOT NULL,
    device_sn TEXT NOT NULL,
    group_id  TEXT,
    batch_tag TEXT,
    time      BIGINT NOT NULL,
    PRIMARY KEY (mark, sn)
);
CREATE INDEX IF NOT EXISTS journal_marks_batch ON journal_marks (group_id, batch_tag, mark, time);
CREATE OR REPLACE FUNCTION enosprov_journal_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit journal is append-only'; END $$;
CREATE OR REPLACE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION enosprov_journal_append_only();
CREATE OR REPLACE TRIGGER journal_devices_append_only BEFORE UPDATE OR DELETE ON journal_devices
    FOR EACH ROW EXECUTE FUNCTION enosprov_journal_append_only();
CREATE OR REPLACE TRIGGER journal_marks_append_only BEFORE UPDATE OR DELETE ON journal_marks
    FOR EACH ROW EXECUTE FUNCTION enosprov_journal_append_only()
"""

# Stations that start together must not create the schema twice at once.
SCHEMA_LOCK = 0x656E6F73  # "enos"


class PgJournal(Journal):
    """The audit journal in a PostgreSQL database (created on first use)."""

    def __init__(self, url: str, actor: Actor) -> None:
        self.url = url
        self.path = redact(url)  # type: ignore[assignment]  # where it is, for messages
        self.actor = actor
        self._pg: PgConnection | None = None

    def __repr__(self) -> str:
        return f"PgJournal({self.path!r})"

    def _connect(self, create: bool) -> Any:
        if self._pg is not None:
            return self._pg
        import psycopg

        conn = connect(self.url, autocommit=True)
        try:
            ensure_schema(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(
                f"cannot open the audit journal in {self.path}: {first_line(exc)}",
                hint="the role needs CREATE on the database the first time "
                "(docs/plant-database.md, roles)",
            ) from None
        self._pg = PgConnection(conn, self.url)
        return self._pg

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    def is_in(self, conn: Any) -> bool:
        """``conn`` is the PostgreSQL store's connection to this same database: a record
        written through it commits, or rolls back, with the change it describes."""
        return isinstance(conn, PgConnection) and conn.url == self.url

    def _insert(
        self, conn, operation, outcome, group_id, count, devices, blob, request_id, error, detail
    ) -> int:
        a = self.actor
        row = conn.raw.execute(
            'INSERT INTO journal (time, "user", host, station, backend, profile, operation, '
            "outcome, group_id, devices, device_list, request_id, error, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                int(time.time() * 1000), a.user, a.host, a.station, a.backend, a.profile,
                operation, outcome, group_id, count, blob, request_id, error,
                json.dumps(detail, ensure_ascii=False, sort_keys=True),
            ),
        ).fetchone()  # fmt: skip
        entry = int(row[0])
        if devices:
            conn.executemany(
                "INSERT INTO journal_devices (entry, sn, device_sn) VALUES (?, ?, ?)",
                [(entry, sn, dsn) for sn, dsn in devices],
            )
        return entry

    def _transaction(self, fn: Callable[[Any], Any], failure: str) -> Any:
        import psycopg

        conn = self._connect(create=True)
        try:
            with conn.raw.transaction():
                return fn(conn)
        except psycopg.Error as exc:
            raise StoreError(
                f"{failure} to {self.path}: {first_line(exc)}",
                hint="check the plant database and the role's rights; retrying is safe",
            ) from None


def ensure_schema(conn: Any) -> None:
    """Create the journal's tables in the database of ``conn`` (a psycopg connection) unless
    they are there: a station role needs no CREATE once they exist."""
    if not _has_schema(conn):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if not _has_schema(conn):
                for statement in statements(SCHEMA):
                    conn.execute(statement)


def _has_schema(conn: Any) -> bool:
    row = conn.execute(
        "SELECT to_regclass('journal') IS NOT NULL AND to_regclass('journal_devices') IS NOT NULL "
        "AND to_regclass('journal_marks') IS NOT NULL"
    ).fetchone()
    return bool(row[0])
