"""`enosprov qr batch|scan`: QR code labels for onboarding."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_FAILED
from .options import (
    BatchTagFilterOpt,
    CsvSelectOpt,
    DeviceSnOpt,
    GroupOpt,
    JsonOpt,
    OrgOpt,
    RawCsvOpt,
    RegionOpt,
    state,
)
from .output import emit, handled, key_values, printable, progress_bar, say, table

app = typer.Typer(
    help="QR code labels that identify devices (never a secret), and scanning them back.\n\n"
    "Example: enosprov qr batch --group meters-eu --batch-tag B-1 --format both --out labels/",
    no_args_is_help=True,
)


@app.command("batch")
@handled
def batch(
    ctx: typer.Context,
    group: GroupOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="png | svg | both | pdf | zpl")
    ] = "png",
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Label template for pdf/zpl: a TOML file or a name in templates/labels/ "
            "(default a4-3x8-70x37 for pdf, thermal-62mm for zpl). See docs/labels.md.",
        ),
    ] = None,
    batch_tag: BatchTagFilterOpt = None,
    device_sn: DeviceSnOpt = None,
    csv_file: CsvSelectOpt = None,
    ec: Annotated[str, typer.Option("--ec", help="Error-correction level: L, M, Q or H.")] = "M",
    module_px: Annotated[
        int | None, typer.Option("--module-px", help="Pixels per module (default 8).")
    ] = None,
    size_mm: Annotated[
        float | None,
        typer.Option("--size-mm", help="Printed symbol width in mm (quiet zone excluded)."),
    ] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="Printer resolution for --size-mm.")] = 300,
    quiet_zone: Annotated[int, typer.Option("--quiet-zone", help="White border in modules.")] = 4,
    payload_template: Annotated[
        str | None,
        typer.Option(
            "--payload-template",
            help="Own payload, e.g. 'https://x.example/d/{deviceSn}'; fields: {groupId} "
            "{deviceSn} {sn} {batchTag} {shortCode}. Default: the ENP1 payload.",
        ),
    ] = None,
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Write one QR label per device (PNG and/or SVG, or one labels.pdf / labels.zpl laid out by
    a label template), plus manifest.csv / manifest.json.

    Every symbol is decoded back and compared with its payload before its file is written.
    Files are written atomically; re-running rewrites nothing already correct. A run stopped
    midway (even by kill -9) leaves no manifest rather than a wrong one: re-run it. Payload
    format: docs/qr-payload.md.

    Example: enosprov qr batch --group meters-eu --batch-tag B-2026-11-A --format both
    --size-mm 20 --dpi 300 --ec Q --out labels/
    """
    from ..burn.export import Selection
    from ..qr.batch import qr_batch
    from ..qr.render import QrOptions

    options = QrOptions(ec=ec, quiet_zone=quiet_zone, module_px=module_px, size_mm=size_mm,
                        dpi=dpi, template=payload_template)  # fmt: skip
    selection = Selection(
        group=group,
        batch_tag=batch_tag,
        device_sns=tuple(device_sn or ()),
        csv_path=str(csv_file) if csv_file else None,
    )
    with state(ctx).open() as (backend, journal), progress_bar(not json_, "qr") as progress:
        report = qr_batch(backend, selection, out, fmt=fmt, options=options, progress=progress,
                          template=template, journal=journal, raw_csv=raw_csv)  # fmt: skip
    emit(
        report,
        json_,
        lambda r: key_values(
            [
                ("folder", r.out_dir),
                ("format", r.format),
                ("devices", r.devices),
                ("verified", r.verified),
                ("files written", r.written),
                ("already correct", r.unchanged),
                *([("labels", r.document)] if r.document else []),
                ("manifest", ", ".join(r.manifest)),
                ("time", f"{r.seconds:.2f} s"),
            ]
        ),
    )


@app.command("scan")
@handled
def scan(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Photos or scans of labels (PNG, JPEG...).")],
    onboard: Annotated[
        bool,
        typer.Option(
            "--onboard", help="Update and allocate the devices found (on-site onboarding)."
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="deviceName (--onboard, one device only).")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="Timezone, e.g. +08:00 or Europe/Berlin (--onboard)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Master data key=value (--onboard, repeatable)."),
    ] = None,
    region: RegionOpt = None,
    org: OrgOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Onboard several devices without asking.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Decode the QR labels in images (rotated, skewed, several per image) and show the devices.

    With --onboard, each device found is updated with the on-site details (--name, --timezone,
    --set key=value) and allocated (to --region/--org, both or neither, sent as the built-in
    master data deviceData.regionId/orgId of Allocate Device; else the device's own target, else
    its group's; a device already allocated stays where it is). Everything is validated before anything changes. Several
    devices need a confirmation (--yes without a terminal).

    Exit code 1 when an image has no code, a code is not an enosprov payload, or a device is
    not registered (with --onboard nothing is then changed).

    Example: enosprov qr scan photo1.jpg scans/page2.png

    Example: enosprov qr scan label.jpg --onboard --name 'Meter hall 3' --timezone
    Europe/Berlin --set site=Hall-3 --region eu2 --org o15000000000001
    """
    from ..errors import InvalidArgumentError, RefusedError
    from ..qr.scan import ScanReport, scan_images

    onboarding = {"name": name, "timezone": timezone, "--set": set_, "--region": region,
                  "--org": org}  # fmt: skip
    if not onboard:
        given = [k if k.startswith("--") else "--" + k for k, v in onboarding.items() if v]
        if given:
            raise InvalidArgumentError(
                f"{', '.join(given)} only apply with --onboard", hint="add --onboard"
            )
    with state(ctx).open() as (backend, journal):
        report = ScanReport(scan_images(backend, images))
        results = None
        if onboard and report.ok:
            from ..qr.onboard import onboard_devices, parse_sets

            values = parse_sets(set_)
            devices = list({c.device.sn: c.device for i in report.images for c in i.codes}.values())
            if len(devices) > 1 and name is not None:
                raise InvalidArgumentError(
                    f"--name names one device, but {len(devices)} devices were found",
                    hint="scan one label at a time to name devices",
                )
            if len(devices) > 1 and not yes:
                if not sys.stdin.isatty():
                    raise InvalidArgumentError(
                        f"not onboarding {len(devices)} devices without confirmation",
                        hint="pass --yes (there is no terminal to ask on)",
                    )
                shown = ", ".join(f"{d.group_id}/{d.device_sn}" for d in devices)
                if not typer.confirm(printable(f"Onboard {len(devices)} devices ({shown})?")):
                    raise RefusedError("nothing onboarded")
            results = onboard_devices(backend, devices, name=name, timezone=timezone,
                                      values=values, region_id=region, org_id=org,
                                      journal=journal)  # fmt: skip

    def render(r) -> None:
        rows = []
        for img in r.images:
            for c in img.codes:
                dev = c.device
                rows.append([img.path, c.payload.group_id if c.payload else "",
                             c.payload.device_sn if c.payload else c.text,
                             dev.sn if dev else "", dev.allocate_status if dev else "",
                             c.problem or "ok"])  # fmt: skip
        table(None, ["image", "group id", "deviceSn", "sn", "allocated", "result"], rows)
        for img in r.images:
            for p in img.problems:
                say(f"{img.path}: {p}", stderr=True)

    def render_onboarded(res) -> None:
        rows = []
        for o in res:
            d = o.device
            where = f"{d.region_id} / {d.org_id}"
            rows.append([d.group_id, d.device_sn, d.sn, ", ".join(o.updated) or "-",
                         ("allocated to " if o.allocated_now else "") + where])  # fmt: skip
        table("onboarded", ["group id", "deviceSn", "sn", "updated", "allocation"], rows)
        for o in res:
            if o.note:
                say(f"{o.device.device_sn}: {o.note}", stderr=True)

    if results is None:
        emit(report, json_, render)
        if not report.ok:
            if onboard and not json_:
                say("nothing onboarded", stderr=True)
            raise typer.Exit(EXIT_FAILED)
        return
    data = report.to_dict() | {"onboarded": [o.to_dict() for o in results]}
    emit(data, json_, lambda _: (render(report), render_onboarded(results)))
