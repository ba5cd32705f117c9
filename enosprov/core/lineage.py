"""A device's history: its chain of replacements and its lifecycle events; retired units.

Sources: the audit journal (every backend), and on the local store its ``replacements`` table (so
a replacement done without a journal, e.g. through the emulator, still links the units). A unit is
known by its system sn and deviceSn; a chain runs from the first unit to the one in service.

A unit that was replaced is **retired** (:class:`Retirement`): it names the unit that replaced it
and the unit in service now (the end of the chain). A retired deviceSn that is registered again
(an old unit powered on with its burned file registers itself, which EnOS may accept) is a
**returning unit**: the retirement holds it in ``returned``. A deviceSn is retired until it is
the new unit of a later replacement (put back into service on purpose).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..backends.base import Backend
from ..domain.errors import EnosprovError, NotFoundError, is_not_found
from ..domain.models import Device
from ..journal import Entry, Journal, NullJournal, iso, journal_or_null

MAX_CHAIN = 1000  # a guard against a corrupted cycle in the records


def _links(backend: Backend, journal, ident: str) -> list[dict]:
    """Replacement links (oldSn, oldDeviceSn, newSn, newDeviceSn, groupId, time) that involve
    ``ident`` as the old or the new unit, oldest first."""
    links: dict[tuple[str, str], dict] = {}
    for e in journal.entries(device=ident, operations=("replace",)):
        link = _link_from_entry(e)
        if link is not None:
            links[(link["oldSn"], link["newSn"])] = link
    for r in backend.replacements(ident):
        key = (r["oldSn"], r["newSn"])
        if key not in links:
            links[key] = {**r, "time": iso(r["time"]), "journalId": None}
    return sorted(links.values(), key=lambda link: link["time"])


def replaced_by(backend: Backend, journal: Journal | NullJournal | None, ident: str) -> dict | None:
    """The link that replaced unit ``ident`` (system sn or deviceSn), or None."""
    journal = journal_or_null(journal)
    for link in _links(backend, journal, ident):
        if ident in (link["oldSn"], link["oldDeviceSn"]):
            return link
    return None


def _link_from_entry(e: Entry) -> dict | None:
    if e.outcome != "ok":
        return None
    old, new = e.detail.get("old") or {}, e.detail.get("new") or {}
    if not old.get("sn") or not new.get("sn"):
        return None
    return {
        "oldSn": old["sn"], "oldDeviceSn": old.get("deviceSn"), "newSn": new["sn"],
        "newDeviceSn": new.get("deviceSn"), "groupId": e.group_id, "time": e.iso_time,
        "journalId": e.id,
    }  # fmt: skip


def all_links(backend: Backend, journal, group_id: str | None = None) -> list[dict]:
    """Every replacement link (of ``group_id``), oldest first: the journal's ``replace``
    records and, on the local store, its ``replacements`` table."""
    journal = journal_or_null(journal)
    links: dict[tuple[str, str], dict] = {}
    for e in journal.entries(operations=("replace",), group_id=group_id):
        link = _link_from_entry(e)
        if link is not None:
            links[(link["oldSn"], link["newSn"])] = link
    for r in backend.replacement_links(group_id):
        links.setdefault((r["oldSn"], r["newSn"]), {**r, "time": iso(r["time"]), "journalId": None})
    return sorted(links.values(), key=lambda link: link["time"])


def _get(backend: Backend, sn: str) -> Device | None:
    """The device with system sn ``sn``, or None when there is none."""
    try:
        return backend.get(sn)
    except EnosprovError as exc:
        if is_not_found(exc):
            return None
        raise


def _registered(backend: Backend, group_id: str | None, device_sn: str | None) -> Device | None:
    if not group_id or not device_sn:
        return None
    try:
        return backend.find_by_device_sn(group_id, device_sn)
    except EnosprovError as exc:
        if is_not_found(exc):
            return None
        raise


def _unit(sn: str | None, device_sn: str | None) -> dict:
    return {"sn": sn, "deviceSn": device_sn}


def _device_brief(d: Device) -> dict:
    return {
        "sn": d.sn, "deviceSn": d.device_sn, "groupId": d.group_id, "batchTag": d.batch_tag_text,
        "allocateStatus": d.allocate_status, "connectStatus": d.connect_status,
        "createTime": iso(d.create_time) if d.create_time else None,
    }  # fmt: skip


@dataclass
class Retirement:
    """A unit taken out by a replacement: what replaced it, the unit in service now, and the
    returning unit when the retired deviceSn is registered again."""

    sn: str  # the retired unit's system sn
    device_sn: str
    group_id: str | None
    replaced_by: dict  # sn, deviceSn of the unit that replaced it
    replaced_at: str  # ISO time of that replacement
    in_service: dict  # sn, deviceSn: the last unit of the chain
    in_service_device: Device | None = None  # that unit as registered now (None: deleted)
    returned: Device | None = None  # the retired deviceSn registered again, under a new sn

    @property
    def status(self) -> str:
        """``returned`` (a retired unit that came back) or ``retired``."""
        return "returned" if self.returned is not None else "retired"

    @property
    def date(self) -> str:
        return self.replaced_at[:10]

    def in_service_text(self) -> str:
        u = self.in_service
        text = f"{u['deviceSn']} ({u['sn']})"
        return text if self.in_service_device is not None else text + ", no longer registered"

    def describe(self) -> str:
        """``replaced by NEW (sn) on DATE; in service: NEW``."""
        by = self.replaced_by
        return (
            f"replaced by {by['deviceSn']} ({by['sn']}) on {self.date}; in service: "
            f"{self.in_service['deviceSn']}"
        )

    def returned_text(self) -> str:
        """The loud line for a returning unit (empty when it did not come back)."""
        r = self.returned
        if r is None:
            return ""
        when = iso(r.create_time)[:10] if r.create_time else "?"
        state = "connected" if r.connect_status == "connected" else r.allocate_status
        by = self.replaced_by
        return (
            f"RETIRED UNIT CAME BACK: {self.device_sn} registered again on {when} as sn {r.sn} "
            f"({state}, batch {r.batch_tag_text or '(none)'}); it was replaced by "
            f"{by['deviceSn']} ({by['sn']}) on {self.date}; in service: {self.in_service_text()}"
        )

    def advice(self) -> str:
        """What to do about a returning unit."""
        r = self.returned
        if r is None:
            return ""
        cur = self.in_service["deviceSn"]
        return (
            f"take the old unit out of service and delete its new registration (enosprov "
            f"devices delete {r.sn} --yes): {cur} stays in service; to put the old unit back "
            f"into service instead, delete that registration, then replace again (enosprov "
            f"replace {cur} --new-device-sn {self.device_sn})"
        )

    def to_dict(self) -> dict:
        cur = self.in_service_device
        in_service = {
            **self.in_service,
            "registered": cur is not None,
            "allocateStatus": cur.allocate_status if cur else None,
            "connectStatus": cur.connect_status if cur else None,
        }
        return {
            "status": self.status,
            "sn": self.sn,
            "deviceSn": self.device_sn,
            "groupId": self.group_id,
            "replacedBy": dict(self.replaced_by),
            "replacedAt": self.replaced_at,
            "inService": in_service,
            "message": self.describe(),
            "returned": _device_brief(self.returned) if self.returned is not None else None,
            "returnedMessage": self.returned_text() or None,
            "advice": self.advice() or None,
        }


def _in_service(backend: Backend, journal, link: dict) -> tuple[dict, Device | None]:
    """The last unit of the chain that ``link`` is part of, and that unit as registered now."""
    unit = _unit(link["newSn"], link["newDeviceSn"])
    seen = {link["oldSn"], link["newSn"]}
    while len(seen) < MAX_CHAIN:
        nxt = _replaced(backend, journal, unit)
        if nxt is None or nxt["newSn"] in seen:
            break
        seen.add(nxt["newSn"])
        unit = _unit(nxt["newSn"], nxt["newDeviceSn"])
    return unit, _get(backend, unit["sn"])


def _superseded(backend: Backend, journal, link: dict) -> bool:
    """The retired deviceSn of ``link`` was put back into service: it is the new unit of a
    later replacement in the same group."""
    for other in _links(backend, journal, link["oldDeviceSn"]):
        if (
            other["newDeviceSn"] == link["oldDeviceSn"]
            and other["groupId"] == link["groupId"]
            and other["time"] > link["time"]
        ):
            return True
    return False


def retirement_from_link(
    backend: Backend, journal, link: dict, *, returned: Device | Literal[True] | None = True
) -> Retirement:
    """The retirement ``link`` records. ``returned``: the registered device of the retired
    deviceSn when the caller has it (or None: not registered); True looks it up."""
    journal = journal_or_null(journal)
    unit, device = _in_service(backend, journal, link)
    if returned is True:
        returned = _registered(backend, link["groupId"], link["oldDeviceSn"])
    if returned is not None and (returned.sn == link["oldSn"] or returned.sn == unit["sn"]):
        returned = None  # the unit itself (not removed yet), not a new registration
    return Retirement(
        link["oldSn"], link["oldDeviceSn"], link["groupId"],
        _unit(link["newSn"], link["newDeviceSn"]), link["time"], unit, device,
        returned or None,
    )  # fmt: skip


def retirement(
    backend: Backend,
    journal: Journal | NullJournal | None,
    ident: str,
    *,
    group_id: str | None = None,
    device: Device | None = None,
) -> Retirement | None:
    """The retirement of unit ``ident`` (a system sn or deviceSn), or None when it is not a
    retired unit. ``device``: the device now registered under that deviceSn, when the caller
    found it (the returning unit); else it is looked up."""
    journal = journal_or_null(journal)
    links = [
        link for link in _links(backend, journal, ident)
        if ident in (link["oldSn"], link["oldDeviceSn"])
        and (group_id is None or link["groupId"] == group_id)
    ]  # fmt: skip
    if not links:
        return None
    link = links[-1]
    if _superseded(backend, journal, link):
        return None
    if device is not None and device.sn == link["oldSn"]:
        return None  # the unit is still registered under its own sn: not retired after all
    found: Device | Literal[True] = device if device is not None else True
    return retirement_from_link(backend, journal, link, returned=found)


def retired_links(backend: Backend, journal, group_id: str | None = None) -> dict[tuple, dict]:
    """The retired units (of ``group_id``): (groupId, deviceSn) -> the link that retired it
    (the latest), leaving out deviceSns put back into service by a later replacement."""
    out: dict[tuple, dict] = {}
    for link in all_links(backend, journal, group_id):  # oldest first: later ones win
        out[(link["groupId"], link["oldDeviceSn"])] = link
        out.pop((link["groupId"], link["newDeviceSn"]), None)
    return out


def retired_units(
    backend: Backend, journal, *, group_id: str | None = None, device_sns=()
) -> list[Retirement]:
    """Every retired unit (of ``group_id``; only ``device_sns`` when given), each with the unit
    in service and its returning registration, oldest replacement first."""
    journal = journal_or_null(journal)
    wanted = set(device_sns)
    links = sorted(retired_links(backend, journal, group_id).values(), key=lambda x: x["time"])
    return [
        retirement_from_link(backend, journal, link) for link in links
        if not wanted or link["oldDeviceSn"] in wanted or link["oldSn"] in wanted
    ]  # fmt: skip


@dataclass
class UnitLookup:
    """What a device reference names: the device registered now, and its retirement (a retired
    unit, or a returning one)."""

    device: Device | None
    retired: Retirement | None

    def to_dict(self) -> dict:
        if self.device is not None:
            return {**self.device.to_dict(), "retired": self.retired and self.retired.to_dict()}
        r = self.retired
        if r is None:  # look_up_unit gives the device, or else its retirement
            raise ValueError("a UnitLookup names a registered device or a retired unit")
        return {"sn": r.sn, "deviceSn": r.device_sn, "groupId": r.group_id, "state": "retired",
                "retired": r.to_dict()}  # fmt: skip


def look_up_unit(backend: Backend, journal, ident: str, group: str | None = None) -> UnitLookup:
    """The device ``ident`` (system sn or deviceSn) names, and whether it is retired; a unit
    that was replaced and is not registered any more comes back with ``device`` None.
    NotFoundError when neither the backend nor the records know it."""
    from .device_refs import find_one

    journal = journal_or_null(journal)
    group_id = backend.get_group(group).group_id if group else None
    try:
        dev = find_one(backend, ident, group)
    except NotFoundError:
        found = retirement(backend, journal, ident, group_id=group_id)
        if found is None:
            raise
        return UnitLookup(None, found)
    return UnitLookup(dev, retirement(backend, journal, dev.device_sn, group_id=dev.group_id,
                                      device=dev))  # fmt: skip


def _replaced(backend: Backend, journal, unit: dict) -> dict | None:
    for link in _links(backend, journal, unit["sn"]):
        if link["oldSn"] == unit["sn"]:
            return link
    return None


def _predecessor(backend: Backend, journal, unit: dict) -> dict | None:
    for link in _links(backend, journal, unit["sn"]):
        if link["newSn"] == unit["sn"]:
            return link
    return None


@dataclass
class DeviceHistory:
    ident: str
    current: Device | None  # the unit in service at the end of the chain (None: deleted)
    # units oldest first: sn, deviceSn, replacedBy, replacedAt, retired, returnedAs (the sn of
    # a retired unit's new registration when it came back)
    chain: list[dict]
    events: list[Entry] = field(default_factory=list)
    retired: Retirement | None = None  # the unit asked about, when it is a retired unit
    returned: list[Retirement] = field(default_factory=list)  # retired units that came back

    def to_dict(self) -> dict:
        return {
            "device": self.ident,
            "current": self.current.to_dict() if self.current else None,
            "chain": self.chain,
            "retired": self.retired.to_dict() if self.retired else None,
            "returned": [r.to_dict() for r in self.returned],
            "events": [_event(e, self.chain) for e in self.events],
        }


def _event(e: Entry, chain: list[dict]) -> dict:
    mine = {u["sn"] for u in chain} | {u["deviceSn"] for u in chain}
    units = [{"sn": s, "deviceSn": d} for s, d in e.devices if s in mine or d in mine]
    return {
        "id": e.id,
        "time": e.iso_time,
        "operation": e.operation,
        "outcome": e.outcome,
        "devices": units,
        "summary": summary(e, chain),
        "user": e.user,
        "host": e.host,
        "station": e.station,
        "requestId": e.request_id,
    }


def summary(e: Entry, chain: Sequence[dict] = ()) -> str:
    """One line saying what a journal record did."""
    d = e.detail
    op = e.operation
    if op == "replace":
        old, new = d.get("old") or {}, d.get("new") or {}
        text = f"{old.get('deviceSn')} -> {new.get('deviceSn')}"
        if d.get("allocation"):
            text += f", took over {d['allocation']}"
        return text + (" (new unit registered)" if d.get("registeredNew") else "")
    if op == "bootstrap":
        text = f"device called {d.get('call', 'bootstrap')}"
        back = d.get("retiredUnitReturned")
        if isinstance(back, dict):
            text = (
                f"RETIRED UNIT CAME BACK: {text} (replaced by {back.get('replacedBy')} on "
                f"{str(back.get('replacedAt') or '')[:10]}; in service: {back.get('inService')})"
            )
        return text
    if op == "reprovision":
        t = d.get("target") or {}
        text = f"reset for {t.get('regionId')} / {t.get('orgId')}"
        mine = {u["sn"] for u in chain}
        moves = [m for m in d.get("from") or [] if not mine or m[0] in mine]
        if len(moves) == 1:
            text += f" (was {moves[0][1]} / {moves[0][2]})"
        method = d.get("reprovisionMethod")
        if method:
            text += ", master data " + ("kept" if method == "migrate" else "cleared")
        return text
    if op == "register":
        return f"registered from {d.get('file', '?')} (batch order {d.get('batchOrder', '-')})"
    if op == "burn-export":
        return f"credential file ({d.get('format', '?')}) in {d.get('outDir', '?')}"
    if op == "label-export":
        return f"label ({d.get('format', '?')}) in {d.get('outDir', '?')}"
    parts = [f"{k}={v}" for k, v in sorted(d.items()) if isinstance(v, str | int | float)]
    return ", ".join(parts[:4])


def device_history(
    backend: Backend,
    ident: str,
    *,
    group: str | None = None,
    journal: Journal | NullJournal | None = None,
) -> DeviceHistory:
    """The chain of units ``ident`` belongs to and every journal event of those units."""
    from .device_refs import find_one

    journal = journal_or_null(journal)
    current: Device | None = None
    came_back: Retirement | None = None
    unit: dict | None
    try:
        current = find_one(backend, ident, group)
        unit = {"sn": current.sn, "deviceSn": current.device_sn}
        came_back = retirement(backend, journal, current.device_sn, group_id=current.group_id,
                               device=current)  # fmt: skip
        if came_back is not None and came_back.returned is not None:
            # a retired unit registered again: its chain is the retired unit's
            unit, current = {"sn": came_back.sn, "deviceSn": came_back.device_sn}, None
        else:
            came_back = None
    except NotFoundError as missed:
        unit = _unit_from_records(backend, journal, ident)
        if unit is None:
            hint = "give a system sn or deviceSn (`enosprov devices list`, `enosprov log`)"
            raise NotFoundError(
                f"no device {ident!r} in the store or the audit journal",
                hint=missed.hint if "did you mean" in (missed.hint or "") else hint,
            ) from None
    chain: list[dict[str, Any]] = [dict(unit, replacedBy=None, replacedAt=None)]
    seen = {unit["sn"]}
    while len(chain) < MAX_CHAIN:  # backwards: whom did the first unit replace?
        link = _predecessor(backend, journal, chain[0])
        if link is None or link["oldSn"] in seen:
            break
        seen.add(link["oldSn"])
        chain.insert(0, {"sn": link["oldSn"], "deviceSn": link["oldDeviceSn"],
                         "replacedBy": link["newSn"], "replacedAt": link["time"]})  # fmt: skip
    while len(chain) < MAX_CHAIN:  # forwards: what replaced the last unit?
        link = _replaced(backend, journal, chain[-1])
        if link is None or link["newSn"] in seen:
            break
        seen.add(link["newSn"])
        chain[-1].update(replacedBy=link["newSn"], replacedAt=link["time"])
        chain.append({"sn": link["newSn"], "deviceSn": link["newDeviceSn"], "replacedBy": None,
                      "replacedAt": None})  # fmt: skip
    last = chain[-1]
    if current is None or current.sn != last["sn"]:
        current = _get(backend, last["sn"])
    asked: Retirement | None = came_back
    returned: list[Retirement] = []
    returned_sns: list[str] = []  # the new registrations of the retired units that came back
    for u in chain:
        u.update(retired=False, returnedAs=None)
    for u in chain[:-1]:  # replaced units: retired, and perhaps registered again
        r = came_back if came_back is not None and came_back.sn == u["sn"] else None
        r = r or retirement(backend, journal, u["sn"])
        if r is None:
            continue
        u["retired"] = True
        if r.returned is not None:
            u["returnedAs"] = r.returned.sn
            returned.append(r)
            returned_sns.append(r.returned.sn)
        if asked is None and ident in (u["sn"], u["deviceSn"]):
            asked = r
    group_ids = {current.group_id} if current else set()
    idents = [u["sn"] for u in chain] + returned_sns
    sns = set(idents)
    events: list[Entry] = []
    for e in journal.entries(device=idents + [u["deviceSn"] for u in chain if u["deviceSn"]]):
        if any(s in sns for s, _d in e.devices) or not group_ids or e.group_id in group_ids:
            events.append(e)
    return DeviceHistory(ident, current, chain, events, asked, returned)


def _unit_from_records(backend: Backend, journal, ident: str) -> dict | None:
    for link in _links(backend, journal, ident):
        if ident in (link["oldSn"], link["oldDeviceSn"]):
            return {"sn": link["oldSn"], "deviceSn": link["oldDeviceSn"]}
        if ident in (link["newSn"], link["newDeviceSn"]):
            return {"sn": link["newSn"], "deviceSn": link["newDeviceSn"]}
    for e in journal.entries(device=ident, newest_first=True, limit=1):
        for sn, device_sn in e.devices:
            if ident in (sn, device_sn):
                return {"sn": sn, "deviceSn": device_sn}
    return None
