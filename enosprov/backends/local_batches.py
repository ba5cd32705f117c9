"""Per-batch counts on the local store, from two indexes and no per-device Python loop.

``devices_batch_time`` (group, batch tag, create time) gives the number of devices and their
registration times; the partial index ``devices_batch_state`` holds only the devices that changed
since registration, so the state counts read a small index even on a million-device store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .local_schema import BATCH_STATE_WHERE

if TYPE_CHECKING:
    from .local import LocalBackend

# (group_id, batch_tag, registered, first create, last create, allocated, connected, failed,
#  reprovisioned, last update)
BatchRow = tuple


def batch_summaries(backend: LocalBackend, group_id: str | None = None) -> list[BatchRow]:
    """One row per (group, batch tag) of the devices in the store."""
    where, params = "", []
    if group_id is not None:
        where, params = " WHERE group_id = ?", [group_id]
    registered = backend.conn.execute(
        "SELECT group_id, batch_tag, count(*), min(create_time), max(create_time) FROM devices"
        f"{where} GROUP BY group_id, batch_tag",
        params,
    ).fetchall()
    state_where = f" WHERE {BATCH_STATE_WHERE}" + (" AND group_id = ?" if group_id else "")
    states = {
        (g, t): rest
        for g, t, *rest in backend.conn.execute(
            "SELECT group_id, batch_tag, sum(CASE WHEN allocate_status = 'allocated' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN connect_status = 'connected' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN connect_status = 'failed' OR allocate_error_msg <> '' THEN 1 ELSE 0 END), "
            "sum(reprovisioning), "
            f"max(update_time) FROM devices{state_where} GROUP BY group_id, batch_tag",
            params,
        )
    }
    out = []
    for g, t, count, first, last in registered:
        allocated, connected, failed, reprovisioned, updated = states.get(
            (g, t), (0, 0, 0, 0, None)
        )
        out.append((g, t, count, first, last, allocated, connected, failed, reprovisioned, updated))
    return out
