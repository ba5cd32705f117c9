"""What the local store keeps of its sync with an EnOS tenant (core/sync.py, docs/sync.md): the
registration groups imported from a profile, and each pushed device's EnOS system sn."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..domain.errors import RefusedError


def mark_imported(conn: Any, group_id: str, profile: str, now: int) -> None:
    """``group_id`` is the tenant's group of ``profile`` (kept when imported again)."""
    conn.execute(
        "INSERT OR IGNORE INTO sync_groups (group_id, profile, imported_time) VALUES (?, ?, ?)",
        (group_id, profile, now),
    )
    conn.execute("UPDATE sync_groups SET profile=? WHERE group_id=?", (profile, group_id))


def imported_from(conn: Any, group_id: str) -> str | None:
    """The profile ``group_id`` was imported from, or None (a group of this store only)."""
    row = conn.execute("SELECT profile FROM sync_groups WHERE group_id=?", (group_id,)).fetchone()
    return row[0] if row else None


def link(conn: Any, group_id: str, rows: Iterable[tuple[str, str, str]], now: int) -> None:
    """Record (deviceSn, store sn, EnOS sn) of pushed devices (a later push replaces a link)."""
    rows = list(rows)
    conn.executemany(
        "DELETE FROM sync_links WHERE group_id=? AND device_sn=?",
        [(group_id, device_sn) for device_sn, _, _ in rows],
    )
    conn.executemany(
        "INSERT INTO sync_links (group_id, device_sn, local_sn, enos_sn, pushed_time) "
        "VALUES (?, ?, ?, ?, ?)",
        [(group_id, device_sn, local_sn, enos_sn, now) for device_sn, local_sn, enos_sn in rows],
    )


def links(conn: Any, group_id: str) -> dict[str, tuple[str, str]]:
    """deviceSn -> (store sn, EnOS sn) of the pushed devices of ``group_id``."""
    return {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT device_sn, local_sn, enos_sn FROM sync_links WHERE group_id=?", (group_id,)
        )
    }


def enos_sn(conn: Any, local_sn: str) -> str | None:
    row = conn.execute("SELECT enos_sn FROM sync_links WHERE local_sn=?", (local_sn,)).fetchone()
    return row[0] if row else None


def offline_refusal(conn: Any, group_id: str, what: str) -> RefusedError | None:
    """Replacements, reprovisioning and deletions in a group imported from a tenant are done in
    EnOS (through the profile), never only in the store: EnOS would not know of them, and a
    unit replaced only here would be pushed back as a new device (docs/sync.md, "Lifecycle").
    The refusal, or None for a group of this store only."""
    profile = imported_from(conn, group_id)
    if profile is None:
        return None
    return RefusedError(
        f"registration group {group_id} is synced with EnOS profile {profile!r}: {what} is "
        "done in EnOS, through the profile, not only in this store; nothing was changed",
        hint=f"push first (enosprov sync push --profile {profile} --group {group_id}), then "
        f"run the same command with --profile {profile}",
    )


def refuse_offline_change(conn: Any, group_id: str, what: str) -> None:
    refusal = offline_refusal(conn, group_id, what)
    if refusal is not None:
        raise refusal


# The device columns a pull brings from EnOS (what devices did in the field), in this order.
STATE_COLUMNS = (
    "allocate_status", "connect_status", "current_status", "allocated_time", "connected_time",
    "finished_time", "discarded_time", "region_id", "org_id", "reprovisioning",
    "reprovision_time", "allocate_error_msg", "device_key", "device_secret",
)  # fmt: skip


def states(conn: Any, group_id: str) -> dict[str, int]:
    """Store sn -> hash of the STATE_COLUMNS of each device of ``group_id`` (a hash: a pull
    of 100,000 devices compares states in a few MB)."""
    sql = f"SELECT sn, {', '.join(STATE_COLUMNS)} FROM devices WHERE group_id=?"
    return {r[0]: hash(tuple(r[1:])) for r in conn.execute(sql, (group_id,))}


def sn_pairs(conn: Any, group_id: str) -> Iterable[tuple[str, str]]:
    """(store sn, deviceSn) of every device of ``group_id``."""
    return conn.execute("SELECT sn, device_sn FROM devices WHERE group_id=?", (group_id,))


def set_states(conn: Any, rows: Iterable[tuple[str, tuple]], now: int, user: str) -> None:
    """Give devices (store sn, STATE_COLUMNS values) the state EnOS reports."""
    sets = ", ".join(f"{c}=?" for c in STATE_COLUMNS)
    conn.executemany(
        f"UPDATE devices SET {sets}, update_time=?, update_by=? WHERE sn=?",
        [(*state, now, user, sn) for sn, state in rows],
    )
