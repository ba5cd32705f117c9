"""`enosprov config create|add-group|remove-group|list|show|use|delete`: EnOS profiles."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..backends.enos_config import DEFAULT_RETRIES, DEFAULT_TIMEOUT, DEFAULT_WORKERS
from .options import FormatOpt, GroupTimezoneOpt, JsonOpt, list_format, state
from .output import confirm_or_refuse, emit, handled, key_values, say, table

app = typer.Typer(
    help="Configuration profiles: how to reach a real EnOS OU (API gateway, OU, service account, "
    "registration groups). A selected profile makes every command use EnOS instead of the local "
    "store.\n\n"
    "Example: enosprov config create prod-eu --api-url https://apim-eu2.envisioniot.com "
    "--org o15000000000001 --access-key AK1 --secret-env ENOS_APP_SECRET "
    "--dps-url https://iot-dps-eu2.envisioniot.com --select",
    no_args_is_help=True,
)

SecretEnvOpt = Annotated[
    str | None,
    typer.Option("--secret-env", help="Read the secret from this environment variable (best)."),
]
SecretFileOpt = Annotated[
    Path | None,
    typer.Option("--secret-file", help="Read the secret from this file (its content, stripped)."),
]
SecretStdinOpt = Annotated[
    bool,
    typer.Option(
        "--secret-stdin",
        help="Read the secret from standard input and store it in the config file (the file "
        "becomes owner-only).",
    ),
]
ReplaceOpt = Annotated[bool, typer.Option("--replace", help="Replace it if it exists.")]


@contextmanager
def _warnings_to_stderr():
    """Show the library's InlineSecretWarning as one 'warning:' line on stderr."""
    import warnings

    from ..profiles import InlineSecretWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InlineSecretWarning)
        yield
    for w in caught:
        if issubclass(w.category, InlineSecretWarning):
            say(f"warning: {w.message}", stderr=True)
        else:  # pragma: no cover - not ours: hand it back
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _secret(env_var: str | None, file: Path | None, stdin: bool, required: bool):
    """The SecretRef the options give (exactly one of them, or none when not ``required``)."""
    from ..domain.errors import InvalidArgumentError
    from ..profiles import SecretRef

    given = [x for x in (env_var is not None, file is not None, stdin) if x]
    if len(given) > 1 or (required and not given):
        raise InvalidArgumentError(
            "give exactly one of --secret-env, --secret-file and --secret-stdin"
            if given
            else "a secret is required: give one of --secret-env, --secret-file, --secret-stdin",
            hint="--secret-env VAR keeps the secret out of the config file",
        )
    if env_var is not None:
        ref = SecretRef.from_env(env_var)
        if not os.environ.get(env_var):
            say(f"note: {env_var} is not set here; set it before using the profile", stderr=True)
        return ref
    if file is not None:
        path = file.expanduser().absolute()
        if not path.is_file():
            say(f"note: secret file {path} does not exist yet", stderr=True)
        return SecretRef.from_file(path)
    if stdin:
        tty = sys.stdin.isatty()
        value = (typer.prompt("Secret", hide_input=True) if tty else sys.stdin.read()).strip()
        if not value:
            raise InvalidArgumentError("no secret on standard input")
        if "\n" in value:
            raise InvalidArgumentError("the secret on standard input has more than one line")
        return SecretRef.inline(value)
    return None


def _number(value: float | None):
    """20.0 -> 20, so the config file reads naturally."""
    return int(value) if value is not None and float(value).is_integer() else value


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def _render_profile(d: dict) -> None:
    rate = d["maxRequestsPerSecond"]
    key_values(
        [
            ("profile", d["name"] + ("  (current)" if d["current"] else "")),
            ("config file", d["configFile"]),
            ("API gateway", d["apiUrl"]),
            ("OU (orgId)", d["orgId"]),
            ("access key", d["accessKey"]),
            ("secret", d["secret"]),
            ("DPS endpoint", _or_dash(d["dpsUrl"])),
            ("workers", d["workers"]),
            ("rate limit", "off" if rate is None else f"{rate:g} requests/s"),
            ("timeout", f"{d['timeout']:g} s"),
            ("retries", d["retries"]),
            ("groups", len(d["groups"])),
        ]
    )
    if d["groups"]:
        table(
            None,
            [
                "group id",
                "name",
                "secret",
                "master data",
                "product",
                "signing",
                "deviceSn pattern",
                "timezone",
            ],
            [
                [
                    g["groupId"],
                    _or_dash(g["name"]),
                    _or_dash(g["secret"]),
                    _or_dash(g["masterdata"]),
                    _or_dash(g["productKey"]),
                    g["signScheme"],
                    _or_dash(g["snPattern"]),
                    _or_dash(g["timezone"]),
                ]
                for g in d["groups"]
            ],
        )


@app.command("create")
@handled
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Profile name, e.g. prod-eu.")],
    api_url: Annotated[
        str,
        typer.Option("--api-url", help="API gateway URL, e.g. https://apim-eu2.envisioniot.com."),
    ],
    org: Annotated[str, typer.Option("--org", help="The OU (orgId).")],
    access_key: Annotated[str, typer.Option("--access-key", help="Service account access key.")],
    dps_url: Annotated[
        str,
        typer.Option(
            "--dps-url", help="DPS device endpoint, e.g. https://iot-dps-eu2.envisioniot.com."
        ),
    ],
    secret_env: SecretEnvOpt = None,
    secret_file: SecretFileOpt = None,
    secret_stdin: SecretStdinOpt = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help=f"Concurrent requests (default {DEFAULT_WORKERS})."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="At most this many requests per second (default: no limit)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help=f"Seconds per HTTP request (default {DEFAULT_TIMEOUT:g})."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            "--retries",
            min=0,
            help=f"Retries on 429, 5xx and lost connections (default {DEFAULT_RETRIES}).",
        ),
    ] = None,
    select: Annotated[
        bool, typer.Option("--select", help="Also make it the current profile.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace an existing profile's settings (keeps its groups)."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Create a profile. The access secret is referenced (environment variable or file), or
    stored in the config file with --secret-stdin.

    Example: enosprov config create prod-eu --api-url https://apim-eu2.envisioniot.com
    --org o15000000000001 --access-key AK1 --secret-env ENOS_APP_SECRET
    --dps-url https://iot-dps-eu2.envisioniot.com --select
    """
    from .. import profiles

    secret = _secret(secret_env, secret_file, secret_stdin, required=True)
    with _warnings_to_stderr():
        profiles.create_profile(
            name,
            api_url=api_url,
            org_id=org,
            access_key=access_key,
            secret=secret,
            dps_url=dps_url,
            workers=workers,
            max_rps=_number(rate),
            timeout=_number(timeout),
            retries=retries,
            replace_existing=replace,
            select=select,
        )
    data = profiles.describe(name)
    if not json_:
        verb = "updated" if replace else "created"
        say(f"{verb} profile {name} in {data['configFile']}", stderr=True)
    emit(data, json_, _render_profile)


@app.command("add-group")
@handled
def add_group(
    ctx: typer.Context,
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    group_id: Annotated[str, typer.Argument(help="The registration group id in EnOS.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Group name (--group finds by id or name).")
    ] = None,
    secret_env: SecretEnvOpt = None,
    secret_file: SecretFileOpt = None,
    secret_stdin: SecretStdinOpt = False,
    masterdata: Annotated[
        Path | None,
        typer.Option("--masterdata", help="Master data TOML file the CSV is checked against."),
    ] = None,
    product_key: Annotated[
        str | None, typer.Option("--product-key", help="EnOS product key.")
    ] = None,
    sign_scheme: Annotated[
        str | None,
        typer.Option("--sign-scheme", help="Device signature scheme (default sn-ts-secret)."),
    ] = None,
    sn_pattern: Annotated[
        str | None, typer.Option("--sn-pattern", help="Regular expression deviceSns must match.")
    ] = None,
    timezone: GroupTimezoneOpt = None,
    replace: ReplaceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Tell a profile about a registration group of its OU: where its group secret comes from and
    which master data file validates its CSVs (EnOS has no API that lists groups).

    Example: enosprov config add-group prod-eu meters-eu --name "Smart meters EU"
    --secret-env METERS_GROUP_SECRET --masterdata masterdata/meters.toml --product-key pk1
    --timezone +01:00
    """
    from .. import profiles

    secret = _secret(secret_env, secret_file, secret_stdin, required=False)
    md = None
    if masterdata is not None:
        from ..domain.masterdata_file import load_masterdata_group

        md_path = masterdata.expanduser().absolute()
        load_masterdata_group(md_path)  # fails now, not at the first registration
        md = str(md_path)
    with _warnings_to_stderr():
        profiles.add_group(
            profile,
            group_id,
            name=name,
            secret=secret,
            masterdata=md,
            product_key=product_key,
            sign_scheme=sign_scheme,
            sn_pattern=sn_pattern,
            timezone=timezone,
            replace_existing=replace,
        )
    data = profiles.describe(profile)
    if not json_:
        say(f"added group {group_id} to profile {profile}", stderr=True)
    emit(data, json_, _render_profile)


@app.command("remove-group")
@handled
def remove_group(
    ctx: typer.Context,
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    group_id: Annotated[str, typer.Argument(help="Group id.")],
    json_: JsonOpt = False,
) -> None:
    """Forget a registration group in a profile (nothing changes in EnOS).

    Example: enosprov config remove-group prod-eu meters-eu
    """
    from .. import profiles

    with _warnings_to_stderr():
        profiles.remove_group(profile, group_id)
    emit(
        {"profile": profile, "removed": group_id},
        json_,
        lambda _: say(f"removed group {group_id} from profile {profile}"),
    )


@app.command("list")
@handled
def list_(ctx: typer.Context, fmt: FormatOpt = None, json_: JsonOpt = False) -> None:
    """List the profiles; * marks the current one.

    Example: enosprov config list --json
    """
    json_ = list_format(fmt, json_)
    from .. import profiles

    config = profiles.load()
    data: list[dict[str, Any]] = [
        {
            "name": p.name,
            "current": config.current == p.name,
            "apiUrl": p.api_url,
            "orgId": p.org_id,
            "groups": list(p.groups),
        }
        for p in config.profiles.values()
    ]
    if json_:
        emit(data, True)
        return
    if not data:
        say(f"no profiles in {config.path}; create one with `enosprov config create`")
        return
    table(
        None,
        ["name", "current", "api url", "org", "groups"],
        [
            [
                d["name"],
                "*" if d["current"] else "",
                d["apiUrl"],
                d["orgId"],
                ", ".join(d["groups"]),
            ]
            for d in data
        ],
    )
    if config.current is None:
        say("no current profile: commands use the local store", stderr=True)


@app.command("show")
@handled
def show(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help="Profile name (default: --profile, $ENOSPROV_PROFILE, the current one)."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Show a profile. Secrets are never printed, only where they come from.

    Example: enosprov config show prod-eu --json
    """
    from .. import profiles
    from ..domain.errors import InvalidArgumentError

    config = profiles.load()
    name = name or state(ctx).profile or os.environ.get(profiles.PROFILE_ENV) or config.current
    if not name:
        raise InvalidArgumentError(
            "no profile selected",
            hint="name one (`enosprov config show NAME`), or select one with `enosprov config use`",
        )
    emit(profiles.describe_profile(config.get(name), config), json_, _render_profile)


@app.command("use")
@handled
def use(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Profile to make current.")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="No current profile: use the local store.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Select the profile commands use by default, or with --local the local store.

    Example: enosprov config use prod-eu
    """
    from .. import profiles
    from ..domain.errors import InvalidArgumentError

    if (name is None) == (not local):
        raise InvalidArgumentError(
            "give a profile name or --local, not both"
            if local
            else "give a profile name or --local",
            hint="enosprov config use prod-eu, or enosprov config use --local",
        )
    with _warnings_to_stderr():
        config = profiles.select(None if local else name)
    data = {"current": config.current, "configFile": str(config.path)}

    def render(d):
        if d["current"]:
            say(f"current profile: {d['current']} ({d['configFile']})")
        else:
            say("no current profile: commands use the local store")

    emit(data, json_, render)
    env_profile = os.environ.get(profiles.PROFILE_ENV)
    if env_profile:
        say(
            f"note: {profiles.PROFILE_ENV}={env_profile} is set in this shell and takes precedence",
            stderr=True,
        )


@app.command("delete")
@handled
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Profile to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Delete a profile from the config file (nothing changes in EnOS).

    Example: enosprov config delete staging --yes
    """
    from .. import profiles

    profiles.get_profile(name)  # unknown -> not found, before asking
    confirm_or_refuse(f"Delete profile {name}?", yes=yes, what=f"delete profile {name!r}",
                      dry_run=False)  # fmt: skip
    with _warnings_to_stderr():
        was_current = profiles.delete_profile(name)

    def render(_):
        say(f"deleted profile {name}")
        if was_current:
            say("it was the current profile: commands now use the local store", stderr=True)

    emit({"deleted": name, "wasCurrent": was_current}, json_, render)
