"""Offline first: a plant works on its local store, then pushes to the EnOS tenant
(``enosprov group import``, ``enosprov sync push``, ``enosprov sync status``; docs/sync.md).

- **Import.** EnOS has no API for registration groups: a profile knows its tenant's groups (id,
  product key, master data file, group secret). :func:`import_group` creates the same group
  in the local store, *with the tenant's group secret*, so that credential files burned offline
  bootstrap against EnOS later, and remembers which profile it came from.
- **Push.** :func:`push` creates in EnOS every device of the group that EnOS does not have yet
  (by groupId + deviceSn), with its master data, batch tag and description, through the EnOS
  backend's own batch registration: pooled requests, and a create whose answer was lost is
  looked up before anything is sent again, so nothing is ever created twice. Each device's EnOS
  system sn is recorded next to the store's (``sync_links``), chunk by chunk: a push killed at
  any point and run again finds what EnOS already holds (same data: linked, not created again)
  and completes the rest. A deviceSn that EnOS holds with other data is a conflict, listed and
  left alone unless ``overwrite``.
- **Status.** :func:`status` compares the store and EnOS per batch: only in the store, only in
  EnOS, different, in sync.

Replacements, reprovisioning and deletions in an imported group are refused by the store
(backends/local_sync.py): they are done in EnOS, through the profile, where they count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.base import Backend
from ..backends.local import LocalBackend
from ..domain.errors import DefinitionConflictError, NotFoundError, RefusedError
from ..domain.models import Device, NewDevice, RegistrationGroup, SearchQuery
from ..journal import Journal, journal_or_null
from .definitions import Difference, ensure_group, ensure_masterdata_group

PUSH_CHUNK = 500  # devices per EnOS batch (and per link transaction, per journal record)
CONFLICTS_KEPT = 1000  # conflicts and failures listed in a report (all are counted)
ProgressFn = Callable[[str, int, int], None]


# -- import --------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    group: RegistrationGroup
    profile: str
    status: str  # "created" | "unchanged"
    masterdata: str  # the master data group's id, "builtin" included

    def to_dict(self) -> dict:
        return {
            **self.group.to_dict(),
            "status": self.status,
            "profile": self.profile,
            "masterdataGroupId": self.masterdata,
        }


def import_group(
    local: LocalBackend,
    enos: Backend,
    group: str,
    *,
    profile: str,
    region_id: str | None = None,
    org_id: str | None = None,
    journal: Journal | None = None,
) -> ImportReport:
    """Create in ``local`` the registration group ``group`` of the EnOS profile behind ``enos``
    (its master data group first, from the profile's TOML file), with the tenant's group
    secret. Running it again changes nothing ("unchanged"); a store group of the same id with
    another definition or another secret is refused (DefinitionConflictError, exit 7)."""
    known = {g.group_id: g for g in enos.list_groups()}
    tenant = known.get(group) or next((g for g in known.values() if g.name == group), None)
    if tenant is None:
        raise NotFoundError(
            f"profile {profile!r} has no registration group {group!r} "
            f"(it knows: {', '.join(sorted(known)) or 'none'})",
            hint=f"add it: enosprov config add-group {profile} GROUP_ID --secret-env VAR "
            "--masterdata FILE --product-key PK",
        )
    if not tenant.group_secret:
        why = enos.group_secret_error(tenant.group_id) or "the profile sets none"
        raise RefusedError(
            f"profile {profile!r} holds no secret for group {tenant.group_id} ({why}): files "
            "burned offline are signed with it",
            hint=f"enosprov config add-group {profile} {tenant.group_id} --secret-env VAR",
        )
    if not tenant.product_key:
        raise RefusedError(
            f"profile {profile!r} names no product key for group {tenant.group_id}",
            hint=f"enosprov config add-group {profile} {tenant.group_id} --product-key PK",
        )
    mdg = enos.get_masterdata_group(tenant.masterdata_group_id)
    if mdg.id != "builtin":
        ensure_masterdata_group(local, mdg)
    wanted = RegistrationGroup(
        group_id=tenant.group_id,
        name=tenant.name,
        product_key=tenant.product_key,
        masterdata_group_id=mdg.id,
        group_secret=tenant.group_secret,
        region_id=region_id,
        org_id=org_id,
        sign_scheme=tenant.sign_scheme,
        sn_pattern=tenant.sn_pattern,
        timezone=tenant.timezone,
    )
    try:
        stored = local.get_group(wanted.group_id)
    except NotFoundError:
        stored = None
    if stored is not None and stored.group_secret != wanted.group_secret:
        raise DefinitionConflictError(
            f"the store's registration group {wanted.group_id} has another group secret than "
            f"profile {profile!r}: the files it burned would not bootstrap in EnOS; nothing "
            "was changed",
            differences=[Difference("groupSecret", "(stored)", "(profile)").to_dict()],
            hint="import into a store without that group, or give the profile the store's "
            "secret if the tenant's group really has it",
        )
    if stored is not None and region_id is None and org_id is None:
        # a second import keeps the allocation target given before
        wanted = replace(wanted, region_id=stored.region_id, org_id=stored.org_id)
    ensured = ensure_group(local, wanted, id_given=True)
    if local.imported_from(wanted.group_id) != profile:  # (a killed import: not marked yet)
        local.mark_imported(
            wanted.group_id,
            profile,
            on_commit=lambda conn: journal_or_null(journal).record_with(
                conn, "group-import", group_id=wanted.group_id, detail={"profile": profile}
            ),
        )
    return ImportReport(ensured.value, profile, ensured.status, mdg.id)


# -- push ----------------------------------------------------------------------------------------


@dataclass
class PushReport:
    group_id: str
    profile: str
    dry_run: bool = False
    devices: int = 0  # in the store (this group, this batch tag)
    linked_before: int = 0  # pushed by an earlier run
    created: int = 0  # created in EnOS now (a dry run: would be)
    found: int = 0  # already in EnOS with the same data: linked now
    overwritten: int = 0
    conflict_count: int = 0
    failed_count: int = 0
    conflicts: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def in_sync(self) -> int:
        return self.linked_before + self.created + self.found + self.overwritten

    def to_dict(self) -> dict:
        return {
            "groupId": self.group_id,
            "profile": self.profile,
            "dryRun": self.dry_run,
            "devices": self.devices,
            "alreadyPushed": self.linked_before,
            "created": self.created,
            "foundInEnos": self.found,
            "overwritten": self.overwritten,
            "conflicts": self.conflict_count,
            "failed": self.failed_count,
            "conflictList": self.conflicts,
            "failureList": self.failures,
        }


def check_secret(local: LocalBackend, enos: Backend, group_id: str, profile: str) -> None:
    """Refuse to push a group whose store secret differs from the profile's: every credential
    file burned from the store would then fail to bootstrap in EnOS."""
    mine = local.get_group(group_id).group_secret
    theirs = enos.get_group(group_id).group_secret
    if not theirs:
        why = enos.group_secret_error(group_id) or "the profile sets none"
        raise RefusedError(
            f"profile {profile!r} holds no secret for group {group_id} ({why}): push checks "
            "that the files burned offline will bootstrap",
            hint=f"enosprov config add-group {profile} {group_id} --secret-env VAR",
        )
    if mine != theirs:
        raise RefusedError(
            f"group {group_id} has another group secret in this store than in profile "
            f"{profile!r}: every credential file burned here would fail to bootstrap in EnOS; "
            "nothing was pushed",
            hint="push a group created by `enosprov group import` (it takes the tenant's "
            "secret), or fix the profile's secret",
        )


def push(
    local: LocalBackend,
    enos: Backend,
    group: str,
    *,
    profile: str,
    batch_tag: str | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    chunk_size: int = PUSH_CHUNK,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
) -> PushReport:
    """Create in EnOS the devices of ``group`` (one batch tag: ``batch_tag``) it does not have,
    and link each to its EnOS sn; idempotent and resumable (module docstring)."""
    gid = local.get_group(group).group_id
    check_secret(local, enos, gid, profile)
    report = PushReport(gid, profile, dry_run)
    linked = local.pushed_links(gid)
    query = SearchQuery(group_id=gid, batch_tag=batch_tag)
    total = local.search(SearchQuery(group_id=gid, batch_tag=batch_tag, page_size=1)).total
    report.devices = total
    done = 0
    rec = journal_or_null(None if dry_run else journal)
    # pages read whole: the links are written between them (no read may stay open meanwhile)
    for chunk in local.device_pages(query, chunk_size):
        todo = []
        for dev in chunk:
            if dev.device_sn in linked:
                report.linked_before += 1
            else:
                todo.append(dev)
        if todo:
            _push_chunk(local, enos, gid, todo, report, dry_run, overwrite, rec)
        done += len(chunk)
        if progress is not None:
            progress("push", done, total)
    return report


def _push_chunk(
    local: LocalBackend,
    enos: Backend,
    gid: str,
    devices: list[Device],
    report: PushReport,
    dry_run: bool,
    overwrite: bool,
    journal: Any,
) -> None:
    records = [_record(d) for d in devices]
    outcomes = enos.register_batch(gid, records, dry_run=dry_run)
    links: list[tuple[str, str, str]] = []
    created = failed = 0
    for dev, out in zip(devices, outcomes):
        if out.outcome == "created":
            report.created += 1
            created += 1
            if out.sn:
                links.append((dev.device_sn, dev.sn, out.sn))
        elif out.outcome == "skipped":
            report.found += 1
            if out.sn:
                links.append((dev.device_sn, dev.sn, out.sn))
        elif out.outcome == "conflict" and overwrite and not dry_run and out.sn:
            enos.update(
                out.sn, desc=dev.desc or "", batch_tag=dev.batch_tag, device_data=dev.device_data
            )
            report.overwritten += 1
            links.append((dev.device_sn, dev.sn, out.sn))
        elif out.outcome == "conflict":
            report.conflict_count += 1
            if len(report.conflicts) < CONFLICTS_KEPT:
                report.conflicts.append(
                    {"deviceSn": dev.device_sn, "sn": dev.sn, "enosSn": out.sn,
                     "differences": out.error}
                )  # fmt: skip
        else:
            report.failed_count += 1
            failed += 1
            if len(report.failures) < CONFLICTS_KEPT:
                report.failures.append(
                    {"deviceSn": dev.device_sn, "sn": dev.sn, "error": out.error}
                )
    if dry_run or not (links or failed):
        return

    # One "sync-push" record per chunk: every device now in EnOS and linked (created, found or
    # overwritten), by its EnOS sn. On the store, it commits with the links (its journal is in
    # the store): a kill never leaves links without their record.
    def record(conn: Any) -> None:
        journal.record_with(
            conn, "sync-push",
            outcome="ok" if len(links) == len(devices) else "partial",
            devices=[(enos_sn, device_sn) for device_sn, _, enos_sn in links],
            group_id=gid,
            detail={"profile": report.profile, "created": created, "linked": len(links),
                    "failed": failed, "devices": len(devices)},
        )  # fmt: skip

    local.link_pushed(gid, links, on_commit=record)


def _record(dev: Device) -> NewDevice:
    data = {k: v for k, v in dev.device_data.items() if k != "deviceSn"}
    return NewDevice(dev.device_sn, data, dev.desc or None, dev.batch_tag)


# -- pull ----------------------------------------------------------------------------------------

PULL_CHUNK = 2000  # state updates per store transaction


@dataclass
class PullReport:
    group_id: str
    profile: str
    in_enos: int = 0  # devices of the group in EnOS
    updated: int = 0  # store devices whose state changed now
    unchanged: int = 0
    linked: int = 0  # in EnOS and in the store, not linked before (pushed by a lost run...)
    only_in_enos: int = 0  # not in the store (registered in EnOS directly)
    vanished_count: int = 0  # pushed, no longer in EnOS
    vanished: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "groupId": self.group_id,
            "profile": self.profile,
            "inEnos": self.in_enos,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "linkedNow": self.linked,
            "onlyInEnos": self.only_in_enos,
            "goneFromEnos": self.vanished_count,
            "goneList": self.vanished,
        }


def pull(
    local: LocalBackend,
    enos: Backend,
    group: str,
    *,
    profile: str,
    progress: ProgressFn | None = None,
    journal: Journal | None = None,
) -> PullReport:
    """Bring what the group's devices did in EnOS (allocation, connection, reprovisioning,
    their EnOS triple) into the store, so that ``batches`` in the plant shows the field.

    Devices pushed but no longer in EnOS are reported as gone, cause unknown: a deletion or a
    replacement, no EnOS API says which; the store keeps them. Devices in EnOS that the store
    does not have are counted, not imported."""
    gid = local.get_group(group).group_id
    report = PullReport(gid, profile)
    links = local.pushed_links(gid)  # deviceSn -> (store sn, EnOS sn); seen ones removed
    unlinked = {d: sn for sn, d in local.device_sn_map(gid) if d not in links}
    mine = local.device_states(gid)
    changes: list[tuple[str, tuple]] = []
    new_links: list[tuple[str, str, str]] = []
    total = enos.search(SearchQuery(group_id=gid, page_size=1)).total
    for dev in enos.iter_devices(SearchQuery(group_id=gid)):
        report.in_enos += 1
        link = links.pop(dev.device_sn, None)
        local_sn = link[0] if link else unlinked.get(dev.device_sn)
        if local_sn is None:
            report.only_in_enos += 1
            continue
        if link is None or link[1] != dev.sn:
            new_links.append((dev.device_sn, local_sn, dev.sn))
        state = _state(dev)
        if mine.get(local_sn) == hash(state):
            report.unchanged += 1
        else:
            changes.append((local_sn, state))
        if len(changes) >= PULL_CHUNK:
            _apply(local, gid, changes, new_links, report)
        if progress is not None and report.in_enos % 500 == 0:
            progress("pull", report.in_enos, total)
    _apply(local, gid, changes, new_links, report)
    for device_sn, (local_sn, enos_sn) in links.items():  # linked, not seen in EnOS
        report.vanished_count += 1
        if len(report.vanished) < CONFLICTS_KEPT:
            report.vanished.append({"deviceSn": device_sn, "sn": local_sn, "enosSn": enos_sn})
    if progress is not None:
        progress("pull", report.in_enos, max(total, report.in_enos))
    journal_or_null(journal).record(
        "sync-pull",
        group_id=gid,
        detail={"profile": profile, "updated": report.updated, "inEnos": report.in_enos,
                "goneFromEnos": report.vanished_count},
    )  # fmt: skip
    return report


def _apply(local, gid, changes, new_links, report: PullReport) -> None:
    """One store transaction: the links found and the states pulled so far."""
    if new_links or changes:
        local.set_device_states(changes, links=(gid, new_links))
    report.linked += len(new_links)
    report.updated += len(changes)
    new_links.clear()
    changes.clear()


def _state(dev: Device) -> tuple:
    """A device's local_sync.STATE_COLUMNS, as EnOS reports them."""
    st = dev.status
    return (
        dev.allocate_status, dev.connect_status, st.current_status, st.allocated_time,
        st.connected_time, st.finished_time, st.discarded_time, dev.region_id, dev.org_id,
        1 if dev.reprovisioning else 0, dev.reprovision_time, dev.allocate_error_msg or "",
        dev.device_key, dev.device_secret,
    )  # fmt: skip


# -- status --------------------------------------------------------------------------------------

STATES = ("onlyLocal", "onlyEnos", "different", "inSync")


@dataclass
class SyncStatus:
    group_id: str
    batch_tag: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))

    def to_dict(self) -> dict:
        return {"groupId": self.group_id, "batchTag": self.batch_tag, **self.counts}


def status(local: LocalBackend, enos: Backend, group: str) -> list[SyncStatus]:
    """Per batch tag of ``group``: devices only in the store, only in EnOS, in both with
    different data (master data, description or batch tag), and in sync."""
    gid = local.get_group(group).group_id
    mine: dict[str, tuple] = {}
    for dev in local.iter_devices(SearchQuery(group_id=gid)):
        mine[dev.device_sn] = _fingerprint(dev)
    rows: dict[str | None, SyncStatus] = {}

    def row(tag: str | None) -> SyncStatus:
        return rows.setdefault(tag, SyncStatus(gid, tag))

    for dev in enos.iter_devices(SearchQuery(group_id=gid)):
        theirs = _fingerprint(dev)
        ours = mine.pop(dev.device_sn, None)
        if ours is None:
            row(theirs[0]).counts["onlyEnos"] += 1
        elif ours == theirs:
            row(ours[0]).counts["inSync"] += 1
        else:
            row(ours[0]).counts["different"] += 1
    for ours in mine.values():
        row(ours[0]).counts["onlyLocal"] += 1
    return sorted(rows.values(), key=lambda r: (r.batch_tag is None, r.batch_tag or ""))


def _fingerprint(dev: Device) -> tuple:
    tag = dev.batch_tag.get("defaultValue") if dev.batch_tag else None
    data = {k: v for k, v in dev.device_data.items() if k != "deviceSn"}
    return (tag, json.dumps(data, sort_keys=True), dev.desc or None)
