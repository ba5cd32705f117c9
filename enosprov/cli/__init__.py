"""The ``enosprov`` command line: a thin Typer layer over :mod:`enosprov.api`.

Only Typer is imported at start-up; each command imports what it needs when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from . import batches as batches_cmd
from . import (
    burn,
    config,
    device,
    devices,
    groups,
    info,
    log,
    masterdata,
    qr,
    register,
    serve,
    station,
    template,
)
from . import history as history_cmd
from . import replace as replace_cmd
from . import reprovision as reprovision_cmd
from .options import CliState

app = typer.Typer(
    name="enosprov",
    help=(
        "Onboard IoT devices into EnOS through its Device Provisioning Service.\n\n"
        "Example: enosprov register --csv devices.csv --group meters-eu --batch-tag B-2026-11-A"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"enosprov {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            help="Local store file (default: $ENOSPROV_STORE, else the user data folder).",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="EnOS profile to use (default: $ENOSPROV_PROFILE, else the current profile of "
            "`enosprov config use`, else the local store).",
            show_default=False,
        ),
    ] = None,
    station: Annotated[
        str | None,
        typer.Option(
            "--station",
            help="Station id written into the audit journal (default: $ENOSPROV_STATION).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Onboard IoT devices into EnOS through its Device Provisioning Service."""
    if store is not None and profile is not None:
        ctx.fail(
            "--profile and --store cannot be used together (--profile selects an EnOS profile, "
            "--store a local store file)"
        )
    ctx.obj = CliState(store=store, debug=debug, profile=profile, station=station)


app.add_typer(masterdata.app, name="masterdata")
app.add_typer(groups.app, name="group")
app.add_typer(template.app, name="template")
app.add_typer(devices.app, name="devices")
app.add_typer(config.app, name="config")
app.add_typer(device.app, name="device")
app.add_typer(burn.app, name="burn")
app.add_typer(qr.app, name="qr")
app.add_typer(batches_cmd.app, name="batches")
app.command("register")(register.register)
app.command("info")(info.info)
app.command("reprovision")(reprovision_cmd.reprovision)
app.command("replace")(replace_cmd.replace)
devices.app.command("history")(history_cmd.history)
app.command("serve")(serve.serve)
app.command("station")(station.station)
app.command("log")(log.log)


def main() -> None:
    app(prog_name="enosprov")
