"""`enosprov info`: version, backend, and which store is used and why."""

from __future__ import annotations

import typer

from .options import JsonOpt, state
from .output import emit, handled, key_values


@handled
def info(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Show the enosprov version, the backend, and which store is used (and why).

    Example: enosprov info --json
    """
    import platform
    import sqlite3

    from .. import __version__

    settings = state(ctx).settings()
    with settings.create_backend() as store:
        groups = len(store.list_groups())
        devices = sum(store.device_counts().values())
    data = {
        "version": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "backend": "local",
        "store": str(settings.store.resolve()),
        "storeSource": settings.store_source,
        "groups": groups,
        "devices": devices,
    }
    emit(
        data,
        json_,
        lambda d: key_values(
            [
                ("enosprov", d["version"]),
                ("backend", "local store (SQLite " + d["sqlite"] + ")"),
                ("store", d["store"]),
                (
                    "chosen by",
                    {
                        "--store": "--store option",
                        "ENOSPROV_STORE": "ENOSPROV_STORE variable",
                        "default": "default (user data folder)",
                    }[d["storeSource"]],
                ),
                ("groups", d["groups"]),
                ("devices", d["devices"]),
            ]
        ),
    )
