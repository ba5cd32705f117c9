"""`enosprov qr batch|scan`: QR code labels for onboarding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_FAILED
from .options import GroupOpt, JsonOpt, state
from .output import emit, handled, key_values, progress_bar, say, table

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
    fmt: Annotated[str, typer.Option("--format", "-f", help="png | svg | both")] = "png",
    batch_tag: Annotated[str | None, typer.Option("--batch-tag", help="Only this batch.")] = None,
    device_sn: Annotated[
        list[str] | None, typer.Option("--device-sn", help="Only these deviceSns (repeatable).")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Only the deviceSns of this CSV (deviceSn column).")
    ] = None,
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
    json_: JsonOpt = False,
) -> None:
    """Write one QR label per device (PNG and/or SVG), plus manifest.csv / manifest.json.

    Every symbol is decoded back and compared with its payload before its file is written.
    Files are written atomically; re-running rewrites nothing already correct. Payload format:
    docs/qr-payload.md.

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
    with state(ctx).backend() as backend, progress_bar(not json_, "qr") as progress:
        report = qr_batch(backend, selection, out, fmt=fmt, options=options, progress=progress)
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
    json_: JsonOpt = False,
) -> None:
    """Decode the QR labels in images (rotated, skewed, several per image) and show the devices.

    Exit code 1 when an image has no code, a code is not an enosprov payload, or a device is
    not registered.

    Example: enosprov qr scan photo1.jpg scans/page2.png
    """
    from ..qr.scan import ScanReport, scan_images

    with state(ctx).backend() as backend:
        report = ScanReport(scan_images(backend, images))

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

    emit(report, json_, render)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
