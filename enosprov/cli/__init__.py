"""The ``enosprov`` command line: a thin Typer layer over :mod:`enosprov.api`.

Only Typer is imported at start-up; each command imports what it needs when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import __version__
from . import batches as batches_cmd
from . import (
    burn,
    config,
    device,
    devices,
    doctor,
    groups,
    info,
    log,
    masterdata,
    qr,
    register,
    serve,
    station,
    store,
    sync,
    template,
)
from . import history as history_cmd
from . import replace as replace_cmd
from . import reprovision as reprovision_cmd
from .options import CliState
from .output import set_local_time, set_quiet, set_table_format

if TYPE_CHECKING:  # the installed typer (>= 0.28) carries its own copy of click
    from typer import _click
else:  # typer >= 0.28 carries its own copy of click; older ones use click itself
    _click = getattr(typer.core, "_click", None) or typer.core.click


def _quiet_callback(ctx: typer.Context, param: object, value: bool) -> None:
    if value:
        set_quiet(True)


QUIET_HELP = (
    "Print nothing but errors: no tables, summaries, notes or progress (--json output and "
    "exit codes are unchanged)."
)


def _with_quiet(command: object) -> None:
    """Give a command --quiet / -q (one option, declared once for every command)."""
    params = getattr(command, "params", None)
    if params is None or any("--quiet" in getattr(p, "opts", ()) for p in params):
        return
    params.append(
        typer.core.TyperOption(
            param_decls=["--quiet", "-q"],
            is_flag=True,
            expose_value=False,
            callback=_quiet_callback,
            help=QUIET_HELP,
        )
    )


class SuggestingGroup(typer.core.TyperGroup):
    """A command group whose "No such command" suggests the nearest command paths of the whole
    CLI, not only the group's own commands: ``enosprov device list`` -> ``'devices list'``,
    ``enosprov devics list`` -> ``'devices list'``, ``enosprov show`` -> ``'devices show'``.
    The error stays a usage error: on stderr, exit code 2. Every command of the group gets
    --quiet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if not isinstance(command, typer.core.TyperGroup):
                _with_quiet(command)

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except _click.exceptions.UsageError as exc:
            if args and self.get_command(ctx, args[0]) is None:
                paths = suggest_commands(ctx, args)
                if paths:
                    shown = [f"'{p}'" for p in paths]
                    said = (
                        ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]
                    )
                    exc.message = f"No such command {args[0]!r}. Did you mean {said}?"
            raise


def command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every visible command and group below ``group``, as name paths."""
    out: list[tuple[str, ...]] = []
    for name, cmd in getattr(group, "commands", {}).items():
        if getattr(cmd, "hidden", False):
            continue
        out.append((*prefix, name))
        out.extend(command_paths(cmd, (*prefix, name)))
    return out


def suggest_commands(ctx: _click.Context, args: list[str]) -> list[str]:
    """The command paths nearest to what was typed: the group's path plus the unknown word
    (plus the next word when it is not an option, for a wrong group name followed by a valid
    command), by edit distance; else the commands of that exact name in other groups."""
    from ..core.suggest import distance

    prefix: list[str] = []
    c = ctx
    while c.parent is not None:
        if c.info_name is not None:  # a sub-command's context is named after it: always set
            prefix.insert(0, c.info_name)
        c = c.parent
    paths = command_paths(c.command)
    typed = [(*prefix, args[0])]
    if len(args) > 1 and not args[1].startswith("-"):
        typed.insert(0, (*prefix, args[0], args[1]))  # a longer match is the better one
    for words in typed:
        text = " ".join(words)
        limit = max(1, min(3, len(text) // 4))
        scored = sorted(
            (d, " ".join(p))
            for p in paths
            if len(p) == len(words) and (d := distance(text, " ".join(p))) <= limit
        )
        if scored:
            best = scored[0][0]
            return [p for d, p in scored if d == best][:3]
    same_name = sorted(" ".join(p) for p in paths if p[-1] == args[0] and len(p) > 1)
    return same_name[:3]


app = typer.Typer(
    name="enosprov",
    cls=SuggestingGroup,
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
        str | None,
        typer.Option(
            "--store",
            help="Local store: an SQLite file, a postgresql:// URL (password from PGPASSWORD or "
            "~/.pgpass) or a store named in the config file (default: $ENOSPROV_STORE, else "
            "store.db in the user data folder).",
            show_default=False,
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
    local_time: Annotated[
        bool,
        typer.Option(
            "--local/--utc",
            help="Show times in this computer's local time, with its offset, instead of UTC "
            "(--json, CSV files and the journal always carry UTC).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Onboard IoT devices into EnOS through its Device Provisioning Service."""
    if store is not None and profile is not None:
        ctx.fail(
            "--profile and --store cannot be used together (--profile selects an EnOS profile, "
            "--store a local store file)"
        )
    set_quiet(False)  # each run starts loud; a command's --quiet turns it off
    set_table_format("table")
    set_local_time(local_time)
    ctx.obj = CliState(store=store, debug=debug, profile=profile, station=station)


app.add_typer(masterdata.app, name="masterdata", cls=SuggestingGroup)
app.add_typer(groups.app, name="group", cls=SuggestingGroup)
app.add_typer(template.app, name="template", cls=SuggestingGroup)
app.add_typer(devices.app, name="devices", cls=SuggestingGroup)
app.add_typer(config.app, name="config", cls=SuggestingGroup)
app.add_typer(device.app, name="device", cls=SuggestingGroup)
app.add_typer(burn.app, name="burn", cls=SuggestingGroup)
app.add_typer(qr.app, name="qr", cls=SuggestingGroup)
app.add_typer(batches_cmd.app, name="batches", cls=SuggestingGroup)
app.add_typer(store.app, name="store", cls=SuggestingGroup)
app.add_typer(sync.app, name="sync", cls=SuggestingGroup)
app.command("register")(register.register)
app.command("info")(info.info)
app.command("doctor")(doctor.doctor)
app.command("reprovision")(reprovision_cmd.reprovision)
app.command("replace")(replace_cmd.replace)
devices.app.command("history")(history_cmd.history)
app.command("serve")(serve.serve)
app.command("station")(station.station)
app.command("log")(log.log)


def main() -> None:
    try:
        app(prog_name="enosprov")
    except BrokenPipeError:  # the reader of a pipe left while output was being written
        from .output import EXIT_BROKEN_PIPE, _silence_stdout

        _silence_stdout()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
