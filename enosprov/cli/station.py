"""`enosprov station`: one station of a factory line, one unit per input line, in one process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from ..domain.errors import EXIT_OK, EXIT_PARTIAL
from .options import GroupOpt, state
from .output import handled, say, status_line


@handled
def station(
    ctx: typer.Context,
    group: GroupOpt,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the credential files and the ledger.")
    ],
    burn_format: Annotated[
        Literal["json", "ini", "c", "bin", "hex", "nvs", "template"],
        typer.Option("--burn-format", help="Credential file format (docs/burn-formats.md)."),
    ] = "json",
    burn_template: Annotated[
        str | None,
        typer.Option("--burn-template", help="For --burn-format template: a file or shipped name."),
    ] = None,
    dps_url: Annotated[
        str | None, typer.Option("--dps-url", help="DPS device endpoint written into the files.")
    ] = None,
    batch_tag: Annotated[
        str | None, typer.Option("--batch-tag", help="Batch tag given to the units registered.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Master data key=value for every unit (repeatable)."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="The columns of CSV input lines, e.g. deviceSn,max_capacity,phase (the input "
            "holds no header). Default: SN or SN,key=value,...",
        ),
    ] = None,
    flash_command: Annotated[
        str | None,
        typer.Option(
            "--flash-command",
            help="Run per unit after its file is written; {file}, {deviceSn} and {sn} are "
            "replaced, e.g. 'esptool.py write_flash 0x9000 {file}'. A non-zero exit fails "
            "the unit.",
        ),
    ] = None,
    printer: Annotated[
        str | None,
        typer.Option(
            "--printer",
            help="Where labels go: tcp://HOST[:9100] (ZPL), lp:QUEUE (PDF), file:PATH.",
        ),
    ] = None,
    label_format: Annotated[
        Literal["pdf", "zpl", "png", "svg"] | None,
        typer.Option(
            "--label-format",
            help="Without --printer: write each label to OUT/labels/ in this format.",
            show_default=False,
        ),
    ] = None,
    label_template: Annotated[
        str | None,
        typer.Option("--label-template", help="A one-label template (thermal-62mm by default)."),
    ] = None,
    reprint: Annotated[
        bool,
        typer.Option("--reprint", help="Print the scanned units' labels again; register nothing."),
    ] = False,
    allow_retired: Annotated[
        bool,
        typer.Option("--allow-retired", help="Accept a deviceSn that a replacement retired."),
    ] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON line per unit, then one for the summary.")
    ] = False,
) -> None:
    """Run one station of a line: read one unit per line from standard input (a barcode
    scanner types the deviceSn and Enter; or SN,key=value,...; or CSV lines with --columns),
    and for each, in this one process: register it (idempotent), write its credential file
    and check it like `burn verify`, run --flash-command, render its label (the QR symbol
    decoded back first) and send it to --printer. A unit scanned again resumes what it had not
    finished (the print after a printer failure) and is never registered twice; a failed unit
    never stops the station. One result line per unit; a summary at the end of input or on
    Ctrl-C. The root option --station names the station in the audit journal.

    Exit codes: 0 every unit done, 5 some units failed (their lines say why), 1 the station
    could not start.

    Example: enosprov --station line1-st2 station --group meters-eu --out burn/ --burn-format
    nvs --set max_capacity=60 --set phase=single --printer tcp://10.0.0.50:9100

    Example: printf 'MTR-1\\nMTR-2\\n' | enosprov station -g meters-eu -o out/ --jsonl
    """
    import json

    from ..core.onboarding import parse_sets
    from ..core.station import Station, StationConfig, read_units

    config = StationConfig(
        group=group, out_dir=out, burn_format=burn_format, burn_template=burn_template,
        dps_url=dps_url, batch_tag=batch_tag, defaults=parse_sets(set_),
        columns=tuple(c.strip() for c in columns.split(",")) if columns else (),
        flash_command=flash_command, label_format=label_format,
        label_template=label_template, printer=printer, allow_retired=allow_retired,
    )  # fmt: skip

    def report(res) -> None:
        if jsonl:
            sys.stdout.write(json.dumps(res.to_dict(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        steps = ", ".join(res.done) or "nothing to do"
        if res.resumed:
            steps += f" (already: {', '.join(res.resumed)})"
        if res.ok:
            status_line(f"OK    {res.device_sn}  {steps}  {res.ms:.0f} ms", True)
        else:
            status_line(f"FAIL  {res.device_sn or '(line ' + str(res.line) + ')'}  "
                        f"{res.failed}: {res.error}", False)  # fmt: skip

    with state(ctx).open() as (backend, journal), Station(backend, config, journal=journal) as st:
        if st.printer_problem and not jsonl:
            say(f"printer: {st.printer_problem}", stderr=True)
        if sys.stdin.isatty() and not jsonl:
            say("ready: scan a unit (Ctrl-D or Ctrl-C to stop)", stderr=True)
        try:
            for line, values, error in read_units(sys.stdin, config.columns):
                if error is not None:
                    res = st.refuse_line(line, error)
                else:
                    # read_units gives values with no error, an error with no values
                    res = st.process(cast("dict[str, str]", values), line, reprint=reprint)
                report(res)
        except KeyboardInterrupt:  # Ctrl-C ends the shift: the summary follows
            say("interrupted", stderr=True)
        summary = st.summary
    if jsonl:
        sys.stdout.write(json.dumps({"summary": summary.to_dict()}) + "\n")
    else:
        say(f"{summary.units} units: {summary.ok} done, {summary.failed} failed, "
            f"{summary.printed} printed, {summary.per_hour:.0f} units/hour", stderr=True)  # fmt: skip
    raise typer.Exit(EXIT_OK if summary.failed == 0 else EXIT_PARTIAL)
