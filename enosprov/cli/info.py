"""`enosprov info`: version, backend, and which store or profile is used and why."""

from __future__ import annotations

import typer

from .options import JsonOpt, state
from .output import emit, handled, key_values

_STORE_SOURCES = {
    "--store": "--store option",
    "ENOSPROV_STORE": "ENOSPROV_STORE variable",
    "default": "default (user data folder)",
}
_PROFILE_SOURCES = {
    "--profile": "--profile option",
    "ENOSPROV_PROFILE": "ENOSPROV_PROFILE variable",
    "current": "current profile (`enosprov config use`)",
}


@handled
def info(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Show the enosprov version, the backend, and which store or profile is used (and why).
    With a profile, nothing is sent to EnOS.

    Example: enosprov info --json
    """
    import platform
    import sqlite3

    from .. import __version__
    from ..settings import journal_location

    settings = state(ctx).settings()
    data = {
        "version": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "backend": settings.backend,
    }
    if settings.backend == "enos":
        from .. import profiles

        described = profiles.describe(settings.profile, settings.config_path)
        data.update(
            profile=settings.profile,
            profileSource=settings.profile_source,
            configFile=str(settings.config_path),
            apiUrl=described["apiUrl"],
            orgId=described["orgId"],
            dpsUrl=described["dpsUrl"],
            secret=described["secret"],
            groups=[g["groupId"] for g in described["groups"]],
            journal=journal_location(settings),
        )
        emit(
            data,
            json_,
            lambda d: key_values(
                [
                    ("enosprov", d["version"]),
                    ("backend", "EnOS API"),
                    ("profile", d["profile"]),
                    ("chosen by", _PROFILE_SOURCES[d["profileSource"]]),
                    ("config file", d["configFile"]),
                    ("API gateway", d["apiUrl"]),
                    ("OU (orgId)", d["orgId"]),
                    ("DPS endpoint", d["dpsUrl"] or "-"),
                    ("secret", d["secret"]),
                    ("groups", ", ".join(d["groups"]) or "-"),
                    ("audit journal", d["journal"]),
                ]
            ),
        )
        return

    with settings.create_backend() as store:
        groups = len(store.list_groups())
        devices = sum(store.device_counts().values())
    data.update(
        store=str(settings.store.resolve()),
        storeSource=settings.store_source,
        profile=None,
        groups=groups,
        devices=devices,
    )
    emit(
        data,
        json_,
        lambda d: key_values(
            [
                ("enosprov", d["version"]),
                ("backend", "local store (SQLite " + d["sqlite"] + ")"),
                ("store", d["store"]),
                ("chosen by", _STORE_SOURCES[d["storeSource"]]),
                ("groups", d["groups"]),
                ("devices", d["devices"]),
            ]
        ),
    )
