"""`enosprov device bootstrap|conninfo`: act as a device with its burned credential file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import JsonOpt, renamed, state
from .output import emit, handled, key_values, say

app = typer.Typer(
    help="Act as a device: call the DPS device APIs with a burned credential file and show what "
    "the device receives.\n\nExample: enosprov device bootstrap MTR-000001.json",
    no_args_is_help=True,
)

HIDDEN = "(hidden; --with-secrets)"

FileArg = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="Credential file burned into the device.", show_default=False
    ),
]
ShowSecretOpt = Annotated[
    bool,
    typer.Option(
        "--with-secrets",
        help="Also print the device secret and the MQTT password (exports them).",
    ),
]
OldShowSecretOpt = Annotated[bool, typer.Option("--show-secret", hidden=True, show_default=False)]


@app.command("bootstrap")
@handled
def bootstrap(
    ctx: typer.Context,
    file: FileArg,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="deviceName to send instead of the one burned in FILE (kept if it registers).",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="timezone to send instead of the one burned in FILE, e.g. +08:00.",
        ),
    ] = None,
    json_: JsonOpt = False,
    with_secrets: ShowSecretOpt = False,
    old_show_secret: OldShowSecretOpt = False,
) -> None:
    """Call Bootstrap Device as the device would, signed with the group secret of FILE.

    The request carries the deviceName and timezone burned in FILE (DPS requires both); --name
    and --timezone send others. A file without them (exported by an older enosprov) is refused:
    export it again. An unregistered deviceSn registers itself with them; the device is
    allocated and marked connected. Prints its triple, broker URLs and MQTT login. The local
    store answers in process; with a profile the request goes to the profile's DPS device
    endpoint.

    Example: enosprov device bootstrap MTR-000001.json --name "Meter 1" --timezone +08:00
    """
    from .. import device

    cred = device.read_credential(file)
    with state(ctx).open() as (backend, journal):
        session = device.bootstrap_device(
            backend, cred, device_name=name, timezone=timezone, journal=journal
        )
    show_secret = renamed(with_secrets, old_show_secret, new="--with-secrets", old="--show-secret")
    _emit(session, json_, show_secret)
    if not json_ and session.retired is not None:  # a retired unit registered itself again
        say(session.retired.returned_text(), stderr=True)
        say(f"what to do: {session.retired.advice()}", stderr=True)
    if not json_ and not cred.sn:
        sn = session.info.sn or f"(ask: enosprov devices show {cred.device_sn})"
        say(
            f"note: {file} has no sn; get/conn needs the system sn {sn} "
            "(export the credential again to include it)",
            stderr=True,
        )


@app.command("conninfo")
@handled
def conninfo(
    ctx: typer.Context,
    file: FileArg,
    json_: JsonOpt = False,
    with_secrets: ShowSecretOpt = False,
    old_show_secret: OldShowSecretOpt = False,
) -> None:
    """Call Get Device Connection Info as the device would (needs the system sn in FILE).

    The device must be allocated. For a triple credential no DPS call is made: the MQTT login is
    computed from the triple burned in FILE.

    Example: enosprov device conninfo MTR-000001.json --json
    """
    from .. import device

    cred = device.read_credential(file)
    if cred.profile == "triple":
        session = device.session_from_triple(cred)
    else:
        with state(ctx).open() as (backend, journal):
            session = device.device_conninfo(backend, cred, journal=journal)
    show_secret = renamed(with_secrets, old_show_secret, new="--with-secrets", old="--show-secret")
    _emit(session, json_, show_secret)


def _emit(session, json_: bool, show_secret: bool) -> None:
    emit(
        session.to_dict(include_secret=show_secret), json_, lambda _: _render(session, show_secret)
    )


def _render(session, show_secret: bool) -> None:
    c, m = session.info, session.mqtt
    key_values(
        [
            ("DPS call", session.call if session.call != "triple" else "none (triple in the file)"),
            ("deviceSn", session.device_sn),
            ("sn", c.sn or "-"),
            ("productKey", c.product_key),
            ("deviceKey", c.device_key),
            ("deviceSecret", c.device_secret if show_secret else HIDDEN),
            ("MQTT broker", c.mqtt_url or "-"),
            ("HTTP broker", c.http_url or "-"),
            ("clientId", m.client_id),
            ("username", m.username),
            ("password", m.password if show_secret else HIDDEN),
        ]
    )
