"""Batch monitoring: how far each production batch (group + batch tag) has come.

States of a batch's devices and where each figure comes from:

| state | meaning | local store | EnOS backend |
|---|---|---|---|
| registered | in DPS now (replacement units inherit the batch tag) | store | DPS search |
| exported | a credential file was written | journal | journal |
| labelled | a QR label was produced | journal | journal |
| allocated | allocateStatus allocated | store | DPS search |
| connected | connectStatus connected (has bootstrapped / fetched its triple) | store | DPS search |
| failed | connectStatus failed, or an allocation error message | store | DPS search |
| reprovisioned | reset at least once (reprovisioning) | store | DPS search |
| replaced | taken out by `enosprov replace` | journal | journal |
| deleted | deleted by `enosprov devices delete` | journal | journal |

"Stuck" devices were exported or labelled more than ``stale`` ago and have never bootstrapped
(not connected, and not waiting after a reprovisioning reset, which means they did connect).
DPS cannot search by batch tag, so with the EnOS backend the devices of a group are read page by
page (1,000 a request) and counted here; the local store counts with two indexes.

Retired units that came back (:attr:`BatchDetail.returned`): a replaced unit of the batch whose
deviceSn is registered again, or a device of the batch registered under a retired deviceSn
(core.lineage), each with the unit in service and what to do.

Production by station (:func:`batch_production`) comes from the journal alone: the register,
burn-export and label-export records of the batch's group, each stamped with the station that
wrote it, their devices matched to the batch by system sn.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..domain.errors import InvalidArgumentError, NotFoundError
from ..domain.models import Device, SearchQuery
from ..journal import MARKS, Journal, NullJournal, duration_ms, journal_or_null, parse_time
from .lineage import Retirement, retired_links, retirement_from_link

STATES = (
    "registered", "exported", "labelled", "allocated", "connected", "failed", "reprovisioned",
    "replaced", "deleted",
)  # fmt: skip
JOURNAL_STATES = ("exported", "labelled", "replaced", "deleted")
STORE_STATES = tuple(s for s in STATES if s not in JOURNAL_STATES)
SORTS = ("tag", "first", "last", "registered", "connected")
DEFAULT_STALE = "7d"
NO_TAG = "(none)"  # how devices without a batch tag are shown
NO_STATION = "(none)"  # how journal records without a station are shown
OUTPUTS = ("registered", "burned", "labelled", "printed", "failed")  # production per station
HOURLY_BELOW_MS = 2 * 86_400_000  # production spanning less than this is shown per hour
MIN_RATE_SPAN_MS = 60_000  # units/hour needs at least this much time between first and last
RETURNED_SLICE = 100  # deviceSns per search when looking for retired units that came back


def _store_source(backend: Backend) -> str:
    return "store" if backend.indexed else "DPS search"


@dataclass
class BatchSummary:
    group_id: str
    batch_tag: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    first_activity: int | None = None  # epoch ms
    last_activity: int | None = None
    sources: dict[str, str] = field(default_factory=dict)  # state -> "store" | "DPS search" | ...

    @property
    def tag_text(self) -> str:
        return NO_TAG if self.batch_tag is None else self.batch_tag

    def _touch(self, ms: int | None) -> None:
        if ms is None:
            return
        self.first_activity = ms if self.first_activity is None else min(self.first_activity, ms)
        self.last_activity = ms if self.last_activity is None else max(self.last_activity, ms)

    def to_dict(self) -> dict:
        return {
            "groupId": self.group_id,
            "batchTag": self.batch_tag,
            "counts": dict(self.counts),
            "firstActivity": _iso(self.first_activity),
            "lastActivity": _iso(self.last_activity),
            "sources": dict(self.sources),
        }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


class _Tally:
    """The store figures of one batch, counted device by device (backends without indexes)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None  # createTime (epoch ms)
        self.last: int | None = None
        self.allocated = 0
        self.connected = 0
        self.failed = 0
        self.reprovisioned = 0
        self.updated: int | None = None  # the latest updateTime after a createTime

    @property
    def row(self) -> tuple[int, int | None, int | None, int, int, int, int, int | None]:
        """The figures as in LocalBackend.batch_summaries (after the group and the tag)."""
        return (self.count, self.first, self.last, self.allocated, self.connected, self.failed,
                self.reprovisioned, self.updated)  # fmt: skip

    def add(self, d: Device) -> None:
        self.count += 1
        ct = d.create_time
        if ct is not None:
            self.first = ct if self.first is None else min(self.first, ct)
            self.last = ct if self.last is None else max(self.last, ct)
        self.allocated += d.allocated
        self.connected += d.connect_status == "connected"
        self.failed += d.connect_status == "failed" or bool(d.allocate_error_msg)
        self.reprovisioned += bool(d.reprovisioning)
        if d.update_time is not None and ct is not None and d.update_time > ct:
            self.updated = (
                d.update_time if self.updated is None else max(self.updated, d.update_time)
            )


def _store_rows(backend: Backend, group_id: str | None) -> list[tuple]:
    """Rows as LocalBackend.batch_summaries gives them, for any backend."""
    indexed = backend.batch_summaries(group_id)
    if indexed is not None:
        return indexed
    groups = [group_id] if group_id else [g.group_id for g in backend.list_groups()]
    rows: list[tuple] = []
    for gid in groups:
        tallies: dict[str | None, _Tally] = {}
        for d in backend.iter_devices(SearchQuery(group_id=gid)):
            tallies.setdefault(d.batch_tag_text, _Tally()).add(d)
        rows.extend((gid, tag, *t.row) for tag, t in tallies.items())
    return rows


def _summaries(rows, marks, source: str) -> dict[tuple[str, str | None], BatchSummary]:
    """BatchSummary per (group, tag) from store rows and journal mark rows."""
    batches: dict[tuple[str, str | None], BatchSummary] = {}

    def batch(g: str, t: str | None) -> BatchSummary:
        b = batches.get((g, t))
        if b is None:
            b = batches[(g, t)] = BatchSummary(g, t)
            b.sources = {s: source for s in STORE_STATES} | {s: "journal" for s in JOURNAL_STATES}
        return b

    for g, t, count, first, last, allocated, connected, failed, reprov, updated in rows:
        b = batch(g, t)
        b.counts.update(registered=count, allocated=allocated or 0, connected=connected or 0,
                        failed=failed or 0, reprovisioned=reprov or 0)  # fmt: skip
        for ms in (first, last, updated):
            b._touch(ms)
    for g, t, mark, count, first, last in marks:
        b = batch(g, t)
        b.counts[mark] = count
        b._touch(first)
        b._touch(last)
    return batches


def list_batches(
    backend: Backend,
    journal: Journal | NullJournal | None = None,
    *,
    group: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    sort: str = "tag",
) -> list[BatchSummary]:
    """Every batch (per group) with its counts per state and first/last activity.

    ``since``/``until`` keep the batches whose activity falls in that window (epoch ms, or what
    :func:`enosprov.journal.parse_time` reads: ``7d``, ``2026-11-01``, ...)."""
    if sort not in SORTS:
        raise InvalidArgumentError(f"unknown sort {sort!r}", hint="one of: " + ", ".join(SORTS))
    journal = journal_or_null(journal)
    group_id = backend.get_group(group).group_id if group else None
    batches = _summaries(
        _store_rows(backend, group_id), journal.batch_marks(group_id), _store_source(backend)
    )
    out = list(batches.values())
    lo = _ms(since, "--since")
    hi = _ms(until, "--until")
    if lo is not None:
        out = [b for b in out if b.last_activity is not None and b.last_activity >= lo]
    if hi is not None:
        out = [b for b in out if b.first_activity is not None and b.first_activity < hi]
    keys = {
        "tag": lambda b: (b.tag_text, b.group_id),
        "first": lambda b: (b.first_activity or 0, b.tag_text),
        "last": lambda b: (-(b.last_activity or 0), b.tag_text),
        "registered": lambda b: (-b.counts["registered"], b.tag_text),
        "connected": lambda b: (-b.counts["connected"], b.tag_text),
    }
    return sorted(out, key=keys[sort])


def _ms(value: str | int | None, option: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_time(value, option=option)


# -- one batch ------------------------------------------------------------------------------------


@dataclass
class StuckDevice:
    sn: str
    device_sn: str
    mark: str  # exported | labelled (the earlier of the two)
    since: int  # epoch ms of that mark
    allocate_status: str

    def to_dict(self) -> dict:
        return {
            "sn": self.sn,
            "deviceSn": self.device_sn,
            "mark": self.mark,
            "since": _iso(self.since),
            "allocateStatus": self.allocate_status,
        }


@dataclass
class BatchDetail:
    summary: BatchSummary
    stale_ms: int
    now: int
    stuck: list[StuckDevice] = field(default_factory=list)  # oldest mark first, up to the limit
    stuck_count: int = 0
    activations: dict[str, int] = field(default_factory=dict)  # UTC day -> devices allocated
    lineage: list[dict] = field(default_factory=list)  # replacements of this batch's units
    production: Production | None = None  # per station and hour/day, from the journal
    # retired units that came back: a retired unit of this batch whose deviceSn registered
    # again, or a device of this batch registered under a retired deviceSn (core.lineage)
    returned: list[Retirement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            **self.summary.to_dict(),
            "staleSeconds": self.stale_ms // 1000,
            "stuckCount": self.stuck_count,
            "stuck": [s.to_dict() for s in self.stuck],
            "activationsPerDay": dict(self.activations),
            "replacements": self.lineage,
            "returnedCount": len(self.returned),
            "returned": [r.to_dict() for r in self.returned],
            "production": (self.production or Production()).to_dict(),
        }


def never_bootstrapped(d: Device) -> bool:
    """Not connected and not reset after a connection: a device that has not come online yet.
    (A device waiting after a reprovisioning reset did come online; it is not stuck.)"""
    return d.connect_status != "connected" and not d.reprovisioning


def is_stuck(d: Device, first_mark: int | None, cutoff: int) -> bool:
    """Exported or labelled (``first_mark``, ms) before ``cutoff`` and never bootstrapped."""
    return first_mark is not None and first_mark < cutoff and never_bootstrapped(d)


def stale_ms(text: str) -> int:
    """``7d``, ``36h``, ``90m``, ``2w`` as milliseconds."""
    ms = duration_ms(text)
    if ms is not None:
        return ms
    raise InvalidArgumentError(
        f"--stale {text!r} is not a duration", hint="e.g. 7d, 36h, 90m or 2w"
    )


def describe_duration(ms: int) -> str:
    """7 days, 36 hours, 90 minutes (weeks read as days: --stale 2w -> 14 days)."""
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000)):
        if ms >= size and ms % size == 0:
            n = ms // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    minutes = max(ms // 60_000, 0)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def find_batch(backend: Backend, journal, tag: str, group: str | None = None) -> BatchSummary:
    """The summary of batch ``tag``; with the tag in several groups, ``group`` must say which."""
    wanted = None if tag == NO_TAG else tag
    found = [b for b in list_batches(backend, journal, group=group) if b.batch_tag == wanted]
    if not found:
        raise NotFoundError(
            f"no batch {tag!r}" + (f" in group {group}" if group else ""),
            hint="list the batches with `enosprov batches list`",
        )
    if len(found) > 1:
        raise InvalidArgumentError(
            f"batch tag {tag!r} is used in {len(found)} groups "
            f"({', '.join(b.group_id for b in found)})",
            hint="pass --group",
        )
    return found[0]


def batch_devices(backend: Backend, summary: BatchSummary) -> Iterator[Device]:
    """The devices of a batch now in DPS, oldest first."""
    from ..domain.models import Sorter

    q = SearchQuery(group_id=summary.group_id, batch_tag=summary.batch_tag,
                    sorters=(Sorter("createTime", "ASC"),))  # fmt: skip
    if summary.batch_tag is None:  # the untagged devices: no search filter says "no tag"
        return (d for d in backend.iter_devices(q) if d.batch_tag_text is None)
    return backend.iter_devices(q)


def show_batch(
    backend: Backend,
    journal: Journal | NullJournal | None,
    tag: str,
    *,
    group: str | None = None,
    stale: str = DEFAULT_STALE,
    stuck_limit: int = 50,
    now: int | None = None,
) -> BatchDetail:
    """The breakdown of one batch, its stuck devices, activations per day and replacements.

    One pass over the batch's devices; memory holds the exported/labelled marks of the batch
    (a few dozen bytes a device), not the devices."""
    journal = journal_or_null(journal)
    stale_for = stale_ms(stale)
    tally = None
    if backend.indexed or group is None:
        summary = find_batch(backend, journal, tag, group)
    else:  # no indexes (EnOS): count the batch in the one pass below, not in a pass of its own
        summary = BatchSummary(backend.get_group(group).group_id, None if tag == NO_TAG else tag)
        tally = _Tally()
    now = int(time.time() * 1000) if now is None else now
    cutoff = now - stale_for
    marked: dict[str, tuple[str, int]] = {}  # sn -> (mark, time), the earlier of the two
    for mark, sn, _dsn, ms in journal.marked(
        summary.group_id, summary.batch_tag, ("exported", "labelled"), before=cutoff
    ):
        if sn not in marked or ms < marked[sn][1]:
            marked[sn] = (mark, ms)
    per_day: Counter[str] = Counter()
    stuck: list[StuckDevice] = []
    members: set[str] = set()  # system sns of the batch's devices in DPS now
    device_sns: set[str] = set()
    retired = retired_links(backend, journal, summary.group_id)  # (group, deviceSn) -> link
    returned: dict[str, Retirement] = {}  # sn of the new registration -> its retirement
    for d in batch_devices(backend, summary):
        members.add(d.sn)
        device_sns.add(d.device_sn)
        link = retired.get((d.group_id, d.device_sn))
        if link is not None and link["oldSn"] != d.sn:  # a retired unit registered again
            returned[d.sn] = retirement_from_link(backend, journal, link, returned=d)
        if tally is not None:
            tally.add(d)
        at = d.status.allocated_time
        if d.allocated and at:
            per_day[_day(at)] += 1
        hit = marked.get(d.sn)
        if hit and is_stuck(d, hit[1], cutoff):
            stuck.append(StuckDevice(d.sn, d.device_sn, hit[0], hit[1], d.allocate_status))
    if tally is not None:
        key = (summary.group_id, summary.batch_tag)
        rows = [(*key, *tally.row)] if tally.count else []
        marks = [m for m in journal.batch_marks(*key) if m[1] == key[1]]
        counted = _summaries(rows, marks, _store_source(backend)).get(key)
        if counted is None:
            raise NotFoundError(f"no batch {tag!r} in group {group}",
                                hint="list the batches with `enosprov batches list`")  # fmt: skip
        summary = counted
    detail = BatchDetail(summary, stale_for, now)
    stuck.sort(key=lambda s: (s.since, s.device_sn))
    detail.stuck_count = len(stuck)
    detail.stuck = stuck[:stuck_limit]
    detail.activations = dict(sorted(per_day.items()))
    detail.lineage = batch_lineage(journal, summary)
    # the batch's retired units: did one come back? (its deviceSns looked up in slices)
    candidates: dict[str, dict] = {}
    for entry in detail.lineage:
        entry["returnedAs"] = None
        link = retired.get((summary.group_id, entry.get("oldDeviceSn")))
        if link is not None and link["oldSn"] == entry.get("oldSn"):
            candidates[link["oldDeviceSn"]] = link
    found = list(candidates)
    for start in range(0, len(found), RETURNED_SLICE):
        part = tuple(found[start : start + RETURNED_SLICE])
        for d in backend.iter_devices(SearchQuery(group_id=summary.group_id, device_sns=part)):
            link = candidates.get(d.device_sn)
            if link is not None and d.sn != link["oldSn"] and d.sn not in returned:
                returned[d.sn] = retirement_from_link(backend, journal, link, returned=d)
    for r in returned.values():
        back = r.returned
        if back is None:  # retirement_from_link found the unit itself: nothing came back
            continue
        for entry in detail.lineage:
            if entry.get("oldSn") == r.sn:
                entry["returnedAs"] = back.sn
    detail.returned = sorted(returned.values(), key=lambda r: (r.replaced_at, r.device_sn))
    detail.production = batch_production(journal, summary, members, device_sns)
    return detail


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date().isoformat()


def batch_lineage(journal, summary: BatchSummary) -> list[dict]:
    """The replacements of this batch's units (old -> new), oldest first."""
    replaced = {
        sn for _m, sn, _d, _t in journal.marked(summary.group_id, summary.batch_tag, ("replaced",))
    }
    if not replaced:
        return []
    out = []
    for e in journal.entries(operations=("replace",), group_id=summary.group_id):
        old, new = e.detail.get("old") or {}, e.detail.get("new") or {}
        if e.outcome == "ok" and old.get("sn") in replaced:
            out.append({"time": e.iso_time, "oldSn": old.get("sn"),
                        "oldDeviceSn": old.get("deviceSn"), "newSn": new.get("sn"),
                        "newDeviceSn": new.get("deviceSn"), "station": e.station,
                        "user": e.user})  # fmt: skip
    return out


# -- production by station ------------------------------------------------------------------------


def _station_key(station: str | None) -> tuple[bool, str]:
    return (station is None, station or "")  # "(none)" last


@dataclass
class StationOutput:
    """What one station did for a batch, from its journal records.

    ``counts``: units registered, burned (credential files exported), labelled, printed (labels
    sent to a printer; they count as labelled too), and failed (rows whose registration failed,
    labels that did not print).
    A unit counts once per station and output, at the first time that station did it; a unit
    burned at two stations counts at each."""

    station: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTPUTS, 0))
    units: int = 0  # distinct units registered, burned or labelled at this station
    failed_runs: int = 0  # records of the batch with outcome failed or interrupted
    first: int | None = None  # epoch ms of its first and last record of the batch
    last: int | None = None

    @property
    def station_text(self) -> str:
        return NO_STATION if self.station is None else self.station

    @property
    def units_per_hour(self) -> float | None:
        """Units over the time from its first to its last record; None under a minute."""
        if self.first is None or self.last is None or self.last - self.first < MIN_RATE_SPAN_MS:
            return None
        return round(self.units * 3_600_000 / (self.last - self.first), 1)

    def _touch(self, ms: int) -> None:
        self.first = ms if self.first is None else min(self.first, ms)
        self.last = ms if self.last is None else max(self.last, ms)

    def to_dict(self) -> dict:
        return {
            "station": self.station,
            **self.counts,
            "failedRuns": self.failed_runs,
            "units": self.units,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "unitsPerHour": self.units_per_hour,
        }


@dataclass
class PeriodOutput:
    """The output of one station in one UTC hour or day."""

    period: str  # "2026-11-19" (day) or "2026-11-19T08:00Z" (hour)
    station: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTPUTS, 0))

    @property
    def station_text(self) -> str:
        return NO_STATION if self.station is None else self.station

    def to_dict(self) -> dict:
        return {"period": self.period, "station": self.station, **self.counts}


@dataclass
class Production:
    """A batch's production per station, and per station and hour (a batch whose records span
    less than two days) or day."""

    unit: str = "day"  # of the periods: "hour" or "day"
    stations: list[StationOutput] = field(default_factory=list)
    periods: list[PeriodOutput] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "unit": self.unit,
            "stations": [s.to_dict() for s in self.stations],
            "periods": [p.to_dict() for p in self.periods],
        }


def _period(ms: int, unit: str) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:00Z" if unit == "hour" else "%Y-%m-%d")


def batch_production(
    journal: Journal | NullJournal | None,
    summary: BatchSummary,
    members: Iterable[str] = (),
    device_sns: Iterable[str] = (),
) -> Production:
    """Units registered, burned, labelled, printed and failed per station, and per station and
    hour or day, from the journal's records of the batch's group.

    A record's devices belong to the batch when their system sn is one of ``members`` (the
    batch's devices in DPS now) or has a journal mark in the batch (exported, labelled, replaced,
    deleted). A "register" record that created devices counts for the batch its devices are in;
    one that created none (every row failed, or a record of a run that stopped) for the batch of
    its ``--batch-tag`` (``detail.batchTag``). "burn-export" counts as burned, "label-export" as
    labelled, and as printed too when its detail names a ``printer``; a print record whose labels
    all failed belongs to the batch of its ``detail.notPrinted`` deviceSns (``device_sns`` and the
    marks' deviceSns). Failed units are the ``detail.failed`` counts (rows whose registration
    failed, labels that did not print); failed runs the records with outcome failed or
    interrupted. Open intents (outcome pending) count nothing."""
    journal = journal_or_null(journal)
    batch = set(members)
    batch_dsns = set(device_sns)
    for _m, sn, dsn, _t in journal.marked(summary.group_id, summary.batch_tag, MARKS):
        batch.add(sn)
        batch_dsns.add(dsn)
    stations: dict[str | None, StationOutput] = {}
    done: dict[tuple[str | None, str], dict[str, int]] = {}  # (station, output) -> sn -> ms
    failed: list[tuple[str | None, int, int]] = []  # (station, ms, units)
    entries = journal.entries(
        operations=("register", "burn-export", "label-export"), group_id=summary.group_id
    )
    for e in entries:
        if e.outcome == "pending":
            continue
        sns = [sn for sn, _dsn in e.devices if sn and sn in batch]
        units = e.detail.get("failed")
        units = units if isinstance(units, int) and not isinstance(units, bool) else 0
        units = max(units, 0)
        if e.operation == "register":
            if e.devices:
                belongs = bool(sns)
            else:
                belongs = (e.detail.get("batchTag") or None) == summary.batch_tag
            outputs: tuple[str, ...] = ("registered",)
        elif e.operation == "burn-export":
            belongs, outputs = bool(sns), ("burned",)
        else:
            printer = "printer" in e.detail
            outputs = ("labelled", "printed") if printer else ("labelled",)
            belongs = bool(sns)
            if not sns and printer and not e.devices:  # nothing printed: its failed units
                missed = e.detail.get("notPrinted")
                belongs = isinstance(missed, list) and any(d in batch_dsns for d in missed)
        if not belongs:
            continue
        bad_run = e.outcome in ("failed", "interrupted")
        if not (sns or units or bad_run):
            continue  # nothing done for this batch (every row skipped, say)
        st = stations.get(e.station)
        if st is None:
            st = stations[e.station] = StationOutput(e.station)
        st._touch(e.time)
        st.failed_runs += bad_run
        if units:
            failed.append((e.station, e.time, units))
        for output in outputs:
            seen = done.setdefault((e.station, output), {})
            for sn in sns:
                seen.setdefault(sn, e.time)
    if not stations:
        return Production()
    lo = min(s.first for s in stations.values() if s.first is not None)
    hi = max(s.last for s in stations.values() if s.last is not None)
    unit = "hour" if hi - lo < HOURLY_BELOW_MS else "day"
    periods: dict[tuple[str, str | None], PeriodOutput] = {}

    def period(station: str | None, ms: int) -> PeriodOutput:
        key = (_period(ms, unit), station)
        if key not in periods:
            periods[key] = PeriodOutput(*key)
        return periods[key]

    handled: dict[str | None, set[str]] = {}
    for (station, output), seen in done.items():
        stations[station].counts[output] = len(seen)
        if output != "printed":
            handled.setdefault(station, set()).update(seen)
        for ms in seen.values():
            period(station, ms).counts[output] += 1
    for station, ms, units in failed:
        stations[station].counts["failed"] += units
        period(station, ms).counts["failed"] += units
    for station, handled_sns in handled.items():
        stations[station].units = len(handled_sns)
    return Production(
        unit,
        sorted(stations.values(), key=lambda s: _station_key(s.station)),
        sorted(periods.values(), key=lambda p: (p.period, _station_key(p.station))),
    )


def devices_in_state(
    backend: Backend,
    journal: Journal | NullJournal | None,
    summary: BatchSummary,
    state: str,
    *,
    page: int = 1,
    limit: int = 50,
) -> list[dict]:
    """One page of the batch's devices in ``state`` (sn, deviceSn, time of that state)."""
    if state not in STATES:
        raise InvalidArgumentError(f"unknown state {state!r}", hint="one of: " + ", ".join(STATES))
    journal = journal_or_null(journal)
    offset = (page - 1) * limit
    if state in JOURNAL_STATES:
        rows = journal.marked(summary.group_id, summary.batch_tag, (state,), limit=limit,
                              offset=offset)  # fmt: skip
        return [{"sn": sn, "deviceSn": dsn, "time": _iso(ms)} for _m, sn, dsn, ms in rows]
    test = {
        "registered": lambda d: True,
        "allocated": lambda d: d.allocated,
        "connected": lambda d: d.connect_status == "connected",
        "failed": lambda d: d.connect_status == "failed" or bool(d.allocate_error_msg),
        "reprovisioned": lambda d: d.reprovisioning,
    }[state]
    when = {
        "registered": lambda d: d.create_time,
        "allocated": lambda d: d.status.allocated_time,
        "connected": lambda d: d.status.connected_time,
        "failed": lambda d: d.update_time,
        "reprovisioned": lambda d: d.reprovision_time or d.update_time,
    }[state]
    out, seen = [], 0
    for d in batch_devices(backend, summary):
        if not test(d):
            continue
        seen += 1
        if seen <= offset:
            continue
        out.append({"sn": d.sn, "deviceSn": d.device_sn, "time": _iso(when(d))})
        if len(out) >= limit:
            break
    return out
