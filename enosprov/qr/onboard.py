"""On-site onboarding of scanned devices: `qr scan --onboard`.

The installer scans a label and adds what only the site knows: the device's name, its
timezone, master data values (``--set key=value``) and, optionally, the environment/OU to
allocate it to. Everything is validated first, for every device; only then is each device
updated (Update Device) and allocated (Allocate Device). Allocation is idempotent: a device
that is already allocated stays where it is, and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core import rules
from ..errors import InvalidArgumentError
from ..models import BUILTIN_KEYS, Device, string_i18n


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


def plan_onboarding(
    backend,
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
        name = name.strip()
        if not name:
            problems.append("deviceName is empty")
        elif len(name) > rules.DEVICE_NAME_MAX:
            problems.append(
                f"deviceName is {len(name)} characters long; the limit is {rules.DEVICE_NAME_MAX}"
            )
        else:
            data["deviceName"] = string_i18n(name)
    if timezone is not None:
        timezone = timezone.strip()
        problem = rules.timezone_problem(timezone)
        if problem:
            problems.append(problem)
        else:
            data["timezone"] = timezone
    group = backend.get_group(device.group_id)
    if values:
        mdg = backend.get_masterdata_group(group.masterdata_group_id)
        attrs = {a.identifier: a for a in mdg.attributes}
        for key, raw in values.items():
            if key in BUILTIN_KEYS:
                problems.append(
                    f"--set {key}: use --name / --timezone"
                    if key != "deviceSn"
                    else "--set deviceSn: a device's serial number cannot be changed"
                )
                continue
            attr = attrs.get(key)
            if attr is None:
                problems.append(
                    f"{key!r} is not a master data key of group {group.group_id} "
                    f"(known: {', '.join(attrs) or 'none'})"
                )
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
    target = None
    if not device.allocated:
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


def apply_onboarding(backend, plan: OnboardPlan) -> OnboardResult:
    """Update then allocate one device as planned."""
    dev = plan.device
    if plan.device_data:
        backend.update(dev.sn, device_data=plan.device_data)
    was_allocated = dev.allocated
    after = backend.allocate(dev.sn, region_id=plan.region_id, org_id=plan.org_id)
    note = None
    if was_allocated:
        note = f"already allocated to {after.region_id} / {after.org_id}; it stays there"
        wanted = (plan.region_id, plan.org_id)
        if any(w and w != have for w, have in zip(wanted, (after.region_id, after.org_id))):
            note += f" (not moved to {plan.region_id or '-'} / {plan.org_id or '-'})"
    return OnboardResult(after, dict(plan.device_data), not was_allocated, note)


def onboard_devices(
    backend,
    devices: Sequence[Device],
    *,
    name: str | None = None,
    timezone: str | None = None,
    values: dict[str, str] | None = None,
    region_id: str | None = None,
    org_id: str | None = None,
) -> list[OnboardResult]:
    """Validate every device first (nothing changes if one fails), then update and allocate
    each. A device listed twice is onboarded once. ``name`` needs exactly one device."""
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
    return [apply_onboarding(backend, p) for p in plans]


def onboard_device(
    backend,
    device: Device,
    *,
    name: str | None = None,
    timezone: str | None = None,
    values: dict[str, str] | None = None,
    region_id: str | None = None,
    org_id: str | None = None,
) -> Device:
    """Onboard one scanned device: validate, update its master data, allocate it. Returns the
    device as it is afterwards (an already allocated device keeps its target)."""
    (result,) = onboard_devices(backend, [device], name=name, timezone=timezone, values=values,
                                region_id=region_id, org_id=org_id)  # fmt: skip
    return result.device
