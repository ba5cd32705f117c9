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
        server = store.server_version if settings.store_in_database else None
    if isinstance(settings.store, str):  # a plant database: its URL, never its password
        from ..plantdb import password_source, redact

        where = redact(settings.store)
        data.update(
            storeDatabase="PostgreSQL " + str(server), password=password_source(settings.store)
        )
    else:
        where = str(settings.store.resolve())
    data.update(
        store=where,
        storeSource=settings.store_source,
        profile=None,
        groups=groups,
        devices=devices,
        journal=journal_location(settings),
    )
    emit(
        data,
        json_,
        lambda d: key_values(
            [
                ("enosprov", d["version"]),
                (
                    "backend",
                    "local store (" + d.get("storeDatabase", "SQLite " + d["sqlite"]) + ")",
                ),
                ("store", d["store"]),
                *([("password from", d["password"])] if "password" in d else []),
                ("chosen by", _STORE_SOURCES[d["storeSource"]]),
                ("groups", d["groups"]),
                ("devices", d["devices"]),
            ]
        ),
    )
