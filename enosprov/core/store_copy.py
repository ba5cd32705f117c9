"""Copy a station's store, journal included, into another store (``enosprov store copy``):
SQLite to PostgreSQL, back, or SQLite to SQLite (docs/plant-database.md, "Moving a station's
store in").

What is copied: the master data groups, the registration groups (their secrets too; never
shown), the devices in their insertion order, the replacements, the batch counter (the target
keeps the larger of the two) and the audit journal: its records, their device rows (each record
gets the target's next id; the rows follow it) and the batch marks.

The rules:

- **Conflicts are looked for first** and then nothing is written at all: a master data group or
  registration group of the same id with another definition (every column but its create and
  update times, the group secret included), a registration group whose name is taken in the
  target by another group, a device whose system sn is in the target with other data, or whose
  deviceSn is registered in the target's group under another system sn.
  :class:`~enosprov.domain.errors.DefinitionConflictError` (exit 7) names the first few.
- **What the target already holds, identical, is skipped**: a copy that was interrupted, or a
  second run, copies only what is missing. A journal record counts as there when the target
  holds a record with the same content (time, user, host, station, backend, profile, operation,
  outcome, group, device count, request id, error, detail); a batch mark when the target has
  that mark for that device (the target keeps its own first time).
- **One transaction**: everything is written in one transaction of the target
  (``target.write()``), checked, and committed only when every source row is in the target
  (:class:`CopyMismatchError`, exit 4, otherwise). An interrupted copy writes nothing.

Every statement is written in SQLite's spelling and goes through the stores' own connections,
which translate it for PostgreSQL: the same code runs in both directions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..backends.local import LocalBackend
from ..backends.local_schema import DEVICE_COLUMNS
from ..domain.errors import (
    EXIT_MISMATCH,
    DefinitionConflictError,
    EnosprovError,
    InvalidArgumentError,
    StoreError,
)
from ..journal import _create_schema as create_journal_schema
from ..plantdb import redact

# (phase, done, total): phases "check", "copy" and "verify", each over every source row
ProgressFn = Callable[[str, int, int | None], None]

CHUNK_SIZE = 5000  # device (and mark) rows read, looked up and written at a time
ENTRY_CHUNK = 500  # journal records whose device rows are compared at a time
LOOKUP = 500  # values in one IN (...) list: within SQLite's oldest limit of 999 parameters
SHOWN = 3  # conflicts named in the one-line message
LISTED = 20  # conflicts listed in the error's differences

TABLES = (
    "masterdata_groups",
    "registration_groups",
    "devices",
    "replacements",
    "journal",
    "journal_devices",
    "journal_marks",
)
JOURNAL_TABLES = ("journal", "journal_devices", "journal_marks")

MDG_COLUMNS = ("id", "name", "description", "attributes", "create_time")
GROUP_COLUMNS = (
    "group_id", "name", "description", "group_secret", "product_key", "masterdata_group_id",
    "region_id", "org_id", "reprovision_method", "model_type", "manufacturer_org_id",
    "sign_scheme", "sn_pattern", "mqtt_url", "http_url", "create_time", "update_time",
    "timezone", "allow_retired_bootstrap",
)  # fmt: skip
# Times say when a store created or last touched a group, not what the group is: the built-in
# master data group is created by every store at its own time.
UNDEFINING = {"create_time", "update_time"}
DEVICE_NAMES = tuple(c.strip() for c in DEVICE_COLUMNS.split(","))
REPLACEMENT_COLUMNS = "old_sn, old_device_sn, new_sn, new_device_sn, group_id, time"
# "user" quoted: a keyword in PostgreSQL, a plain column name in SQLite
JOURNAL_COLUMNS = (
    'time, "user", host, station, backend, profile, operation, outcome, group_id, devices, '
    "device_list, request_id, error, detail"
)
_BLOB, _DETAIL = 10, 13  # positions in JOURNAL_COLUMNS
MARK_COLUMNS = "mark, sn, device_sn, group_id, batch_tag, time"

_LABELS = {
    "masterdata_groups": "master data groups",
    "registration_groups": "registration groups",
    "devices": "devices",
    "replacements": "replacements",
    "journal": "journal records",
    "journal_devices": "journal device rows",
    "journal_marks": "batch marks",
}


class CopyMismatchError(EnosprovError):
    """After copying, the target does not hold every row of the source (the source changed
    during the copy): the copy was rolled back, nothing was written."""

    code = "mismatch"
    exit_code = EXIT_MISMATCH


@dataclass
class TableCount:
    """One table of a copy: rows in the source, copied (a dry run: to copy), already in the
    target identical, and in the target afterwards (a dry run: it would hold)."""

    table: str
    source: int = 0
    copied: int = 0
    present: int = 0
    target: int = 0

    @property
    def label(self) -> str:
        return _LABELS[self.table]

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "source": self.source,
            "copied": self.copied,
            "alreadyThere": self.present,
            "target": self.target,
        }


@dataclass
class CopyReport:
    """What :func:`copy_store` did (or, ``dry_run``, would do). ``source`` and ``target`` are
    where the stores are, passwords hidden."""

    source: str
    target: str
    dry_run: bool
    tables: dict[str, TableCount] = field(default_factory=dict)
    batch_order_source: int = 0
    batch_order_target: int = 0  # before the copy
    verified: bool = False  # every source row was found in the target before the commit

    @property
    def batch_order(self) -> int:
        """The target's batch counter after the copy: the larger of the two."""
        return max(self.batch_order_source, self.batch_order_target)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables.values())

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "dryRun": self.dry_run,
            "tables": [t.to_dict() for t in self.tables.values()],
            "copied": self.copied,
            "batchOrder": {
                "source": self.batch_order_source,
                "targetBefore": self.batch_order_target,
                "target": self.batch_order,
            },
            "verified": self.verified,
        }


def copy_store(
    source: LocalBackend,
    target: LocalBackend,
    *,
    progress: ProgressFn | None = None,
    dry_run: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> CopyReport:
    """Copy every row of ``source`` that ``target`` does not hold yet into ``target``, in one
    transaction, and check that the target then holds every source row.

    Raises :class:`DefinitionConflictError` (nothing written) when the target holds other data
    under the same ids, :class:`CopyMismatchError` (rolled back) when the check fails, and
    :class:`StoreError` when a database fails. ``dry_run``: look for conflicts and count what
    would be copied; write nothing. ``progress(phase, done, total)`` follows the phases "check",
    "copy" and "verify"."""
    if same_store(source, target):
        raise InvalidArgumentError(
            f"{source.where} and {target.where} are the same store",
            hint="--from and --to must name two different stores",
        )
    report = CopyReport(source.where, target.where, dry_run)
    with _database_errors(source, target):
        counts = table_counts(source)
        report.tables = {t: TableCount(t, source=n) for t, n in counts.items()}
        total = sum(counts.values())
        report.batch_order_source = _batch_order(source.conn)
        report.batch_order_target = _batch_order(target.conn)

        check = _Pass(source, target.conn, _has_journal(target), chunk_size, write=False)
        check.run(_Ticker(progress, "check", total))
        if check.conflicts:
            raise _conflict_error(check, target)
        if dry_run:
            for name, t in report.tables.items():
                t.copied, t.present = check.copied[name], check.present[name]
                t.target = check.target_counts[name] + t.copied
            return report

        with target.write() as conn:
            journal_in_target = _has_journal(target)
            if not journal_in_target and any(counts[t] for t in JOURNAL_TABLES):
                create_journal_schema(conn)  # an SQLite store that never wrote a record
                journal_in_target = True
            copy = _Pass(source, conn, journal_in_target, chunk_size, write=True)
            copy.run(_Ticker(progress, "copy", total))
            if copy.conflicts:  # the target changed since the check: nothing is committed
                raise _conflict_error(copy, target)
            if report.batch_order_source > _batch_order(conn):
                _set_batch_order(conn, report.batch_order_source)
            for name, t in report.tables.items():
                t.copied, t.present = copy.copied[name], copy.present[name]
            _verify(
                source, conn, copy, report, journal_in_target, _Ticker(progress, "verify", total)
            )
        report.verified = True
    return report


# -- where the stores are --------------------------------------------------------------------------


def _is_sqlite(backend: LocalBackend) -> bool:
    return isinstance(backend.conn, sqlite3.Connection)


def same_store(a: LocalBackend, b: LocalBackend) -> bool:
    """``a`` and ``b`` are the same store: the same SQLite file (whatever the path's spelling),
    or the same database of the same PostgreSQL server."""
    if _is_sqlite(a) != _is_sqlite(b):
        return False
    if _is_sqlite(a):
        try:
            return os.path.samefile(a.path, b.path)
        except OSError:
            return a.path.resolve() == b.path.resolve()
    ident = (
        "SELECT current_database(), CAST(pg_postmaster_start_time() AS TEXT), "
        "CAST(inet_server_addr() AS TEXT), inet_server_port()"
    )
    return tuple(a.conn.execute(ident).fetchone()) == tuple(b.conn.execute(ident).fetchone())


def _has_journal(backend: LocalBackend) -> bool:
    """The journal's tables are there (a PostgreSQL store creates them on opening; an SQLite
    store when it writes its first record)."""
    if not _is_sqlite(backend):
        return True
    found = backend.conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
        "('journal', 'journal_devices', 'journal_marks')"
    ).fetchone()[0]
    return bool(found == len(JOURNAL_TABLES))


def table_counts(backend: LocalBackend) -> dict[str, int]:
    """Rows per table of a store (0 for journal tables it does not have)."""
    journal = _has_journal(backend)
    return {t: _count(backend.conn, t, journal) for t in TABLES}


def _count(conn: Any, table: str, journal: bool) -> int:
    if table in JOURNAL_TABLES and not journal:
        return 0
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _order(conn: Any, table: str) -> str:
    """The column that keeps a table's insertion order: SQLite's rowid; in PostgreSQL, the
    devices' rowid column and the pos column of the others."""
    if isinstance(conn, sqlite3.Connection) or table == "devices":
        return "rowid"
    return "pos"


def _batch_order(conn: Any) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    return int(row[0]) if row else 0


def _set_batch_order(conn: Any, value: int) -> None:
    if conn.execute("SELECT 1 FROM meta WHERE key='batch_order'").fetchone():
        conn.execute("UPDATE meta SET value=? WHERE key='batch_order'", (str(value),))
    else:
        conn.execute("INSERT INTO meta (key, value) VALUES ('batch_order', ?)", (str(value),))


# -- one pass over the source: look up, compare, and (write=True) insert what is missing ---------


class _Ticker:
    def __init__(self, progress: ProgressFn | None, phase: str, total: int) -> None:
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.progress is not None:
            self.progress(self.phase, min(self.done, self.total), self.total)


def _chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(tuple(row))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _differing(names: Sequence[str], a: Sequence[Any], b: Sequence[Any]) -> list[str]:
    return [n for n, x, y in zip(names, a, b) if x != y]


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _lookup(conn: Any, sql: str, fixed: Sequence[Any], values: Sequence[Any]) -> Iterator[tuple]:
    """The rows of ``sql``, whose ``IN ({})`` takes ``values``, :data:`LOOKUP` at a time after
    the ``fixed`` parameters. A list of parameters, not one JSON parameter: PostgreSQL plans
    it well even for a table filled in the same transaction (no statistics yet)."""
    for start in range(0, len(values), LOOKUP):
        part = list(values[start : start + LOOKUP])
        yield from conn.execute(sql.format(_placeholders(len(part))), [*fixed, *part])


class _Pass:
    """One pass over every source row against the target connection ``conn``: counts what is
    there identical, what is missing (and inserts it when ``write``), and the conflicts."""

    def __init__(
        self, source: LocalBackend, conn: Any, journal: bool, chunk_size: int, *, write: bool
    ) -> None:
        self.source = source
        self.conn = conn
        self.journal = journal  # the target has the journal's tables
        self.chunk_size = chunk_size
        self.write = write
        self.copied: Counter[str] = Counter()
        self.present: Counter[str] = Counter()
        self.conflicts: list[dict] = []
        self.conflict_count = 0
        self.entry_map: dict[int, int] = {}  # source journal id -> target journal id
        self.copied_entries: set[int] = set()  # source ids of the records copied
        self.target_counts: dict[str, int] = {}

    def run(self, tick: _Ticker) -> None:
        self.target_counts = {t: _count(self.conn, t, self.journal) for t in TABLES}
        self._masterdata_groups(tick)
        self._registration_groups(tick)
        self._devices(tick)
        if self.conflicts and self.write:
            return  # the transaction is rolled back: no need to go on
        self._replacements(tick)
        if _has_journal(self.source):
            self._journal(tick)
            self._journal_devices(tick)
            self._marks(tick)

    def _conflict(self, difference: dict) -> None:
        self.conflict_count += 1
        if len(self.conflicts) < LISTED:
            self.conflicts.append(difference)

    # -- groups -----------------------------------------------------------------------------

    def _masterdata_groups(self, tick: _Ticker) -> None:
        columns = ", ".join(MDG_COLUMNS)
        have = {r[0]: r for r in self.conn.execute(f"SELECT {columns} FROM masterdata_groups")}
        rows = self.source.conn.execute(
            f"SELECT {columns} FROM masterdata_groups ORDER BY id"
        ).fetchall()
        for row in rows:
            old = have.get(row[0])
            if old is None:
                self._insert("masterdata_groups", MDG_COLUMNS, [row])
                continue
            diff = [c for c in _differing(MDG_COLUMNS, row, old) if c not in UNDEFINING]
            if diff:
                self._conflict(
                    {"table": "masterdata_groups", "id": row[0], "columns": diff,
                     "what": f"master data group {row[0]!r} is defined otherwise "
                     f"({', '.join(diff)})"}
                )  # fmt: skip
            else:
                self.present["masterdata_groups"] += 1
        tick(len(rows))

    def _registration_groups(self, tick: _Ticker) -> None:
        columns = ", ".join(GROUP_COLUMNS)
        have = {r[0]: r for r in self.conn.execute(f"SELECT {columns} FROM registration_groups")}
        # group ids and names are unique together (either can be used with --group)
        taken = {key: r[0] for r in have.values() for key in (r[0], r[1])}
        rows = self.source.conn.execute(
            f"SELECT {columns} FROM registration_groups ORDER BY group_id"
        ).fetchall()
        for row in rows:
            gid, name = row[0], row[1]
            old = have.get(gid)
            if old is not None:
                diff = [c for c in _differing(GROUP_COLUMNS, row, old) if c not in UNDEFINING]
                if diff:
                    self._conflict(
                        {"table": "registration_groups", "id": gid, "columns": diff,
                         "what": f"registration group {gid!r} is defined otherwise "
                         f"({', '.join(diff)})"}
                    )  # fmt: skip
                else:
                    self.present["registration_groups"] += 1
                continue
            other = taken.get(name) or taken.get(gid)
            if other is not None:
                self._conflict(
                    {"table": "registration_groups", "id": gid, "columns": ["name"],
                     "what": f"registration group {gid!r} ({name!r}): the target's group "
                     f"{other!r} has that id or name"}
                )  # fmt: skip
                continue
            self._insert("registration_groups", GROUP_COLUMNS, [row])
        tick(len(rows))

    def _insert(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if rows and self.write:
            self.conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({_placeholders(len(columns))})",
                rows,
            )
        self.copied[table] += len(rows)

    # -- devices ----------------------------------------------------------------------------

    def _devices(self, tick: _Ticker) -> None:
        rows = self.source._rows(f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY rowid")
        for chunk in _chunks(rows, self.chunk_size):
            have = {
                r[0]: tuple(r)
                for r in _lookup(
                    self.conn,
                    f"SELECT {DEVICE_COLUMNS} FROM devices WHERE sn IN ({{}})",
                    (),
                    [r[0] for r in chunk],
                )
            }
            by_group: dict[str, list[str]] = {}
            for r in chunk:
                by_group.setdefault(r[1], []).append(r[2])
            registered: dict[tuple[str, str], str] = {}  # (group id, deviceSn) -> system sn
            for gid, device_sns in by_group.items():
                for sn, dsn in _lookup(
                    self.conn,
                    "SELECT sn, device_sn FROM devices WHERE group_id=? AND device_sn IN ({})",
                    (gid,),
                    device_sns,
                ):
                    registered[(gid, dsn)] = sn
            missing = []
            for row in chunk:
                sn, gid, dsn = row[0], row[1], row[2]
                old = have.get(sn)
                if old is not None:
                    diff = _differing(DEVICE_NAMES, row, old)
                    if diff:
                        self._conflict(
                            {"table": "devices", "id": sn, "columns": diff,
                             "what": f"device {sn} ({dsn}) has other data ({', '.join(diff)})"}
                        )  # fmt: skip
                    else:
                        self.present["devices"] += 1
                    continue
                other = registered.get((gid, dsn))
                if other is not None:
                    self._conflict(
                        {"table": "devices", "id": sn, "columns": ["device_sn"],
                         "what": f"deviceSn {dsn} of group {gid!r} is device {other} in the "
                         f"target, {sn} in the source"}
                    )  # fmt: skip
                    continue
                missing.append(row)
            if not self.conflicts or not self.write:
                self._insert("devices", DEVICE_NAMES, missing)
            tick(len(chunk))

    # -- replacements -----------------------------------------------------------------------

    def _replacements(self, tick: _Ticker) -> None:
        there = Counter(
            tuple(r) for r in self.conn.execute(f"SELECT {REPLACEMENT_COLUMNS} FROM replacements")
        )
        order = _order(self.source.conn, "replacements")
        rows = self.source.conn.execute(
            f"SELECT {REPLACEMENT_COLUMNS} FROM replacements ORDER BY {order}"
        ).fetchall()
        missing = []
        for row in map(tuple, rows):
            if there[row] > 0:
                there[row] -= 1
                self.present["replacements"] += 1
            else:
                missing.append(row)
        self._insert("replacements", [c.strip() for c in REPLACEMENT_COLUMNS.split(",")], missing)
        tick(len(rows))

    # -- the journal ------------------------------------------------------------------------

    def _journal(self, tick: _Ticker) -> None:
        """Records in id order; one already in the target (same content) maps to it, another
        is appended and maps to its new id. Ids that a detail refers to (a registration's
        ``intent``, a settlement's ``settles``) are mapped too."""
        there: dict[tuple, deque[int]] = {}
        if self.journal:
            for row in self.conn.execute(f"SELECT id, {JOURNAL_COLUMNS} FROM journal ORDER BY id"):
                there.setdefault(journal_key(row[1:]), deque()).append(row[0])
        rows = self.source._rows(f"SELECT id, {JOURNAL_COLUMNS} FROM journal ORDER BY id")
        for row in rows:
            values = list(row[1:])
            values[_DETAIL] = remap_detail(values[_DETAIL], self.entry_map)
            ids = there.get(journal_key(values))
            if ids:
                self.entry_map[row[0]] = ids.popleft()
                self.present["journal"] += 1
            else:
                if self.write:
                    new = self.conn.execute(
                        f"INSERT INTO journal ({JOURNAL_COLUMNS}) "
                        f"VALUES ({_placeholders(14)}) RETURNING id",
                        values,
                    ).fetchall()
                    self.entry_map[row[0]] = int(new[0][0])
                self.copied_entries.add(row[0])
                self.copied["journal"] += 1
            tick(1)

    def _journal_devices(self, tick: _Ticker) -> None:
        order = _order(self.source.conn, "journal_devices")
        rows = self.source._rows(
            f"SELECT entry, sn, device_sn FROM journal_devices ORDER BY entry, {order}"
        )
        for chunk in _chunks(rows, self.chunk_size):
            missing = [
                (self.entry_map.get(entry, entry), sn, dsn)
                for entry, sn, dsn in chunk
                if entry in self.copied_entries
            ]
            self.present["journal_devices"] += len(chunk) - len(missing)
            self._insert("journal_devices", ("entry", "sn", "device_sn"), missing)
            tick(len(chunk))

    def _marks(self, tick: _Ticker) -> None:
        rows = self.source._rows(f"SELECT {MARK_COLUMNS} FROM journal_marks ORDER BY mark, sn")
        for chunk in _chunks(rows, self.chunk_size):
            marked = _marked(self.conn, chunk) if self.journal else set()
            missing = [r for r in chunk if (r[0], r[1]) not in marked]
            self.present["journal_marks"] += len(chunk) - len(missing)
            if missing and self.write:
                self.conn.executemany(
                    f"INSERT OR IGNORE INTO journal_marks ({MARK_COLUMNS}) "
                    f"VALUES ({_placeholders(6)})",
                    missing,
                )
            self.copied["journal_marks"] += len(missing)
            tick(len(chunk))


def _marked(conn: Any, chunk: Sequence[tuple]) -> set[tuple[str, str]]:
    """The (mark, sn) pairs of ``chunk`` that ``conn``'s journal_marks holds."""
    by_mark: dict[str, list[str]] = {}
    for row in chunk:
        by_mark.setdefault(row[0], []).append(row[1])
    found: set[tuple[str, str]] = set()
    for mark, sns in by_mark.items():
        for (sn,) in _lookup(
            conn, "SELECT sn FROM journal_marks WHERE mark=? AND sn IN ({})", (mark,), sns
        ):
            found.add((mark, sn))
    return found


def journal_key(values: Sequence[Any]) -> tuple:
    """What makes a journal record the same record (``values`` in JOURNAL_COLUMNS order): every
    column but the id and the compressed device list."""
    return tuple(v for i, v in enumerate(values) if i != _BLOB)


_ID_KEYS = ("intent", "settles")  # detail keys that hold the id of another journal record


def remap_detail(detail: str | None, entry_map: dict[int, int]) -> str | None:
    """A record's detail JSON with the journal ids it refers to mapped to the target's ids;
    unchanged (the same text) when there is nothing to map."""
    if not detail or not any(f'"{k}"' in detail for k in _ID_KEYS):
        return detail
    data = json.loads(detail)
    changed = False
    for key in _ID_KEYS:
        value = data.get(key)
        if isinstance(value, int) and entry_map.get(value, value) != value:
            data[key] = entry_map[value]
            changed = True
    if not changed:
        return detail
    return json.dumps(data, ensure_ascii=False, sort_keys=True)  # as journal.py writes it


# -- the check after copying -----------------------------------------------------------------------


def _verify(
    source: LocalBackend,
    conn: Any,
    copy: _Pass,
    report: CopyReport,
    journal: bool,
    tick: _Ticker,
) -> None:
    """Every source row is in the target (``conn``, before the commit) and no table of the
    target holds fewer rows than the source's: else :class:`CopyMismatchError`."""
    problems: list[str] = []
    again = table_counts(source)  # the source as it is now: it must not have grown meanwhile
    for name, t in report.tables.items():
        t.source = again[name]
        t.target = _count(conn, name, journal)
        if t.target < t.source:
            problems.append(f"{t.label}: {t.target} in the target, {t.source} in the source")
    # a pass that writes nothing: whatever it would copy is not in the target
    check = _Pass(source, conn, journal, copy.chunk_size, write=False)
    check.run(tick)
    for name in TABLES:
        if check.copied[name]:
            problems.append(f"{check.copied[name]} {_LABELS[name]} of the source are not there")
    if check.conflict_count:
        problems.append(f"{check.conflict_count} rows differ from the source")
    if _has_journal(source):
        differing = _compare_entry_devices(source, conn, check.entry_map)
        if differing:
            problems.append(f"the device rows of {differing} journal records differ")
    if problems:
        raise CopyMismatchError(
            f"the copy into {report.target} was checked and does not hold what "
            f"{report.source} holds: " + "; ".join(problems) + "; it was rolled back, nothing "
            "was written",
            hint="stop the stations that write to the source store during the copy, then run "
            "it again",
        )


def _compare_entry_devices(source: LocalBackend, conn: Any, entry_map: dict[int, int]) -> int:
    """How many source journal records have device rows that their target record has not
    (the same rows, in the same order)."""
    src_order, dst_order = _order(source.conn, "journal_devices"), _order(conn, "journal_devices")
    rows = source._rows(
        f"SELECT entry, sn, device_sn FROM journal_devices ORDER BY entry, {src_order}"
    )
    wanted: dict[int, list[tuple[str, str]]] = {}
    differing = 0

    def compare() -> int:
        got: dict[int, list[tuple[str, str]]] = {}
        keys = [entry_map[e] for e in wanted if e in entry_map]
        if keys:
            for entry, sn, dsn in conn.execute(
                f"SELECT entry, sn, device_sn FROM journal_devices WHERE entry IN "
                f"({_placeholders(len(keys))}) ORDER BY entry, {dst_order}",
                keys,
            ):
                got.setdefault(int(entry), []).append((sn, dsn))
        bad = sum(1 for e, pairs in wanted.items() if got.get(entry_map.get(e, -1)) != pairs)
        wanted.clear()
        return bad

    for entry, sn, dsn in rows:
        if entry not in wanted and len(wanted) >= ENTRY_CHUNK:
            differing += compare()
        wanted.setdefault(entry, []).append((sn, dsn))
    if wanted:
        differing += compare()
    return differing


# -- errors ----------------------------------------------------------------------------------------


def _conflict_error(found: _Pass, target: LocalBackend) -> DefinitionConflictError:
    shown = "; ".join(d["what"] for d in found.conflicts[:SHOWN])
    more = found.conflict_count - min(SHOWN, len(found.conflicts))
    return DefinitionConflictError(
        f"the target store {target.where} already holds {found.conflict_count} "
        f"{'row' if found.conflict_count == 1 else 'rows'} that differ from the source: {shown}"
        + (f" (and {more} more)" if more > 0 else "")
        + "; nothing was copied",
        differences=[{k: v for k, v in d.items() if k != "what"} for d in found.conflicts],
        hint="copy into an empty store, or settle the differences first (a group of the same "
        "id must have the same definition and secret, a device the same data)",
    )


@contextmanager
def _database_errors(source: LocalBackend, target: LocalBackend) -> Iterator[None]:
    """A database error while copying becomes a :class:`StoreError` (exit 3): one line, its
    passwords hidden; nothing was written to the target (its transaction rolled back)."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    psycopg = sys.modules.get("psycopg")  # loaded when either store is in PostgreSQL
    if psycopg is not None:
        errors += (psycopg.Error,)
    try:
        yield
    except errors as exc:
        lines = redact(str(exc).strip()).splitlines()
        raise StoreError(
            f"copying {source.where} to {target.where} failed: "
            + (lines[0] if lines else type(exc).__name__),
            hint="nothing was written to the target; retrying is safe",
        ) from None
