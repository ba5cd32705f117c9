"""The device-side DPS calls on the local store: bootstrap and get connection info."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..domain import rules, signing
from ..domain.errors import AuthError, RefusedError, StoreError, enos_error
from ..domain.models import ConnectionInfo, NewDevice, RegistrationGroup, canonical_json
from . import local_groups
from .base import Resigner

if TYPE_CHECKING:
    from .local import LocalBackend


def _check_signature(
    backend: LocalBackend,
    group: RegistrationGroup,
    identity: str,
    timestamp: int,
    sign: str,
    sign_method: str,
) -> None:
    if (sign_method or "sha256").lower() != "sha256":
        raise enos_error(99400, f"Invalid Argument signMethod {sign_method!r}: only sha256")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise enos_error(99400, "Invalid Argument timestamp must be epoch milliseconds")
    skew = backend.clock_skew_ms
    if skew and abs(time.time() * 1000 - timestamp) > skew:
        raise AuthError(
            "Verify not pass: the signature timestamp is outside the accepted clock skew",
            hint=f"set the device clock; accepted skew is {skew // 1000} s",
            enos_code=35601,
        )
    if not signing.verify(group.sign_scheme, identity, timestamp, group.group_secret, sign):
        raise AuthError(
            "Verify not pass: the signature does not match the group secret",
            hint=f"group {group.group_id} signs with scheme {group.sign_scheme}",
            enos_code=35601,
        )


def bootstrap(
    backend: LocalBackend,
    *,
    group_id: str,
    device_sn: str,
    timestamp: int,
    sign: str,
    sign_method: str = "sha256",
    device_name: dict | None = None,
    timezone: str | None = None,
    resign: Resigner | None = None,  # unused: an in-process call is never retried
    refuse_retired: bool = False,
) -> ConnectionInfo:
    """Register the device if unknown, allocate it if needed, mark it connected, return its triple.

    Every body field of Bootstrap Device is required, deviceName (a StringI18n with a non-empty
    defaultValue) and timezone (a UTC offset or an IANA name) included. They become the master
    data of a device that registers itself; a registered device keeps its own.

    ``refuse_retired`` [ENOSPROV]: the local store's own rule, off unless asked for. A deviceSn
    that a replacement retired (the ``replacements`` table), and that is not registered again,
    may not register itself: RefusedError naming the unit in service, unless the group's
    ``allow_retired_bootstrap`` is set. EnOS documents no such rule (it may accept the old unit),
    so the emulator, which answers /dev/bootstrap through this function, never asks for it; the
    device simulator asks for it on the local store (enosprov.device.bootstrap_device).
    """
    if not group_id or not device_sn:
        raise enos_error(99400, "Invalid Argument groupId/deviceSn is missing")
    _check_name_and_timezone(device_name, timezone)
    with backend.write() as conn:
        group = backend._group_for_device(group_id, conn)
        _check_signature(backend, group, device_sn, timestamp, sign, sign_method)
        dev = backend.find_by_device_sn(group.group_id, device_sn)
        if dev is None and refuse_retired and not group.allow_retired_bootstrap:
            _refuse_retired(conn, group, device_sn)
        if dev is None:
            problem = rules.sn_problem(device_sn, group.sn_pattern)
            if problem:
                raise enos_error(99400, f"Invalid Argument deviceSn: {problem}")
            data: dict = {"deviceName": device_name, "timezone": timezone}
            order = backend._next_batch_order(conn)
            record = NewDevice(device_sn=device_sn, device_data=data)
            backend._insert(conn, group, [(record, canonical_json(data))], order)
            dev = backend.find_by_device_sn(group.group_id, device_sn)
            if dev is None:  # inserted just above, in this transaction: never the case
                raise StoreError(
                    f"store {backend.where}: device {device_sn} not found after its insert"
                )
        if not dev.allocated:
            backend._allocate(conn, dev, group)
        return _connected(backend, conn, dev.sn, group)


def _refuse_retired(conn, group: RegistrationGroup, device_sn: str) -> None:
    """RefusedError when ``device_sn`` was retired by a replacement in ``group`` (and did not
    come back into service as the new unit of a later replacement)."""
    from ..journal import iso

    retired = conn.execute(
        "SELECT old_sn, new_sn, new_device_sn, time FROM replacements WHERE group_id=? AND "
        "old_device_sn=? ORDER BY time DESC LIMIT 1",
        (group.group_id, device_sn),
    ).fetchone()
    if retired is None:
        return
    old_sn, new_sn, new_device_sn, when = retired
    back = conn.execute(
        "SELECT 1 FROM replacements WHERE group_id=? AND new_device_sn=? AND time>? LIMIT 1",
        (group.group_id, device_sn, when),
    ).fetchone()
    if back is not None:
        return
    current = (new_sn, new_device_sn)
    seen = {old_sn, new_sn}
    while True:  # the unit in service: the end of the chain
        nxt = conn.execute(
            "SELECT new_sn, new_device_sn FROM replacements WHERE old_sn=? "
            "ORDER BY time DESC LIMIT 1",
            (current[0],),
        ).fetchone()
        if nxt is None or nxt[0] in seen:
            break
        seen.add(nxt[0])
        current = tuple(nxt)
    registered = conn.execute("SELECT 1 FROM devices WHERE sn=?", (current[0],)).fetchone()
    in_service = f"{current[1]} ({current[0]})" + ("" if registered else ", no longer registered")
    raise RefusedError(
        f"{device_sn} is a retired unit: it was replaced by {new_device_sn} ({new_sn}) on "
        f"{iso(when)[:10]}; in service: {in_service}. Its bootstrap is refused: a retired unit "
        "does not register itself again",
        hint=f"take the old unit out of service ({current[1]} took its place); a group created "
        "with --allow-retired-bootstrap accepts returning units (an enosprov rule of the local "
        "store, not an EnOS one)",
    )


def replacement_links(backend: LocalBackend, group_id: str | None = None) -> list[dict]:
    """Every replacement recorded in the store (of ``group_id``), oldest first: oldSn,
    oldDeviceSn, newSn, newDeviceSn, groupId, time (epoch ms)."""
    sql = "SELECT old_sn, old_device_sn, new_sn, new_device_sn, group_id, time FROM replacements"
    rows = backend.conn.execute(
        sql + (" WHERE group_id=? ORDER BY time" if group_id else " ORDER BY time"),
        (group_id,) if group_id else (),
    )
    keys = ("oldSn", "oldDeviceSn", "newSn", "newDeviceSn", "groupId", "time")
    return [dict(zip(keys, r)) for r in rows]


def get_connection_info(
    backend: LocalBackend,
    *,
    sn: str,
    timestamp: int,
    sign: str,
    sign_method: str = "sha256",
    resign: Resigner | None = None,  # unused: an in-process call is never retried
) -> ConnectionInfo:
    """Connection info of a registered, allocated device."""
    if not sn:
        raise enos_error(35400, "OrgId/sn is required")
    with backend.write() as conn:
        dev = backend._device_row(conn, sn)
        group = local_groups.get_group(conn, dev.group_id, by_name=False)
        _check_signature(backend, group, sn, timestamp, sign, sign_method)
        if not dev.allocated:
            raise enos_error(
                10000,
                f"[{sn}] not allocated",
                hint="allocate the device, or let it call bootstrap first",
            )
        return _connected(backend, conn, sn, group)


def _connected(backend: LocalBackend, conn, sn: str, group: RegistrationGroup) -> ConnectionInfo:
    now = int(time.time() * 1000)
    backend._set(
        conn,
        sn,
        {
            "connect_status": "connected",
            "current_status": "connected",
            "connected_time": now,
        },
    )
    return backend.stored_connection_info(backend._device_row(conn, sn), group)


def _check_name_and_timezone(device_name: dict | None, timezone: str | None) -> None:
    """The deviceName and timezone of a Bootstrap Device request: both required (99400)."""
    default = device_name.get("defaultValue") if isinstance(device_name, dict) else device_name
    if default is None or (isinstance(default, str) and not default.strip()):
        raise enos_error(99400, "Invalid Argument deviceName:deviceName is missing")
    problem = rules.builtin_value_problem("deviceName", device_name)
    if problem:
        raise enos_error(99400, f"Invalid Argument deviceName: {problem}")
    if not timezone:
        raise enos_error(99400, "Invalid Argument timezone:timezone is missing")
    problem = rules.timezone_problem(timezone) if isinstance(timezone, str) else "not a String"
    if problem:
        raise enos_error(99400, f"Invalid Argument timezone: {problem}")
