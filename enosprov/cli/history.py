"""`enosprov devices history`: a device's chain of replacements and its lifecycle events."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import FormatOpt, JsonOpt, OptionalGroupOpt, list_format, state
from .output import emit, handled, say, show_time, status_line, table


@handled
def history(
    ctx: typer.Context,
    device: Annotated[
        str,
        typer.Argument(
            metavar="SN", help="System sn, deviceSn or label short code (current or replaced)."
        ),
    ],
    group: OptionalGroupOpt = None,
    fmt: FormatOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show a device's chain of replacements (first unit to the one in service) and every
    recorded event of those units: registration, credential files, labels, allocation,
    reprovisioning, replacement. Works for a unit that was already replaced (a retired unit).
    A retired unit whose deviceSn registered again (an old unit powered on with its burned
    file) is flagged as a retired unit that came back, with what to do; the chain is kept.

    Example: enosprov devices history SN-0107 --group meters-eu
    """
    json_ = list_format(fmt, json_)
    from ..core.lineage import device_history, summary

    st = state(ctx)
    with st.open() as (backend, journal):
        result = device_history(backend, device, group=group, journal=journal)

    def render(h) -> None:
        if len(h.chain) > 1:
            chain = " -> ".join(f"{u['deviceSn']} ({u['sn']})" for u in h.chain)
            say(f"replacement chain: {chain}")
        cur = h.current
        if cur is None:
            say("in service: none (the last unit was deleted)")
        else:
            from .devices import state_label

            say(f"in service: {cur.device_sn} ({cur.sn}), {state_label(cur)}")
        if h.retired is not None:
            say(f"{h.retired.device_sn} is a retired unit: {h.retired.describe()}")
        for r in h.returned:
            status_line(r.returned_text(), ok=False)
            say(f"what to do: {r.advice()}")
        rows = [
            [show_time(e.time), e.operation, e.outcome,
             ", ".join(d for s, d in e.devices if s in {u["sn"] for u in h.chain}
                       or d in {u["deviceSn"] for u in h.chain})[:40],
             summary(e, h.chain), e.station or "", f"{e.user}@{e.host}"]
            for e in h.events
        ]  # fmt: skip
        if rows:
            columns = ["time", "operation", "outcome", "unit", "what", "station", "by"]
            if not any(r[5] for r in rows):
                columns.pop(5)
                rows = [r[:5] + r[6:] for r in rows]
            table(None, columns, rows, no_wrap={"time", "operation", "unit"}, wide=True)
        else:
            say("no recorded events (the audit journal has none for this device)")

    emit(result, json_, render)
