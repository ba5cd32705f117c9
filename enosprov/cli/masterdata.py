"""`enosprov masterdata create|update|list|show`: master data groups (templates of device attributes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import FormatOpt, JsonOpt, list_format, renamed, state
from .output import emit, handled, key_values, say, table

app = typer.Typer(
    help="Master data groups: the device attributes (master data) a registration group uses.\n\n"
    "Example: enosprov masterdata create --file examples/masterdata.toml",
    no_args_is_help=True,
)


def _render_mdg(mdg) -> None:
    key_values([("id", mdg.id), ("name", mdg.name), ("description", mdg.description)])
    table(
        "attributes",
        ["identifier", "type", "required", "allowed values / max length", "name"],
        [
            [
                a.identifier,
                a.type,
                "yes" if a.required else "no",
                ", ".join(a.values) if a.values else (a.max_length or ""),
                a.name,
            ]
            for a in mdg.attributes
        ],
    )


@app.command("create")
@handled
def create(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="TOML file defining the group.  [required]", show_default=False
        ),
    ] = None,
    old_file: Annotated[Path | None, typer.Option("-f", hidden=True, show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a master data group from a TOML file (format: docs/masterdata.md).

    Safe to run again: the same definition already in the store is "unchanged" (exit 0, nothing
    written); a different one is refused with the differences (exit 7): change it with
    `enosprov masterdata update`. Every mistake of the file is reported at once.

    Example: enosprov masterdata create --file examples/masterdata.toml
    """
    from .. import api

    file = renamed(file, old_file, new="--file", old="-f")
    if file is None:
        raise typer.BadParameter("give the master data file: --file FILE")

    with state(ctx).open() as (store, journal):
        ensured = api.ensure_masterdata_group(store, file, journal=journal)

    def render(e) -> None:
        say(f"{e.status}: master data group {e.value.id}")
        _render_mdg(e.value)

    emit(ensured, json_, render)


@app.command("update")
@handled
def update(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Option("--file", help="TOML file with the group's new definition.")
    ],
    json_: JsonOpt = False,
) -> None:
    """Give a master data group a new definition (the group id is the file's), as far as
    registered devices stay valid: a new name or description, new optional attributes, a
    display name, more Enum values, a longer maxLength. A removed attribute, another type, an
    optional attribute made required, Enum values removed or a shorter maxLength are refused
    with every reason, nothing changed. Local store only (EnOS: its console).

    Example: enosprov masterdata update --file examples/masterdata.toml
    """
    from .. import api

    with state(ctx).open() as (store, journal):
        mdg = api.update_masterdata_group(store, file, journal=journal)
    emit(mdg, json_, _render_mdg)


@app.command("list")
@handled
def list_(ctx: typer.Context, fmt: FormatOpt = None, json_: JsonOpt = False) -> None:
    """List master data groups.

    Example: enosprov masterdata list --json
    """
    json_ = list_format(fmt, json_)
    with state(ctx).backend() as store:
        groups = store.list_masterdata_groups()
    emit(
        [g.to_dict() for g in groups],
        json_,
        lambda _: table(
            None,
            ["id", "name", "attributes"],
            [[g.id, g.name, ", ".join(a.identifier for a in g.attributes)] for g in groups],
        ),
    )


@app.command("show")
@handled
def show(
    ctx: typer.Context,
    mdg_id: Annotated[str, typer.Argument(metavar="ID", help="Master data group id.")],
    json_: JsonOpt = False,
) -> None:
    """Show a master data group and its attributes.

    Example: enosprov masterdata show meters
    """
    with state(ctx).backend() as store:
        mdg = store.get_masterdata_group(mdg_id)
    emit(mdg, json_, _render_mdg)
