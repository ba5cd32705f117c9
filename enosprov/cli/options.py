"""Options shared by several commands, declared once (Annotated aliases)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer

T = TypeVar("T")

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document ({'data': ...}) on stdout.")
]
# How a listing command prints its rows; --json stays the short form of --format json.
FormatOpt = Annotated[
    Literal["table", "json", "csv", "tsv"] | None,
    typer.Option(
        "--format",
        help="table: for people, as wide as the terminal; json: the --json document; csv, "
        "tsv: a header line, then one line per row, every value whole (for pipes and "
        "spreadsheets).",
        show_default="table",
    ),
]


def list_format(fmt: str | None, as_json: bool) -> bool:
    """Apply --format of a listing command; True when the output is the JSON document."""
    from .output import set_table_format

    if as_json and fmt not in (None, "json"):
        raise typer.BadParameter(f"--json and --format {fmt} contradict each other")
    set_table_format(fmt or "table")
    return as_json or fmt == "json"


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

    store: str | None
    debug: bool
    profile: str | None = None
    station: str | None = None

    def settings(self):
        from ..settings import Settings

        return Settings.resolve(self.store, self.profile)

    def backend(self):
        settings = self.settings()
        _show_retries(settings)
        return settings.create_backend()

    def journal(self, settings=None):
        """The audit journal of the selected backend (the store file, or the local journal.db
        for EnOS), stamped with the user, host and --station / $ENOSPROV_STATION."""
        from ..settings import open_journal

        return open_journal(settings or self.settings(), self.station)

    @contextmanager
    def open(self):
        """(backend, journal) for a command that changes something: ``with st.open() as (b, j)``."""
        settings = self.settings()
        journal = self.journal(settings)
        _show_retries(settings)
        backend = settings.create_backend()
        try:
            yield backend, journal
        finally:
            backend.close()
            journal.close()


def _show_retries(settings) -> None:
    """On a terminal, say each retry of an EnOS call on stderr (what failed, which attempt, how
    long the pause): a slow network is then visibly slow, not hung."""
    import sys

    if settings.backend != "enos" or not sys.stderr.isatty():
        return
    from ..backends import http
    from .output import say

    def show(host: str, what: str, attempt: int, attempts: int, delay: float) -> None:
        say(f"EnOS at {host}: {what}; retry {attempt + 1} of {attempts} in {delay:.1f} s",
            stderr=True)  # fmt: skip

    http.set_retry_listener(show)


def state(ctx: typer.Context) -> CliState:
    return ctx.find_root().obj


# CSV written for people is spreadsheet-safe (enosprov.csvsafe); this keeps it raw.
RawCsvOpt = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="Machine CSV: cells as they are, without the ' that keeps spreadsheets from "
        "running formulas, and no UTF-8 byte order mark.",
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


# -- renamed options (docs/cli-conventions.md) ----------------------------------------------------
# An old spelling stays as a hidden option that still works and prints a one-line notice on
# stderr, until this version (CHANGELOG.md lists each one).
OLD_SPELLINGS_GO_IN = "1.0.0"


def deprecated_notice(old: str, new: str) -> None:
    """One line on stderr: ``old`` is an old spelling of ``new``."""
    from .output import notice

    notice(
        f"note: {old} is deprecated, use {new} (the old spelling goes in enosprov "
        f"{OLD_SPELLINGS_GO_IN})"
    )


def renamed(new_value: T, old_value: T | None, *, new: str, old: str) -> T:
    """The value of an option given under its new name or its old spelling ``old`` (a hidden
    option, whose value is None or False when not given): the old one prints a notice, both at
    once is a usage error."""
    if old_value is None or old_value is False:
        return new_value
    if new_value is not None and new_value is not False:
        raise typer.BadParameter(f"give {new} only ({old} is its old spelling)")
    deprecated_notice(old, new)
    return old_value
