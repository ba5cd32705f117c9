"""`enosprov doctor`: prove a profile against its EnOS tenant (core/doctor.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import JsonOpt, state
from .output import confirm_or_refuse, emit, handled, say, table


@handled
def doctor(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="The profile to check (default: the root --profile, ENOSPROV_PROFILE, or the "
            "current profile).",
            show_default=False,
        ),
    ] = None,
    write_test: Annotated[
        str | None,
        typer.Option(
            "--write-test",
            metavar="GROUP",
            help="Also run the write checks in this group, one you name as safe for tests: a "
            "throwaway device (enosprov-doctor-...) is registered, updated, allocated, "
            "bootstrapped with each known signature scheme, reset and deleted.",
            show_default=False,
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="Target region of the write checks' allocation (default: "
            "from the gateway address, e.g. apim-eu2 -> eu2).",
            show_default=False,
        ),
    ] = None,
    save_scheme: Annotated[
        bool,
        typer.Option(
            "--save-scheme",
            help="Save the device signature scheme the tenant "
            "accepts in the profile's group without asking.",
        ),
    ] = False,
    cleanup: Annotated[
        bool,
        typer.Option(
            "--cleanup",
            help="Delete the throwaway devices interrupted write checks "
            "left (from the audit journal), then stop.",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Run the write checks without asking.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Check, read-only, that enosprov will work with a profile's EnOS tenant: the API
    gateway answers (TLS verified), the clock agrees with the gateway's, the access key gets a
    token, the service account may use DPS on each group of the profile, round-trip latency,
    and the DPS device address (dpsUrl) answers. Nothing is changed in EnOS.

    Each check says what it proved, its time, the EnOS code and requestId, and what to do.
    Exit 0: every check passed (warnings included); 8: a check failed; 3: the gateway could
    not be reached. --json is safe for support tickets: it never holds a secret.

    With --write-test GROUP (asked first, or --yes): the write checks on a throwaway device,
    each with its EnOS code and requestId; the device is deleted whatever happens, and an
    interrupted run's leftovers are removed by `enosprov doctor --cleanup`. The device
    signature scheme the tenant accepts is reported, and saved in the profile on confirmation
    (or --save-scheme): burn export and device bootstrap then use it.

    Example: enosprov doctor --profile prod

    Example: enosprov doctor --profile prod --write-test doctor-tests --yes
    """
    from .. import profiles
    from ..core.doctor import run_checks
    from ..domain.errors import EXIT_CHECK_FAILED, EXIT_UNAVAILABLE, InvalidArgumentError
    from ..settings import Settings

    st = state(ctx)
    settings = Settings.resolve(profile=profile or st.profile)
    if settings.backend != "enos" or settings.profile is None:
        raise InvalidArgumentError(
            "doctor checks an EnOS profile, and none is selected",
            hint="enosprov doctor --profile NAME (enosprov config list shows them)",
        )
    config = profiles.to_enos_config(settings.profile, settings.config_path)
    if cleanup:
        _cleanup(st, settings, config, json_)
        return
    if write_test is not None:
        confirm_or_refuse(
            f"The write checks register, change and delete a throwaway device in group "
            f"{write_test} of profile {settings.profile}. Go on?",
            yes=yes, what=f"run write checks in group {write_test}", dry_run=False,
        )  # fmt: skip
    report = run_checks(config)
    if write_test is not None and not report.unreachable:
        _write(st, settings, config, report, write_test, region, save_scheme, json_)
    emit(report, json_, lambda r: _show(r))
    if report.unreachable:
        raise typer.Exit(EXIT_UNAVAILABLE)
    if not report.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _show(report) -> None:
    table(
        f"enosprov doctor: profile {report.profile} ({report.api_url})",
        ["check", "result", "time", "EnOS code", "what it found / what to do"],
        [
            [
                c.name,
                c.result,
                f"{c.seconds * 1000:.0f} ms" if c.seconds else "-",
                "-" if c.enos_code is None else str(c.enos_code),
                c.detail + (f". To do: {c.remedy}" if c.remedy and c.result != "pass" else ""),
            ]
            for c in report.checks
        ],
    )
    failed = sum(c.result == "fail" for c in report.checks)
    warned = sum(c.result == "warn" for c in report.checks)
    warnings = f" ({warned} warning{'s' if warned > 1 else ''})" if warned else ""
    say(f"{failed} check(s) failed{warnings}" if failed else f"no check failed{warnings}")


def _write(st, settings, config, report, group: str, region, save_scheme: bool, json_) -> None:
    import sys

    from .. import profiles
    from ..backends.enos import EnosBackend
    from ..core.doctor import WARN, Check, write_checks

    with EnosBackend(config) as enos, st.journal(settings) as journal:
        outcome = write_checks(enos, config, group, journal=journal, region=region)
    report.checks.extend(outcome.checks)
    scheme = outcome.accepted_scheme
    if scheme is None or scheme == outcome.profile_scheme:
        return
    gid = enos.get_group(group).group_id
    ask = not save_scheme and not json_ and sys.stdin.isatty()
    if save_scheme or (ask and typer.confirm(
        f"The tenant accepts device signature scheme {scheme}, profile {settings.profile} says "
        f"{outcome.profile_scheme}. Save {scheme} for group {gid}?", default=True, err=True,
    )):  # fmt: skip
        profiles.set_sign_scheme(settings.profile, gid, scheme, settings.config_path)
        report.checks.append(Check("signature scheme", "pass",
                                   f"saved {scheme} for group {gid} in profile {settings.profile}"))  # fmt: skip
    else:
        report.checks.append(Check(
            "signature scheme", WARN,
            f"the tenant accepts {scheme}, the profile says {outcome.profile_scheme}: burned "
            "files will not bootstrap",
            remedy=f"enosprov doctor --profile {settings.profile} --write-test {gid} "
            "--save-scheme, or config add-group --sign-scheme",
        ))  # fmt: skip


def _cleanup(st, settings, config, json_) -> None:
    from ..backends.enos import EnosBackend
    from ..core.doctor import cleanup

    with EnosBackend(config) as enos, st.journal(settings) as journal:
        removed = cleanup(enos, journal)
    emit({"removed": removed}, json_,
         lambda d: say(f"removed {len(removed)} throwaway device(s): {', '.join(removed)}"
                       if removed else "nothing left to clean up"))  # fmt: skip
