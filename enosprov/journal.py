"""The audit journal: one append-only record for every operation that changes something.

A record says when (UTC), who (OS user, host, optional station id), where (backend, profile), what
(operation, registration group, affected devices, outcome, EnOS requestId) and a small JSON detail.
It never holds a secret: :func:`_check_detail` refuses any detail key that names one.

The journal is an SQLite table. With the local store it lives in the store file itself; with the
EnOS backend it is kept locally in ``journal.db`` in the user data folder (or ``$ENOSPROV_JOURNAL``).
Triggers make both tables append-only: an UPDATE or DELETE is aborted by SQLite itself.

Affected devices: up to :data:`INDEXED_DEVICES` per record are stored one row each (indexed by
system sn and by deviceSn); a larger record (a 100,000-row registration) keeps its list as one
compressed blob, streamed while the operation runs, so journaling costs no per-device row there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, overload

from .domain.errors import EnosprovError, InvalidArgumentError, StoreError

STATION_ENV = "ENOSPROV_STATION"
JOURNAL_ENV = "ENOSPROV_JOURNAL"
JOURNAL_FILENAME = "journal.db"
INDEXED_DEVICES = 1000  # records with more devices keep them as one compressed list
BUSY_TIMEOUT = 60.0

# Operations recorded (the `enosprov log --operation` vocabulary).
OPERATIONS = (
    "masterdata-create",
    "masterdata-update",
    "group-create",
    "group-update",
    "register",
    "update",
    "delete",
    "allocate",
    "bootstrap",
    "reprovision",
    "replace",
    "burn-export",
    "label-export",
    "onboard",
    "group-import",
    "sync-push",
    "sync-pull",
    "doctor-test",
)
# "pending": an intent written before changes whose outcome may be lost (EnOS creates in flight
# at a kill); a later record settles it. Intent records never count as affected devices.
OUTCOMES = ("ok", "partial", "failed", "interrupted", "pending")
# Per-device marks kept for batch monitoring (first time each device reached the state); the
# store knows the other states (allocated, connected, ...) itself.
MARKS = ("exported", "labelled", "replaced", "deleted")
MARK_FLUSH = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,       -- epoch milliseconds, UTC
    user        TEXT NOT NULL,
    host        TEXT NOT NULL,
    station     TEXT,
    backend     TEXT NOT NULL,
    profile     TEXT,
    operation   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    group_id    TEXT,
    devices     INTEGER NOT NULL,       -- number of affected devices
    device_list BLOB,                   -- zlib("sn\\tdeviceSn\\n"...) when devices > 1000
    request_id  TEXT,
    error       TEXT,
    detail      TEXT                    -- JSON object, never a secret
);
CREATE INDEX IF NOT EXISTS journal_time ON journal (time);
CREATE INDEX IF NOT EXISTS journal_operation ON journal (operation, time);
CREATE TABLE IF NOT EXISTS journal_devices (
    entry     INTEGER NOT NULL REFERENCES journal(id),
    sn        TEXT NOT NULL,
    device_sn TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_devices_sn ON journal_devices (sn);
CREATE INDEX IF NOT EXISTS journal_devices_device_sn ON journal_devices (device_sn);
CREATE INDEX IF NOT EXISTS journal_devices_entry ON journal_devices (entry);
CREATE TABLE IF NOT EXISTS journal_marks (
    mark      TEXT NOT NULL,            -- exported | labelled | replaced | deleted
    sn        TEXT NOT NULL,
    device_sn TEXT NOT NULL,
    group_id  TEXT,
    batch_tag TEXT,
    time      INTEGER NOT NULL,         -- the first time (epoch ms)
    PRIMARY KEY (mark, sn)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS journal_marks_batch ON journal_marks (group_id, batch_tag, mark, time);
CREATE TRIGGER IF NOT EXISTS journal_marks_no_update BEFORE UPDATE ON journal_marks
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_marks_no_delete BEFORE DELETE ON journal_marks
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_devices_no_update BEFORE UPDATE ON journal_devices
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_devices_no_delete BEFORE DELETE ON journal_devices
BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END
"""

_SECRET_WORDS = ("secret", "password", "token", "sign")


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def os_user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no login name (some containers / services)
        return "unknown"


@dataclass(frozen=True)
class Actor:
    """Who and where: written on every record."""

    user: str
    host: str
    station: str | None
    backend: str
    profile: str | None = None

    @classmethod
    def current(
        cls,
        backend: str,
        profile: str | None = None,
        station: str | None = None,
        env=os.environ,
    ) -> Actor:
        """The OS user and host name; ``station`` over ``$ENOSPROV_STATION``."""
        return cls(
            user=os_user(),
            host=socket.gethostname() or "unknown",
            station=station or env.get(STATION_ENV) or None,
            backend=backend,
            profile=profile,
        )


@dataclass
class Entry:
    """One journal record, as read back."""

    id: int
    time: int
    user: str
    host: str
    station: str | None
    backend: str
    profile: str | None
    operation: str
    outcome: str
    group_id: str | None
    device_count: int
    devices: list[tuple[str, str]]  # (system sn, deviceSn)
    request_id: str | None
    error: str | None
    detail: dict = field(default_factory=dict)

    @property
    def iso_time(self) -> str:
        return iso(self.time)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "time": self.iso_time,
            "user": self.user,
            "host": self.host,
            "station": self.station,
            "backend": self.backend,
            "profile": self.profile,
            "operation": self.operation,
            "outcome": self.outcome,
            "groupId": self.group_id,
            "deviceCount": self.device_count,
            "devices": [{"sn": sn, "deviceSn": dsn} for sn, dsn in self.devices],
            "requestId": self.request_id,
            "error": self.error,
            "detail": self.detail,
        }


def iso(ms: int) -> str:
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _check_detail(detail: dict, path: str = "") -> None:
    """Refuse a detail that could carry a secret (a programming error, never user input)."""
    for key, value in detail.items():
        lowered = str(key).lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(f"journal detail key {path}{key!r} may hold a secret")
        if isinstance(value, dict):
            _check_detail(value, f"{path}{key}.")


class Record:
    """A record being built while its operation runs; written by :meth:`commit`.

    Devices are added as they are affected; past :data:`INDEXED_DEVICES` they are streamed into
    a compressed list (memory stays flat for a million-device batch).
    """

    def __init__(self, journal: Journal, operation: str, group_id: str | None, detail: dict):
        self.journal = journal
        self.operation = operation
        self.group_id = group_id
        self.detail = dict(detail)
        self.request_id: str | None = None
        self.count = 0
        self._small: list[tuple[str, str]] = []
        self._packer: zlib._Compress | None = None
        self._packed: list[bytes] = []
        self._marks: list[tuple] = []
        self.committed: int | None = None

    def mark(self, kind: str, sn: str | None, device_sn: str, batch_tag: str | None) -> None:
        """Device ``sn`` reached state ``kind`` (one of :data:`MARKS`) in this operation; only
        the first time per device and state is kept. Written in slices as the operation runs:
        a mark says what happened (a file was written), whatever the operation's outcome."""
        if not sn:
            return  # not registered: no batch to count it in
        if kind not in MARKS:
            raise ValueError(f"unknown journal mark {kind!r}")
        self._marks.append((kind, sn, device_sn, self.group_id, batch_tag))
        if len(self._marks) >= MARK_FLUSH:
            self.flush_marks()

    def flush_marks(self) -> None:
        if self._marks:
            self.journal._write_marks(self._marks)
            self._marks = []

    def add(self, sn: str, device_sn: str) -> None:
        self.extend(((sn, device_sn),))

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        rest = iter(pairs)
        if self._packer is None:
            for sn, device_sn in rest:
                self._small.append((sn or "", device_sn or ""))
                self.count += 1
                if self.count > INDEXED_DEVICES:
                    self._packer = zlib.compressobj(1)
                    self._pack(self._small)
                    self._small = []
                    break
            else:
                return
        self._pack(rest, count=True)

    def _pack(self, pairs: Iterable[tuple[str, str]], count: bool = False) -> None:
        assert self._packer is not None  # extend() creates it before the first call
        lines = [f"{sn or ''}\t{dsn or ''}\n" for sn, dsn in pairs]
        if count:
            self.count += len(lines)
        self._packed.append(self._packer.compress("".join(lines).encode("utf-8")))

    def commit(
        self, outcome: str = "ok", *, error: str | None = None, request_id: str | None = None
    ) -> int:
        """Append the record; its id. Committing twice is a no-op."""
        if self.committed is not None:
            return self.committed
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown journal outcome {outcome!r}")
        self.flush_marks()
        blob = None
        if self._packer is not None:
            blob = b"".join(self._packed) + self._packer.flush()
        self.committed = self.journal._append(
            self.operation,
            outcome,
            self.group_id,
            self.count,
            self._small if blob is None else [],
            blob,
            request_id or self.request_id,
            error,
            self.detail,
        )
        return self.committed

    # ``with journal.begin(...) as rec:`` commits "ok", or "failed"/"interrupted" on an exception.
    def __enter__(self) -> Record:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        if self.count == 0 and not self.detail.get("attempted"):
            return  # nothing was changed: nothing to record
        if issubclass(exc_type, KeyboardInterrupt):
            self.commit("interrupted", error="interrupted")
        else:
            message = exc.message if isinstance(exc, EnosprovError) else type(exc).__name__
            self.commit("failed", error=message, request_id=getattr(exc, "request_id", None))


class Journal:
    """The audit journal in an SQLite file (created on the first record)."""

    def __init__(self, path: str | os.PathLike, actor: Actor) -> None:
        from .plantdb import is_database_url

        if is_database_url(path):  # Path() would make a folder tree of the URL
            raise ValueError("a database URL is a PgJournal (enosprov.journal_pg), not a file")
        self.path = Path(path)
        self.actor = actor
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- connection ---------------------------------------------------------------------------

    @overload
    def _connect(self, create: Literal[True]) -> sqlite3.Connection: ...
    @overload
    def _connect(self, create: bool) -> sqlite3.Connection | None: ...

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        """The journal's connection; None when ``create`` is False and there is no file yet."""
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            _create_schema(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the audit journal {self.path}: {exc}",
                hint=f"check the folder's permissions, or set {JOURNAL_ENV}",
            ) from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def begin(
        self, operation: str, *, group_id: str | None = None, detail: dict | None = None
    ) -> Record:
        if operation not in OPERATIONS:
            raise ValueError(f"unknown journal operation {operation!r}")
        _check_detail(detail or {})
        return Record(self, operation, group_id, detail or {})

    def record(
        self,
        operation: str,
        *,
        outcome: str = "ok",
        devices: Iterable[tuple[str, str]] = (),
        group_id: str | None = None,
        request_id: str | None = None,
        error: str | None = None,
        detail: dict | None = None,
    ) -> int:
        """Append one finished record; its id."""
        rec = self.begin(operation, group_id=group_id, detail=detail)
        rec.extend(devices)
        return rec.commit(outcome, error=error, request_id=request_id)

    def _append(
        self, operation, outcome, group_id, count, devices, blob, request_id, error, detail
    ) -> int:
        _check_detail(detail)
        row = (operation, outcome, group_id, count, devices, blob, request_id, error, detail)
        return self._transaction(
            lambda conn: self._insert(conn, *row),
            f"the {operation} was done, but its audit journal record could not be written",
        )

    def _insert(
        self, conn, operation, outcome, group_id, count, devices, blob, request_id, error, detail
    ) -> int:
        a = self.actor
        cur = conn.execute(
            "INSERT INTO journal (time, user, host, station, backend, profile, operation, "
            "outcome, group_id, devices, device_list, request_id, error, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                int(time.time() * 1000), a.user, a.host, a.station, a.backend, a.profile,
                operation, outcome, group_id, count, blob, request_id, error,
                json.dumps(detail, ensure_ascii=False, sort_keys=True),
            ),
        )  # fmt: skip
        if devices:
            conn.executemany(
                "INSERT INTO journal_devices (entry, sn, device_sn) VALUES (?, ?, ?)",
                [(cur.lastrowid, sn, dsn) for sn, dsn in devices],
            )
        return cur.lastrowid

    def record_with(
        self,
        conn: sqlite3.Connection | None,
        operation: str,
        *,
        outcome: str = "ok",
        devices: Sequence[tuple[str, str]] = (),
        group_id: str | None = None,
        detail: dict | None = None,
        error: str | None = None,
    ) -> int:
        """Append one finished record through ``conn``, inside the caller's open transaction,
        when ``conn`` is a connection to this journal's own file (the local store keeps its
        journal in the store file): the record then commits, or rolls back, with the change it
        describes, and a kill can never separate them. Otherwise (no connection, or another
        file) the record gets its own transaction, right away."""
        if operation not in OPERATIONS or outcome not in OUTCOMES:
            raise ValueError(f"unknown journal operation/outcome {operation!r}/{outcome!r}")
        detail = detail or {}
        _check_detail(detail)
        devices = [(sn or "", dsn or "") for sn, dsn in devices]
        blob = None
        if len(devices) > INDEXED_DEVICES:
            text = "".join(f"{sn}\t{dsn}\n" for sn, dsn in devices)
            blob, devices_rows = zlib.compress(text.encode("utf-8"), 1), []
        else:
            devices_rows = devices
        row = (operation, outcome, group_id, len(devices), devices_rows, blob, None, error, detail)
        if self.is_in(conn):
            return self._insert(conn, *row)
        return self._append(*row)

    def is_in(self, conn: sqlite3.Connection | None) -> bool:
        """``conn`` is open on this journal's own file, so a record written through it shares
        its transaction (the journal tables are created in it first if needed)."""
        if not isinstance(conn, sqlite3.Connection):
            return False
        main = conn.execute("PRAGMA database_list").fetchone()[2]
        if not main or Path(main).resolve() != self.path.resolve():
            return False
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='journal'").fetchone():
            _create_schema(conn)  # inside the caller's transaction: no second writer waits
        return True

    def _write_marks(self, rows: list[tuple]) -> None:
        now = int(time.time() * 1000)
        self._transaction(
            lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO journal_marks (mark, sn, device_sn, group_id, batch_tag, "
                "time) VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            ),
            "cannot write the batch marks of the audit journal",
        )

    def _transaction(self, fn, failure: str):
        """``fn(conn)`` in one write transaction; an SQLite error becomes a StoreError."""
        conn = self._connect(create=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(
                f"{failure} to {self.path}: {exc}",
                hint="check the disk and the journal file's permissions",
            ) from None
        return result

    def printed(self, sn: str) -> bool:
        """A label of device ``sn`` was sent to a printer (a "label-export" record with a
        ``printer``, listing the device by row: records of up to 1,000 devices)."""
        conn = self._connect(create=False)
        if conn is None:
            return False
        row = conn.execute(
            "SELECT 1 FROM journal_devices d JOIN journal j ON j.id = d.entry WHERE d.sn = ? "
            "AND j.operation = 'label-export' AND j.outcome IN ('ok', 'partial') "
            "AND json_extract(j.detail, '$.printer') IS NOT NULL LIMIT 1",
            (sn,),
        ).fetchone()
        return row is not None

    def recorded_sns(self, group_id: str, since_ms: int) -> set[str]:
        """System sns that "register" records of ``group_id`` written since ``since_ms`` list as
        created (intents excluded): what a settlement must not count again."""
        conn = self._connect(create=False)
        if conn is None:
            return set()
        rows = conn.execute(
            "SELECT id FROM journal WHERE operation = 'register' AND outcome <> 'pending' "
            "AND group_id = ? AND time >= ?",
            (group_id, since_ms),
        ).fetchall()
        found: set[str] = set()
        for (entry_id,) in rows:
            row = conn.execute("SELECT * FROM journal WHERE id = ?", (entry_id,)).fetchone()
            found.update(sn for sn, _ in self._entry(conn, row).devices if sn)
        return found

    def open_intents(self, group_id: str) -> list[Entry]:
        """The "pending" intents of ``group_id`` that no later record references
        (``detail.intent``): changes whose outcome a kill may have lost."""
        conn = self._connect(create=False)
        if conn is None:
            return []
        rows = conn.execute(
            "SELECT * FROM journal WHERE outcome = 'pending' AND group_id = ? AND id NOT IN "
            "(SELECT json_extract(detail, '$.intent') FROM journal WHERE outcome <> 'pending' "
            "AND json_extract(detail, '$.intent') IS NOT NULL) ORDER BY id",
            (group_id,),
        ).fetchall()
        return [self._entry(conn, row) for row in rows]

    def batch_marks(self, group_id: str | None = None, batch_tag: str | None = None) -> list:
        """(group_id, batch_tag, mark, count, first time, last time) per batch and mark."""
        conn = self._connect(create=False)
        if conn is None:
            return []
        where, params = [], []
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        if batch_tag is not None:
            where.append("batch_tag IS ?")
            params.append(batch_tag)
        sql = (
            "SELECT group_id, batch_tag, mark, count(*), min(time), max(time) FROM journal_marks"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY group_id, batch_tag, mark"
        )
        return conn.execute(sql, params).fetchall()

    def marked(
        self,
        group_id: str,
        batch_tag: str | None,
        marks: Sequence[str],
        *,
        before: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[tuple[str, str, str, int]]:
        """(mark, sn, deviceSn, time) of a batch's devices with these marks, oldest first."""
        conn = self._connect(create=False)
        if conn is None or not marks:
            return []
        sql = (
            "SELECT mark, sn, device_sn, time FROM journal_marks WHERE group_id = ? AND "
            f"batch_tag IS ? AND mark IN ({', '.join('?' * len(marks))})"
        )
        params: list = [group_id, batch_tag, *marks]
        if before is not None:
            sql += " AND time < ?"
            params.append(before)
        sql += " ORDER BY time, sn"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return conn.execute(sql, params).fetchall()

    # -- reading ------------------------------------------------------------------------------

    def entries(
        self,
        *,
        device: str | Sequence[str] | None = None,
        operations: Sequence[str] = (),
        since: int | None = None,
        until: int | None = None,
        station: str | None = None,
        group_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[Entry]:
        """Records matching every filter given; ``device`` is a system sn or deviceSn (or
        several); ``since``/``until`` are epoch ms (``until`` exclusive)."""
        conn = self._connect(create=False)
        if conn is None:
            return
        unknown = [op for op in operations if op not in OPERATIONS]
        if unknown:
            raise InvalidArgumentError(
                f"unknown operation {unknown[0]!r}", hint="one of: " + ", ".join(OPERATIONS)
            )
        where: list[str] = []
        params: list = []
        if operations:
            where.append(f"operation IN ({', '.join('?' * len(operations))})")
            params.extend(operations)
        for column, op, value in (
            ("time", ">=", since),
            ("time", "<", until),
            ("station", "=", station),
            ("group_id", "=", group_id),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        idents: list[str] = []
        if device is not None:
            idents = [device] if isinstance(device, str) else list(device)
            marks = ", ".join("?" * len(idents))
            where.append(
                f"(id IN (SELECT entry FROM journal_devices WHERE sn IN ({marks}) "
                f"OR device_sn IN ({marks})) OR device_list IS NOT NULL)"
            )
            params.extend(idents * 2)
        sql = "SELECT * FROM journal"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id" + (" DESC" if newest_first else "")
        found = 0
        completed: set[int] | None = None  # intents a later record completed: not shown
        for row in conn.execute(sql, params).fetchall() if device else conn.execute(sql, params):
            if row[8] == "pending":  # outcome: an intent, shown only while it is open
                if completed is None:
                    completed = self._completed_intents(conn)
                if row[0] in completed:
                    continue
            entry = self._entry(conn, row)
            if idents and row[11] is not None:
                wanted = set(idents)
                if not any(sn in wanted or dsn in wanted for sn, dsn in entry.devices):
                    continue
            yield entry
            found += 1
            if limit is not None and found >= limit:
                return

    @staticmethod
    def _completed_intents(conn) -> set[int]:
        rows = conn.execute(
            "SELECT json_extract(detail, '$.intent') FROM journal WHERE outcome <> 'pending' "
            "AND operation = 'register' AND json_extract(detail, '$.intent') IS NOT NULL"
        )
        return {r[0] for r in rows}

    def _entry(self, conn, row) -> Entry:
        (id_, time_, user, host, station, backend, profile, operation, outcome, group_id, count,
         blob, request_id, error, detail) = row  # fmt: skip
        if blob is not None:
            text = zlib.decompress(blob).decode("utf-8")
            devices = [tuple(line.split("\t", 1)) for line in text.splitlines()]
        else:
            devices = conn.execute(
                "SELECT sn, device_sn FROM journal_devices WHERE entry=? ORDER BY rowid", (id_,)
            ).fetchall()
        return Entry(
            id_, time_, user, host, station, backend, profile, operation, outcome, group_id,
            # every row and line is a (sn, deviceSn) pair: both are written that way
            count, cast("list[tuple[str, str]]", [tuple(d) for d in devices]), request_id, error,
            json.loads(detail) if detail else {},
        )  # fmt: skip


class NullJournal:
    """Records nothing: what library calls use when no journal is given."""

    path = None

    def begin(self, operation: str, *, group_id=None, detail=None) -> Record:
        return Record(self, operation, group_id, detail or {})  # type: ignore[arg-type]

    def record(self, operation: str, **kw) -> int:
        return 0

    def record_with(self, conn, operation: str, **kw) -> int:
        return 0

    def is_in(self, conn) -> bool:
        return False

    def printed(self, sn: str) -> bool:
        return False

    def open_intents(self, group_id: str) -> list:
        return []

    def recorded_sns(self, group_id: str, since_ms: int) -> set:
        return set()

    def _append(self, *args) -> int:
        return 0

    def _write_marks(self, rows) -> None:
        """Nothing is recorded: the marks are dropped."""

    def batch_marks(self, *args, **kw) -> list:
        return []

    def marked(self, *args, **kw) -> list:
        return []

    def entries(self, **kw) -> Iterator[Entry]:
        return iter(())

    def close(self) -> None:
        """Nothing to close."""


NO_JOURNAL = NullJournal()


def journal_or_null(journal: Journal | NullJournal | None) -> Journal | NullJournal:
    return NO_JOURNAL if journal is None else journal


def journal_path(settings) -> Path:
    """Where the journal of these settings lives: the local store file itself, else
    ``$ENOSPROV_JOURNAL`` or ``journal.db`` in the user data folder."""
    env = os.environ if settings.env is None else settings.env
    if settings.backend == "local":
        return Path(settings.store)
    if env.get(JOURNAL_ENV):
        return Path(env[JOURNAL_ENV])
    from .paths import user_data_dir

    return user_data_dir(env) / JOURNAL_FILENAME


# -- time filters ---------------------------------------------------------------------------------

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_ms(text: str) -> int | None:
    """``30m`` / ``12h`` / ``7d`` / ``2w`` as milliseconds; None when ``text`` is not one."""
    value = text.strip()
    if value[:-1].isdigit() and value[-1:].lower() in _UNITS:
        return int(value[:-1]) * _UNITS[value[-1].lower()] * 1000
    return None


def parse_time(text: str, *, now: float | None = None, option: str = "--since") -> int:
    """Epoch ms from ``7d`` / ``12h`` / ``30m`` / ``2w`` (ago), ``2026-11-01`` or an ISO date-time
    (UTC unless it carries an offset)."""
    value = text.strip()
    now = time.time() if now is None else now
    age = duration_ms(value)
    if age is not None:
        return int(now * 1000) - age
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(
            f"{option} {text!r} is not a time",
            hint="use a date (2026-11-01), a date-time (2026-11-01T08:00) or an age (7d, 12h, 30m)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)
