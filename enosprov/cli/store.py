"""`enosprov store copy`: move a station's store, journal included, between SQLite and
PostgreSQL (core/store_copy.py)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .options import JsonOpt
from .output import emit, handled, progress_bar, say, table

if TYPE_CHECKING:
    from ..core.store_copy import CopyReport

app = typer.Typer(
    help="The store itself: copy a station's store, journal included, between an SQLite file "
    "and a PostgreSQL plant database.\n\n"
    "Example: enosprov store copy --from store.db --to postgresql://station@db.plant/enos",
    no_args_is_help=True,
)

LOCATION_HELP = (
    "an SQLite file, a postgresql:// URL (password from PGPASSWORD or ~/.pgpass) or a store "
    "named in the config file"
)


@app.command("copy")
@handled
def copy(
    ctx: typer.Context,
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="STORE",
            help=f"The store to copy from: {LOCATION_HELP}.",
            show_default=False,
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="STORE",
            help=f"The store to copy into: {LOCATION_HELP}. A new SQLite file is created.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Look for conflicts and count what would be copied; write nothing."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Copy a station's store into another store: groups (with their secrets), devices,
    replacements, the batch counter and the audit journal. Works both ways between an SQLite
    file and a PostgreSQL database (and between two files).

    The target is checked first: a group of the same id with another definition, or a device
    with other data, is a conflict (exit 7) and nothing is written. What the target already
    holds, identical, is skipped, so running the copy again (after an interruption, say) only
    adds what is missing. Everything is written in one transaction, then every source row is
    looked up in the target before it commits (exit 4, nothing written, if one is missing).
    Nothing is written to the --from store. The root option --store is not used.

    Example: enosprov store copy --from store.db --to postgresql://station@db.plant/enos
    """
    import tempfile

    from ..core.store_copy import copy_store

    with ExitStack() as stack:
        source_at, target_at = _location(from_, "--from"), _location(to, "--to")
        source = _open(stack, source_at, "--from")  # the same store twice: copy_store refuses
        shown_target = None
        if dry_run and isinstance(target_at, Path) and not target_at.exists():
            # nothing to look at and nothing to create: compare with an empty store instead
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="enosprov-copy-"))
            target = _open(stack, Path(folder) / "empty.db", "--to")
            shown_target = f"{target_at} (new)"
        else:
            target = _open(stack, target_at, "--to")
        with progress_bar(not json_, "store copy") as progress:
            report = copy_store(source, target, progress=progress, dry_run=dry_run)
        if shown_target is not None:
            report.target = shown_target
    emit(report, json_, _render)


def _location(value: str, option: str) -> Path | str:
    """A --from / --to value as a store location: a file path or a database URL."""
    from ..settings import Settings

    if not value.strip():
        raise typer.BadParameter(f"{option} needs a store: {LOCATION_HELP}")
    return Settings.local(value).store


def _open(stack: ExitStack, where: Path | str, option: str) -> Any:
    """The store at ``where``, closed with ``stack``; a --from file must exist (opening it would
    create an empty store)."""
    from ..domain.errors import NotFoundError
    from ..settings import Settings

    if option == "--from" and isinstance(where, Path) and not where.is_file():
        raise NotFoundError(
            f"no store file {where}",
            hint=f"--from names an existing store: {LOCATION_HELP}",
        )
    backend = Settings(where, "--store").create_backend()
    stack.callback(backend.close)
    return backend


def _render(report: CopyReport) -> None:
    rows = [
        [t.label, t.source, t.copied, t.present, t.target]
        for t in report.tables.values()
        if t.source or t.target
    ]
    if report.dry_run:
        say(f"dry run: nothing was written. {report.source} -> {report.target}")
        columns = ["table", "source", "to copy", "already there", "target after"]
    else:
        say(f"copied {report.source} -> {report.target}")
        columns = ["table", "source", "copied", "already there", "target"]
    table(None, columns, rows)
    say(
        f"batch counter: {report.batch_order} (source {report.batch_order_source}, target "
        f"{'now' if report.dry_run else 'before'} {report.batch_order_target})"
    )
    if report.dry_run:
        say(f"{report.copied} rows to copy, no conflicts")
    elif report.copied:
        say(f"{report.copied} rows copied; checked: every source row is in the target")
    else:
        say("nothing to copy: the target already held every source row (checked)")
