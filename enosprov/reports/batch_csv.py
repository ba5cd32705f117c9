"""The per-device spreadsheet of a batch: one row per unit, where it stands and when it got there.

Why a CSV beside the HTML report: the report shows the figures; the spreadsheet lets a production
manager filter and chase single units (which ones are stuck, which were replaced and by what). It
is written for Excel: UTF-8 with a byte order mark and a header row, times in ISO 8601 UTC, and
spreadsheet-safe (enosprov.csvsafe: a deviceSn such as ``-A1`` that a spreadsheet would read as a
formula gets a leading ``'``) unless ``raw_csv``.

The batch's devices are streamed from the backend (:func:`enosprov.core.batches.batch_devices`)
and written as they come; only the batch's journal marks are held in memory (a few dozen bytes a
device). The units that left DPS (replaced, deleted) follow, from the journal. The ``retired``
column flags a retired unit that came back (registered again after its replacement), on its new
registration and on the replaced unit. The file is written atomically: a reader never sees half
of it.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import AtomicFile
from ..core.batches import BatchDetail, batch_devices, is_stuck
from ..domain import csvsafe
from ..domain.models import Device
from ..journal import Journal, NullJournal, journal_or_null

if TYPE_CHECKING:
    from ..backends.base import Backend

CSV_COLUMNS = (
    "deviceSn",
    "sn",
    "state",
    "registered",
    "exported",
    "labelled",
    "allocated",
    "connected",
    "reprovisioned",
    "stuck",
    "replacedBy",
    "retired",  # a retired unit that came back: on its new registration, and on the old unit
)


def _iso(ms: int | None) -> str:
    """``2026-11-03T08:12:45Z``, or "" when the state was not reached."""
    if not ms:
        return ""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def device_state(device: Device) -> str:
    """The most advanced current state of a device in DPS: failed (connection failed or an
    allocation error), else connected > allocated > reprovisioned (reset, waiting for the device)
    > registered."""
    if device.connect_status == "failed" or device.allocate_error_msg:
        return "failed"
    if device.connect_status == "connected":
        return "connected"
    if device.allocated:
        return "allocated"
    if device.reprovisioning:
        return "reprovisioned"
    return "registered"


def write_batch_csv(
    backend: Backend,
    journal: Journal | NullJournal | None,
    detail: BatchDetail,
    path: str | Path,
    *,
    raw_csv: bool = False,
) -> int:
    """Write the batch's per-device CSV to ``path`` atomically; the number of rows written
    (the header not counted).

    One row per device now in DPS (oldest first), then one per unit replaced or deleted (in the
    order it happened). ``stuck`` follows :func:`enosprov.core.batches.show_batch`: exported or
    labelled before ``detail.now - detail.stale_ms`` and never bootstrapped (:func:`enosprov.core.batches.is_stuck`).
    Cells are spreadsheet-safe (enosprov.csvsafe) unless ``raw_csv``."""
    journal = journal_or_null(journal)
    s = detail.summary
    cutoff = detail.now - detail.stale_ms
    marks: dict[str, list[int | None]] = {}  # sn -> [exported, labelled] (epoch ms)
    for mark, sn, _dsn, ms in journal.marked(s.group_id, s.batch_tag, ("exported", "labelled")):
        slot = marks.setdefault(sn, [None, None])
        i = 0 if mark == "exported" else 1
        earliest = slot[i]
        if earliest is None or ms < earliest:
            slot[i] = ms
    gone: dict[str, tuple[str, str, int]] = {}  # sn -> (mark, deviceSn, time): left DPS
    for mark, sn, dsn, ms in journal.marked(s.group_id, s.batch_tag, ("replaced", "deleted")):
        if sn not in gone or mark == "replaced":  # a unit replaced and deleted: replaced wins
            gone[sn] = (mark, dsn, ms)
    replaced_by = {r.get("oldSn"): r.get("newDeviceSn") or "" for r in detail.lineage}
    came_back = {r.returned.sn: r for r in getattr(detail, "returned", ())}  # new registration
    went_back = {r.sn: r for r in getattr(detail, "returned", ())}  # the retired unit's sn

    rows = 0
    with AtomicFile(path) as fh:
        fh.write(csvsafe.bom(raw_csv))  # utf-8-sig: Excel reads the file as UTF-8
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(CSV_COLUMNS)

        def writerow(cells: tuple) -> None:
            out.writerow(csvsafe.row(cells, raw=raw_csv))

        for d in batch_devices(backend, s):
            exported, labelled = marks.get(d.sn, (None, None))
            reached = [ms for ms in (exported, labelled) if ms is not None]
            stuck = is_stuck(d, min(reached) if reached else None, cutoff)
            reprovisioned = (d.reprovision_time or d.update_time) if d.reprovisioning else None
            writerow((
                d.device_sn, d.sn, device_state(d), _iso(d.create_time), _iso(exported),
                _iso(labelled), _iso(d.status.allocated_time if d.allocated else None),
                _iso(d.status.connected_time if d.connect_status == "connected" else None), _iso(reprovisioned),
                "yes" if stuck else "no", "",
                f"came back: {came_back[d.sn].describe()}" if d.sn in came_back else "",
            ))  # fmt: skip
            gone.pop(d.sn, None)  # still in DPS after all (never expected): one row only
            rows += 1
        for sn, (mark, dsn, _ms) in sorted(gone.items(), key=lambda item: item[1][2]):
            exported, labelled = marks.get(sn, (None, None))
            back = went_back.get(sn) if mark == "replaced" else None
            writerow((
                dsn, sn, mark, "", _iso(exported), _iso(labelled), "", "", "", "no",
                replaced_by.get(sn, "") if mark == "replaced" else "",
                f"registered again as sn {back.returned.sn}" if back is not None else "",
            ))  # fmt: skip
            rows += 1
    return rows
