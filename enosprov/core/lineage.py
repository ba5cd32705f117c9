"""A device's history: its chain of replacements and its lifecycle events.

Sources: the audit journal (every backend), and on the local store its ``replacements`` table (so
a replacement done without a journal, e.g. through the emulator, still links the units). A unit is
known by its system sn and deviceSn; a chain runs from the first unit to the one in service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import NotFoundError
from ..journal import Entry, Journal, NullJournal, iso, journal_or_null
from ..models import Device

MAX_CHAIN = 1000  # a guard against a corrupted cycle in the records


def _links(backend, journal, ident: str) -> list[dict]:
    """Replacement links (oldSn, oldDeviceSn, newSn, newDeviceSn, groupId, time) that involve
    ``ident`` as the old or the new unit, oldest first."""
    links: dict[tuple[str, str], dict] = {}
    for e in journal.entries(device=ident, operations=("replace",)):
        if e.outcome != "ok":
            continue
        old, new = e.detail.get("old") or {}, e.detail.get("new") or {}
        if not old.get("sn") or not new.get("sn"):
            continue
        links[(old["sn"], new["sn"])] = {
            "oldSn": old["sn"], "oldDeviceSn": old.get("deviceSn"), "newSn": new["sn"],
            "newDeviceSn": new.get("deviceSn"), "groupId": e.group_id, "time": e.iso_time,
            "journalId": e.id,
        }  # fmt: skip
    for r in getattr(backend, "replacements", lambda _i: [])(ident):
        key = (r["oldSn"], r["newSn"])
        if key not in links:
            links[key] = {**r, "time": iso(r["time"]), "journalId": None}
    return sorted(links.values(), key=lambda link: link["time"])


def replaced_by(backend, journal: Journal | NullJournal | None, ident: str) -> dict | None:
    """The link that replaced unit ``ident`` (system sn or deviceSn), or None."""
    journal = journal_or_null(journal)
    for link in _links(backend, journal, ident):
        if ident in (link["oldSn"], link["oldDeviceSn"]):
            return link
    return None


def _replaced(backend, journal, unit: dict) -> dict | None:
    for link in _links(backend, journal, unit["sn"]):
        if link["oldSn"] == unit["sn"]:
            return link
    return None


def _predecessor(backend, journal, unit: dict) -> dict | None:
    for link in _links(backend, journal, unit["sn"]):
        if link["newSn"] == unit["sn"]:
            return link
    return None


@dataclass
class DeviceHistory:
    ident: str
    current: Device | None  # the unit in service at the end of the chain (None: deleted)
    chain: list[dict]  # units oldest first: sn, deviceSn, replacedBy, replacedAt
    events: list[Entry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "device": self.ident,
            "current": self.current.to_dict() if self.current else None,
            "chain": self.chain,
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


def summary(e: Entry, chain: list[dict] = ()) -> str:
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
        return f"device called {d.get('call', 'bootstrap')}"
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
    backend, ident: str, *, group: str | None = None, journal: Journal | None = None
) -> DeviceHistory:
    """The chain of units ``ident`` belongs to and every journal event of those units."""
    from .. import api

    journal = journal_or_null(journal)
    current: Device | None = None
    try:
        current = api.find_device(backend, ident, group)
        unit = {"sn": current.sn, "deviceSn": current.device_sn}
    except NotFoundError:
        unit = _unit_from_records(backend, journal, ident)
        if unit is None:
            raise NotFoundError(
                f"no device {ident!r} in the store or the audit journal",
                hint="give a system sn or deviceSn (`enosprov devices list`, `enosprov log`)",
            ) from None
    chain = [dict(unit, replacedBy=None, replacedAt=None)]
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
        try:
            current = backend.get(last["sn"])
        except NotFoundError:
            current = None
    group_ids = {current.group_id} if current else set()
    idents = [u["sn"] for u in chain]
    sns = set(idents)
    events = []
    for e in journal.entries(device=idents + [u["deviceSn"] for u in chain if u["deviceSn"]]):
        if any(s in sns for s, _d in e.devices) or not group_ids or e.group_id in group_ids:
            events.append(e)
    return DeviceHistory(ident, current, chain, events)


def _unit_from_records(backend, journal, ident: str) -> dict | None:
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
