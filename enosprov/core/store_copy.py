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
- **One transaction**: the target is checked, written and checked again in one transaction
  (``target.write()``, which other stations' writes wait for), committed only when every source
  row is in the target (:class:`CopyMismatchError`, exit 4, otherwise). An interrupted copy
  writes nothing.

Memory stays flat: devices, their journal rows and batch marks are streamed and looked up in
chunks; what the check found already there is remembered as one integer per row (the source
rowid, or the mark's position), so the writing pass needs no look-up. Journal records (one per
operation or registration chunk) and replacements are held in memory.

Every statement is written in SQLite's spelling and goes through the stores' own connections,
which translate it for PostgreSQL: the same code runs in both directions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..backends.local import LocalBackend
from ..backends.local_schema import DEVICE_COLUMNS
from ..domain.errors import (
    CopyMismatchError,
    DefinitionConflictError,
    InvalidArgumentError,
    StoreError,
)
from ..journal import _create_schema as create_journal_schema
from ..plantdb import redact

# (phase, done, total): phases "check", "copy" and "verify", each over every source row
ProgressFn = Callable[[str, int, int | None], None]

CHUNK_SIZE = 5000  # device (and mark) rows read, looked up and written at a time
LOOKUP = 500  # values in one IN (...) list: within SQLite's oldest limit of 999 parameters
SHOWN = 3  # conflicts named in the one-line message
LISTED = 20  # conflicts listed in the error's differences

TABLES = (
    "masterdata_groups",
    "registration_groups",
    "devices",
    "replacements",
    "sync_groups",
    "sync_links",
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
# Times say when a store created, last touched or imported a group, not what the group is: the
# built-in master data group is created by every store at its own time.
UNDEFINING = {"create_time", "update_time", "imported_time"}
DEVICE_NAMES = tuple(c.strip() for c in DEVICE_COLUMNS.split(","))
REPLACEMENT_COLUMNS = "old_sn, old_device_sn, new_sn, new_device_sn, group_id, time"
REPLACEMENT_NAMES = tuple(c.strip() for c in REPLACEMENT_COLUMNS.split(","))
# "user" quoted: a keyword in PostgreSQL, a plain column name in SQLite
JOURNAL_COLUMNS = (
    'time, "user", host, station, backend, profile, operation, outcome, group_id, devices, '
    "device_list, request_id, error, detail"
)
_BLOB, _DETAIL = 10, 13  # positions in JOURNAL_COLUMNS
MARK_COLUMNS = "mark, sn, device_sn, group_id, batch_tag, time"
SYNC_GROUP_COLUMNS = ("group_id", "profile", "imported_time")
LINK_COLUMNS = ("group_id", "device_sn", "local_sn", "enos_sn", "pushed_time")
LINKS_IN_ORDER = f"SELECT {', '.join(LINK_COLUMNS)} FROM sync_links ORDER BY group_id, device_sn"

_LABELS = {
    "masterdata_groups": "master data groups",
    "registration_groups": "registration groups",
    "devices": "devices",
    "replacements": "replacements",
    "sync_groups": "groups synced with EnOS",
    "sync_links": "devices linked to EnOS",
    "journal": "journal records",
    "journal_devices": "journal device rows",
    "journal_marks": "batch marks",
}


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
    under the same ids, :class:`CopyMismatchError` (rolled back) when the check after copying
    fails, and :class:`StoreError` when a database fails. ``dry_run``: look for conflicts and
    count what would be copied; write nothing. ``progress(phase, done, total)`` follows the
    phases "check", "copy" and "verify", each over every source row."""
    if same_store(source, target):
        raise InvalidArgumentError(
            f"{source.where} and {target.where} are the same store",
            hint="--from and --to must name two different stores",
        )
    report = CopyReport(source.where, target.where, dry_run)
    with _database_errors(source, target), _custom_plans(source, target):
        counts = table_counts(source)
        report.tables = {t: TableCount(t, source=n) for t, n in counts.items()}
        total = sum(counts.values())
        report.batch_order_source = _batch_order(source.conn)
        if dry_run:
            report.batch_order_target = _batch_order(target.conn)
            plan = _check(source, target.conn, _has_journal(target), chunk_size,
                          _Ticker(progress, "check", total))  # fmt: skip
            if plan.conflicts:
                raise _conflict_error(plan, target)
            for name, t in report.tables.items():
                t.copied, t.present = plan.copied[name], plan.present[name]
                t.target = plan.target_counts[name] + t.copied
            return report

        with target.write() as conn:  # checked under the target's write lock: nothing can
            report.batch_order_target = _batch_order(conn)  # change between check and write
            journal = _has_journal(target)
            plan = _check(source, conn, journal, chunk_size, _Ticker(progress, "check", total))
            if plan.conflicts:
                raise _conflict_error(plan, target)
            if not journal and any(counts[t] for t in JOURNAL_TABLES):
                create_journal_schema(conn)  # an SQLite store that never wrote a record
                journal = True
            _write(source, conn, plan, chunk_size, _Ticker(progress, "copy", total))
            if report.batch_order_source > report.batch_order_target:
                _set_batch_order(conn, report.batch_order_source)
            for name, t in report.tables.items():
                t.copied, t.present = plan.copied[name], plan.present[name]
            _verify(source, conn, report, journal, chunk_size, _Ticker(progress, "verify", total))
        report.verified = True
    return report


# -- where the stores are --------------------------------------------------------------------------


def _is_sqlite(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection)


def same_store(a: LocalBackend, b: LocalBackend) -> bool:
    """``a`` and ``b`` are the same store: the same SQLite file (whatever the path's spelling),
    or the same database of the same PostgreSQL server."""
    if _is_sqlite(a.conn) != _is_sqlite(b.conn):
        return False
    if _is_sqlite(a.conn):
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
    if not _is_sqlite(backend.conn):
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


def _batch_order(conn: Any) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()
    return int(row[0]) if row else 0


def _set_batch_order(conn: Any, value: int) -> None:
    if conn.execute("SELECT 1 FROM meta WHERE key='batch_order'").fetchone():
        conn.execute("UPDATE meta SET value=? WHERE key='batch_order'", (str(value),))
    else:
        conn.execute("INSERT INTO meta (key, value) VALUES ('batch_order', ?)", (str(value),))


@contextmanager
def _custom_plans(*backends: LocalBackend) -> Iterator[None]:
    """Every look-up planned with its values (LocalBackend.planned_per_statement)."""
    with ExitStack() as stack:
        for backend in backends:
            stack.enter_context(backend.planned_per_statement())
        yield


# -- helpers -------------------------------------------------------------------------------------


class _Ticker:
    def __init__(self, progress: ProgressFn | None, phase: str, total: int) -> None:
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.progress is not None:
            self.progress(self.phase, min(self.done, self.total), self.total)


def _chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[tuple]]:
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
    the ``fixed`` parameters."""
    for start in range(0, len(values), LOOKUP):
        part = list(values[start : start + LOOKUP])
        yield from conn.execute(sql.format(_placeholders(len(part))), [*fixed, *part])


def _insert(conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_placeholders(len(columns))})",
            rows,
        )


class _Skip:
    """Tells whether a key of an ascending stream is one of ``keys`` (ascending too), in
    constant time per key."""

    def __init__(self, keys: array[int]) -> None:
        self.keys, self.at = keys, 0

    def __call__(self, key: int) -> bool:
        while self.at < len(self.keys) and self.keys[self.at] < key:
            self.at += 1
        return self.at < len(self.keys) and self.keys[self.at] == key


# -- the check: what the target holds of the source -----------------------------------------------


@dataclass
class _Plan:
    """What :func:`_check` found: per table the rows to copy and the rows already there, the
    conflicts, and what the writing pass needs to skip the rows already there."""

    copied: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)
    conflicts: list[dict] = field(default_factory=list)
    conflict_count: int = 0
    target_counts: dict[str, int] = field(default_factory=dict)
    masterdata_groups: list[tuple] = field(default_factory=list)  # rows to copy
    registration_groups: list[tuple] = field(default_factory=list)
    replacements: list[tuple] = field(default_factory=list)
    sync_groups: list[tuple] = field(default_factory=list)
    links_there: array[int] = field(default_factory=lambda: array("q"))  # link positions
    devices_there: array[int] = field(default_factory=lambda: array("q"))  # source rowids
    marks_there: array[int] = field(default_factory=lambda: array("q"))  # mark positions
    entries: dict[int, int] = field(default_factory=dict)  # source journal id -> target id
    entry_devices: dict[int, int] = field(default_factory=dict)  # source id -> device rows

    def conflict(self, difference: dict) -> None:
        self.conflict_count += 1
        if len(self.conflicts) < LISTED:
            self.conflicts.append(difference)


def _check(source: LocalBackend, conn: Any, journal: bool, chunk: int, tick: _Ticker) -> _Plan:
    """Every source row looked up in the target (``conn``; ``journal``: it has the journal's
    tables): already there identical, to copy, or a conflict."""
    plan = _Plan(target_counts={t: _count(conn, t, journal) for t in TABLES})
    _check_masterdata_groups(source, conn, plan, tick)
    _check_registration_groups(source, conn, plan, tick)
    _check_devices(source, conn, plan, chunk, tick)
    _check_replacements(source, conn, plan, tick)
    _check_sync_groups(source, conn, plan, tick)
    _check_links(source, conn, plan, chunk, tick)
    if _has_journal(source):
        _check_journal(source, conn, journal, plan, tick)
        _check_marks(source, conn, journal, plan, chunk, tick)
    return plan


def _check_keyed(
    source: LocalBackend,
    conn: Any,
    plan: _Plan,
    tick: _Ticker,
    table: str,
    names: Sequence[str],
    what: Callable[[str, list[str]], str],
) -> list[tuple]:
    """The rows of a small table keyed by its first column that the target lacks; a key the
    target holds with other values (times aside: UNDEFINING) is a conflict ``what(key,
    columns)`` describes."""
    columns = ", ".join(names)
    have = {r[0]: tuple(r) for r in conn.execute(f"SELECT {columns} FROM {table}")}
    rows = source.conn.execute(f"SELECT {columns} FROM {table} ORDER BY {names[0]}").fetchall()
    missing = []
    for row in map(tuple, rows):
        old = have.get(row[0])
        if old is None:
            missing.append(row)
            continue
        diff = [c for c in _differing(names, row, old) if c not in UNDEFINING]
        if diff:
            plan.conflict({"table": table, "id": row[0], "columns": diff,
                           "what": what(row[0], diff)})  # fmt: skip
        else:
            plan.present[table] += 1
    plan.copied[table] = len(missing)
    tick(len(rows))
    return missing


def _check_masterdata_groups(source: LocalBackend, conn: Any, plan: _Plan, tick: _Ticker) -> None:
    plan.masterdata_groups = _check_keyed(
        source, conn, plan, tick, "masterdata_groups", MDG_COLUMNS,
        lambda key, diff: f"master data group {key!r} is defined otherwise ({', '.join(diff)})",
    )  # fmt: skip


def _check_registration_groups(source: LocalBackend, conn: Any, plan: _Plan, tick: _Ticker) -> None:
    columns = ", ".join(GROUP_COLUMNS)
    have = {r[0]: tuple(r) for r in conn.execute(f"SELECT {columns} FROM registration_groups")}
    # group ids and names are unique together (either can be used with --group)
    taken = {key: r[0] for r in have.values() for key in (r[0], r[1])}
    rows = source.conn.execute(
        f"SELECT {columns} FROM registration_groups ORDER BY group_id"
    ).fetchall()
    for row in map(tuple, rows):
        gid, name = row[0], row[1]
        old = have.get(gid)
        if old is not None:
            diff = [c for c in _differing(GROUP_COLUMNS, row, old) if c not in UNDEFINING]
            if diff:
                plan.conflict(
                    {"table": "registration_groups", "id": gid, "columns": diff,
                     "what": f"registration group {gid!r} is defined otherwise "
                     f"({', '.join(diff)})"}
                )  # fmt: skip
            else:
                plan.present["registration_groups"] += 1
            continue
        other = taken.get(name) or taken.get(gid)
        if other is not None:
            plan.conflict(
                {"table": "registration_groups", "id": gid, "columns": ["name"],
                 "what": f"registration group {gid!r} ({name!r}): the target's group {other!r} "
                 "has that id or name"}
            )  # fmt: skip
            continue
        plan.registration_groups.append(row)
    plan.copied["registration_groups"] = len(plan.registration_groups)
    tick(len(rows))


def _check_devices(
    source: LocalBackend, conn: Any, plan: _Plan, chunk_size: int, tick: _Ticker
) -> None:
    rows = source._rows(f"SELECT rowid, {DEVICE_COLUMNS} FROM devices ORDER BY rowid")
    for chunk in _chunks(rows, chunk_size):
        have = {
            r[0]: tuple(r)
            for r in _lookup(
                conn,
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE sn IN ({{}})",
                (),
                [r[1] for r in chunk],
            )
        }
        by_group: dict[str, list[str]] = {}
        for r in chunk:
            by_group.setdefault(r[2], []).append(r[3])
        registered: dict[tuple[str, str], str] = {}  # (group id, deviceSn) -> system sn
        for gid, device_sns in by_group.items():
            for sn, dsn in _lookup(
                conn,
                "SELECT sn, device_sn FROM devices WHERE group_id=? AND device_sn IN ({})",
                (gid,),
                device_sns,
            ):
                registered[(gid, dsn)] = sn
        for rowid, *values in chunk:
            row = tuple(values)
            sn, gid, dsn = row[0], row[1], row[2]
            old = have.get(sn)
            if old is not None:
                diff = _differing(DEVICE_NAMES, row, old)
                if diff:
                    plan.conflict(
                        {"table": "devices", "id": sn, "columns": diff,
                         "what": f"device {sn} ({dsn}) has other data ({', '.join(diff)})"}
                    )  # fmt: skip
                else:
                    plan.present["devices"] += 1
                    plan.devices_there.append(rowid)
                continue
            other = registered.get((gid, dsn))
            if other is not None:
                plan.conflict(
                    {"table": "devices", "id": sn, "columns": ["device_sn"],
                     "what": f"deviceSn {dsn} of group {gid!r} is device {other} in the target, "
                     f"{sn} in the source"}
                )  # fmt: skip
                continue
            plan.copied["devices"] += 1
        tick(len(chunk))


def _check_replacements(source: LocalBackend, conn: Any, plan: _Plan, tick: _Ticker) -> None:
    there = Counter(map(tuple, conn.execute(f"SELECT {REPLACEMENT_COLUMNS} FROM replacements")))
    rows = source.conn.execute(
        f"SELECT {REPLACEMENT_COLUMNS} FROM replacements ORDER BY rowid"
    ).fetchall()
    for row in map(tuple, rows):
        if there[row] > 0:
            there[row] -= 1
            plan.present["replacements"] += 1
        else:
            plan.replacements.append(row)
    plan.copied["replacements"] = len(plan.replacements)
    tick(len(rows))


def _check_sync_groups(source: LocalBackend, conn: Any, plan: _Plan, tick: _Ticker) -> None:
    """Groups imported from an EnOS profile (docs/sync.md): the same group synced with another
    profile in the target is a conflict."""
    plan.sync_groups = _check_keyed(
        source, conn, plan, tick, "sync_groups", SYNC_GROUP_COLUMNS,
        lambda key, _diff: f"registration group {key!r} is synced with another EnOS profile",
    )  # fmt: skip


def _check_links(
    source: LocalBackend, conn: Any, plan: _Plan, chunk_size: int, tick: _Ticker
) -> None:
    """Devices pushed to EnOS (store sn -> EnOS sn): a device linked to another sn in the
    target is a conflict."""
    position = 0
    for chunk in _chunks(source._rows(LINKS_IN_ORDER), chunk_size):
        by_group: dict[str, list[str]] = {}
        for row in chunk:
            by_group.setdefault(row[0], []).append(row[1])
        there: dict[tuple[str, str], tuple] = {}
        for gid, device_sns in by_group.items():
            sql = (
                "SELECT device_sn, local_sn, enos_sn FROM sync_links WHERE group_id=? "
                "AND device_sn IN ({})"
            )
            for device_sn, local_sn, enos_sn in _lookup(conn, sql, (gid,), device_sns):
                there[(gid, device_sn)] = (local_sn, enos_sn)
        for row in chunk:
            old = there.get((row[0], row[1]))
            if old is None:
                plan.copied["sync_links"] += 1
            elif old != (row[2], row[3]):
                plan.conflict(
                    {"table": "sync_links", "id": f"{row[0]}/{row[1]}", "columns": ["enos_sn"],
                     "what": f"device {row[1]!r} of group {row[0]!r} is linked to another "
                     "EnOS sn"}
                )  # fmt: skip
            else:
                plan.links_there.append(position)
                plan.present["sync_links"] += 1
            position += 1
        tick(len(chunk))


def _check_journal(
    source: LocalBackend, conn: Any, journal: bool, plan: _Plan, tick: _Ticker
) -> None:
    """Records in id order: one whose content the target holds maps to that record (of the
    same time span: the target's records of other times are not read)."""
    first, last = source.conn.execute("SELECT min(time), max(time) FROM journal").fetchone()
    there: dict[tuple, deque[int]] = {}
    if journal and first is not None:
        for row in conn.execute(
            f"SELECT id, {JOURNAL_COLUMNS} FROM journal WHERE time >= ? AND time <= ? ORDER BY id",
            (first, last),
        ):
            there.setdefault(journal_key(row[1:]), deque()).append(row[0])
    for row in source._rows(f"SELECT id, {JOURNAL_COLUMNS} FROM journal ORDER BY id"):
        values = list(row[1:])
        values[_DETAIL] = remap_detail(values[_DETAIL], plan.entries)
        ids = there.get(journal_key(values))
        if ids:
            plan.entries[row[0]] = ids.popleft()
            plan.present["journal"] += 1
        else:
            plan.copied["journal"] += 1
        tick(1)
    counts = source.conn.execute("SELECT entry, count(*) FROM journal_devices GROUP BY entry")
    plan.entry_devices = {int(e): int(n) for e, n in counts}
    for entry, n in plan.entry_devices.items():
        if entry in plan.entries:
            plan.present["journal_devices"] += n
        else:
            plan.copied["journal_devices"] += n
    tick(sum(plan.entry_devices.values()))


def _check_marks(
    source: LocalBackend, conn: Any, journal: bool, plan: _Plan, chunk_size: int, tick: _Ticker
) -> None:
    rows = source._rows(f"SELECT {MARK_COLUMNS} FROM journal_marks ORDER BY mark, sn")
    position = 0
    for chunk in _chunks(rows, chunk_size):
        marked = _marked(conn, chunk) if journal else set()
        for row in chunk:
            if (row[0], row[1]) in marked:
                plan.marks_there.append(position)
                plan.present["journal_marks"] += 1
            else:
                plan.copied["journal_marks"] += 1
            position += 1
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


# -- writing what the check found missing ----------------------------------------------------------


def _write(source: LocalBackend, conn: Any, plan: _Plan, chunk_size: int, tick: _Ticker) -> None:
    _insert(conn, "masterdata_groups", MDG_COLUMNS, plan.masterdata_groups)
    tick(len(plan.masterdata_groups) + plan.present["masterdata_groups"])
    _insert(conn, "registration_groups", GROUP_COLUMNS, plan.registration_groups)
    tick(len(plan.registration_groups) + plan.present["registration_groups"])

    there = _Skip(plan.devices_there)
    rows = source._rows(f"SELECT rowid, {DEVICE_COLUMNS} FROM devices ORDER BY rowid")
    for chunk in _chunks(rows, chunk_size):
        _insert(conn, "devices", DEVICE_NAMES, [r[1:] for r in chunk if not there(r[0])])
        tick(len(chunk))

    _insert(conn, "replacements", REPLACEMENT_NAMES, plan.replacements)
    tick(len(plan.replacements) + plan.present["replacements"])
    _insert(conn, "sync_groups", SYNC_GROUP_COLUMNS, plan.sync_groups)
    tick(len(plan.sync_groups) + plan.present["sync_groups"])
    linked, position = _Skip(plan.links_there), 0
    for chunk in _chunks(source._rows(LINKS_IN_ORDER), chunk_size):
        _insert(conn, "sync_links", LINK_COLUMNS,
                [r for i, r in enumerate(chunk, position) if not linked(i)])  # fmt: skip
        position += len(chunk)
        tick(len(chunk))
    if not _has_journal(source):
        return

    entries = dict(plan.entries)  # source id -> target id, the records copied added
    copied: set[int] = set()
    for row in source._rows(f"SELECT id, {JOURNAL_COLUMNS} FROM journal ORDER BY id"):
        if row[0] not in plan.entries:
            values = list(row[1:])
            values[_DETAIL] = remap_detail(values[_DETAIL], entries)
            new = conn.execute(
                f"INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES ({_placeholders(14)}) "
                "RETURNING id",
                values,
            ).fetchall()
            entries[row[0]] = int(new[0][0])
            copied.add(row[0])
        tick(1)
    rows = source._rows("SELECT entry, sn, device_sn FROM journal_devices ORDER BY entry, rowid")
    for chunk in _chunks(rows, chunk_size):
        _insert(conn, "journal_devices", ("entry", "sn", "device_sn"),
                [(entries[e], sn, dsn) for e, sn, dsn in chunk if e in copied])  # fmt: skip
        tick(len(chunk))

    marked = _Skip(plan.marks_there)
    rows = source._rows(f"SELECT {MARK_COLUMNS} FROM journal_marks ORDER BY mark, sn")
    position = 0
    for chunk in _chunks(rows, chunk_size):
        missing = [r for i, r in enumerate(chunk, position) if not marked(i)]
        position += len(chunk)
        if missing:  # a mark another station wrote meanwhile is kept (its first time)
            conn.executemany(
                f"INSERT OR IGNORE INTO journal_marks ({MARK_COLUMNS}) VALUES ({_placeholders(6)})",
                missing,
            )
        tick(len(chunk))


# -- the check after writing -------------------------------------------------------------------------


def _verify(
    source: LocalBackend,
    conn: Any,
    report: CopyReport,
    journal: bool,
    chunk_size: int,
    tick: _Ticker,
) -> None:
    """Before the commit: no table of the target (``conn``) holds fewer rows than the source's,
    and every source row is in the target, the same (the check again: it must find nothing to
    copy and no conflict), each journal record with its device rows. Else
    :class:`CopyMismatchError`: the caller's transaction rolls back."""
    if report.copied and not _is_sqlite(conn):
        for table in ("devices", "journal_marks"):  # PostgreSQL plans with the rows written
            conn.execute(f"ANALYZE {table}")  # (a role that does not own them: a warning)
    problems: list[str] = []
    again = table_counts(source)  # the source as it is now: it must not have grown meanwhile
    for name, t in report.tables.items():
        t.source = again[name]
        t.target = _count(conn, name, journal)
        if t.target < t.source:
            problems.append(f"{t.label}: {t.target} in the target, {t.source} in the source")
    check = _check(source, conn, journal, chunk_size, tick)
    for name in TABLES:
        if check.copied[name]:
            problems.append(f"{check.copied[name]} {_LABELS[name]} of the source are not there")
    if check.conflict_count:
        problems.append(f"{check.conflict_count} rows differ from the source")
    if check.entries:
        rows = conn.execute("SELECT entry, count(*) FROM journal_devices GROUP BY entry")
        target_rows = {int(e): int(n) for e, n in rows}
        differing = sum(
            1
            for entry, n in check.entry_devices.items()
            if entry in check.entries and target_rows.get(check.entries[entry], 0) != n
        )
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


# -- errors ----------------------------------------------------------------------------------------


def _conflict_error(found: _Plan, target: LocalBackend) -> DefinitionConflictError:
    shown = "; ".join(d["what"] for d in found.conflicts[:SHOWN])
    more = found.conflict_count - min(SHOWN, len(found.conflicts))
    rows = "row that differs" if found.conflict_count == 1 else "rows that differ"
    return DefinitionConflictError(
        f"the target store {target.where} already holds {found.conflict_count} "
        f"{rows} from the source: {shown}"
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
