"""Options shared by several commands, declared once (Annotated aliases)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document ({'data': ...}) on stdout.")
]
GroupOpt = Annotated[
    str, typer.Option("--group", "-g", help="Registration group id or name.", show_default=False)
]
OptionalGroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Registration group id or name.")
]
BatchTagFilterOpt = Annotated[str | None, typer.Option("--batch-tag", help="Only this batch tag.")]
DeviceSnOpt = Annotated[
    list[str] | None, typer.Option("--device-sn", help="Only these deviceSns (repeatable).")
]
RegionOpt = Annotated[
    str | None,
    typer.Option("--region", help="Target environment/region (default: the group's)."),
]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Target OU (default: the group's).")]
CsvSelectOpt = Annotated[
    Path | None, typer.Option("--csv", help="Only the deviceSns of this CSV (deviceSn column).")
]


@dataclass
class CliState:
    """What the root callback resolved; reached through ``ctx.find_root().obj``."""

    store: Path | None
    debug: bool
    profile: str | None = None
    station: str | None = None

    def settings(self):
        from ..settings import Settings

        return Settings.resolve(self.store, self.profile)

    def backend(self):
        return self.settings().create_backend()

    def journal(self, settings=None):
        """The audit journal of the selected backend (the store file, or the local journal.db
        for EnOS), stamped with the user, host and --station / $ENOSPROV_STATION."""
        from ..journal import open_journal

        return open_journal(settings or self.settings(), self.station)

    @contextmanager
    def open(self):
        """(backend, journal) for a command that changes something: ``with st.open() as (b, j)``."""
        settings = self.settings()
        journal = self.journal(settings)
        backend = settings.create_backend()
        try:
            yield backend, journal
        finally:
            backend.close()
            journal.close()


def state(ctx: typer.Context) -> CliState:
    return ctx.find_root().obj


# CSV written for people is spreadsheet-safe (enosprov.csvsafe); this keeps it raw.
RawCsvOpt = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="Write CSV cells as they are, without the ' that keeps spreadsheets from running "
        "formulas (for machine use).",
    ),
]

# A registration group's default timezone (group create, config add-group).
GroupTimezoneOpt = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        help="Default timezone of its devices, e.g. +08:00 or Europe/Berlin: burned into the "
        "credential file of a device registered without one (Bootstrap Device needs it).",
    ),
]
