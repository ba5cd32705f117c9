"""Reprovisioning: move allocated devices to another environment (region) and OU.

EnOS reprovisions by resetting the allocation (``resetAllocationStatus``): the device leaves its
OU and keeps its Group ID, Group Secret and serial number. Where it goes next is chosen the way
EnOS documents it, by the built-in master data ``deviceData.regionId`` / ``deviceData.orgId`` ("the
environment / OU the device will be allocated to"): after the reset, Update Device sends the
device's full master data (without the keys EnOS owns; under *initialize*, which clears master
data, only its deviceSn) plus the new regionId/orgId, which is right whether EnOS merges or
replaces deviceData on update. The next allocation, by API or when the device bootstraps again
with the credential file it already holds, lands there with a new triple. Under the group's
reprovision method, *migrate* keeps the master data and *initialize* clears it; *never* (or a
private model) refuses.

Two steps so a human can see before anything changes: :func:`plan_reprovision` resolves and checks
everything (raising for a call refused as a whole), :func:`apply_reprovision` resets the accepted
devices and writes the audit journal record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import Backend
from ..domain.errors import EnosprovError, InvalidArgumentError
from ..domain.models import Device, RegistrationGroup
from ..domain.regions import region_problem
from ..journal import Journal, journal_or_null
from .device_refs import one_group, resolve_devices

RESET_SLICE = 500  # devices per resetAllocationStatus call
MASTERDATA_EFFECT = {
    "migrate": "kept (migrate)",
    "initialize": "cleared (initialize)",
    "never": "-",
}
JOURNAL_MOVES_MAX = 1000  # per-device "from" kept in the journal detail up to this many devices


@dataclass
class ReprovisionItem:
    device: Device
    refused: str | None = None  # why this device is left alone

    @property
    def source(self) -> str:
        d = self.device
        if d.allocated:
            return f"{d.region_id} / {d.org_id}"
        if d.reprovisioning and (d.target_region_id or d.target_org_id):
            return f"(reset, was going to {d.target_region_id} / {d.target_org_id})"
        return "(not allocated)"

    def target_data(self, plan: ReprovisionPlan) -> dict:
        """The deviceData sent by Update Device after the reset: what the reprovision method
        keeps, plus the new target."""
        d = self.device
        kept = {} if plan.group.reprovision_method == "initialize" else d.copyable_data()
        return {**kept, "deviceSn": d.device_sn, "regionId": plan.region_id, "orgId": plan.org_id}

    def to_dict(self) -> dict:
        d = self.device
        return {
            "sn": d.sn,
            "deviceSn": d.device_sn,
            "from": {"regionId": d.region_id, "orgId": d.org_id} if d.allocated else None,
            "refused": self.refused,
        }


@dataclass
class ReprovisionPlan:
    group: RegistrationGroup
    region_id: str
    org_id: str
    items: list[ReprovisionItem]

    @property
    def accepted(self) -> list[ReprovisionItem]:
        return [i for i in self.items if i.refused is None]

    @property
    def refused(self) -> list[ReprovisionItem]:
        return [i for i in self.items if i.refused is not None]

    @property
    def masterdata(self) -> str:
        return MASTERDATA_EFFECT.get(self.group.reprovision_method, self.group.reprovision_method)

    def to_dict(self) -> dict:
        return {
            "groupId": self.group.group_id,
            "reprovisionMethod": self.group.reprovision_method,
            "masterData": self.masterdata,
            "target": {"regionId": self.region_id, "orgId": self.org_id},
            "devices": [i.to_dict() for i in self.items],
            "accepted": len(self.accepted),
            "refused": len(self.refused),
        }


@dataclass
class ReprovisionResult:
    plan: ReprovisionPlan
    reset: list[str] = field(default_factory=list)  # system sns reset
    targeted: list[str] = field(default_factory=list)  # sns whose deviceData got the target
    request_ids: list[str] = field(default_factory=list)
    journal_id: int | None = None

    def to_dict(self) -> dict:
        out = self.plan.to_dict()
        out.update(
            reset=self.reset,
            targetSet=self.targeted,
            requested=REQUESTED,
            requestIds=self.request_ids,
            journalId=self.journal_id,
        )
        return out


# What is asked of EnOS, in the words of its API (the CLI and the journal say the same).
REQUESTED = "resetAllocationStatus, then update deviceData.regionId/orgId"


def group_refusal(group: RegistrationGroup) -> str | None:
    """Why no device of ``group`` can be reprovisioned, or None."""
    if group.reprovision_method == "never":
        return "its group does not allow reprovisioning (reprovision method 'never')"
    if group.model_type == "private":
        return "its group uses a private model: it cannot leave its environment/OU"
    return None


def device_refusal(dev: Device, region_id: str, org_id: str) -> str | None:
    if dev.allocated and (dev.region_id, dev.org_id) == (region_id, org_id):
        return "already allocated there"
    if not dev.allocated and not dev.reprovisioning:
        return "never allocated: nothing to move (use `devices allocate`)"
    return None


def plan_reprovision(
    backend: Backend,
    refs: Sequence[str] = (),
    *,
    region_id: str | None,
    org_id: str | None,
    group: str | None = None,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
) -> ReprovisionPlan:
    """Resolve and check a reprovisioning; nothing is changed. Raises for a call refused as a
    whole (target missing, unknown devices, devices of several groups)."""
    if not region_id or not org_id:
        missing = [name for name, v in (("--region", region_id), ("--org", org_id)) if not v]
        raise InvalidArgumentError(
            f"the target {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; "
            "nothing was changed",
            hint="reprovisioning needs both the target environment (--region) and OU (--org)",
        )
    problem = region_problem(region_id)
    if problem:
        raise InvalidArgumentError(problem + "; nothing was changed")
    devices = resolve_devices(backend, refs, group=group, csv_path=csv_path, batch_tag=batch_tag)
    grp = backend.get_group(one_group(devices, "reprovision"))
    refusal = backend.offline_refusal(grp.group_id, "reprovisioning")
    if refusal is not None:
        raise refusal
    whole = group_refusal(grp)
    items = [
        ReprovisionItem(dev, whole or device_refusal(dev, region_id, org_id)) for dev in devices
    ]
    return ReprovisionPlan(grp, region_id, org_id, items)


def apply_reprovision(
    backend: Backend, plan: ReprovisionPlan, *, journal: Journal | None = None
) -> ReprovisionResult:
    """Reset the allocation of every accepted device, then set its target in its master data
    (deviceData.regionId/orgId) by Update Device. One "reprovision" journal record lists the
    devices whose target was set; a device reset but not targeted (the update failed) is named
    in the error and in the record's detail, and running the same reprovision again finishes it."""
    audit = journal_or_null(journal)
    result = ReprovisionResult(plan)
    accepted = plan.accepted
    if not accepted:
        return result
    detail = {
        "target": {"regionId": plan.region_id, "orgId": plan.org_id},
        "requested": REQUESTED,
        "reprovisionMethod": plan.group.reprovision_method,
        "refused": len(plan.refused),
    }
    if len(accepted) <= JOURNAL_MOVES_MAX:
        detail["from"] = [  # [sn, regionId, orgId] of each device that was allocated
            [i.device.sn, i.device.region_id, i.device.org_id]
            for i in accepted
            if i.device.allocated
        ]
    with audit.begin("reprovision", group_id=plan.group.group_id, detail=detail) as rec:
        rec.detail["attempted"] = True
        for start in range(0, len(accepted), RESET_SLICE):
            part = accepted[start : start + RESET_SLICE]
            done = set(backend.reset_allocation(plan.group.group_id, [i.device.sn for i in part]))
            _note_request(backend, result, rec)
            reset = [i for i in part if i.device.sn in done]
            result.reset.extend(i.device.sn for i in reset)
            rec.detail["resetOnly"] = [i.device.sn for i in reset]
            for item in reset:
                _set_target(backend, plan, item, result)
                rec.add(item.device.sn, item.device.device_sn)
                rec.detail["resetOnly"].remove(item.device.sn)
            rec.detail.pop("resetOnly")
        rec.detail.pop("attempted")
    result.journal_id = rec.committed
    return result


def _set_target(backend: Backend, plan: ReprovisionPlan, item: ReprovisionItem, result) -> None:
    dev = item.device
    try:
        backend.update(dev.sn, device_data=item.target_data(plan))
    except EnosprovError as exc:
        targeted = set(result.targeted)
        left = [s for s in result.reset if s not in targeted]
        raise type(exc)(
            f"{dev.device_sn}: the allocation was reset but its target could not be set "
            f"({exc.message}); {len(left)} device(s) reset without a target: "
            + ", ".join(left[:5])
            + (" ..." if len(left) > 5 else ""),
            hint="run the same reprovision again: it finishes the devices left midway",
            enos_code=exc.enos_code,
            request_id=exc.request_id,
        ) from None
    result.targeted.append(dev.sn)


def _note_request(backend: Backend, result: ReprovisionResult, rec) -> None:
    rid = backend.last_request_id
    if rid:
        result.request_ids.append(rid)
        rec.request_id = rid


def reprovision(
    backend: Backend,
    refs: Sequence[str] = (),
    *,
    region_id: str,
    org_id: str,
    group: str | None = None,
    csv_path: str | Path | None = None,
    batch_tag: str | None = None,
    journal: Journal | None = None,
) -> ReprovisionResult:
    """Plan and apply in one call (for scripts that have decided)."""
    plan = plan_reprovision(
        backend, refs, region_id=region_id, org_id=org_id, group=group,
        csv_path=csv_path, batch_tag=batch_tag,
    )  # fmt: skip
    return apply_reprovision(backend, plan, journal=journal)
