"""`enosprov log`: read the audit journal (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import FormatOpt, JsonOpt, list_format, state
from .output import emit, handled, say, show_time, table

SHOWN_DEVICES = 3  # the human table lists the deviceSns of a record up to this many


@handled
def log(
    ctx: typer.Context,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Only records about this device (system sn or deviceSn)."),
    ] = None,
    operation: Annotated[
        list[str] | None,
        typer.Option(
            "--operation",
            help="Only these operations (repeatable): masterdata-create, group-create, register, "
            "update, delete, allocate, bootstrap, reprovision, replace, burn-export, "
            "label-export, onboard.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="From this time: 7d, 12h, 30m (ago), 2026-11-01 or an ISO date-time."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this time (same forms as --since).")
    ] = None,
    station: Annotated[
        str | None,
        typer.Option("--station", help="Only records of this station id.", show_default=False),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Only records of this registration group id."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many records.")
    ] = None,
    newest: Annotated[bool, typer.Option("--newest", help="Newest first.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the records as JSON lines to this file."),
    ] = None,
    fmt: FormatOpt = None,
    json_: JsonOpt = False,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help="JSON lines on stdout: one record (a JSON object) per line, streamed."
        ),
    ] = False,
) -> None:
    """List the audit journal: who changed what, when, where, and the outcome (oldest first).

    Every change (master data and group creation, registration, update, delete, allocation,
    device bootstrap, credential and label exports, onboarding) appends one record; secrets are
    never recorded. With the local store the journal is kept in the store file; with an EnOS
    profile in journal.db in the user data folder ($ENOSPROV_JOURNAL overrides). Reading it
    changes nothing. The root option --station (or $ENOSPROV_STATION) stamps new records; the
    --station option here filters.

    --json prints one document, {"data": [record, ...]}, as every command does; --jsonl
    streams one record per line; --out FILE writes those lines to FILE atomically and prints a
    one-line summary.

    Example: enosprov log --device MTR-2026-000001 --since 7d

    Example: enosprov log --operation register --operation delete --jsonl > audit.jsonl
    """
    json_ = list_format(fmt, json_)
    import json
    import sys

    from ..domain.errors import InvalidArgumentError
    from ..journal import OPERATIONS, parse_time

    unknown = [op for op in operation or () if op not in OPERATIONS]
    if unknown:  # checked here too: an empty journal reads nothing, so would not say
        raise InvalidArgumentError(
            f"unknown operation {unknown[0]!r}", hint="one of: " + ", ".join(OPERATIONS)
        )
    start = parse_time(since, option="--since") if since is not None else None
    end = parse_time(until, option="--until") if until is not None else None
    journal = state(ctx).journal()
    try:
        entries = journal.entries(
            device=device,
            operations=tuple(operation or ()),
            since=start,
            until=end,
            station=station,
            group_id=group,
            limit=limit,
            newest_first=newest,
        )
        if json_ and jsonl:
            raise InvalidArgumentError(
                "--json and --jsonl cannot be used together",
                hint="--json: one document; --jsonl: one record per line",
            )
        if out is not None:
            count = _write_lines(out, entries)
            summary = {"out": str(out), "records": count}
            emit(summary, json_ or jsonl, lambda _: say(
                f"wrote {count} journal record{'s' * (count != 1)} to {out}"))  # fmt: skip
            return
        if jsonl:
            for entry in entries:
                sys.stdout.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")
            return
        if json_:
            emit([e.to_dict() for e in entries], True)
            return
        _render(list(entries), journal)
    finally:
        journal.close()


def _write_lines(path: Path, entries) -> int:
    import json

    from ..atomic import AtomicFile

    count = 0
    with AtomicFile(path) as fh:
        for entry in entries:
            fh.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _render(entries: list, journal) -> None:
    if not entries:
        say(f"no journal records (journal: {journal.path})", stderr=True)
        return
    rows = []
    for e in entries:
        devices: list[str] | str
        if 0 < e.device_count <= SHOWN_DEVICES:
            devices = [dsn or sn for sn, dsn in e.devices]  # one line each
        else:
            devices = str(e.device_count)
        outcome = e.outcome + (f": {e.error}" if e.error and e.outcome != "ok" else "")
        rows.append(
            [
                _time(e.time),
                e.operation,
                outcome,
                devices,
                e.group_id,
                f"{e.user}@{e.host}",
                e.station,
                e.request_id,
            ]
        )
    columns = ["time", "operation", "outcome", "devices", "group id", "user@host", "station",
               "requestId"]  # fmt: skip
    # Columns empty on every row (no station, no requestId with the local store) are left out.
    keep = [i for i, c in enumerate(columns) if i < 4 or any(r[i] for r in rows)]
    _table([columns[i] for i in keep], [[r[i] for i in keep] for r in rows])
    say(f"{len(entries)} record{'s' * (len(entries) != 1)}", stderr=True)


def _table(columns: list[str], rows: list[list]) -> None:
    """Time, operation and identifiers never wrap (the other columns fold); as wide as it needs
    when the output is not a terminal (a file, a pipe, grep)."""
    table(None, columns, rows, no_wrap={"time", "operation", "devices", "group id"}, wide=True)


def _time(ms: int) -> str:
    return show_time(ms)
