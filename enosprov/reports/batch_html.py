"""The batch report as one self-contained HTML page, for a production manager to open or mail.

Why one file with nothing outside it: the report travels as an e-mail attachment and is opened
offline, on any machine. So the page carries its own style (inline CSS, the system font stack, no
web font), draws its charts as inline SVG, runs no script and links to no external resource. It
prints on A4.

Every text that comes from the store or the journal goes through :func:`html.escape`. Each count
is written as ``<td class="count" data-state="STATE">N</td>`` (plain digits) so that tests and
people can read the figures back from the file.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from pathlib import Path

from ..atomic import write_text
from ..core.batches import OUTPUTS, STATES, BatchDetail, BatchSummary, Production, describe_duration

# One accent colour per state (also used by the bar chart and the key figures).
COLOURS = {
    "registered": "#475569",
    "exported": "#6366f1",
    "labelled": "#a855f7",
    "allocated": "#0284c7",
    "connected": "#16a34a",
    "failed": "#dc2626",
    "reprovisioned": "#d97706",
    "replaced": "#0d9488",
    "deleted": "#94a3b8",
}
STUCK = "#b45309"  # the key figure "stuck"
# Production by station: one colour per output (burned is the "exported" state).
OUTPUT_COLOURS = {
    "registered": COLOURS["registered"],
    "burned": COLOURS["exported"],
    "labelled": COLOURS["labelled"],
    "printed": "#db2777",
    "failed": COLOURS["failed"],
}
MEANINGS = {
    "registered": "in DPS now",
    "exported": "credential file written",
    "labelled": "QR label produced",
    "allocated": "allocated to an environment and OU",
    "connected": "has bootstrapped (fetched its triple)",
    "failed": "connection failed or allocation error",
    "reprovisioned": "reset at least once (reprovisioning)",
    "replaced": "taken out, a new unit took its place",
    "deleted": "deleted from DPS",
}
SOURCES = {
    "store": "counted in the local store",
    "DPS search": "read from EnOS DPS (device search, page by page)",
    "journal": "from the audit journal of the machine that made the report",
}
MAX_COLUMNS = 60  # activation chart: past this many days, weeks (then months)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_SANS = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)
_MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace'


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _utc(ms: int | None) -> str:
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _iso_text(text: str | None) -> str:
    """A journal ISO time (``...Z``) as ``YYYY-MM-DD HH:MM UTC``; other text as it is."""
    if not text:
        return "—"
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _age(ms: int) -> str:
    """How long ago, roughly: 12 days, 5 hours, 40 minutes."""
    ms = max(ms, 0)
    if ms >= 86_400_000:
        n, unit = ms // 86_400_000, "day"
    elif ms >= 3_600_000:
        n, unit = ms // 3_600_000, "hour"
    else:
        n, unit = ms // 60_000, "minute"
    return f"{n} {unit}{'s' if n != 1 else ''}"


def _pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "—"


# -- charts ---------------------------------------------------------------------------------------


def _bar_chart(summary: BatchSummary) -> str:
    """Horizontal bars, one per state, scaled to the largest count (the registered count
    usually)."""
    counts = summary.counts
    scale = max([counts.get(s, 0) for s in STATES] + [1])
    row, label_w, bar_w, width = 30, 112, 250, 430
    height = row * len(STATES)
    desc = "; ".join(f"{s}: {counts.get(s, 0)}" for s in STATES)
    out = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="bars-title bars-desc">',
        '<title id="bars-title">Devices per state</title>',
        f'<desc id="bars-desc">{_e(desc)}. Bars are scaled to {scale}.</desc>',
    ]
    for i, state in enumerate(STATES):
        n = counts.get(state, 0)
        y = i * row
        w = bar_w * n / scale
        if n and w < 3:
            w = 3  # a non-zero count stays visible
        mid = y + row / 2
        out.append(
            f'<g class="bar bar-{state}"><title>{state}: {n}</title>'
            f'<text x="{label_w - 10}" y="{mid:.1f}" dy="0.35em" text-anchor="end">{state}</text>'
            f'<rect x="{label_w}" y="{y + 7}" width="{bar_w}" height="{row - 14}" rx="4" '
            'fill="#f1f5f9"/>'
            f'<rect x="{label_w}" y="{y + 7}" width="{w:.1f}" height="{row - 14}" rx="4" '
            f'fill="{COLOURS[state]}"/>'
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{mid:.1f}" dy="0.35em">'
            f"{n:,}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _label(day: dt.date, unit: str) -> str:
    if unit == "month":
        return f"{_MONTHS[day.month - 1]} {day.year}"
    return f"{_MONTHS[day.month - 1]} {day.day}"


def activation_columns(activations: dict[str, int]) -> tuple[list[tuple[dt.date, int]], str]:
    """The columns of the activation chart and their unit (day, week or month).

    Every day from the first to the last day with activations, the missing ones at 0; past
    :data:`MAX_COLUMNS` days the days are summed by week (starting on Monday), past as many weeks
    by month."""
    days = sorted(dt.date.fromisoformat(d) for d, n in activations.items() if n)
    if not days:
        return [], "day"
    first, last = days[0], days[-1]

    def week(d: dt.date) -> dt.date:
        return d - dt.timedelta(days=d.weekday())

    def month(d: dt.date) -> dt.date:
        return d.replace(day=1)

    def same(d: dt.date) -> dt.date:
        return d

    unit, key = "day", same
    if (last - first).days + 1 > MAX_COLUMNS:
        unit, key = "week", week
        if (week(last) - week(first)).days // 7 + 1 > MAX_COLUMNS:
            unit, key = "month", month
    totals: dict[dt.date, int] = {}
    day = first
    while day <= last:
        totals.setdefault(key(day), 0)
        day += dt.timedelta(days=1)
    for text, n in activations.items():
        if n:
            k = key(dt.date.fromisoformat(text))
            totals[k] = totals.get(k, 0) + n
    return sorted(totals.items()), unit


def _nice_step(peak: int, lines: int = 4) -> int:
    """A round gridline step (1, 2, 5 x 10^k) giving about ``lines`` gridlines up to ``peak``."""
    raw = max(peak / lines, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw:
            return int(m * magnitude)
    return int(10 * magnitude)  # pragma: no cover


def _activation_chart(activations: dict[str, int]) -> str:
    columns, unit = activation_columns(activations)
    if not columns:
        return '<p class="empty">No device of this batch has been allocated yet.</p>'
    width, height = 720, 250
    left, right, top, bottom = 46, 10, 18, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(n for _d, n in columns)
    step = _nice_step(peak)
    ceiling = step * math.ceil(peak / step)
    slot = plot_w / len(columns)
    col_w = min(slot * 0.72, 44)
    total = sum(n for _d, n in columns)
    active = sorted(d for d, n in activations.items() if n)
    first, last = dt.date.fromisoformat(active[0]), dt.date.fromisoformat(active[-1])
    out = [
        f'<svg class="chart columns" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="act-title act-desc">',
        f'<title id="act-title">Activations per {unit}</title>',
        f'<desc id="act-desc">{total} devices allocated, per {unit}, from {first.isoformat()} to '
        f"{last.isoformat()}; the most in one {unit}: {peak}.</desc>",
    ]
    for v in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * v / ceiling
        stroke = "#cbd5e1" if v == 0 else "#e2e8f0"
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{stroke}" '
            'stroke-width="1"/>'
            f'<text x="{left - 8}" y="{y:.1f}" dy="0.35em" text-anchor="end">{v:,}</text>'
        )
    every = max(1, math.ceil(len(columns) / 12))
    show_values = slot >= 16
    for i, (day, n) in enumerate(columns):
        h = plot_h * n / ceiling
        x = left + i * slot + (slot - col_w) / 2
        y = top + plot_h - h
        name = ("week of " if unit == "week" else "") + (
            day.isoformat()[:7] if unit == "month" else day.isoformat()
        )
        out.append(
            f'<g class="col"><title>{name}: {n:,} allocated</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{col_w:.1f}" height="{h:.1f}" rx="2" '
            f'fill="{COLOURS["allocated"]}"/>'
        )
        if show_values and n:
            out.append(
                f'<text class="value" x="{x + col_w / 2:.1f}" y="{y - 5:.1f}" '
                f'text-anchor="middle">{n:,}</text>'
            )
        if i % every == 0:
            out.append(
                f'<text x="{x + col_w / 2:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                f"{_label(day, unit)}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    span = (last - first).days + 1
    if unit == "day":
        extent = f"{span} day{'s' if span != 1 else ''}"
        peak_name = next(d for d, n in columns if n == peak).isoformat()
        note = ""
    else:
        extent = f"{len(columns)} {unit}s"
        peak_at = next(d for d, n in columns if n == peak).isoformat()
        peak_name = f"week of {peak_at}" if unit == "week" else peak_at[:7]
        note = (
            f" Grouped by {unit} ({'weeks start on Monday; ' if unit == 'week' else ''}"
            f"the batch spans more than {MAX_COLUMNS} {'days' if unit == 'week' else 'weeks'})."
        )
    caption = (
        f"{total:,} devices allocated from {first.isoformat()} to {last.isoformat()} ({extent}); "
        f"the most in one {unit}: {peak:,} ({peak_name}).{note} Days are UTC days."
    )
    return f"<figure>{''.join(out)}<figcaption>{_e(caption)}</figcaption></figure>"


def _activations(detail: BatchDetail) -> str:
    _columns, unit = activation_columns(detail.activations)
    return (
        f'<section class="keep" id="activations"><h2>Activations per {unit}</h2>'
        '<p class="lede">Devices of this batch now in DPS, by the UTC day they were allocated.</p>'
        f"{_activation_chart(detail.activations)}</section>"
    )


# -- sections -------------------------------------------------------------------------------------


def _station_chart(production: Production) -> str:
    """Per station, one horizontal bar per output, all scaled to the largest count."""
    stations = production.stations
    scale = max([s.counts[o] for s in stations for o in OUTPUTS] + [1])
    bar, gap, label_w, bar_w, width = 13, 14, 130, 250, 440
    group_h = bar * len(OUTPUTS) + gap
    height = group_h * len(stations)
    desc = "; ".join(
        f"{s.station_text}: " + ", ".join(f"{o} {s.counts[o]}" for o in OUTPUTS) for s in stations
    )
    out = [
        f'<svg class="chart stations" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="stations-title stations-desc">',
        '<title id="stations-title">Production by station</title>',
        f'<desc id="stations-desc">{_e(desc)}. Bars are scaled to {scale}.</desc>',
    ]
    for i, s in enumerate(stations):
        top = i * group_h
        out.append(
            f'<g class="station"><text x="{label_w - 10}" y="{top + bar * len(OUTPUTS) / 2:.1f}" '
            f'dy="0.35em" text-anchor="end">{_e(_short(s.station_text))}</text>'
        )
        for j, output in enumerate(OUTPUTS):
            n = s.counts[output]
            y = top + j * bar
            w = bar_w * n / scale
            if n and w < 3:
                w = 3  # a non-zero count stays visible
            out.append(
                f'<g class="bar out-{output}"><title>{_e(s.station_text)} {output}: {n}</title>'
                f'<rect x="{label_w}" y="{y + 1}" width="{w:.1f}" height="{bar - 2}" rx="2" '
                f'fill="{OUTPUT_COLOURS[output]}"/>'
                f'<text class="value" x="{label_w + w + 5:.1f}" y="{y + bar / 2:.1f}" '
                f'dy="0.35em">{n:,}</text></g>'
            )
        out.append("</g>")
    out.append("</svg>")
    legend = "".join(
        f'<span class="key"><span class="dot" style="background:{OUTPUT_COLOURS[o]}"></span>'
        f"{o}</span>"
        for o in OUTPUTS
    )
    return f'<figure class="stations">{"".join(out)}<figcaption>{legend}</figcaption></figure>'


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _production(detail: BatchDetail) -> str:
    p = detail.production
    lede = (
        '<p class="lede">Units each station registered, burned (credential file), labelled, '
        "printed and failed to register, from the audit journal (<code>--station</code> / "
        "<code>ENOSPROV_STATION</code>); a unit counts once per station and output. Units/hour: "
        "distinct units handled between the station's first and last record.</p>"
    )
    if p is None or not p.stations:
        return (
            '<section class="keep" id="production"><h2>Production by station</h2>'
            f'{lede}<p class="empty">No production of this batch is recorded in this journal.</p>'
            "</section>"
        )
    head = "".join(f'<th class="num">{o.capitalize()}</th>' for o in OUTPUTS)
    rows = []
    for s in p.stations:
        cells = "".join(f'<td class="num" data-output="{o}">{s.counts[o]}</td>' for o in OUTPUTS)
        rows.append(
            f'<tr class="station" data-station="{_e(s.station_text)}">'
            f"<td>{_e(s.station_text)}</td>{cells}"
            f'<td class="nowrap">{_e(_utc(s.first))}</td><td class="nowrap">{_e(_utc(s.last))}</td>'
            f'<td class="num" data-output="unitsPerHour">{_e(_rate(s.units_per_hour))}</td></tr>'
        )
    stations = (
        '<table class="list production"><thead><tr><th>Station</th>'
        f'{head}<th>First</th><th>Last</th><th class="num">Units/hour</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    period_rows = []
    for x in p.periods:
        cells = "".join(f'<td class="num" data-output="{o}">{x.counts[o]}</td>' for o in OUTPUTS)
        period_rows.append(
            f'<tr class="period" data-period="{_e(x.period)}" data-station="{_e(x.station_text)}">'
            f'<td class="nowrap">{_e(_period_text(x.period))}</td><td>{_e(x.station_text)}</td>'
            f"{cells}</tr>"
        )
    periods = (
        f'<table class="list periods"><thead><tr><th>{p.unit.capitalize()} (UTC)</th>'
        f"<th>Station</th>{head}</tr></thead><tbody>{''.join(period_rows)}</tbody></table>"
    )
    return (
        f'<section id="production"><h2>Production by station <span class="badge">'
        f"{len(p.stations):,}</span></h2>{lede}"
        f"{stations}{_station_chart(p)}"
        f"<h3>Per {p.unit}</h3>{periods}</section>"
    )


def _period_text(period: str) -> str:
    """``2026-11-19T08:00Z`` as ``2026-11-19 08:00``; a day as it is."""
    return period.replace("T", " ").rstrip("Z")


def _header(detail: BatchDetail, generated_ms: int, backend_label: str) -> str:
    s = detail.summary
    items = [
        ("Group", s.group_id),
        ("Batch tag", s.tag_text),
        ("First activity", _utc(s.first_activity)),
        ("Last activity", _utc(s.last_activity)),
        ("Generated", _utc(generated_ms)),
        ("Backend", backend_label),
        ("Stuck after", describe_duration(detail.stale_ms)),
        ("Devices in DPS", f"{s.counts.get('registered', 0):,}"),
    ]
    meta = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in items)
    return (
        '<header><p class="eyebrow">EnOS Device Provisioning · batch report</p>'
        f"<h1>Batch {_e(s.tag_text)} — group {_e(s.group_id)}</h1>"
        f'<dl class="meta">{meta}</dl></header>'
    )


def _key_figures(detail: BatchDetail) -> str:
    c = detail.summary.counts
    registered = c.get("registered", 0)
    tiles = [
        ("registered", "Registered", registered, "devices in DPS now"),
        ("connected", "Connected", c.get("connected", 0),
         f"{_pct(c.get('connected', 0), registered)} of registered"),
        ("stuck", "Stuck", detail.stuck_count,
         f"no connection {describe_duration(detail.stale_ms)} after export or label"),
        ("failed", "Failed", c.get("failed", 0), "connection or allocation error"),
    ]  # fmt: skip
    body = "".join(
        f'<div class="kpi st-{state}"><span class="kpi-label">{_e(label)}</span>'
        f'<b>{value:,}</b><span class="kpi-note">{_e(note)}</span></div>'
        for state, label, value, note in tiles
    )
    return f'<div class="kpis">{body}</div>'


def _counts(summary: BatchSummary) -> str:
    rows = []
    for state in STATES:
        n = summary.counts.get(state, 0)
        source = summary.sources.get(state, "")
        rows.append(
            f'<tr class="st-{state}"><td><span class="dot"></span>{state}'
            f'<span class="meaning">{_e(MEANINGS[state])}</span></td>'
            f'<td class="count" data-state="{state}">{n}</td>'
            f'<td class="source" title="{_e(SOURCES.get(source, ""))}">{_e(source)}</td></tr>'
        )
    table = (
        '<table class="counts"><thead><tr><th>State</th><th class="num">Devices</th>'
        f"<th>Source</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return (
        '<section class="keep" id="counts"><h2>Devices per state</h2>'
        f'<div class="split"><div>{table}</div><figure>{_bar_chart(summary)}'
        "<figcaption>Bars are scaled to the largest count. A device counts in every state it has "
        "reached: the states overlap.</figcaption></figure></div></section>"
    )


def _stuck(detail: BatchDetail) -> str:
    rows = []
    for s in detail.stuck:
        rows.append(
            f'<tr class="stuck" data-device-sn="{_e(s.device_sn)}">'
            f'<td class="mono">{_e(s.device_sn)}</td><td class="mono muted">{_e(s.sn)}</td>'
            f'<td>{_e(s.mark)}</td><td><span class="nowrap">{_e(_utc(s.since))}</span> '
            f'<span class="muted nowrap">· {_e(_age(detail.now - s.since))} ago</span></td>'
            f"<td>{_e(s.allocate_status)}</td></tr>"
        )
    if not detail.stuck_count:
        rows.append('<tr class="none"><td colspan="5">none</td></tr>')
    shown = len(detail.stuck)
    count_note = (
        f'<p class="note">{detail.stuck_count:,} stuck, showing {shown:,}.</p>'
        if detail.stuck_count > shown
        else ""
    )
    return (
        f'<section id="stuck"><h2>Stuck devices <span class="badge">{detail.stuck_count:,}'
        "</span></h2>"
        f'<p class="lede">Exported or labelled more than {_e(describe_duration(detail.stale_ms))} before '
        f"{_e(_utc(detail.now))} and never bootstrapped (not connected, not waiting after a "
        f"reprovisioning reset); the oldest first.</p>{count_note}"
        '<table class="list"><thead><tr><th>deviceSn</th><th>sn</th><th>Exported / labelled</th>'
        "<th>Since</th><th>allocateStatus</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _unit(device_sn: str | None, sn: str | None) -> str:
    return f'<span class="mono">{_e(device_sn or "?")}</span> <span class="muted">({_e(sn or "?")})</span>'


def _lineage(detail: BatchDetail) -> str:
    rows = []
    for r in detail.lineage:
        rows.append(
            f'<tr class="replacement"><td class="nowrap">{_e(_iso_text(r.get("time")))}</td>'
            f"<td>{_unit(r.get('oldDeviceSn'), r.get('oldSn'))}</td>"
            '<td class="arrow" aria-label="replaced by">→</td>'
            f"<td>{_unit(r.get('newDeviceSn'), r.get('newSn'))}"
            + (
                f' <span class="note">(old unit registered again as {_e(r["returnedAs"])})</span>'
                if r.get("returnedAs")
                else ""
            )
            + f"</td><td>{_e(r.get('station') or '—')}</td><td>{_e(r.get('user') or '—')}</td>"
            "</tr>"
        )
    if not rows:
        rows.append('<tr class="none"><td colspan="6">none</td></tr>')
    return (
        f'<section id="lineage"><h2>Replacements <span class="badge">{len(detail.lineage):,}'
        "</span></h2>"
        '<p class="lede">Units of this batch taken out and the new unit that took over their '
        "registration (from the audit journal).</p>"
        '<table class="list"><thead><tr><th>Time</th><th>Old unit deviceSn (sn)</th><th></th>'
        "<th>New unit deviceSn (sn)</th><th>Station</th><th>User</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _returned(detail: BatchDetail) -> str:
    """The retired units that came back: a count and a list, loud, with what to do."""
    items = getattr(detail, "returned", None) or []
    if not items:
        return ""
    rows = []
    for r in items:
        back = r.to_dict()["returned"]
        state = "connected" if back["connectStatus"] == "connected" else back["allocateStatus"]
        rows.append(
            f'<tr class="returned"><td>{_unit(r.device_sn, r.returned.sn)}</td>'
            f'<td class="nowrap">{_e(_iso_text(back.get("createTime")))}</td><td>{_e(state)}</td>'
            f"<td>{_unit(r.replaced_by.get('deviceSn'), r.replaced_by.get('sn'))}</td>"
            f'<td class="nowrap">{_e(r.date)}</td>'
            f"<td>{_unit(r.in_service.get('deviceSn'), r.in_service.get('sn'))}</td>"
            f"<td>{_e(r.advice())}</td></tr>"
        )
    return (
        f'<section id="returned"><h2>Retired units that came back <span class="badge">'
        f"{len(items):,}</span></h2>"
        '<p class="note">Units replaced by another that registered again (an old unit powered '
        "on with its burned credential file). The unit in service is the replacement; delete "
        "the returning registration, or replace again to put the old unit back.</p>"
        '<table class="list"><thead><tr><th>Retired unit deviceSn (sn now)</th>'
        "<th>Registered again</th><th>State</th><th>Replaced by</th><th>On</th>"
        "<th>In service</th><th>What to do</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _footer(detail: BatchDetail, generated_ms: int, backend_label: str) -> str:
    used = sorted(set(detail.summary.sources.values()))
    sources = "; ".join(f"<b>{_e(s)}</b>: {_e(SOURCES.get(s, s))}" for s in used)
    return (
        f"<footer><p>Generated by enosprov on {_e(_utc(generated_ms))}; backend: "
        f"{_e(backend_label)}. Sources — {sources}. Journal figures count only the operations "
        "recorded in that journal.</p></footer>"
    )


# -- the page -------------------------------------------------------------------------------------

_CSS = """
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--accent:#0f4c81}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#fff;color:var(--ink);font:14px/1.45 SANS}
main{max-width:1000px;margin:0 auto;padding:32px 32px 40px}
header{border-bottom:3px solid var(--accent);padding-bottom:18px;margin-bottom:22px}
.eyebrow{margin:0;color:var(--accent);font-size:12px;font-weight:600;letter-spacing:.08em;
text-transform:uppercase}
h1{margin:4px 0 16px;font-size:27px;line-height:1.2;font-weight:650;overflow-wrap:anywhere}
h2{font-size:17px;margin:0 0 10px;font-weight:650}
dl.meta{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px 24px;margin:0}
dt{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
dd{margin:2px 0 0;font-weight:550;overflow-wrap:anywhere}
.kpis{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:14px;margin:0 0 28px}
.kpi{border:1px solid var(--line);border-top:4px solid var(--c);border-radius:8px;padding:10px 14px}
.kpi-label{display:block;font-size:12px;color:var(--muted);font-weight:600}
.kpi b{display:block;font-size:28px;line-height:1.25;font-variant-numeric:tabular-nums}
.kpi-note{display:block;font-size:12px;color:var(--muted)}
section{margin:0 0 30px}
section.keep,figure{break-inside:avoid}
.split{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.05fr);gap:28px;align-items:start}
figure{margin:0}
figcaption{font-size:12px;color:var(--muted);margin-top:6px}
table{width:100%;border-collapse:collapse;font-size:13px}
thead{display:table-header-group}
tr{break-inside:avoid}
th{text-align:left;font-size:12px;color:var(--muted);font-weight:600;border-bottom:1px solid #cbd5e1;
padding:6px 8px}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
th.num,td.count{text-align:right;font-variant-numeric:tabular-nums}
td.count{font-weight:650;font-size:14px}
td.source{color:var(--muted);white-space:nowrap}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--c);
margin-right:8px}
.meaning{display:block;font-size:11.5px;color:var(--muted);margin-left:17px}
td:not(:first-child) .meaning{margin-left:0}
.mono{font-family:MONO;font-size:12.5px;white-space:nowrap}
.nowrap{white-space:nowrap}
.muted{color:var(--muted)}
.arrow{color:var(--muted);text-align:center;width:2em}
tr.none td{color:var(--muted);font-style:italic;text-align:center}
.badge{display:inline-block;min-width:1.6em;padding:1px 8px;margin-left:6px;border-radius:999px;
background:#f1f5f9;color:#334155;font-size:13px;text-align:center;vertical-align:2px}
.lede{margin:-4px 0 10px;color:var(--muted);font-size:13px}
.note{margin:0 0 8px;font-size:13px;font-weight:600;color:#b45309}
.empty{border:1px dashed #cbd5e1;border-radius:8px;padding:28px;text-align:center;
color:var(--muted);margin:0}
svg{display:block;width:100%;height:auto}
svg text{font-family:SANS;font-size:11px;fill:#475569}
svg text.value{fill:var(--ink);font-weight:600}
svg.bars text{font-size:12px}
h3{font-size:14px;margin:16px 0 8px;font-weight:650}
table.production td,table.periods td{font-variant-numeric:tabular-nums}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.key{display:inline-block;margin-right:12px;white-space:nowrap}
figure.stations{max-width:560px;margin-top:14px}
svg.stations text.value{font-size:10px}
.key .dot{margin-right:5px}
footer{border-top:1px solid var(--line);padding-top:12px;font-size:12px;color:var(--muted)}
STATE_RULES
@media (max-width:760px){dl.meta,.kpis{grid-template-columns:repeat(2,minmax(0,1fr))}
.split{grid-template-columns:1fr}}
@page{size:A4;margin:14mm}
@media print{body{font-size:12px}main{max-width:none;padding:0}
dl.meta,.kpis{grid-template-columns:repeat(4,minmax(0,1fr))}
.split{grid-template-columns:minmax(0,1fr) minmax(0,1.05fr);gap:18px}
.kpi b{font-size:22px}h1{font-size:22px}section{margin-bottom:22px}}
"""


def _css() -> str:
    rules = "\n".join(f".st-{s}{{--c:{c}}}" for s, c in {**COLOURS, "stuck": STUCK}.items())
    return _CSS.replace("STATE_RULES", rules).replace("SANS", _SANS).replace("MONO", _MONO).strip()


def render_batch_html(detail: BatchDetail, *, generated_ms: int, backend_label: str) -> str:
    """The report of one batch as a complete HTML5 document (no script, nothing external)."""
    s = detail.summary
    title = f"Batch {s.tag_text} — group {s.group_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="enosprov">\n'
        f"<title>{_e(title)}</title>\n<style>\n{_css()}\n</style>\n</head>\n<body>\n<main>\n"
        f"{_header(detail, generated_ms, backend_label)}\n"
        f"{_key_figures(detail)}\n"
        f"{_counts(s)}\n"
        f"{_activations(detail)}\n"
        f"{_production(detail)}\n"
        f"{_stuck(detail)}\n"
        f"{_lineage(detail)}\n"
        f"{_returned(detail)}\n"
        f"{_footer(detail, generated_ms, backend_label)}\n"
        "</main>\n</body>\n</html>\n"
    )


def write_batch_html(
    detail: BatchDetail, path: str | Path, *, generated_ms: int, backend_label: str
) -> Path:
    """Write the report to ``path`` atomically (UTF-8); the path written."""
    text = render_batch_html(detail, generated_ms=generated_ms, backend_label=backend_label)
    return write_text(path, text)
