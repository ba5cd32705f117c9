"""`enosprov qr batch|print|scan`: QR code labels for onboarding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..domain.errors import EXIT_FAILED, EXIT_PRINTER
from .options import (
    BatchTagFilterOpt,
    CsvSelectOpt,
    DeviceSnOpt,
    GroupOpt,
    JsonOpt,
    OptionalGroupOpt,
    OrgOpt,
    RawCsvOpt,
    RegionOpt,
    renamed,
    state,
)
from .output import (
    confirm_or_refuse,
    emit,
    handled,
    key_values,
    progress_bar,
    say,
    status_line,
    table,
)

app = typer.Typer(
    help="QR code labels that identify devices (never a secret), and scanning them back.\n\n"
    "Example: enosprov qr batch --group meters-eu --batch-tag B-1 --label-format both --out labels/",
    no_args_is_help=True,
)

PrinterOpt = Annotated[
    str | None,
    typer.Option(
        "--printer",
        help="Send the labels to a printer: tcp://HOST[:9100] (ZPL, raw), lp:QUEUE (PDF through "
        "lp) or file:PATH (.zpl .pdf .png .svg). The printer decides the label format. See "
        "docs/labels.md.",
    ),
]


def _show_printing(r) -> None:
    """The per-unit results of sending labels to a printer, and what to do about failures."""
    rows = [[u.device_sn, u.sn, "printed" if u.printed else (u.error or "not printed")]
            for u in r.results]  # fmt: skip
    table(f"printer {r.printer} ({r.format})", ["deviceSn", "sn", "result"], rows)
    if r.status:
        say(f"printer reports: {r.status}", stderr=True)
    if not r.ok:
        failed = [u.device_sn for u in r.results if not u.printed]
        shown = " ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
        say(f"{r.failed} of {len(r.results)} label(s) not printed: fix the printer, then "
            f"reprint them with `enosprov qr print {shown} --printer {r.printer}`",
            stderr=True)  # fmt: skip


@app.command("batch")
@handled
def batch(
    ctx: typer.Context,
    group: GroupOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    label_format: Annotated[
        Literal["png", "svg", "both", "pdf", "zpl"] | None,
        typer.Option(
            "--label-format",
            help="Label format; both = png and svg.",
            show_default="png, or the printer's",
        ),
    ] = None,
    old_format: Annotated[
        Literal["png", "svg", "both", "pdf", "zpl"] | None,
        typer.Option("--format", "-f", hidden=True, show_default=False),
    ] = None,
    label_template: Annotated[
        str | None,
        typer.Option(
            "--label-template",
            help="Label template for pdf/zpl: a TOML file or the name of a shipped one "
            "(`enosprov template label` lists them). See docs/labels.md.",
            show_default="a4-3x8-70x37 for pdf, thermal-62mm for zpl",
        ),
    ] = None,
    old_template: Annotated[
        str | None, typer.Option("--template", hidden=True, show_default=False)
    ] = None,
    batch_tag: BatchTagFilterOpt = None,
    device_sn: DeviceSnOpt = None,
    csv_file: CsvSelectOpt = None,
    ec: Annotated[
        Literal["L", "M", "Q", "H"], typer.Option("--ec", help="QR error-correction level.")
    ] = "M",
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
    order: Annotated[
        Literal["registration", "device-sn", "csv"],
        typer.Option("--order", help="Label order; csv: the order of the --csv selection."),
    ] = "registration",
    per_device: Annotated[
        bool,
        typer.Option(
            "--per-device", help="pdf/zpl: one <deviceSn>.pdf / .zpl per unit, not one document."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite a pdf/zpl file that holds another run's labels."),
    ] = False,
    printer: PrinterOpt = None,
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Write one QR label per device (PNG and/or SVG, or one PDF / ZPL document laid out by a
    label template and named after the selection, e.g. labels-B-2026-11-A.pdf), plus
    manifest.csv / manifest.json.

    Labels come in registration order (--order). Every symbol is decoded back and compared with
    its payload before its file is written. Files are written atomically; re-running rewrites
    nothing already correct, and a pdf/zpl file holding another run's labels is refused without
    --force. A run stopped midway (even by kill -9) leaves no manifest rather than a wrong one:
    re-run it. With --printer every label is also sent to the printer (exit code 6 when some
    were not printed). Payload format: docs/qr-payload.md.

    Example: enosprov qr batch --group meters-eu --batch-tag B-2026-11-A --label-format both
    --size-mm 20 --dpi 300 --ec Q --out labels/

    Example: enosprov qr batch --group meters-eu --batch-tag B-2026-11-A --out labels/
    --printer tcp://10.0.0.5:9100
    """
    from ..burn.export import Selection
    from ..qr.batch import qr_batch
    from ..qr.render import QrOptions

    fmt = renamed(label_format, old_format, new="--label-format", old="--format/-f")
    template = renamed(label_template, old_template, new="--label-template", old="--template")
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
                          template=template, journal=journal, raw_csv=raw_csv, order=order,
                          per_device=per_device, force=force, printer=printer)  # fmt: skip

    def render(r) -> None:
        key_values(
            [
                ("folder", r.out_dir),
                ("format", r.format),
                ("order", r.order),
                ("devices", r.devices),
                ("verified", r.verified),
                ("files written", r.written),
                ("already correct", r.unchanged),
                *([("labels", r.document)] if r.document else []),
                *([("label files", f"{len(r.files)} (one per unit)")] if r.files else []),
                ("manifest", ", ".join(r.manifest)),
                ("time", f"{r.seconds:.2f} s"),
            ]
        )
        if r.printing is not None:
            _show_printing(r.printing)

    emit(report, json_, render)
    if report.printing is not None and not report.printing.ok:
        raise typer.Exit(EXIT_PRINTER)


@app.command("print")
@handled
def print_(
    ctx: typer.Context,
    units: Annotated[
        list[str], typer.Argument(help="Units to reprint: system sn, deviceSn or label short code.")
    ],
    printer: Annotated[
        str,
        typer.Option(
            "--printer",
            help="tcp://HOST[:9100] (ZPL, raw), lp:QUEUE (PDF through lp) or file:PATH (.zpl .pdf "
            ".png .svg). The printer decides the label format.",
            show_default=False,
        ),
    ],
    group: OptionalGroupOpt = None,
    label_template: Annotated[
        str | None,
        typer.Option(
            "--label-template",
            help="A single-label template (pdf/zpl): thermal-62mm (default), thermal-4x6in or a "
            "TOML file.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Reprint the labels of registered units on a printer, one label per unit.

    Each symbol is decoded back and compared with its payload before anything is sent. The
    printer's status is asked first (a Zebra's ~HS: paper out, paused, head open, ribbon out);
    the first label the printer does not take stops the run. One result per unit: printed, or
    the reason. Exit code 6 when any label was not printed, 1 when nothing was sent (an unknown
    unit, a bad --printer, a sheet template).

    Example: enosprov qr print SN-000017 SN-000018 --printer tcp://10.0.0.5:9100

    Example: enosprov qr print SN-000017 --printer lp:office --label-template thermal-4x6in
    """
    from ..core.reprint import print_labels

    with state(ctx).open() as (backend, journal):
        report = print_labels(backend, units, printer, group=group, template=label_template,
                              journal=journal)  # fmt: skip
    emit(report, json_, _show_printing)
    if not report.ok:
        raise typer.Exit(EXIT_PRINTER)


def _scan_result(code) -> str:
    """The result cell of a scanned code: a returning unit in short (the loud line below the
    table has the details)."""
    r = code.retired
    if r is not None and r.returned is not None and not code.problem:
        return f"RETIRED UNIT CAME BACK (in service: {r.in_service['deviceSn']})"
    return code.result


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
    not registered (with --onboard nothing is then changed). The label of a retired unit (one
    that `enosprov replace` took out) says "replaced by NEW (sn) on DATE; in service: NEW" (exit
    code 0, status "retired" in --json); a retired unit registered again is flagged as a retired
    unit that came back (status "returned"), with what to do. --onboard refuses both.

    Example: enosprov qr scan photo1.jpg scans/page2.png

    Example: enosprov qr scan label.jpg --onboard --name 'Meter hall 3' --timezone
    Europe/Berlin --set site=Hall-3 --region eu2 --org o15000000000001
    """
    from ..core.scan import ScanReport, scan_images
    from ..domain.errors import InvalidArgumentError

    onboarding = {"name": name, "timezone": timezone, "--set": set_, "--region": region,
                  "--org": org}  # fmt: skip
    if not onboard:
        given = [k if k.startswith("--") else "--" + k for k, v in onboarding.items() if v]
        if given:
            raise InvalidArgumentError(
                f"{', '.join(given)} only apply with --onboard", hint="add --onboard"
            )
    with state(ctx).open() as (backend, journal):
        report = ScanReport(scan_images(backend, images, journal=journal))
        results = None
        if onboard and report.ok:
            from ..core.onboarding import onboard_devices, parse_sets, scanned_devices

            values = parse_sets(set_)
            devices = scanned_devices([c for i in report.images for c in i.codes])
            if len(devices) > 1 and name is not None:
                raise InvalidArgumentError(
                    f"--name names one device, but {len(devices)} devices were found",
                    hint="scan one label at a time to name devices",
                )
            if len(devices) > 1:
                shown = ", ".join(f"{d.group_id}/{d.device_sn}" for d in devices)
                confirm_or_refuse(f"Onboard {len(devices)} devices ({shown})?", yes=yes,
                                  what=f"onboard {len(devices)} devices", dry_run=False)  # fmt: skip
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
                             _scan_result(c)])  # fmt: skip
        table(None, ["image", "group id", "deviceSn", "sn", "allocated", "result"], rows,
              wide=True)  # fmt: skip
        for img in r.images:
            for p in img.problems:
                say(f"{img.path}: {p}", stderr=True)
            for c in img.codes:
                if c.retired is not None and c.retired.returned is not None:
                    status_line(f"{img.path}: {c.retired.returned_text()}", ok=False)
                    say(f"what to do: {c.retired.advice()}", stderr=True)

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

    def render_both(_: object) -> None:
        render(report)
        render_onboarded(results)

    emit(data, json_, render_both)
