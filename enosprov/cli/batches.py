"""`enosprov batches list|show|report`: follow production batches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from .options import FormatOpt, JsonOpt, OptionalGroupOpt, RawCsvOpt, list_format, renamed, state
from .output import emit, handled, key_values, say, show_time, status_line, table

app = typer.Typer(
    help="Production batches (batch tags): counts per state, stuck devices, reports.\n\n"
    "Example: enosprov batches show B-2026-11-A --stale 7d",
    no_args_is_help=True,
)

StaleOpt = Annotated[
    str,
    typer.Option(
        "--stale", help="Exported or labelled longer ago than this and never bootstrapped: stuck."
    ),
]
SHORT = {
    "registered": "registered", "exported": "exported", "labelled": "labelled",
    "allocated": "allocated", "connected": "connected", "failed": "failed",
    "reprovisioned": "reprov.", "replaced": "replaced", "deleted": "deleted",
}  # fmt: skip


def _time(iso: str | None) -> str:
    return show_time(iso)


@app.command("list")
@handled
def list_(
    ctx: typer.Context,
    group: OptionalGroupOpt = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only batches active since: 7d, 12h, 2026-11-01, ISO time."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only batches active before this time.")
    ] = None,
    sort: Annotated[
        Literal["tag", "first", "last", "registered", "connected"],
        typer.Option("--sort", help="Order of the batches (first, last: activity times)."),
    ] = "tag",
    fmt: FormatOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Every batch tag (per group) with its devices per state and its first and last activity.

    registered, allocated, connected, failed and reprovisioned come from the store (or the DPS
    search API with an EnOS profile); exported, labelled, replaced and deleted from the audit
    journal. Devices without a batch tag are shown as (none).

    Example: enosprov batches list --group meters-eu --since 30d --sort last
    """
    json_ = list_format(fmt, json_)
    from ..core.batches import STATES, list_batches

    with state(ctx).open() as (backend, journal):
        batches = list_batches(backend, journal, group=group, since=since, until=until, sort=sort)

    def render(items) -> None:
        if not items:
            say("no batches")
            return
        several = len({b.group_id for b in items}) > 1
        cols = ["batch", *(["group id"] if several else []), *(SHORT[s] for s in STATES),
                "first", "last"]  # fmt: skip
        rows = [
            [b.tag_text, *([b.group_id] if several else []), *(b.counts[s] for s in STATES),
             show_time(b.to_dict()["firstActivity"], seconds=False), show_time(b.to_dict()["lastActivity"], seconds=False)]
            for b in items
        ]  # fmt: skip
        table(None, cols, rows, no_wrap={"batch", "first", "last"}, wide=True)
        sources = items[0].sources
        say(
            f"{len(items)} batch{'es' if len(items) != 1 else ''}; sources: "
            f"{sources['registered']} (registered, allocated, connected, failed, reprov.), "
            "journal (exported, labelled, replaced, deleted)",
            stderr=True,
        )

    emit([b.to_dict() for b in batches], json_, lambda _d: render(batches))


@app.command("show")
@handled
def show(
    ctx: typer.Context,
    tag: Annotated[str, typer.Argument(metavar="TAG", help="The batch tag.")],
    group: OptionalGroupOpt = None,
    stale: StaleOpt = "7d",
    state_: Annotated[
        str | None,
        typer.Option("--state", help="List this state's devices (registered, exported, ...)."),
    ] = None,
    page: Annotated[int, typer.Option("--page", min=1, help="Page of --state devices.")] = 1,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Devices per page / stuck shown.")
    ] = 20,
    json_: JsonOpt = False,
) -> None:
    """One batch: counts per state (with the source of each), the stuck devices (exported or
    labelled more than --stale ago and never bootstrapped), activations per day, and production
    by station and per hour or day (units registered, burned, labelled, printed, failed, from
    the journal's --station stamps). Retired units of the batch that came back (replaced, then
    registered again by their old file) are counted and listed, loudly, with what to do. With
    --state, one page of that state's devices.

    Example: enosprov batches show B-2026-11-A --group meters-eu --stale 14d

    Example: enosprov batches show B-2026-11-A --state exported --page 2 --limit 100
    """
    from ..core.batches import devices_in_state, find_batch, show_batch

    with state(ctx).open() as (backend, journal):
        if state_ is not None:
            summary = find_batch(backend, journal, tag, group)
            devices = devices_in_state(backend, journal, summary, state_, page=page, limit=limit)
            total = summary.counts[state_]
            result = {"batch": summary.to_dict(), "state": state_, "page": page,
                      "limit": limit, "total": total, "devices": devices}  # fmt: skip

            def render_state(r) -> None:
                table(f"{tag}: {state_} devices", ["sn", "deviceSn", "since"],
                      [[d["sn"], d["deviceSn"], _time(d["time"])] for d in r["devices"]])  # fmt: skip
                first = (page - 1) * limit
                shown = f"{first + 1}-{first + len(devices)}" if devices else "0"
                say(f"{shown} of {total}", stderr=True)

            emit(result, json_, render_state)
            return
        detail = show_batch(backend, journal, tag, group=group, stale=stale, stuck_limit=limit)
    emit(detail, json_, _render_detail)


def _render_detail(d) -> None:
    from ..core.batches import STATES, describe_duration

    s = d.summary
    info = s.to_dict()
    key_values(
        [
            ("batch", s.tag_text),
            ("group", s.group_id),
            ("first activity", _time(info["firstActivity"])),
            ("last activity", _time(info["lastActivity"])),
        ]
    )
    # every unit that was ever in the batch: those in DPS now and those replaced or deleted
    units = s.counts["registered"] + s.counts["replaced"] + s.counts["deleted"]
    rows = []
    for st in STATES:
        n = s.counts[st]
        rows.append([st, n, f"{100 * n / units:.0f} %" if units else "", s.sources.get(st, "")])
    table(None, ["state", "devices", f"of {units} units", "source"], rows)
    stale = describe_duration(d.stale_ms)
    if d.stuck_count:
        table(
            f"stuck: exported or labelled more than {stale} ago, never bootstrapped "
            f"({d.stuck_count}" + (f", showing {len(d.stuck)})" if len(d.stuck) < d.stuck_count
                                   else ")"),
            ["sn", "deviceSn", "since", "what", "allocateStatus"],
            [[x.sn, x.device_sn, show_time(x.to_dict()["since"], seconds=False), x.mark, x.allocate_status]
             for x in d.stuck],
            no_wrap={"since", "what", "allocateStatus"},
            wide=True,
        )  # fmt: skip
    else:
        say(f"stuck: none (everything exported or labelled more than {stale} ago has bootstrapped)")
    chart(d.activations)
    if d.lineage:
        say(f"replacements: {len(d.lineage)} (`enosprov devices history SN` for each chain)")
    returned(d.returned)
    production(d.production)


def returned(items) -> None:
    """The retired units of a batch that came back (registered again), loudly, with what to do."""
    if not items:
        return
    status_line(f"RETIRED UNITS THAT CAME BACK: {len(items)}", ok=False)
    table(
        None,
        ["deviceSn", "sn now", "registered again", "state", "replaced by", "on", "in service"],
        [[r.device_sn, r.returned.sn, show_time(r.to_dict()["returned"]["createTime"], seconds=False),
          "connected" if r.returned.connect_status == "connected" else r.returned.allocate_status,
          r.replaced_by["deviceSn"], r.date, r.in_service_text()]
         for r in items],
        no_wrap={"registered again", "on"},
        wide=True,
    )  # fmt: skip
    for r in items:
        say(f"what to do for {r.device_sn}: {r.advice()}")


MAX_PERIODS = 60  # production periods shown in the terminal (all of them with --json)


def production(p) -> None:
    """Production by station, then per station and hour or day (the last MAX_PERIODS)."""
    from ..core.batches import OUTPUTS

    if p is None or not p.stations:
        say("production by station: none recorded in this journal")
        return
    runs = any(s.failed_runs for s in p.stations)
    rows = []
    for s in p.stations:
        info = s.to_dict()
        rate = s.units_per_hour
        rows.append(
            [s.station_text, *(s.counts[o] for o in OUTPUTS), *([s.failed_runs] if runs else []),
             show_time(info["first"], seconds=False), show_time(info["last"], seconds=False),
             "" if rate is None else f"{rate:,.1f}"]
        )  # fmt: skip
    cols = ["station", *OUTPUTS, *(["failed runs"] if runs else []), "first", "last",
            "units/hour"]  # fmt: skip
    table("production by station", cols, rows, no_wrap={"station", "first", "last"}, wide=True)
    names = sorted({x.period for x in p.periods})
    shown = set(names[-MAX_PERIODS:])
    table(
        f"production per {p.unit} (UTC)",
        [p.unit, "station", *OUTPUTS],
        [[x.period, x.station_text, *(x.counts[o] for o in OUTPUTS)]
         for x in p.periods if x.period in shown],
        no_wrap={p.unit, "station"},
        wide=True,
    )  # fmt: skip
    if len(names) > MAX_PERIODS:
        say(f"  (the last {MAX_PERIODS} of {len(names)} {p.unit}s; all of them with --json)")


def chart(per_day: dict[str, int], width: int = 40) -> None:
    """Activations per day as horizontal bars, every day from the first to the last."""
    import datetime as dt

    if not per_day:
        say("activations per day: none yet")
        return
    first = dt.date.fromisoformat(min(per_day))
    last = dt.date.fromisoformat(max(per_day))
    days = [(first + dt.timedelta(n)).isoformat() for n in range((last - first).days + 1)]
    top = max(per_day.values())
    say("activations per day (UTC):")
    for day in days[-60:]:
        n = per_day.get(day, 0)
        units = n * width / top
        bar = "█" * int(units) + ("▌" if units - int(units) >= 0.5 else "")
        say(f"  {day}  {bar or '·'} {n}")
    if len(days) > 60:
        say(f"  (the last 60 of {len(days)} days)")


@app.command("report")
@handled
def report(
    ctx: typer.Context,
    tag: Annotated[str, typer.Argument(metavar="TAG", help="The batch tag.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")],
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv-out", help="Also write one CSV row per device to this file."),
    ] = None,
    old_csv: Annotated[Path | None, typer.Option("--csv", hidden=True, show_default=False)] = None,
    group: OptionalGroupOpt = None,
    stale: StaleOpt = "7d",
    raw_csv: RawCsvOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Write a self-contained HTML report of one batch (counts, activations over time,
    production by station, stuck devices, replacement lineage, retired units that came back;
    inline SVG charts, no script, nothing loaded from the network) that can be opened or mailed;
    --csv-out adds a per-device spreadsheet (text that would start a formula, such as a deviceSn -A1,
    gets a leading ', unless --raw-csv). The report's JSON gives returnedCount.

    Example: enosprov batches report B-2026-11-A --out b-2026-11-a.html
    --csv-out b-2026-11-a.csv
    """
    import time

    from ..core.batches import show_batch
    from ..reports.batch_csv import write_batch_csv
    from ..reports.batch_html import write_batch_html

    csv_path = renamed(csv_out, old_csv, new="--csv-out", old="--csv")
    st = state(ctx)
    settings = st.settings()
    label = f"EnOS profile {settings.profile}" if settings.backend == "enos" else "local store"
    with st.open() as (backend, journal):
        detail = show_batch(backend, journal, tag, group=group, stale=stale, stuck_limit=1000)
        html = write_batch_html(detail, out, generated_ms=int(time.time() * 1000),
                                backend_label=label)  # fmt: skip
        rows = (
            write_batch_csv(backend, journal, detail, csv_path, raw_csv=raw_csv)
            if csv_path
            else None
        )
    result = {"html": str(html), "csv": str(csv_path) if csv_path else None, "csvRows": rows,
              "batch": detail.summary.to_dict(), "returnedCount": len(detail.returned),
              "returned": [r.to_dict() for r in detail.returned]}  # fmt: skip

    def show(r: dict) -> None:
        say(
            f"report of batch {tag}: {r['html']}"
            + (f"; {r['csvRows']} devices in {r['csv']}" if r["csv"] else "")
        )
        returned(detail.returned)

    emit(result, json_, show)
