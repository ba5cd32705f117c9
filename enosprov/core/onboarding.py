"""On-site onboarding of scanned devices: `qr scan --onboard`.

The installer scans a label and adds what only the site knows: the device's name, its
timezone, master data values (``--set key=value``) and, optionally, the environment/OU to
allocate it to. Everything is validated first, for every device; only then is each device
updated (Update Device) and allocated (Allocate Device). Allocation is idempotent: a device
that is already allocated stays where it is, and the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..domain import rules
from ..domain.errors import InvalidArgumentError, RefusedError
from ..domain.models import (
    BUILTIN_KEYS,
    BUILTIN_TYPES,
    SYSTEM_OWNED_KEYS,
    Device,
    RegistrationGroup,
    string_i18n,
)
from ..domain.regions import region_problem
from ..journal import Journal, journal_or_null


@dataclass
class OnboardPlan:
    """The validated changes for one device (nothing applied yet)."""

    device: Device
    device_data: dict  # what Update Device receives (empty: no update)
    region_id: str | None  # requested target (None: the group's)
    org_id: str | None
    target: tuple[str, str] | None  # effective target when the device is not yet allocated


@dataclass
class OnboardResult:
    device: Device  # as it is after onboarding
    updated: dict = field(default_factory=dict)
    allocated_now: bool = False
    note: str | None = None

    def to_dict(self) -> dict:
        d = self.device
        return {
            "sn": d.sn, "groupId": d.group_id, "deviceSn": d.device_sn, "updated": self.updated,
            "allocatedNow": self.allocated_now, "allocateStatus": d.allocate_status,
            "regionId": d.region_id, "orgId": d.org_id, "note": self.note,
        }  # fmt: skip


def parse_sets(items: Sequence[str] | None) -> dict[str, str]:
    """``key=value`` strings (``--set``) as a dict; InvalidArgumentError for a malformed one."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgumentError(
                f"--set {item!r} is not key=value", hint="e.g. --set max_capacity=60"
            )
        if key in out and out[key] != value:
            raise InvalidArgumentError(f"--set {key} is given twice with different values")
        out[key] = value
    return out


def name_value(name: str) -> tuple[dict | None, str | None]:
    """(deviceName as StringI18n, None), or (None, why it is not acceptable)."""
    name = name.strip()
    if not name:
        return None, "deviceName is empty"
    if len(name) > rules.DEVICE_NAME_MAX:
        return None, (
            f"deviceName is {len(name)} characters long; the limit is {rules.DEVICE_NAME_MAX}"
        )
    return string_i18n(name), None


def timezone_value(timezone: str) -> tuple[str | None, str | None]:
    """(the timezone, None), or (None, why it is not acceptable)."""
    timezone = timezone.strip()
    problem = rules.timezone_problem(timezone)
    return (None, problem) if problem else (timezone, None)


_OPTION_FOR = {"deviceName": "--name", "timezone": "--timezone", "regionId": "--region",
               "orgId": "--org"}  # fmt: skip


def builtin_value(key: str, text: str) -> tuple[object, str | None]:
    """A built-in master data value (models.BUILTIN_TYPES) from command-line text:
    (value, None), or (None, why it is not acceptable)."""
    if key == "deviceName":
        return name_value(text)
    if key == "timezone":
        return timezone_value(text)
    text = text.strip()
    if BUILTIN_TYPES[key] == "Boolean":
        flag = {"true": True, "false": False}.get(text.lower())
        return (None, f"{key} takes true or false, not {text!r}") if flag is None else (flag, None)
    return (text, None) if text else (None, f"{key}: the value is empty")


def _put(data: dict, problems: list[str], key: str, value, problem: str | None) -> None:
    if problem:
        problems.append(problem)
    else:
        data[key] = value


def convert_sets(
    backend: Backend, group: RegistrationGroup, values: dict[str, str], *, builtins: bool = False
) -> tuple[dict, list[str]]:
    """``--set`` values typed by the group's master data definitions: (deviceData, problems).

    ``builtins`` also accepts deviceName, timezone, regionId and orgId (checked as --name,
    --timezone, --region and --org are); otherwise they are refused with a pointer to those
    options. deviceSn (the identity) and the keys EnOS owns (assetId) are always refused.
    """
    data: dict = {}
    problems: list[str] = []
    attrs = None
    for key, raw in values.items():
        if key in BUILTIN_KEYS:
            if key == "deviceSn":
                problems.append("--set deviceSn: a device's serial number cannot be changed")
            elif key in SYSTEM_OWNED_KEYS:
                problems.append(f"--set {key}: {key} is set by EnOS and cannot be written")
            elif not builtins and key in _OPTION_FOR:
                problems.append(f"--set {key}: use {_OPTION_FOR[key]}")
            else:
                _put(data, problems, key, *builtin_value(key, raw))
            continue
        if attrs is None:
            mdg = backend.get_masterdata_group(group.masterdata_group_id)
            attrs = {a.identifier: a for a in mdg.attributes}
        attr = attrs.get(key)
        if attr is None:
            problems.append(not_a_key(key, group, attrs))
            continue
        text = raw.strip()
        if not text:
            problems.append(f"{key}: the value is empty")
            continue
        value, problem = rules.converter_for(attr)(text)
        if problem:
            problems.append(f"{key}: {problem}")
        else:
            data[key] = value
    return data, problems


def not_a_key(key: str, group: RegistrationGroup, attrs: Mapping[str, object]) -> str:
    """The problem of a key that is not one of the group's master data (``attrs``)."""
    return (
        f"{key!r} is not a master data key of group {group.group_id} "
        f"(known: {', '.join(attrs) or 'none'})"
    )


def plan_onboarding(
    backend: Backend,
    device: Device,
    *,
    name: str | None = None,
    timezone: str | None = None,
    values: dict[str, str] | None = None,
    region_id: str | None = None,
    org_id: str | None = None,
) -> OnboardPlan:
    """Validate the on-site details for one device; InvalidArgumentError listing every problem."""
    problems: list[str] = []
    data: dict = {}
    if name is not None:
        _put(data, problems, "deviceName", *name_value(name))
    if timezone is not None:
        _put(data, problems, "timezone", *timezone_value(timezone))
    group = backend.get_group(device.group_id)
    if values:
        converted, more = convert_sets(backend, group, values)
        data.update(converted)
        problems.extend(more)
    target = None
    if bool(region_id) != bool(org_id):
        problems.append("an allocation target needs both --region and --org")
    elif region_id and (problem := region_problem(region_id)):
        problems.append(problem)
    elif not device.allocated:
        region, org = region_id or group.region_id, org_id or group.org_id
        if not region or not org:
            problems.append(
                f"registration group {group.group_id} has no allocation target: "
                "give --region and --org"
            )
        else:
            target = (region, org)
    if problems:
        raise InvalidArgumentError(
            f"cannot onboard {device.group_id}/{device.device_sn}: " + "; ".join(problems),
            hint="nothing was changed",
        )
    return OnboardPlan(device, data, region_id, org_id, target)


def apply_onboarding(
    backend: Backend, plan: OnboardPlan, *, journal: Journal | None = None
) -> OnboardResult:
    """Update then allocate one device as planned; one "onboard" record in ``journal``."""
    (result,) = _apply_all(backend, [plan], journal)
    return result


def _apply_all(backend: Backend, plans: Sequence[OnboardPlan], journal: Journal | None):
    """Apply the plans in order, as one "onboard" journal record listing the devices changed."""
    first = plans[0]
    data_keys = sorted({k for p in plans for k in p.device_data} - set(BUILTIN_KEYS))
    detail = {
        "masterDataKeys": data_keys,
        "deviceName": any("deviceName" in p.device_data for p in plans),
        "timezone": any("timezone" in p.device_data for p in plans),
        "regionId": first.region_id,
        "orgId": first.org_id,
        "requested": "update deviceData, then allocate"
        + (" with deviceData.regionId/orgId" if first.region_id else ""),
    }
    results: list[OnboardResult] = []
    with journal_or_null(journal).begin(
        "onboard", group_id=_common_group(p.device for p in plans), detail=detail
    ) as rec:
        try:
            for plan in plans:
                results.append(_apply(backend, plan, rec))
        finally:
            rec.detail["allocatedNow"] = sum(r.allocated_now for r in results)
        if len(plans) == 1:  # the one request that allocated it (its update came before)
            rec.request_id = backend.last_request_id
    return results


def _common_group(devices) -> str | None:
    groups = {d.group_id for d in devices}
    return groups.pop() if len(groups) == 1 else None


def _apply(backend: Backend, plan: OnboardPlan, rec) -> OnboardResult:
    dev = plan.device
    if plan.device_data:  # the full map: right whether EnOS merges or replaces deviceData
        full = {**dev.copyable_data(), **plan.device_data, "deviceSn": dev.device_sn}
        backend.update(dev.sn, device_data=full)
        rec.add(dev.sn, dev.device_sn)
    was_allocated = dev.allocated
    target = None
    if plan.region_id and plan.org_id and not was_allocated:
        target = {"regionId": plan.region_id, "orgId": plan.org_id}  # documented built-ins
    after = backend.allocate(dev.sn, device_data=target)
    note = None
    if was_allocated:
        note = f"already allocated to {after.region_id} / {after.org_id}; it stays there"
        wanted = (plan.region_id, plan.org_id)
        if any(w and w != have for w, have in zip(wanted, (after.region_id, after.org_id))):
            note += f" (not moved to {plan.region_id or '-'} / {plan.org_id or '-'})"
    elif not plan.device_data:
        rec.add(dev.sn, dev.device_sn)
    return OnboardResult(after, dict(plan.device_data), not was_allocated, note)


def scanned_devices(codes) -> list[Device]:
    """The devices of scanned codes (qr.scan.ScannedCode) to onboard, each once. A retired unit
    (its label names a unit a replacement took out, or a returning unit registered again under
    a retired deviceSn) is refused: RefusedError naming the unit in service; nothing changes."""
    retired = [c.retired for c in codes if c.retired is not None]
    if retired:
        first = retired[0]
        names = "; ".join(
            f"{r.device_sn} is a retired unit ({r.describe()})"
            + (f", registered again as sn {r.returned.sn}" if r.returned is not None else "")
            for r in retired
        )
        raise RefusedError(
            f"not onboarding a retired unit: {names}; nothing was onboarded",
            hint=f"onboard the unit in service ({first.in_service['deviceSn']}: scan its "
            "label), and take the old unit out of service",
        )
    return list({c.device.sn: c.device for c in codes if c.device is not None}.values())


def onboard_devices(
    backend: Backend,
    devices: Sequence[Device],
    *,
    name: str | None = None,
    timezone: str | None = None,
    values: dict[str, str] | None = None,
    region_id: str | None = None,
    org_id: str | None = None,
    journal: Journal | None = None,
) -> list[OnboardResult]:
    """Validate every device first (nothing changes if one fails), then update and allocate
    each. A device listed twice is onboarded once. ``name`` needs exactly one device.
    One "onboard" record in ``journal`` lists the devices updated or allocated."""
    unique = list({d.sn: d for d in devices}.values())
    if not unique:
        raise InvalidArgumentError("no device to onboard")
    if name is not None and len(unique) > 1:
        raise InvalidArgumentError(
            f"--name names one device, but {len(unique)} devices were found",
            hint="scan one label at a time to name devices",
        )
    problems, plans = [], []
    for dev in unique:
        try:
            plans.append(plan_onboarding(backend, dev, name=name, timezone=timezone,
                                         values=values, region_id=region_id, org_id=org_id))  # fmt: skip
        except InvalidArgumentError as err:
            problems.append(err.message)
    if problems:
        raise InvalidArgumentError(" | ".join(problems), hint="nothing was changed")
    return _apply_all(backend, plans, journal)


def onboard_device(
    backend: Backend,
    device: Device,
    *,
    name: str | None = None,
    timezone: str | None = None,
    values: dict[str, str] | None = None,
    region_id: str | None = None,
    org_id: str | None = None,
    journal: Journal | None = None,
) -> Device:
    """Onboard one scanned device: validate, update its master data, allocate it. Returns the
    device as it is afterwards (an already allocated device keeps its target)."""
    (result,) = onboard_devices(backend, [device], name=name, timezone=timezone, values=values,
                                region_id=region_id, org_id=org_id, journal=journal)  # fmt: skip
    return result.device
