"""Changes to registered devices, one device or a few at a time: update, delete, allocate.

The CLI's `devices update|delete|allocate` are thin layers over these functions. Each checks
everything it can first (every device resolves, values fit the group's master data) and changes
nothing when a check fails; each appends one audit journal record when it changes something.
Devices are named by system sn or by deviceSn (within ``group`` when given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..domain import rules
from ..domain.errors import InvalidArgumentError, RefusedError
from ..domain.models import BUILTIN_KEYS, Device, RegistrationGroup, string_i18n
from ..domain.regions import region_problem
from ..journal import Journal, journal_or_null
from .device_refs import names, one_group, resolve_devices
from .onboarding import convert_sets, not_a_key

NOTHING_CHANGED = "nothing was changed"


# -- update ---------------------------------------------------------------------------------------


@dataclass
class UpdateResult:
    """One device after an update, and what was changed."""

    device: Device
    set: dict = field(default_factory=dict)  # master data key -> value sent
    unset: list[str] = field(default_factory=list)
    desc: str | None = None
    batch_tag: str | None = None

    def to_dict(self) -> dict:
        return {
            "sn": self.device.sn,
            "groupId": self.device.group_id,
            "deviceSn": self.device.device_sn,
            "set": self.set,
            "unset": self.unset,
            "desc": self.desc,
            "batchTag": self.batch_tag,
            "device": self.device.to_dict(),
        }


def update_device(
    backend: Backend,
    ident: str,
    *,
    group: str | None = None,
    desc: str | None = None,
    batch_tag: str | None = None,
    values: dict[str, str] | None = None,
    unset: Sequence[str] = (),
    journal: Journal | None = None,
) -> UpdateResult:
    """Update one device: its description, batch tag and master data (``values`` are raw text,
    typed by the group's master data definitions; ``unset`` keys are removed).

    Everything is checked first: InvalidArgumentError listing every problem, nothing changed.
    """

    values = dict(values or {})
    unset = list(dict.fromkeys(unset))
    if desc is None and batch_tag is None and not values and not unset:
        raise InvalidArgumentError(
            "nothing to update", hint="give --desc, --batch-tag, --set key=value or --unset key"
        )
    (dev,) = resolve_devices(backend, [ident], group)
    grp = backend.get_group(dev.group_id)
    problems: list[str] = []
    if desc is not None and len(desc) > rules.DEVICE_DESC_MAX:
        problems.append(f"desc is {len(desc)} characters; the limit is {rules.DEVICE_DESC_MAX}")
    if batch_tag is not None:
        batch_tag = batch_tag.strip()
        if not batch_tag:
            problems.append("the batch tag is empty")
        elif len(batch_tag) > rules.BATCH_TAG_MAX:
            problems.append(
                f"batch tag is {len(batch_tag)} characters; the limit is {rules.BATCH_TAG_MAX}"
            )
    data, more = convert_sets(backend, grp, values, builtins=True)
    problems.extend(more)
    problems.extend(_unset_problems(backend, grp, unset, values))
    if problems:
        raise InvalidArgumentError(
            f"cannot update {dev.group_id}/{dev.device_sn}: " + "; ".join(problems),
            hint=NOTHING_CHANGED,
        )
    device_data = None
    if data or unset:
        # The full map, never a null: right whether EnOS merges or replaces deviceData.
        kept = {k: v for k, v in dev.copyable_data().items() if k not in unset}
        device_data = {**kept, **data, "deviceSn": dev.device_sn}
    backend.update(
        dev.sn,
        desc=desc,
        batch_tag=string_i18n(batch_tag) if batch_tag is not None else None,
        device_data=device_data,
    )
    journal_or_null(journal).record(
        "update",
        devices=[(dev.sn, dev.device_sn)],
        group_id=dev.group_id,
        request_id=backend.last_request_id,
        detail={
            "set": sorted(data),
            "unset": sorted(unset),
            "desc": desc is not None,
            "batchTag": batch_tag,
        },
    )
    after = backend.get(dev.sn)
    kept_keys = sorted(k for k in unset if k in after.device_data)
    if kept_keys:
        raise RefusedError(
            f"{dev.group_id}/{dev.device_sn}: the backend kept deviceData "
            f"{', '.join(kept_keys)} (it merges master data on update, so a key cannot be "
            "removed through the API); the other changes were made",
            hint="remove the value in the EnOS console (Registration Group Management > "
            "Device Information > Edit), or set it to another value with --set",
        )
    return UpdateResult(after, data, unset, desc, batch_tag)


def _unset_problems(
    backend: Backend, group: RegistrationGroup, keys: Sequence[str], values: dict
) -> list[str]:
    problems = []
    attrs = None
    for key in keys:
        if key == "deviceSn":
            problems.append("--unset deviceSn: a device's serial number cannot be removed")
            continue
        if key in values:
            problems.append(f"{key} is both set and unset")
            continue
        if key in BUILTIN_KEYS:
            continue
        if attrs is None:
            mdg = backend.get_masterdata_group(group.masterdata_group_id)
            attrs = {a.identifier: a for a in mdg.attributes}
        attr = attrs.get(key)
        if attr is None:
            problems.append(not_a_key(key, group, attrs))
        elif attr.required:
            problems.append(f"{key} is required by group {group.group_id}: it cannot be unset")
    return problems


# -- delete ---------------------------------------------------------------------------------------


@dataclass
class DeleteReport:
    group_id: str
    devices: list[Device]

    def to_dict(self) -> dict:
        return {
            "groupId": self.group_id,
            "deleted": [{"sn": d.sn, "deviceSn": d.device_sn} for d in self.devices],
        }


def delete_devices(
    backend: Backend, devices: Sequence[Device], *, journal: Journal | None = None
) -> DeleteReport:
    """Delete ``devices`` (see :func:`resolve_devices`), all of one registration group, in one
    request; one "delete" journal record."""
    devices = list({d.sn: d for d in devices}.values())
    if not devices:
        raise InvalidArgumentError("no device to delete")
    group_id = one_group(devices, "delete")
    backend.delete(group_id, [d.sn for d in devices])
    rec = journal_or_null(journal).begin(
        "delete", group_id=group_id, detail={"count": len(devices)}
    )
    rec.extend((d.sn, d.device_sn) for d in devices)
    for d in devices:
        rec.mark("deleted", d.sn, d.device_sn, d.batch_tag_text)
    rec.commit(request_id=backend.last_request_id)
    return DeleteReport(group_id, devices)


# -- allocate -------------------------------------------------------------------------------------


@dataclass
class AllocateResult:
    device: Device  # as it is afterwards
    allocated_now: bool
    requested: tuple[str, str] | None = None  # the target sent, if any

    @property
    def result(self) -> str:
        return "allocated" if self.allocated_now else "already allocated"

    @property
    def note(self) -> str | None:
        """Says so when the device is not where it was asked to go."""
        d = self.device
        if not self.requested or (d.region_id, d.org_id) == self.requested:
            return None
        if not self.allocated_now:
            return f"already allocated to {d.region_id} / {d.org_id}: not moved (use reprovision)"
        return (
            f"EnOS allocated it to {d.region_id} / {d.org_id}, not to the requested "
            f"{self.requested[0]} / {self.requested[1]}: this tenant did not honour "
            "deviceData.regionId/orgId; check the registration group's target in the console"
        )

    def to_dict(self) -> dict:
        d = self.device
        return {
            "sn": d.sn,
            "groupId": d.group_id,
            "deviceSn": d.device_sn,
            "result": self.result,
            "regionId": d.region_id,
            "orgId": d.org_id,
            "requested": (
                {"regionId": self.requested[0], "orgId": self.requested[1]}
                if self.requested
                else None
            ),
            "note": self.note,
        }


def allocate_devices(
    backend: Backend,
    devices: Sequence[Device],
    *,
    region_id: str | None = None,
    org_id: str | None = None,
    journal: Journal | None = None,
) -> list[AllocateResult]:
    """Allocate each device (see :func:`resolve_devices`) to ``region_id``/``org_id``, sent the
    documented way, as the built-in master data deviceData.regionId/orgId of Allocate Device;
    without them to the device's own deviceData target, else its group's target. A device already
    allocated is left where it is. One "allocate" journal record lists the devices allocated now
    and says what was requested."""
    if bool(region_id) != bool(org_id):
        raise InvalidArgumentError(
            "an allocation target needs both a region (environment) and an OU; " + NOTHING_CHANGED,
            hint="give --region and --org together, or neither (the group's target)",
        )
    if region_id and (problem := region_problem(region_id)):
        raise InvalidArgumentError(problem + "; " + NOTHING_CHANGED)
    devices = list({d.sn: d for d in devices}.values())
    pending = [d for d in devices if not d.allocated]
    _check_targets(backend, pending, region_id, org_id)
    wanted = (region_id, org_id) if region_id and org_id else None
    results = {d.sn: AllocateResult(d, False, wanted) for d in devices if d.allocated}
    groups = {d.group_id for d in devices}
    target = {"regionId": region_id, "orgId": org_id} if region_id else None
    detail = {
        "requested": "allocate with deviceData.regionId/orgId" if target else "allocate",
        "regionId": region_id,
        "orgId": org_id,
        "alreadyAllocated": len(results),
    }
    with journal_or_null(journal).begin(
        "allocate", group_id=groups.pop() if len(groups) == 1 else None, detail=detail
    ) as rec:
        for dev in pending:
            after = backend.allocate(dev.sn, device_data=target)
            rec.add(dev.sn, dev.device_sn)
            results[dev.sn] = AllocateResult(after, True, wanted)
        if len(pending) == 1:
            rec.request_id = backend.last_request_id
    return [results[d.sn] for d in devices]


def _check_targets(
    backend: Backend, devices: Sequence[Device], region_id: str | None, org_id: str | None
) -> None:
    """Every device has somewhere to go, before any is allocated. Only the local store knows a
    group's target; with EnOS the group's configured target applies."""
    if not backend.knows_group_targets or (region_id and org_id):
        return
    groups: dict[str, RegistrationGroup] = {}
    lacking = []
    for d in devices:
        if d.group_id not in groups:
            groups[d.group_id] = backend.get_group(d.group_id)
        g = groups[d.group_id]
        if not (region_id or d.target_region_id or g.region_id) or not (
            org_id or d.target_org_id or g.org_id
        ):
            lacking.append(d.device_sn)
    if lacking:
        raise InvalidArgumentError(
            f"no allocation target for {names(lacking)}: their registration group has none; "
            + NOTHING_CHANGED,
            hint="give --region and --org",
        )


__all__ = [
    "AllocateResult",
    "DeleteReport",
    "UpdateResult",
    "allocate_devices",
    "delete_devices",
    "one_group",
    "resolve_devices",
    "update_device",
]
