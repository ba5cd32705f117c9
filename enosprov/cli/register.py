"""`enosprov register`: batch registration from a CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..domain.errors import EXIT_OK, EXIT_PARTIAL
from .options import GroupOpt, JsonOpt, RawCsvOpt, state
from .output import emit, handled, progress_bar, say, table

# Also used by `devices export` and `batches report`.


@handled
def register(
    ctx: typer.Context,
    group: GroupOpt,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="CSV file of devices (docs/csv-format.md); - reads standard input.",
            show_default=False,
        ),
    ] = None,
    device_sn: Annotated[
        str | None,
        typer.Option("--device-sn", help="One unit, without a CSV: its deviceSn."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="One unit: its deviceName.")] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="One unit: its timezone (+08:00, Asia/Shanghai)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="One unit: master data key=value (repeatable)."),
    ] = None,
    desc: Annotated[str | None, typer.Option("--desc", help="One unit: its description.")] = None,
    batch_tag: Annotated[
        str | None,
        typer.Option("--batch-tag", help="Batch tag for rows whose batchTag column is empty."),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Register the valid rows even if others are invalid."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and report what would happen; write nothing."),
    ] = False,
    results: Annotated[
        Path | None,
        typer.Option("--results", help="Per-row results file: .csv, or .jsonl for JSON lines."),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="Input encoding (default utf-8-sig).")
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option("--delimiter", help="',' ';' or 'tab' (default: detected).")
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Rows per database transaction.", min=1)
    ] = 10000,
    allow_retired: Annotated[
        bool,
        typer.Option(
            "--allow-retired",
            help="Accept a deviceSn that a replacement retired (refused by default).",
        ),
    ] = False,
    ignore_unknown_columns: Annotated[
        bool,
        typer.Option(
            "--ignore-unknown-columns",
            help="Leave out columns that are neither enosprov's nor the group's master data "
            "(an error by default: often a misspelt attribute).",
        ),
    ] = False,
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Register the devices of a CSV file (or standard input, --csv -), or one unit given by
    --device-sn [--name] [--timezone] [--set key=value ...], into a registration group.

    The whole file is validated first; any invalid row means nothing is registered (unless
    --skip-invalid). Re-running the same file is safe: registered rows are skipped, rows whose
    deviceSn exists with other data are reported as conflicts. Exit codes: 0 all rows registered
    or already there, 1 invalid input (nothing written), 5 finished with conflicts or with rows
    left out by --skip-invalid. A row whose deviceSn is a retired unit (one that `enosprov
    replace` took out) is invalid, naming the unit in service, unless --allow-retired: re-running
    an old batch file does not bring a replaced unit back. Values that spreadsheets would read as
    formulas (=1+2) are registered as they are, with a warning; a CSV --results file prefixes
    them with ' unless --raw-csv.

    Example: enosprov register --csv devices.csv --group meters-eu --batch-tag B-2026-11-A
    --results results.csv

    Example: enosprov register --group meters-eu --device-sn MTR-2026-000123 --name 'Meter 123'
    --timezone +01:00 --set max_capacity=60 --set phase=single --batch-tag B-2026-11-A
    """
    import sys

    from .. import api
    from ..domain.errors import InvalidArgumentError

    unit = {"--name": name, "--timezone": timezone, "--set": set_, "--desc": desc}
    if (csv_file is None) == (device_sn is None):
        raise InvalidArgumentError(
            "give either --csv FILE (or --csv - for standard input) or --device-sn SN",
            hint="one unit: register --group G --device-sn SN [--name N] [--timezone TZ] "
            "[--set key=value]",
        )
    if csv_file is not None and any(v for v in unit.values()):
        used = ", ".join(k for k, v in unit.items() if v)
        raise InvalidArgumentError(f"{used} describe one unit: use them with --device-sn, "
                                   "not with --csv (put them in the CSV's columns)")  # fmt: skip
    with state(ctx).open() as (store, journal), progress_bar(not json_, "register") as progress:
        kw = dict(batch_tag=batch_tag, skip_invalid=skip_invalid, dry_run=dry_run,
                  results=results, chunk_size=chunk_size, progress=progress, journal=journal,
                  raw_csv=raw_csv, allow_retired=allow_retired,
                  ignore_unknown_columns=ignore_unknown_columns)  # fmt: skip
        if csv_file is None:  # then --device-sn (exactly one of the two, checked above)
            from ..core.onboarding import parse_sets

            row = {"deviceSn": device_sn, "deviceName": name, "timezone": timezone,
                   "desc": desc, **parse_sets(set_)}  # fmt: skip
            row = {k: v for k, v in row.items() if v is not None}
            report = api.register_records(store, [row], group, name=f"unit {device_sn}", **kw)
        elif str(csv_file) == "-":
            report = api.register_stream(store, sys.stdin.buffer, group, encoding=encoding,
                                         delimiter=delimiter, **kw)  # fmt: skip
        else:
            report = api.register_csv(store, csv_file, group, encoding=encoding,
                                      delimiter=delimiter, **kw)  # fmt: skip
    emit(report, json_, _render)
    raise typer.Exit(EXIT_OK if report.complete else EXIT_PARTIAL)


def _render(report) -> None:
    verb = "would be " if report.dry_run else ""
    table(
        f"{'Dry run: ' if report.dry_run else ''}{report.file} -> group {report.group_id}",
        ["rows", f"{verb}created", f"{verb}skipped (same data)", "conflicts", "invalid"],
        [[report.rows, report.created, report.skipped, report.conflicts, report.invalid]],
    )
    if report.ignored_columns:
        say(f"note: unknown column(s) left out: {', '.join(report.ignored_columns)}", stderr=True)
    for issue in report.issues:
        say(f"  invalid: {issue}", stderr=True)
    for c in report.conflict_samples:
        say(f"  conflict: deviceSn {c.device_sn} (sn {c.sn}): {c.error}", stderr=True)
    if report.conflicts > len(report.conflict_samples):
        say(f"  ... {report.conflicts - len(report.conflict_samples)} more conflicts", stderr=True)
    if report.warnings:
        say(_warning_line(report), stderr=True)
    if report.results_file:
        say(f"results: {report.results_file}")


def _warning_line(report) -> str:
    """One line on the values a spreadsheet would read as formulas (the JSON has examples)."""
    n, rows = report.warnings, report.warning_rows
    more = ", ..." if report.warning_row_count > len(rows) else ""
    where = f" (row{'s' * (len(rows) != 1)} {', '.join(map(str, rows))}{more})" if rows else ""
    return (
        f"warning: {n} value{'s start' if n != 1 else ' starts'} with = + - @{where}: "
        "spreadsheets may read them as formulas; enosprov's CSV files prefix them with '"
    )
