"""`enosprov burn export|verify`: firmware credential files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..domain.errors import EXIT_MISMATCH
from .options import (
    BatchTagFilterOpt,
    CsvSelectOpt,
    DeviceSnOpt,
    GroupOpt,
    JsonOpt,
    RawCsvOpt,
    renamed,
    state,
)
from .output import emit, handled, key_values, progress_bar, say, table

app = typer.Typer(
    help="Credential files to burn into devices (plug-and-play onboarding).\n\n"
    "Example: enosprov burn export --group meters-eu --batch-tag B-1 --burn-format json --out burn/",
    no_args_is_help=True,
)


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number (e.g. 0x9000)") from None


BurnFormat = Literal["json", "ini", "c", "bin", "hex", "nvs", "template"]

FlashOpt = Annotated[
    str,
    typer.Option(
        "--flash-address",
        help="Load address of HEX images (e.g. 0x9000); also recorded in the manifest as the "
        "offset to flash NVS images at.",
    ),
]
NamespaceOpt = Annotated[str, typer.Option("--nvs-namespace", help="NVS namespace.")]


@app.command("export")
@handled
def export(
    ctx: typer.Context,
    group: GroupOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    burn_format: Annotated[
        BurnFormat,
        typer.Option(
            "--burn-format",
            help="Credential file format (docs/burn-formats.md); template: --burn-template.",
        ),
    ] = "json",
    old_format: Annotated[
        BurnFormat | None, typer.Option("--format", "-f", hidden=True, show_default=False)
    ] = None,
    content: Annotated[
        Literal["bootstrap", "triple"],
        typer.Option(
            "--content",
            help="bootstrap: the group secret (the device registers itself); triple: the "
            "device key and secret of an allocated device.",
        ),
    ] = "bootstrap",
    batch_tag: BatchTagFilterOpt = None,
    device_sn: DeviceSnOpt = None,
    csv_file: CsvSelectOpt = None,
    no_register: Annotated[
        bool,
        typer.Option(
            "--no-register",
            help="Devices not registered: they register themselves on bootstrap (needs --csv "
            "or --device-sn).",
        ),
    ] = False,
    dps_url: Annotated[
        str | None, typer.Option("--dps-url", help="DPS device endpoint written into the files.")
    ] = None,
    flash_address: FlashOpt = "0x9000",
    nvs_namespace: Annotated[
        str, typer.Option("--nvs-namespace", help="NVS namespace.")
    ] = "enosprov",
    nvs_size: Annotated[
        str, typer.Option("--nvs-size", help="NVS partition size, a multiple of 4096.")
    ] = "0x3000",
    burn_template: Annotated[
        str | None,
        typer.Option(
            "--burn-template",
            help="For --burn-format template: a template file, or the name of a shipped one "
            "(credentials.h, credentials.conf, credentials.yaml). See docs/burn-formats.md.",
            show_default=False,
        ),
    ] = None,
    old_template: Annotated[
        str | None, typer.Option("--template", hidden=True, show_default=False)
    ] = None,
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Write one credential file per device, plus manifest.csv / manifest.json (SHA-256 each).

    Files are written atomically and owner-only; re-running rewrites nothing that is already
    correct. A run stopped midway (even by kill -9) leaves no manifest rather than a wrong one:
    re-run it. A file name too long for the file system is refused before anything is written. Bootstrap files carry the deviceName (the registered one, else the deviceSn) and
    the timezone (the device's, else the group's default) that Bootstrap Device requires; a
    device with no timezone stops the export before anything is written. Formats and layouts:
    docs/burn-formats.md.

    Example: enosprov burn export --group meters-eu --batch-tag B-2026-11-A --burn-format nvs
    --out burn/ --flash-address 0x9000
    """
    from ..burn.export import Selection, export_burn_files
    from ..burn.formats import FormatOptions
    from ..burn.formats.template import read_template

    given = ctx.get_parameter_source("burn_format")  # the default, or typed on the command line
    typed = burn_format if given is not None and given.name != "DEFAULT" else None
    fmt = renamed(typed, old_format, new="--burn-format", old="--format/-f") or burn_format
    template = renamed(burn_template, old_template, new="--burn-template", old="--template")
    text, template_name = read_template(template) if template is not None else (None, None)
    options = FormatOptions(
        flash_address=_int(flash_address),
        nvs_namespace=nvs_namespace,
        nvs_size=_int(nvs_size),
        template=text,
        template_name=template_name,
    )
    selection = Selection(
        group=group,
        batch_tag=batch_tag,
        device_sns=tuple(device_sn or ()),
        csv_path=str(csv_file) if csv_file else None,
        no_register=no_register,
    )
    with state(ctx).open() as (backend, journal), progress_bar(not json_, "burn") as progress:
        report = export_burn_files(
            backend, selection, out, fmt=fmt, profile=content, dps_url=dps_url,
            options=options, progress=progress, journal=journal, raw_csv=raw_csv,
        )  # fmt: skip
    emit(
        report,
        json_,
        lambda r: key_values(
            [
                ("folder", r.out_dir),
                ("format / content", f"{r.format} / {r.profile}"),
                ("devices", r.devices),
                ("written", r.written),
                ("already correct", r.unchanged),
                ("manifest", ", ".join(r.manifest)),
                ("time", f"{r.seconds:.2f} s"),
            ]
        ),
    )


@app.command("verify")
@handled
def verify(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Credential files, any format.")],
    flash_address: FlashOpt = "0x9000",
    nvs_namespace: NamespaceOpt = "enosprov",
    json_: JsonOpt = False,
) -> None:
    """Decode credential files (any format) and check them against the store or EnOS.

    Checks the group, the deviceSn and system sn, and that the group secret (bootstrap) or the
    device key and secret (triple) match. Exit code 4 when a file does not match.

    Example: enosprov burn verify burn/MTR-2026-000001.json burn/MTR-2026-000002.bin
    """
    from ..burn.formats import FormatOptions
    from ..burn.verify import verify_files

    with state(ctx).backend() as backend:
        options = FormatOptions(flash_address=_int(flash_address), nvs_namespace=nvs_namespace)
        report = verify_files(backend, files, options)

    def render(r) -> None:
        table(
            None,
            ["file", "format", "deviceSn", "result"],
            [
                [c.file, c.format, c.device_sn, "ok" if c.ok else "; ".join(c.problems)]
                for c in r.checks
            ],
        )
        for c in r.checks:
            for note in c.notes:
                say(f"  {c.file}: {note}", stderr=True)

    emit(report, json_, render)
    if not report.ok:
        raise typer.Exit(EXIT_MISMATCH)
