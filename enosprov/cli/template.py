"""`enosprov template csv`: the registration CSV header for a group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import GroupOpt, JsonOpt, state
from .output import emit, handled, say

app = typer.Typer(
    help="Input templates.\n\nExample: enosprov template csv --group meters-eu > devices.csv",
    no_args_is_help=True,
)


@app.command("csv")
@handled
def csv_(
    ctx: typer.Context,
    group: GroupOpt,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Print the CSV header for registering devices into a group (its master data columns included).

    Example: enosprov template csv --group meters-eu > devices.csv
    """
    import csv
    import io

    from .. import api
    from ..atomic import write_text

    with state(ctx).backend() as store:
        columns = api.csv_template(store, group)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(columns)
    if out is not None:
        write_text(out, buf.getvalue())
    if json_:
        emit({"columns": columns, "file": str(out) if out else None}, True)
    elif out is None:
        typer.echo(buf.getvalue(), nl=False)
    else:
        say(f"wrote {out} ({len(columns)} columns)", stderr=True)
