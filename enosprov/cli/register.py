"""`enosprov register`: batch registration from a CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_OK, EXIT_PARTIAL
from .options import GroupOpt, JsonOpt, RawCsvOpt, state
from .output import emit, handled, progress_bar, say, table

# Also used by `devices export` and `batches report`.


@handled
def register(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Option("--csv", help="CSV file of devices (docs/csv-format.md).", show_default=False),
    ],
    group: GroupOpt,
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
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Register the devices of a CSV file into a registration group.

    The whole file is validated first; any invalid row means nothing is registered (unless
    --skip-invalid). Re-running the same file is safe: registered rows are skipped, rows whose
    deviceSn exists with other data are reported as conflicts. Exit codes: 0 all rows registered
    or already there, 1 invalid input (nothing written), 5 finished with conflicts or with rows
    left out by --skip-invalid. Values that spreadsheets would read as formulas (=1+2) are
    registered as they are, with a warning; a CSV --results file prefixes them with ' unless
    --raw-csv.

    Example: enosprov register --csv devices.csv --group meters-eu --batch-tag B-2026-11-A
    --results results.csv
    """
    from .. import api

    with state(ctx).open() as (store, journal), progress_bar(not json_, "register") as progress:
        report = api.register_csv(
            store,
            csv_file,
            group,
            batch_tag=batch_tag,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            results=results,
            chunk_size=chunk_size,
            encoding=encoding,
            delimiter=delimiter,
            progress=progress,
            journal=journal,
            raw_csv=raw_csv,
        )
    emit(report, json_, _render)
    raise typer.Exit(EXIT_OK if report.complete else EXIT_PARTIAL)


def _render(report) -> None:
    verb = "would be " if report.dry_run else ""
    table(
        f"{'Dry run: ' if report.dry_run else ''}{report.file} -> group {report.group_id}",
        ["rows", f"{verb}created", f"{verb}skipped (same data)", "conflicts", "invalid"],
        [[report.rows, report.created, report.skipped, report.conflicts, report.invalid]],
    )
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
