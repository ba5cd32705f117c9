"""The local store: the whole DPS model on one SQLite file, safe for several writers at once.

WAL journal, ``synchronous=FULL``, and every write in a ``BEGIN IMMEDIATE`` transaction so that
check-then-write sequences (is this deviceSn registered?) are serialised between processes; a busy
store is waited for (bounded), never reported as "database is locked". Error codes follow EnOS.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..domain import secrets_gen
from ..domain.errors import (
    InvalidArgumentError,
    NotFoundError,
    RefusedError,
    StoreError,
    StoreVersionError,
    enos_error,
)
from ..domain.models import (
    ConnectionInfo,
    Device,
    MasterDataGroup,
    NewDevice,
    Page,
    RegisterOutcome,
    RegistrationGroup,
    SearchQuery,
    canonical_json,
)
from ..domain.rules import sn_matcher
from ..journal import os_user
from ..plantdb import is_database_url, redact
from . import local_batches, local_device, local_groups, local_query, local_sync
from .base import MAX_CREATE_COUNT, Backend, ChunkHook, Resigner, compare_registered
from .local_schema import (
    ADDED_DEVICE_COLUMNS,
    ADDED_GROUP_COLUMNS,
    DEVICE_COLUMNS,
    INSERT_DEVICE,
    LEGACY_TARGET_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
)

DEFAULT_BUSY_TIMEOUT = 60.0  # seconds a writer waits for another station's transaction
DEFAULT_CLOCK_SKEW_MS = 15 * 60 * 1000  # device signature timestamps accepted within +-15 min
DEFAULT_MQTT_URL = "tcp://mqtt-{region}.envisioniot.com:11883"
DEFAULT_HTTP_URL = "https://iot-http-{region}.envisioniot.com"


def now_ms() -> int:
    return int(time.time() * 1000)


canonical = canonical_json


class LocalBackend(Backend):
    """The embedded default backend. Usable from several threads only one at a time."""

    name = "local"
    label = "local store"
    indexed = True  # batch summaries and deviceSn look-ups straight from SQLite
    knows_group_targets = True
    last_request_id: str | None = None  # no request ids: the store answers in process

    @property
    def dps_url(self) -> str | None:
        return None  # the store serves no DPS endpoint of its own

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock_skew_ms: int | None = DEFAULT_CLOCK_SKEW_MS,
        durable: bool = True,
        refuse_retired_bootstrap: bool = True,
    ) -> None:
        """``durable=False`` syncs the WAL at checkpoints only (synchronous=NORMAL): still
        consistent after a crash, but the last transactions may be lost on power failure. The
        emulator uses it; factory registration keeps the default, synchronous=FULL.

        ``refuse_retired_bootstrap`` [ENOSPROV]: the store's own rule that a retired deviceSn
        may not register itself on Bootstrap Device (local_device.bootstrap). The emulator
        turns it off, since it answers as EnOS documents (no such rule)."""
        if is_database_url(path):  # Path() would make a folder tree of the URL
            raise InvalidArgumentError(
                f"{redact(os.fspath(path))} is a database URL, not a store file",
                hint="open it with enosprov.api.open_store (a PgStore)",
            )
        self.path = Path(path)
        self.where = str(self.path)  # where the store is, for messages
        self.durable = durable
        self.busy_timeout = busy_timeout
        self.clock_skew_ms = clock_skew_ms
        self.refuse_retired_bootstrap = refuse_retired_bootstrap
        self.user = os_user()
        self.conn = self._connect()
        self._migrate()

    # -- connection and transactions -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            if new:
                # The store holds group and device secrets: owner read/write only where supported.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            # An existing store (and its WAL files) readable by others is narrowed to 0600,
            # silently; SQLite creates new -wal/-shm files with the store's own mode.
            for part in ("", "-wal", "-shm") if os.name == "posix" else ():
                try:
                    path = f"{self.path}{part}"
                    if os.stat(path).st_mode & 0o077:
                        os.chmod(path, 0o600)
                except OSError:  # absent, or not ours to change: nothing more to do here
                    continue
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the store {self.path}: {exc}",
                hint="check the --store path and its folder permissions",
            ) from None
        if new:  # larger pages: ~8 % faster bulk inserts; settable only before the first table
            conn.execute("PRAGMA page_size=8192")
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=FULL" if self.durable else "PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _retry_busy(self, fn):
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "locked" not in text and "busy" not in text:
                    raise StoreError(f"store {self.path}: {text}") from None
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"store {self.path} stayed busy for {self.busy_timeout:.0f} s",
                        hint="another station holds a long transaction; retry",
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error."""
        self._retry_busy(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self._retry_busy(lambda: self.conn.execute("COMMIT"))

    def _migrate(self) -> None:
        with self.write() as conn:
            # statement by statement: executescript() would COMMIT our transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?), ('batch_order', '0')",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"store {self.path} was written by a newer enosprov (schema {row[0]})",
                    hint="upgrade enosprov",
                )
            elif int(row[0]) < SCHEMA_VERSION:
                for table, added in (
                    ("devices", ADDED_DEVICE_COLUMNS),
                    ("registration_groups", ADDED_GROUP_COLUMNS),
                ):
                    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                    for column, kind in added.items():
                        if column not in have:
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                device_columns = {r[1] for r in conn.execute("PRAGMA table_info(devices)")}
                if set(LEGACY_TARGET_COLUMNS) <= device_columns:
                    _fold_legacy_targets(conn)
                conn.execute(
                    "DROP INDEX IF EXISTS devices_batch"
                )  # schema 1-2; now devices_batch_time
                conn.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )
            local_groups.ensure_builtin(conn, now_ms())

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- groups ---------------------------------------------------------------------------------

    def create_masterdata_group(self, mdg: MasterDataGroup) -> MasterDataGroup:
        with self.write() as conn:
            return local_groups.create_masterdata_group(conn, mdg, now_ms())

    def get_masterdata_group(self, mdg_id: str) -> MasterDataGroup:
        return local_groups.get_masterdata_group(self.conn, mdg_id)

    def list_masterdata_groups(self) -> list[MasterDataGroup]:
        return local_groups.list_masterdata_groups(self.conn)

    def create_group(self, group: RegistrationGroup) -> RegistrationGroup:
        with self.write() as conn:
            return local_groups.create_group(conn, group, now_ms())

    def group_secret_error(self, group: str) -> str | None:
        return None  # the store holds its groups' secrets

    def get_group(self, group: str) -> RegistrationGroup:
        return local_groups.get_group(self.conn, group)

    def list_groups(self) -> list[RegistrationGroup]:
        return local_groups.list_groups(self.conn)

    def update_masterdata_group(self, mdg: MasterDataGroup) -> MasterDataGroup:
        with self.write() as conn:
            return local_groups.update_masterdata_group(conn, mdg)

    def update_group(self, group_id: str, changes: dict[str, Any]) -> RegistrationGroup:
        with self.write() as conn:
            return local_groups.update_group(conn, group_id, changes, now_ms())

    def set_allow_retired_bootstrap(self, group: str, allow: bool) -> RegistrationGroup:
        """[ENOSPROV] Let a retired (replaced) deviceSn of ``group`` register itself again by
        Bootstrap Device (refused by default; see local_device.bootstrap)."""
        with self.write() as conn:
            return local_groups.set_allow_retired_bootstrap(conn, group, allow, now_ms())

    def device_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT group_id, count(*) FROM devices GROUP BY group_id")
        return dict(rows.fetchall())

    # -- application API ------------------------------------------------------------------------

    def create(
        self,
        group_id: str,
        *,
        count: int = 1,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> list[str]:
        if not group_id:
            raise enos_error(99400, "Invalid Argument groupId:groupId is missing")
        if not isinstance(count, int) or not 1 <= count <= MAX_CREATE_COUNT:
            raise enos_error(99400, "count of PvsDeviceCreateInfo must between 1 to 1000000")
        group = self._group_for_device(group_id)
        data = dict(device_data or {})
        device_sn = data.pop("deviceSn", None)
        data = local_groups.check_device_data(self.conn, group, data)
        if device_sn is not None and count != 1:
            raise enos_error(35601, "DeviceSn duplicated", hint="a deviceSn needs count=1")
        if device_sn is not None:
            self._check_new_sn(group, device_sn)
        data_json = canonical(data)
        with self.write() as conn:
            if (
                device_sn is not None
                and conn.execute(
                    "SELECT 1 FROM devices WHERE group_id=? AND device_sn=?",
                    (group.group_id, device_sn),
                ).fetchone()
            ):
                raise enos_error(35601, "DeviceSn duplicated")
            order = self._next_batch_order(conn)
            sns: list[str] = []
            for start in range(0, count, 5000):
                # count > 1 without a deviceSn creates blank devices; each gets a unique
                # placeholder serial "blank-<random>" (EnOS leaves theirs undocumented).
                records = [
                    (NewDevice(device_sn or _blank_device_sn(), data, desc, batch_tag), data_json)
                    for _ in range(min(5000, count - start))
                ]
                sns.extend(self._insert(conn, group, records, order))
            return sns

    def get(self, sn: str) -> Device:
        if not sn:
            raise enos_error(35400, "OrgId/sn is required")
        return self._device_row(self.conn, sn)

    def search(self, query: SearchQuery) -> Page:
        return local_query.search(self.conn, query)

    def iter_devices(self, query: SearchQuery) -> Iterator[Device]:
        return local_query.iter_devices(self._rows, query)

    def device_pages(self, query: SearchQuery, size: int = 1000) -> Iterator[list[Device]]:
        """Every matching device, in insertion order, a page of ``size`` at a time, with no
        read left open between pages: for a caller that writes to the store as it goes."""
        return local_query.device_pages(self.conn, query, size)

    def find_by_device_sn(self, group_id: str, device_sn: str) -> Device | None:
        row = self.conn.execute(
            f"SELECT {DEVICE_COLUMNS} FROM devices WHERE group_id=? AND device_sn=?",
            (group_id, device_sn),
        ).fetchone()
        return local_query.to_device(row) if row else None

    def update(
        self,
        sn: str,
        *,
        desc: str | None = None,
        batch_tag: dict | None = None,
        device_data: dict | None = None,
    ) -> str:
        with self.write() as conn:
            dev = self._device_row(conn, sn)
            group = local_groups.get_group(conn, dev.group_id)
            sets: dict = {}
            if device_data is not None:
                # [ENOSPROV] deviceData given replaces the device's master data (EnOS does not
                # say whether it merges or replaces; enosprov always sends the full map).
                data = dict(device_data)
                new_sn = data.pop("deviceSn", dev.device_sn)
                if new_sn != dev.device_sn:
                    raise enos_error(
                        35601,
                        "Illegal deviceSn, deviceSn duplicated",
                        hint="a device's serial number cannot be changed; use replace",
                    )
                data = local_groups.check_device_data(conn, group, data, before=dev.device_data)
                sets["device_data"] = canonical(data)
            if desc is not None:
                sets["description"] = desc
            if batch_tag is not None:
                sets.update(_batch_tag_columns(batch_tag))
            self._set(conn, sn, sets)
            return sn

    def delete(self, group_id: str, sns: Sequence[str]) -> list[str]:
        if not group_id:
            raise enos_error(99400, "Invalid Argument groupId:groupId is missing")
        with self.write() as conn:
            group = self._group_for_device(group_id, conn)
            local_sync.refuse_offline_change(conn, group.group_id, "deleting devices")
            for sn in sns:
                row = conn.execute("SELECT group_id FROM devices WHERE sn=?", (sn,)).fetchone()
                if row and row[0] != group.group_id:
                    raise enos_error(35404, f"Group/sn not found: {sn} is not in group {group_id}")
            conn.executemany(
                "DELETE FROM devices WHERE sn=? AND group_id=?", [(s, group.group_id) for s in sns]
            )
            return list(sns)

    def allocate(self, sn: str, *, device_data: dict | None = None) -> Device:
        """Allocate and activate ``sn``; ``device_data`` supplies or overrides master data first,
        the allocation target included (deviceData.regionId/orgId, else the group's)."""
        if not sn:
            raise enos_error(35400, "OrgId/sn is required")
        with self.write() as conn:
            dev = self._device_row(conn, sn)
            group = self._group_for_device(dev.group_id, conn, code=35404)
            if device_data:
                merged = {k: v for k, v in dev.device_data.items() if k != "deviceSn"}
                merged.update({k: v for k, v in device_data.items() if k != "deviceSn"})
                merged = local_groups.check_device_data(conn, group, merged, before=dev.device_data)
                self._set(conn, sn, {"device_data": canonical(merged)})
                dev = self._device_row(conn, sn)
            if not dev.allocated:
                self._allocate(conn, dev, group)
            return self._device_row(conn, sn)

    def reset_allocation(self, group_id: str, sns: Sequence[str]) -> list[str]:
        """Reset the allocation of ``sns`` (EnOS resetAllocationStatus: reprovisioning).

        The next allocation, by API or when the device bootstraps again, goes to the device's
        deviceData.regionId/orgId, else to the group's target: set them with :meth:`update`.
        """
        if not group_id:
            raise enos_error(99400, "Invalid Argument groupId:groupId is missing")
        with self.write() as conn:
            group = self._group_for_device(group_id, conn)
            local_sync.refuse_offline_change(conn, group.group_id, "reprovisioning")
            if group.reprovision_method == "never":
                raise enos_error(
                    35603,
                    f"registration group {group.group_id} does not support reprovisioning",
                    hint="its reprovision method is 'never'",
                )
            if group.model_type == "private":
                raise enos_error(
                    35603,
                    f"registration group {group.group_id} uses a private model; its devices "
                    "cannot be reprovisioned to another environment/OU",
                )
            found = {
                r[0]
                for r in conn.execute(
                    "SELECT sn FROM devices WHERE group_id=? AND sn IN (SELECT value FROM json_each(?))",
                    (group.group_id, json.dumps(list(sns))),
                )
            }
            missing = [s for s in sns if s not in found]
            if missing:
                raise enos_error(35404, f"Group/sn not found: {', '.join(missing[:5])}")
            sets = (
                "allocate_status='init', connect_status='init', current_status='init', "
                "region_id=NULL, org_id=NULL, device_key=NULL, device_secret=NULL, "
                "allocated_time=NULL, connected_time=NULL, reprovisioning=1, "
                "reprovision_time=?, update_time=?, update_by=?"
            )
            if group.reprovision_method == "initialize":
                sets += ", device_data='{}'"
            now = now_ms()
            conn.executemany(
                f"UPDATE devices SET {sets} WHERE sn=?", [(now, now, self.user, s) for s in sns]
            )
            return list(sns)

    def replace(self, sn: str, replacement_sn: str) -> Device:
        if not sn or not replacement_sn:
            raise enos_error(35400, "OrgId/Sn is required")
        if sn == replacement_sn:
            raise enos_error(35400, "the replacement device must differ from the original")
        with self.write() as conn:
            old = self._device_row(conn, sn, code=35404, msg="Sn not found")
            new = self._device_row(conn, replacement_sn, code=35404, msg="Sn not found")
            if old.group_id != new.group_id:
                raise enos_error(
                    35400, "Target device and replacement device should belong to the same group"
                )
            local_sync.refuse_offline_change(conn, old.group_id, "a replacement")
            if new.allocated:
                raise enos_error(35603, "Replacement device is allocated")
            group = local_groups.get_group(conn, old.group_id)
            # master data (a reprovision target in deviceData included), batch tag and desc
            sets = {"device_data": canonical(old.copyable_data()), "description": old.desc}
            sets.update(_batch_tag_columns(old.batch_tag))
            self._set(conn, replacement_sn, sets)
            if old.allocated:  # NEW takes OLD's place
                new = self._device_row(conn, replacement_sn)
                self._allocate(conn, new, group, (old.region_id, old.org_id))
            conn.execute("DELETE FROM devices WHERE sn=?", (sn,))
            conn.execute(
                "INSERT INTO replacements (old_sn, old_device_sn, new_sn, new_device_sn, group_id, "
                "time) VALUES (?, ?, ?, ?, ?, ?)",
                (sn, old.device_sn, replacement_sn, new.device_sn, old.group_id, now_ms()),
            )
            return self._device_row(conn, replacement_sn)

    def replacements(self, sn: str) -> list[dict]:
        """Replacement records where ``sn`` (a system sn or deviceSn) is the old or the new
        device, oldest first."""
        rows = self.conn.execute(
            "SELECT old_sn, old_device_sn, new_sn, new_device_sn, group_id, time FROM replacements "
            "WHERE ? IN (old_sn, new_sn, old_device_sn, new_device_sn) ORDER BY time",
            (sn,),
        )
        keys = ("oldSn", "oldDeviceSn", "newSn", "newDeviceSn", "groupId", "time")
        return [dict(zip(keys, r)) for r in rows]

    # -- bulk registration ----------------------------------------------------------------------

    def next_batch_order(self) -> int:
        with self.write() as conn:
            return self._next_batch_order(conn)

    def register_batch(
        self,
        group_id: str,
        records: Sequence[NewDevice],
        *,
        batch_order: int | None = None,
        dry_run: bool = False,
        on_commit: ChunkHook | None = None,
    ) -> list[RegisterOutcome]:
        group = self._group_for_device(group_id)
        if dry_run:
            return self._classify(self.conn, group, records, None)
        with self.write() as conn:
            if batch_order is None:
                batch_order = self._next_batch_order(conn)
            outcomes = self._classify(conn, group, records, batch_order)
            if on_commit is not None:  # in this transaction: commits or rolls back with it
                on_commit(conn, outcomes)
            return outcomes

    def _classify(self, conn, group, records, batch_order) -> list[RegisterOutcome]:
        """Compare records with what is stored; insert the new ones unless batch_order is None."""
        existing = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT device_sn, sn, device_data, description, batch_tag FROM devices "
                "WHERE group_id=? AND device_sn IN (SELECT value FROM json_each(?))",
                (group.group_id, json.dumps([r.device_sn for r in records])),
            )
        }
        sn_ok = sn_matcher(group.sn_pattern)
        if not existing and batch_order is not None:
            fast = self._insert_all_new(conn, group, records, batch_order, sn_ok)
            if fast is not None:
                return fast
        found: list[tuple] = []  # (deviceSn, outcome, sn or None, error or None) in record order
        fresh: list[tuple[NewDevice, str]] = []
        for rec in records:
            data = rec.canonical_data()
            tag = rec.batch_tag.get("defaultValue") if rec.batch_tag else None
            prior = existing.get(rec.device_sn)
            if prior is None:
                if not sn_ok(rec.device_sn):
                    self._check_new_sn(group, rec.device_sn)
                existing[rec.device_sn] = (None, data, rec.desc, tag)
                fresh.append((rec, data))
                found.append((rec.device_sn, "created", None, None))
                continue
            found.append(tuple(compare_registered(rec.device_sn, prior, data, rec.desc, tag)))
        if batch_order is None or not fresh:
            return [RegisterOutcome(*f) for f in found]
        new_sns = iter(self._insert(conn, group, fresh, batch_order))
        return [
            RegisterOutcome(f[0], "created", next(new_sns))
            if f[1] == "created"
            else RegisterOutcome(*f)
            for f in found
        ]

    # -- device side ----------------------------------------------------------------------------
    def bootstrap(
        self,
        *,
        group_id: str,
        device_sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        device_name: dict | None = None,
        timezone: str | None = None,
        resign: Resigner | None = None,
    ) -> ConnectionInfo:
        return local_device.bootstrap(
            self,
            group_id=group_id,
            device_sn=device_sn,
            timestamp=timestamp,
            sign=sign,
            sign_method=sign_method,
            device_name=device_name,
            timezone=timezone,
            resign=resign,
            refuse_retired=self.refuse_retired_bootstrap,
        )

    def get_connection_info(
        self,
        *,
        sn: str,
        timestamp: int,
        sign: str,
        sign_method: str = "sha256",
        resign: Resigner | None = None,
    ) -> ConnectionInfo:
        return local_device.get_connection_info(
            self, sn=sn, timestamp=timestamp, sign=sign, sign_method=sign_method, resign=resign
        )

    # -- sync with an EnOS tenant (core/sync.py) -------------------------------------------------

    def mark_imported(
        self, group_id: str, profile: str, *, on_commit: Callable[[Any], object] | None = None
    ) -> None:
        """Remember that ``group_id`` is the tenant group of EnOS profile ``profile``;
        ``on_commit(conn)`` runs in the same transaction (the journal record)."""
        with self.write() as conn:
            local_sync.mark_imported(conn, group_id, profile, now_ms())
            if on_commit is not None:
                on_commit(conn)

    def imported_from(self, group_id: str) -> str | None:
        """The profile ``group_id`` was imported from (``group import``), or None."""
        return local_sync.imported_from(self.conn, group_id)

    def link_pushed(
        self,
        group_id: str,
        rows: Sequence[tuple[str, str, str]],
        *,
        on_commit: Callable[[Any], object] | None = None,
    ) -> None:
        """Record (deviceSn, store sn, EnOS sn) of devices now in EnOS; ``on_commit(conn)``
        runs in the same transaction (the journal record of the push)."""
        with self.write() as conn:
            local_sync.link(conn, group_id, rows, now_ms())
            if on_commit is not None:
                on_commit(conn)

    def pushed_links(self, group_id: str) -> dict[str, tuple[str, str]]:
        """deviceSn -> (store sn, EnOS sn) of the devices of ``group_id`` pushed to EnOS."""
        return local_sync.links(self.conn, group_id)

    def device_states(self, group_id: str) -> dict[str, int]:
        """Store sn -> hash of local_sync.STATE_COLUMNS of the devices of ``group_id``."""
        return local_sync.states(self.conn, group_id)

    def device_sn_map(self, group_id: str) -> Iterable[tuple[str, str]]:
        """(store sn, deviceSn) of the devices of ``group_id``."""
        return local_sync.sn_pairs(self.conn, group_id)

    def set_device_states(
        self,
        rows: Sequence[tuple[str, tuple]],
        *,
        links: tuple[str, Sequence[tuple[str, str, str]]] | None = None,
    ) -> None:
        """Give devices (store sn, local_sync.STATE_COLUMNS values) the state EnOS reports, and
        record ``links`` (group id, [(deviceSn, store sn, EnOS sn)]) in the same transaction."""
        with self.write() as conn:
            if links is not None and links[1]:
                local_sync.link(conn, links[0], links[1], now_ms())
            local_sync.set_states(conn, rows, now_ms(), self.user)

    def offline_refusal(self, group_id: str, what: str) -> RefusedError | None:
        return local_sync.offline_refusal(self.conn, group_id, what)

    def enos_sn(self, sn: str) -> str | None:
        return local_sync.enos_sn(self.conn, sn)

    def label_sn_for(self, group_id: str) -> Callable[[Device], str | None]:
        if local_sync.imported_from(self.conn, group_id) is None:
            return lambda dev: dev.sn
        pushed = {local_sn: enos_sn for local_sn, enos_sn in self.pushed_links(group_id).values()}
        return lambda dev: pushed.get(dev.sn)  # None: not in EnOS yet, no sn on the label

    # -- capabilities of the store (backends/base.py declares them) ------------------------------
    @property
    def journal_connection(self) -> Any:
        return self.conn

    def replacement_links(self, group_id: str | None = None) -> list[dict]:
        return local_device.replacement_links(self, group_id)

    def batch_summaries(self, group_id: str | None = None) -> list[tuple]:
        return local_batches.batch_summaries(self, group_id)

    def registration_order(self) -> Callable[[Device], tuple]:
        """Batch order (the store numbers its batches), then registration time and sn (a store
        write gives its rows one registration time and consecutive system sns)."""
        last = float("inf")  # a device without a batch order (none in practice) comes last
        return lambda d: (
            d.batch_order if d.batch_order is not None else last,
            d.create_time or 0,
            d.sn,
        )

    def device_sn_rows(self, group_id: str | None, *, payload: bool) -> Iterator[tuple]:
        """From the (groupId, deviceSn) index alone unless ``payload``; the key is the rowid."""
        columns = "rowid, group_id, CAST(device_sn AS BLOB)"
        columns += ", sn, batch_tag" if payload else ", NULL, NULL"
        where, params = (" WHERE group_id=?", (group_id,)) if group_id else ("", ())
        yield from self._rows(f"SELECT {columns} FROM devices{where}", params)

    def device_by_key(self, key: Any) -> Device:
        if isinstance(key, Device):
            return key
        (sn,) = self.conn.execute("SELECT sn FROM devices WHERE rowid=?", (key,)).fetchone()
        return self.get(sn)

    def device_sns_between(
        self,
        group_id: str | None,
        shortest: int,
        longest: int,
        *,
        others: bool = False,
        limit: int = 0,
    ) -> Iterator[tuple[str, bytes]]:
        """Every matching device (``limit`` does not apply: an index scan in SQLite)."""
        where = ""
        params: list[int | str] = [shortest, longest]
        if group_id is not None:
            where = " AND group_id != ?" if others else " AND group_id = ?"
            params.append(group_id)
        sql = (
            "SELECT group_id, CAST(device_sn AS BLOB) FROM devices "
            f"WHERE length(device_sn) BETWEEN ? AND ?{where}"
        )
        yield from self._rows(sql, params)

    # -- internals shared with local_device -----------------------------------------------------

    def _group_for_device(self, group_id: str, conn=None, code: int = 35404) -> RegistrationGroup:
        try:
            return local_groups.get_group(conn or self.conn, group_id, by_name=False)
        except NotFoundError:
            raise enos_error(
                code, "Group not found", hint=f"no registration group {group_id!r}"
            ) from None

    def _check_new_sn(self, group: RegistrationGroup, device_sn: str) -> None:
        from ..domain.rules import sn_problem

        problem = sn_problem(device_sn, group.sn_pattern)
        if problem:
            raise enos_error(99400, f"Invalid Argument deviceSn: {problem}")

    def _next_batch_order(self, conn) -> int:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='batch_order'")
        return int(conn.execute("SELECT value FROM meta WHERE key='batch_order'").fetchone()[0])

    def _insert_all_new(self, conn, group, records, batch_order, sn_ok) -> list | None:
        """The common case of a fresh batch: no record exists yet. None if the general path is
        needed (a duplicate deviceSn inside the batch, or a deviceSn to explain)."""
        device_sns = [r.device_sn for r in records]
        if len(set(device_sns)) != len(device_sns) or not all(map(sn_ok, device_sns)):
            return None
        items = [
            (r, r.data_json if r.data_json is not None else r.canonical_data()) for r in records
        ]
        sns = self._insert(conn, group, items, batch_order)
        return [RegisterOutcome(d, "created", sn) for d, sn in zip(device_sns, sns)]

    def _insert(
        self, conn, group, items: Sequence[tuple[NewDevice, str]], batch_order: int
    ) -> list[str]:
        """Insert (record, canonical deviceData JSON) pairs; return their new system SNs."""
        now = now_ms()
        user = self.user
        pk = group.product_key
        gid = group.group_id
        mfr = group.manufacturer_org_id
        rows = []
        tags: dict[int, tuple] = {}  # the rows of a batch share their batch tag object
        for rec, data in items:
            tag = rec.batch_tag
            columns = tags.get(id(tag))
            if columns is None:
                if tag:
                    i18n = tag.get("i18nValue")
                    i18n_json = json.dumps(i18n, ensure_ascii=False) if i18n else None
                    columns = (tag.get("defaultValue"), i18n_json)
                else:
                    columns = (None, None)
                tags[id(tag)] = columns
            rows.append(
                [None, gid, rec.device_sn, pk, batch_order, columns[0], columns[1], data,
                 rec.desc, user, now, user, now, mfr]
            )  # fmt: skip
        for attempt in range(3):
            sns = secrets_gen.system_sns(len(rows))
            for row, sn in zip(rows, sns):
                row[0] = sn
            conn.execute("SAVEPOINT insert_devices")
            try:
                self._insert_rows(conn, rows)
            except self._integrity_errors as exc:
                conn.execute("ROLLBACK TO insert_devices")
                conn.execute("RELEASE insert_devices")
                if not self._is_sn_clash(exc) or attempt == 2:
                    raise StoreError(f"store {self.where}: {exc}; nothing was written") from None
                continue  # a system SN prefix clashed: draw another
            conn.execute("RELEASE insert_devices")
            return sns
        raise AssertionError("unreachable")

    # the SQL that differs by database: the PostgreSQL store (pg_store.py) overrides these
    _integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def _insert_rows(self, conn, rows: list[list]) -> None:
        """Insert device rows (the parameters of INSERT_DEVICE) in the open transaction."""
        conn.executemany(INSERT_DEVICE, rows)

    def _is_sn_clash(self, exc: BaseException) -> bool:
        """``exc`` says a system sn is taken (drawn again), not another constraint."""
        return "devices.sn" in str(exc)

    @contextmanager
    def planned_per_statement(self) -> Iterator[None]:
        """Within: every statement planned with its own values (look-ups of changing lists);
        SQLite always does."""
        yield

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple]:
        """The rows of a long query, streamed (constant memory)."""
        return self.conn.execute(sql, params)

    def _device_row(
        self, conn, sn: str, code: int = 35601, msg: str = "Verify not pass/sn not found"
    ) -> Device:
        row = conn.execute(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE sn=?", (sn,)).fetchone()
        if row is None:
            raise enos_error(code, msg, cls=NotFoundError, hint=f"no device with system sn {sn!r}")
        return local_query.to_device(row)

    def _set(self, conn, sn: str, sets: dict) -> None:
        sets = dict(sets, update_time=now_ms(), update_by=self.user)
        cols = ", ".join(f"{k}=?" for k in sets)
        conn.execute(f"UPDATE devices SET {cols} WHERE sn=?", (*sets.values(), sn))

    def _allocate(
        self,
        conn,
        dev: Device,
        group: RegistrationGroup,
        where: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """Allocate ``dev`` to ``where`` (region, OU), else to its deviceData.regionId/orgId
        (the documented built-in master data), else to the group's target."""
        region = where[0] or dev.target_region_id or group.region_id
        org = where[1] or dev.target_org_id or group.org_id
        if not region or not org:
            raise InvalidArgumentError(
                f"registration group {group.group_id} has no allocation target and device "
                f"{dev.device_sn} has no deviceData.regionId/orgId",
                hint="set the group's region and OU (group create --region R --org O), or "
                "allocate with a target (devices allocate --region R --org O)",
                enos_code=99400,
            )
        now = now_ms()
        self._set(
            conn,
            dev.sn,
            {
                "region_id": region,
                "org_id": org,
                "product_key": group.product_key,
                "device_key": secrets_gen.device_key(),
                "device_secret": secrets_gen.device_secret(),
                "allocate_status": "allocated",
                "current_status": "allocated",
                "allocated_time": now,
                "allocate_error_msg": "",
            },
        )

    def stored_connection_info(self, dev: Device, group: RegistrationGroup) -> ConnectionInfo:
        region = dev.region_id or ""
        return ConnectionInfo(
            sn=dev.sn,
            product_key=dev.product_key or group.product_key,
            device_key=dev.device_key or "",
            device_secret=dev.device_secret or "",
            mqtt_url=group.mqtt_url or DEFAULT_MQTT_URL.format(region=region),
            http_url=group.http_url or DEFAULT_HTTP_URL.format(region=region),
        )


def _fold_legacy_targets(conn) -> None:
    """Schema 2-3 kept a reprovision target in its own columns; schema 4 keeps it where EnOS
    documents it, in the built-in master data deviceData.regionId/orgId. The old columns stay
    (SQLite before 3.35 cannot drop a column), always NULL from now on."""
    rows = conn.execute(
        "SELECT sn, device_data, target_region_id, target_org_id FROM devices "
        "WHERE target_region_id IS NOT NULL OR target_org_id IS NOT NULL"
    ).fetchall()
    for sn, data_json, region, org in rows:
        data = json.loads(data_json)
        data.update({k: v for k, v in (("regionId", region), ("orgId", org)) if v})
        conn.execute(
            "UPDATE devices SET device_data=?, target_region_id=NULL, target_org_id=NULL "
            "WHERE sn=?",
            (canonical(data), sn),
        )


def _blank_device_sn() -> str:
    return "blank-" + secrets_gen.system_sn()


def _batch_tag_columns(tag: dict | None) -> dict:
    if not tag:
        return {"batch_tag": None, "batch_tag_i18n": None}
    i18n = tag.get("i18nValue") or None
    return {
        "batch_tag": tag.get("defaultValue"),
        "batch_tag_i18n": json.dumps(i18n, ensure_ascii=False) if i18n else None,
    }
