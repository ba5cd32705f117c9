"""`enosprov devices list|show|export|update|delete|allocate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from .options import (
    BatchTagFilterOpt,
    DeviceSnOpt,
    FormatOpt,
    JsonOpt,
    OptionalGroupOpt,
    OrgOpt,
    RawCsvOpt,
    RegionOpt,
    list_format,
    renamed,
    state,
)
from .output import confirm_or_refuse, emit, handled, key_values, say, show_time, status_line, table

app = typer.Typer(
    help="Registered devices.\n\nExample: enosprov devices list --group meters-eu --batch-tag B-1",
    no_args_is_help=True,
)

AllocOpt = Annotated[
    Literal["init", "allocated"] | None,
    typer.Option("--allocate-status", help="Only devices with this allocation status."),
]
ConnectOpt = Annotated[
    Literal["init", "connected", "failed"] | None,
    typer.Option("--connect-status", help="Only devices with this connection status."),
]


def _query(store, group, batch_tag, allocate_status, connect_status, device_sn, **kw):
    from ..domain.models import SearchQuery

    return SearchQuery(
        group_id=store.get_group(group).group_id if group else None,
        batch_tag=batch_tag,
        allocate_status=allocate_status,
        connect_status=connect_status,
        device_sns=tuple(device_sn or ()),
        **kw,
    )


def state_label(dev, retired=None) -> str:
    """Where a device stands; ``retired`` (core.lineage.Retirement): the device is a retired
    unit that registered again."""
    if retired is not None and retired.returned is not None:
        return f"RETIRED UNIT CAME BACK (in service: {retired.in_service['deviceSn']})"
    if dev.allocated:
        label = "connected" if dev.connect_status == "connected" else "allocated"
        return label + (" (re-allocated)" if dev.reprovisioning else "")
    if not dev.reprovisioning:
        return "registered"
    if dev.target_region_id or dev.target_org_id:
        return f"reset, waiting for the device (next: {dev.target_region_id} / {dev.target_org_id})"
    return "reset, waiting for the device"


@app.command("list")
@handled
def list_(
    ctx: typer.Context,
    group: OptionalGroupOpt = None,
    batch_tag: BatchTagFilterOpt = None,
    allocate_status: AllocOpt = None,
    connect_status: ConnectOpt = None,
    device_sn: DeviceSnOpt = None,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number.")] = 1,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Devices per page.")] = 50,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", help="Field[:asc|desc]: createTime, updateTime, sn, deviceSn, batchOrder."
        ),
    ] = "createTime:desc",
    retired: Annotated[
        bool,
        typer.Option(
            "--retired",
            help="List the retired units instead: replaced, with the unit in service and any "
            "that registered again.",
        ),
    ] = False,
    fmt: FormatOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List devices, newest first, one page at a time. A retired unit that registered again
    (replaced, then powered on with its old file) is flagged in the state column.

    With --retired: the retired units (taken out by `enosprov replace`), oldest replacement
    first, each with the unit that replaced it, the unit in service now and, when it registered
    again, its new sn (--group, --batch-tag and --device-sn narrow the list).

    Example: enosprov devices list --group meters-eu --allocate-status init --limit 100

    Example: enosprov devices list --retired --group meters-eu
    """
    json_ = list_format(fmt, json_)
    from ..core.lineage import retired_links, retirement_from_link
    from ..domain.models import Sorter

    if retired:
        if allocate_status or connect_status:
            from ..domain.errors import InvalidArgumentError

            raise InvalidArgumentError(
                "--allocate-status and --connect-status do not apply to --retired",
                hint="a retired unit is no longer in DPS",
            )
        _list_retired(ctx, group, batch_tag, device_sn, page, limit, json_)
        return
    field, _, order = sort.partition(":")
    with state(ctx).open() as (store, journal):
        result = store.search(
            _query(
                store,
                group,
                batch_tag,
                allocate_status,
                connect_status,
                device_sn,
                page_no=page,
                page_size=limit,
                sorters=(Sorter(field, (order or "asc").upper()),),
            )
        )
        came_back = {}  # sn -> Retirement: retired units registered again, on this page
        groups = {d.group_id for d in result.items}
        links = {}
        for gid in groups if len(groups) <= 5 else (None,):
            links.update(retired_links(store, journal, gid))
        for d in result.items:
            link = links.get((d.group_id, d.device_sn))
            if link is not None and link["oldSn"] != d.sn:
                came_back[d.sn] = retirement_from_link(store, journal, link, returned=d)

    def render(p) -> None:
        # Columns that say nothing on this page are left out, so the table fits 80 columns.
        cols = ["sn", "deviceSn", "group", "batch", "state", "target", "created"]
        rows = [
            [
                d.sn,
                d.device_sn,
                d.group_id,
                d.batch_tag_text,
                state_label(d, came_back.get(d.sn)),
                f"{d.region_id} / {d.org_id}" if d.allocated else None,
                _time(d.create_time, seconds=False),
            ]
            for d in p.items
        ]
        drop = set()
        if len({d.group_id for d in p.items}) <= 1:
            drop.add(2)
        if not any(d.allocated for d in p.items):
            drop.add(5)
        table(
            None,
            [c for i, c in enumerate(cols) if i not in drop],
            [[v for i, v in enumerate(r) if i not in drop] for r in rows],
        )
        first = (p.page_no - 1) * p.page_size
        say(f"{first + 1 if p.items else 0}-{first + len(p.items)} of {p.total}", stderr=True)
        for r in came_back.values():
            if r.returned is None:  # the unit in service itself: nothing came back
                continue
            say(f"{r.returned.sn}: {r.returned_text()}; what to do: {r.advice()}", stderr=True)

    data = result.to_dict()
    for item in data["items"]:
        r = came_back.get(item["sn"])
        item["retired"] = r.to_dict() if r is not None else None
    emit(data, json_, lambda _: render(result))


def _list_retired(ctx, group, batch_tag, device_sn, page: int, limit: int, json_: bool) -> None:
    from ..core.lineage import retired_units

    with state(ctx).open() as (store, journal):
        group_id = store.get_group(group).group_id if group else None
        units = retired_units(store, journal, group_id=group_id, device_sns=device_sn or ())
        if batch_tag is not None:
            marked = {
                sn
                for gid in {r.group_id for r in units}
                for _m, sn, _d, _t in journal.marked(gid, batch_tag, ("replaced",))
            }
            units = [r for r in units if r.sn in marked]
    total = len(units)
    shown = units[(page - 1) * limit : page * limit]
    data = {
        "items": [r.to_dict() for r in shown],
        "pagination": {"pageNo": page, "pageSize": limit, "total": total},
    }

    def render(_d) -> None:
        if not shown:
            say("no retired units")
            return
        several = len({r.group_id for r in shown}) > 1
        table(
            "retired units (replaced)",
            ["deviceSn", "sn", *(["group id"] if several else []), "replaced by", "on",
             "in service", "registered again"],
            [[r.device_sn, r.sn, *([r.group_id] if several else []),
              f"{r.replaced_by['deviceSn']} ({r.replaced_by['sn']})", r.date,
              r.in_service_text(), f"YES: sn {r.returned.sn}" if r.returned else "no"]
             for r in shown],
        )  # fmt: skip
        first = (page - 1) * limit
        say(f"{first + 1}-{first + len(shown)} of {total}", stderr=True)
        for r in shown:
            if r.returned is not None:
                status_line(r.returned_text(), ok=False)
                say(f"what to do: {r.advice()}", stderr=True)

    emit(data, json_, render)


@app.command("show")
@handled
def show(
    ctx: typer.Context,
    device: Annotated[
        str,
        typer.Argument(metavar="SN", help="System sn, deviceSn, or the short code of its label."),
    ],
    group: OptionalGroupOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show one device (by system sn, deviceSn or label short code) with its statuses and master data.

    A retired unit (taken out by `enosprov replace`) is shown as such, with the unit that
    replaced it and the unit in service; a retired unit that registered again is flagged.

    Example: enosprov devices show SN-0001 --group meters-eu
    """
    from ..core.lineage import look_up_unit

    with state(ctx).open() as (store, journal):
        found = look_up_unit(store, journal, device, group)
        # a device pushed from the plant's store to EnOS has two sns (docs/sync.md)
        enos_sn = store.enos_sn(found.device.sn) if found.device is not None else None
    dev, retired = found.device, found.retired

    def render_retired(r) -> None:
        key_values(
            [
                ("system sn", r.sn),
                ("deviceSn", r.device_sn),
                ("group", r.group_id),
                ("state", "retired (replaced)"),
                ("replaced by", f"{r.replaced_by['deviceSn']} ({r.replaced_by['sn']})"),
                ("replaced", r.replaced_at[:19].replace("T", " ") + "Z"),
                ("in service", r.in_service_text()),
            ]
        )
        say(f"{r.device_sn} is a retired unit: {r.describe()}")
        if r.returned is not None:
            status_line(r.returned_text(), ok=False)
            say(f"what to do: {r.advice()}")

    if dev is None:
        emit(found, json_, lambda _: render_retired(retired))
        return

    def render(d) -> None:
        s = d.status
        key_values(
            [
                ("system sn", d.sn),
                *([("EnOS sn", enos_sn)] if enos_sn and enos_sn != d.sn else []),
                ("deviceSn", d.device_sn),
                ("group", d.group_id),
                ("state", state_label(d, retired)),
                ("product key", d.product_key),
                ("device key", d.device_key or "-"),
                ("allocated to", f"{d.region_id or '-'} / {d.org_id or '-'}"),
                ("allocateStatus", d.allocate_status),
                ("connectStatus", d.connect_status),
                ("currentStatus", s.current_status),
                ("reprovisioning", str(d.reprovisioning).lower()),
                *(
                    [("reprovisioned", _time(d.reprovision_time))]
                    if d.reprovision_time is not None
                    else []
                ),
                ("batch tag", d.batch_tag_text),
                ("batch order", d.batch_order),
                ("description", d.desc),
                ("created", f"{_time(d.create_time)} by {d.create_by}"),
                ("updated", f"{_time(d.update_time)} by {d.update_by}"),
                ("allocated", _time(s.allocated_time)),
                ("connected", _time(s.connected_time)),
            ]
        )
        data = {k: v for k, v in d.device_data.items() if k != "deviceSn"}
        if data:
            table(
                "master data", ["key", "value"], [[k, _value(v)] for k, v in sorted(data.items())]
            )
        if retired is not None:
            status_line(retired.returned_text(), ok=False)
            say(f"what to do: {retired.advice()}")

    shown = {**found.to_dict(), "enosSn": enos_sn} if enos_sn else found
    emit(shown, json_, lambda _: render(dev))


@app.command("export")
@handled
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .jsonl).")],
    group: OptionalGroupOpt = None,
    batch_tag: BatchTagFilterOpt = None,
    allocate_status: AllocOpt = None,
    connect_status: ConnectOpt = None,
    device_sn: DeviceSnOpt = None,
    fmt: Annotated[
        Literal["csv", "jsonl"] | None,
        typer.Option(
            "--format", help="The file's format.", show_default="from the file name: .jsonl or csv"
        ),
    ] = None,
    with_secrets: Annotated[
        bool,
        typer.Option(
            "--with-secrets",
            help="Also write each device secret (the file is created owner-only).",
        ),
    ] = False,
    old_include_secrets: Annotated[
        bool, typer.Option("--include-secrets", hidden=True, show_default=False)
    ] = False,
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Export devices to CSV or JSON lines, streamed and written atomically.

    A CSV file is spreadsheet-safe: text that would start a formula (=1+2, -A1, @x) gets a
    leading ' (`enosprov register` reads it back unchanged), unless --raw-csv.

    Example: enosprov devices export --group meters-eu --batch-tag B-1 --out devices-b1.csv
    """
    from .. import api
    from ..domain.models import Sorter

    include_secrets = renamed(
        with_secrets, old_include_secrets, new="--with-secrets", old="--include-secrets"
    )

    with state(ctx).backend() as store:
        query = _query(
            store,
            group,
            batch_tag,
            allocate_status,
            connect_status,
            device_sn,
            sorters=(Sorter("createTime", "ASC"),),
        )
        report = api.export_devices_to(
            store, out, query, fmt=fmt, include_secrets=include_secrets, raw_csv=raw_csv
        )
    emit(
        report,
        json_,
        lambda r: say(
            f"exported {r.devices} devices to {r.file} ({r.format}"
            + (", with device secrets, owner-only" if r.include_secrets else "")
            + ")"
        ),
    )


DevicesArg = Annotated[
    list[str], typer.Argument(metavar="SN...", help="System sns or deviceSns.", show_default=False)
]


@app.command("update")
@handled
def update(
    ctx: typer.Context,
    device: Annotated[
        str, typer.Argument(metavar="SN", help="System sn or deviceSn.", show_default=False)
    ],
    group: OptionalGroupOpt = None,
    desc: Annotated[
        str | None, typer.Option("--desc", help="New description (at most 512 characters).")
    ] = None,
    batch_tag: Annotated[str | None, typer.Option("--batch-tag", help="New batch tag.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Master data key=value, typed by the group's master data (repeatable; also "
            "deviceName and timezone).",
        ),
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option("--unset", help="Remove a master data key (repeatable; not a required one)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Update one device: description, batch tag, master data values.

    Values are checked against the group's master data first; nothing changes if one is wrong.
    The change is recorded in the audit journal (`enosprov log`).

    Example: enosprov devices update SN-0001 --group meters-eu --set max_capacity=60
    --unset site --batch-tag B-2026-11-B
    """
    from ..core.device_ops import update_device
    from ..core.onboarding import parse_sets

    values = parse_sets(set_)
    with state(ctx).open() as (store, journal):
        result = update_device(store, device, group=group, desc=desc, batch_tag=batch_tag,
                               values=values, unset=unset or (), journal=journal)  # fmt: skip

    def render(r) -> None:
        d = r.device
        changed = [f"{k}={_value(v)}" for k, v in r.set.items()]
        changed += [f"{k} removed" for k in r.unset]
        if r.desc is not None:
            changed.append("desc")
        if r.batch_tag is not None:
            changed.append(f"batch tag {r.batch_tag}")
        say(f"updated {d.group_id}/{d.device_sn} (sn {d.sn}): {', '.join(changed)}")

    emit(result, json_, render)


@app.command("delete")
@handled
def delete(
    ctx: typer.Context,
    devices: DevicesArg,
    group: OptionalGroupOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Delete devices, all of one registration group, after a confirmation.

    Every SN must resolve (system sn, deviceSn or label short code) and all must be in one group, or nothing is
    deleted. On a terminal the devices are listed and a confirmation asked; without a terminal
    --yes is required. The deletion is recorded in the audit journal (`enosprov log`).

    Example: enosprov devices delete SN-0001 SN-0002 --group meters-eu --yes
    """
    from ..core.device_ops import delete_devices, one_group, resolve_devices

    with state(ctx).open() as (store, journal):
        found = resolve_devices(store, devices, group)
        group_id = one_group(found)
        confirm_or_refuse(
            f"Delete {len(found)} device{'s' * (len(found) != 1)} of group {group_id} "
            f"({', '.join(d.device_sn for d in found[:20])}"
            f"{' ...' if len(found) > 20 else ''})?",
            yes=yes,
            what=f"delete {len(found)} device{'s' * (len(found) != 1)}",
            dry_run=False,
        )
        report = delete_devices(store, found, journal=journal)

    def render(r) -> None:
        table(
            f"deleted from group {r.group_id}",
            ["sn", "deviceSn"],
            [[d.sn, d.device_sn] for d in r.devices],
        )

    emit(report, json_, render)


@app.command("allocate")
@handled
def allocate(
    ctx: typer.Context,
    devices: DevicesArg,
    group: OptionalGroupOpt = None,
    region: RegionOpt = None,
    org: OrgOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Allocate devices to EnOS: each gets its triple (productKey, deviceKey, deviceSecret).

    The target is --region/--org, sent as the built-in master data deviceData.regionId/orgId of
    Allocate Device (the way EnOS documents choosing where a device goes), else the device's own
    deviceData target, else the group's. The "allocated to" column is where EnOS says the device
    is afterwards. A device already allocated is reported "already allocated" and left where it
    is. Every SN must resolve before any is allocated.
    Recorded in the audit journal (`enosprov log`).

    Example: enosprov devices allocate SN-0001 SN-0002 --group meters-eu --region eu2
    --org o15000000000001
    """
    from ..core.device_ops import allocate_devices, resolve_devices

    with state(ctx).open() as (store, journal):
        found = resolve_devices(store, devices, group)
        results = allocate_devices(store, found, region_id=region, org_id=org, journal=journal)

    def render(res) -> None:
        table(
            None,
            ["sn", "deviceSn", "group id", "result", "allocated to"],
            [
                [r.device.sn, r.device.device_sn, r.device.group_id, r.result,
                 f"{r.device.region_id or '-'} / {r.device.org_id or '-'}"]
                for r in res
            ],
        )  # fmt: skip
        for r in res:
            if r.note:
                say(f"{r.device.device_sn}: {r.note}", stderr=True)

    emit([r.to_dict() for r in results], json_, lambda _: render(results))


def _time(ms: int | None, seconds: bool = True) -> str:
    return show_time(ms, seconds=seconds)


def _value(v) -> str:
    if isinstance(v, dict) and "defaultValue" in v:
        extra = ", ".join(f"{k}: {t}" for k, t in (v.get("i18nValue") or {}).items())
        return v["defaultValue"] + (f" ({extra})" if extra else "")
    return str(v)
