"""`enosprov sync push|pull|status`: the local store and an EnOS tenant (core/sync.py, docs/sync.md);
`group import` (cli/groups.py) uses the same two sides."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from .options import JsonOpt, state
from .output import emit, handled, progress_bar, say, table

app = typer.Typer(
    help="Offline first: register, burn and label on the local store while EnOS is out of "
    "reach, then push to the tenant.\n\n"
    "Example: enosprov sync push --profile prod --group meters-eu",
    no_args_is_help=True,
)

ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile",
        help="The EnOS profile of the tenant (config file); the local store is the root "
        "--store (or ENOSPROV_STORE, or the default store).",
        show_default=False,
    ),
]
SyncGroupOpt = Annotated[
    str, typer.Option("--group", "-g", help="Registration group id or name.", show_default=False)
]


@contextmanager
def sides(ctx: typer.Context, profile: str) -> Iterator[tuple[Any, Any, Any]]:
    """(local store, EnOS backend of ``profile``, the local store's journal)."""
    from ..domain.errors import InvalidArgumentError
    from ..settings import Settings, open_journal

    st = state(ctx)
    if st.profile is not None:
        raise InvalidArgumentError(
            "the root --profile is not used here: the local store is one side, the command's "
            "--profile the other",
            hint="enosprov [--store STORE] sync push --profile NAME",
        )
    local_settings = Settings.local(st.store)
    remote = Settings.resolve(profile=profile)
    journal = open_journal(local_settings, st.station)
    local = local_settings.create_backend()
    try:
        enos = remote.create_backend()
    except BaseException:
        local.close()
        journal.close()
        raise
    try:
        yield local, enos, journal
    finally:
        enos.close()
        local.close()
        journal.close()


@app.command("push")
@handled
def push(
    ctx: typer.Context,
    profile: ProfileOpt,
    group: SyncGroupOpt,
    batch_tag: Annotated[
        str | None,
        typer.Option("--batch-tag", help="Only the devices of this batch tag.", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be created in EnOS; change nothing.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="A deviceSn that EnOS holds with other data gets the store's data (default: "
            "listed as a conflict, left alone).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Create in EnOS every device of the group that EnOS does not have yet (by groupId and
    deviceSn), with its master data, batch tag and description, and record its EnOS sn next
    to the store's. Safe to run again, and after an interruption: what EnOS already holds with
    the same data is linked, not created twice. A deviceSn EnOS holds with other data is a
    conflict (exit 5), listed, never overwritten unless --overwrite.

    The group must have the tenant's group secret (`enosprov group import`), or every file
    burned offline would fail to bootstrap: a different secret is refused.

    Example: enosprov sync push --profile prod --group meters-eu --batch-tag B-2026-11
    """
    from ..core.sync import push as do_push
    from ..domain.errors import EXIT_PARTIAL

    with (
        sides(ctx, profile) as (local, enos, journal),
        progress_bar(not json_, "pushing") as progress,
    ):
        report = do_push(local, enos, group, profile=profile, batch_tag=batch_tag,
                         dry_run=dry_run, overwrite=overwrite, progress=progress,
                         journal=journal)  # fmt: skip
    emit(report.to_dict(), json_, lambda d: _show_push(report))
    if report.conflict_count or report.failed_count:
        raise typer.Exit(EXIT_PARTIAL)


def _show_push(report) -> None:
    verb = "would be created" if report.dry_run else "created"
    table(
        f"sync push {report.group_id} -> EnOS profile {report.profile}",
        ["devices", "pushed before", verb, "found in EnOS", "overwritten", "conflicts", "failed"],
        [[report.devices, report.linked_before, report.created, report.found,
          report.overwritten, report.conflict_count, report.failed_count]],
    )  # fmt: skip
    for c in report.conflicts[:20]:
        say(f"conflict: {c['deviceSn']} (EnOS sn {c['enosSn']}): {c['differences']}")
    for f in report.failures[:20]:
        say(f"failed: {f['deviceSn']}: {f['error']}")
    more = (
        report.conflict_count
        + report.failed_count
        - min(20, len(report.conflicts))
        - min(20, len(report.failures))
    )
    if more > 0:
        say(f"... and {more} more (--json lists up to 1,000)")


@app.command("pull")
@handled
def pull(
    ctx: typer.Context,
    profile: ProfileOpt,
    group: SyncGroupOpt,
    json_: JsonOpt = False,
) -> None:
    """Bring what the group's devices did in EnOS into the store: allocation, connection,
    reprovisioning and their EnOS triple, so that `enosprov batches` in the plant shows the
    field. Devices pushed but gone from EnOS are listed (a deletion or a replacement there: no
    EnOS API says which); the store keeps them. Devices only in EnOS are counted.

    Example: enosprov sync pull --profile prod --group meters-eu
    """
    from ..core.sync import pull as do_pull

    with (
        sides(ctx, profile) as (local, enos, journal),
        progress_bar(not json_, "pulling") as progress,
    ):
        report = do_pull(local, enos, group, profile=profile, progress=progress, journal=journal)
    emit(report.to_dict(), json_, lambda d: _show_pull(report))


def _show_pull(report) -> None:
    table(
        f"sync pull {report.group_id} <- EnOS profile {report.profile}",
        ["in EnOS", "updated", "unchanged", "linked now", "only in EnOS", "gone from EnOS"],
        [[report.in_enos, report.updated, report.unchanged, report.linked,
          report.only_in_enos, report.vanished_count]],
    )  # fmt: skip
    for g in report.vanished[:20]:
        say(f"gone from EnOS (deleted or replaced there): {g['deviceSn']} (EnOS sn {g['enosSn']})")


@app.command("status")
@handled
def status(
    ctx: typer.Context,
    profile: ProfileOpt,
    group: SyncGroupOpt,
    json_: JsonOpt = False,
) -> None:
    """Compare the store and EnOS, per batch tag of the group: devices only in the store (not
    pushed yet), only in EnOS, in both with different data, and in sync. Nothing is changed.

    Example: enosprov sync status --profile prod --group meters-eu
    """
    from ..core.sync import status as do_status

    with sides(ctx, profile) as (local, enos, _journal):
        rows = do_status(local, enos, group)
    emit(
        [r.to_dict() for r in rows],
        json_,
        lambda d: table(
            f"sync status with EnOS profile {profile}",
            ["group", "batch", "only in store", "only in EnOS", "different", "in sync"],
            [
                [
                    r["groupId"],
                    r["batchTag"] or "(none)",
                    r["onlyLocal"],
                    r["onlyEnos"],
                    r["different"],
                    r["inSync"],
                ]
                for r in d
            ],
        ),
    )
