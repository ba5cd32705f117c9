"""`enosprov reprovision`: move allocated devices to another environment / OU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..domain.errors import EXIT_FAILED, EXIT_PARTIAL
from .options import BatchTagFilterOpt, JsonOpt, OptionalGroupOpt, state
from .output import confirm_or_refuse, emit, handled, say, table


@handled
def reprovision(
    ctx: typer.Context,
    devices: Annotated[
        list[str] | None,
        typer.Argument(metavar="[SN]...", help="System sns or deviceSns.", show_default=False),
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="Target environment (region), e.g. cn5.")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Target OU id.")] = None,
    group: OptionalGroupOpt = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="A CSV with an sn or deviceSn column.")
    ] = None,
    batch_tag: BatchTagFilterOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and change nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Reprovision devices to another environment/OU, keeping Group ID, Group Secret and serial.

    Shows the plan (device, from, to, what happens to master data under the group's reprovision
    method), asks for confirmation on a terminal (--yes for scripts), then resets the devices'
    allocation (resetAllocationStatus), then sets the new target in each device's built-in
    master data deviceData.regionId/orgId (Update Device), the way EnOS documents choosing where a
    device is allocated: when a device bootstraps again with the credential file it already
    holds, it is allocated there with a new device key and secret. Devices that
    cannot move (group reprovision method 'never', private model, never allocated, already
    there) are listed with the reason and left unchanged. Exit code 5 when some were refused.

    Example: enosprov reprovision SN-0001 SN-0002 --group meters-eu --region cn5 --org o2

    Example: enosprov reprovision --batch-tag B-2026-11-A --group meters-eu --region cn5
    --org o2 --yes --json
    """
    from ..core.reprovision import apply_reprovision, plan_reprovision

    with state(ctx).open() as (backend, journal):
        plan = plan_reprovision(
            backend, devices or (), region_id=region, org_id=org, group=group,
            csv_path=csv_file, batch_tag=batch_tag,
        )  # fmt: skip
        if not json_:
            _show_plan(plan)
        accepted = len(plan.accepted)
        if dry_run or not accepted:
            emit(plan, json_)
            if not json_:
                say("dry run: nothing was changed" if dry_run else "nothing to reprovision")
            if not accepted:
                raise typer.Exit(EXIT_FAILED)
            return
        target = f"{plan.region_id} / {plan.org_id}"
        confirm_or_refuse(
            f"Reprovision {accepted} device{'s' if accepted > 1 else ''} to {target}?",
            yes=yes,
            what=f"reprovision {accepted} device{'s' if accepted > 1 else ''}",
        )
        result = apply_reprovision(backend, plan, journal=journal)
    emit(
        result,
        json_,
        lambda r: say(
            f"reset {len(r.reset)} device{'s' if len(r.reset) != 1 else ''} and set "
            f"deviceData.regionId/orgId to {target} on {len(r.targeted)}: each is allocated "
            "there with a new device key and secret when it bootstraps again"
            + (f"; {len(plan.refused)} refused" if plan.refused else "")
        ),
    )
    if plan.refused:
        raise typer.Exit(EXIT_PARTIAL)


def _show_plan(plan) -> None:
    to = f"{plan.region_id} / {plan.org_id}"
    rows = [
        [i.device.sn, i.device.device_sn, i.source, to if i.refused is None else "-",
         plan.masterdata if i.refused is None else "-", i.refused or "reset, set target"]
        for i in plan.items
    ]  # fmt: skip
    table(
        f"reprovision plan: group {plan.group.group_id} "
        f"(reprovision method {plan.group.reprovision_method})",
        ["sn", "deviceSn", "from", "to", "master data", "action"],
        rows,
        no_wrap={"from", "to"},
        wide=True,
    )
