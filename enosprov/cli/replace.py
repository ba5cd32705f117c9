"""`enosprov replace`: swap a faulty unit for a new one that keeps its details."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from .options import JsonOpt, OptionalGroupOpt, renamed, state
from .output import confirm_or_refuse, emit, handled, key_values, progress_bar, say, table


@handled
def replace(
    ctx: typer.Context,
    old: Annotated[
        str | None,
        typer.Argument(
            metavar="[OLD]", help="The unit taken out: system sn, deviceSn or label short code."
        ),
    ] = None,
    new_device_sn: Annotated[
        str | None,
        typer.Option("--new-device-sn", help="The new unit's serial number (deviceSn)."),
    ] = None,
    old_new_sn: Annotated[
        str | None, typer.Option("--new-sn", hidden=True, show_default=False)
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Many units: a CSV with columns old,new (validated first)."),
    ] = None,
    group: OptionalGroupOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the new units' credential files.")
    ] = Path("replacements"),
    burn_format: Annotated[
        Literal["json", "ini", "c", "bin", "hex", "nvs"],
        typer.Option("--burn-format", help="The new unit's credential file format."),
    ] = "json",
    no_burn: Annotated[bool, typer.Option("--no-burn", help="Write no credential file.")] = False,
    dps_url: Annotated[
        str | None, typer.Option("--dps-url", help="DPS device endpoint written into the files.")
    ] = None,
    label_template: Annotated[
        str | None,
        typer.Option(
            "--label-template",
            help="Also write a label into OUT/labels/: the name of a shipped single-label "
            "template (thermal-62mm, thermal-4x6in) or a TOML file.",
            show_default=False,
        ),
    ] = None,
    old_label: Annotated[
        str | None, typer.Option("--label", hidden=True, show_default=False)
    ] = None,
    label_format: Annotated[
        Literal["pdf", "zpl", "png", "svg"],
        typer.Option("--label-format", help="Format of the label file (with --label-template)."),
    ] = "pdf",
    printer: Annotated[
        str | None,
        typer.Option(
            "--printer",
            help="Also print each new unit's label: tcp://HOST[:9100] (ZPL, raw), lp:QUEUE (PDF "
            "through lp) or file:PATH. The printer decides the format; --label-template names the "
            "(single-label) template.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything and change nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Replace a unit (OLD) by a new one: NEW keeps OLD's master data, batch tag and description.

    NEW is registered in OLD's group if needed; OLD is removed; NEW takes over OLD's allocation
    with its own device key and secret. In the same run NEW's credential file is written to
    --out (--burn-format) and, with --label-template, its label as --out/labels/NEW.pdf (or .zpl .png
    .svg); with --printer the label is printed (exit code 6 when it was not). The lineage
    OLD -> NEW is recorded (`enosprov devices history`); OLD is then a retired unit. Refused
    with nothing changed: OLD unknown, NEW in another group, NEW already allocated, NEW == OLD,
    OLD already replaced. A NEW that is already registered (a spare or production unit with its
    own label or credential file) is named in the plan with its batch: the replacement consumes
    its own registration, and the confirmation says so. Re-running a finished replacement
    reports it as already done.

    Example: enosprov replace SN-0007 --new-device-sn SN-0107 --out burn/ --label-template
    thermal-62mm

    Example: enosprov replace --csv pairs.csv --group meters-eu --burn-format nvs --out burn/
    --yes --json
    """
    from ..core.replacement import (
        Outputs,
        ReplaceRequest,
        plan_replacements,
        read_pairs,
        replace_devices,
    )
    from ..domain.errors import InvalidArgumentError

    new_sn = renamed(new_device_sn, old_new_sn, new="--new-device-sn", old="--new-sn")
    label = renamed(label_template, old_label, new="--label-template", old="--label")
    if csv_file is not None and (old or new_sn):
        raise InvalidArgumentError("give OLD --new-device-sn NEW, or --csv FILE, not both")
    if csv_file is None:
        if not (old and new_sn):
            raise InvalidArgumentError(
                "which unit? " + ("--new-device-sn NEW is missing" if old else "OLD is missing"),
                hint="enosprov replace OLD --new-device-sn NEW, or --csv pairs.csv",
            )
        requests = [ReplaceRequest(old, new_sn)]
    else:
        requests = read_pairs(csv_file)
    if label is None and label_format != "pdf":
        label = ""  # --label-format alone asks for a label with the format's default layout
    outputs = Outputs(
        burn_dir=None if no_burn else out,
        burn_format=burn_format,
        dps_url=dps_url,
        label_dir=out / "labels" if label is not None else None,  # its own manifest
        label_format=label_format,
        label_template=label or None,
        printer=printer,
    )
    with state(ctx).open() as (backend, journal):
        plans = plan_replacements(
            backend, requests, group=group, journal=journal,
            source=str(csv_file) if csv_file else None,
        )  # fmt: skip
        if not json_:
            _show_plan(plans)
        todo = [p for p in plans if not p.done]
        if dry_run:
            emit({"plan": [p.to_dict() for p in plans], "dryRun": True}, json_)
            if not json_:
                say("dry run: nothing was changed")
            return
        if todo:
            question, what = _confirmation(todo)
            confirm_or_refuse(question, yes=yes, what=what)
        with progress_bar(not json_ and len(plans) > 1, "replace") as progress:
            report = replace_devices(
                backend, plans, journal=journal, outputs=outputs, progress=progress
            )
    emit(report, json_, _render)
    if report.printing is not None and not report.printing.ok:
        from ..domain.errors import EXIT_PRINTER

        raise typer.Exit(EXIT_PRINTER)


def _confirmation(todo) -> tuple[str, str]:
    """The question, and the change a refusal names: a registered NEW's own registration
    (its batch, whether it was burned or labelled) is consumed by the replacement."""
    consumed = [p for p in todo if p.consumes_new]
    units = ", ".join(f"{p.request.new} ({p.new_text()})" for p in consumed[:5])
    units += " ..." if len(consumed) > 5 else ""
    if len(todo) == 1:
        first = todo[0]
        question = f"Replace {first.old.device_sn} by {first.request.new}?"
        what = f"replace {first.old.device_sn} by {first.request.new}"
        if consumed:
            question += (
                f" {first.request.new} is already registered ({first.new_text()}): its own "
                f"registration is consumed (it takes {first.old.device_sn}'s master data, batch "
                f"tag {first.old.batch_tag_text or '(none)'} and description)."
            )
            what += f", consuming the registration of {units}"
    else:
        question = f"Replace {len(todo)} units?"
        what = f"replace {len(todo)} units"
        if consumed:
            question += (
                f" {len(consumed)} new unit{'s are' if len(consumed) > 1 else ' is'} already "
                f"registered and {'their' if len(consumed) > 1 else 'its'} own registration is "
                f"consumed: {units}."
            )
            what += f", consuming the registration of {units}"
    removed = " The old units are" if len(todo) > 1 else " The old unit is"
    return question + removed + " removed from DPS.", what


def _show_plan(plans) -> None:
    rows = []
    for p in plans:
        old = p.old
        new = "to register"
        if p.new is not None:
            new = f"registered: {p.new_text()}" if p.consumes_new else "registered"
        rows.append([
            old.device_sn if old else p.request.old, old.sn if old else "",
            p.request.new, new, "already done" if p.done else "replace",
        ])  # fmt: skip
    table("replacement plan", ["old deviceSn", "old sn", "new deviceSn", "new unit", "action"],
          rows, wide=True)  # fmt: skip
    for p in plans:
        if p.consumes_new:
            say(
                f"note: {p.request.new} is already registered ({p.new_text()}): replacing onto "
                f"it consumes its own registration; it takes {p.old.device_sn}'s master data, "
                "batch tag and description and leaves its batch",
                stderr=True,
            )


def _render(report) -> None:
    for r in report.replaced:
        if r.already_done:
            say(f"{r.old_device_sn} was already replaced by {r.new_device_sn} ({r.new_sn})")
            continue
        say(
            f"replaced {r.old_device_sn} ({r.old_sn}) by {r.new_device_sn} ({r.new_sn})"
            + (f": allocated to {r.allocation} with a new device key and secret"
               if r.allocation else ": not allocated yet (it bootstraps into the group's target)")
        )  # fmt: skip
    for b in report.burn:
        key_values([("credential files", f"{b.out_dir} ({b.format}, {b.written} written, "
                                          f"{b.unchanged} already correct)")])  # fmt: skip
    for q in report.labels:
        shown = q.document or ", ".join(q.files) or q.out_dir
        key_values([("labels", f"{shown} ({q.format})")])
    if report.printing is not None:
        from .qr import _show_printing

        _show_printing(report.printing)
