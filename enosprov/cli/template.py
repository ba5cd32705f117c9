"""`enosprov template csv|label|burn|masterdata`: the registration CSV header for a group; the label and burn
templates shipped with enosprov, to copy and adapt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import GroupOpt, JsonOpt, state
from .output import emit, handled, say

app = typer.Typer(
    help="Input templates: a group's registration CSV header; the shipped label and burn "
    "templates, to copy and adapt.\n\n"
    "Example: enosprov template csv --group meters-eu > devices.csv\n\n"
    "enosprov template label a4-3x8-70x37 > my-sheet.toml",
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


OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
]


@app.command("label")
@handled
def label(
    name: Annotated[
        str | None, typer.Argument(help="A shipped label template; without it, list them.")
    ] = None,
    out: OutOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Print a label template shipped with enosprov (TOML, docs/labels.md), or list their names.

    Copy one to adapt it, then give the copy to qr batch --label-template.

    Example: enosprov template label a4-3x8-70x37 > my-sheet.toml
    """
    _shipped("labels", name, out, json_)


@app.command("burn")
@handled
def burn(
    name: Annotated[
        str | None, typer.Argument(help="A shipped burn template; without it, list them.")
    ] = None,
    out: OutOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Print a burn template shipped with enosprov (docs/burn-formats.md), or list their names.

    burn export --burn-format template --burn-template NAME uses one as it is; copy one to adapt it.

    Example: enosprov template burn credentials.h > my-credentials.h.tmpl
    """
    _shipped("burn", name, out, json_)


@app.command("masterdata")
@handled
def masterdata(
    name: Annotated[
        str, typer.Argument(help="A shipped master data starter (`starter`, the default).")
    ] = "starter",
    out: OutOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Print a commented starter master data file (TOML, docs/masterdata.md): one attribute of
    every type, every key explained. Adapt it, then `enosprov masterdata create --file`.

    Example: enosprov template masterdata --out meters.toml
    """
    _shipped("masterdata", name, out, json_)


def _shipped(kind: str, name: str | None, out: Path | None, as_json: bool) -> None:
    from .. import templates
    from ..atomic import write_text
    from ..domain.errors import InvalidArgumentError

    if name is None:
        names = templates.names(kind)
        emit({"templates": names}, as_json, lambda _: typer.echo("\n".join(names)))
        return
    entry = templates.find(kind, name)
    if entry is None:
        raise InvalidArgumentError(
            f"no shipped {'label' if kind == 'labels' else kind} template {name!r}",
            hint="one of: " + ", ".join(templates.names(kind)),
        )
    text = entry.read_text(encoding="utf-8")
    if out is not None:
        write_text(out, text)
    if as_json:
        emit({"name": entry.name, "file": str(out) if out else None,
              "text": None if out else text}, True)  # fmt: skip
    elif out is None:
        typer.echo(text, nl=False)
    else:
        say(f"wrote {out} (from the shipped {entry.name})", stderr=True)
