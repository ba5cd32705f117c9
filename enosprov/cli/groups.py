"""`enosprov group create|update|list|show|import`: registration groups."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .options import FormatOpt, GroupTimezoneOpt, JsonOpt, list_format, renamed, state
from .output import emit, handled, key_values, say, table

app = typer.Typer(
    help="Registration groups: the onboarding configuration shared by their devices.\n\n"
    "Example: enosprov group create --name 'Meters EU' --product-key pk1 --region eu2 --org o1",
    no_args_is_help=True,
)


def _render_group(group, devices: int | None = None, show_secret: bool = False) -> None:
    rows = [
        ("group id", group.group_id),
        ("name", group.name),
        ("description", group.description),
        ("product key", group.product_key),
        ("master data group", group.masterdata_group_id),
        ("allocation target", f"{group.region_id or '-'} / {group.org_id or '-'}"),
        ("reprovision method", group.reprovision_method),
        ("model type", group.model_type),
        ("signing scheme", group.sign_scheme),
        ("deviceSn pattern", group.sn_pattern or "default"),
        ("default timezone", group.timezone or "- (devices need deviceData.timezone)"),
        (
            "retired units",
            "may register themselves again by bootstrap"
            if group.allow_retired_bootstrap
            else "bootstrap refused on the local store (EnOS decides for itself)",
        ),
    ]
    if devices is not None:
        rows.append(("devices", devices))
    if show_secret:
        rows.append(("group secret", group.group_secret))
    else:
        rows.append(("group secret", "(hidden; --with-secrets to print it)"))
    key_values(rows)


@app.command("create")
@handled
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Group name, 1-64 characters (unique).")],
    product_key: Annotated[str, typer.Option("--product-key", help="EnOS product key.")],
    group_id: Annotated[
        str | None, typer.Option("--id", help="Group id (default: generated).")
    ] = None,
    masterdata: Annotated[
        str, typer.Option("--masterdata", help="Master data group id.")
    ] = "builtin",
    desc: Annotated[
        str | None,
        typer.Option("--desc", help="Description, at most 512 characters.", show_default=False),
    ] = None,
    old_description: Annotated[
        str | None, typer.Option("--description", hidden=True, show_default=False)
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Allocation target environment/region, e.g. eu2."),
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Allocation target OU (orgId).")] = None,
    reprovision: Annotated[
        Literal["migrate", "initialize", "never"],
        typer.Option("--reprovision", help="What a reset keeps: migrate keeps the master data."),
    ] = "migrate",
    model: Annotated[
        Literal["public", "private"],
        typer.Option("--model", help="Model type (a private model cannot be reprovisioned)."),
    ] = "public",
    manufacturer_org: Annotated[
        str | None,
        typer.Option("--manufacturer-org", help="OU where devices are pre-registered."),
    ] = None,
    sign_scheme: Annotated[
        str, typer.Option("--sign-scheme", help="Device signature scheme (docs/signing.md).")
    ] = "sn-ts-secret",
    sn_pattern: Annotated[
        str | None, typer.Option("--sn-pattern", help="Regular expression deviceSns must match.")
    ] = None,
    mqtt_url: Annotated[str | None, typer.Option("--mqtt-url", help="MQTT broker URL.")] = None,
    http_url: Annotated[str | None, typer.Option("--http-url", help="HTTP broker URL.")] = None,
    timezone: GroupTimezoneOpt = None,
    allow_retired_bootstrap: Annotated[
        bool,
        typer.Option(
            "--allow-retired-bootstrap",
            help="Let a retired (replaced) unit register itself again by bootstrap. An enosprov "
            "rule of the local store (refused by default), not an EnOS one.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Create a registration group with a fresh group secret.

    Safe to run again: the same definition already in the store (found by --id, else by
    --name) is "unchanged" (exit 0, the stored secret kept); a different one is refused with
    the differences (exit 7): change it with `enosprov group update`.

    On the local store, a retired unit (one that `enosprov replace` took out) that bootstraps
    with its old credential file is refused, naming the unit in service, unless the group is
    created with --allow-retired-bootstrap (an enosprov rule of the local store; EnOS decides
    this itself and may accept the old unit).

    Example: enosprov group create --id meters-eu --name "Meters EU" --product-key pk1
    --region eu2 --org o15000000000001 --masterdata meters --timezone +01:00
    """
    from .. import api

    with state(ctx).open() as (store, journal):
        ensured = api.ensure_group(
            store,
            name=name,
            product_key=product_key,
            masterdata_group_id=masterdata,
            group_id=group_id,
            description=renamed(desc, old_description, new="--desc", old="--description") or "",
            region_id=region,
            org_id=org,
            reprovision_method=reprovision,
            model_type=model,
            manufacturer_org_id=manufacturer_org,
            sign_scheme=sign_scheme,
            sn_pattern=sn_pattern,
            mqtt_url=mqtt_url,
            http_url=http_url,
            timezone=timezone,
            allow_retired_bootstrap=allow_retired_bootstrap,
            journal=journal,
        )

    def render(e) -> None:
        say(f"{e.status}: registration group {e.value.group_id}")
        _render_group(e.value)

    emit(ensured, json_, render)


@app.command("list")
@handled
def list_(ctx: typer.Context, fmt: FormatOpt = None, json_: JsonOpt = False) -> None:
    """List registration groups with their device counts.

    Example: enosprov group list --json
    """
    json_ = list_format(fmt, json_)
    with state(ctx).backend() as store:
        groups = store.list_groups()
        counts = store.device_counts()
    data = [dict(g.to_dict(), devices=counts.get(g.group_id, 0)) for g in groups]
    emit(
        data,
        json_,
        lambda _: table(
            None,
            [
                "group id",
                "name",
                "product",
                "target",
                "reprovision",
                "model",
                "master data",
                "timezone",
                "devices",
            ],
            [
                [
                    g.group_id,
                    g.name,
                    g.product_key,
                    f"{g.region_id or '-'} / {g.org_id or '-'}",
                    g.reprovision_method,
                    g.model_type,
                    g.masterdata_group_id,
                    g.timezone or "-",
                    counts.get(g.group_id, 0),
                ]
                for g in groups
            ],
        ),
    )


@app.command("show")
@handled
def show(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group id or name.")],
    with_secrets: Annotated[
        bool,
        typer.Option("--with-secrets", help="Also print the group secret (explicit export)."),
    ] = False,
    old_show_secret: Annotated[
        bool, typer.Option("--show-secret", hidden=True, show_default=False)
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Show one registration group. The group secret is printed only with --with-secrets.

    Example: enosprov group show meters-eu --with-secrets
    """
    show_secret = renamed(with_secrets, old_show_secret, new="--with-secrets", old="--show-secret")
    with state(ctx).backend() as store:
        grp = store.get_group(group)
        count = store.device_counts().get(grp.group_id, 0)
    if json_:
        emit(dict(grp.to_dict(include_secret=show_secret), devices=count), True)
    else:
        _render_group(grp, count, show_secret)


@app.command("update")
@handled
def update(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group id or name.")],
    name: Annotated[str | None, typer.Option("--name", help="A new, unique name.")] = None,
    desc: Annotated[
        str | None, typer.Option("--desc", help="A new description (at most 512 characters).")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="A new allocation target: region (with --org).")
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="A new allocation target: OU (with --region).")
    ] = None,
    reprovision: Annotated[
        Literal["migrate", "initialize", "never"] | None,
        typer.Option("--reprovision", help="A new reprovision method.", show_default=False),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="A new default timezone of its devices (+01:00)."),
    ] = None,
    allow_retired_bootstrap: Annotated[
        bool | None,
        typer.Option(
            "--allow-retired-bootstrap/--refuse-retired-bootstrap",
            help="Whether a retired unit may register itself again by bootstrap.",
            show_default=False,
        ),
    ] = None,
    mqtt_url: Annotated[
        str | None, typer.Option("--mqtt-url", help="A new MQTT broker URL.")
    ] = None,
    http_url: Annotated[
        str | None, typer.Option("--http-url", help="A new HTTP broker URL.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change what the devices of a registration group do not depend on: its name,
    description, allocation target (both --region and --org), reprovision method, default
    timezone, retired-unit rule and broker URLs. Its id, product key, master data group,
    signature scheme and secret never change (burned files depend on them). Local store only
    (EnOS: its console).

    Example: enosprov group update meters-eu --region eu2 --org o15000000000002
    """
    from .. import api

    given = {
        "name": name,
        "description": desc,
        "region_id": region,
        "org_id": org,
        "reprovision_method": reprovision,
        "timezone": timezone,
        "allow_retired_bootstrap": allow_retired_bootstrap,
        "mqtt_url": mqtt_url,
        "http_url": http_url,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    with state(ctx).open() as (store, journal):
        updated = api.update_group(store, group, journal=journal, **changes)
    emit(updated, json_, _render_group)


@app.command("import")
@handled
def import_(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group id (or name) in the profile.")],
    profile: Annotated[
        str,
        typer.Option(
            "--profile", help="The EnOS profile whose group to import.", show_default=False
        ),
    ],
    region: Annotated[
        str | None,
        typer.Option("--region", help="Allocation target environment/region, e.g. eu2."),
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Allocation target OU (orgId).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Bring a registration group of an EnOS tenant into the local store (EnOS has no API
    for groups: the profile's definition is used): the same id, name, product key, master data
    (from the profile's TOML file), signing scheme, deviceSn pattern and timezone, and the
    tenant's group secret, so that the credential files burned offline bootstrap in EnOS.
    Then register, burn and label offline, and `enosprov sync push`.

    Safe to run again ("unchanged"); a store group of the same id with another definition or
    another secret is refused (exit 7).

    Example: enosprov --store plant.db group import meters-eu --profile prod
    """
    from ..core.sync import import_group
    from .sync import sides

    with sides(ctx, profile) as (local, enos, journal):
        report = import_group(local, enos, group, profile=profile, region_id=region,
                              org_id=org, journal=journal)  # fmt: skip
    emit(
        report.to_dict(),
        json_,
        lambda d: say(
            f"{d['status']}: registration group {d['groupId']} of profile {profile} "
            f"(master data {d['masterdataGroupId']}, the tenant's group secret)"
        ),
    )
